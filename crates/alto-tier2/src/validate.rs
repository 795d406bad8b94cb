//! What a storage target's settings may be: each [`TargetKind`]'s config fields
//! ([`config_fields`]: name, type, required, secret, description), which keys are secrets
//! ([`is_secret_field`], the one list redaction uses), and [`validate_spec`], the check of a
//! target's `kind`, `location` and `config` as an API receives them, without connecting.
//!
//! [`validate_spec`] fails with a [`SpecError`] that names the field at fault
//! ([`SpecError::field`]) and a stable reason ([`SpecError::reason`]); its `Display` is the
//! message an API shows. It never echoes a config value (which could be a secret), and it
//! does not read `serde`'s messages: the field table says what is known, required and of
//! which type. The config structs ([`crate::S3Config`], [`crate::AzureConfig`],
//! [`crate::SmbConfig`]) and the table must agree; a unit test holds them together.
//!
//! Network policy (which endpoints a server may reach) is not checked here: that is the
//! caller's (the server's egress policy).

use serde_json::Value;

use crate::{TargetKind, TargetSpec, Tier2Error};

/// What a redacted secret looks like in an API answer; sent back, it means "keep the stored
/// secret".
pub const REDACTED: &str = "***";
/// The longest `location`, in bytes.
pub const MAX_LOCATION_BYTES: usize = 1024;
/// The largest `config`, in bytes of JSON.
pub const MAX_CONFIG_BYTES: usize = 16 * 1024;

/// The JSON type of a config field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A non-empty string without NUL.
    String,
    /// `true` or `false`.
    Bool,
}

impl FieldType {
    /// What a value of this type must be, for messages.
    pub fn expected(self) -> &'static str {
        match self {
            FieldType::String => "a non-empty string",
            FieldType::Bool => "true or false",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            FieldType::String => v.as_str().is_some_and(|s| !s.is_empty() && !s.contains('\0')),
            FieldType::Bool => v.is_boolean(),
        }
    }
}

/// One config field of a target kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigField {
    pub name: &'static str,
    pub ty: FieldType,
    /// Must be present. (Azure's `account` and `access_key` are required unless
    /// `use_emulator` without an `endpoint`: `false` here, checked by [`validate_spec`].)
    pub required: bool,
    /// A credential: redacted in answers and logs, kept when sent back as [`REDACTED`].
    pub secret: bool,
    pub description: &'static str,
}

const fn field(
    name: &'static str,
    ty: FieldType,
    required: bool,
    secret: bool,
    description: &'static str,
) -> ConfigField {
    ConfigField { name, ty, required, secret, description }
}

const S3_FIELDS: &[ConfigField] = &[
    field(
        "endpoint",
        FieldType::String,
        false,
        false,
        "http(s)://host[:port] of an S3-compatible service; absent: AWS",
    ),
    field("region", FieldType::String, false, false, "the region (default us-east-1)"),
    field("access_key_id", FieldType::String, true, false, "the access key ID"),
    field("secret_access_key", FieldType::String, true, true, "the secret access key"),
    field("allow_http", FieldType::Bool, false, false, "allow a plain http:// endpoint"),
    field(
        "path_style",
        FieldType::Bool,
        false,
        false,
        "endpoint/bucket/key requests instead of bucket.endpoint/key",
    ),
];

const AZURE_FIELDS: &[ConfigField] = &[
    field(
        "account",
        FieldType::String,
        false,
        false,
        "the storage account (required unless use_emulator)",
    ),
    field(
        "access_key",
        FieldType::String,
        false,
        true,
        "the account's shared key, base64 (required unless use_emulator)",
    ),
    field(
        "endpoint",
        FieldType::String,
        false,
        false,
        "the account URL; absent: https://<account>.blob.core.windows.net",
    ),
    field(
        "use_emulator",
        FieldType::Bool,
        false,
        false,
        "Azurite at $AZURITE_BLOB_STORAGE_URL with its well-known account and key",
    ),
    field("allow_http", FieldType::Bool, false, false, "allow a plain http:// endpoint"),
];

const SMB_FIELDS: &[ConfigField] = &[
    field("username", FieldType::String, true, false, "the user to log on as"),
    field("password", FieldType::String, true, true, "the user's password"),
    field(
        "workgroup",
        FieldType::String,
        false,
        false,
        "the workgroup or domain (default WORKGROUP)",
    ),
];

/// The config fields of `kind`, in the order its config struct declares them (`directory`
/// takes none).
pub fn config_fields(kind: TargetKind) -> &'static [ConfigField] {
    match kind {
        TargetKind::Directory => &[],
        TargetKind::S3 => S3_FIELDS,
        TargetKind::Azure => AZURE_FIELDS,
        TargetKind::Smb => SMB_FIELDS,
    }
}

/// Whether a config key holds a secret in any kind (what redaction hides, whatever the
/// target's kind, so a secret in the wrong kind's config is hidden too).
pub fn is_secret_field(name: &str) -> bool {
    TargetKind::ALL.into_iter().flat_map(config_fields).any(|f| f.secret && f.name == name)
}

/// `config` with every secret value replaced by [`REDACTED`] (`null`s stay).
pub fn redact_config(config: &Value) -> Value {
    let mut c = config.clone();
    if let Some(map) = c.as_object_mut() {
        for (k, v) in map.iter_mut() {
            if is_secret_field(k) && !v.is_null() {
                *v = Value::String(REDACTED.into());
            }
        }
    }
    c
}

/// Why a target's settings are refused. `Display` is the message for the caller; it names
/// the field and never contains a config value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("kind must be {}", kinds_list())]
    UnknownKind,
    #[error("location must be 1–{MAX_LOCATION_BYTES} bytes without control characters")]
    LocationMalformed,
    #[error("config must be a JSON object")]
    ConfigNotObject,
    #[error("config must be at most 16 KiB")]
    ConfigTooLarge,
    #[error("config.{field}: a directory target takes no config (use {{}})")]
    DirectoryTakesNoConfig { field: String },
    #[error("config.{field}: unknown field for a {kind} target (known: {})", known_list(*kind))]
    UnknownField { kind: TargetKind, field: String },
    #[error("config.{field} must be {}", ty.expected())]
    WrongType { field: &'static str, ty: FieldType },
    #[error(
        "config.{field}: \"{REDACTED}\" stands for a stored secret, and there is none to keep: \
         send the secret itself"
    )]
    RedactedWithoutSecret { field: &'static str },
    #[error("config.endpoint must be an http:// or https:// URL")]
    EndpointScheme,
    #[error("config.allow_http must be true for an http:// endpoint")]
    HttpNotAllowed,
    #[error("location: a relative directory must not contain `..`")]
    RelativeParent,
    /// The location does not have the kind's form (`s3://bucket[/prefix]`, …).
    #[error("location: {0}")]
    Location(String),
    #[error("config.{field} is required for a {kind} target")]
    MissingField { kind: TargetKind, field: &'static str },
    /// The config struct refused what the field table allowed (they disagree: a bug).
    #[error("config: {0}")]
    Config(String),
}

impl SpecError {
    /// The request field at fault: `kind`, `location`, `config` or `config.<name>`.
    pub fn field(&self) -> String {
        match self {
            SpecError::UnknownKind => "kind".into(),
            SpecError::LocationMalformed | SpecError::RelativeParent | SpecError::Location(_) => {
                "location".into()
            }
            SpecError::ConfigNotObject | SpecError::ConfigTooLarge | SpecError::Config(_) => {
                "config".into()
            }
            SpecError::DirectoryTakesNoConfig { field } | SpecError::UnknownField { field, .. } => {
                format!("config.{field}")
            }
            SpecError::WrongType { field, .. }
            | SpecError::RedactedWithoutSecret { field }
            | SpecError::MissingField { field, .. } => format!("config.{field}"),
            SpecError::EndpointScheme => "config.endpoint".into(),
            SpecError::HttpNotAllowed => "config.allow_http".into(),
        }
    }

    /// A stable reason code (`snake_case`).
    pub fn reason(&self) -> &'static str {
        match self {
            SpecError::UnknownKind => "unknown_kind",
            SpecError::LocationMalformed => "malformed",
            SpecError::ConfigNotObject => "not_an_object",
            SpecError::ConfigTooLarge => "too_large",
            SpecError::DirectoryTakesNoConfig { .. } => "no_config_for_kind",
            SpecError::UnknownField { .. } => "unknown_field",
            SpecError::WrongType { .. } => "wrong_type",
            SpecError::RedactedWithoutSecret { .. } => "redacted_without_secret",
            SpecError::EndpointScheme => "endpoint_scheme",
            SpecError::HttpNotAllowed => "http_not_allowed",
            SpecError::RelativeParent => "relative_parent",
            SpecError::Location(_) => "invalid_location",
            SpecError::MissingField { .. } => "missing_field",
            SpecError::Config(_) => "invalid_config",
        }
    }
}

/// `directory, smb, s3 or azure`.
fn kinds_list() -> String {
    let names: Vec<&str> = TargetKind::ALL.iter().map(|k| k.as_str()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

fn known_list(kind: TargetKind) -> String {
    config_fields(kind).iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

/// Checks `kind`, `location` and `config` as an API receives them, without connecting:
/// the kind is one of [`TargetKind::ALL`]; the location is 1–1024 bytes without control
/// characters and has the kind's form; `config` is an object of at most 16 KiB with only the
/// kind's fields, each of its type, the required ones present, no [`REDACTED`] placeholder
/// for a secret, and an `endpoint` that is `https://` or `http://` with `allow_http`. The
/// first problem found is the error.
pub fn validate_spec(kind: &str, location: &str, config: &Value) -> Result<TargetSpec, SpecError> {
    let kind: TargetKind = kind.parse().map_err(|_| SpecError::UnknownKind)?;
    if location.trim().is_empty()
        || location.len() > MAX_LOCATION_BYTES
        || location.chars().any(char::is_control)
    {
        return Err(SpecError::LocationMalformed);
    }
    let Some(map) = config.as_object() else {
        return Err(SpecError::ConfigNotObject);
    };
    if serde_json::to_vec(config).map_or(usize::MAX, |v| v.len()) > MAX_CONFIG_BYTES {
        return Err(SpecError::ConfigTooLarge);
    }
    let fields = config_fields(kind);
    for (key, v) in map {
        if kind == TargetKind::Directory {
            return Err(SpecError::DirectoryTakesNoConfig { field: key.clone() });
        }
        let Some(f) = fields.iter().find(|f| f.name == key) else {
            return Err(SpecError::UnknownField { kind, field: key.clone() });
        };
        if !f.ty.accepts(v) {
            return Err(SpecError::WrongType { field: f.name, ty: f.ty });
        }
        if f.secret && v.as_str() == Some(REDACTED) {
            return Err(SpecError::RedactedWithoutSecret { field: f.name });
        }
    }
    if let Some(ep) = map.get("endpoint").and_then(Value::as_str) {
        let http = ep.starts_with("http://");
        if !http && !ep.starts_with("https://") {
            return Err(SpecError::EndpointScheme);
        }
        let allow = map.get("allow_http").and_then(Value::as_bool).unwrap_or(false);
        if http && !allow {
            return Err(SpecError::HttpNotAllowed);
        }
    }
    if kind == TargetKind::Directory && !location.starts_with('/') && location.contains("..") {
        return Err(SpecError::RelativeParent);
    }
    crate::target::check_location(kind, location).map_err(SpecError::Location)?;
    let required = |f: &&ConfigField| match (kind, f.name) {
        (TargetKind::Azure, "account" | "access_key") => {
            // Without them only Azurite (use_emulator, no endpoint) can be reached.
            let emulator = map.get("use_emulator").and_then(Value::as_bool) == Some(true);
            !emulator || map.contains_key("endpoint")
        }
        _ => f.required,
    };
    if let Some(f) = fields.iter().filter(required).find(|f| !map.contains_key(f.name)) {
        return Err(SpecError::MissingField { kind, field: f.name });
    }
    let spec = TargetSpec::new(kind, location, config.clone());
    spec.validate().map_err(|e| match e {
        Tier2Error::Config(m) => SpecError::Config(m),
        other => SpecError::Config(other.to_string()),
    })?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_the_ones_redacted() {
        for k in ["secret_access_key", "access_key", "password"] {
            assert!(is_secret_field(k), "{k}");
        }
        for k in ["access_key_id", "username", "endpoint", "account"] {
            assert!(!is_secret_field(k), "{k}");
        }
        let c = redact_config(&json!({"password": "p", "access_key": null, "username": "u"}));
        assert_eq!(c, json!({"password": REDACTED, "access_key": null, "username": "u"}));
        // Whatever the kind: the spec's redaction is this one.
        let spec = TargetSpec::new(TargetKind::Smb, "smb://h/s", json!({"secret_access_key": "x"}));
        assert_eq!(spec.redacted_config()["secret_access_key"], REDACTED);
    }

    #[test]
    fn validation_names_the_field() {
        let msg = |kind, loc, cfg: Value| validate_spec(kind, loc, &cfg).unwrap_err().to_string();
        assert!(msg("tape", "x", json!({})).contains("kind"));
        assert_eq!(msg("tape", "x", json!({})), "kind must be directory, smb, s3 or azure");
        assert!(msg("s3", "s3://", json!({})).starts_with("location"));
        let m = msg("s3", "s3://b", json!({"access_key_id": "a"}));
        assert!(m.contains("config.secret_access_key is required"), "{m}");
        let m =
            msg("s3", "s3://b", json!({"access_key_id": "a", "secret_access_key": "s", "x": 1}));
        assert!(m.starts_with("config.x: unknown field"), "{m}");
        let m = msg("smb", "smb://h/s", json!({"username": "u", "password": 5}));
        assert_eq!(m, "config.password must be a non-empty string");
        assert!(!m.contains('5'));
        let m = msg("azure", "azure://c", json!({"account": "a", "access_key": "***"}));
        assert!(m.contains("config.access_key"), "{m}");
        let m = msg("directory", "/mnt", json!({"a": "b"}));
        assert!(m.starts_with("config.a"), "{m}");
        let m = msg(
            "s3",
            "s3://b",
            json!({"access_key_id": "a", "secret_access_key": "s", "endpoint": "http://h"}),
        );
        assert!(m.contains("config.allow_http"), "{m}");
        assert!(validate_spec("directory", "/mnt/t2", &json!({})).is_ok());
    }

    #[test]
    fn errors_carry_a_field_and_a_stable_reason() {
        let e = validate_spec("s3", "s3://b", &json!({"access_key_id": "a"})).unwrap_err();
        assert_eq!(e, SpecError::MissingField { kind: TargetKind::S3, field: "secret_access_key" });
        assert_eq!((e.field().as_str(), e.reason()), ("config.secret_access_key", "missing_field"));
        let e = validate_spec(
            "s3",
            "s3://b",
            &json!({"access_key_id": "a", "secret_access_key": "s", "x": 1}),
        )
        .unwrap_err();
        assert_eq!((e.field().as_str(), e.reason()), ("config.x", "unknown_field"));
        assert_eq!(
            e.to_string(),
            "config.x: unknown field for a s3 target (known: endpoint, region, access_key_id, \
             secret_access_key, allow_http, path_style)"
        );
        let e = validate_spec("tape", "x", &json!({})).unwrap_err();
        assert_eq!((e.field().as_str(), e.reason()), ("kind", "unknown_kind"));
        let e = validate_spec("s3", "s3://", &json!({})).unwrap_err();
        assert_eq!((e.field().as_str(), e.reason()), ("location", "invalid_location"));
        let e = validate_spec("s3", "s3://b", &json!([])).unwrap_err();
        assert_eq!(e, SpecError::ConfigNotObject);
        let big = json!({"endpoint": "x".repeat(MAX_CONFIG_BYTES)});
        assert_eq!(validate_spec("s3", "s3://b", &big).unwrap_err(), SpecError::ConfigTooLarge);
        assert_eq!(
            validate_spec("directory", "a/../b", &json!({})).unwrap_err(),
            SpecError::RelativeParent
        );
        assert_eq!(
            validate_spec("directory", "a\nb", &json!({})).unwrap_err(),
            SpecError::LocationMalformed
        );
        let e = validate_spec("s3", "s3://b", &json!({"endpoint": "ftp://h"})).unwrap_err();
        assert_eq!(e, SpecError::EndpointScheme);
    }

    #[test]
    fn azure_needs_credentials_unless_it_is_the_emulator() {
        assert!(validate_spec("azure", "azure://c", &json!({"use_emulator": true})).is_ok());
        let e = validate_spec("azure", "azure://c", &json!({})).unwrap_err();
        assert_eq!(e.to_string(), "config.account is required for a azure target");
        let e = validate_spec("azure", "azure://c", &json!({"account": "acme"})).unwrap_err();
        assert_eq!(e.to_string(), "config.access_key is required for a azure target");
        let e = validate_spec(
            "azure",
            "azure://c",
            &json!({"use_emulator": true, "endpoint": "https://e"}),
        )
        .unwrap_err();
        assert_eq!(e.field(), "config.account");
    }

    /// The table and the config structs agree: every field the table knows, of its type,
    /// deserialises; the required ones are required by the structs too.
    #[test]
    fn the_table_matches_the_config_structs() {
        let full = |kind: TargetKind| -> serde_json::Map<String, Value> {
            config_fields(kind)
                .iter()
                .map(|f| {
                    let v = match f.ty {
                        FieldType::String if f.name == "endpoint" => json!("https://e"),
                        FieldType::String => json!("v"),
                        FieldType::Bool => json!(true),
                    };
                    (f.name.to_owned(), v)
                })
                .collect()
        };
        for (kind, loc) in [
            (TargetKind::S3, "s3://b"),
            (TargetKind::Azure, "azure://c"),
            (TargetKind::Smb, "smb://h/s"),
        ] {
            let all = Value::Object(full(kind));
            assert!(TargetSpec::new(kind, loc, all.clone()).validate().is_ok(), "{kind}");
            assert!(validate_spec(kind.as_str(), loc, &all).is_ok(), "{kind}");
            for f in config_fields(kind).iter().filter(|f| f.required) {
                let mut m = full(kind);
                m.remove(f.name);
                let spec = TargetSpec::new(kind, loc, Value::Object(m));
                assert!(spec.validate().is_err(), "{kind}: {} is required", f.name);
            }
        }
    }
}
