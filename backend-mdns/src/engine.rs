//! One run of the source: the responder (announce, answer, goodbye) and the
//! querier (query with backoff, read responses) over one shared socket.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use discovery_core::multiaddr::Protocol;
use discovery_core::{AliasKind, LocalPeer, Multiaddr, SourceContext};
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;
use tokio::time::{sleep_until, Instant};

use crate::cache::Peers;
use crate::config::{Config, Flavour};
use crate::drops::Drops;
use crate::interfaces::{self, Iface};
use crate::names::{self, ServiceName};
use crate::observe::{self, LIBP2P_META_PREFIX};
use crate::packet::{self, Announcement, Packet};
use crate::{socket, Error};

/// Least time between two multicast answers on one interface. RFC 6762 asks
/// for 1 s per record; a cold discoverer must not wait that long, so answers
/// are spaced by this and the ones in between folded into one.
const ANSWER_SPACING: Duration = Duration::from_millis(250);
/// The first query round counts as a sync after this long.
const SYNC_AFTER: Duration = Duration::from_millis(1000);
/// The SRV port go-libp2p announces (its addresses are in TXT).
const LIBP2P_SRV_PORT: u16 = 4001;

/// The local peer's announcement per interface.
struct Responder {
    by_iface: Vec<(Iface, Announcement)>,
    /// Names we answer for (service, instance, host), exact text.
    instance_text: String,
    host_text: String,
    last_answer: HashMap<Ipv4Addr, Instant>,
    pending: HashMap<Ipv4Addr, Instant>,
}

pub(crate) async fn run(cfg: Arc<Config>, ctx: &SourceContext) -> Result<(), Error> {
    let service = cfg.service()?;
    let ifaces = interfaces::select(&cfg.interfaces, cfg.allow_loopback)
        .map_err(|e| Error::NoInterface(format!("cannot list interfaces: {e}")))?;
    if ifaces.is_empty() {
        return Err(Error::NoInterface(format!(
            "no up, multicast-capable IPv4 interface matches {:?}",
            cfg.interfaces
        )));
    }
    let sock = socket::open(cfg.port, &ifaces)?;
    let drops = Drops::new(ctx.name.clone());
    let announce = ctx.announce().cloned();
    let discover = announce.is_none() || cfg.discover;
    let mut responder = match &announce {
        Some(local) => Some(responder(&cfg, &service, local, &ifaces, ctx)?),
        None => None,
    };
    tracing::info!(source = %ctx.name, service = %service.text, flavour = ?cfg.flavour,
        interfaces = ?ifaces.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        announce = responder.is_some(), discover, "mdns started");

    let start = Instant::now();
    // Unsolicited announcements: at once and after 1 s (RFC 6762 §8.3).
    let mut announce_at = responder.as_ref().map(|_| start);
    let mut announced = 0u32;
    let mut query_at = discover.then_some(start);
    let mut query_gap = Duration::from_secs(1);
    let mut sync_at = Some(start + SYNC_AFTER);
    let mut peers = Peers::new(cfg.max_peers);
    let mut buf = vec![0u8; 9000];
    let far = || Instant::now() + Duration::from_secs(3600);
    loop {
        let next_pending = responder
            .as_ref()
            .and_then(|r| r.pending.values().min().copied());
        let wake = [announce_at, query_at, sync_at, next_pending]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(far);
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = sleep_until(wake) => {}
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, SocketAddr::V4(src))) => {
                    let bytes = buf[..n].to_vec();
                    handle(&cfg, &service, &sock, &ifaces, &drops, ctx, &mut responder, &mut peers, discover, &bytes, src).await;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(source = %ctx.name, error = %e, "mdns receive failed"),
            },
        }
        let now = Instant::now();
        if announce_at.is_some_and(|t| t <= now) {
            if let Some(r) = &mut responder {
                for (iface, a) in &r.by_iface {
                    send_answer(&cfg, &service, &sock, iface, a, false, &drops).await;
                    r.last_answer.insert(iface.ip, now);
                }
            }
            announced += 1;
            announce_at = (announced < 2).then(|| now + Duration::from_secs(1));
        }
        if let Some(r) = &mut responder {
            let due: Vec<Ipv4Addr> = r
                .pending
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(ip, _)| *ip)
                .collect();
            for ip in due {
                r.pending.remove(&ip);
                if let Some((iface, a)) = r.by_iface.iter().find(|(i, _)| i.ip == ip) {
                    send_answer(&cfg, &service, &sock, iface, a, false, &drops).await;
                    r.last_answer.insert(ip, now);
                }
            }
        }
        if query_at.is_some_and(|t| t <= now) {
            for iface in &ifaces {
                match packet::query(&service, false) {
                    Ok(q) => {
                        if let Err(e) = socket::send_multicast(&sock, iface.ip, cfg.port, &q).await
                        {
                            tracing::debug!(source = %ctx.name, interface = %iface.name, error = %e, "cannot send query");
                        }
                    }
                    Err(e) => tracing::warn!(source = %ctx.name, error = %e, "cannot build query"),
                }
            }
            peers.prune(now);
            // Back off, but re-query before the shortest TTL runs out.
            let mut gap = query_gap;
            if let Some(left) = peers.next_expiry(now) {
                gap = gap.min((left / 2).max(Duration::from_secs(1)));
            }
            query_at = Some(now + gap);
            query_gap = (query_gap * 2).min(cfg.query_interval_max);
        }
        if sync_at.is_some_and(|t| t <= now) {
            sync_at = None;
            if ctx.events.synced().await.is_err() {
                return Ok(());
            }
        }
    }
    // Goodbyes: every record with TTL 0.
    if let Some(r) = &responder {
        for (iface, a) in &r.by_iface {
            send_answer(&cfg, &service, &sock, iface, a, true, &drops).await;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    cfg: &Config,
    service: &ServiceName,
    sock: &UdpSocket,
    ifaces: &[Iface],
    drops: &Drops,
    ctx: &SourceContext,
    responder: &mut Option<Responder>,
    peers: &mut Peers,
    discover: bool,
    bytes: &[u8],
    src: std::net::SocketAddrV4,
) {
    let parsed = match packet::parse(bytes, service) {
        Ok(p) => p,
        Err(_) => {
            drops.count("malformed");
            return;
        }
    };
    match parsed {
        Packet::Query {
            questions,
            has_authority,
        } => {
            let Some(r) = responder else { return };
            let ours: Vec<&(String, RecordType, bool)> = questions
                .iter()
                .filter(|(name, ty, _)| {
                    (*name == service.text && matches!(ty, RecordType::PTR | RecordType::ANY))
                        || *name == r.instance_text
                        || *name == r.host_text
                })
                .collect();
            if ours.is_empty() {
                return;
            }
            if has_authority {
                drops.count("probe");
                return;
            }
            let iface = interfaces::of_source(ifaces, *src.ip()).cloned();
            let targets: Vec<(Iface, Announcement)> = match &iface {
                Some(i) => r
                    .by_iface
                    .iter()
                    .filter(|(x, _)| x.ip == i.ip)
                    .cloned()
                    .collect(),
                None => r.by_iface.clone(),
            };
            if ours.iter().all(|(_, _, qu)| *qu) {
                // QU: answer the asker directly.
                for (_, a) in &targets {
                    if let Ok(pkts) = packet::response(service, a, false, cfg.max_packet_size) {
                        for p in pkts {
                            let _ = sock.send_to(&p, src).await;
                        }
                    }
                }
                return;
            }
            let now = Instant::now();
            for (i, a) in &targets {
                match r.last_answer.get(&i.ip) {
                    Some(last) if now < *last + ANSWER_SPACING => {
                        if r.pending.insert(i.ip, *last + ANSWER_SPACING).is_some() {
                            drops.count("rate_limited");
                        }
                    }
                    _ => {
                        send_answer(cfg, service, sock, i, a, false, drops).await;
                        r.last_answer.insert(i.ip, now);
                    }
                }
            }
        }
        Packet::Response(sightings) => {
            if !discover {
                return;
            }
            for s in sightings {
                if s.ttl == 0 {
                    let key = peers.goodbye(&s.instance).or_else(|| {
                        observe::observation(&s, cfg.flavour, service_is_tcp(service))
                            .ok()
                            .map(|o| o.key)
                    });
                    if let Some(key) = key {
                        tracing::debug!(source = %ctx.name, key = %key, "mdns goodbye");
                        let _ = ctx.events.remove(key).await;
                    }
                    continue;
                }
                let mut obs = match observe::observation(&s, cfg.flavour, service_is_tcp(service)) {
                    Ok(o) => o,
                    Err(reason) => {
                        drops.count(reason);
                        continue;
                    }
                };
                if obs.addrs.len() > cfg.max_addrs_per_peer {
                    drops.count("addr_limit");
                    obs.addrs.truncate(cfg.max_addrs_per_peer);
                }
                let ttl = obs.ttl.unwrap_or(cfg.ttl);
                if !peers.admit(&obs.key, &s.instance, ttl, Instant::now()) {
                    drops.count("peer_limit");
                    continue;
                }
                let _ = ctx.events.upsert(obs).await;
            }
        }
    }
}

fn service_is_tcp(service: &ServiceName) -> bool {
    service.text.contains("._tcp.")
}

async fn send_answer(
    cfg: &Config,
    service: &ServiceName,
    sock: &UdpSocket,
    iface: &Iface,
    a: &Announcement,
    goodbye: bool,
    drops: &Drops,
) {
    match packet::response(service, a, goodbye, cfg.max_packet_size) {
        Ok(pkts) => {
            for p in pkts {
                if let Err(e) = socket::send_multicast(sock, iface.ip, cfg.port, &p).await {
                    tracing::debug!(interface = %iface.name, error = %e, "cannot send mdns answer");
                }
            }
        }
        Err(e) => {
            drops.count("oversize");
            tracing::warn!(interface = %iface.name, error = %e, "cannot build mdns answer");
        }
    }
}

/// The announcement of `local` on each interface.
fn responder(
    cfg: &Config,
    service: &ServiceName,
    local: &LocalPeer,
    ifaces: &[Iface],
    ctx: &SourceContext,
) -> Result<Responder, Error> {
    let (instance, peer_id) = match cfg.flavour {
        Flavour::Libp2p => {
            let id = discovery_core::identity::load_or_create(&ctx.identity_file)
                .map_err(|e| Error::Identity(e.to_string()))?;
            (names::random_label(32, 63), Some(id.peer_id().to_string()))
        }
        Flavour::DnsSd => (
            local.id.clone(),
            local
                .aliases
                .iter()
                .find(|a| a.kind == AliasKind::PeerId)
                .map(|a| a.value.clone()),
        ),
    };
    let host_label = names::random_label(32, 63);
    let host = names::host(&host_label);
    let all_ips: Vec<IpAddr> = ifaces.iter().map(|i| IpAddr::V4(i.ip)).collect();
    let mut by_iface = Vec::new();
    for iface in ifaces {
        let addrs = iface_addrs(&local.addrs, iface, &all_ips);
        let (txt, host_txt, port) = match cfg.flavour {
            Flavour::Libp2p => {
                let pid = peer_id.clone().unwrap_or_default();
                let txt = addrs
                    .iter()
                    .map(|a| format!("dnsaddr={a}/p2p/{pid}"))
                    .collect();
                (
                    txt,
                    crate::meta::encode(local, Some(&pid), LIBP2P_META_PREFIX),
                    LIBP2P_SRV_PORT,
                )
            }
            Flavour::DnsSd => (
                crate::meta::encode(local, peer_id.as_deref(), ""),
                Vec::new(),
                addrs.iter().find_map(port_of).unwrap_or(0),
            ),
        };
        let a = Announcement {
            instance: instance.clone(),
            host: host.clone(),
            port,
            ips: vec![IpAddr::V4(iface.ip)],
            txt,
            host_txt,
            ttl: cfg.ttl.as_secs() as u32,
            host_ttl: cfg.host_ttl.as_secs() as u32,
            cache_flush: cfg.flavour == Flavour::DnsSd,
        };
        // Fails early if even the smallest packet is too large.
        packet::response(service, &a, false, cfg.max_packet_size)
            .map_err(|e| Error::Packet(e.to_string()))?;
        by_iface.push((iface.clone(), a));
    }
    let instance_text = service
        .instance(&instance)
        .map(|n| names::text(&n))
        .ok_or_else(|| Error::Packet(format!("`{instance}` cannot be a DNS label")))?;
    Ok(Responder {
        by_iface,
        instance_text,
        host_text: names::text(&host),
        last_answer: HashMap::new(),
        pending: HashMap::new(),
    })
}

/// The addresses to announce on `iface`: those with its IP; when none has it,
/// the transports of the others on its IP (never another interface's IP);
/// when there are no addresses at all, the bare interface IP.
pub(crate) fn iface_addrs(
    addrs: &[Multiaddr],
    iface: &Iface,
    all_ips: &[IpAddr],
) -> Vec<Multiaddr> {
    let ip_of = |a: &Multiaddr| match a.iter().next() {
        Some(Protocol::Ip4(ip)) => Some(IpAddr::V4(ip)),
        Some(Protocol::Ip6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    let mine: Vec<Multiaddr> = addrs
        .iter()
        .filter(|a| ip_of(a) == Some(IpAddr::V4(iface.ip)))
        .cloned()
        .collect();
    if !mine.is_empty() {
        return mine;
    }
    let mut out: Vec<Multiaddr> = Vec::new();
    for a in addrs {
        match ip_of(a) {
            Some(ip) if all_ips.contains(&ip) => continue,
            Some(IpAddr::V6(_)) => continue,
            Some(_) => {
                let mut m = Multiaddr::from(IpAddr::V4(iface.ip));
                for p in a.iter().skip(1) {
                    m.push(p);
                }
                if !out.contains(&m) {
                    out.push(m);
                }
            }
            None => {}
        }
    }
    if out.is_empty() {
        out.push(Multiaddr::from(IpAddr::V4(iface.ip)));
    }
    out
}

fn port_of(a: &Multiaddr) -> Option<u16> {
    a.iter().find_map(|p| match p {
        Protocol::Tcp(p) | Protocol::Udp(p) => Some(p),
        _ => None,
    })
}
