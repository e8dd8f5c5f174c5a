//! Identity across backends on a real Docker Swarm: 34 replicas of `rollcall agent`
//! that also announce over NATS are 34 peers, not 68 (the agent's container id,
//! read inside the container, matches the task's container id from the Docker API).
//!
//! Needs Docker in swarm mode with the `rollcall-agent:test` image
//! (`bash scripts/docker-rig.sh && bash scripts/docker-rig.sh image`) and nats-server.
//! `ROLLCALL_SKIP_DOCKER=1` or `ROLLCALL_SKIP_NATS=1` skips it, saying so.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rollcall::config::Config;

const REPLICAS: usize = 34;
const IMAGE: &str = "rollcall-agent:test";

fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Removes what the test created, also when it fails.
struct Cleanup {
    service: String,
    network: String,
    nats: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = docker(&["service", "rm", &self.service]);
        // The network can be removed only once the tasks are gone.
        for _ in 0..60 {
            if docker(&["network", "rm", &self.network]).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if let Some(mut n) = self.nats.take() {
            let _ = n.kill();
            let _ = n.wait();
        }
    }
}

fn skip(var: &str, what: &str) -> bool {
    if std::env::var(var).as_deref() == Ok("1") {
        eprintln!("SKIPPED swarm+nats identity test: {var}=1 ({what})");
        return true;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_and_nats_sightings_of_34_agents_are_34_peers_not_68() {
    if skip("ROLLCALL_SKIP_DOCKER", "needs Docker Swarm")
        || skip("ROLLCALL_SKIP_NATS", "needs nats-server")
    {
        return;
    }
    let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]).unwrap_or_else(|e| {
        panic!("Docker is not available ({e}): run `bash scripts/docker-rig.sh` (as root) or set ROLLCALL_SKIP_DOCKER=1")
    });
    assert_eq!(
        state, "active",
        "Docker is not in swarm mode: run `bash scripts/docker-rig.sh`"
    );
    docker(&["image", "inspect", IMAGE])
        .unwrap_or_else(|_| panic!("no {IMAGE}: run `bash scripts/docker-rig.sh image`"));
    let gateway = docker(&[
        "network",
        "inspect",
        "docker_gwbridge",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
    ])
    .unwrap();

    // nats-server on the host, reachable from the tasks through the gateway bridge.
    let port = TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nats = Command::new("nats-server")
        .args(["-a", "0.0.0.0", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start nats-server ({e}): `apt-get install nats-server` or set ROLLCALL_SKIP_NATS=1"));
    let tag = format!("rc-sn-{}", std::process::id());
    let guard = Cleanup {
        service: tag.clone(),
        network: tag.clone(),
        nats: Some(nats),
    };
    docker(&["network", "create", "-d", "overlay", "--attachable", &tag]).unwrap();
    let url = format!("nats://{gateway}:{port}");
    let envs = [
        "ROLLCALL__LOCAL__ID=chorus-agent-{{.Task.Slot}}".to_owned(),
        "ROLLCALL__SOURCES__NATS__TYPE=nats".to_owned(),
        format!("ROLLCALL__SOURCES__NATS__URL={url}"),
        "ROLLCALL__SOURCES__NATS__HEARTBEAT=2s".to_owned(),
        "ROLLCALL__SOURCES__NATS__DISCOVER=false".to_owned(),
    ];
    let mut args: Vec<String> = [
        "service",
        "create",
        "--detach",
        "--quiet",
        "--no-resolve-image",
        "--name",
        &tag,
        "--network",
        &tag,
        "--endpoint-mode",
        "dnsrr",
        "--replicas",
        &REPLICAS.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for e in &envs {
        args.push("--env".into());
        args.push(e.clone());
    }
    args.extend([IMAGE.to_owned(), "agent".to_owned()]);
    docker(&args.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();

    let cfg_text = format!(
        r#"
[sources.swarm]
type = "swarm"
priority = 100
service = "{tag}"
port = 9000

[sources.nats]
type = "nats"
priority = 50
url = "nats://127.0.0.1:{port}"
"#
    );
    let cfg =
        Config::from_toml_str("swarm-nats.toml", &cfg_text, Some(Default::default())).unwrap();
    let registry = rollcall::discover(&cfg).unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(180);
    let merged = |r: &rollcall::Roster| r.peers.iter().filter(|p| p.sources.len() == 2).count();
    loop {
        let snap = registry.snapshot();
        if merged(&snap) == REPLICAS && snap.peers.len() == REPLICAS {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "after {:?}: {} peers, {} seen by both sources; sources: {:?}",
                started.elapsed(),
                snap.peers.len(),
                merged(&snap),
                registry.sources()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "34 replicas seen by swarm and nats merged into 34 peers after {:?}",
        started.elapsed()
    );
    // Settle and check again: no duplicates appear later (e.g. from a late heartbeat).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let snap = registry.snapshot();
    assert_eq!(snap.peers.len(), REPLICAS);
    assert!(
        registry.conflicts().is_empty(),
        "{:?}",
        registry.conflicts()
    );
    for p in &snap.peers {
        assert!(
            p.id.starts_with("chorus-agent-"),
            "the agent id wins the display id: {}",
            p.id
        );
        let names: Vec<&str> = p.sources.iter().map(|s| &*s.name).collect();
        assert_eq!(names, ["swarm", "nats"], "{}", p.id);
        assert!(
            p.alias(rollcall::AliasKind::TaskId).is_some()
                && p.alias(rollcall::AliasKind::ContainerId).is_some()
        );
        assert!(
            p.addrs.iter().any(|a| a.ends_with("/tcp/9000")),
            "overlay address from the swarm source: {:?}",
            p.addrs
        );
    }
    let mut ids: Vec<&str> = snap.peers.iter().map(|p| p.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), REPLICAS);
    registry.shutdown().await;
    drop(guard);
}
