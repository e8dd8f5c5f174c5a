//! Pieces shared by the modes: ports and capabilities from labels, addresses,
//! and counted drops of bad input with rate-limited warnings.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use discovery_core::multiaddr::{Multiaddr, Protocol};
use tokio::time::Instant;

/// Bad input is counted and warned about at most once a minute per kind.
#[derive(Debug)]
pub(crate) struct Drops {
    source: Arc<str>,
    last_warn: HashMap<&'static str, Instant>,
}

const WARN_EVERY: Duration = Duration::from_secs(60);

impl Drops {
    pub(crate) fn new(source: Arc<str>) -> Self {
        Drops {
            source,
            last_warn: HashMap::new(),
        }
    }

    /// Counts one dropped item of kind `what` and maybe warns.
    pub(crate) fn drop(&mut self, what: &'static str, detail: &str) {
        metrics::counter!("rollcall_swarm_dropped_total", "source" => self.source.to_string(), "what" => what)
            .increment(1);
        let now = Instant::now();
        let due = self
            .last_warn
            .get(what)
            .is_none_or(|t| now.duration_since(*t) >= WARN_EVERY);
        if due {
            self.last_warn.insert(what, now);
            tracing::warn!(source = %self.source, what, detail, "dropped malformed input from Docker (further ones counted in rollcall_swarm_dropped_total)");
        }
    }

    /// Warns (rate-limited) about something that is not a drop.
    pub(crate) fn note(&mut self, what: &'static str, detail: &str) {
        let now = Instant::now();
        let due = self
            .last_warn
            .get(what)
            .is_none_or(|t| now.duration_since(*t) >= WARN_EVERY);
        if due {
            self.last_warn.insert(what, now);
            tracing::warn!(source = %self.source, what, detail, "swarm source");
        }
    }
}

/// The port from a label, if it holds a valid one.
pub(crate) fn port_from_labels(
    label: &str,
    maps: &[&HashMap<String, String>],
    drops: &mut Drops,
) -> Option<u16> {
    for m in maps {
        if let Some(v) = m.get(label) {
            match v.trim().parse::<u16>() {
                Ok(p) if p > 0 => return Some(p),
                _ => drops.drop(
                    "port_label",
                    &format!("label {label}={v:?} is not a port from 1 to 65535"),
                ),
            }
        }
    }
    None
}

/// Capabilities from the first map holding the label: comma separated,
/// trimmed, empty items and duplicates removed.
pub(crate) fn capabilities(label: &str, maps: &[&HashMap<String, String>]) -> Vec<String> {
    for m in maps {
        if let Some(v) = m.get(label) {
            let mut out: Vec<String> = Vec::new();
            for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                if !out.iter().any(|o| o == c) {
                    out.push(c.to_owned());
                }
            }
            return out;
        }
    }
    Vec::new()
}

/// Labels merged: later maps win.
pub(crate) fn merge_labels(maps: &[&HashMap<String, String>]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for m in maps {
        for (k, v) in m.iter() {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// `/ip4/IP/tcp/PORT`, or `/ip4/IP` without a port.
pub(crate) fn addr(ip: IpAddr, port: Option<u16>) -> Multiaddr {
    let m = Multiaddr::from(ip);
    match port {
        Some(p) => m.with(Protocol::Tcp(p)),
        None => m,
    }
}

/// An IP from Docker's `10.0.1.4/24` or `10.0.1.4` forms.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    let ip = s.split('/').next().unwrap_or_default().trim();
    ip.parse().ok().filter(|ip: &IpAddr| !ip.is_unspecified())
}

/// Where a network ranks in the `network` filter (`None`: not reported).
/// Without a filter every network but the routing mesh counts, in Docker's order.
pub(crate) fn network_rank(
    filter: &[String],
    name: &str,
    id: &str,
    ingress: bool,
) -> Option<usize> {
    if filter.is_empty() {
        return if ingress { None } else { Some(0) };
    }
    filter.iter().position(|f| {
        f == name || (!id.is_empty() && (f == id || (f.len() >= 12 && id.starts_with(f.as_str()))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn ports_capabilities_labels() {
        let mut d = Drops::new("t".into());
        let c = m(&[
            ("rollcall.port", "nope"),
            ("rollcall.capabilities", " go, ,db,go "),
        ]);
        let s = m(&[
            ("rollcall.port", "9000"),
            ("rollcall.capabilities", "other"),
            ("k", "s"),
        ]);
        assert_eq!(
            port_from_labels("rollcall.port", &[&c, &s], &mut d),
            Some(9000)
        );
        assert_eq!(port_from_labels("rollcall.port", &[&m(&[])], &mut d), None);
        assert_eq!(
            capabilities("rollcall.capabilities", &[&c, &s]),
            vec!["go", "db"]
        );
        assert!(capabilities("x", &[&c]).is_empty());
        let merged = merge_labels(&[&s, &c]);
        assert_eq!(merged["rollcall.port"], "nope");
        assert_eq!(merged["k"], "s");
    }

    #[test]
    fn addresses_and_networks() {
        assert_eq!(parse_ip("10.0.1.4/24"), Some("10.0.1.4".parse().unwrap()));
        assert_eq!(parse_ip("fd00::4/64"), Some("fd00::4".parse().unwrap()));
        assert_eq!(parse_ip("0.0.0.0/0"), None);
        assert_eq!(parse_ip("x"), None);
        assert_eq!(
            addr("10.0.1.4".parse().unwrap(), Some(9000)).to_string(),
            "/ip4/10.0.1.4/tcp/9000"
        );
        assert_eq!(
            addr("10.0.1.4".parse().unwrap(), None).to_string(),
            "/ip4/10.0.1.4"
        );
        assert_eq!(network_rank(&[], "ingress", "x", true), None);
        assert_eq!(network_rank(&[], "net", "x", false), Some(0));
        let f = vec!["b".to_owned(), "qx1vrc8g8yot".to_owned()];
        assert_eq!(network_rank(&f, "b", "zz", false), Some(0));
        assert_eq!(
            network_rank(&f, "a", "qx1vrc8g8yotu0keyhulcfwji", false),
            Some(1)
        );
        assert_eq!(network_rank(&f, "a", "zz", false), None);
        assert_eq!(
            network_rank(&["ingress".to_owned()], "ingress", "i", true),
            Some(0)
        );
    }
}
