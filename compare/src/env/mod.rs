//! Where agents run: processes on this machine (`local`), network namespaces
//! on a bridge (`netns`), or a Docker Swarm service (`swarm`). Each
//! environment starts what it needs, kills and stops agents on request, runs
//! the discoverer children, and removes everything it made, also on error
//! (an explicit `teardown`, and `Drop` as the last resort).

mod hosts;
mod swarm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};

use super::analyze::{EndKind, TruthAgent};
use super::scenario::{EnvKind, Scenario};
use super::BoxError;

/// A running environment.
pub(crate) enum Env {
    /// `local` and `netns`.
    Hosts(Box<hosts::Hosts>),
    /// `swarm`.
    Swarm(Box<swarm::Swarm>),
}

impl Env {
    /// Prepares the environment (network, nats-server); no agent yet.
    pub(crate) async fn setup(sc: &Scenario, dir: &Path, tag: &str) -> Result<Env, BoxError> {
        Ok(match sc.environment {
            EnvKind::Local | EnvKind::Netns => {
                Env::Hosts(Box::new(hosts::Hosts::setup(sc, dir, tag).await?))
            }
            EnvKind::Swarm => Env::Swarm(Box::new(swarm::Swarm::setup(sc, dir, tag).await?)),
        })
    }

    /// Placeholder values as the discoverers see them.
    pub(crate) fn vars(&self) -> BTreeMap<&'static str, String> {
        match self {
            Env::Hosts(h) => h.vars(),
            Env::Swarm(s) => s.vars(),
        }
    }

    /// Starts `n` more agents and returns them once they run.
    pub(crate) async fn start_agents(&mut self, n: usize) -> Result<Vec<TruthAgent>, BoxError> {
        match self {
            Env::Hosts(h) => h.start_agents(n).await,
            Env::Swarm(s) => s.start_agents(n).await,
        }
    }

    /// Kills (no goodbye) or stops (SIGTERM) agents; returns when each went.
    pub(crate) async fn end_agents(
        &mut self,
        ids: &[String],
        kind: EndKind,
    ) -> Result<Vec<(String, i64)>, BoxError> {
        match self {
            Env::Hosts(h) => h.end_agents(ids, kind).await,
            Env::Swarm(s) => s.end_agents(ids, kind).await,
        }
    }

    /// Starts the load balancer standing in for the service VIP in front of
    /// these agents; returns the URL the baseline polls.
    pub(crate) async fn start_vip(
        &mut self,
        agents: &[TruthAgent],
        path: &str,
    ) -> Result<String, BoxError> {
        match self {
            Env::Hosts(h) => h.start_vip(agents, path).await,
            Env::Swarm(s) => s.start_vip(agents, path).await,
        }
    }

    /// The command that runs a discoverer child with this spec file (std `Command`).
    pub(crate) fn discoverer(&mut self, name: &str, generation: usize, spec: &Path) -> Command {
        match self {
            Env::Hosts(h) => h.discoverer(spec),
            Env::Swarm(s) => s.discoverer(name, generation, spec),
        }
    }

    /// The command that runs an anchor's discoverer child (Prometheus beside it).
    pub(crate) fn anchor_discoverer(&mut self, spec: &Path) -> Result<Command, BoxError> {
        match self {
            Env::Hosts(_) => Err("the anchors run in the swarm environment only".into()),
            Env::Swarm(s) => s.anchor_discoverer(spec),
        }
    }

    /// A discoverer child is gone: remove what is left of it.
    pub(crate) async fn discoverer_gone(&mut self, name: &str, generation: usize) {
        if let Env::Swarm(s) = self {
            s.discoverer_gone(name, generation).await;
        }
    }

    /// Where the agents are (for the result).
    pub(crate) fn describe(&self) -> String {
        match self {
            Env::Hosts(h) => h.describe(),
            Env::Swarm(s) => s.describe(),
        }
    }

    /// Stops and removes everything this environment started.
    pub(crate) async fn teardown(&mut self) {
        match self {
            Env::Hosts(h) => h.teardown().await,
            Env::Swarm(s) => s.teardown().await,
        }
    }
}

/// Runs a command to completion; its stdout, or an error with its stderr.
pub(crate) async fn run(argv: &[&str]) -> Result<String, BoxError> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let (prog, args) = argv.split_first().ok_or("empty command")?;
        let out = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run `{prog}`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`{}` failed ({}): {}",
                argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await
    .map_err(|e| -> BoxError { e.to_string().into() })?
}

/// A child process, killed and reaped when dropped (also on error and panic).
pub(crate) struct Proc {
    child: Child,
}

impl Proc {
    /// Spawns `cmd`.
    pub(crate) fn spawn(cmd: &mut Command, what: &str) -> Result<Proc, BoxError> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        Ok(Proc { child })
    }

    /// The process id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child itself (for its pipes).
    pub(crate) fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// SIGKILL (no goodbye).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Whether it has exited.
    pub(crate) fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `d` for it to exit; true if it did.
    pub(crate) async fn wait_for(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if self.exited() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills it and waits until it is reaped.
    pub(crate) async fn kill_and_wait(&mut self) {
        self.kill();
        let _ = self.wait_for(Duration::from_secs(10)).await;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command from `Drop` (no runtime needed); errors are ignored.
pub(crate) fn run_blocking(argv: &[&str]) {
    if let Some((prog, args)) = argv.split_first() {
        let _ = std::process::Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Sends a signal to a process by pid (through `kill(1)`: this crate has no unsafe code).
pub(crate) async fn signal(pid: u32, sig: &str) -> Result<(), BoxError> {
    run(&["kill", &format!("-{sig}"), &pid.to_string()])
        .await
        .map(|_| ())
}

/// Whether a program can be found on PATH (or is an existing path).
pub(crate) fn have(prog: &str) -> bool {
    if prog.contains('/') {
        return Path::new(prog).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

/// The path of the running `rollcall` binary.
pub(crate) fn current_exe() -> Result<PathBuf, BoxError> {
    std::env::current_exe()
        .map_err(|e| format!("cannot find the rollcall binary itself: {e}").into())
}

/// Starts a nats-server with `prefix` (e.g. `nsenter --net=...`) and waits
/// until it says it is ready.
pub(crate) async fn start_nats(
    prefix: &[String],
    listen: &str,
    port: u16,
    jetstream: Option<&Path>,
    log: &Path,
) -> Result<Proc, BoxError> {
    if !have("nats-server") {
        return Err("this scenario needs nats-server: `apt-get install -y nats-server` (Debian), or put it on PATH".into());
    }
    let mut argv: Vec<String> = prefix.to_vec();
    argv.extend(["nats-server", "-a", listen, "-p", &port.to_string()].map(String::from));
    if let Some(dir) = jetstream {
        argv.extend([
            "-js".to_owned(),
            "-sd".to_owned(),
            dir.display().to_string(),
        ]);
    }
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    let mut p = Proc::spawn(
        Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
        "nats-server",
    )?;
    let stderr = p.child().stderr.take().ok_or("nats-server: no stderr")?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
    let log = log.to_path_buf();
    // Reads its log (so it never blocks on a full pipe), copies it to a file,
    // and passes the lines on until it is ready.
    std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::File::create(&log).ok();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(f) = f.as_mut() {
                let _ = writeln!(f, "{l}");
            }
            let _ = tx.try_send(l);
        }
    });
    let mut seen = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(l) = rx.recv().await {
            let ok = l.contains("Server is ready");
            seen.push(l);
            if ok {
                return true;
            }
        }
        false
    })
    .await;
    match ready {
        Ok(true) => Ok(p),
        _ => {
            p.kill_and_wait().await;
            Err(format!("nats-server did not become ready: {}", seen.join(" | ")).into())
        }
    }
}

/// An haproxy configuration: a TCP (layer 4) round-robin balancer, as Swarm's
/// IPVS virtual IP is, in front of `servers`.
pub(crate) fn haproxy_config(bind: &str, servers: &[String]) -> String {
    let mut s = String::from(
        "global\n    maxconn 4096\n\ndefaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\n",
    );
    s.push_str(&format!(
        "frontend vip\n    bind {bind}\n    default_backend agents\n\n"
    ));
    s.push_str("backend agents\n    balance roundrobin\n");
    for (i, srv) in servers.iter().enumerate() {
        s.push_str(&format!(
            "    server a{i} {srv} check inter 1s fall 2 rise 1\n"
        ));
    }
    s
}

/// Starts haproxy with `prefix` (e.g. `ip netns exec NS`); fails if it exits at once.
pub(crate) async fn start_haproxy(
    prefix: &[String],
    cfg: &Path,
    log: &Path,
) -> Result<Proc, BoxError> {
    if !have("haproxy") {
        return Err(
            "the http-vip baseline needs haproxy: `apt-get install -y haproxy` (Debian)".into(),
        );
    }
    let mut argv: Vec<String> = prefix.to_vec();
    argv.extend([
        "haproxy".to_owned(),
        "-db".to_owned(),
        "-f".to_owned(),
        cfg.display().to_string(),
    ]);
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    let logf = std::fs::File::create(log)?;
    let mut p = Proc::spawn(
        Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf),
        "haproxy",
    )?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    if p.exited() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let alerts: Vec<&str> = text.lines().filter(|l| l.contains("ALERT")).collect();
        let shown = if alerts.is_empty() {
            text.lines().collect::<Vec<_>>()
        } else {
            alerts
        };
        return Err(format!("haproxy exited at once: {}", shown.join(" | ")).into());
    }
    Ok(p)
}

/// The `rollcall agent` configuration of one agent.
pub(crate) fn agent_config(
    sc: &Scenario,
    id: &str,
    addrs: Vec<String>,
    health_listen: &str,
    detect_container: bool,
    vars: &BTreeMap<&'static str, String>,
) -> Result<String, BoxError> {
    use toml::Value;
    let mut local = sc.agent.local.clone();
    local.insert("id".into(), Value::String(id.to_owned()));
    local.insert(
        "addrs".into(),
        Value::Array(addrs.into_iter().map(Value::String).collect()),
    );
    local.insert(
        "health_listen".into(),
        Value::String(health_listen.to_owned()),
    );
    local
        .entry("detect_container")
        .or_insert(Value::Boolean(detect_container));
    let mut root = toml::Table::new();
    root.insert("local".into(), Value::Table(local));
    root.insert(
        "registry".into(),
        Value::Table(sc.agent.registry.clone().unwrap_or_else(keep_all_addresses)),
    );
    root.insert(
        "sources".into(),
        Value::Table(super::scenario::render(&sc.agent.sources, vars)),
    );
    Ok(toml::to_string(&root)?)
}

/// `[registry] exclude_addresses = []`.
pub(crate) fn keep_all_addresses() -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("exclude_addresses".into(), toml::Value::Array(Vec::new()));
    t
}

/// The addresses an agent announces: the scenario's, or the default.
pub(crate) fn agent_addrs(sc: &Scenario, default: &[&str], ip: &str, id: &str) -> Vec<String> {
    let vars = BTreeMap::from([
        ("ip", ip.to_owned()),
        ("id", id.to_owned()),
        ("health_port", sc.agent.health_port.to_string()),
    ]);
    match &sc.agent.addrs {
        Some(a) => a
            .iter()
            .map(|s| super::scenario::render_str(s, &vars))
            .collect(),
        None => default
            .iter()
            .map(|s| super::scenario::render_str(s, &vars))
            .collect(),
    }
}

/// Whether this process runs as root.
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
