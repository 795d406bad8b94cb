//! What kind of failure a [`Tier2Error`] is, for callers that report it (the server's target
//! check, the agent's logs): a [`FailureClass`] with a stable code, and the HTTP status when
//! the target answered one.
//!
//! The class is computed from the backends' typed errors when the error is made (see
//! [`Cause`]): `object_store`'s error variants (`NotFound`, `PermissionDenied`,
//! `Unauthenticated`) and its transport error kinds (connect, timeout, interrupted),
//! [`std::io::ErrorKind`] (directory targets, and libsmbclient's errno values, which is how
//! NT status codes such as `LOGON_FAILURE` or `BAD_NETWORK_NAME` reach us), and
//! [`Tier2Error`]'s own variants. Only when a backend gave nothing typed is the failure text
//! read, as a last resort, by [`classify_reason`] (S3/Azure error codes and HTTP statuses in
//! `object_store`'s messages, NT status names and errno texts from libsmbclient).
//!
//! **Never** put what a remote end sent into a report: the classification and the status are
//! all a caller should show of a remote failure (a target could be any server that answers
//! HTTP or SMB).

use std::error::Error as StdError;
use std::fmt;
use std::io;

use crate::{Tier2Error, ADDRESS_REFUSED};

/// The kind of a tier-2 failure, as a caller reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// The target's settings cannot be used (malformed location, missing field).
    InvalidConfig,
    /// The credentials were refused (HTTP 401, bad signature, unknown key).
    AuthRejected,
    /// The credentials were accepted but lack a permission (HTTP 403, `EACCES`, a read-only
    /// file system). SMB reports refused credentials this way too.
    PermissionDenied,
    /// The bucket, container, share, base path or directory does not exist.
    NotFound,
    /// No connection: refused, reset, DNS failure, TLS failure, unreachable network.
    Unreachable,
    /// The target did not answer in time.
    Timeout,
    /// A connection was refused by the caller's outbound address policy
    /// ([`crate::OpenOptions::address_filter`]).
    AddressRefused,
    /// Anything else: a server error, an I/O error, a failure of the data.
    Other,
}

impl FailureClass {
    /// Every class.
    pub const ALL: [FailureClass; 8] = [
        FailureClass::InvalidConfig,
        FailureClass::AuthRejected,
        FailureClass::PermissionDenied,
        FailureClass::NotFound,
        FailureClass::Unreachable,
        FailureClass::Timeout,
        FailureClass::AddressRefused,
        FailureClass::Other,
    ];

    /// A stable code (`snake_case`), for logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            FailureClass::InvalidConfig => "invalid_config",
            FailureClass::AuthRejected => "auth_rejected",
            FailureClass::PermissionDenied => "permission_denied",
            FailureClass::NotFound => "not_found",
            FailureClass::Unreachable => "unreachable",
            FailureClass::Timeout => "timeout",
            FailureClass::AddressRefused => "address_refused",
            FailureClass::Other => "storage_error",
        }
    }

    /// Whether the credentials were refused or lack a permission.
    pub fn is_access_denied(self) -> bool {
        matches!(self, FailureClass::AuthRejected | FailureClass::PermissionDenied)
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A classified failure: its class and, for a remote target that answered, the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    pub http_status: Option<u16>,
}

/// Classifies `e`: from the class recorded when a remote failure was made (typed), else from
/// the error's variant, else (remote failures without a typed cause) from its text.
pub fn classify(e: &Tier2Error) -> Failure {
    let class = match e {
        Tier2Error::Config(_) => FailureClass::InvalidConfig,
        Tier2Error::Io { source, .. } => local_io_class(source.kind()),
        // Our own marker (the policy refuses inside DNS resolution, which the HTTP client
        // reports as a connection failure): before the typed class.
        Tier2Error::Unavailable { reason, .. } if reason.contains(ADDRESS_REFUSED) => {
            FailureClass::AddressRefused
        }
        Tier2Error::Unavailable { class: Some(c), .. } => *c,
        Tier2Error::Unavailable { reason, .. } => classify_reason(reason),
        _ => FailureClass::Other,
    };
    let http_status = match e {
        Tier2Error::Unavailable { http_status: Some(s), .. } => Some(*s),
        Tier2Error::Unavailable { reason, .. } => http_status_in(reason),
        _ => None,
    };
    Failure { class, http_status }
}

/// The class of a directory target's I/O error (a local or mounted file system: never
/// "unreachable").
fn local_io_class(kind: io::ErrorKind) -> FailureClass {
    match kind {
        io::ErrorKind::NotFound => FailureClass::NotFound,
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            FailureClass::PermissionDenied
        }
        io::ErrorKind::TimedOut => FailureClass::Timeout,
        _ => FailureClass::Other,
    }
}

/// The class of a remote backend's [`io::ErrorKind`] (libsmbclient's errno values, a
/// connection's errors), if it says one.
pub fn io_class(kind: io::ErrorKind) -> Option<FailureClass> {
    use io::ErrorKind as K;
    Some(match kind {
        K::NotFound => FailureClass::NotFound,
        K::PermissionDenied | K::ReadOnlyFilesystem => FailureClass::PermissionDenied,
        K::TimedOut => FailureClass::Timeout,
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable => FailureClass::Unreachable,
        _ => return None,
    })
}

/// The class of an HTTP status, if it says one.
pub fn status_class(status: u16) -> Option<FailureClass> {
    match status {
        401 => Some(FailureClass::AuthRejected),
        403 => Some(FailureClass::PermissionDenied),
        404 => Some(FailureClass::NotFound),
        _ => None,
    }
}

/// The cause of a remote failure, as a backend gave it: its text (for logs, never for
/// reports) and, where the backend's error type says it, the class and HTTP status.
pub(crate) trait Cause: fmt::Display {
    fn class(&self) -> Option<FailureClass> {
        None
    }
    fn http_status(&self) -> Option<u16> {
        None
    }
}

impl Cause for &str {}

impl Cause for String {}

impl Cause for tokio::task::JoinError {}

impl Cause for io::Error {
    fn class(&self) -> Option<FailureClass> {
        // An object store's body stream wraps its own error in an `io::Error`.
        self.get_ref()
            .and_then(|inner| inner.downcast_ref::<object_store::Error>())
            .and_then(Cause::class)
            .or_else(|| io_class(self.kind()))
    }
    fn http_status(&self) -> Option<u16> {
        self.get_ref()
            .and_then(|inner| inner.downcast_ref::<object_store::Error>())
            .and_then(Cause::http_status)
    }
}

impl Cause for object_store::Error {
    fn class(&self) -> Option<FailureClass> {
        use object_store::Error as E;
        match self {
            E::NotFound { .. } => Some(FailureClass::NotFound),
            E::PermissionDenied { .. } => Some(FailureClass::PermissionDenied),
            E::Unauthenticated { .. } => Some(FailureClass::AuthRejected),
            _ => transport_class(self),
        }
    }
    fn http_status(&self) -> Option<u16> {
        use object_store::Error as E;
        match self {
            E::NotFound { .. } => Some(404),
            E::PermissionDenied { .. } => Some(403),
            E::Unauthenticated { .. } => Some(401),
            E::AlreadyExists { .. } => Some(409),
            E::Precondition { .. } => Some(412),
            E::NotModified { .. } => Some(304),
            _ => None,
        }
    }
}

/// The class of the HTTP transport failure somewhere in `e`'s source chain.
fn transport_class(e: &(dyn StdError + 'static)) -> Option<FailureClass> {
    use object_store::client::{HttpError, HttpErrorKind as K};
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HttpError>() {
            return match h.kind() {
                K::Connect | K::Request | K::Interrupted => Some(FailureClass::Unreachable),
                K::Timeout => Some(FailureClass::Timeout),
                _ => None,
            };
        }
        cur = err.source();
    }
    None
}

#[cfg(feature = "smb")]
impl Cause for pavao::SmbError {
    fn class(&self) -> Option<FailureClass> {
        match self {
            pavao::SmbError::Io(e) => io_class(e.kind()),
            _ => None,
        }
    }
}

/// The HTTP status in an object store's error text (`… status code: 503 …`).
pub fn http_status_in(reason: &str) -> Option<u16> {
    let at = reason.find("status code: ")? + "status code: ".len();
    let digits = reason.get(at..at + 3)?;
    digits.parse().ok().filter(|s| (100..600).contains(s))
}

/// The last resort: what a remote backend's failure text says (HTTP statuses and S3/Azure
/// error codes from `object_store`, NT status names and errno texts from libsmbclient), for
/// failures whose backend gave no typed cause.
pub fn classify_reason(reason: &str) -> FailureClass {
    let r = reason.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| r.contains(w));
    if any(&[
        "status code: 401",
        "401 unauthorized",
        "invalidaccesskeyid",
        "signaturedoesnotmatch",
        "authenticationfailed",
        "logon_failure",
        "logon failure",
        "unauthorized",
    ]) {
        FailureClass::AuthRejected
    } else if any(&[
        "status code: 403",
        "forbidden",
        "accessdenied",
        "access denied",
        "authorizationfailure",
        "permission denied",
        "access_denied",
    ]) {
        FailureClass::PermissionDenied
    } else if any(&[
        "nosuchbucket",
        "containernotfound",
        "bad_network_name",
        "no such file",
        "not found",
        "status code: 404",
        "object_name_not_found",
        "object_path_not_found",
    ]) {
        FailureClass::NotFound
    } else if any(&[
        "connection refused",
        "error sending request",
        "error trying to connect",
        "dns error",
        "failed to lookup",
        "unreachable",
        "certificate",
        "tls handshake",
        "connection reset",
        "nt_status_connection",
        "nt_status_io_timeout",
    ]) {
        FailureClass::Unreachable
    } else if any(&["timed out", "deadline has elapsed", "operation timed"]) {
        // (Not "timeout": object_store's messages always name its `retry_timeout`.)
        FailureClass::Timeout
    } else {
        FailureClass::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn remote(reason: &str, cause: Option<FailureClass>) -> Tier2Error {
        Tier2Error::Unavailable {
            backend: "s3",
            op: "head",
            location: "s3://b".into(),
            reason: reason.into(),
            class: cause,
            http_status: None,
        }
    }

    #[test]
    fn codes_are_stable_and_distinct() {
        let codes: HashSet<_> = FailureClass::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes.len(), FailureClass::ALL.len());
        assert_eq!(FailureClass::AuthRejected.code(), "auth_rejected");
        assert_eq!(FailureClass::Other.to_string(), "storage_error");
        assert!(FailureClass::AuthRejected.is_access_denied());
        assert!(FailureClass::PermissionDenied.is_access_denied());
        assert!(!FailureClass::NotFound.is_access_denied());
    }

    #[test]
    fn reasons_are_classified() {
        assert_eq!(
            classify_reason("non-2xx status code: 403 Forbidden"),
            FailureClass::PermissionDenied
        );
        assert_eq!(classify_reason("status code: 401"), FailureClass::AuthRejected);
        assert_eq!(classify_reason("NT_STATUS_LOGON_FAILURE"), FailureClass::AuthRejected);
        // A latency of 403 ms is not a status.
        assert_eq!(classify_reason("GET … in 403.5ms - boom"), FailureClass::Other);
        assert_eq!(classify_reason("NoSuchBucket"), FailureClass::NotFound);
        assert_eq!(
            classify_reason("error sending request: Connection refused"),
            FailureClass::Unreachable
        );
        assert_eq!(
            classify_reason("GET http://h/b in 454ms, after 3 retries, max_retries: 3, retry_timeout: 20s  - HTTP error: error sending request"),
            FailureClass::Unreachable
        );
        assert_eq!(classify_reason("operation timed out"), FailureClass::Timeout);
        assert_eq!(classify_reason("retry_timeout: 20s - server error"), FailureClass::Other);
    }

    #[test]
    fn http_status_is_read_only_after_its_words() {
        assert_eq!(http_status_in("non-2xx status code: 503 Service Unavailable"), Some(503));
        assert_eq!(http_status_in("GET … in 403.5ms"), None);
        assert_eq!(http_status_in("status code: 9999"), None);
    }

    #[test]
    fn typed_causes_come_first() {
        // The text would say "not found"; the backend's typed cause says otherwise.
        let e = remote("not found", Some(FailureClass::PermissionDenied));
        assert_eq!(classify(&e).class, FailureClass::PermissionDenied);
        assert_eq!(classify(&remote("not found", None)).class, FailureClass::NotFound);
        // The policy's marker wins over a typed connection failure.
        let e = remote(
            &format!("h resolves to 10.0.0.1: {ADDRESS_REFUSED}"),
            Some(FailureClass::Unreachable),
        );
        assert_eq!(classify(&e).class, FailureClass::AddressRefused);
        assert_eq!(classify(&Tier2Error::Config("x".into())).class, FailureClass::InvalidConfig);
        let io = |k| Tier2Error::Io { op: "open", path: "/x".into(), source: io::Error::from(k) };
        assert_eq!(classify(&io(io::ErrorKind::NotFound)).class, FailureClass::NotFound);
        assert_eq!(
            classify(&io(io::ErrorKind::ReadOnlyFilesystem)).class,
            FailureClass::PermissionDenied
        );
        assert_eq!(classify(&io(io::ErrorKind::TimedOut)).class, FailureClass::Timeout);
        // A directory's I/O errors are never "unreachable": that is for networks.
        assert_eq!(classify(&io(io::ErrorKind::ConnectionRefused)).class, FailureClass::Other);
        assert_eq!(io_class(io::ErrorKind::ConnectionRefused), Some(FailureClass::Unreachable));
        assert_eq!(classify(&io(io::ErrorKind::InvalidData)).class, FailureClass::Other);
    }

    #[test]
    fn http_statuses_come_from_the_type_or_the_text() {
        let mut e = remote("non-2xx status code: 503 Service Unavailable", None);
        assert_eq!(classify(&e).http_status, Some(503));
        if let Tier2Error::Unavailable { http_status, .. } = &mut e {
            *http_status = Some(500);
        }
        assert_eq!(classify(&e).http_status, Some(500));
    }

    #[test]
    fn object_store_errors_are_typed() {
        let src = || -> Box<dyn StdError + Send + Sync> { "boom".into() };
        let e = object_store::Error::NotFound { path: "p".into(), source: src() };
        assert_eq!(
            (Cause::class(&e), Cause::http_status(&e)),
            (Some(FailureClass::NotFound), Some(404))
        );
        let e = object_store::Error::PermissionDenied { path: "p".into(), source: src() };
        assert_eq!(Cause::class(&e), Some(FailureClass::PermissionDenied));
        let e = object_store::Error::Unauthenticated { path: "p".into(), source: src() };
        assert_eq!(Cause::class(&e), Some(FailureClass::AuthRejected));
        let http = object_store::client::HttpError::new(
            object_store::client::HttpErrorKind::Connect,
            io::Error::from(io::ErrorKind::ConnectionRefused),
        );
        let e = object_store::Error::Generic { store: "S3", source: Box::new(http) };
        assert_eq!(Cause::class(&e), Some(FailureClass::Unreachable));
        let e = object_store::Error::Generic { store: "S3", source: src() };
        assert_eq!(Cause::class(&e), None);
        // Wrapped in an io::Error by a body stream.
        let e = io::Error::other(object_store::Error::NotFound { path: "p".into(), source: src() });
        assert_eq!(Cause::class(&e), Some(FailureClass::NotFound));
        assert_eq!(
            Cause::class(&io::Error::from(io::ErrorKind::PermissionDenied)),
            Some(FailureClass::PermissionDenied)
        );
    }
}
