//! Helpers of the Docker tests: prerequisites, the docker CLI, a cleanup
//! guard, a registry running the source, and Docker's own view as the truth.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use backend_swarm::{Config, SwarmSource};
use discovery_core::{Registry, RegistryBuilder, RegistryConfig, Roster, SourceOptions};

/// The workload image (`scripts/docker-rig.sh image probe`).
pub const PROBE_IMAGE: &str = "rollcall-swarm-probe:test";
/// The static `rollcall` binary (`scripts/docker-rig.sh image agent`).
pub const AGENT_IMAGE: &str = "rollcall-agent:test";

/// One Docker test at a time: 34-replica services on 2 cores are enough load.
static DOCKER_LOCK: Mutex<()> = Mutex::new(());

/// Holds the lock for a Docker test, or `None` when ROLLCALL_SKIP_DOCKER=1.
/// Panics with what to do when Docker, the swarm or the image is missing.
pub fn docker_or_skip(test: &str) -> Option<MutexGuard<'static, ()>> {
    if std::env::var("ROLLCALL_SKIP_DOCKER").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: ROLLCALL_SKIP_DOCKER=1 (needs a Docker Swarm manager)");
        return None;
    }
    let guard = DOCKER_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let fix = "run `scripts/docker-rig.sh && scripts/docker-rig.sh image probe` as root (installs docker.io, starts dockerd, inits a one-node swarm, builds the test image), or set ROLLCALL_SKIP_DOCKER=1 to skip";
    match Command::new("docker")
        .args([
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ])
        .output()
    {
        Err(e) => panic!("{test} needs the docker CLI ({e}): {fix}"),
        Ok(o) if !o.status.success() => panic!(
            "{test} needs a running dockerd (`docker info` failed: {}): {fix}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(o) => {
            let out = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            assert_eq!(
                out, "active true",
                "{test} needs this daemon to be a swarm manager (got `{out}`): {fix}"
            );
        }
    }
    let img = Command::new("docker")
        .args(["image", "inspect", PROBE_IMAGE])
        .output()
        .unwrap();
    assert!(
        img.status.success(),
        "{test} needs the image {PROBE_IMAGE}: {fix}"
    );
    Some(guard)
}

/// Runs `docker ARGS`, panicking with its stderr on failure.
pub fn docker(args: &[&str]) -> String {
    match try_docker(args) {
        Ok(s) => s,
        Err(e) => panic!("docker {}: {e}", args.join(" ")),
    }
}

/// Makes every helper talk to this daemon (`-H`) instead of the default one.
pub fn use_docker_host(host: &str) {
    DOCKER_HOST.set(host.to_owned()).expect("set once");
}
static DOCKER_HOST: OnceLock<String> = OnceLock::new();

pub fn try_docker(args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("docker");
    if let Some(h) = DOCKER_HOST.get() {
        cmd.args(["-H", h]);
    }
    let o = cmd.args(args).output().map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_owned())
    }
}

/// A name no other run uses.
pub fn unique(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "rc-{what}-{}-{}-{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 0xffff
    )
}

/// Removes what a test created when it ends, also when it fails.
#[derive(Default)]
pub struct Cleanup {
    services: Vec<String>,
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Cleanup {
    pub fn new() -> Self {
        Self::default()
    }

    /// An overlay network (attachable, so `docker run` containers can join).
    pub fn overlay(&mut self, name: &str) {
        docker(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--attachable",
            "--label",
            "rollcall.test=1",
            name,
        ]);
        self.networks.push(name.to_owned());
    }

    /// A user-defined bridge network.
    pub fn bridge(&mut self, name: &str) {
        docker(&[
            "network",
            "create",
            "-d",
            "bridge",
            "--label",
            "rollcall.test=1",
            name,
        ]);
        self.networks.push(name.to_owned());
    }

    /// `docker service create` of the probe with `replicas` tasks on `net`.
    pub fn service(&mut self, name: &str, net: &str, replicas: u32, extra: &[&str]) {
        let replicas = replicas.to_string();
        let mut args = vec![
            "service",
            "create",
            "--detach",
            "--quiet",
            "--name",
            name,
            "--replicas",
            &replicas,
            "--endpoint-mode",
            "dnsrr",
            "--network",
            net,
            "--label",
            "rollcall.test=1",
            "--container-label",
            "rollcall.test=1",
            "--stop-grace-period",
            "2s",
            "--restart-delay",
            "0s",
            // The image is local; asking a registry for its digest only costs
            // a DNS timeout where there is no route to a DNS server.
            "--no-resolve-image",
        ];
        args.extend_from_slice(extra);
        args.push(PROBE_IMAGE);
        args.push("serve");
        self.services.push(name.to_owned());
        docker(&args);
    }

    /// `docker run -d` of the probe.
    pub fn container(&mut self, name: &str, args: &[&str]) -> String {
        let mut a = vec!["run", "-d", "--name", name, "--label", "rollcall.test=1"];
        a.extend_from_slice(args);
        a.push(PROBE_IMAGE);
        a.push("serve");
        self.containers.push(name.to_owned());
        docker(&a)
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for s in &self.services {
            let _ = try_docker(&["service", "rm", s]);
        }
        for c in &self.containers {
            let _ = try_docker(&["rm", "-f", c]);
        }
        // A network can be removed once the task containers have left it.
        let deadline = Instant::now() + Duration::from_secs(60);
        for n in &self.networks {
            while try_docker(&["network", "rm", n])
                .is_err_and(|e| !e.contains("not found") && !e.contains("No such"))
            {
                if Instant::now() > deadline {
                    eprintln!("WARNING: network {n} still in use after 60 s; `scripts/docker-rig.sh clean` removes it");
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}

/// Runs `docker -H HOST ARGS`.
pub fn docker_at(host: &str, args: &[&str]) -> String {
    let o = Command::new("docker")
        .args(["-H", host])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "docker -H {host} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// A registry running one swarm source, keeping loopback addresses.
pub fn start(config: Config) -> Registry {
    let src = SwarmSource::new(config).unwrap();
    RegistryBuilder::new(RegistryConfig {
        exclude_addresses: vec![],
        ..Default::default()
    })
    .source("swarm", SourceOptions::default(), src)
    .start()
    .unwrap()
}

/// Waits until `pred` holds for the roster; returns how long it took, or the
/// last roster after `timeout`.
pub async fn wait_for(
    reg: &Registry,
    timeout: Duration,
    pred: impl Fn(&Roster) -> bool,
) -> Result<Duration, Roster> {
    let t0 = Instant::now();
    let mut watch = reg.watch();
    loop {
        let snap = reg.snapshot();
        if pred(&snap) {
            return Ok(t0.elapsed());
        }
        let left = timeout.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return Err(snap);
        }
        let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), watch.next()).await;
    }
}

/// Peers of the roster that belong to `service`.
pub fn peers_of<'a>(roster: &'a Roster, service: &str) -> Vec<&'a discovery_core::Peer> {
    roster
        .peers
        .iter()
        .map(|p| -> &discovery_core::Peer { p })
        .filter(|p| p.labels.get("swarm.service").map(String::as_str) == Some(service))
        .collect()
}

/// What Docker itself says: task id -> (container id, IP on `net`), for the
/// tasks of `service` that Swarm wants running and that run, read from
/// `docker service ps` and the containers' own network settings.
pub fn truth(service: &str, net: &str) -> BTreeMap<String, (String, String)> {
    let tasks = docker(&[
        "service",
        "ps",
        service,
        "--no-trunc",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.ID}} {{.CurrentState}}",
    ]);
    let running: Vec<&str> = tasks
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("Running"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let ps = docker(&[
        "ps",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
        "--format",
        "{{.ID}} {{.Label \"com.docker.swarm.task.id\"}}",
    ]);
    let mut out = BTreeMap::new();
    for line in ps.lines() {
        let mut it = line.split_whitespace();
        let (Some(cid), Some(tid)) = (it.next(), it.next()) else {
            continue;
        };
        if !running.contains(&tid) {
            continue;
        }
        let tmpl = format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}");
        if let Ok(ip) = try_docker(&["inspect", "-f", &tmpl, cid]) {
            out.insert(tid.to_owned(), (cid.to_owned(), ip));
        }
    }
    out
}

/// The same shape from the roster: task id -> (container id, IP).
pub fn seen(roster: &Roster, service: &str) -> BTreeMap<String, (String, String)> {
    peers_of(roster, service)
        .into_iter()
        .map(|p| {
            let ip = p
                .addrs
                .first()
                .and_then(|a| a.split('/').nth(2))
                .unwrap_or_default()
                .to_owned();
            (
                p.alias(discovery_core::AliasKind::TaskId)
                    .unwrap_or_default()
                    .to_owned(),
                (
                    p.alias(discovery_core::AliasKind::ContainerId)
                        .unwrap_or_default()
                        .to_owned(),
                    ip,
                ),
            )
        })
        .collect()
}

/// Waits (polling Docker) until `service` runs exactly `n` tasks as Docker sees them.
pub fn wait_docker_running(
    service: &str,
    net: &str,
    n: usize,
    timeout: Duration,
) -> BTreeMap<String, (String, String)> {
    let t0 = Instant::now();
    loop {
        let t = truth(service, net);
        if t.len() == n {
            return t;
        }
        assert!(
            t0.elapsed() < timeout,
            "Docker did not run {n} tasks of {service} within {timeout:?} (has {})",
            t.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// How long after the last of these tasks reached `running` (Swarm's own
/// status timestamp) the source saw them all: the source's lag behind Docker.
pub fn lag_behind_docker(task_ids: &[String], observed_at: std::time::SystemTime) -> Duration {
    let mut args = vec!["inspect", "-f", "{{.Status.Timestamp.UnixNano}}"];
    args.extend(task_ids.iter().map(String::as_str));
    let latest = docker(&args)
        .lines()
        .filter_map(|l| l.trim().parse::<u128>().ok())
        .max()
        .unwrap_or_default();
    let seen = observed_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Duration::from_nanos(seen.saturating_sub(latest) as u64)
}
