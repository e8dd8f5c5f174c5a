//! `rollcall peers -c examples/nats.toml` lists running `rollcall agent` processes
//! (real nats-server, real agent processes); an agent stopped with SIGTERM leaves at once.
//! `ROLLCALL_SKIP_NATS=1` skips it, saying so.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ids(url: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args([
            "peers",
            "--json",
            "--wait",
            "5s",
            "-c",
            "examples/nats.toml",
        ])
        .env("ROLLCALL__SOURCES__NATS__URL", url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<String> = v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn peers_lists_running_agents_and_a_stopped_agent_leaves() {
    if std::env::var("ROLLCALL_SKIP_NATS").as_deref() == Ok("1") {
        eprintln!("SKIPPED nats CLI test: ROLLCALL_SKIP_NATS=1");
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let nats = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start nats-server ({e}): `apt-get install nats-server` or set ROLLCALL_SKIP_NATS=1"));
    let mut procs = Killed(vec![nats]);
    std::thread::sleep(Duration::from_millis(300));
    for i in 1..=3 {
        procs.0.push(
            Command::new(env!("CARGO_BIN_EXE_rollcall"))
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                .args(["agent", "-c", "examples/nats.toml"])
                .env("ROLLCALL__SOURCES__NATS__URL", &url)
                .env("ROLLCALL__LOCAL__ID", format!("agent-{i}"))
                .env("ROLLCALL__LOCAL__ADDRS", format!("10.0.1.{i}:9000"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let want = ["agent-1", "agent-2", "agent-3"];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        seen = ids(&url);
        if seen == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(seen, want);

    // SIGTERM: the agent says goodbye; a cold discoverer no longer lists it.
    let pid = procs.0[2].id();
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    assert!(procs.0[2].wait().unwrap().success());
    assert_eq!(ids(&url), ["agent-1", "agent-3"]);
}
