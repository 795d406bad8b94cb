//! The server's outbound policy: which network endpoints the server itself may connect to
//! when it checks a tenant's storage target (`storage.allowed_endpoints`,
//! `storage.allow_public_endpoints`), and address blocks (`Cidr`) for other allow-lists.
//!
//! Loopback, private, link-local, shared (CGNAT), multicast and reserved addresses are
//! refused unless an entry allows them, so a tenant cannot point a target at the server's
//! own network (cloud metadata services, databases, admin ports) and read what answers.
//! Names are checked by the addresses they resolve to, at validation and again at every
//! connection (see `alto_tier2::OpenOptions::address_filter`), so a name that changes its
//! answer in between (DNS rebinding) gains nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

/// An address block: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| format!("{s:?} is not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        let c = canonical(net);
        if c != net && prefix >= 96 {
            return Ok(Cidr { net: c, prefix: prefix - 96 });
        }
        Ok(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped and NAT64-embedded IPv4 addresses as the IPv4 address they reach.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// Whether `ip` is anything but an ordinary public unicast address.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => {
            let [o0, o1, o2, _] = a.octets();
            a.is_unspecified()
                || a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o0 == 0
                || (o0 == 100 && (o1 & 0xc0) == 64) // shared address space (CGNAT)
                || (o0 == 192 && o1 == 0 && o2 == 0) // IETF protocol assignments
                || (o0 == 198 && (o1 & 0xfe) == 18) // benchmarking
                || o0 >= 240 // reserved
        }
        IpAddr::V6(a) => {
            let s0 = a.segments()[0];
            a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || (s0 & 0xfe00) == 0xfc00 // unique local
                || (s0 & 0xffc0) == 0xfe80 // link-local
                || (s0 & 0xffc0) == 0xfec0 // site-local (deprecated)
                || s0 == 0x2001 && a.segments()[1] == 0x0db8 // documentation
                || a.segments()[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Net(Cidr),
    Name(String),
    /// `*.corp.example`: names ending in `.corp.example`.
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    host: HostPattern,
    port: Option<u16>,
}

fn parse_entry(s: &str) -> Result<Entry, String> {
    let s = s.trim();
    let bad = |why: &str| format!("{s:?}: {why}");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| bad("missing `]`"))?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or_else(|| bad("expected `:PORT` after `]`"))?)),
        }
    } else if s.matches(':').count() > 1 {
        (s, None) // a bare IPv6 address or block
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None | Some("*") => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("bad port"))?),
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let host = if let Ok(net) = Cidr::parse(host) {
        HostPattern::Net(net)
    } else if let Some(sfx) = host.strip_prefix("*.") {
        HostPattern::Suffix(valid_name(sfx).ok_or_else(|| bad("not a host name pattern"))?)
    } else {
        HostPattern::Name(
            valid_name(host).ok_or_else(|| bad("not an IP address, block or host name"))?,
        )
    };
    Ok(Entry { host, port })
}

/// A DNS name, lower-cased, or `None` if it is not one. A name whose last label is numeric
/// is refused: URL parsers read such hosts (`2130706433`, `0x7f.1`) as IPv4 addresses.
fn valid_name(s: &str) -> Option<String> {
    let s = s.trim_end_matches('.').to_ascii_lowercase();
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    let last = s.rsplit('.').next().unwrap_or("");
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || last.starts_with("0x")
        || (last.len() > 1 && last.starts_with('0') && last.bytes().all(|b| b.is_ascii_hexdigit()));
    (ok && !numeric).then_some(s)
}

/// The host of a URL or location: a name or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(a) => write!(f, "{a}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// Splits `scheme://host[:port][/…]` into host and port (`default_port` when absent).
/// Refuses user information, and hosts that are neither an address nor a plain DNS name.
pub fn parse_authority(url: &str, default_port: u16) -> Result<(Host, u16, &str), String> {
    let rest = url.split_once("://").map(|(_, r)| r).ok_or("not a URL")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (auth, tail) = rest.split_at(end);
    if auth.contains(['@', '\\', '%']) || auth.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("the host must not contain credentials or escapes".into());
    }
    let (host, port) = if let Some(r) = auth.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or("missing `]` in the host")?;
        let ip: Ipv6Addr = h.parse().map_err(|_| "bad IPv6 address")?;
        (Host::Ip(IpAddr::V6(ip)), after.strip_prefix(':'))
    } else {
        let (h, p) = match auth.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (auth, None),
        };
        let host = match h.parse::<Ipv4Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V4(ip)),
            Err(_) => Host::Name(valid_name(h).ok_or("the host is not a valid name")?),
        };
        (host, p)
    };
    let port = match port {
        None | Some("") => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or("bad port")?,
    };
    Ok((host, port, tail))
}

/// How long a name may take to resolve while a request waits.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// `storage.allowed_endpoints` and `storage.allow_public_endpoints`, parsed.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    entries: Vec<Entry>,
    allow_public: bool,
}

impl EgressPolicy {
    /// The policy of `storage.allowed_endpoints` (each `host[:port]`, `*.suffix[:port]` or
    /// a CIDR) and `storage.allow_public_endpoints`.
    pub fn new(allowed_endpoints: &[String], allow_public: bool) -> Result<EgressPolicy, String> {
        let entries = allowed_endpoints.iter().map(|e| parse_entry(e)).collect::<Result<_, _>>()?;
        Ok(EgressPolicy { entries, allow_public })
    }

    fn listed(&self, name: Option<&str>, ip: Option<IpAddr>, port: u16) -> bool {
        self.entries.iter().any(|e| {
            e.port.is_none_or(|p| p == port)
                && match (&e.host, name, ip) {
                    (HostPattern::Net(n), _, Some(ip)) => n.contains(ip),
                    (HostPattern::Name(n), Some(name), _) => n == name,
                    (HostPattern::Suffix(s), Some(name), _) => {
                        name.len() > s.len() + 1
                            && name.ends_with(s.as_str())
                            && name.as_bytes()[name.len() - s.len() - 1] == b'.'
                    }
                    _ => false,
                }
        })
    }

    /// Whether the server may connect to `ip` (reached as `name`, if by name) on `port`.
    pub fn allows(&self, name: Option<&str>, ip: IpAddr, port: u16) -> bool {
        self.listed(name, Some(ip), port) || (self.allow_public && !is_internal(ip))
    }

    /// Checks `host:port`. A name is resolved only if `resolve` (validation does not touch
    /// the network; the check before connecting does); a name that does not resolve passes:
    /// nothing can be reached through it, and every connection checks again.
    pub async fn check(&self, host: &Host, port: u16, resolve: bool) -> Result<(), String> {
        let refused = |what: String| {
            Err(format!(
                "{what} is not allowed by the server's outbound policy (storage.allowed_endpoints)"
            ))
        };
        match host {
            Host::Ip(ip) => {
                if self.allows(None, *ip, port) {
                    Ok(())
                } else {
                    refused(format!("{host}:{port}"))
                }
            }
            Host::Name(name) => {
                if self.listed(Some(name), None, port) {
                    return Ok(());
                }
                if name == "localhost" || name.ends_with(".localhost") {
                    return if self.allows(Some(name), IpAddr::V4(Ipv4Addr::LOCALHOST), port) {
                        Ok(())
                    } else {
                        refused(format!("{name}:{port}"))
                    };
                }
                if !resolve {
                    return Ok(());
                }
                let lookup = tokio::net::lookup_host((name.as_str(), port));
                let Ok(Ok(addrs)) = tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await else {
                    return Ok(());
                };
                for a in addrs {
                    if !self.allows(Some(name), a.ip(), port) {
                        return refused(format!("{name}:{port} (which resolves to {})", a.ip()));
                    }
                }
                Ok(())
            }
        }
    }

    /// The filter `alto_tier2` applies to every address it connects to by name; a refusal
    /// sets `refused`.
    pub fn filter(
        self: &Arc<Self>,
        port: u16,
        refused: Arc<std::sync::atomic::AtomicBool>,
    ) -> alto_tier2::AddressFilter {
        let me = self.clone();
        alto_tier2::AddressFilter(Arc::new(move |name: &str, ip: IpAddr| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let ok = me.allows(Some(&name), ip, port);
            if !ok {
                tracing::warn!(%name, %ip, port, "storage check: address refused by the outbound policy");
                refused.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            ok
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str], public: bool) -> EgressPolicy {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        EgressPolicy::new(&entries, public).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_unless_listed() {
        let p = policy(&[], true);
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(!p.allows(None, ip(a), 80), "{a}");
        }
        assert!(p.allows(None, ip("93.184.216.34"), 443));
        assert!(p.allows(None, ip("2606:2800:220:1::1"), 443));
        assert!(!policy(&[], false).allows(None, ip("93.184.216.34"), 443));
        let p = policy(
            &["127.0.0.0/8", "[::1]", "10.0.0.0/8:9000", "minio.corp:9000", "*.corp.example"],
            true,
        );
        assert!(p.allows(None, ip("127.0.0.1"), 1));
        assert!(p.allows(None, ip("::ffff:127.0.0.2"), 1));
        assert!(p.allows(None, ip("::1"), 445));
        assert!(p.allows(None, ip("10.2.3.4"), 9000));
        assert!(!p.allows(None, ip("10.2.3.4"), 22));
        assert!(p.allows(Some("minio.corp"), ip("10.9.9.9"), 9000));
        assert!(!p.allows(Some("minio.corp"), ip("10.9.9.9"), 22));
        assert!(p.allows(Some("s3.corp.example"), ip("192.168.0.1"), 1));
        assert!(!p.allows(Some("corp.example"), ip("192.168.0.1"), 1));
        assert!(!p.allows(Some("evilcorp.example"), ip("192.168.0.1"), 1));
    }

    #[test]
    fn entries_and_urls_parse_strictly() {
        for bad in ["", "10.0.0.0/33", "a b", "[::1", "h:0", "h:x", "2130706433", "0x7f.1"] {
            assert!(parse_entry(bad).is_err(), "{bad}");
        }
        let (h, p, tail) = parse_authority("http://127.0.0.1:9000/b", 80).unwrap();
        assert_eq!((h, p, tail), (Host::Ip(ip("127.0.0.1")), 9000, "/b"));
        let (h, p, _) = parse_authority("https://S3.Example.com", 443).unwrap();
        assert_eq!((h, p), (Host::Name("s3.example.com".into()), 443));
        let (h, p, _) = parse_authority("smb://[::1]:4450/share", 445).unwrap();
        assert_eq!((h, p), (Host::Ip(ip("::1")), 4450));
        for bad in [
            "http://user:pw@10.0.0.1/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://017700000001/",
            "http://127.1/",
            "http://a%2eb/",
            "http://h:99999/",
            "nothing",
        ] {
            assert!(parse_authority(bad, 80).is_err(), "{bad}");
        }
        assert!(Cidr::parse("::ffff:10.0.0.0/104").unwrap().contains(ip("10.1.1.1")));
    }

    #[tokio::test]
    async fn names_are_checked_by_what_they_resolve_to() {
        let p = policy(&[], true);
        let err = p.check(&Host::Name("localhost".into()), 80, false).await.unwrap_err();
        assert!(err.contains("storage.allowed_endpoints"), "{err}");
        assert!(p.check(&Host::Ip(ip("169.254.169.254")), 80, false).await.is_err());
        let p = policy(&["127.0.0.1"], true);
        assert!(p.check(&Host::Name("localhost".into()), 80, true).await.is_ok());
    }
}
