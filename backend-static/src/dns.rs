//! DNS names in addresses: which to resolve, the resolver, and turning answers into addresses.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use discovery_core::multiaddr::Protocol;
use discovery_core::Multiaddr;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};

/// Which answers a name's protocol accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// `/dns`: A and AAAA.
    Any,
    /// `/dns4`: A only.
    V4,
    /// `/dns6`: AAAA only.
    V6,
}

impl Family {
    fn accepts(self, ip: &IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }
}

/// What is known of one name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The last successful answer (kept when a later lookup fails).
    pub(crate) ips: Vec<IpAddr>,
    /// Why the last lookup failed, if it did.
    pub(crate) error: Option<String>,
}

/// An address with its DNS name replaced by every accepted answer; IP
/// addresses as they are; unresolved names give nothing.
pub(crate) fn expand(addr: &Multiaddr, answers: &HashMap<String, Answer>) -> Vec<Multiaddr> {
    let mut it = addr.iter();
    let (family, name) = match it.next() {
        Some(Protocol::Dns(n)) => (Family::Any, n),
        Some(Protocol::Dns4(n)) => (Family::V4, n),
        Some(Protocol::Dns6(n)) => (Family::V6, n),
        _ => return vec![addr.clone()],
    };
    let rest: Vec<Protocol<'_>> = it.collect();
    let Some(answer) = answers.get(&*name) else {
        return Vec::new();
    };
    answer
        .ips
        .iter()
        .filter(|ip| family.accepts(ip))
        .map(|ip| {
            let mut m = Multiaddr::from(*ip);
            for p in &rest {
                m.push(p.clone());
            }
            m
        })
        .collect()
}

/// Every name the addresses need, with the family each asks for (a name
/// asked as `/dns4` and `/dns` is resolved once, for both families).
pub(crate) fn names<'a>(addrs: impl Iterator<Item = &'a Multiaddr>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in addrs {
        if let Some(Protocol::Dns(n) | Protocol::Dns4(n) | Protocol::Dns6(n)) = a.iter().next() {
            if !out.iter().any(|o| *o == *n) {
                out.push(n.into_owned());
            }
        }
    }
    out
}

/// The resolver: the system's, or the configured servers over UDP with TCP
/// for truncated answers. Answers are not cached across refreshes (the
/// caller clears the cache), so a refresh sees the current records even when
/// their TTL is long (Docker's DNS answers with TTL 600).
pub(crate) fn build_resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
        Resolver::builder_tokio()
            .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?
    } else {
        let name_servers = servers
            .iter()
            .map(|sa| {
                let mut udp = ConnectionConfig::udp();
                udp.port = sa.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = sa.port();
                NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
            })
            .collect();
        Resolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), name_servers),
            TokioRuntimeProvider::default(),
        )
    };
    builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    builder
        .build()
        .map_err(|e| format!("cannot build the DNS resolver: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use discovery_core::parse_addr;

    fn a(s: &str) -> Multiaddr {
        parse_addr(s).expect("valid")
    }

    #[test]
    fn expands_every_answer_keeping_the_rest() {
        let mut answers = HashMap::new();
        answers.insert(
            "svc".to_owned(),
            Answer {
                ips: vec![
                    "10.0.0.1".parse().expect("ip"),
                    "fd00::1".parse().expect("ip"),
                ],
                error: None,
            },
        );
        let got = expand(
            &a("/dns/svc/tcp/9000/p2p/12D3KooWGBfVmtXPRmsNHU7bUbh6JXvMmzHjr8gnVtdQ1fpjUMGs"),
            &answers,
        );
        let got: Vec<String> = got.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            got,
            [
                "/ip4/10.0.0.1/tcp/9000/p2p/12D3KooWGBfVmtXPRmsNHU7bUbh6JXvMmzHjr8gnVtdQ1fpjUMGs",
                "/ip6/fd00::1/tcp/9000/p2p/12D3KooWGBfVmtXPRmsNHU7bUbh6JXvMmzHjr8gnVtdQ1fpjUMGs"
            ]
        );
        assert_eq!(
            expand(&a("/dns4/svc/tcp/1"), &answers),
            vec![a("/ip4/10.0.0.1/tcp/1")]
        );
        assert_eq!(
            expand(&a("/dns6/svc/tcp/1"), &answers),
            vec![a("/ip6/fd00::1/tcp/1")]
        );
        assert!(expand(&a("/dns/other/tcp/1"), &answers).is_empty());
        assert_eq!(expand(&a("10.1.1.1:5"), &answers), vec![a("10.1.1.1:5")]);
        assert_eq!(
            expand(&a("/dnsaddr/bootstrap.libp2p.io"), &answers),
            vec![a("/dnsaddr/bootstrap.libp2p.io")]
        );
    }

    #[test]
    fn names_are_deduplicated() {
        let addrs = [
            a("svc:1"),
            a("/dns4/svc/tcp/2"),
            a("10.0.0.1:1"),
            a("other:3"),
        ];
        assert_eq!(names(addrs.iter()), ["svc", "other"]);
    }
}
