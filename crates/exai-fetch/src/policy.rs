//! The address policy: which hosts and addresses a fetch may reach.
//!
//! A daemon that fetches URLs named by others must not become a way into the machine's own
//! network (loopback services, the cloud metadata address, the LAN). Every address a request
//! would connect to is checked here: literal IP hosts before the request, DNS names after
//! resolution, inside the HTTP client's resolver ([`PolicyResolver`]), so a public name that
//! resolves to `127.0.0.1` is refused as well. The operator lifts the refusal per host with
//! `kb.fetch_allowed_hosts`.
//!
//! Allowed-host entries match the URL's host exactly (ASCII case-insensitive, no wildcards):
//! `localhost` allows that host on every port; `localhost:8080` only on port 8080; IPv6
//! literals are written `::1` (every port) or `[::1]:8080`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::error::FetchError;

/// The name of the setting that allows a refused host, quoted in every refusal.
pub const ALLOWED_HOSTS_SETTING: &str = "kb.fetch_allowed_hosts";

/// Why an address is refused, or `None` when it is a public unicast address.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified/this-network address (0.0.0.0/8)")
    } else if ip.is_loopback() {
        Some("loopback address (127.0.0.0/8)")
    } else if ip.is_private() {
        Some("private address (RFC 1918)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared/CGNAT address (100.64.0.0/10)")
    } else if ip.is_link_local() {
        Some("link-local address (169.254.0.0/16, includes the cloud metadata address)")
    } else if ip.is_multicast() {
        Some("multicast address (224.0.0.0/4)")
    } else if ip.is_broadcast() {
        Some("broadcast address")
    } else if a >= 240 {
        Some("reserved address (240.0.0.0/4)")
    } else {
        None
    }
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address wrapped in IPv6 reaches the IPv4 host: judge the IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refused_v4(v4);
    }
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("unspecified address (::)")
    } else if ip.is_loopback() {
        Some("loopback address (::1)")
    } else if is_ipv4_compatible(ip) {
        refused_v4(ipv4_tail(ip)).or(Some("deprecated IPv4-compatible IPv6 address (::/96)"))
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique local address (fc00::/7)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local address (fe80::/10)")
    } else if first & 0xffc0 == 0xfec0 {
        Some("site-local address (fec0::/10)")
    } else if ip.is_multicast() {
        Some("multicast address (ff00::/8)")
    } else if first == 0x0064 && ip.segments()[1] == 0xff9b {
        // NAT64 (64:ff9b::/96) translates to the embedded IPv4 address.
        refused_v4(ipv4_tail(ip))
    } else {
        None
    }
}

fn is_ipv4_compatible(ip: Ipv6Addr) -> bool {
    ip.segments()[..6].iter().all(|s| *s == 0)
}

fn ipv4_tail(ip: Ipv6Addr) -> Ipv4Addr {
    let o = ip.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

/// One `kb.fetch_allowed_hosts` entry: a host and, optionally, the only port it is allowed on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    host: String,
    port: Option<u16>,
}

impl AllowedHost {
    fn parse(entry: &str) -> Result<Self, FetchError> {
        let entry = entry.trim();
        let invalid = || {
            FetchError::InvalidPolicy(format!("allowed host {entry:?} is not HOST or HOST:PORT"))
        };
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (host, tail) = rest.split_once(']').ok_or_else(invalid)?;
            let port = match tail.strip_prefix(':') {
                Some(p) => Some(p.parse().map_err(|_| invalid())?),
                None if tail.is_empty() => None,
                None => return Err(invalid()),
            };
            (host.to_string(), port)
        } else if entry.matches(':').count() == 1 {
            let (host, port) = entry.split_once(':').ok_or_else(invalid)?;
            (host.to_string(), Some(port.parse().map_err(|_| invalid())?))
        } else {
            (entry.to_string(), None)
        };
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(Self {
            host: normalise_host(&host),
            port,
        })
    }
}

/// Hosts as they compare: lowercase, IPv6 without brackets, IP literals in canonical form.
fn normalise_host(host: &str) -> String {
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => bare,
    }
}

/// The operator's exceptions to the address policy.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    entries: Vec<AllowedHost>,
}

impl AllowList {
    /// Parses `kb.fetch_allowed_hosts` entries (see the module documentation for the syntax).
    pub fn new(entries: &[String]) -> Result<Self, FetchError> {
        let entries = entries
            .iter()
            .map(|e| AllowedHost::parse(e))
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether `host` on `port` is listed.
    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let host = normalise_host(host);
        self.entries
            .iter()
            .any(|e| e.host == host && (e.port.is_none() || e.port == port))
    }

    /// Whether `host` is listed on any port: the resolver sees names without ports, and the
    /// port is checked against the URL before the request is made.
    fn allows_name(&self, host: &str) -> bool {
        let host = normalise_host(host);
        self.entries.iter().any(|e| e.host == host)
    }

    /// Checks a URL before it is requested: its scheme and, for literal IP hosts, the address.
    /// DNS names are checked again after resolution by [`PolicyResolver`].
    pub fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::UnsupportedScheme {
                url: url.to_string(),
            });
        }
        let host = url
            .host()
            .ok_or_else(|| FetchError::InvalidUrl(format!("{url} has no host")))?;
        let host_str = url.host_str().unwrap_or_default();
        if self.allows(host_str, url.port_or_known_default()) {
            return Ok(());
        }
        let ip = match host {
            Host::Ipv4(v4) => IpAddr::V4(v4),
            Host::Ipv6(v6) => IpAddr::V6(v6),
            Host::Domain(name) => {
                if self.allows_name(name) {
                    // Listed, but on another port.
                    return Err(FetchError::refused_port(name, url.port_or_known_default()));
                }
                return Ok(());
            }
        };
        match refused_range(ip) {
            Some(range) => Err(FetchError::refused(host_str, ip, range)),
            None => Ok(()),
        }
    }

    /// Resolves `host` the way the HTTP client will and refuses it when any address is refused.
    /// Used where the connection is made by someone else (the Chromium renderer).
    pub async fn resolve_checked(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, FetchError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| FetchError::Network {
                url: host.to_string(),
                message: format!("cannot resolve {host}: {e}"),
            })?
            .collect();
        if !self.allows(host, Some(port)) {
            check_addresses(host, &addrs)?;
        }
        Ok(addrs)
    }
}

fn check_addresses(host: &str, addrs: &[SocketAddr]) -> Result<(), FetchError> {
    for addr in addrs {
        if let Some(range) = refused_range(addr.ip()) {
            return Err(FetchError::refused(host, addr.ip(), range));
        }
    }
    Ok(())
}

/// The HTTP client's DNS resolver: system resolution, then the address policy on every address.
/// Refusing when any address is refused (not only the first) stops a name from listing a public
/// address first and an inner one second.
#[derive(Debug, Clone)]
pub(crate) struct PolicyResolver {
    allow: Arc<AllowList>,
}

impl PolicyResolver {
    pub(crate) fn new(allow: Arc<AllowList>) -> Self {
        Self { allow }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = Arc::clone(&self.allow);
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow.allows_name(&host) {
                check_addresses(&host, &addrs)?;
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        refused_range(s.parse().unwrap()).is_some()
    }

    #[test]
    fn every_refused_range_is_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "169.254.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "169.253.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2001:db8::1",
        ] {
            assert!(!refused(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn allow_list_matches_host_and_optional_port() {
        let list = AllowList::new(&[
            "LocalHost".into(),
            "127.0.0.1:8080".into(),
            "[::1]:9000".into(),
            "::2".into(),
        ])
        .unwrap();
        assert!(list.allows("localhost", Some(1)));
        assert!(list.allows("127.0.0.1", Some(8080)));
        assert!(!list.allows("127.0.0.1", Some(8081)));
        assert!(list.allows("[::1]", Some(9000)));
        assert!(!list.allows("::1", Some(80)));
        assert!(list.allows("::2", Some(80)));
        assert!(!list.allows("localhost.example", Some(80)));
        assert!(AllowList::new(&["host:port".into()]).is_err());
        assert!(AllowList::new(&["".into()]).is_err());
    }

    #[test]
    fn literal_ip_urls_are_refused_unless_listed() {
        let none = AllowList::default();
        for url in [
            "http://127.0.0.1/",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/",
            "http://0x7f000001/",
        ] {
            let err = none
                .check_url(&Url::parse(url).unwrap())
                .unwrap_err()
                .to_string();
            assert!(err.contains(ALLOWED_HOSTS_SETTING), "{url}: {err}");
        }
        let list = AllowList::new(&["127.0.0.1".into()]).unwrap();
        assert!(
            list.check_url(&Url::parse("http://127.0.0.1:3000/").unwrap())
                .is_ok()
        );
        assert!(
            none.check_url(&Url::parse("ftp://example.com/").unwrap())
                .is_err()
        );
        assert!(
            none.check_url(&Url::parse("file:///etc/passwd").unwrap())
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused() {
        let none = Arc::new(AllowList::default());
        let err = PolicyResolver::new(Arc::clone(&none))
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("localhost") && err.contains(ALLOWED_HOSTS_SETTING),
            "{err}"
        );
        let allowed = Arc::new(AllowList::new(&["localhost:1234".into()]).unwrap());
        let addrs: Vec<_> = PolicyResolver::new(allowed)
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
        assert!(none.resolve_checked("localhost", 80).await.is_err());
    }
}
