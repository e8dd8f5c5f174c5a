//! The mDNS packet parser: any datagram, read as each flavour's discoverer
//! reads it (sightings, then observations), must give a result or an error,
//! never a panic. A parsed response re-encoded by our own builder parses back.
#![no_main]
use backend_mdns::names::ServiceName;
use backend_mdns::packet::{self, Packet};
use backend_mdns::{observe, Flavour};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for (svc, flavour) in [
        ("_p2p._udp.local", Flavour::Libp2p),
        ("CHORUS-peer-discovery.local", Flavour::Libp2p),
        ("_rollcall._tcp.local", Flavour::DnsSd),
    ] {
        let service = ServiceName::parse(svc, flavour).expect("valid service name");
        let Ok(Packet::Response(sightings)) = packet::parse(data, &service) else {
            continue;
        };
        for s in &sightings {
            let _ = observe::observation(s, flavour, svc.contains("._tcp."));
            // What we read, we can announce again, and it reads back the same.
            let a = packet::Announcement {
                instance: s.instance.clone(),
                host: backend_mdns::names::host("fuzzhost"),
                port: s.srv.as_ref().map_or(0, |(_, p)| *p),
                ips: s.ips.clone(),
                txt: s.txt.clone(),
                host_txt: s.host_txt.clone(),
                ttl: s.ttl.max(1),
                host_ttl: 120,
                cache_flush: false,
            };
            if let Ok(pkts) = packet::response(&service, &a, false, 4096) {
                for p in pkts {
                    let again = packet::parse(&p, &service);
                    assert!(matches!(again, Ok(Packet::Response(ref v)) if v.len() == 1), "{again:?}");
                }
            }
        }
    }
});
