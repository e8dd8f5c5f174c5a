//! One run of the source: the responder (announce, answer, goodbye) and the
//! querier (query with backoff, read responses) over one shared socket.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use discovery_core::multiaddr::Protocol;
use discovery_core::{AliasKind, LocalPeer, Multiaddr, SourceContext};
use hickory_proto::rr::RecordType;
use tokio::time::{sleep_until, Instant};

use crate::cache::Peers;
use crate::config::{Config, Flavour};
use crate::drops::Drops;
use crate::interfaces::{self, Iface};
use crate::names::{self, ServiceName};
use crate::observe::{self, LIBP2P_META_PREFIX};
use crate::packet::{self, Announcement, BuildError, Packet};
use crate::signing::{self, Signed, Signer};
use crate::socket::{self, Sockets};
use crate::Error;
use discovery_core::signed::{Reason, Verifier};

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
    /// Per (interface name, IPv6?): when it was last answered, and a folded
    /// answer waiting for its turn.
    last_answer: HashMap<(String, bool), Instant>,
    pending: HashMap<(String, bool), Instant>,
    /// Signs every packet, with `signing.sign`.
    signer: Option<Arc<Signer>>,
}

/// What a run keeps from its source across restarts.
pub(crate) struct Keep<'a> {
    /// Checks received sightings.
    pub verifier: &'a Verifier,
    /// The signer, made on first use (with `signing.sign`).
    pub signer: &'a std::sync::OnceLock<Arc<Signer>>,
}

pub(crate) async fn run(
    cfg: Arc<Config>,
    ctx: &SourceContext,
    keep: Keep<'_>,
) -> Result<(), Error> {
    let service = cfg.service()?;
    let ifaces = interfaces::select(&cfg.interfaces, cfg.allow_loopback, cfg.ipv4, cfg.ipv6)
        .map_err(|e| Error::NoInterface(format!("cannot list interfaces: {e}")))?;
    if ifaces.is_empty() {
        return Err(Error::NoInterface(format!(
            "no up, multicast-capable interface with an address of an enabled family (ipv4 = {}, ipv6 = {}) matches {:?}",
            cfg.ipv4, cfg.ipv6, cfg.interfaces
        )));
    }
    let sock = socket::open(cfg.port, &ifaces)?;
    let drops = Drops::new(ctx.name.clone());
    let announce = ctx.announce().cloned();
    let discover = announce.is_none() || cfg.discover;
    let mut responder = match &announce {
        Some(local) => Some(responder(&cfg, &service, local, &ifaces, ctx, keep.signer)?),
        None => None,
    };
    tracing::info!(source = %ctx.name, service = %service.text, flavour = ?cfg.flavour,
        interfaces = ?ifaces.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        families = ?sock.families(),
        announce = responder.is_some(), discover, "mdns started");

    let start = Instant::now();
    // Unsolicited announcements: at once and after 1 s (RFC 6762 §8.3).
    let mut announce_at = responder.as_ref().map(|_| start);
    let mut announced = 0u32;
    let mut query_at = discover.then_some(start);
    let mut query_gap = Duration::from_secs(1);
    let mut sync_at = Some(start + SYNC_AFTER);
    let mut peers = Peers::new(cfg.max_peers);
    let mut buf4 = vec![0u8; 9000];
    let mut buf6 = vec![0u8; 9000];
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
            r = sock.recv(&mut buf4, &mut buf6) => match r {
                Ok((v6, n, src)) => {
                    let bytes = if v6 { buf6[..n].to_vec() } else { buf4[..n].to_vec() };
                    handle(&cfg, &service, &sock, &ifaces, &drops, ctx, keep.verifier, &mut responder, &mut peers, discover, &bytes, src).await;
                }
                Err(e) => tracing::debug!(source = %ctx.name, error = %e, "mdns receive failed"),
            },
        }
        let now = Instant::now();
        if announce_at.is_some_and(|t| t <= now) {
            if let Some(r) = &mut responder {
                for (iface, a) in &r.by_iface {
                    send_answer(
                        &cfg,
                        &service,
                        &sock,
                        iface,
                        None,
                        a,
                        false,
                        r.signer.as_deref(),
                        &drops,
                    )
                    .await;
                    r.last_answer.insert((iface.name.clone(), false), now);
                    r.last_answer.insert((iface.name.clone(), true), now);
                }
            }
            announced += 1;
            announce_at = (announced < 2).then(|| now + Duration::from_secs(1));
        }
        if let Some(r) = &mut responder {
            let due: Vec<(String, bool)> = r
                .pending
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for key in due {
                r.pending.remove(&key);
                if let Some((iface, a)) = r.by_iface.iter().find(|(i, _)| i.name == key.0) {
                    send_answer(
                        &cfg,
                        &service,
                        &sock,
                        iface,
                        Some(key.1),
                        a,
                        false,
                        r.signer.as_deref(),
                        &drops,
                    )
                    .await;
                    r.last_answer.insert(key, now);
                }
            }
        }
        if query_at.is_some_and(|t| t <= now) {
            for iface in &ifaces {
                match packet::query(&service, false) {
                    Ok(q) => {
                        if let Err(e) = sock.send_multicast(iface, None, &q).await {
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
            send_answer(
                &cfg,
                &service,
                &sock,
                iface,
                None,
                a,
                true,
                r.signer.as_deref(),
                &drops,
            )
            .await;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    cfg: &Config,
    service: &ServiceName,
    sock: &Sockets,
    ifaces: &[Iface],
    drops: &Drops,
    ctx: &SourceContext,
    verifier: &Verifier,
    responder: &mut Option<Responder>,
    peers: &mut Peers,
    discover: bool,
    bytes: &[u8],
    src: SocketAddr,
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
            let iface = interfaces::of_source(ifaces, src).cloned();
            // Each interface answers with its own records only.
            let targets: Vec<(Iface, Announcement)> = match &iface {
                Some(i) => r
                    .by_iface
                    .iter()
                    .filter(|(x, _)| x.name == i.name)
                    .cloned()
                    .collect(),
                None => r.by_iface.clone(),
            };
            let v6 = src.is_ipv6();
            if ours.iter().all(|(_, _, qu)| *qu) {
                // QU: answer the asker directly.
                for (_, a) in &targets {
                    if let Ok(pkts) = build(cfg, service, a, false, r.signer.as_deref()) {
                        for p in pkts {
                            let _ = sock.send_to(&p, src).await;
                        }
                    }
                }
                return;
            }
            let now = Instant::now();
            for (i, a) in &targets {
                // Answered on the family the query came on.
                let key = (i.name.clone(), v6);
                match r.last_answer.get(&key) {
                    Some(last) if now < *last + ANSWER_SPACING => {
                        let at = *last + ANSWER_SPACING;
                        if r.pending.insert(key, at).is_some() {
                            drops.count("rate_limited");
                        }
                    }
                    _ => {
                        send_answer(
                            cfg,
                            service,
                            sock,
                            i,
                            Some(v6),
                            a,
                            false,
                            r.signer.as_deref(),
                            drops,
                        )
                        .await;
                        r.last_answer.insert(key, now);
                    }
                }
            }
        }
        Packet::Response(sightings) => {
            if !discover {
                return;
            }
            for s in sightings {
                let parsed = observe::observation(&s, cfg.flavour, service_is_tcp(service));
                if !accept(cfg, service, verifier, &s, parsed.as_ref().ok()) {
                    // Counted by reason in rollcall_records_rejected_total.
                    continue;
                }
                if s.ttl == 0 {
                    let key = peers
                        .goodbye(&s.instance)
                        .or_else(|| parsed.as_ref().ok().map(|o| o.key.clone()));
                    if let Some(key) = key {
                        tracing::debug!(source = %ctx.name, key = %key, "mdns goodbye");
                        let _ = ctx.events.remove(key).await;
                    }
                    continue;
                }
                let mut obs = match parsed {
                    Ok(o) => o,
                    Err(reason) => {
                        drops.count(reason);
                        continue;
                    }
                };
                let via = interfaces::of_source(ifaces, src);
                if let Some(i) = via {
                    observe::zone_link_local(&mut obs.addrs, &i.name);
                }
                if obs.addrs.len() > cfg.max_addrs_per_peer {
                    drops.count("addr_limit");
                    obs.addrs.truncate(cfg.max_addrs_per_peer);
                }
                let ttl = obs.ttl.unwrap_or(cfg.ttl);
                let now = Instant::now();
                if !peers.admit(&obs.key, &s.instance, ttl, now) {
                    drops.count("peer_limit");
                    continue;
                }
                let via = via.map_or("", |i| i.name.as_str());
                obs.addrs = peers.merge_addrs(
                    &obs.key,
                    via,
                    std::mem::take(&mut obs.addrs),
                    now + ttl,
                    now,
                    cfg.max_addrs_per_peer,
                );
                let _ = ctx.events.upsert(obs).await;
            }
        }
    }
}

/// Whether a sighting passes the source's signature checks. The claims are
/// what the packet says: the agent id (or the key), and the peer id of the
/// `dnsaddr` strings (libp2p) or of DNS-SD's `peer_id=` strings, all of
/// which must be the signer's.
fn accept(
    cfg: &Config,
    service: &ServiceName,
    verifier: &Verifier,
    s: &packet::Sighting,
    obs: Option<&discovery_core::Observation>,
) -> bool {
    let (host, port) = s.srv.as_ref().map_or(("", 0), |(h, p)| (h.as_str(), *p));
    let signed = Signed {
        flavour: cfg.flavour,
        service: &service.text,
        instance: &s.instance,
        host,
        port,
        ips: &s.ips,
        goodbye: s.ttl == 0,
        txt: &s.txt,
        host_txt: &s.host_txt,
    };
    let agent_id = obs
        .and_then(|o| o.aliases.iter().find(|a| a.kind == AliasKind::AgentId))
        .map(|a| a.value.as_str())
        .or(obs.map(|o| o.key.as_str()))
        .unwrap_or(&s.instance);
    let mut claimed = obs
        .into_iter()
        .flat_map(|o| o.aliases.iter())
        .filter(|a| a.kind == AliasKind::PeerId)
        .map(|a| a.value.as_str());
    let first = claimed.next();
    match signing::verify(verifier, &signed, agent_id, first) {
        Err(_) => false,
        Ok(v) => {
            let Some(signer) = v.peer_id.map(|p| p.to_string()) else {
                return true;
            };
            if claimed.any(|p| p != signer) {
                verifier.reject(Reason::KeyMismatch, agent_id);
                return false;
            }
            true
        }
    }
}

/// The packets of `a`, each signed on its own when there is a signer.
fn build(
    cfg: &Config,
    service: &ServiceName,
    a: &Announcement,
    goodbye: bool,
    signer: Option<&Signer>,
) -> Result<Vec<Vec<u8>>, BuildError> {
    let Some(signer) = signer else {
        return packet::response(service, a, goodbye, cfg.max_packet_size);
    };
    let host = names::text(&a.host);
    let seal = |txt: &[String], goodbye: bool| {
        let strings = signer.strings(&Signed {
            flavour: cfg.flavour,
            service: &service.text,
            instance: &a.instance,
            host: &host,
            port: a.port,
            ips: &a.ips,
            goodbye,
            txt,
            host_txt: &a.host_txt,
        });
        match cfg.flavour {
            Flavour::Libp2p => (Vec::new(), strings),
            Flavour::DnsSd => (strings, Vec::new()),
        }
    };
    packet::response_sealed(service, a, goodbye, cfg.max_packet_size, Some(&seal))
}

fn service_is_tcp(service: &ServiceName) -> bool {
    service.text.contains("._tcp.")
}

/// `family`: `Some(v6)` for that family only, `None` for both.
#[allow(clippy::too_many_arguments)]
async fn send_answer(
    cfg: &Config,
    service: &ServiceName,
    sock: &Sockets,
    iface: &Iface,
    family: Option<bool>,
    a: &Announcement,
    goodbye: bool,
    signer: Option<&Signer>,
    drops: &Drops,
) {
    match build(cfg, service, a, goodbye, signer) {
        Ok(pkts) => {
            for p in pkts {
                if let Err(e) = sock.send_multicast(iface, family, &p).await {
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
    keep_signer: &std::sync::OnceLock<Arc<Signer>>,
) -> Result<Responder, Error> {
    let identity = || {
        discovery_core::identity::load_or_create(&ctx.identity_file)
            .map_err(|e| Error::Identity(e.to_string()))
    };
    let signer = match (cfg.signing.sign, keep_signer.get()) {
        (false, _) => None,
        (true, Some(s)) => Some(s.clone()),
        (true, None) => {
            let id = identity()?;
            Some(
                keep_signer
                    .get_or_init(|| Arc::new(Signer::new(id)))
                    .clone(),
            )
        }
    };
    let (instance, peer_id) = match cfg.flavour {
        Flavour::Libp2p => {
            // The signer already holds the key: read the file only without one.
            let peer_id = match &signer {
                Some(s) => s.peer_id(),
                None => identity()?.peer_id().to_string(),
            };
            (names::random_label(32, 63), Some(peer_id))
        }
        Flavour::DnsSd => (
            local.id.clone(),
            // A signing agent's peer id is its key's (the signature proves it).
            signer.as_ref().map(|s| s.peer_id()).or_else(|| {
                local
                    .aliases
                    .iter()
                    .find(|a| a.kind == AliasKind::PeerId)
                    .map(|a| a.value.clone())
            }),
        ),
    };
    let host_label = names::random_label(32, 63);
    let host = names::host(&host_label);
    let all_ips: Vec<IpAddr> = ifaces.iter().flat_map(Iface::ips).collect();
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
            ips: iface.ips(),
            txt,
            host_txt,
            ttl: cfg.ttl.as_secs() as u32,
            host_ttl: cfg.host_ttl.as_secs() as u32,
            cache_flush: cfg.flavour == Flavour::DnsSd,
        };
        // Fails early if even the smallest packet is too large.
        build(cfg, service, &a, false, signer.as_deref())
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
        signer,
    })
}

/// The addresses to announce on `iface`: those with one of its IPs; when
/// none has, the others' transports moved onto its IPs of the same family
/// (onto the other family when it has none of that one; IPv6: not link-local
/// when it has another), never another interface's IP; when there are no
/// addresses at all, its bare IPs.
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
        .filter(|a| ip_of(a).is_some_and(|ip| iface.has(ip)))
        .cloned()
        .collect();
    if !mine.is_empty() {
        return mine;
    }
    let v4: Vec<IpAddr> = iface.v4.iter().map(|(ip, _)| IpAddr::V4(*ip)).collect();
    let routable: Vec<IpAddr> = iface
        .v6
        .iter()
        .filter(|(ip, _)| !interfaces::is_link_local(*ip))
        .map(|(ip, _)| IpAddr::V6(*ip))
        .collect();
    let v6: Vec<IpAddr> = if routable.is_empty() {
        iface.v6.iter().map(|(ip, _)| IpAddr::V6(*ip)).collect()
    } else {
        routable
    };
    let both: Vec<IpAddr> = v4.iter().chain(v6.iter()).copied().collect();
    let mut out: Vec<Multiaddr> = Vec::new();
    for a in addrs {
        // A DNS name (e.g. a container's `/dns/<hostname>/tcp/8081`) stands
        // for this host: its transports go onto the interface's addresses.
        let onto = match (ip_of(a), a.iter().next()) {
            (Some(ip), _) if all_ips.contains(&ip) => continue,
            (Some(ip), _) => {
                let (same, other) = if ip.is_ipv4() { (&v4, &v6) } else { (&v6, &v4) };
                if same.is_empty() {
                    other
                } else {
                    same
                }
            }
            (None, Some(Protocol::Dns4(_))) if !v4.is_empty() => &v4,
            (None, Some(Protocol::Dns6(_))) if !v6.is_empty() => &v6,
            (None, Some(Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_))) => &both,
            _ => continue,
        };
        for target in onto {
            let mut m = Multiaddr::from(*target);
            for p in a.iter().skip(1) {
                m.push(p);
            }
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    if out.is_empty() {
        out.extend(both.iter().map(|ip| Multiaddr::from(*ip)));
    }
    out
}

fn port_of(a: &Multiaddr) -> Option<u16> {
    a.iter().find_map(|p| match p {
        Protocol::Tcp(p) | Protocol::Udp(p) => Some(p),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, v4: &[&str], v6: &[&str]) -> Iface {
        Iface {
            name: name.into(),
            index: 2,
            v4: v4
                .iter()
                .map(|s| {
                    let n: ipnet::Ipv4Net = s.parse().unwrap();
                    (n.addr(), n)
                })
                .collect(),
            v6: v6
                .iter()
                .map(|s| {
                    let n: ipnet::Ipv6Net = s.parse().unwrap();
                    (n.addr(), n)
                })
                .collect(),
            loopback: false,
        }
    }

    fn ma(s: &[&str]) -> Vec<Multiaddr> {
        s.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn each_interface_announces_only_its_own_addresses() {
        let eth0 = iface("eth0", &["10.0.0.1/24"], &["fe80::1/64", "fd00:1::1/64"]);
        let eth1 = iface("eth1", &["10.0.1.1/24"], &["fe80::2/64"]);
        let all: Vec<IpAddr> = [&eth0, &eth1].iter().flat_map(|i| i.ips()).collect();
        let listen = ma(&[
            "/ip4/10.0.0.1/tcp/9000",
            "/ip6/fd00:1::1/tcp/9000",
            "/ip4/10.0.1.1/tcp/9000",
        ]);
        assert_eq!(
            iface_addrs(&listen, &eth0, &all),
            ma(&["/ip4/10.0.0.1/tcp/9000", "/ip6/fd00:1::1/tcp/9000"])
        );
        assert_eq!(
            iface_addrs(&listen, &eth1, &all),
            ma(&["/ip4/10.0.1.1/tcp/9000"])
        );
        // Wildcards move onto the interface's IPs, routable IPv6 before link-local.
        let wild = ma(&["/ip4/0.0.0.0/tcp/7000", "/ip6/::/tcp/7001"]);
        assert_eq!(
            iface_addrs(&wild, &eth0, &all),
            ma(&["/ip4/10.0.0.1/tcp/7000", "/ip6/fd00:1::1/tcp/7001"])
        );
        assert_eq!(
            iface_addrs(&wild, &eth1, &all),
            ma(&["/ip4/10.0.1.1/tcp/7000", "/ip6/fe80::2/tcp/7001"])
        );
        // An IPv6-only interface still carries an IPv4-only agent's port.
        let v6only = iface("eth2", &[], &["fd00:9::5/64"]);
        assert_eq!(
            iface_addrs(&ma(&["/ip4/192.0.2.1/tcp/9000"]), &v6only, &[]),
            ma(&["/ip6/fd00:9::5/tcp/9000"])
        );
        // A container's DNS name: its port on this interface's addresses.
        assert_eq!(
            iface_addrs(&ma(&["/dns/agent-7/tcp/8081"]), &eth1, &all),
            ma(&["/ip4/10.0.1.1/tcp/8081", "/ip6/fe80::2/tcp/8081"])
        );
        assert_eq!(
            iface_addrs(&ma(&["/dns4/agent-7/tcp/8081"]), &eth1, &all),
            ma(&["/ip4/10.0.1.1/tcp/8081"])
        );
        assert_eq!(
            iface_addrs(&[], &eth1, &all),
            ma(&["/ip4/10.0.1.1", "/ip6/fe80::2"])
        );
    }
}
