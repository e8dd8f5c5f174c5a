//! The roster over DNS, asked with Debian's `dig` (dnsutils) against a real
//! `rollcall run` with a static roster of 40 peers: A/AAAA per peer, one name
//! answering every peer (truncated over UDP, complete over TCP), SRV with
//! ports, TXT metadata, capability filters, NXDOMAIN, and a flood of garbage
//! that is counted and dropped while the server keeps answering.

mod support;

use std::process::Command;
use support::*;

const PEERS: usize = 40;

fn dig(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=2"])
        .args(args)
        .output()
        .expect("dig missing: apt-get install dnsutils");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn short(port: u16, args: &[&str]) -> Vec<String> {
    let mut a = vec!["+short"];
    a.extend_from_slice(args);
    let mut v: Vec<String> = dig(port, &a).lines().map(str::to_owned).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_reads_the_roster() {
    let dir = tempfile::tempdir().unwrap();
    let mut peers = String::new();
    for i in 1..=PEERS {
        let cap = if i % 2 == 0 {
            "go_development"
        } else {
            "database_design"
        };
        peers.push_str(&format!(
            "  {{ id = \"agent-{i}\", status = \"idle\", capabilities = [\"{cap}\"], labels = {{ model = \"llama3.1:8b\" }}, addrs = [\"/ip4/10.0.1.{i}/tcp/9000\"] }},\n"
        ));
    }
    peers.push_str(
        "  { id = \"walnut\", addrs = [\"/ip6/fd00::7/tcp/9100\", \"/ip4/10.0.2.7/tcp/9000\"] },\n",
    );
    let dns_port = free_port();
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[registry]\nexclude_addresses = []\n[dns]\nlisten = \"127.0.0.1:{dns_port}\"\ndomain = \"rollcall\"\n[sources.seeds]\ntype = \"static\"\npeers = [\n{peers}]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let _d = Killed(vec![daemon(&cfg, port, &dir.path().join("log"))]);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    eventually(20, "the roster loaded", || async {
        peer_ids(&http, &base)
            .await
            .is_some_and(|v| v.len() == PEERS + 1)
    })
    .await;

    assert_eq!(short(dns_port, &["agent-7.rollcall.", "A"]), ["10.0.1.7"]);
    assert_eq!(short(dns_port, &["WALNUT.rollcall.", "AAAA"]), ["fd00::7"]);
    assert_eq!(short(dns_port, &["walnut.rollcall.", "A"]), ["10.0.2.7"]);
    assert_eq!(
        short(dns_port, &["walnut.rollcall.", "SRV"]),
        ["0 0 9000 walnut.rollcall.", "0 0 9100 walnut.rollcall."]
    );
    let txt = short(dns_port, &["agent-4.rollcall.", "TXT"]);
    for want in [
        "\"status=idle\"",
        "\"capabilities=go_development\"",
        "\"label.model=llama3.1:8b\"",
        "\"addr=/ip4/10.0.1.4/tcp/9000\"",
    ] {
        assert!(
            txt.iter().any(|l| l.contains(want)),
            "{want} missing in {txt:?}"
        );
    }

    // Every peer under one name: over TCP (dig retries there after TC) all of them.
    let all = short(dns_port, &["peers.rollcall.", "A"]);
    assert_eq!(all.len(), PEERS + 1, "{all:?}");
    // Plain UDP without EDNS: 41 records do not fit 512 bytes, so the answer says TC.
    let udp = dig(dns_port, &["+noedns", "+ignore", "peers.rollcall.", "A"]);
    assert!(udp.contains(" tc"), "no truncation flag: {udp}");
    let tcp = dig(dns_port, &["+tcp", "peers.rollcall.", "A"]);
    assert!(tcp.contains(&format!("ANSWER: {}", PEERS + 1)), "{tcp}");
    // Filter by capability.
    let go = short(dns_port, &["go_development.peers.rollcall.", "A"]);
    assert_eq!(go.len(), PEERS / 2);
    assert!(go.contains(&"10.0.1.4".to_owned()) && !go.contains(&"10.0.1.3".to_owned()));
    let srv = short(dns_port, &["database_design.peers.rollcall.", "SRV"]);
    assert_eq!(srv.len(), PEERS / 2);
    assert!(
        srv.contains(&"0 0 9000 agent-3.rollcall.".to_owned()),
        "{srv:?}"
    );

    for name in ["nobody.rollcall.", "cooking.peers.rollcall."] {
        let out = dig(dns_port, &[name, "A"]);
        assert!(out.contains("status: NXDOMAIN"), "{name}: {out}");
    }
    assert!(dig(dns_port, &["example.com.", "A"]).contains("status: REFUSED"));

    // A flood of garbage and of truncated headers: counted, dropped, no crash.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..20_000u32 {
        let junk: Vec<u8> = match i % 3 {
            0 => vec![0xff; 7],
            1 => i.to_be_bytes().repeat(10),
            _ => vec![
                0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f,
            ],
        };
        let _ = sock.send_to(&junk, ("127.0.0.1", dns_port));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(short(dns_port, &["agent-7.rollcall.", "A"]), ["10.0.1.7"]);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("rollcall_dns_dropped_queries_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(dropped > 1000.0, "flood not counted: {metrics}");
    assert!(
        metrics.contains("rollcall_dns_queries_total{rcode=\"nxdomain\"}"),
        "{metrics}"
    );
    assert_eq!(
        peer_ids(&http, &base).await.map(|v| v.len()),
        Some(PEERS + 1)
    );
}
