//! Bootstrap entries: a multiaddr with or without `/p2p/<id>`, and peers that
//! other sources of the registry found (a `peer_id` alias plus addresses).

use discovery_core::{AliasKind, Roster};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use crate::Error;

/// One `bootstrap` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapAddr {
    /// Where to dial, without the `/p2p` part.
    pub addr: Multiaddr,
    /// The peer id when given; otherwise learnt from the handshake.
    pub peer: Option<PeerId>,
}

impl BootstrapAddr {
    /// Parses `/ip4/10.0.0.1/tcp/4001[/p2p/12D3...]`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::Addr {
            key: "bootstrap",
            value: s.to_owned(),
            reason,
        };
        let mut addr: Multiaddr = s
            .trim()
            .parse()
            .map_err(|e: libp2p::multiaddr::Error| bad(e.to_string()))?;
        let peer = match addr.iter().last() {
            Some(Protocol::P2p(id)) => {
                addr.pop();
                Some(id)
            }
            _ => None,
        };
        if !addr.iter().any(|p| matches!(p, Protocol::Tcp(_))) {
            return Err(bad(
                "needs a /tcp/PORT part (this host speaks TCP only)".into()
            ));
        }
        Ok(BootstrapAddr { addr, peer })
    }
}

/// Peers of the roster with a libp2p peer id and TCP addresses, except `me`.
pub fn from_roster(roster: &Roster, me: &PeerId) -> Vec<(PeerId, Vec<Multiaddr>)> {
    let mut out = Vec::new();
    for peer in &roster.peers {
        let Some(id) = peer
            .alias(AliasKind::PeerId)
            .and_then(|v| v.parse::<PeerId>().ok())
        else {
            continue;
        };
        if &id == me {
            continue;
        }
        let addrs: Vec<Multiaddr> = peer
            .addrs
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .map(|mut a| {
                if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
                    a.pop();
                }
                a
            })
            .filter(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))
            .collect();
        if !addrs.is_empty() {
            out.push((id, addrs));
        }
    }
    out
}
