//! `mode = "dns"`: `tasks.<service>` through Docker's embedded DNS.
//!
//! Identity: a DNS answer is a list of IP addresses and nothing else, so each
//! observation is keyed by its IP and claims **no alias** — an IP is not an
//! identity (it is reused when a task is replaced), and a container id or task
//! id cannot be derived from it honestly. Such observations never merge with
//! another source's sighting of the same agent; pair DNS mode with a source
//! that carries identity (e.g. NATS announcements) if you need merged peers.
//!
//! Freshness: Docker's embedded DNS answers with a 600 s TTL, so the
//! resolver's cache is cleared before every poll; the poll interval is
//! `resync`. A UDP answer that is truncated (more addresses than fit the UDP
//! payload, ~30 without EDNS and ~75 with it) is retried over TCP, which the
//! embedded DNS also serves. Only IPv4 answers are used when there are any
//! (one address family per task, so no task is counted twice).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use discovery_core::{Metadata, Observation};
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use crate::observe::addr;
use crate::Error;

/// A resolver bound to one server, without caching between polls.
pub(crate) struct DnsLookup {
    resolver: TokioResolver,
    server: SocketAddr,
    timeout: Duration,
}

impl std::fmt::Debug for DnsLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsLookup")
            .field("server", &self.server)
            .finish()
    }
}

impl DnsLookup {
    pub(crate) fn new(server: SocketAddr, timeout: Duration) -> Result<Self, Error> {
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = server.port();
        let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
        let config = ResolverConfig::from_parts(None, Vec::new(), vec![ns]);
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 1;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        opts.ndots = 0;
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| Error::Dns {
                name: String::new(),
                server: server.to_string(),
                reason: format!("cannot build the resolver: {e}"),
            })?;
        Ok(DnsLookup {
            resolver,
            server,
            timeout,
        })
    }

    /// Every address of `tasks.<service>`; an empty list when the name does not exist.
    pub(crate) async fn task_ips(&self, service: &str) -> Result<Vec<IpAddr>, Error> {
        let name = format!("tasks.{service}.");
        self.resolver.clear_cache();
        // One bound for the whole lookup (A, then AAAA; UDP, then TCP).
        let Ok(answer) =
            tokio::time::timeout(self.timeout, self.resolver.lookup_ip(name.as_str())).await
        else {
            return Err(Error::Dns {
                name,
                server: self.server.to_string(),
                reason: format!(
                    "no answer within {}",
                    crate::docker::humantime_fmt(self.timeout)
                ),
            });
        };
        match answer {
            Ok(found) => {
                let mut ips: Vec<IpAddr> = found.iter().collect();
                ips.sort();
                ips.dedup();
                Ok(ips)
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(Error::Dns {
                name,
                server: self.server.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// One poll of every service: one observation per IP.
    pub(crate) async fn refresh(
        &self,
        services: &[String],
        port: Option<u16>,
    ) -> Result<(Vec<Observation>, Vec<String>), Error> {
        let mut out: Vec<Observation> = Vec::new();
        let mut empty = Vec::new();
        for svc in services {
            let ips = self.task_ips(svc).await?;
            if ips.is_empty() {
                empty.push(svc.clone());
            }
            for ip in ips {
                let key = ip.to_string();
                if out.iter().any(|o| o.key == key) {
                    continue;
                }
                let mut meta = Metadata::default();
                meta.labels.insert("swarm.service".into(), svc.clone());
                out.push(Observation {
                    key,
                    aliases: Vec::new(),
                    addrs: vec![addr(ip, port)],
                    meta,
                    ttl: None,
                });
            }
        }
        Ok((out, empty))
    }
}
