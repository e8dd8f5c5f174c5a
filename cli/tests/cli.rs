//! End to end through the `rollcall` binary and the facade, with the static backend.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rollcall::config::Config;
use rollcall::{RosterEvent, WatchUpdate};

fn rollcall() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rollcall"))
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn peers_json(config: &Path) -> serde_json::Value {
    let out = rollcall()
        .args(["peers", "--json", "--wait", "5s", "-c"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const TWO_SOURCES: &str = r#"
[sources.high]
type = "static"
priority = 100
peers = [{ id = "walnut", name = "walnut-high", capabilities = ["go_development"], addrs = ["/ip4/10.0.1.7/tcp/9000", "127.0.0.1:9000"] }]

[sources.low]
type = "static"
priority = 10
peers = [{ id = "walnut", name = "walnut-low", status = "idle", addrs = ["192.168.1.27:9000", "10.0.1.7:9000"] }]
"#;

#[test]
fn two_static_sources_give_one_peer_fields_by_priority_addresses_unioned_loopback_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "two.toml", TWO_SOURCES);
    let v = peers_json(&cfg);
    let peers = v["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{v:#}");
    let p = &peers[0];
    assert_eq!(p["id"], "walnut");
    assert_eq!(p["name"], "walnut-high");
    assert_eq!(p["status"], "idle");
    assert_eq!(p["capabilities"], serde_json::json!(["go_development"]));
    assert_eq!(
        p["addrs"],
        serde_json::json!(["/ip4/10.0.1.7/tcp/9000", "/ip4/192.168.1.27/tcp/9000"])
    );
    let sources: Vec<&str> = p["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["high", "low"]);
    assert!(
        p["sources"][0]["last_seen"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "RFC 3339"
    );
    assert!(v["version"].as_u64().unwrap() > 0);

    // `exclude_addresses = []` keeps loopback.
    let keep = write(
        dir.path(),
        "keep.toml",
        &format!("[registry]\nexclude_addresses = []\n{TWO_SOURCES}"),
    );
    let v = peers_json(&keep);
    let addrs = v["peers"][0]["addrs"].as_array().unwrap();
    assert!(
        addrs.iter().any(|a| a == "/ip4/127.0.0.1/tcp/9000"),
        "{addrs:?}"
    );
}

#[test]
fn the_table_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "two.toml", TWO_SOURCES);
    let out = rollcall().args(["peers", "-c"]).arg(&cfg).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("ID"), "{text}");
    assert!(
        text.contains("walnut") && text.contains("high,low") && text.contains("1 peers"),
        "{text}"
    );
}

#[test]
fn check_config_names_a_misspelled_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.toml",
        "[sources.seeds]\ntype = \"static\"\npeers = [{ id = \"a\", adrs = [\"10.0.0.1:1\"] }]\n",
    );
    let out = rollcall().arg("check-config").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sources.seeds.peers[0]") && err.contains("adrs"),
        "{err}"
    );

    let bad_registry = write(
        dir.path(),
        "bad2.toml",
        "[registry]\nexclude_adresses = []\n",
    );
    let out = rollcall()
        .arg("check-config")
        .arg(&bad_registry)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exclude_adresses"), "{err}");

    let good = write(dir.path(), "good.toml", TWO_SOURCES);
    let out = rollcall().arg("check-config").arg(&good).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 source(s)"));

    // The first bad file of several fails the run.
    let out = rollcall()
        .arg("check-config")
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// `rollcall peers` on `config`: its exit code, stdout and stderr.
fn peers_table(config: &Path) -> (Option<i32>, String, String) {
    let out = rollcall()
        .args(["peers", "--wait", "5s", "-c"])
        .arg(config)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// Issue 8, finding 4: a primary whose only file is refused at start never
/// synced, so `rollcall peers` must not print an empty roster as the truth:
/// it exits 3 and names the source and why. With a second primary that did
/// sync, the same refused file is a warning and the run succeeds.
#[test]
fn peers_exits_3_when_no_primary_ever_synced_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let big: String = (0..200)
        .map(|i| {
            format!(
                "[[peers]]\nid = \"agent-{i}\"\naddrs = [\"10.0.0.{}:9000\"]\n",
                i % 250
            )
        })
        .collect();
    let file = write(dir.path(), "peers.toml", &big);
    let refused = format!(
        "[sources.list]\ntype = \"static\"\nfile = {:?}\nmax_file_bytes = 1024\n",
        file.display().to_string()
    );
    let (code, _, err) = peers_table(&write(dir.path(), "refused.toml", &refused));
    assert_eq!(code, Some(3), "stderr: {err}");
    assert!(err.contains("no primary source ever synced"), "{err}");
    assert!(
        err.contains("source `list`") && err.contains("max_file_bytes"),
        "the source and the fix are named: {err}"
    );

    let with_good = write(
        dir.path(),
        "mixed.toml",
        &format!(
            "{refused}\n[sources.inventory]\ntype = \"static\"\npeers = [{{ id = \"walnut\", addrs = [\"10.0.1.7:9000\"] }}]\n"
        ),
    );
    let (code, table, err) = peers_table(&with_good);
    assert_eq!(code, Some(0), "stderr: {err}");
    assert!(table.contains("walnut"), "{table}");
    assert!(
        err.contains("source `list` is degraded"),
        "the failed source is not hidden: {err}"
    );
}

#[test]
fn config_errors_name_the_key_and_the_fix() {
    let cases = [
        (
            "[sources.x]\ntype = \"carrier-pigeon\"\n",
            "sources.x.type",
            "unknown backend",
        ),
        ("[sources.x]\npriority = 3\n", "sources.x.type", "missing"),
        (
            "[sources.x]\ntype = \"static\"\npriority = \"high\"\npeers = []\n",
            "sources.x.priority",
            "invalid type",
        ),
        (
            "[sources.x]\ntype = \"static\"\nrole = \"backup\"\npeers = []\n",
            "sources.x.role",
            "unknown role `backup`",
        ),
        (
            "[registry]\nexclude_addresses = [\"loopbak\"]\n",
            "registry.exclude_addresses",
            "unknown address class `loopbak`",
        ),
        (
            "[registry]\nmax_staleness = \"five minutes\"\n",
            "registry.max_staleness",
            "",
        ),
        (
            "[registry]\nprefer_networks = [\"10.0.0.0/33\"]\n",
            "registry.prefer_networks",
            "",
        ),
        (
            "[local]\nid = \"a\"\naddrs = [\"not an address\"]\n",
            "local.addrs",
            "invalid address",
        ),
        ("[registry\n", "", "not valid TOML"),
    ];
    for (text, key, words) in cases {
        let err = Config::from_toml_str("test.toml", text, Some(Default::default()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(key) && err.contains(words),
            "{text:?} gave {err:?}"
        );
    }
}

#[test]
fn environment_overrides_the_file() {
    let env = [
        (
            "ROLLCALL__REGISTRY__MAX_STALENESS".to_string(),
            "90s".to_string(),
        ),
        (
            "ROLLCALL__LOCAL__ID".to_string(),
            "agent-from-env".to_string(),
        ),
        (
            "ROLLCALL__LOCAL__ADDRS".to_string(),
            "10.0.1.7:9000,/ip4/10.0.2.7/tcp/9000".to_string(),
        ),
        (
            "ROLLCALL__REGISTRY__EXCLUDE_ADDRESSES".to_string(),
            "loopback".to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let cfg = Config::from_toml_str("t.toml", "[local]\nid = \"file\"\n", Some(env)).unwrap();
    assert_eq!(cfg.registry.max_staleness, Duration::from_secs(90));
    let local = cfg.local.unwrap();
    assert_eq!(local.id, "agent-from-env");
    assert_eq!(local.addrs, ["10.0.1.7:9000", "/ip4/10.0.2.7/tcp/9000"]);
    assert_eq!(
        cfg.registry.exclude_addresses,
        [rollcall::AddressClass::Loopback]
    );
}

#[test]
fn every_shipped_example_config_is_valid() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml")
            && p.file_name().is_some_and(|f| f != "peers.toml")
        {
            let out = rollcall()
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                .arg("check-config")
                .arg(&p)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_watched_file_changes_the_roster_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let peers = write(
        dir.path(),
        "peers.toml",
        "peers = [{ id = \"a\", addrs = [\"10.0.0.1:9000\"] }]\n",
    );
    let cfg_text = format!(
        "[sources.file]\ntype = \"static\"\nfile = \"{}\"\nwatch_interval = \"100ms\"\n",
        peers.display()
    );
    let cfg = Config::from_toml_str("t.toml", &cfg_text, Some(Default::default())).unwrap();
    let registry = rollcall::discover(&cfg).unwrap();
    assert!(registry.wait_first_sync(Duration::from_secs(5)).await);
    let ids = |r: &rollcall::Roster| r.peers.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&registry.snapshot()), ["a"]);
    let mut watch = registry.watch();
    let _ = watch.next().await;

    // Write the new content into a temp file and rename it over: an atomic edit.
    let tmp = dir.path().join("peers.tmp");
    std::fs::File::create(&tmp)
        .unwrap()
        .write_all(b"peers = [{ id = \"b\", addrs = [\"10.0.0.2:9000\"] }]\n")
        .unwrap();
    std::fs::rename(&tmp, &peers).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut joined_b = false;
    let mut left_a = false;
    while !(joined_b && left_a) && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(WatchUpdate::Event(RosterEvent::Joined { peer, .. }))) if peer.id == "b" => {
                joined_b = true
            }
            Ok(Some(WatchUpdate::Event(RosterEvent::Left { peer, .. }))) if peer.id == "a" => {
                left_a = true
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(
        joined_b && left_a,
        "roster now {:?}",
        ids(&registry.snapshot())
    );

    // A broken edit keeps the last good list and marks the source degraded.
    std::fs::write(&peers, "peers = [{ id = ").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while registry.sources()[0].health != rollcall::Health::Degraded && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(registry.sources()[0].health, rollcall::Health::Degraded);
    assert_eq!(ids(&registry.snapshot()), ["b"], "stale beats partial");
    registry.shutdown().await;
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn agent_serves_its_identity_and_a_static_probe_learns_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let agent_cfg = write(
        dir.path(),
        "agent.toml",
        &format!(
            "[local]\nid = \"chorus-agent-7\"\nname = \"walnut\"\naddrs = [\"/ip4/10.0.1.7/tcp/9000\"]\ncapabilities = [\"go_development\"]\nlabels = {{ model = \"llama3.1:8b\" }}\naliases = [{{ kind = \"peer_id\", value = \"12D3KooWAgent7\" }}]\nhealth_listen = \"127.0.0.1:{port}\"\n"
        ),
    );
    let mut agent = rollcall()
        .args(["agent", "-c"])
        .arg(&agent_cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The discoverer knows only the agent's health address; the probe supplies the identity.
    let disc_cfg = write(
        dir.path(),
        "disc.toml",
        &format!(
            "[registry]\nexclude_addresses = []\n[sources.probe]\ntype = \"static\"\npeers = [{{ addrs = [\"127.0.0.1:{port}\"] }}]\nprobe = {{ path = \"/health\", port = {port}, interval = \"1s\", timeout = \"1s\", retries = 2 }}\n"
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut found = serde_json::Value::Null;
    while Instant::now() < deadline {
        let v = peers_json(&disc_cfg);
        if v["peers"]
            .as_array()
            .is_some_and(|p| p.len() == 1 && p[0]["id"] == "chorus-agent-7")
        {
            found = v;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let p = &found["peers"][0];
    assert_eq!(p["id"], "chorus-agent-7", "{found:#}");
    let aliases = p["aliases"].as_array().unwrap();
    assert!(
        aliases
            .iter()
            .any(|a| a["kind"] == "peer_id" && a["value"] == "12D3KooWAgent7"),
        "{aliases:?}"
    );

    // SIGTERM: the agent stops cleanly.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(agent.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = agent.try_wait().unwrap() {
            assert!(status.success(), "agent exit {status}");
            break;
        }
        assert!(Instant::now() < deadline, "agent did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn agent_without_local_section_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "a.toml", TWO_SOURCES);
    let out = rollcall().args(["agent", "-c"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("[local]"));
}
