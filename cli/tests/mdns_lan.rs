//! Real multicast between network namespaces on one bridge: five namespaces
//! each run `rollcall agent` with an mdns source (libp2p flavour, the
//! go-libp2p tag `CHORUS-peer-discovery`), a sixth runs discoverers.
//! * a cold `rollcall peers` lists all five with their metadata;
//! * a daemon (`rollcall run`) sees an agent stopped with SIGTERM gone at once
//!   (its goodbye; the records' TTL is 3200 s);
//! * an agent under another service name is not mixed in;
//! * the DNS-SD flavour (`_rollcall._tcp.local`) finds its agents with metadata;
//! * a partition (two hosts' links down) drops the far side after its TTL,
//!   and the heal brings it back;
//! * on a LAN with no IPv4 address at all, both flavours find their agents
//!   over IPv6 (ff02::fb, AAAA) with their /ip6 addresses;
//! * signed announcements, both flavours: a daemon with `require_signed`
//!   lists the signing agents and not the unsigned one, keeps the first key
//!   of an agent id when a second key claims it (trust on first use), honours
//!   a signed goodbye; `trusted_keys` narrows a cold `rollcall peers`.
//!
//! Needs root (namespaces); `ROLLCALL_SKIP_NETNS=1` skips it, saying so.

#[path = "../../backend-mdns/tests/common/netns.rs"]
mod netns;
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netns::{Lan, Proc};
use support::daemon_ids_in as daemon_ids;

const BIN: &str = env!("CARGO_BIN_EXE_rollcall");

fn config(dir: &Path, name: &str, source: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            r#"
[local]
id = "placeholder"
capabilities = ["go_development", "testing"]
status = "idle"
labels = {{ model = "llama3.1:8b" }}

[api]
listen = "127.0.0.1:7788"

[sources.lan]
type = "mdns"
interfaces = ["eth0"]
{source}
"#
        ),
    )
    .unwrap();
    p
}

fn agent(lan: &Lan, k: usize, cfg: &Path, dir: &Path) -> Proc {
    agent_as(lan, k, cfg, dir, &format!("agent-{}", k + 1))
}

/// An agent on host `k` announcing the agent id `id` (key file `id-<k>.key`).
fn agent_as(lan: &Lan, k: usize, cfg: &Path, dir: &Path, id: &str) -> Proc {
    let h = &lan.hosts[k];
    let addr = if h.ip.is_empty() {
        format!("[{}]:9000", h.ip6)
    } else {
        format!("{}:9000", h.ip)
    };
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &h.ns, BIN, "agent", "-c"])
        .arg(cfg)
        .env("ROLLCALL__LOCAL__ID", id)
        .env("ROLLCALL__LOCAL__ADDRS", addr)
        .env("ROLLCALL__IDENTITY__FILE", dir.join(format!("id-{k}.key")))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    Proc::spawn(cmd)
}

fn peers(ns: &str, cfg: &Path, dir: &Path) -> serde_json::Value {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, BIN, "peers", "--json", "--wait", "3s", "-c",
        ])
        .arg(cfg)
        .env("ROLLCALL__IDENTITY__FILE", dir.join("discoverer.key"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn wait_ids(ns: &str, cfg: &Path, dir: &Path, want: &[String]) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = peers(ns, cfg, dir);
        if ids(&v) == want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn sigterm(p: &mut Proc) {
    assert!(Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(p.child.wait().unwrap().success());
}

#[test]
fn five_agents_found_with_metadata_goodbye_and_service_names() {
    if netns::skip("mdns netns LAN test") {
        return;
    }
    let lan = Lan::new(7);
    let dir = tempfile::tempdir().unwrap();
    let chorus = config(
        dir.path(),
        "chorus.toml",
        r#"service_name = "CHORUS-peer-discovery.local""#,
    );
    let other = config(
        dir.path(),
        "other.toml",
        r#"service_name = "_p2p._udp.local""#,
    );
    let mut agents: Vec<Proc> = (0..5)
        .map(|k| agent(&lan, k, &chorus, dir.path()))
        .collect();
    // Host 6 announces under another name; it must not be mixed in.
    let _stranger = agent(&lan, 5, &other, dir.path());
    let disc = &lan.hosts[6].ns;
    let want: Vec<String> = (1..=5).map(|k| format!("agent-{k}")).collect();
    let v = wait_ids(disc, &chorus, dir.path(), &want);
    assert_eq!(ids(&v), want, "{v:#}");
    for p in v["peers"].as_array().unwrap() {
        assert_eq!(p["status"], "idle", "{p:#}");
        assert_eq!(
            p["capabilities"],
            serde_json::json!(["go_development", "testing"])
        );
        assert_eq!(p["labels"]["model"], "llama3.1:8b");
        let pid = p["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["kind"] == "peer_id")
            .and_then(|a| a["value"].as_str())
            .expect("peer_id alias");
        assert!(pid.starts_with("12D3KooW"), "{pid}");
    }
    let other_view = wait_ids(disc, &other, dir.path(), &["agent-6".to_owned()]);
    assert_eq!(ids(&other_view), ["agent-6"], "{other_view:#}");

    // A daemon that already knows everyone sees a stopped agent go at once.
    let mut daemon = {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", disc, BIN, "run", "-c"])
            .arg(&chorus)
            .env("ROLLCALL__IDENTITY__FILE", dir.path().join("daemon.key"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        Proc::spawn(cmd)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon_ids(disc).as_deref() != Some(&want[..]) {
        assert!(
            Instant::now() < deadline,
            "daemon saw {:?}",
            daemon_ids(disc)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    sigterm(&mut agents[4]);
    let gone = Instant::now();
    let want4: Vec<String> = want[..4].to_vec();
    while daemon_ids(disc).as_deref() != Some(&want4[..]) {
        assert!(
            gone.elapsed() < Duration::from_secs(3),
            "goodbye not honoured: daemon saw {:?}",
            daemon_ids(disc)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("goodbye seen by the daemon after {:?}", gone.elapsed());
    sigterm(&mut daemon);
}

#[test]
fn dns_sd_flavour_finds_agents_with_metadata() {
    if netns::skip("mdns dns-sd netns LAN test") {
        return;
    }
    let lan = Lan::new(6);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "dnssd.toml",
        "flavour = \"dns-sd\"\nservice_name = \"_rollcall._tcp.local\"",
    );
    let _agents: Vec<Proc> = (0..5).map(|k| agent(&lan, k, &cfg, dir.path())).collect();
    let want: Vec<String> = (1..=5).map(|k| format!("agent-{k}")).collect();
    let v = wait_ids(&lan.hosts[5].ns, &cfg, dir.path(), &want);
    assert_eq!(ids(&v), want, "{v:#}");
    for p in v["peers"].as_array().unwrap() {
        assert_eq!(p["status"], "idle", "{p:#}");
        assert_eq!(p["labels"]["model"], "llama3.1:8b");
        let k: usize = p["id"].as_str().unwrap()[6..].parse().unwrap();
        let addr = format!("/ip4/{}/tcp/9000", lan.hosts[k - 1].ip);
        assert!(
            p["addrs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == &serde_json::json!(addr)),
            "{p:#}"
        );
    }
}

/// A partition: the links of two of three agents' hosts go down; the daemon
/// on the near side drops them after their TTL (no goodbye crosses the cut)
/// and keeps the near agent; after the heal both are found again.
#[test]
fn a_partition_drops_the_far_side_after_its_ttl_and_all_return_after_the_heal() {
    if netns::skip("mdns partition netns test") {
        return;
    }
    let lan = Lan::new(4);
    let dir = tempfile::tempdir().unwrap();
    // Short record TTLs so that expiry is observable in a test.
    let cfg = config(dir.path(), "short.toml", "ttl = \"3s\"\nhost_ttl = \"3s\"");
    let _agents: Vec<Proc> = (0..3).map(|k| agent(&lan, k, &cfg, dir.path())).collect();
    let disc = &lan.hosts[3].ns;
    let mut daemon = {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", disc, BIN, "run", "-c"])
            .arg(&cfg)
            .env("ROLLCALL__IDENTITY__FILE", dir.path().join("daemon.key"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        Proc::spawn(cmd)
    };
    let all: Vec<String> = (1..=3).map(|k| format!("agent-{k}")).collect();
    let wait = |want: &[String], within: Duration, what: &str| {
        let t = Instant::now();
        while daemon_ids(disc).as_deref() != Some(want) {
            assert!(
                t.elapsed() < within,
                "{what}: daemon saw {:?}",
                daemon_ids(disc)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        t.elapsed()
    };
    wait(&all, Duration::from_secs(20), "cold start");
    // Still there after several TTLs: the querier refreshes before expiry.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(
        daemon_ids(disc).as_deref(),
        Some(&all[..]),
        "live peers were refreshed"
    );
    lan.link_down(1);
    lan.link_down(2);
    let near = ["agent-1".to_owned()];
    let cut = wait(
        &near,
        Duration::from_secs(30),
        "the far side was never expired",
    );
    // The near agent stays through several more TTLs.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(daemon_ids(disc).as_deref(), Some(&near[..]));
    lan.link_up(1);
    lan.link_up(2);
    let healed = wait(
        &all,
        Duration::from_secs(60),
        "not every agent returned after the heal",
    );
    eprintln!("partition: far side expired after {cut:?} (ttl 3s), back {healed:?} after the heal");
    sigterm(&mut daemon);
}

#[test]
fn ipv6_only_lan_both_flavours_found_over_ff02_fb() {
    if netns::skip("mdns IPv6-only netns LAN test") {
        return;
    }
    // No IPv4 address anywhere: only ff02::fb can carry the records.
    let lan = Lan::with(5, false, true);
    let dir = tempfile::tempdir().unwrap();
    let p2p = config(
        dir.path(),
        "p2p6.toml",
        r#"service_name = "CHORUS-peer-discovery.local""#,
    );
    let sd = config(dir.path(), "sd6.toml", "flavour = \"dns-sd\"");
    let _agents: Vec<Proc> = [(0, &p2p), (1, &p2p), (2, &sd), (3, &sd)]
        .into_iter()
        .map(|(k, c)| agent(&lan, k, c, dir.path()))
        .collect();
    let disc = &lan.hosts[4].ns;
    for (cfg, ks) in [(&p2p, [1usize, 2]), (&sd, [3, 4])] {
        let want: Vec<String> = ks.iter().map(|k| format!("agent-{k}")).collect();
        let v = wait_ids(disc, cfg, dir.path(), &want);
        assert_eq!(ids(&v), want, "{v:#}");
        for p in v["peers"].as_array().unwrap() {
            let k: usize = p["id"].as_str().unwrap()[6..].parse().unwrap();
            let addr = format!("/ip6/{}/tcp/9000", lan.hosts[k - 1].ip6);
            let addrs = p["addrs"].as_array().unwrap();
            assert!(addrs.iter().any(|a| a == &serde_json::json!(addr)), "{p:#}");
            assert!(
                addrs
                    .iter()
                    .all(|a| !a.as_str().unwrap().starts_with("/ip4/")),
                "{p:#}"
            );
            assert_eq!(p["status"], "idle", "{p:#}");
        }
    }
}

/// `[sources.lan]` (libp2p flavour, the CHORUS tag) and `[sources.sd]`
/// (DNS-SD), both with `signing` set to `signing`.
fn signed_sources(signing: &str) -> String {
    format!(
        r#"service_name = "CHORUS-peer-discovery.local"
[sources.lan.signing]
{signing}

[sources.sd]
type = "mdns"
flavour = "dns-sd"
interfaces = ["eth0"]
[sources.sd.signing]
{signing}
"#
    )
}

/// A counter of the daemon in `ns` summed over its labels that contain `labels`.
fn daemon_counter(ns: &str, name: &str, labels: &str) -> u64 {
    let text = support::curl_in(ns, "/metrics").unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn peer_id_in(roster: &serde_json::Value, id: &str) -> Option<String> {
    roster["peers"].as_array()?.iter().find(|p| p["id"] == id)?["aliases"]
        .as_array()?
        .iter()
        .find(|a| a["kind"] == "peer_id")?["value"]
        .as_str()
        .map(str::to_owned)
}

/// The names of the sources that see a peer of a roster JSON.
fn source_names(peer: &serde_json::Value) -> Vec<&str> {
    peer["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect()
}

#[test]
fn signed_announcements_keep_unsigned_and_rogue_agents_out() {
    if netns::skip("mdns signed netns LAN test") {
        return;
    }
    let lan = Lan::new(6);
    let dir = tempfile::tempdir().unwrap();
    let signs = config(dir.path(), "signs.toml", &signed_sources("sign = true"));
    let plain = config(dir.path(), "plain.toml", &signed_sources("sign = false"));
    let strict = config(
        dir.path(),
        "strict.toml",
        &signed_sources("require_signed = true"),
    );
    let mut agents = vec![
        agent(&lan, 0, &signs, dir.path()),
        agent(&lan, 1, &signs, dir.path()),
        // Cannot sign (or go-libp2p, rust-libp2p, avahi): never listed.
        agent(&lan, 2, &plain, dir.path()),
    ];
    let disc = &lan.hosts[5].ns;
    let mut daemon = {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", disc, BIN, "run", "-c"])
            .arg(&strict)
            .env("ROLLCALL__IDENTITY__FILE", dir.path().join("daemon.key"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        Proc::spawn(cmd)
    };
    let want: Vec<String> = vec!["agent-1".into(), "agent-2".into()];
    // Each flavour's record arrives on its own (the two can be a few hundred
    // ms apart): wait for both of each agent, not for the first of each.
    let both_flavours = |roster: &serde_json::Value| {
        roster["peers"].as_array().is_some_and(|peers| {
            peers.iter().all(|p| {
                let names = source_names(p);
                names.contains(&"lan") && names.contains(&"sd")
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon_ids(disc).as_deref() != Some(&want[..])
        || !support::daemon_roster_in(disc).is_some_and(|r| both_flavours(&r))
    {
        assert!(
            Instant::now() < deadline,
            "the require_signed daemon saw {:?}: {:#?}",
            daemon_ids(disc),
            support::daemon_roster_in(disc)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let roster = support::daemon_roster_in(disc).unwrap();
    for p in roster["peers"].as_array().unwrap() {
        let sources = source_names(p);
        assert!(
            sources.contains(&"lan") && sources.contains(&"sd"),
            "both flavours' signed records, one peer: {p:#}"
        );
    }
    let first_key = peer_id_in(&roster, "agent-1").expect("agent-1's peer id");
    let unsigned_deadline = Instant::now() + Duration::from_secs(10);
    while daemon_counter(
        disc,
        "rollcall_records_rejected_total",
        "reason=\"unsigned\"",
    ) == 0
    {
        assert!(
            Instant::now() < unsigned_deadline,
            "the unsigned agent's records were not counted as rejected"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A second key claims agent-1, correctly signed with its own key.
    agents.push(agent_as(&lan, 3, &signs, dir.path(), "agent-1"));
    let conflict_deadline = Instant::now() + Duration::from_secs(10);
    while daemon_counter(
        disc,
        "rollcall_records_rejected_total",
        "reason=\"identity_conflict\"",
    ) == 0
    {
        assert!(
            Instant::now() < conflict_deadline,
            "the second key's claim on agent-1 was not refused"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Its second announcement (1 s after the first) is refused too.
    std::thread::sleep(Duration::from_millis(1500));
    let roster = support::daemon_roster_in(disc).unwrap();
    assert_eq!(support::roster_ids(&roster), want, "{roster:#}");
    assert_eq!(
        peer_id_in(&roster, "agent-1").as_deref(),
        Some(first_key.as_str()),
        "agent-1 is still the first key's: {roster:#}"
    );

    // A signed goodbye is honoured at once.
    sigterm(&mut agents[1]);
    let gone = Instant::now();
    while daemon_ids(disc).as_deref() != Some(&want[..1]) {
        assert!(
            gone.elapsed() < Duration::from_secs(3),
            "signed goodbye not honoured: daemon saw {:?}",
            daemon_ids(disc)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("signed goodbye seen after {:?}", gone.elapsed());
    sigterm(&mut daemon);

    // trusted_keys: only agent-1's first key, bound to agent-1. The rogue on
    // host 4 claims agent-1 too; a cold discoverer without pins refuses it
    // because its key is not on the list.
    let trusting = config(
        dir.path(),
        "trusting.toml",
        &signed_sources(&format!(
            "require_signed = true\ntrusted_keys = [{{ peer_id = \"{first_key}\", id = \"agent-1\" }}]"
        )),
    );
    let v = wait_ids(&lan.hosts[4].ns, &trusting, dir.path(), &want[..1]);
    assert_eq!(ids(&v), want[..1], "{v:#}");
    assert_eq!(
        peer_id_in(&v, "agent-1").as_deref(),
        Some(first_key.as_str()),
        "{v:#}"
    );
}
