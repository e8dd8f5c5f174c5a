//! The libp2p host: TCP + noise + yamux, with Kademlia, identify, ping and the
//! metadata protocol.

use std::num::NonZeroUsize;
use std::time::Duration;

use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{identify, identity::Keypair, kad, noise, ping, request_response, tcp, yamux};
use libp2p::{StreamProtocol, Swarm, SwarmBuilder};

use crate::metadata::{MetaReply, MetaRequest, PROTOCOL};
use crate::{Config, Error};

/// The identify protocol name of rollcall hosts.
pub const IDENTIFY_PROTOCOL: &str = "/rollcall/id/1.0.0";

/// Everything the host speaks. (No Debug: the libp2p behaviours have none.)
#[allow(missing_debug_implementations)]
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Provider records and routing.
    pub kad: kad::Behaviour<MemoryStore>,
    /// Listen addresses and protocols of each peer.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// Agent id and metadata.
    pub meta: request_response::json::Behaviour<MetaRequest, MetaReply>,
}

/// Builds the host for a config and key.
pub fn build(cfg: &Config, key: Keypair) -> Result<Swarm<Behaviour>, Error> {
    let protocol =
        StreamProtocol::try_from_owned(cfg.protocol.clone()).map_err(|e| Error::Config {
            key: "protocol",
            reason: e.to_string(),
        })?;
    let max_meta = cfg.metadata_max_bytes;
    let ping_interval = cfg.ping_interval;
    let cfg = cfg.clone();
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| Error::Host(e.to_string()))?
        .with_behaviour(|key| {
            let id = key.public().to_peer_id();
            let mut kcfg = kad::Config::new(protocol);
            kcfg.set_provider_record_ttl(Some(cfg.provider_ttl))
                .set_provider_publication_interval(Some(cfg.republish_interval))
                .set_periodic_bootstrap_interval(Some(cfg.bootstrap_interval))
                .set_query_timeout(Duration::from_secs(20))
                .set_max_packet_size(64 * 1024);
            if let Some(k) = NonZeroUsize::new(20) {
                kcfg.set_replication_factor(k);
            }
            let store = MemoryStore::with_config(
                id,
                MemoryStoreConfig {
                    max_providers_per_key: cfg.max_providers_per_key,
                    ..Default::default()
                },
            );
            let mut kad = kad::Behaviour::with_config(id, store, kcfg);
            // A LAN/cluster node: answer DHT queries from the start.
            kad.set_mode(Some(kad::Mode::Server));
            let identify = identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                    .with_agent_version(format!("rollcall/{}", env!("CARGO_PKG_VERSION")))
                    .with_interval(cfg.ping_interval * 10),
            );
            let ping = ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(cfg.ping_interval)
                    .with_timeout(cfg.ping_interval * 2),
            );
            let codec = request_response::json::codec::Codec::default()
                .set_request_size_maximum(1024)
                .set_response_size_maximum(max_meta);
            let meta = request_response::Behaviour::with_codec(
                codec,
                [(
                    StreamProtocol::new(PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout((cfg.ping_interval * 3).max(Duration::from_secs(10))),
            );
            Behaviour {
                kad,
                identify,
                ping,
                meta,
            }
        })
        .map_err(|e| Error::Host(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle_timeout(ping_interval)))
        .build();
    Ok(swarm)
}

/// How long a connection no protocol uses stays open. Ping does not keep a
/// connection alive, and every connection is pinged: kad's queries open one
/// to most of a cluster, so at 100 hosts a long timeout meant ~100 pinged
/// connections per host. A provider's connection that closes is dialled
/// again at once (host.rs), so a short timeout costs a discoverer one
/// handshake per provider per timeout, not its liveness.
fn idle_timeout(ping_interval: Duration) -> Duration {
    (ping_interval * 5).max(Duration::from_secs(10))
}
