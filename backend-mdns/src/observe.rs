//! A sighting (what one packet said of one instance) as an observation.

use std::net::IpAddr;
use std::time::Duration;

use discovery_core::multiaddr::Protocol;
use discovery_core::{Alias, Multiaddr, Observation};

use crate::config::Flavour;
use crate::meta;
use crate::packet::Sighting;

/// The prefix of rollcall's metadata strings in the libp2p flavour.
pub const LIBP2P_META_PREFIX: &str = "rollcall.";

/// Why a sighting was not turned into an observation (the drop reason label).
pub type DropReason = &'static str;

/// The observation for `s`, keyed by peer id (libp2p) or instance (DNS-SD).
pub fn observation(s: &Sighting, flavour: Flavour, tcp: bool) -> Result<Observation, DropReason> {
    let mut obs = match flavour {
        Flavour::Libp2p => libp2p(s)?,
        Flavour::DnsSd => dns_sd(s, tcp),
    };
    obs.ttl = Some(Duration::from_secs(u64::from(s.ttl)));
    Ok(obs)
}

/// Link-local IPv6 addresses are only usable with their interface: they get
/// `/ip6zone/<interface>` in front (the interface they were heard on).
pub fn zone_link_local(addrs: &mut [Multiaddr], iface: &str) {
    for a in addrs.iter_mut() {
        if let Some(Protocol::Ip6(ip)) = a.iter().next() {
            if crate::interfaces::is_link_local(ip) {
                let mut m = Multiaddr::empty().with(Protocol::Ip6zone(iface.to_owned().into()));
                for p in a.iter() {
                    m.push(p);
                }
                *a = m;
            }
        }
    }
}

fn libp2p(s: &Sighting) -> Result<Observation, DropReason> {
    let mut peer: Option<String> = None;
    let mut addrs = Vec::new();
    for t in &s.txt {
        let Some(text) = t.strip_prefix("dnsaddr=") else {
            continue;
        };
        let Ok(mut ma) = text.parse::<Multiaddr>() else {
            continue;
        };
        let Some(Protocol::P2p(id)) = ma.pop() else {
            continue;
        };
        let id = id.to_string();
        match &peer {
            None => peer = Some(id),
            // One instance, one peer: strings naming another are ignored.
            Some(p) if *p != id => continue,
            Some(_) => {}
        }
        if !addrs.contains(&ma) {
            addrs.push(ma);
        }
    }
    let peer = peer.ok_or("no_peer_id")?;
    let (meta, mut aliases) = meta::decode(&s.host_txt, LIBP2P_META_PREFIX);
    // The peer id comes from the dnsaddr strings, never from the metadata.
    aliases.retain(|a| a.kind != discovery_core::AliasKind::PeerId);
    aliases.insert(0, Alias::peer_id(peer.clone()));
    Ok(Observation {
        key: peer,
        aliases,
        addrs,
        meta,
        ttl: None,
    })
}

fn dns_sd(s: &Sighting, tcp: bool) -> Observation {
    let (mut meta, aliases) = meta::decode(&s.txt, "");
    if meta.name.is_none() {
        meta.name = Some(s.instance.clone());
    }
    let mut addrs = Vec::new();
    if let Some((_, port)) = s.srv {
        for ip in &s.ips {
            let mut m = Multiaddr::from(*ip);
            m.push(if tcp {
                Protocol::Tcp(port)
            } else {
                Protocol::Udp(port)
            });
            if !matches!(ip, IpAddr::V6(v6) if v6.is_unspecified()) && !addrs.contains(&m) {
                addrs.push(m);
            }
        }
    }
    Observation {
        key: s.instance.clone(),
        aliases,
        addrs,
        meta,
        ttl: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_gets_the_zone_it_was_heard_on() {
        let mut a: Vec<Multiaddr> = [
            "/ip6/fe80::1/tcp/9",
            "/ip6/fd00::1/tcp/9",
            "/ip4/10.0.0.1/tcp/9",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        zone_link_local(&mut a, "eth0");
        assert_eq!(a[0].to_string(), "/ip6zone/eth0/ip6/fe80::1/tcp/9");
        assert_eq!(a[1].to_string(), "/ip6/fd00::1/tcp/9");
        assert_eq!(a[2].to_string(), "/ip4/10.0.0.1/tcp/9");
    }
}
