//! The agent side: the announced identity (with the container id found at
//! start) and the body its `GET /health` endpoint answers with (served by the
//! `rollcall` binary).

use std::net::IpAddr;

use discovery_core::multiaddr::Protocol;
use discovery_core::{Alias, AliasKind, LocalPeer, Multiaddr};
use serde::Serialize;

use crate::config::Config;
use crate::StartError;

/// The announced peer: `[local]` plus the container id and host name of this process.
pub fn local_peer(cfg: &Config) -> Result<LocalPeer, StartError> {
    let local = cfg.local.as_ref().ok_or_else(|| {
        StartError::Local("this command needs a [local] section with at least `id`".into())
    })?;
    let mut peer = local
        .to_local_peer()
        .map_err(|e| StartError::Local(format!("local.addrs: {e}")))?;
    peer.addrs = expand_unspecified(&peer.addrs, &interface_ips());
    if local.detect_container {
        if let Some(id) = container_id() {
            push_alias(&mut peer, Alias::new(AliasKind::ContainerId, id));
        }
    }
    if let Some(h) = hostname() {
        push_alias(&mut peer, Alias::new(AliasKind::Hostname, h));
    }
    Ok(peer)
}

/// This host's non-loopback interface addresses.
fn interface_ips() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(ifs) => ifs
            .into_iter()
            .filter(|i| !i.is_loopback())
            .map(|i| i.ip())
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list network interfaces; 0.0.0.0 addresses are not expanded");
            Vec::new()
        }
    }
}

/// `0.0.0.0:PORT` (or `[::]:PORT`) means "every address of this host": a Swarm
/// replica cannot know its overlay IP before it starts. Each such address is
/// replaced by one per interface address of the same family, the rest kept.
pub fn expand_unspecified(addrs: &[Multiaddr], ips: &[IpAddr]) -> Vec<Multiaddr> {
    let mut out = Vec::new();
    for a in addrs {
        let mut parts = a.iter();
        let first = parts.next();
        let rest: Vec<Protocol<'_>> = parts.collect();
        let wants_v4 = match first {
            Some(Protocol::Ip4(ip)) if ip.is_unspecified() => true,
            Some(Protocol::Ip6(ip)) if ip.is_unspecified() => false,
            _ => {
                out.push(a.clone());
                continue;
            }
        };
        for ip in ips.iter().filter(|ip| ip.is_ipv4() == wants_v4) {
            let mut m = Multiaddr::from(*ip);
            for p in &rest {
                m.push(p.clone());
            }
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    out
}

fn push_alias(peer: &mut LocalPeer, alias: Alias) {
    if !peer.aliases.iter().any(|a| a.kind == alias.kind) {
        peer.aliases.push(alias);
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The id of the Docker container this process runs in, if any: from the
/// mount table (Docker bind-mounts `/var/lib/docker/containers/<id>/hostname`,
/// with cgroup v1 and v2 alike), then the cgroup path, then a 12-hex hostname
/// inside a container.
pub fn container_id() -> Option<String> {
    let from_text = |text: &str| -> Option<String> {
        text.split(|c: char| c == '/' || c.is_whitespace() || c == '-' || c == '.')
            .find(|part| part.len() == 64 && part.chars().all(|c| c.is_ascii_hexdigit()))
            .map(str::to_owned)
    };
    if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
        for line in m
            .lines()
            .filter(|l| l.contains("/containers/") && l.contains("/hostname"))
        {
            if let Some(id) = from_text(line) {
                return Some(id);
            }
        }
    }
    if let Ok(c) = std::fs::read_to_string("/proc/self/cgroup") {
        if let Some(id) = from_text(&c) {
            return Some(id);
        }
    }
    let in_container = std::path::Path::new("/.dockerenv").exists();
    hostname().filter(|h| in_container && h.len() == 12 && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The JSON `GET /health` returns: the agent's identity.
#[derive(Debug, Clone, Serialize)]
pub struct HealthBody {
    /// Agent id.
    pub id: String,
    /// Every identity claim.
    pub aliases: Vec<Alias>,
    /// libp2p peer id, when configured (CHORUS-style field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// Announced addresses.
    pub addrs: Vec<String>,
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

impl HealthBody {
    /// The health body of a local peer.
    pub fn of(peer: &LocalPeer) -> Self {
        HealthBody {
            id: peer.id.clone(),
            aliases: peer.all_aliases(),
            peer_id: peer
                .aliases
                .iter()
                .find(|a| a.kind == AliasKind::PeerId)
                .map(|a| a.value.clone()),
            addrs: peer.addrs.iter().map(|a| a.to_string()).collect(),
            name: peer.meta.name.clone(),
            status: peer.meta.status.clone(),
            capabilities: peer.meta.capabilities.clone(),
            labels: peer.meta.labels.clone().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_expand_to_every_interface_address_of_their_family() {
        let a = |s: &str| discovery_core::parse_addr(s).unwrap();
        let ips: Vec<IpAddr> = vec![
            "10.0.1.7".parse().unwrap(),
            "172.18.0.5".parse().unwrap(),
            "fd00::7".parse().unwrap(),
        ];
        let out = expand_unspecified(
            &[a("0.0.0.0:9000"), a("/dns/walnut/tcp/1"), a("[::]:9000")],
            &ips,
        );
        let shown: Vec<String> = out.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            shown,
            [
                "/ip4/10.0.1.7/tcp/9000",
                "/ip4/172.18.0.5/tcp/9000",
                "/dns/walnut/tcp/1",
                "/ip6/fd00::7/tcp/9000"
            ]
        );
        assert!(
            expand_unspecified(&[a("0.0.0.0:1")], &[]).is_empty(),
            "no interface: nothing to announce, not 0.0.0.0"
        );
    }
}
