//! Building and reading mDNS packets (hickory-proto's codec).
//!
//! A response is what both go-libp2p and rust-libp2p accept: no questions;
//! the PTR in Answers; SRV, TXT and A/AAAA of that instance in Additional, in
//! that order (go-libp2p's zeroconf matches A records to the SRV target it
//! has already read); each packet self-contained and at most `max` bytes.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::names::{self, ServiceName};

/// What one interface's answer says about the local peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The instance label (random for libp2p, the agent id for DNS-SD).
    pub instance: String,
    /// The SRV target and owner of the A/AAAA records.
    pub host: Name,
    /// The SRV port.
    pub port: u16,
    /// This interface's addresses (A/AAAA).
    pub ips: Vec<IpAddr>,
    /// The strings of the instance's TXT record; split over packets if too many.
    pub txt: Vec<String>,
    /// Strings of a TXT record under the host name (rollcall's metadata in the
    /// libp2p flavour, where the instance TXT must hold only `dnsaddr=` strings).
    pub host_txt: Vec<String>,
    /// TTL of PTR, SRV and TXT.
    pub ttl: u32,
    /// TTL of A/AAAA.
    pub host_ttl: u32,
    /// Set the cache-flush bit on the unique records (DNS-SD).
    pub cache_flush: bool,
}

/// A packet could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The fixed records alone do not fit in one packet.
    #[error("the records of instance `{0}` do not fit in one packet even with one TXT string")]
    TooLarge(String),
    /// A name or record could not be encoded.
    #[error("cannot encode the packet: {0}")]
    Encode(String),
}

/// Extra TXT strings for one packet, from the instance TXT strings that
/// packet carries and whether it is a goodbye: `(instance TXT, host TXT)`
/// strings to append (a signature, see `signing.rs`).
pub type Seal<'a> = dyn Fn(&[String], bool) -> (Vec<String>, Vec<String>) + 'a;

/// The response packets for `a`; with `goodbye` every TTL is 0.
pub fn response(
    service: &ServiceName,
    a: &Announcement,
    goodbye: bool,
    max: usize,
) -> Result<Vec<Vec<u8>>, BuildError> {
    response_sealed(service, a, goodbye, max, None)
}

/// [`response`], with `seal`'s strings added to each packet (computed for
/// that packet's own TXT strings, so every packet verifies on its own).
pub fn response_sealed(
    service: &ServiceName,
    a: &Announcement,
    goodbye: bool,
    max: usize,
    seal: Option<&Seal<'_>>,
) -> Result<Vec<Vec<u8>>, BuildError> {
    let instance = service
        .instance(&a.instance)
        .ok_or_else(|| BuildError::Encode(format!("bad instance label `{}`", a.instance)))?;
    let mut out = Vec::new();
    let mut rest: &[String] = &a.txt;
    loop {
        // Greedily the most TXT strings that fit, at least one (if any).
        let mut n = rest.len();
        let bytes = loop {
            let b = match seal {
                None => encode(service, &instance, a, &rest[..n], goodbye)?,
                Some(seal) => {
                    let (txt_extra, host_extra) = seal(&rest[..n], goodbye);
                    let mut txt = rest[..n].to_vec();
                    txt.extend(txt_extra);
                    let mut sealed = a.clone();
                    sealed.host_txt.extend(host_extra);
                    encode(service, &instance, &sealed, &txt, goodbye)?
                }
            };
            if b.len() <= max {
                break b;
            }
            if n <= 1 {
                return Err(BuildError::TooLarge(a.instance.clone()));
            }
            n = fit_guess(b.len(), max, n);
        };
        out.push(bytes);
        rest = &rest[n..];
        if rest.is_empty() {
            return Ok(out);
        }
    }
}

/// A smaller count to try next, from how far over the limit the last try was.
fn fit_guess(len: usize, max: usize, n: usize) -> usize {
    ((n * max) / len.max(1)).clamp(1, n - 1)
}

fn encode(
    service: &ServiceName,
    instance: &Name,
    a: &Announcement,
    txt: &[String],
    goodbye: bool,
) -> Result<Vec<u8>, BuildError> {
    let ttl = |t: u32| if goodbye { 0 } else { t };
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = true;
    m.add_answer(Record::from_rdata(
        service.name.clone(),
        ttl(a.ttl),
        RData::PTR(PTR(instance.clone())),
    ));
    let unique = |mut r: Record| {
        r.mdns_cache_flush = a.cache_flush;
        r
    };
    m.add_additional(unique(Record::from_rdata(
        instance.clone(),
        ttl(a.ttl),
        RData::SRV(SRV::new(0, 0, a.port, a.host.clone())),
    )));
    m.add_additional(unique(Record::from_rdata(
        instance.clone(),
        ttl(a.ttl),
        RData::TXT(TXT::new(if txt.is_empty() {
            vec![String::new()]
        } else {
            txt.to_vec()
        })),
    )));
    for ip in &a.ips {
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(*v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
        };
        m.add_additional(unique(Record::from_rdata(
            a.host.clone(),
            ttl(a.host_ttl),
            data,
        )));
    }
    if !a.host_txt.is_empty() {
        m.add_additional(unique(Record::from_rdata(
            a.host.clone(),
            ttl(a.ttl),
            RData::TXT(TXT::new(a.host_txt.clone())),
        )));
    }
    m.to_vec().map_err(|e| BuildError::Encode(e.to_string()))
}

/// A query for the PTR records of `service` (the QU bit asks for a unicast answer).
pub fn query(service: &ServiceName, unicast: bool) -> Result<Vec<u8>, BuildError> {
    let mut m = Message::new(0, MessageType::Query, OpCode::Query);
    let mut q = Query::query(service.name.clone(), RecordType::PTR);
    q.set_query_class(DNSClass::IN);
    q.set_mdns_unicast_response(unicast);
    m.add_query(q);
    m.to_vec().map_err(|e| BuildError::Encode(e.to_string()))
}

/// What a received packet means to us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// A query; `asks` is whether it asks about one of `our_names`.
    Query {
        /// The questions (exact name text, type, QU bit).
        questions: Vec<(String, RecordType, bool)>,
        /// It carries authority records (a probe): not answered.
        has_authority: bool,
    },
    /// A response: the instances of our service type it describes.
    Response(Vec<Sighting>),
}

/// One instance of the service type, as one packet describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sighting {
    /// The instance label (the whole PTR target when it is not under the service).
    pub instance: String,
    /// The PTR's TTL (0: goodbye).
    pub ttl: u32,
    /// Strings of the instance's TXT records.
    pub txt: Vec<String>,
    /// Strings of TXT records under the SRV target.
    pub host_txt: Vec<String>,
    /// SRV target and port, if present.
    pub srv: Option<(String, u16)>,
    /// A/AAAA of the SRV target.
    pub ips: Vec<IpAddr>,
}

/// Why a packet was dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Not a DNS message.
    #[error("malformed DNS message: {0}")]
    Malformed(String),
    /// Not a standard query/response.
    #[error("unexpected opcode {0:?}")]
    Opcode(String),
}

/// Reads a packet; never panics on any input.
pub fn parse(bytes: &[u8], service: &ServiceName) -> Result<Packet, ParseError> {
    let m = Message::from_vec(bytes).map_err(|e| ParseError::Malformed(e.to_string()))?;
    if m.metadata.op_code != OpCode::Query {
        return Err(ParseError::Opcode(format!("{:?}", m.metadata.op_code)));
    }
    if m.metadata.message_type == MessageType::Query {
        let questions = m
            .queries
            .iter()
            .map(|q| {
                (
                    names::text(q.name()),
                    q.query_type(),
                    q.mdns_unicast_response(),
                )
            })
            .collect();
        return Ok(Packet::Query {
            questions,
            has_authority: !m.authorities.is_empty(),
        });
    }
    let all: Vec<&Record> = m
        .answers
        .iter()
        .chain(m.additionals.iter())
        .chain(m.authorities.iter())
        .collect();
    let mut out: Vec<Sighting> = Vec::new();
    for r in &all {
        let RData::PTR(PTR(target)) = &r.data else {
            continue;
        };
        if names::text(&r.name) != service.text {
            continue;
        }
        // rust-libp2p's PTR points at a bare random label, not `<label>.<service>`.
        let instance =
            names::instance_label(target, service).unwrap_or_else(|| names::text(target));
        if out.iter().any(|s| s.instance == instance) {
            continue;
        }
        let mut s = Sighting {
            instance,
            ttl: r.ttl,
            ..Default::default()
        };
        let target_text = names::text(target);
        for rr in &all {
            if names::text(&rr.name) != target_text {
                continue;
            }
            match &rr.data {
                RData::TXT(t) => s.txt.extend(strings(t)),
                RData::SRV(srv) => s.srv = Some((names::text(&srv.target), srv.port)),
                _ => {}
            }
        }
        if let Some((host, _)) = &s.srv {
            for rr in &all {
                if names::text(&rr.name) != *host {
                    continue;
                }
                match &rr.data {
                    RData::A(A(ip)) => s.ips.push(IpAddr::V4(*ip)),
                    RData::AAAA(AAAA(ip)) => s.ips.push(IpAddr::V6(*ip)),
                    RData::TXT(t) => s.host_txt.extend(strings(t)),
                    _ => {}
                }
            }
        }
        out.push(s);
    }
    Ok(Packet::Response(out))
}

fn strings(t: &TXT) -> impl Iterator<Item = String> + '_ {
    t.txt_data
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
}
