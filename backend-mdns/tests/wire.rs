//! The packets rollcall sends, checked against the wire facts of go-libp2p
//! (p2p/discovery/mdns + zeroconf v2) and rust-libp2p (libp2p-mdns 0.49),
//! decoded with an independent codec (hickory-proto, as rust-libp2p does).

use std::net::{IpAddr, Ipv4Addr};

use backend_mdns::names::{self, ServiceName};
use backend_mdns::observe;
use backend_mdns::packet::{self, Announcement, Packet};
use backend_mdns::Flavour;
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::{Name, RData, RecordType};

const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

fn announcement(instance: &str, addrs: usize) -> Announcement {
    Announcement {
        instance: instance.into(),
        host: names::host("q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6"),
        port: 4001,
        ips: vec![IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1))],
        txt: (0..addrs)
            .map(|i| format!("dnsaddr=/ip4/10.77.0.1/tcp/{}/p2p/{PEER}", 9000 + i))
            .collect(),
        host_txt: vec!["rollcall.id=agent-1".into()],
        ttl: 3200,
        host_ttl: 120,
        cache_flush: false,
    }
}

fn svc(s: &str) -> ServiceName {
    ServiceName::parse(s, Flavour::Libp2p).unwrap()
}

#[test]
fn response_is_what_go_and_rust_libp2p_accept() {
    let service = svc("_p2p._udp.local");
    let inst = names::random_label(32, 63);
    let pkts = packet::response(&service, &announcement(&inst, 3), false, 1400).unwrap();
    assert_eq!(pkts.len(), 1);
    let m = Message::from_vec(&pkts[0]).unwrap();
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert!(
        m.queries.is_empty(),
        "rust-libp2p: no questions in a response"
    );
    assert!(m.authorities.is_empty());
    // PTR in Answers, owner exactly the service name (rust compares to_string()).
    assert_eq!(m.answers.len(), 1);
    let ptr = &m.answers[0];
    assert_eq!(ptr.name.to_string(), "_p2p._udp.local.");
    assert_eq!(ptr.ttl, 3200);
    let RData::PTR(target) = &ptr.data else {
        panic!("not a PTR")
    };
    assert_eq!(target.0.to_string(), format!("{inst}._p2p._udp.local."));
    // Additional: SRV, then TXT, then A (zeroconf matches A to a known SRV target).
    let kinds: Vec<RecordType> = m.additionals.iter().map(|r| r.record_type()).collect();
    assert_eq!(
        kinds,
        [
            RecordType::SRV,
            RecordType::TXT,
            RecordType::A,
            RecordType::TXT
        ]
    );
    let srv = &m.additionals[0];
    assert_eq!(srv.name, target.0);
    assert_eq!(srv.ttl, 3200);
    let RData::SRV(s) = &srv.data else { panic!() };
    assert_eq!(s.port, 4001);
    let txt = &m.additionals[1];
    assert_eq!(txt.name, target.0, "TXT under the PTR target");
    assert_eq!(txt.ttl, 3200);
    let RData::TXT(t) = &txt.data else { panic!() };
    let strings: Vec<String> = t
        .txt_data
        .iter()
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect();
    assert_eq!(strings.len(), 3, "one string per address");
    for s in &strings {
        assert!(s.starts_with("dnsaddr=/ip4/10.77.0.1/tcp/"), "{s}");
        assert!(s.ends_with(&format!("/p2p/{PEER}")), "{s}");
    }
    let a = &m.additionals[2];
    assert_eq!(a.name, s.target, "A under the SRV target");
    assert_eq!(a.ttl, 120);
    // rollcall's metadata is under the host name: neither go (TXT must end in
    // the service name) nor rust (TXT must be under the PTR target) reads it.
    let meta = &m.additionals[3];
    assert_eq!(meta.name, s.target);
    assert!(!meta.name.to_string().ends_with("_p2p._udp.local."));
    assert!(pkts[0].len() <= 4096);
    // No cache-flush bit in the libp2p flavour.
    assert!(m.additionals.iter().all(|r| !r.mdns_cache_flush));
}

#[test]
fn go_tag_is_on_the_wire_as_given_plus_local_and_case_is_kept() {
    let service = svc("CHORUS-peer-discovery.local");
    let pkts = packet::response(&service, &announcement("abc", 1), false, 1400).unwrap();
    // Byte-level: the exact case of the labels is in the packet.
    let raw = &pkts[0];
    let needle = b"\x15CHORUS-peer-discovery\x05local\x00";
    assert!(raw.windows(needle.len()).any(|w| w == needle));
    let m = Message::from_vec(raw).unwrap();
    assert_eq!(m.answers[0].name.to_ascii(), "CHORUS-peer-discovery.local.");
    // Ours parses it; the same packet under another case is not ours.
    let Packet::Response(s) = packet::parse(raw, &service).unwrap() else {
        panic!()
    };
    assert_eq!(s.len(), 1);
    let other = svc("chorus-peer-discovery.local");
    let Packet::Response(s) = packet::parse(raw, &other).unwrap() else {
        panic!()
    };
    assert!(s.is_empty(), "names are compared case-sensitively");
}

#[test]
fn goodbye_has_every_ttl_zero() {
    let service = svc("_p2p._udp.local");
    let pkts = packet::response(&service, &announcement("abc", 2), true, 1400).unwrap();
    let m = Message::from_vec(&pkts[0]).unwrap();
    assert!(m.answers.iter().chain(&m.additionals).all(|r| r.ttl == 0));
    let Packet::Response(s) = packet::parse(&pkts[0], &service).unwrap() else {
        panic!()
    };
    assert_eq!(s[0].ttl, 0);
}

#[test]
fn large_answers_split_into_self_contained_packets() {
    let service = svc("_p2p._udp.local");
    let a = announcement("abc", 40);
    let pkts = packet::response(&service, &a, false, 1400).unwrap();
    assert!(pkts.len() > 1, "{} packets", pkts.len());
    let mut all = Vec::new();
    for p in &pkts {
        assert!(p.len() <= 1400, "{}", p.len());
        let m = Message::from_vec(p).unwrap();
        assert!(m.queries.is_empty());
        assert_eq!(m.answers.len(), 1, "each has the PTR");
        let kinds: Vec<RecordType> = m.additionals.iter().map(|r| r.record_type()).collect();
        assert!(kinds.contains(&RecordType::SRV) && kinds.contains(&RecordType::A));
        let Packet::Response(s) = packet::parse(p, &service).unwrap() else {
            panic!()
        };
        let obs = observe::observation(&s[0], Flavour::Libp2p, false).unwrap();
        assert_eq!(obs.key, PEER);
        all.extend(obs.addrs);
    }
    assert_eq!(all.len(), 40, "every address is in some packet");
}

#[test]
fn query_asks_ptr_and_sets_qu_only_when_asked() {
    let service = svc("_p2p._udp.local");
    for qu in [false, true] {
        let q = packet::query(&service, qu).unwrap();
        let m = Message::from_vec(&q).unwrap();
        assert_eq!(m.metadata.message_type, MessageType::Query);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].name().to_string(), "_p2p._udp.local.");
        assert_eq!(m.queries[0].query_type(), RecordType::PTR);
        assert_eq!(m.queries[0].mdns_unicast_response(), qu);
        assert!(q.len() <= 4096);
    }
}

/// The response rust-libp2p sends (PTR + TXT only, no SRV/A), built the way
/// libp2p-mdns 0.49 builds it, is read as a peer with its peer id.
#[test]
fn rust_libp2p_shaped_response_is_a_peer() {
    use hickory_proto::op::{Message, OpCode};
    use hickory_proto::rr::rdata::{PTR, TXT};
    use hickory_proto::rr::Record;
    let service = svc("_p2p._udp.local");
    // libp2p-mdns 0.49: the PTR target is one random label, nothing more.
    let inst = Name::from_ascii("xyzxyzxyzxyzxyzxyzxyzxyzxyzxyzxyz.").unwrap();
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.add_answer(Record::from_rdata(
        service.name.clone(),
        360,
        RData::PTR(PTR(inst.clone())),
    ));
    // One TXT record per address, cache-flush bit set, as libp2p-mdns writes them.
    for port in [4242, 4243] {
        let mut txt = Record::from_rdata(
            inst.clone(),
            360,
            RData::TXT(TXT::new(vec![format!(
                "dnsaddr=/ip4/10.77.0.9/tcp/{port}/p2p/{PEER}"
            )])),
        );
        txt.mdns_cache_flush = true;
        m.add_additional(txt);
    }
    let bytes = m.to_vec().unwrap();
    let Packet::Response(s) = packet::parse(&bytes, &service).unwrap() else {
        panic!()
    };
    assert_eq!(s.len(), 1);
    let obs = observe::observation(&s[0], Flavour::Libp2p, false).unwrap();
    assert_eq!(obs.key, PEER);
    assert_eq!(obs.alias(discovery_core::AliasKind::PeerId), Some(PEER));
    assert_eq!(obs.addrs[0].to_string(), "/ip4/10.77.0.9/tcp/4242");
    assert_eq!(obs.addrs[1].to_string(), "/ip4/10.77.0.9/tcp/4243");
    assert_eq!(obs.ttl, Some(std::time::Duration::from_secs(360)));
}

#[test]
fn queries_with_authority_records_are_reported_as_probes() {
    use hickory_proto::op::{Message, OpCode, Query};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::Record;
    let service = svc("_p2p._udp.local");
    let mut m = Message::new(0, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(service.name.clone(), RecordType::ANY));
    m.add_authority(Record::from_rdata(
        service.name.clone(),
        120,
        RData::A(A(Ipv4Addr::new(1, 2, 3, 4))),
    ));
    let Packet::Query { has_authority, .. } =
        packet::parse(&m.to_vec().unwrap(), &service).unwrap()
    else {
        panic!()
    };
    assert!(has_authority);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn parser_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let service = svc("_p2p._udp.local");
            if let Ok(Packet::Response(s)) = packet::parse(&bytes, &service) {
                for x in &s {
                    let _ = observe::observation(x, Flavour::Libp2p, false);
                    let _ = observe::observation(x, Flavour::DnsSd, true);
                }
            }
        }

        #[test]
        fn parser_never_panics_on_mutated_responses(flips in proptest::collection::vec((0usize..2000, any::<u8>()), 1..20)) {
            let service = svc("_p2p._udp.local");
            let mut p = packet::response(&service, &announcement("abc", 3), false, 1400).unwrap().remove(0);
            for (i, b) in flips {
                let n = p.len();
                p[i % n] = b;
            }
            if let Ok(Packet::Response(s)) = packet::parse(&p, &service) {
                for x in &s {
                    let _ = observe::observation(x, Flavour::Libp2p, false);
                }
            }
        }
    }
}

#[test]
fn ipv6_answer_carries_aaaa_and_ip6_dnsaddr_and_reads_back() {
    let service = svc("_p2p._udp.local");
    let mut a = announcement("v6inst", 0);
    a.ips = vec![
        IpAddr::V6("fe80::1".parse().unwrap()),
        IpAddr::V6("fd00:77::1".parse().unwrap()),
    ];
    a.txt = vec![format!("dnsaddr=/ip6/fd00:77::1/tcp/9000/p2p/{PEER}")];
    let pkts = packet::response(&service, &a, false, 1400).unwrap();
    let m = Message::from_vec(&pkts[0]).unwrap();
    let kinds: Vec<RecordType> = m.additionals.iter().map(|r| r.record_type()).collect();
    assert_eq!(
        kinds,
        [
            RecordType::SRV,
            RecordType::TXT,
            RecordType::AAAA,
            RecordType::AAAA,
            RecordType::TXT
        ]
    );
    for r in &m.additionals[2..4] {
        assert_eq!(r.ttl, 120, "AAAA has the host TTL");
    }
    let Packet::Response(s) = packet::parse(&pkts[0], &service).unwrap() else {
        panic!()
    };
    assert_eq!(s[0].ips, a.ips);
    let obs = observe::observation(&s[0], Flavour::Libp2p, false).unwrap();
    assert_eq!(obs.key, PEER);
    assert_eq!(obs.addrs[0].to_string(), "/ip6/fd00:77::1/tcp/9000");
    // DNS-SD reads its addresses from SRV + AAAA.
    let sd = observe::observation(&s[0], Flavour::DnsSd, true).unwrap();
    let addrs: Vec<String> = sd.addrs.iter().map(|m| m.to_string()).collect();
    assert_eq!(addrs, ["/ip6/fe80::1/tcp/4001", "/ip6/fd00:77::1/tcp/4001"]);
}
