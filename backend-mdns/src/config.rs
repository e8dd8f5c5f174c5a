//! `[sources.NAME] type = "mdns"`: the keys of this backend.

use std::time::Duration;

use discovery_core::signed::SigningConfig;
use serde::{Deserialize, Serialize};

use crate::names::ServiceName;
use crate::Error;

/// Which records are announced and how others' records are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flavour {
    /// libp2p mDNS as go-libp2p and rust-libp2p speak it: random instance
    /// names, TXT `dnsaddr=<multiaddr>/p2p/<peer id>`, the peer id as identity.
    #[default]
    Libp2p,
    /// Plain DNS-SD (avahi, Bonjour): the agent id as instance name, SRV, A
    /// and TXT `key=value` metadata.
    DnsSd,
}

/// The settings of one mdns source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `libp2p` (default) or `dns-sd`.
    #[serde(default)]
    pub flavour: Flavour,
    /// The service type, exactly as on the wire (case-sensitive). libp2p:
    /// `_p2p._udp.local` (default), or a go-libp2p tag plus `.local`, e.g.
    /// `CHORUS-peer-discovery.local`. dns-sd: `_name._tcp.local` (default
    /// `_rollcall._tcp.local`).
    #[serde(default)]
    pub service_name: Option<String>,
    /// Interfaces to use, by name (`eth0`: all its addresses) or CIDR
    /// (`10.77.0.0/16`, `fd00::/64`: the addresses inside); empty: every up,
    /// multicast-capable, non-loopback interface.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Use IPv4 (224.0.0.251, A records).
    #[serde(default = "default_true")]
    pub ipv4: bool,
    /// Use IPv6 (ff02::fb, AAAA records); skipped with a warning on a host
    /// without IPv6.
    #[serde(default = "default_true")]
    pub ipv6: bool,
    /// Also use loopback interfaces (development on one host).
    #[serde(default)]
    pub allow_loopback: bool,
    /// The UDP port (5353 for real mDNS; another only for isolated tests).
    #[serde(default = "default_port")]
    pub port: u16,
    /// TTL of the PTR, SRV and TXT records this agent announces (go-libp2p: 3200 s).
    /// Discoverers expire a peer after the TTL it announced.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// TTL of the A/AAAA records this agent announces (go-libp2p: 120 s).
    #[serde(default = "default_host_ttl", with = "humantime_serde")]
    pub host_ttl: Duration,
    /// The longest wait between two queries (queries start at once and back off to this).
    #[serde(default = "default_query_interval_max", with = "humantime_serde")]
    pub query_interval_max: Duration,
    /// Largest packet sent; bigger answers are split into self-contained packets (≤ 4096).
    #[serde(default = "default_max_packet_size")]
    pub max_packet_size: usize,
    /// Most peers kept per source; sightings of further peers are dropped and counted.
    #[serde(default = "default_max_peers")]
    pub max_peers: usize,
    /// Most addresses kept per peer.
    #[serde(default = "default_max_addrs_per_peer")]
    pub max_addrs_per_peer: usize,
    /// An agent also discovers the others (false: announce only).
    #[serde(default = "default_true")]
    pub discover: bool,
    /// `[sources.NAME.signing]`: sign every packet this agent sends with the
    /// identity key, and what a discoverer accepts (`require_signed`,
    /// `trusted_keys`, `tofu`). go-libp2p, rust-libp2p and avahi cannot sign:
    /// `require_signed` leaves them out.
    #[serde(default)]
    pub signing: SigningConfig,
}

fn default_port() -> u16 {
    5353
}
fn default_ttl() -> Duration {
    Duration::from_secs(3200)
}
fn default_host_ttl() -> Duration {
    Duration::from_secs(120)
}
fn default_query_interval_max() -> Duration {
    Duration::from_secs(60)
}
fn default_max_packet_size() -> usize {
    1400
}
fn default_max_peers() -> usize {
    4096
}
fn default_max_addrs_per_peer() -> usize {
    32
}
fn default_true() -> bool {
    true
}

impl Default for Config {
    fn default() -> Self {
        Config {
            flavour: Flavour::default(),
            service_name: None,
            interfaces: Vec::new(),
            ipv4: true,
            ipv6: true,
            allow_loopback: false,
            port: default_port(),
            ttl: default_ttl(),
            host_ttl: default_host_ttl(),
            query_interval_max: default_query_interval_max(),
            max_packet_size: default_max_packet_size(),
            max_peers: default_max_peers(),
            max_addrs_per_peer: default_max_addrs_per_peer(),
            discover: true,
            signing: SigningConfig::default(),
        }
    }
}

impl Config {
    /// The service name in use (the configured one or the flavour's default).
    pub fn service(&self) -> Result<ServiceName, Error> {
        let raw = self
            .service_name
            .clone()
            .unwrap_or_else(|| match self.flavour {
                Flavour::Libp2p => "_p2p._udp.local".into(),
                Flavour::DnsSd => "_rollcall._tcp.local".into(),
            });
        ServiceName::parse(&raw, self.flavour).map_err(|reason| Error::Config {
            key: "service_name",
            reason,
        })
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        self.service()?;
        let bad = |key, reason: &str| {
            Err(Error::Config {
                key,
                reason: reason.into(),
            })
        };
        if !(512..=4096).contains(&self.max_packet_size) {
            return bad(
                "max_packet_size",
                "must be between 512 and 4096 bytes (rust-libp2p reads at most 4096)",
            );
        }
        if self.ttl.as_secs() < 1 || self.ttl.as_secs() > u64::from(u32::MAX) {
            return bad("ttl", "must be at least 1s");
        }
        if self.host_ttl.as_secs() < 1 || self.host_ttl.as_secs() > u64::from(u32::MAX) {
            return bad("host_ttl", "must be at least 1s");
        }
        if self.query_interval_max < Duration::from_secs(1) {
            return bad("query_interval_max", "must be at least 1s");
        }
        if !self.ipv4 && !self.ipv6 {
            return bad("ipv4", "`ipv4` and `ipv6` cannot both be false");
        }
        if self.max_peers == 0 || self.max_addrs_per_peer == 0 {
            return bad("max_peers", "max_peers and max_addrs_per_peer must be > 0");
        }
        self.signing
            .validate()
            .map_err(|(key, reason)| Error::Config { key, reason })?;
        for i in &self.interfaces {
            if i.contains('/') && i.parse::<ipnet::IpNet>().is_err() {
                return bad("interfaces", &format!("`{i}` is neither a name nor a CIDR"));
            }
        }
        Ok(())
    }
}
