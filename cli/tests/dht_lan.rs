//! The dht source between network namespaces on one bridge: six namespaces
//! each run `rollcall agent` with a dht source (bootstrapping from two of
//! them, without `/p2p` ids), a seventh runs the daemon.
//! * the daemon lists all six with their metadata and peer ids;
//! * a partition (the far half's links down) drops the far half after the
//!   observation TTL (3 ping intervals) while the near half stays, and after
//!   the heal every agent is listed again.
//!
//! Needs root (namespaces); `ROLLCALL_SKIP_NETNS=1` skips it, saying so.

#[path = "../../backend-mdns/tests/common/netns.rs"]
mod netns;
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netns::{Lan, Proc};
use support::{daemon_roster_in as roster, roster_ids as ids};

const BIN: &str = env!("CARGO_BIN_EXE_rollcall");
const AGENTS: usize = 6;

fn config(dir: &Path, lan: &Lan) -> std::path::PathBuf {
    let p = dir.join("dht.toml");
    // One bootstrap host on each side of the coming cut.
    let (a, b) = (&lan.hosts[0].ip, &lan.hosts[AGENTS / 2].ip);
    std::fs::write(
        &p,
        format!(
            r#"
[local]
id = "placeholder"
capabilities = ["testing"]
status = "idle"

[api]
listen = "127.0.0.1:7788"

[sources.dht]
type = "dht"
listen = ["/ip4/0.0.0.0/tcp/4001"]
bootstrap = ["/ip4/{a}/tcp/4001", "/ip4/{b}/tcp/4001"]
shards = 2
ping_interval = "1s"
lookup_interval = "3s"
bootstrap_interval = "5s"
republish_interval = "10s"
provider_ttl = "60s"
"#
        ),
    )
    .unwrap();
    p
}

fn agent(lan: &Lan, k: usize, cfg: &Path, dir: &Path) -> Proc {
    let h = &lan.hosts[k];
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &h.ns, BIN, "agent", "-c"])
        .arg(cfg)
        .env("ROLLCALL__LOCAL__ID", format!("agent-{}", k + 1))
        .env("ROLLCALL__LOCAL__ADDRS", format!("{}:9000", h.ip))
        .env("ROLLCALL__IDENTITY__FILE", dir.join(format!("id-{k}.key")))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    Proc::spawn(cmd)
}

#[test]
fn dht_agents_in_namespaces_found_partition_drops_the_far_half_and_heals() {
    if netns::skip("dht netns test") {
        return;
    }
    let lan = Lan::new(AGENTS + 1);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &lan);
    let _agents: Vec<Proc> = (0..AGENTS)
        .map(|k| agent(&lan, k, &cfg, dir.path()))
        .collect();
    let disc = lan.hosts[AGENTS].ns.clone();
    let mut daemon = {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &disc, BIN, "run", "-c"])
            .arg(&cfg)
            .env("ROLLCALL__IDENTITY__FILE", dir.path().join("daemon.key"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        Proc::spawn(cmd)
    };
    let seen = || roster(&disc).map(|v| ids(&v));
    let wait = |want: &[String], within: Duration, what: &str| {
        let t = Instant::now();
        while seen().as_deref() != Some(want) {
            assert!(t.elapsed() < within, "{what}: daemon saw {:?}", seen());
            std::thread::sleep(Duration::from_millis(200));
        }
        t.elapsed()
    };
    let all: Vec<String> = (1..=AGENTS).map(|k| format!("agent-{k}")).collect();
    let cold = wait(&all, Duration::from_secs(40), "cold start");
    let v = roster(&disc).unwrap();
    for p in v.get("peers").unwrap_or(&v).as_array().unwrap() {
        let aliases = p["aliases"].to_string();
        assert!(aliases.contains("peer_id"), "{p}: carries its peer id");
        assert_eq!(p["status"], "idle", "{p}: metadata over the meta protocol");
        assert!(
            p["addrs"].to_string().contains("/ip4/10."),
            "{p}: its LAN address, never loopback"
        );
        assert!(!p["addrs"].to_string().contains("127.0.0.1"), "{p}");
    }
    // Still all there after several TTLs: pings renew the observations.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(seen().as_deref(), Some(&all[..]), "live peers were renewed");

    for k in AGENTS / 2..AGENTS {
        lan.link_down(k);
    }
    let near: Vec<String> = (1..=AGENTS / 2).map(|k| format!("agent-{k}")).collect();
    let cut = wait(
        &near,
        Duration::from_secs(20),
        "the far half was never dropped",
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        seen().as_deref(),
        Some(&near[..]),
        "the near half stays through the partition"
    );
    for k in AGENTS / 2..AGENTS {
        lan.link_up(k);
    }
    let healed = wait(
        &all,
        Duration::from_secs(60),
        "not every agent returned after the heal",
    );
    eprintln!(
        "dht netns: {AGENTS} agents listed {cold:?} after start; far half dropped {cut:?} after the cut (ttl 3 s); all back {healed:?} after the heal"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.child.id().to_string()])
        .status();
    let _ = daemon.child.wait();
}
