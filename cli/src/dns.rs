//! The roster over DNS (`[dns]`): an authoritative responder for one zone,
//! built on hickory-proto's message codec, over UDP and TCP.
//!
//! Names, for the zone `rollcall.`:
//! - `<peer id>.rollcall.` — A/AAAA of the peer's IP addresses, SRV (one per
//!   TCP/UDP port, target `<peer id>.rollcall.`), TXT with its metadata;
//! - `peers.rollcall.` — every live peer's addresses and SRV records;
//! - `<capability>.peers.rollcall.` — the same, only peers with that capability.
//!
//! Unknown names answer NXDOMAIN, names outside the zone REFUSED. An answer
//! larger than the client's UDP size is truncated (TC) so the client retries
//! over TCP. Malformed packets and queries over the rate limit are counted
//! and dropped; nothing a client sends can stop the server.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rollcall::config::DnsConfig;
use rollcall::{Peer, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// Queries answered per second, over UDP and TCP together; more are dropped.
const MAX_QUERIES_PER_SEC: u32 = 5000;
/// TCP connections served at once.
const MAX_TCP_CONNECTIONS: usize = 64;
/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The zone and the roster it answers from.
#[derive(Clone)]
pub struct Zone {
    domain: String,
    ttl: u32,
    registry: Registry,
}

impl Zone {
    /// A zone from `[dns]`.
    pub fn new(cfg: &DnsConfig, registry: Registry) -> Zone {
        let mut domain = cfg.domain.trim().to_ascii_lowercase();
        if !domain.ends_with('.') {
            domain.push('.');
        }
        Zone {
            domain,
            ttl: cfg.ttl.as_secs().min(u32::MAX as u64) as u32,
            registry,
        }
    }

    /// The answer to one request, or `None` when it is not worth one (a response).
    pub fn answer(&self, req: &Message) -> Option<Message> {
        if req.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut meta = Metadata::response_from_request(&req.metadata);
        meta.authoritative = true;
        let mut resp = Message::new(meta.id, MessageType::Response, meta.op_code);
        resp.metadata = meta;
        resp.add_queries(req.queries.iter().cloned());
        if req.metadata.op_code != OpCode::Query || req.queries.len() != 1 {
            resp.metadata.response_code = ResponseCode::NotImp;
            return Some(resp);
        }
        let q = &req.queries[0];
        let qname = q.name().to_ascii().to_ascii_lowercase();
        let qname = if qname.ends_with('.') {
            qname
        } else {
            format!("{qname}.")
        };
        let prefix = if qname == self.domain {
            Some("")
        } else {
            qname.strip_suffix(&format!(".{}", self.domain))
        };
        let Some(prefix) = prefix else {
            resp.metadata.authoritative = false;
            resp.metadata.response_code = ResponseCode::Refused;
            return Some(resp);
        };
        let roster = self.registry.snapshot();
        let selected: Option<Vec<&Arc<Peer>>> = if prefix.is_empty() {
            Some(Vec::new())
        } else if prefix == "peers" {
            Some(roster.peers.iter().collect())
        } else if let Some(cap) = prefix.strip_suffix(".peers") {
            let hits: Vec<&Arc<Peer>> = roster
                .peers
                .iter()
                .filter(|p| p.capabilities.iter().any(|c| c.eq_ignore_ascii_case(cap)))
                .collect();
            (!hits.is_empty()).then_some(hits)
        } else {
            roster
                .peers
                .iter()
                .find(|p| p.id.eq_ignore_ascii_case(prefix))
                .map(|p| vec![p])
        };
        let Some(peers) = selected else {
            resp.metadata.response_code = ResponseCode::NXDomain;
            return Some(resp);
        };
        let name = q.name().clone();
        let single = peers.len() == 1 && prefix != "peers" && !prefix.ends_with(".peers");
        for p in &peers {
            match q.query_type() {
                RecordType::A | RecordType::AAAA | RecordType::ANY => {
                    for ip in ips(p) {
                        let rdata = match ip {
                            IpAddr::V4(v4) if q.query_type() != RecordType::AAAA => RData::A(A(v4)),
                            IpAddr::V6(v6) if q.query_type() != RecordType::A => {
                                RData::AAAA(AAAA(v6))
                            }
                            _ => continue,
                        };
                        resp.add_answer(Record::from_rdata(name.clone(), self.ttl, rdata));
                    }
                }
                RecordType::SRV => {
                    let Ok(target) = Name::from_ascii(format!("{}.{}", p.id, self.domain)) else {
                        continue;
                    };
                    for port in ports(p) {
                        let srv = SRV::new(0, 0, port, target.clone());
                        resp.add_answer(Record::from_rdata(
                            name.clone(),
                            self.ttl,
                            RData::SRV(srv),
                        ));
                    }
                    for ip in ips(p) {
                        let rdata = match ip {
                            IpAddr::V4(v4) => RData::A(A(v4)),
                            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                        };
                        resp.add_additional(Record::from_rdata(target.clone(), self.ttl, rdata));
                    }
                }
                RecordType::TXT if single => {
                    resp.add_answer(Record::from_rdata(
                        name.clone(),
                        self.ttl,
                        RData::TXT(TXT::new(txt(p))),
                    ));
                }
                _ => {}
            }
        }
        Some(resp)
    }

    /// Parses, answers and encodes one packet; `None` = drop it (counted).
    fn handle(&self, packet: &[u8], max_udp: Option<usize>) -> Option<Vec<u8>> {
        let req = match Message::from_vec(packet) {
            Ok(m) => m,
            Err(_) => {
                metrics::counter!("rollcall_dns_dropped_queries_total", "reason" => "malformed")
                    .increment(1);
                return None;
            }
        };
        let resp = self.answer(&req)?;
        metrics::counter!("rollcall_dns_queries_total", "rcode" => rcode_name(resp.metadata.response_code))
            .increment(1);
        let bytes = resp.to_vec().ok()?;
        match max_udp {
            Some(limit) if bytes.len() > limit.max(512).min(req.max_payload() as usize) => {
                metrics::counter!("rollcall_dns_truncated_responses_total").increment(1);
                resp.truncate().to_vec().ok()
            }
            _ => Some(bytes),
        }
    }
}

fn rcode_name(c: ResponseCode) -> &'static str {
    match c {
        ResponseCode::NoError => "noerror",
        ResponseCode::NXDomain => "nxdomain",
        ResponseCode::Refused => "refused",
        ResponseCode::NotImp => "notimp",
        _ => "other",
    }
}

/// The IP addresses of a peer's multiaddrs (`/ip4/...`, `/ip6/...`).
fn ips(p: &Peer) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for a in &p.addrs {
        let parts: Vec<&str> = a.split('/').collect();
        if let ["", "ip4" | "ip6", host, ..] = parts.as_slice() {
            if let Ok(ip) = host.parse() {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    out
}

/// The TCP/UDP ports of a peer's multiaddrs.
fn ports(p: &Peer) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    for a in &p.addrs {
        let parts: Vec<&str> = a.split('/').collect();
        if let ["", _, _, "tcp" | "udp", port, ..] = parts.as_slice() {
            if let Ok(port) = port.parse() {
                if !out.contains(&port) {
                    out.push(port);
                }
            }
        }
    }
    out
}

/// `key=value` strings of a peer's metadata (each under 255 bytes).
fn txt(p: &Peer) -> Vec<String> {
    let mut v = vec![format!("id={}", p.id)];
    if let Some(n) = &p.name {
        v.push(format!("name={n}"));
    }
    if let Some(s) = &p.status {
        v.push(format!("status={s}"));
    }
    if !p.capabilities.is_empty() {
        v.push(format!("capabilities={}", p.capabilities.join(",")));
    }
    if let Some(ver) = &p.version {
        v.push(format!("version={ver}"));
    }
    for (k, val) in &p.labels {
        v.push(format!("label.{k}={val}"));
    }
    for a in &p.addrs {
        v.push(format!("addr={a}"));
    }
    v.into_iter()
        .map(|mut s| {
            if s.len() > 255 {
                let mut cut = 255;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
            }
            s
        })
        .collect()
}

/// A token bucket shared by both transports.
struct Limiter {
    tokens: f64,
    last: tokio::time::Instant,
}

impl Limiter {
    fn allow(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let rate = MAX_QUERIES_PER_SEC as f64;
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            metrics::counter!("rollcall_dns_dropped_queries_total", "reason" => "rate_limit")
                .increment(1);
            false
        }
    }
}

type SharedLimiter = Arc<std::sync::Mutex<Limiter>>;

fn allow(l: &SharedLimiter) -> bool {
    l.lock().unwrap_or_else(|p| p.into_inner()).allow()
}

/// Serves the zone on UDP and TCP at `listen` until `stop`. Returns the bound address.
pub async fn serve(
    cfg: &DnsConfig,
    registry: Registry,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let udp = UdpSocket::bind(cfg.listen).await?;
    let bound = udp.local_addr()?;
    let tcp = TcpListener::bind(bound).await?;
    let zone = Zone::new(cfg, registry);
    let limiter: SharedLimiter = Arc::new(std::sync::Mutex::new(Limiter {
        tokens: MAX_QUERIES_PER_SEC as f64,
        last: tokio::time::Instant::now(),
    }));
    let task = tokio::spawn(async move {
        tokio::join!(
            serve_udp(udp, zone.clone(), limiter.clone(), stop.clone()),
            serve_tcp(tcp, zone, limiter, stop),
        );
    });
    Ok((bound, task))
}

async fn serve_udp(sock: UdpSocket, zone: Zone, limiter: SharedLimiter, stop: CancellationToken) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = tokio::select! {
            _ = stop.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS UDP receive failed");
                    continue;
                }
            },
        };
        if !allow(&limiter) {
            continue;
        }
        if let Some(out) = zone.handle(&buf[..n], Some(4096)) {
            let _ = sock.send_to(&out, from).await;
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    zone: Zone,
    limiter: SharedLimiter,
    stop: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (mut conn, _) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
        };
        while conns.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!("rollcall_dns_dropped_queries_total", "reason" => "tcp_busy")
                .increment(1);
            continue;
        };
        let (zone, limiter) = (zone.clone(), limiter.clone());
        conns.spawn(async move {
            let _permit = permit;
            loop {
                let mut len = [0u8; 2];
                match tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut len)).await {
                    Ok(Ok(_)) => {}
                    _ => return,
                }
                let mut packet = vec![0u8; u16::from_be_bytes(len) as usize];
                if !matches!(
                    tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut packet)).await,
                    Ok(Ok(_))
                ) {
                    return;
                }
                if !allow(&limiter) {
                    return;
                }
                let Some(out) = zone.handle(&packet, None) else {
                    return;
                };
                let Ok(n) = u16::try_from(out.len()) else {
                    return;
                };
                if conn.write_all(&n.to_be_bytes()).await.is_err()
                    || conn.write_all(&out).await.is_err()
                {
                    return;
                }
            }
        });
    }
    conns.shutdown().await;
}
