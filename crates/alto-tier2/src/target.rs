//! [`Target`]: one customer location on any backend, opened from a [`TargetSpec`].

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alto_model::CustomerId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::chunks::ChunkManifest;
use crate::dir::{DirTarget, ObjectReader};
use crate::objstore::{runtime, ObjStore};
use crate::remote::{customer_root, valid_prefix, RemoteTarget};
#[cfg(feature = "smb")]
use crate::smb::{SmbParams, SmbStore};
use crate::types::{
    DeleteOutcome, ObjectKey, PutMeta, PutOutcome, RefId, RefListing, RefRecord, Sha256Digest,
    Usage,
};
use crate::Tier2Error;

pub use alto_model::TargetKind;

/// A secret string (password, key). Serialises as the plain string; `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a target is and how to reach it: the `kind`, `location` and `config` columns of a
/// storage target. See the crate documentation for each kind's `location` and `config`.
/// `Debug` redacts secrets.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub kind: TargetKind,
    pub location: String,
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl TargetSpec {
    pub fn new(kind: TargetKind, location: impl Into<String>, config: serde_json::Value) -> Self {
        TargetSpec { kind, location: location.into(), config }
    }

    /// `config` with every secret replaced by `"***"` (for display and API answers; the
    /// secrets are [`crate::validate::is_secret_field`]).
    pub fn redacted_config(&self) -> serde_json::Value {
        crate::validate::redact_config(&self.config)
    }

    /// Checks the location and config without connecting (what [`Target::open`] would
    /// refuse as [`Tier2Error::Config`]).
    pub fn validate(&self) -> Result<(), Tier2Error> {
        match self.kind {
            TargetKind::Directory => {
                if !self.config.as_object().is_some_and(|m| m.is_empty()) {
                    return Err(Tier2Error::Config(
                        "a directory target takes no config (use {})".into(),
                    ));
                }
                check_location(self.kind, &self.location).map_err(Tier2Error::Config)
            }
            TargetKind::S3 => {
                check_location(self.kind, &self.location).map_err(Tier2Error::Config)?;
                parse_config::<S3Config>(self.kind, &self.config).map(drop)
            }
            TargetKind::Azure => {
                check_location(self.kind, &self.location).map_err(Tier2Error::Config)?;
                parse_config::<AzureConfig>(self.kind, &self.config)?.check()
            }
            TargetKind::Smb => {
                check_location(self.kind, &self.location).map_err(Tier2Error::Config)?;
                parse_config::<SmbConfig>(self.kind, &self.config).map(drop)
            }
        }
    }
}

impl fmt::Debug for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetSpec")
            .field("kind", &self.kind)
            .field("location", &self.location)
            .field("config", &self.redacted_config())
            .finish()
    }
}

fn parse_config<T: serde::de::DeserializeOwned>(
    kind: TargetKind,
    config: &serde_json::Value,
) -> Result<T, Tier2Error> {
    // Errors name the field, never echo a value (which could be a secret).
    T::deserialize(config).map_err(|e| {
        let msg = e.to_string();
        let msg = if msg.starts_with("invalid") {
            "a field has the wrong type or value".to_owned()
        } else {
            msg
        };
        Tier2Error::Config(format!("{kind} config: {msg}"))
    })
}

/// `config` of an `s3` target. `location` is `s3://<bucket>[/<prefix>]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `http(s)://host[:port]` of an S3-compatible service; absent: AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// Allow a plain `http://` endpoint.
    #[serde(default)]
    pub allow_http: bool,
    /// `endpoint/bucket/key` requests instead of `bucket.endpoint/key`.
    #[serde(default)]
    pub path_style: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("allow_http", &self.allow_http)
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// `config` of an `azure` target. `location` is `azure://<container>[/<prefix>]`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// The storage account (with `use_emulator`: default `devstoreaccount1`).
    #[serde(default)]
    pub account: Option<String>,
    /// The account's shared key, base64 (with `use_emulator`: default Azurite's well-known
    /// key).
    #[serde(default)]
    pub access_key: Option<Secret>,
    /// The account URL, e.g. `http://127.0.0.1:10000/devstoreaccount1` for Azurite or
    /// `https://<account>.blob.core.windows.net`; absent: the latter.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Azurite at `$AZURITE_BLOB_STORAGE_URL` (default `http://127.0.0.1:10000`); ignored
    /// when `endpoint` is set.
    #[serde(default)]
    pub use_emulator: bool,
    /// Allow a plain `http://` endpoint (implied by `use_emulator`).
    #[serde(default)]
    pub allow_http: bool,
}

impl AzureConfig {
    fn check(&self) -> Result<(), Tier2Error> {
        if self.use_emulator && self.endpoint.is_none() {
            return Ok(());
        }
        if self.account.is_none() {
            return Err(Tier2Error::Config("azure config: missing field `account`".into()));
        }
        if self.access_key.is_none() {
            return Err(Tier2Error::Config("azure config: missing field `access_key`".into()));
        }
        Ok(())
    }
}

/// `config` of an `smb` target. `location` is `smb://<server>[:<port>]/<share>[/<base>]`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmbConfig {
    pub username: String,
    pub password: Secret,
    #[serde(default = "default_workgroup")]
    pub workgroup: String,
}

fn default_workgroup() -> String {
    "WORKGROUP".into()
}

/// Whether `location` has `kind`'s form (what [`TargetSpec::validate`] checks of it); the
/// error says what is wrong, without the word "location:".
pub(crate) fn check_location(kind: TargetKind, location: &str) -> Result<(), String> {
    match kind {
        TargetKind::Directory if location.is_empty() => Err("empty directory location".into()),
        TargetKind::Directory => Ok(()),
        TargetKind::S3 => S3Location::parse(location).map(drop),
        TargetKind::Azure => AzureLocation::parse(location).map(drop),
        TargetKind::Smb => SmbLocation::parse(location).map(drop),
    }
}

/// Splits `<scheme>://<first>[/<rest>]`.
fn split_url<'a>(loc: &'a str, scheme: &str) -> Result<(&'a str, &'a str), String> {
    let rest = loc
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(|| format!("location must start with {scheme}://"))?;
    let rest = rest.trim_end_matches('/');
    Ok(rest.split_once('/').unwrap_or((rest, "")))
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || valid_prefix(prefix) {
        Ok(())
    } else {
        Err(format!("invalid prefix {prefix:?}: use segments of letters, digits, '-', '_' and '.'"))
    }
}

struct S3Location<'a> {
    bucket: &'a str,
    prefix: &'a str,
}

impl<'a> S3Location<'a> {
    fn parse(loc: &'a str) -> Result<S3Location<'a>, String> {
        let (bucket, prefix) = split_url(loc, "s3")?;
        if bucket.is_empty() || !valid_prefix(bucket) {
            return Err("invalid bucket in the s3 location".into());
        }
        check_prefix(prefix)?;
        Ok(S3Location { bucket, prefix })
    }
}

struct AzureLocation<'a> {
    container: &'a str,
    prefix: &'a str,
}

impl<'a> AzureLocation<'a> {
    fn parse(loc: &'a str) -> Result<AzureLocation<'a>, String> {
        let (container, prefix) = split_url(loc, "azure")?;
        if container.is_empty() || !valid_prefix(container) {
            return Err("invalid container in the azure location".into());
        }
        check_prefix(prefix)?;
        Ok(AzureLocation { container, prefix })
    }
}

#[cfg_attr(not(feature = "smb"), allow(dead_code))]
struct SmbLocation<'a> {
    /// `smb://host[:port]`
    server: String,
    share: &'a str,
    /// `` or `a/b`
    base: &'a str,
}

impl<'a> SmbLocation<'a> {
    fn parse(loc: &'a str) -> Result<SmbLocation<'a>, String> {
        let (host, rest) = split_url(loc, "smb")?;
        let (share, base) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains('@') {
            return Err(
                "invalid server in the smb location (credentials belong in the config)".into()
            );
        }
        if share.is_empty() || !valid_prefix(share) {
            return Err("missing or invalid share in the smb location".into());
        }
        check_prefix(base)?;
        Ok(SmbLocation { server: format!("smb://{host}"), share, base })
    }
}

/// Local settings for [`Target::open`] (not part of the stored spec).
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Resolves a relative `directory` location; `None`: a relative one is an error.
    pub directory_base: Option<PathBuf>,
    /// Where puts to remote targets spool their (compressed) bytes before uploading: needs
    /// free space for the largest object in flight per worker. `None`: the system temporary
    /// directory.
    pub spool_dir: Option<PathBuf>,
    /// Object stores: objects of more stored bytes go up as multipart uploads (at least
    /// `part_size`).
    pub multipart_threshold: u64,
    /// Object stores: multipart part size (at least 5 MiB, S3's minimum).
    pub part_size: usize,
    /// Object stores: timeout of one HTTP request.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Object stores: retries of a failed request (with backoff).
    pub max_retries: usize,
    /// Object stores: decides, for every address a host name resolves to when connecting,
    /// whether it may be used (`None`: any). A refused address fails the connection with
    /// a message containing [`ADDRESS_REFUSED`]. The server uses it to keep tenants' targets
    /// off its own network; the check happens at connection time, so a name that changes
    /// its answer between a check and the connection (DNS rebinding) is caught too. Literal
    /// IP addresses in URLs are not resolved and must be checked by the caller. A target
    /// opened with a filter follows no HTTP redirects.
    pub address_filter: Option<AddressFilter>,
}

/// Text in the error of a connection refused by [`OpenOptions::address_filter`].
pub const ADDRESS_REFUSED: &str = "refused by the outbound address policy";

/// See [`OpenOptions::address_filter`]: `(host name, address) -> allowed`.
#[derive(Clone)]
pub struct AddressFilter(pub Arc<AddressCheck>);

/// `(host name, address) -> allowed`.
pub type AddressCheck = dyn Fn(&str, std::net::IpAddr) -> bool + Send + Sync;

impl fmt::Debug for AddressFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AddressFilter")
    }
}

/// Resolves with the system resolver, then refuses the whole answer if the filter refuses
/// any address in it.
#[derive(Debug)]
struct GuardedResolver(std::panic::AssertUnwindSafe<AddressFilter>);

impl object_store::client::DnsResolver for GuardedResolver {
    fn resolve(&self, host: &str) -> object_store::client::DnsFuture {
        let filter = self.0 .0.clone();
        let host = host.to_owned();
        Box::pin(async move {
            let addrs: Vec<std::net::IpAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect();
            if let Some(bad) = addrs.iter().find(|ip| !(filter.0)(&host, **ip)) {
                let msg = format!("{host} resolves to {bad}: {ADDRESS_REFUSED}");
                return Err(msg.into());
            }
            Ok(addrs)
        })
    }
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            directory_base: None,
            spool_dir: None,
            multipart_threshold: 32 << 20,
            part_size: 8 << 20,
            request_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            max_retries: 3,
            address_filter: None,
        }
    }
}

const MIN_PART: usize = 5 << 20;

/// One customer's location on a tier-2 target of any kind. Cheap to clone; every method is
/// blocking and safe to call from several threads (plain threads or `spawn_blocking`).
#[derive(Clone)]
pub struct Target {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Dir(DirTarget),
    Remote(Arc<RemoteTarget>),
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("kind", &self.kind())
            .field("location", &self.location())
            .field("customer_id", &self.customer_id())
            .finish()
    }
}

impl From<DirTarget> for Target {
    fn from(d: DirTarget) -> Target {
        Target { inner: Inner::Dir(d) }
    }
}

impl Target {
    /// Opens the location of `customer_id` on the target `spec` describes.
    ///
    /// Never creates the base (directory, bucket, container, share or its base path): a
    /// missing one is an error. Creates the customer location under it where the backend
    /// has directories. Object stores connect lazily: call [`Target::health`] to find out
    /// whether the target is reachable and the credentials work.
    pub fn open(
        spec: &TargetSpec,
        customer_id: CustomerId,
        opts: &OpenOptions,
    ) -> Result<Target, Tier2Error> {
        spec.validate()?;
        let spool_dir = opts.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
        let remote = |store: Box<dyn crate::remote::Store>| Target {
            inner: Inner::Remote(Arc::new(RemoteTarget {
                customer_id,
                store,
                spool_dir: spool_dir.clone(),
            })),
        };
        match spec.kind {
            TargetKind::Directory => {
                let p = Path::new(&spec.location);
                let base = match (&opts.directory_base, p.is_absolute()) {
                    (_, true) => p.to_owned(),
                    (Some(b), false) => b.join(p),
                    (None, false) => {
                        return Err(Tier2Error::Config(format!(
                            "directory location {:?} is not absolute",
                            spec.location
                        )))
                    }
                };
                Ok(DirTarget::open(&base, customer_id)?.into())
            }
            TargetKind::S3 => {
                let loc = S3Location::parse(&spec.location).map_err(Tier2Error::Config)?;
                let cfg: S3Config = parse_config(spec.kind, &spec.config)?;
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(loc.bucket)
                    .with_region(&cfg.region)
                    .with_access_key_id(&cfg.access_key_id)
                    .with_secret_access_key(cfg.secret_access_key.expose())
                    .with_virtual_hosted_style_request(!cfg.path_style)
                    .with_retry(retry_config(opts))
                    .with_client_options(client_options(opts, cfg.allow_http));
                if let Some(ep) = &cfg.endpoint {
                    b = b.with_endpoint(ep);
                }
                if let Some(c) = filtered_connector(opts, cfg.allow_http) {
                    b = b.with_http_connector(c);
                }
                let store = b.build().map_err(|e| Tier2Error::Config(format!("s3: {e}")))?;
                let root = customer_root(loc.prefix, customer_id);
                let mut display = format!("s3://{}/{root}", loc.bucket);
                if let Some(ep) = &cfg.endpoint {
                    display.push_str(&format!(" at {ep}"));
                }
                Ok(remote(Box::new(obj_store("s3", Arc::new(store), root, display, opts)?)))
            }
            TargetKind::Azure => {
                let loc = AzureLocation::parse(&spec.location).map_err(Tier2Error::Config)?;
                let cfg: AzureConfig = parse_config(spec.kind, &spec.config)?;
                let mut b = object_store::azure::MicrosoftAzureBuilder::new()
                    .with_container_name(loc.container)
                    .with_retry(retry_config(opts))
                    .with_client_options(client_options(opts, cfg.allow_http));
                if let Some(a) = &cfg.account {
                    b = b.with_account(a);
                }
                if let Some(k) = &cfg.access_key {
                    b = b.with_access_key(k.expose());
                }
                let endpoint = match (&cfg.endpoint, cfg.use_emulator) {
                    (Some(ep), _) => {
                        b = b.with_endpoint(ep.clone());
                        ep.clone()
                    }
                    (None, true) => {
                        b = b.with_use_emulator(true);
                        std::env::var("AZURITE_BLOB_STORAGE_URL")
                            .unwrap_or_else(|_| "http://127.0.0.1:10000".into())
                    }
                    (None, false) => String::new(),
                };
                if let Some(c) = filtered_connector(opts, cfg.allow_http) {
                    b = b.with_http_connector(c);
                }
                let store = b.build().map_err(|e| Tier2Error::Config(format!("azure: {e}")))?;
                let root = customer_root(loc.prefix, customer_id);
                let mut display = format!("azure://{}/{root}", loc.container);
                if !endpoint.is_empty() {
                    display.push_str(&format!(" at {endpoint}"));
                } else if let Some(a) = &cfg.account {
                    display.push_str(&format!(" in account {a}"));
                }
                Ok(remote(Box::new(obj_store("azure", Arc::new(store), root, display, opts)?)))
            }
            #[cfg(not(feature = "smb"))]
            TargetKind::Smb => Err(Tier2Error::Config(
                "this build of alto-tier2 has no SMB support (feature `smb`)".into(),
            )),
            #[cfg(feature = "smb")]
            TargetKind::Smb => {
                let loc = SmbLocation::parse(&spec.location).map_err(Tier2Error::Config)?;
                let cfg: SmbConfig = parse_config(spec.kind, &spec.config)?;
                let base = format!("/{}", loc.base);
                let root = format!("/{}", customer_root(loc.base, customer_id));
                let store = SmbStore::open(SmbParams {
                    server: &loc.server,
                    share: loc.share,
                    base: &base,
                    root,
                    username: &cfg.username,
                    password: cfg.password.expose(),
                    workgroup: &cfg.workgroup,
                })?;
                Ok(remote(Box::new(store)))
            }
        }
    }

    pub fn kind(&self) -> TargetKind {
        match &self.inner {
            Inner::Dir(_) => TargetKind::Directory,
            Inner::Remote(r) => match r.store.backend() {
                "s3" => TargetKind::S3,
                "azure" => TargetKind::Azure,
                _ => TargetKind::Smb,
            },
        }
    }

    pub fn customer_id(&self) -> CustomerId {
        match &self.inner {
            Inner::Dir(d) => d.customer_id(),
            Inner::Remote(r) => r.customer_id,
        }
    }

    /// The customer location for logs and messages, never with secrets:
    /// `/mnt/tier2/customer-…-tiered`, `s3://bucket/prefix/customer-…-tiered at
    /// http://host:port`, `azure://container/customer-…-tiered at …`,
    /// `smb://host:port/share/base/customer-…-tiered`.
    pub fn location(&self) -> String {
        match &self.inner {
            Inner::Dir(d) => d.location().display().to_string(),
            Inner::Remote(r) => r.location().to_owned(),
        }
    }

    /// The directory backend, if this is one.
    pub fn as_dir(&self) -> Option<&DirTarget> {
        match &self.inner {
            Inner::Dir(d) => Some(d),
            Inner::Remote(_) => None,
        }
    }

    /// Stores the content of `reader` for the file `meta` describes; see
    /// [`DirTarget::put`] and, for remote targets, the crate documentation.
    pub fn put<R: Read>(&self, reader: R, meta: &PutMeta) -> Result<PutOutcome, Tier2Error> {
        match &self.inner {
            Inner::Dir(d) => d.put(reader, meta),
            Inner::Remote(r) => r.put(reader, meta),
        }
    }

    /// Re-reads and re-hashes the object; see [`DirTarget::verify`].
    pub fn verify(&self, key: &ObjectKey) -> Result<(), Tier2Error> {
        match &self.inner {
            Inner::Dir(d) => d.verify(key),
            Inner::Remote(r) => r.verify(key),
        }
    }

    /// Streams the verified original bytes into `writer`; see [`DirTarget::get`] (the
    /// writer may have received wrong bytes when this fails with `Corrupt`).
    pub fn get<W: Write>(&self, key: &ObjectKey, writer: W) -> Result<u64, Tier2Error> {
        self.reader(key)?.drain(writer)
    }

    /// The original bytes as a [`Read`] whose last read fails on corruption; see
    /// [`DirTarget::reader`].
    pub fn reader(&self, key: &ObjectKey) -> Result<ObjectReader, Tier2Error> {
        match &self.inner {
            Inner::Dir(d) => d.reader(key),
            Inner::Remote(r) => r.reader(key),
        }
    }

    /// `len` bytes of the uncompressed object `key` from `offset` (fewer only at its end),
    /// **unverified**: check them against the object's [`ChunkManifest`]. Directory:
    /// `pread`; S3 and Azure: one ranged GET; SMB: open, seek, read. A compressed object
    /// is refused ([`Tier2Error::Config`]).
    pub fn read_range(
        &self,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, Tier2Error> {
        match &self.inner {
            Inner::Dir(d) => d.read_range(key, offset, len),
            Inner::Remote(r) => r.read_range(key, offset, len),
        }
    }

    /// Stores the chunk manifest `m` beside the objects (`chunks/ab/<sha256>.<chunk>.json`,
    /// atomically; the same content and chunk size always give the same bytes).
    pub fn put_chunk_manifest(&self, m: &ChunkManifest) -> Result<(), Tier2Error> {
        match &self.inner {
            Inner::Dir(d) => d.put_chunk_manifest(m),
            Inner::Remote(r) => r.put_chunk_manifest(m),
        }
    }

    /// The stored bytes of the chunk manifest of `sha256` at `chunk_size`; `None` if there
    /// is none. Check them with [`ChunkManifest::parse_bound`].
    pub fn read_chunk_manifest(
        &self,
        sha256: &Sha256Digest,
        chunk_size: u64,
    ) -> Result<Option<Vec<u8>>, Tier2Error> {
        match &self.inner {
            Inner::Dir(d) => d.read_chunk_manifest(sha256, chunk_size),
            Inner::Remote(r) => r.read_chunk_manifest(sha256, chunk_size),
        }
    }

    /// The object holding content `sha256` (plain first), unverified.
    pub fn find_object(&self, sha256: &Sha256Digest) -> Result<Option<ObjectKey>, Tier2Error> {
        match &self.inner {
            Inner::Dir(d) => Ok(d.find_object(sha256)),
            Inner::Remote(r) => r.find_object(sha256),
        }
    }

    pub fn read_ref(&self, id: &RefId) -> Result<Option<RefRecord>, Tier2Error> {
        match &self.inner {
            Inner::Dir(d) => d.read_ref(id),
            Inner::Remote(r) => r.read_ref(id),
        }
    }

    /// Every sidecar, to rebuild the registry; see [`DirTarget::list_refs`].
    pub fn list_refs(&self) -> Result<RefListing, Tier2Error> {
        match &self.inner {
            Inner::Dir(d) => d.list_refs(),
            Inner::Remote(r) => r.list_refs(),
        }
    }

    pub fn delete_ref(&self, id: &RefId) -> Result<bool, Tier2Error> {
        match &self.inner {
            Inner::Dir(d) => d.delete_ref(id),
            Inner::Remote(r) => r.delete_ref(id),
        }
    }

    /// Deletes the object if no sidecar references it; see the crate documentation for
    /// how remote targets do it without a lock.
    pub fn delete_object_if_unreferenced(
        &self,
        key: &ObjectKey,
    ) -> Result<DeleteOutcome, Tier2Error> {
        match &self.inner {
            Inner::Dir(d) => d.delete_object_if_unreferenced(key),
            Inner::Remote(r) => r.delete_object_if_unreferenced(key),
        }
    }

    pub fn usage(&self) -> Result<Usage, Tier2Error> {
        match &self.inner {
            Inner::Dir(d) => d.usage(),
            Inner::Remote(r) => r.usage(),
        }
    }

    /// A real round trip: fails on an unreachable server, wrong credentials or a missing
    /// bucket, container, share or mount.
    pub fn health(&self) -> Result<(), Tier2Error> {
        match &self.inner {
            Inner::Dir(d) => d.health(),
            Inner::Remote(r) => r.health(),
        }
    }

    /// Removes garbage of killed operations older than `older_than`; see
    /// [`DirTarget::cleanup_tmp`] and the crate documentation.
    pub fn cleanup_tmp(&self, older_than: DateTime<Utc>) -> Result<usize, Tier2Error> {
        match &self.inner {
            Inner::Dir(d) => d.cleanup_tmp(older_than),
            Inner::Remote(r) => r.cleanup_tmp(older_than),
        }
    }
}

fn retry_config(opts: &OpenOptions) -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig::default(),
        max_retries: opts.max_retries,
        retry_timeout: opts.request_timeout,
    }
}

/// The HTTP client of a target with an [`AddressFilter`]: the filter applies to every name
/// it resolves, and it follows no redirects (a redirect to a literal address would not be
/// resolved, so not filtered; it fails the request instead).
#[derive(Debug)]
struct FilteredConnector {
    filter: std::panic::AssertUnwindSafe<AddressFilter>,
    request_timeout: Duration,
    connect_timeout: Duration,
    allow_http: bool,
}

impl object_store::client::HttpConnector for FilteredConnector {
    fn connect(
        &self,
        _options: &object_store::ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(FilteredResolve(self.filter.0.clone()))
            .timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .https_only(!self.allow_http)
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate()
            .build()
            .map_err(|e| object_store::Error::Generic { store: "HTTP", source: Box::new(e) })?;
        Ok(object_store::client::HttpClient::new(client))
    }
}

/// [`GuardedResolver`] for a plain `reqwest` client.
struct FilteredResolve(AddressFilter);

impl reqwest::dns::Resolve for FilteredResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let inner = GuardedResolver(std::panic::AssertUnwindSafe(self.0.clone()));
        let host = name.as_str().to_owned();
        Box::pin(async move {
            use object_store::client::DnsResolver as _;
            let ips = inner.resolve(&host).await?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| std::net::SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

fn filtered_connector(opts: &OpenOptions, allow_http: bool) -> Option<FilteredConnector> {
    opts.address_filter.as_ref().map(|f| FilteredConnector {
        filter: std::panic::AssertUnwindSafe(f.clone()),
        request_timeout: opts.request_timeout,
        connect_timeout: opts.connect_timeout,
        allow_http,
    })
}

fn client_options(opts: &OpenOptions, allow_http: bool) -> object_store::ClientOptions {
    let o = object_store::ClientOptions::new()
        .with_allow_http(allow_http)
        .with_timeout(opts.request_timeout)
        .with_connect_timeout(opts.connect_timeout);
    match &opts.address_filter {
        Some(f) => {
            o.with_dns_resolver(Arc::new(GuardedResolver(std::panic::AssertUnwindSafe(f.clone()))))
        }
        None => o,
    }
}

fn obj_store(
    backend: &'static str,
    store: Arc<dyn object_store::ObjectStore>,
    root: String,
    display: String,
    opts: &OpenOptions,
) -> Result<ObjStore, Tier2Error> {
    let part_size = opts.part_size.max(MIN_PART);
    Ok(ObjStore {
        backend,
        store,
        root,
        display,
        handle: runtime()?,
        multipart_threshold: opts.multipart_threshold.max(part_size as u64),
        part_size,
    })
}
