//! Address parsing (the many forms users write) and the filter/rank policy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use multiaddr::{Multiaddr, Protocol};
use serde::{Deserialize, Serialize};

/// An address that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address `{input}`: {reason}")]
pub struct AddrError {
    /// What was given.
    pub input: String,
    /// Why it was refused.
    pub reason: String,
}

fn addr_err(input: &str, reason: impl Into<String>) -> AddrError {
    AddrError {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// Parses an address written as a multiaddr (`/ip4/10.0.1.7/tcp/9000`), as
/// `ip:port`, `[v6]:port`, `host:port`, a bare IP, or an `http(s)://host:port` URL.
pub fn parse_addr(input: &str) -> Result<Multiaddr, AddrError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(addr_err(input, "empty"));
    }
    if s.starts_with('/') {
        return Multiaddr::from_str(s).map_err(|e| addr_err(input, e.to_string()));
    }
    if let Some((scheme, rest)) = s.split_once("://") {
        let (default_port, last) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (80, Protocol::Http),
            "https" => (443, Protocol::Https),
            other => {
                return Err(addr_err(
                    input,
                    format!("unsupported scheme `{other}` (use http, https or a multiaddr)"),
                ))
            }
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or_default();
        let mut m = host_port(input, authority, Some(default_port))?;
        m.push(last);
        return Ok(m);
    }
    host_port(input, s, None)
}

fn host_port(input: &str, s: &str, default_port: Option<u16>) -> Result<Multiaddr, AddrError> {
    if let Ok(sa) = SocketAddr::from_str(s) {
        return Ok(Multiaddr::from(sa.ip()).with(Protocol::Tcp(sa.port())));
    }
    if let Ok(ip) = IpAddr::from_str(s.trim_start_matches('[').trim_end_matches(']')) {
        let m = Multiaddr::from(ip);
        return Ok(match default_port {
            Some(p) => m.with(Protocol::Tcp(p)),
            None => m,
        });
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => {
            let port = p.parse::<u16>().map_err(|_| {
                addr_err(input, format!("port `{p}` is not a number from 0 to 65535"))
            })?;
            (h, Some(port))
        }
        None => (s, default_port),
    };
    if host.is_empty() {
        return Err(addr_err(input, "missing host"));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err(addr_err(
            input,
            format!("`{host}` is neither an IP address nor a DNS name"),
        ));
    }
    let m = Multiaddr::empty().with(Protocol::Dns(host.to_owned().into()));
    Ok(match port {
        Some(p) => m.with(Protocol::Tcp(p)),
        None => m,
    })
}

/// The IP address a multiaddr starts with, if it starts with one.
pub fn leading_ip(addr: &Multiaddr) -> Option<IpAddr> {
    ip_of(addr.iter().next().as_ref())
}

/// The IP of a first protocol, if it is one.
fn ip_of(first: Option<&Protocol<'_>>) -> Option<IpAddr> {
    match first? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(*ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

/// A class of addresses that can be excluded from the roster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
#[non_exhaustive]
pub enum AddressClass {
    /// 127.0.0.0/8 and ::1: reachable only from the same host.
    Loopback,
    /// 169.254.0.0/16 and fe80::/10: valid on one link only.
    LinkLocal,
    /// RFC 1918 and fc00::/7 private ranges.
    Private,
    /// Names (`/dns`, `/dns4`, `/dns6`, `/dnsaddr`) not yet resolved to an IP.
    Dns,
}

impl TryFrom<String> for AddressClass {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "loopback" => Ok(AddressClass::Loopback),
            "link_local" => Ok(AddressClass::LinkLocal),
            "private" => Ok(AddressClass::Private),
            "dns" => Ok(AddressClass::Dns),
            other => Err(format!(
                "unknown address class `{other}`: use \"loopback\", \"link_local\", \"private\" or \"dns\""
            )),
        }
    }
}

impl AddressClass {
    /// Whether an address whose first protocol is `first` is of this class.
    fn matches_first(self, first: Option<&Protocol<'_>>) -> bool {
        let ip = ip_of(first);
        match self {
            AddressClass::Loopback => ip.is_some_and(|ip| ip.is_loopback()),
            AddressClass::LinkLocal => ip.is_some_and(|ip| match ip {
                IpAddr::V4(v4) => v4.is_link_local(),
                IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
            }),
            AddressClass::Private => ip.is_some_and(|ip| match ip {
                IpAddr::V4(v4) => v4.is_private(),
                IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
            }),
            AddressClass::Dns => matches!(
                first,
                Some(
                    Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_)
                )
            ),
        }
    }
}

/// Why an address was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// 0.0.0.0 or :: can never be dialled.
    Unspecified,
    /// Its class is excluded by configuration.
    Excluded(AddressClass),
}

/// Which addresses the roster keeps and in what order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Classes dropped.
    pub exclude: Vec<AddressClass>,
    /// Networks ranked first, in this order.
    pub prefer: Vec<IpNet>,
}

impl Default for AddressPolicy {
    fn default() -> Self {
        AddressPolicy {
            exclude: vec![AddressClass::Loopback, AddressClass::LinkLocal],
            prefer: Vec::new(),
        }
    }
}

impl AddressPolicy {
    /// Keeps nothing out and ranks nothing first.
    pub fn keep_all() -> Self {
        AddressPolicy {
            exclude: Vec::new(),
            prefer: Vec::new(),
        }
    }

    /// Whether an address is dropped, and why.
    pub fn check(&self, addr: &Multiaddr) -> Option<DropReason> {
        self.judge(addr).err()
    }

    /// The rank of an address: lower first. Preferred networks first, in
    /// configured order; then everything else.
    pub fn rank(&self, addr: &Multiaddr) -> usize {
        self.rank_first(addr.iter().next().as_ref())
    }

    /// `check` and `rank` at once, reading the address's first protocol once.
    pub(crate) fn judge(&self, addr: &Multiaddr) -> Result<usize, DropReason> {
        let first = addr.iter().next();
        let first = first.as_ref();
        if let Some(ip) = ip_of(first) {
            if ip.is_unspecified() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
                return Err(DropReason::Unspecified);
            }
        }
        match self.exclude.iter().find(|c| c.matches_first(first)) {
            Some(c) => Err(DropReason::Excluded(*c)),
            None => Ok(self.rank_first(first)),
        }
    }

    fn rank_first(&self, first: Option<&Protocol<'_>>) -> usize {
        match ip_of(first) {
            Some(ip) => self
                .prefer
                .iter()
                .position(|net| net.contains(&ip))
                .unwrap_or(self.prefer.len()),
            None => self.prefer.len() + 1,
        }
    }

    /// Sorts addresses by rank, keeping the given order within a rank.
    pub fn sort(&self, addrs: &mut [Multiaddr]) {
        if !self.prefer.is_empty() {
            addrs.sort_by_cached_key(|a| self.rank(a));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_written_form() {
        let cases = [
            ("/ip4/10.0.1.7/tcp/9000", "/ip4/10.0.1.7/tcp/9000"),
            ("10.0.1.7:9000", "/ip4/10.0.1.7/tcp/9000"),
            ("[::1]:9000", "/ip6/::1/tcp/9000"),
            ("10.0.1.7", "/ip4/10.0.1.7"),
            ("walnut:9000", "/dns/walnut/tcp/9000"),
            ("http://10.0.1.7:8080/health", "/ip4/10.0.1.7/tcp/8080/http"),
            ("http://chorus:8081", "/dns/chorus/tcp/8081/http"),
            ("https://example.org", "/dns/example.org/tcp/443/https"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_addr(input).unwrap().to_string(), want, "{input}");
        }
    }

    #[test]
    fn refuses_garbage_with_a_reason() {
        for bad in [
            "",
            "/ip4/999.1.1.1/tcp/1",
            "host:99999",
            "ftp://x",
            "a b:1",
            ":80",
            "/nonsense",
        ] {
            let err = parse_addr(bad).unwrap_err();
            assert!(!err.reason.is_empty(), "{bad}");
        }
    }

    #[test]
    fn policy_drops_and_ranks() {
        let p = AddressPolicy {
            exclude: vec![AddressClass::Loopback, AddressClass::LinkLocal],
            prefer: vec!["10.0.0.0/8".parse().unwrap()],
        };
        let a = |s: &str| parse_addr(s).unwrap();
        assert_eq!(p.check(&a("0.0.0.0:1")), Some(DropReason::Unspecified));
        assert_eq!(p.check(&a("[::]:1")), Some(DropReason::Unspecified));
        assert_eq!(
            p.check(&a("127.0.0.1:1")),
            Some(DropReason::Excluded(AddressClass::Loopback))
        );
        assert_eq!(
            p.check(&a("169.254.1.1:1")),
            Some(DropReason::Excluded(AddressClass::LinkLocal))
        );
        assert_eq!(
            p.check(&a("[fe80::1]:1")),
            Some(DropReason::Excluded(AddressClass::LinkLocal))
        );
        assert_eq!(p.check(&a("192.168.1.2:1")), None);
        let mut v = vec![a("192.168.1.2:1"), a("h:1"), a("10.0.0.5:1")];
        p.sort(&mut v);
        assert_eq!(v[0], a("10.0.0.5:1"));
        assert_eq!(v[2], a("h:1"));
        assert_eq!(AddressPolicy::keep_all().check(&a("127.0.0.1:1")), None);
        assert_eq!(
            AddressPolicy::keep_all().check(&a("0.0.0.0:1")),
            Some(DropReason::Unspecified)
        );
    }
}
