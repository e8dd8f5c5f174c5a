//! Helpers shared by the daemon tests: a killed-on-drop child, free ports,
//! waiting for the API.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Child processes killed (and reaped) when the test ends, also on failure.
pub struct Killed(pub Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A port the OS just handed out on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a nats-server on a free port; `None` when ROLLCALL_SKIP_NATS=1.
pub fn nats_server(what: &str) -> Option<(Child, String)> {
    if std::env::var("ROLLCALL_SKIP_NATS").as_deref() == Ok("1") {
        eprintln!("SKIPPED {what}: ROLLCALL_SKIP_NATS=1");
        return None;
    }
    let port = free_port();
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start nats-server ({e}): `apt-get install nats-server` or set ROLLCALL_SKIP_NATS=1")
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((child, format!("nats://127.0.0.1:{port}")))
}

/// `rollcall run` with this config on this port; stderr goes to `log`.
pub fn daemon(cfg: &std::path::Path, port: u16, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["run", "--listen", &format!("127.0.0.1:{port}"), "-c"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Polls `check` every 100 ms until it is true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sorted peer ids of `GET /v1/peers`, or `None` if the API does not answer.
pub async fn peer_ids(http: &reqwest::Client, base: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = http
        .get(format!("{base}/v1/peers"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let mut ids: Vec<String> = v["peers"]
        .as_array()?
        .iter()
        .filter_map(|p| p["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    Some(ids)
}

/// Whether `prog` is on the PATH.
pub fn have(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

/// Runs `rollcall compare --scenario examples/scenarios/<scenario> --json OUT`
/// (and `--plot <dir>/plot.svg` when `plot`), asserts it succeeded, and
/// returns its JSON report and stdout.
pub fn run_compare(
    scenario: &str,
    dir: &std::path::Path,
    plot: bool,
) -> (serde_json::Value, String) {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let json = dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .arg("compare")
        .arg("--scenario")
        .arg(root.join("examples/scenarios").join(scenario))
        .arg("--json")
        .arg(&json)
        .args(if plot {
            vec!["--plot".into(), dir.join("plot.svg")]
        } else {
            vec![]
        })
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rollcall compare failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let v = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (v, stdout)
}

/// The ids on `/v1/peers` of a daemon on 127.0.0.1:7788 inside network
/// namespace `ns` (asked with curl there), sorted; None while it does not
/// answer.
pub fn daemon_ids_in(ns: &str) -> Option<Vec<String>> {
    daemon_roster_in(ns).map(|v| roster_ids(&v))
}

/// The body of `GET http://127.0.0.1:7788{path}` inside the namespace `ns`
/// (the daemon's API there), if it answered 2xx.
pub fn curl_in(ns: &str, path: &str) -> Option<Vec<u8>> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sf"])
        .arg(format!("http://127.0.0.1:7788{path}"))
        .output()
        .expect("curl (apt-get install curl)");
    out.status.success().then_some(out.stdout)
}

/// The roster JSON of that daemon.
pub fn daemon_roster_in(ns: &str) -> Option<serde_json::Value> {
    serde_json::from_slice(&curl_in(ns, "/v1/peers")?).ok()
}

/// The sorted ids of a roster JSON (`{"peers": [...]}` or a bare list).
pub fn roster_ids(v: &serde_json::Value) -> Vec<String> {
    let list = v
        .get("peers")
        .unwrap_or(v)
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut ids: Vec<String> = list
        .iter()
        .filter_map(|p| p["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}
