//! `swarm`: the agents are the replicas of a real Docker Swarm service
//! (`--endpoint-mode dnsrr`: this kernel has no IPVS, so the VIP is dead and
//! an haproxy stands in for it), on one node or more. The discoverers run as
//! containers on the service's overlay network (from the same image), so they
//! see what an orchestrator in the stack would see.
//!
//! nats-server and haproxy are the host's binaries, started inside the network
//! namespace of a small "infra" container on the overlay network (`nsenter
//! --net`), so every replica reaches them over the overlay, on every node.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use discovery_core::{Alias, AliasKind};
use serde::Deserialize;
use std::process::Command;

use super::super::analyze::{EndKind, TruthAgent};
use super::super::scenario::Scenario;
use super::super::wire::{now_us, to_us};
use super::super::BoxError;
use super::{
    agent_addrs, agent_config, have, run, run_blocking, signal, start_haproxy, start_nats, Proc,
};

const DOCKER_SOCK: &str = "/var/run/docker.sock";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Task {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    slot: u64,
    #[serde(rename = "NodeID", default)]
    node_id: String,
    #[serde(default)]
    desired_state: String,
    status: TaskStatus,
    #[serde(default)]
    networks_attachments: Vec<Attachment>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskStatus {
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    err: Option<String>,
    #[serde(default)]
    container_status: Option<ContainerStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerStatus {
    #[serde(rename = "ContainerID", default)]
    container_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Attachment {
    network: AttachedNetwork,
    #[serde(default)]
    addresses: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttachedNetwork {
    spec: NetworkSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkSpec {
    name: String,
}

struct Replica {
    container: String,
}

/// A swarm run.
pub(crate) struct Swarm {
    sc: Scenario,
    dir: PathBuf,
    tag: String,
    /// The manager's Docker endpoint (`docker -H`).
    host: String,
    net: String,
    svc: String,
    config: String,
    infra: String,
    infra_pid: u32,
    infra_ip: String,
    made: BTreeSet<&'static str>,
    nats: Option<Proc>,
    nats_url: Option<String>,
    vip: Option<Proc>,
    replicas: BTreeMap<String, Replica>,
    known_tasks: HashSet<String>,
    wanted: usize,
    nodes: BTreeMap<String, String>,
    setup_ran: bool,
    torn_down: bool,
}

/// How many replicas of one `start_agents` may fail to start and be replaced
/// before the run gives up.
const MAX_REPLACED_STARTS: usize = 3;

/// `docker -H HOST ARGS...`.
async fn dk(host: &str, args: &[&str]) -> Result<String, BoxError> {
    let mut argv = vec!["docker", "-H", host];
    argv.extend_from_slice(args);
    run(&argv).await
}

fn dk_blocking(host: &str, args: &[&str]) -> bool {
    std::process::Command::new("docker")
        .args(["-H", host])
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Swarm {
    pub(crate) async fn setup(sc: &Scenario, dir: &Path, tag: &str) -> Result<Swarm, BoxError> {
        if !have("docker") {
            return Err("the swarm environment needs Docker: run scripts/docker-rig.sh (installs docker.io, starts dockerd, swarm init)".into());
        }
        let host = sc
            .swarm
            .docker_host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| format!("unix://{DOCKER_SOCK}"));
        let mut s = Swarm {
            sc: sc.clone(),
            dir: dir.to_path_buf(),
            tag: tag.to_owned(),
            host: host.clone(),
            net: format!("rc{tag}-net"),
            svc: format!("rc{tag}-agents"),
            config: format!("rc{tag}-agent"),
            infra: format!("rc{tag}-infra"),
            infra_pid: 0,
            infra_ip: String::new(),
            made: BTreeSet::new(),
            nats: None,
            nats_url: None,
            vip: None,
            replicas: BTreeMap::new(),
            known_tasks: HashSet::new(),
            wanted: 0,
            nodes: BTreeMap::new(),
            setup_ran: false,
            torn_down: false,
        };
        // The setup command is idempotent (it also refreshes the images on
        // every node); it is torn down after the run only if the nodes were
        // not there before.
        let before = ready_nodes(&host).await.unwrap_or_default().len();
        if !sc.swarm.setup.is_empty() {
            let argv: Vec<&str> = sc.swarm.setup.iter().map(String::as_str).collect();
            s.setup_ran = before < sc.swarm.nodes;
            run(&argv).await?;
        }
        let state = dk(
            &host,
            &[
                "info",
                "--format",
                "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
            ],
        )
        .await
        .map_err(|e| {
            format!("Docker at {host} does not answer ({e}): run scripts/docker-rig.sh")
        })?;
        if state.trim() != "active true" {
            return Err(format!(
                "the swarm environment needs the Docker daemon at {host} to be a swarm manager (state: `{}`): run scripts/docker-rig.sh",
                state.trim()
            )
            .into());
        }
        s.nodes = ready_nodes(&host).await?;
        if s.nodes.len() < sc.swarm.nodes {
            return Err(format!(
                "this scenario needs {} ready swarm nodes, the swarm at {host} has {}: start them first (scripts/swarm2.sh up) or set [swarm] setup",
                sc.swarm.nodes,
                s.nodes.len()
            )
            .into());
        }
        dk(&host, &["image", "inspect", "--format", "{{.Id}}", &sc.swarm.image])
            .await
            .map_err(|_| {
                format!(
                    "no image `{}` at {host}: build it from this tree with scripts/docker-rig.sh image agent (the discoverers run `rollcall compare` inside it)",
                    sc.swarm.image
                )
            })?;
        let label = format!("rollcall.compare={tag}");
        s.made.insert("network");
        dk(
            &host,
            &[
                "network",
                "create",
                "-d",
                "overlay",
                "--attachable",
                "--label",
                &label,
                &s.net,
            ],
        )
        .await?;
        std::fs::write(
            dir.join("infra.toml"),
            "[local]\nid = \"rollcall-compare-infra\"\ndetect_container = false\n",
        )?;
        let mount = format!("{}:/rc:ro", dir.display());
        dk(
            &host,
            &[
                "run",
                "-d",
                "--name",
                &s.infra,
                "--label",
                &label,
                "--network",
                &s.net,
                "-v",
                &mount,
                "--entrypoint",
                "/rollcall",
                &sc.swarm.image,
                "agent",
                "-c",
                "/rc/infra.toml",
            ],
        )
        .await?;
        let pid = dk(&host, &["inspect", "-f", "{{.State.Pid}}", &s.infra]).await?;
        s.infra_pid = pid
            .trim()
            .parse()
            .map_err(|_| format!("infra container pid: `{}`", pid.trim()))?;
        let fmt = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            s.net
        );
        s.infra_ip = dk(&host, &["inspect", "-f", &fmt, &s.infra])
            .await?
            .trim()
            .to_owned();
        if s.infra_ip.is_empty() {
            return Err("the infra container has no address on the overlay network".into());
        }
        if let Some(n) = &sc.nats {
            let js = if n.jetstream {
                let d = dir.join("jetstream");
                std::fs::create_dir_all(&d)?;
                Some(d)
            } else {
                None
            };
            let child = start_nats(
                &s.in_infra(),
                "0.0.0.0",
                4222,
                js.as_deref(),
                &dir.join("nats-server.log"),
            )
            .await?;
            s.nats = Some(child);
            s.nats_url = Some(format!("nats://{}:4222", s.infra_ip));
        }
        Ok(s)
    }

    fn in_infra(&self) -> Vec<String> {
        vec![
            "nsenter".to_owned(),
            format!("--net=/proc/{}/ns/net", self.infra_pid),
        ]
    }

    pub(crate) fn vars(&self) -> BTreeMap<&'static str, String> {
        let mut v = BTreeMap::new();
        if let Some(u) = &self.nats_url {
            v.insert("nats_url", u.clone());
        }
        v.insert("health_port", self.sc.agent.health_port.to_string());
        v.insert("agents", self.sc.agents.to_string());
        v.insert("peers_file", "/rc/peers.json".to_owned());
        v.insert("service", self.svc.clone());
        v.insert("network", self.net.clone());
        // Inside a discoverer container the manager's socket is mounted here.
        let docker_host = if self.host.starts_with("unix://") {
            format!("unix://{DOCKER_SOCK}")
        } else {
            self.host.clone()
        };
        v.insert("docker_host", docker_host);
        // The manager's socket as the host sees it (the anchors run on the host).
        v.insert("manager", self.host.clone());
        v.insert("rundir", "/rc".to_owned());
        v
    }

    async fn tasks(&self) -> Result<Vec<Task>, BoxError> {
        let ids = dk(
            &self.host,
            &["service", "ps", "-q", "--no-trunc", &self.svc],
        )
        .await?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut argv = vec!["inspect", "--type", "task"];
        argv.extend(ids);
        let json = dk(&self.host, &argv).await?;
        Ok(serde_json::from_str(&json)?)
    }

    pub(crate) async fn start_agents(&mut self, n: usize) -> Result<Vec<TruthAgent>, BoxError> {
        let total = self.wanted + n;
        let host = self.host.clone();
        if !self.made.contains("service") {
            let vars = self.vars();
            let port = self.sc.agent.health_port;
            let id = "{{.Task.Name}}";
            let addrs = agent_addrs(&self.sc, &["/dns/{id}/tcp/{health_port}"], "{ip}", id);
            if addrs.iter().any(|a| a.contains("{ip}")) {
                return Err("[agent] addrs: a swarm replica cannot know its IP before it starts: use {id} (its task name, which Docker's DNS resolves)".into());
            }
            let text = agent_config(&self.sc, id, addrs, &format!("0.0.0.0:{port}"), true, &vars)?;
            let path = self.dir.join("agent-swarm.toml");
            std::fs::write(&path, text)?;
            let label = format!("rollcall.compare={}", self.tag);
            self.made.insert("config");
            let path = path.display().to_string();
            dk(
                &host,
                &[
                    "config",
                    "create",
                    "--template-driver",
                    "golang",
                    "--label",
                    &label,
                    &self.config,
                    &path,
                ],
            )
            .await?;
            self.made.insert("service");
            let cfg = format!("source={},target=/rollcall.toml", self.config);
            let log = format!("RUST_LOG={}", self.sc.agent.log);
            let replicas = total.to_string();
            dk(
                &host,
                &[
                    "service",
                    "create",
                    "-d",
                    "--no-resolve-image",
                    "--name",
                    &self.svc,
                    "--label",
                    &label,
                    "--replicas",
                    &replicas,
                    "--endpoint-mode",
                    "dnsrr",
                    "--network",
                    &self.net,
                    "--restart-condition",
                    "none",
                    "--stop-grace-period",
                    "10s",
                    "--config",
                    &cfg,
                    "--env",
                    &log,
                    "--entrypoint",
                    "/rollcall",
                    &self.sc.swarm.image,
                    "agent",
                    "-c",
                    "/rollcall.toml",
                ],
            )
            .await?;
        } else {
            dk(
                &host,
                &["service", "scale", "-d", &format!("{}={total}", self.svc)],
            )
            .await?;
        }
        self.wanted = total;
        let mut replaced = 0;
        let deadline = tokio::time::Instant::now() + self.sc.swarm.up_timeout;
        loop {
            let tasks = self.tasks().await?;
            let fresh: Vec<&Task> = tasks
                .iter()
                .filter(|t| !self.known_tasks.contains(&t.id) && t.desired_state == "running")
                .collect();
            let running: Vec<&&Task> = fresh
                .iter()
                .filter(|t| t.status.state == "running" && t.status.container_status.is_some())
                .collect();
            if running.len() >= n {
                let mut out = Vec::new();
                for t in running.into_iter().take(n) {
                    out.push(self.adopt(t)?);
                }
                return Ok(out);
            }
            let failed: Vec<(String, String)> = tasks
                .iter()
                .filter(|t| !self.known_tasks.contains(&t.id))
                .filter(|t| matches!(t.status.state.as_str(), "rejected" | "failed"))
                .map(|t| {
                    let why = format!(
                        "task {} on {} ({}): {}",
                        t.id,
                        self.node_name(&t.node_id),
                        t.status.state,
                        t.status.err.clone().unwrap_or_default()
                    );
                    (t.id.clone(), why)
                })
                .collect();
            let never_ran = |why: &String| {
                why.contains(": starting container failed") || why.contains("(rejected)")
            };
            if let Some((_, why)) = failed.iter().find(|(_, why)| !never_ran(why)) {
                return Err(format!("a new replica failed after it started: {why}").into());
            }
            if !failed.is_empty() {
                // Docker fails a container start now and then on a busy host
                // (moby#48783: the remount of a config's tmpfs races and answers
                // EBUSY). With restart-condition none Swarm never retries, so ask
                // it for a replacement (scaling up adds a slot; the dead one stays
                // dead) a bounded number of times. A task that never started is
                // no agent of the truth.
                replaced += failed.len();
                if replaced > MAX_REPLACED_STARTS {
                    return Err(format!(
                        "replicas failed to start ({replaced} so far, {MAX_REPLACED_STARTS} replaced), e.g. {}",
                        failed[0].1
                    )
                    .into());
                }
                for (task, why) in &failed {
                    tracing::warn!(%task, error = %why, "a replica failed to start: asking Swarm for a replacement");
                    self.known_tasks.insert(task.clone());
                }
                self.wanted += failed.len();
                dk(
                    &host,
                    &[
                        "service",
                        "scale",
                        "-d",
                        &format!("{}={}", self.svc, self.wanted),
                    ],
                )
                .await?;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "only {} of {n} new replicas run after {}",
                    fresh.iter().filter(|t| t.status.state == "running").count(),
                    humantime::format_duration(self.sc.swarm.up_timeout)
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn node_name(&self, id: &str) -> String {
        self.nodes.get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    fn adopt(&mut self, t: &Task) -> Result<TruthAgent, BoxError> {
        let container = t
            .status
            .container_status
            .as_ref()
            .map(|c| c.container_id.clone())
            .unwrap_or_default();
        let name = format!("{}.{}.{}", self.svc, t.slot, t.id);
        let mut addrs = vec![name.clone()];
        for a in &t.networks_attachments {
            if a.network.spec.name == self.net {
                for cidr in &a.addresses {
                    let ip = cidr.split('/').next().unwrap_or_default().to_owned();
                    addrs.push(format!("{ip}:{}", self.sc.agent.health_port));
                    addrs.push(ip);
                }
            }
        }
        let start = humantime::parse_rfc3339(&t.status.timestamp)
            .map(to_us)
            .map_err(|e| format!("task {}: timestamp `{}`: {e}", t.id, t.status.timestamp))?;
        self.known_tasks.insert(t.id.clone());
        self.replicas.insert(
            name.clone(),
            Replica {
                container: container.clone(),
            },
        );
        Ok(TruthAgent {
            id: name.clone(),
            aliases: vec![
                Alias::agent_id(name),
                Alias::container_id(container),
                Alias::new(AliasKind::TaskId, t.id.clone()),
            ],
            addrs,
            start_us: start,
            end: None,
            node: Some(self.node_name(&t.node_id)),
        })
    }

    pub(crate) async fn end_agents(
        &mut self,
        ids: &[String],
        kind: EndKind,
    ) -> Result<Vec<(String, i64)>, BoxError> {
        let sig = match kind {
            EndKind::Crash => "KILL",
            EndKind::Graceful => "TERM",
        };
        let mut out = Vec::new();
        for id in ids {
            let r = self
                .replicas
                .remove(id)
                .ok_or_else(|| format!("no running replica {id}"))?;
            // Every node's daemon runs on this machine: the replica's process is
            // a host process, signalled directly whatever its node.
            let pid = container_pid(&r.container);
            let t = now_us();
            match pid {
                Some(pid) => signal(pid, sig).await?,
                None => {
                    dk(&self.host, &["kill", "-s", sig, &r.container]).await.map_err(|e| {
                        format!("replica {id}: its process was not found on this machine and `docker kill` failed: {e}")
                    })?;
                }
            }
            out.push((id.clone(), t));
        }
        Ok(out)
    }

    pub(crate) async fn start_vip(
        &mut self,
        agents: &[TruthAgent],
        path: &str,
    ) -> Result<String, BoxError> {
        let port = self.sc.swarm.vip_port;
        let suffix = format!(":{}", self.sc.agent.health_port);
        let servers: Vec<String> = agents
            .iter()
            .filter_map(|a| {
                a.addrs
                    .iter()
                    .find(|x| x.ends_with(&suffix) && x.starts_with(|c: char| c.is_ascii_digit()))
            })
            .cloned()
            .collect();
        let cfg = self.dir.join("haproxy.cfg");
        std::fs::write(
            &cfg,
            super::haproxy_config(&format!("0.0.0.0:{port}"), &servers),
        )?;
        self.vip =
            Some(start_haproxy(&self.in_infra(), &cfg, &self.dir.join("haproxy.log")).await?);
        Ok(format!("http://{}:{port}{path}", self.infra_ip))
    }

    fn discoverer_name(&self, name: &str, generation: usize) -> String {
        format!("rc{}-d-{name}-{generation}", self.tag)
    }

    pub(crate) fn discoverer(&self, name: &str, generation: usize, spec: &Path) -> Command {
        let file = spec
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut c = Command::new("docker");
        c.args(["-H", &self.host, "run", "-i", "--rm"])
            .args(["--name", &self.discoverer_name(name, generation)])
            .args(["--label", &format!("rollcall.compare={}", self.tag)])
            .args(["--network", &self.net]);
        if let Some(sock) = self.host.strip_prefix("unix://") {
            c.args(["-v", &format!("{sock}:{DOCKER_SOCK}")]);
        }
        c.args(["-v", &format!("{}:/rc", self.dir.display())])
            .args([
                "-e",
                "RUST_LOG=warn",
                "--entrypoint",
                "/rollcall",
                &self.sc.swarm.image,
            ])
            .args(["compare", "--scenario", &format!("/rc/{file}")]);
        c
    }

    /// An anchor's discoverer: this binary on the host, in the network
    /// namespace of the infra container (on the service's overlay), with a
    /// private mount namespace whose `/etc/resolv.conf` names Docker's embedded
    /// DNS (127.0.0.11), so Prometheus resolves `tasks.<service>` as a
    /// container on that network would. The Docker socket is the host's.
    pub(crate) fn anchor_discoverer(&self, spec: &Path) -> Result<Command, BoxError> {
        let resolv = self.dir.join("anchor-resolv.conf");
        std::fs::write(&resolv, "nameserver 127.0.0.11\noptions ndots:0\n")?;
        let exe = super::current_exe()?;
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.infra_pid))
            .args(["unshare", "-m", "sh", "-c"])
            .arg(r#"mount --bind "$1" /etc/resolv.conf && exec "$2" compare --scenario "$3""#)
            .arg("sh")
            .arg(&resolv)
            .arg(&exe)
            .arg(spec);
        Ok(c)
    }

    pub(crate) async fn discoverer_gone(&mut self, name: &str, generation: usize) {
        let _ = dk(
            &self.host,
            &["rm", "-f", &self.discoverer_name(name, generation)],
        )
        .await;
    }

    pub(crate) fn describe(&self) -> String {
        let nodes: Vec<&str> = self.nodes.values().map(String::as_str).collect();
        format!(
            "swarm: service {} (endpoint-mode dnsrr, restart-condition none) on overlay network {}, {} node(s): {} (manager {}); discoverers are containers on that network; nats-server and haproxy run in the network namespace of container {}",
            self.svc,
            self.net,
            nodes.len(),
            nodes.join(", "),
            self.host,
            self.infra
        )
    }

    pub(crate) async fn teardown(&mut self) {
        for mut p in [self.vip.take(), self.nats.take()].into_iter().flatten() {
            p.kill_and_wait().await;
        }
        let host = self.host.clone();
        let label = format!("label=rollcall.compare={}", self.tag);
        if let Ok(ids) = dk(&host, &["ps", "-aq", "--filter", &label]).await {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut argv = vec!["rm", "-f"];
                argv.extend(ids);
                let _ = dk(&host, &argv).await;
            }
        }
        if self.made.contains("service") {
            if let Err(e) = dk(&host, &["service", "rm", &self.svc]).await {
                tracing::warn!(error = %e, "cannot remove the service");
            }
            // Its replicas stop in the background: wait (on the manager's node)
            // so that the next run does not compete with them.
            let filter = format!("label=com.docker.swarm.service.name={}", self.svc);
            for _ in 0..120 {
                match dk(&host, &["ps", "-aq", "--filter", &filter]).await {
                    Ok(ids) if ids.trim().is_empty() => break,
                    Err(_) => break,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        }
        if self.made.contains("config") {
            // The config stays in use until the tasks are gone.
            for _ in 0..60 {
                if dk(&host, &["config", "rm", &self.config]).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        if self.made.contains("network") {
            let mut ok = false;
            for _ in 0..60 {
                if dk(&host, &["network", "rm", &self.net]).await.is_ok() {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if !ok {
                tracing::warn!(network = %self.net, "cannot remove the network (still in use?)");
            }
        }
        if self.setup_ran && !self.sc.swarm.teardown.is_empty() {
            let argv: Vec<&str> = self.sc.swarm.teardown.iter().map(String::as_str).collect();
            if let Err(e) = run(&argv).await {
                tracing::warn!(error = %e, "swarm teardown command failed");
            }
        }
        self.made.clear();
        self.torn_down = true;
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        let host = self.host.clone();
        let label = format!("label=rollcall.compare={}", self.tag);
        if let Ok(out) = std::process::Command::new("docker")
            .args(["-H", &host, "ps", "-aq", "--filter", &label])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                dk_blocking(&host, &["rm", "-f", id]);
            }
        }
        if self.made.contains("service") {
            dk_blocking(&host, &["service", "rm", &self.svc]);
        }
        for _ in 0..40 {
            let cfg_gone = !self.made.contains("config")
                || dk_blocking(&host, &["config", "rm", &self.config]);
            let net_gone =
                !self.made.contains("network") || dk_blocking(&host, &["network", "rm", &self.net]);
            if cfg_gone && net_gone {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if self.setup_ran && !self.sc.swarm.teardown.is_empty() {
            let argv: Vec<&str> = self.sc.swarm.teardown.iter().map(String::as_str).collect();
            run_blocking(&argv);
        }
    }
}

/// Ready, active swarm nodes: id -> host name.
async fn ready_nodes(host: &str) -> Result<BTreeMap<String, String>, BoxError> {
    let out = dk(
        host,
        &[
            "node",
            "ls",
            "--format",
            "{{.ID}} {{.Hostname}} {{.Status}} {{.Availability}}",
        ],
    )
    .await?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4 && f[2] == "Ready" && f[3] == "Active")
                .then(|| (f[0].to_owned(), f[1].to_owned()))
        })
        .collect())
}

/// The host pid of a container's init process: the process whose cgroup names
/// the container and which is pid 1 in its own pid namespace.
fn container_pid(container: &str) -> Option<u32> {
    if container.len() < 12 {
        return None;
    }
    let entries = std::fs::read_dir("/proc").ok()?;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cg) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        if !cg.contains(container) {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let init = status
            .lines()
            .find(|l| l.starts_with("NSpid:"))
            .is_some_and(|l| l.split_whitespace().last() == Some("1"));
        if init {
            return Some(pid);
        }
    }
    None
}
