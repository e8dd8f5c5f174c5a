//! A minimal authoritative DNS server for tests: UDP and TCP on one
//! 127.0.0.1 port, A/AAAA records from a table the test can change.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA};
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// How the server answers one name.
#[derive(Clone, Debug)]
pub enum Zone {
    /// These addresses, over UDP and TCP.
    Records(Vec<IpAddr>),
    /// Over UDP a truncated (TC) answer without records; over TCP these.
    TruncatedOverUdp(Vec<IpAddr>),
    /// SERVFAIL.
    ServFail,
}

#[derive(Clone, Default)]
pub struct DnsServer {
    pub addr: Option<SocketAddr>,
    zones: Arc<Mutex<HashMap<String, Zone>>>,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
}

impl DnsServer {
    /// Starts the server on 127.0.0.1:<free port> (same port for UDP and TCP).
    pub async fn start() -> DnsServer {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
            let port = udp.local_addr().expect("addr").port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let server = DnsServer {
            addr: Some(udp.local_addr().expect("addr")),
            ..Default::default()
        };
        let s = server.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                s.udp_queries.fetch_add(1, Ordering::SeqCst);
                if let Some(resp) = s.answer(&buf[..n], false) {
                    let _ = udp.send_to(&resp, from).await;
                }
            }
        });
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = tcp.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    loop {
                        let mut len = [0u8; 2];
                        if conn.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
                        if conn.read_exact(&mut msg).await.is_err() {
                            return;
                        }
                        s.tcp_queries.fetch_add(1, Ordering::SeqCst);
                        let Some(resp) = s.answer(&msg, true) else {
                            return;
                        };
                        let mut out = (resp.len() as u16).to_be_bytes().to_vec();
                        out.extend_from_slice(&resp);
                        if conn.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        server
    }

    pub fn port(&self) -> u16 {
        self.addr.expect("started").port()
    }

    /// Sets how a name (without the final dot) is answered.
    pub fn set(&self, name: &str, zone: Zone) {
        self.zones
            .lock()
            .expect("lock")
            .insert(name.trim_end_matches('.').to_ascii_lowercase(), zone);
    }

    fn answer(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let req = Message::from_vec(query).ok()?;
        if req.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
        resp.metadata.recursion_desired = req.metadata.recursion_desired;
        resp.metadata.recursion_available = true;
        resp.metadata.authoritative = true;
        resp.add_queries(req.queries.iter().cloned());
        let q = req.queries.first()?;
        let name = q
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let zone = self.zones.lock().expect("lock").get(&name).cloned();
        let ips = match zone {
            None => {
                resp.metadata.response_code = ResponseCode::NXDomain;
                return resp.to_vec().ok();
            }
            Some(Zone::ServFail) => {
                resp.metadata.response_code = ResponseCode::ServFail;
                return resp.to_vec().ok();
            }
            Some(Zone::TruncatedOverUdp(_)) if !tcp => {
                resp.metadata.truncation = true;
                return resp.to_vec().ok();
            }
            Some(Zone::Records(ips) | Zone::TruncatedOverUdp(ips)) => ips,
        };
        for ip in ips {
            let rdata = match (q.query_type(), ip) {
                (RecordType::A, IpAddr::V4(v4)) => RData::A(A(v4)),
                (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(v6)),
                _ => continue,
            };
            resp.add_answer(Record::from_rdata(q.name().clone(), 1, rdata));
        }
        resp.to_vec().ok()
    }
}
