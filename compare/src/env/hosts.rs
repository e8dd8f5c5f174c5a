//! `local` and `netns`: every agent is a `rollcall agent` process of this
//! machine. In `local` each has its own loopback address (127.77.x.y); in
//! `netns` each is alone in a network namespace joined to a bridge, like a
//! host on a LAN, and so are the nats-server, the load balancer and the
//! discoverers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use discovery_core::Alias;
use futures::StreamExt;
use std::process::Command;

use super::super::analyze::{EndKind, TruthAgent};
use super::super::scenario::{EnvKind, Scenario};
use super::super::wire::now_us;
use super::super::BoxError;
use super::{
    agent_addrs, agent_config, current_exe, run, run_blocking, signal, start_haproxy, start_nats,
    Proc,
};

/// Health checks in flight while agents come up.
const UP_CONCURRENCY: usize = 64;

struct Agent {
    proc: Proc,
}

/// The bridge and namespaces of a `netns` run.
struct Net {
    bridge: String,
    prefix: (u8, u8),
    namespaces: Vec<String>,
    veths: usize,
    rule: Option<Vec<String>>,
}

impl Net {
    fn ip(&self, c: u8, d: u8) -> String {
        format!("{}.{}.{c}.{d}", self.prefix.0, self.prefix.1)
    }

    /// The bridge, its iptables rule, and the namespaces of nats, discoverers and load balancer.
    async fn setup(&mut self, tag: &str) -> Result<(), BoxError> {
        let bridge = self.bridge.clone();
        run(&["ip", "link", "add", &bridge, "type", "bridge"]).await?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/16", self.ip(255, 254)),
            "dev",
            &bridge,
        ])
        .await?;
        run(&["ip", "link", "set", &bridge, "up"]).await?;
        // Once Docker is installed, FORWARD drops bridged frames (br_netfilter).
        let comment = format!("rollcall-compare-{tag}");
        let rule: Vec<String> = [
            "FORWARD",
            "-i",
            &bridge,
            "-o",
            &bridge,
            "-m",
            "comment",
            "--comment",
            &comment,
            "-j",
            "ACCEPT",
        ]
        .map(String::from)
        .to_vec();
        let mut argv: Vec<&str> = vec!["iptables", "-I"];
        argv.extend(rule.iter().map(String::as_str));
        run(&argv).await?;
        self.rule = Some(rule);
        for (name, d) in [("nats", 1u8), ("disc", 2), ("vip", 3)] {
            let ip = self.ip(255, d);
            self.host(tag, &format!("rc{tag}-{name}"), &ip).await?;
        }
        Ok(())
    }

    /// A namespace with one veth on the bridge and this address.
    async fn host(&mut self, tag: &str, ns: &str, ip: &str) -> Result<(), BoxError> {
        run(&["ip", "netns", "add", ns]).await?;
        self.namespaces.push(ns.to_owned());
        self.veths += 1;
        let veth = format!("rc{tag}v{}", self.veths);
        run(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])
        .await?;
        run(&["ip", "link", "set", &veth, "master", &self.bridge, "up"]).await?;
        run(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{ip}/16"),
            "dev",
            "eth0",
        ])
        .await?;
        run(&["ip", "-n", ns, "link", "set", "eth0", "up"]).await?;
        run(&["ip", "-n", ns, "link", "set", "lo", "up"]).await?;
        Ok(())
    }

    fn remove_blocking(&mut self) {
        for ns in self.namespaces.drain(..) {
            run_blocking(&["ip", "netns", "del", &ns]);
        }
        run_blocking(&["ip", "link", "del", &self.bridge]);
        if let Some(rule) = self.rule.take() {
            let mut argv: Vec<&str> = vec!["iptables", "-D"];
            argv.extend(rule.iter().map(String::as_str));
            run_blocking(&argv);
        }
    }

    async fn remove(&mut self) {
        for ns in self.namespaces.drain(..) {
            let _ = run(&["ip", "netns", "del", &ns]).await;
        }
        let _ = run(&["ip", "link", "del", &self.bridge]).await;
        if let Some(rule) = self.rule.take() {
            let mut argv: Vec<&str> = vec!["iptables", "-D"];
            argv.extend(rule.iter().map(String::as_str));
            if let Err(e) = run(&argv).await {
                tracing::warn!(error = %e, "cannot remove the iptables rule");
            }
        }
    }
}

/// Processes on this machine, in namespaces or not.
pub(crate) struct Hosts {
    sc: Scenario,
    dir: PathBuf,
    exe: PathBuf,
    tag: String,
    net: Option<Net>,
    /// `local`: agents get 127.{loop_octet}.x.y.
    loop_octet: u8,
    nats: Option<Proc>,
    nats_url: Option<String>,
    vip: Option<Proc>,
    agents: BTreeMap<String, Agent>,
    /// Agents told to stop; reaped at teardown.
    ending: Vec<Proc>,
    next: usize,
    http: reqwest::Client,
    torn_down: bool,
}

impl Hosts {
    pub(crate) async fn setup(sc: &Scenario, dir: &Path, tag: &str) -> Result<Hosts, BoxError> {
        let exe = current_exe()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(0)
            .build()?;
        let mut h = Hosts {
            sc: sc.clone(),
            dir: dir.to_path_buf(),
            exe,
            tag: tag.to_owned(),
            net: None,
            loop_octet: 77,
            nats: None,
            nats_url: None,
            vip: None,
            agents: BTreeMap::new(),
            ending: Vec::new(),
            next: 0,
            http,
            torn_down: false,
        };
        if sc.environment == EnvKind::Local {
            // A loopback /16 nobody listens on (runs at the same time do not collide).
            let port = sc.agent.health_port;
            let start = std::process::id() as usize;
            h.loop_octet = (0..100)
                .map(|k| (100 + (start + k) % 100) as u8)
                .find(|b| std::net::TcpListener::bind(format!("127.{b}.0.1:{port}")).is_ok())
                .ok_or("no free loopback /16 in 127.100-199 for the agents")?;
        }
        if sc.environment == EnvKind::Netns {
            if !super::is_root() {
                return Err("the netns environment needs root (network namespaces, a bridge, an iptables rule)".into());
            }
            for prog in ["ip", "iptables"] {
                if !super::have(prog) {
                    return Err(format!("the netns environment needs `{prog}`: apt-get install -y iproute2 iptables").into());
                }
            }
            let prefix = sc.netns.prefix()?;
            // Recorded first: whatever the setup made is removed if it fails half-way (Drop).
            h.net = Some(Net {
                bridge: format!("rcb{tag}"),
                prefix,
                namespaces: Vec::new(),
                veths: 0,
                rule: None,
            });
            if let Some(net) = h.net.as_mut() {
                net.setup(tag).await?;
            }
        }
        if let Some(n) = &sc.nats {
            let (prefix, listen, port) = match &h.net {
                Some(net) => (h.in_ns("nats"), net.ip(255, 1), 4222),
                None => (Vec::new(), "127.0.0.1".to_owned(), free_port()?),
            };
            let js = if n.jetstream {
                let d = dir.join("jetstream");
                std::fs::create_dir_all(&d)?;
                Some(d)
            } else {
                None
            };
            let child = start_nats(
                &prefix,
                &listen,
                port,
                js.as_deref(),
                &dir.join("nats-server.log"),
            )
            .await?;
            h.nats = Some(child);
            h.nats_url = Some(format!("nats://{listen}:{port}"));
        }
        Ok(h)
    }

    fn in_ns(&self, name: &str) -> Vec<String> {
        vec![
            "ip".to_owned(),
            "netns".to_owned(),
            "exec".to_owned(),
            format!("rc{}-{name}", self.tag),
        ]
    }

    pub(crate) fn vars(&self) -> BTreeMap<&'static str, String> {
        let mut v = BTreeMap::new();
        if let Some(u) = &self.nats_url {
            v.insert("nats_url", u.clone());
        }
        v.insert("health_port", self.sc.agent.health_port.to_string());
        v.insert("agents", self.sc.agents.to_string());
        v.insert(
            "peers_file",
            self.dir.join("peers.json").display().to_string(),
        );
        v.insert("service", format!("rc{}-agents", self.tag));
        v.insert("rundir", self.dir.display().to_string());
        // Bootstrap hosts for sources that need some (dht): four agents
        // spread over the start order, so churn rarely ends them all.
        let n = self.sc.agents.max(1);
        for (name, i) in [
            ("seed_1", 1),
            ("seed_2", n / 4 + 1),
            ("seed_3", n / 2 + 1),
            ("seed_4", 3 * n / 4 + 1),
        ] {
            v.insert(name, self.agent_ip(i.min(n - 1)));
        }
        v
    }

    fn agent_ip(&self, i: usize) -> String {
        let (c, d) = ((i / 250) as u8, (i % 250 + 1) as u8);
        match &self.net {
            Some(net) => net.ip(c, d),
            None => format!("127.{}.{c}.{d}", self.loop_octet),
        }
    }

    pub(crate) async fn start_agents(&mut self, n: usize) -> Result<Vec<TruthAgent>, BoxError> {
        let max = 250 * 250;
        if self.next + n > max {
            return Err(format!("at most {max} agents per run").into());
        }
        let vars = self.vars();
        let port = self.sc.agent.health_port;
        let mut started = Vec::new();
        for _ in 0..n {
            let i = self.next;
            self.next += 1;
            let id = format!("agent-{i:04}");
            let ip = self.agent_ip(i);
            let addrs = agent_addrs(&self.sc, &["{ip}:{health_port}"], &ip, &id);
            // An agent's sources may name its own address (a dht listen address).
            let mut agent_vars = vars.clone();
            agent_vars.insert("ip", ip.clone());
            let text = agent_config(
                &self.sc,
                &id,
                addrs.clone(),
                &format!("{ip}:{port}"),
                false,
                &agent_vars,
            )?;
            let cfg_path = self.dir.join(format!("{id}.toml"));
            std::fs::write(&cfg_path, text)?;
            let mut argv: Vec<String> = Vec::new();
            if self.net.is_some() {
                let ns = format!("rc{}-a{i}", self.tag);
                if let Some(net) = self.net.as_mut() {
                    net.host(&self.tag, &ns, &ip).await?;
                }
                argv.extend(["ip", "netns", "exec", &ns].map(String::from));
            }
            argv.push(self.exe.display().to_string());
            argv.extend([
                "agent".to_owned(),
                "-c".to_owned(),
                cfg_path.display().to_string(),
            ]);
            let log = std::fs::File::create(self.dir.join(format!("{id}.log")))?;
            let start_us = now_us();
            let mut cmd = Command::new(&argv[0]);
            // The agent's configuration is its file: no stray ROLLCALL__ overrides.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("ROLLCALL__") {
                    cmd.env_remove(k);
                }
            }
            let proc = Proc::spawn(
                cmd.args(&argv[1..])
                    .env("RUST_LOG", &self.sc.agent.log)
                    // Its own libp2p identity (mdns, dht): processes here share one cwd.
                    .env(
                        "ROLLCALL__IDENTITY__FILE",
                        self.dir.join(format!("{id}.key")),
                    )
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log),
                &format!("agent {id}"),
            )?;
            self.agents.insert(id.clone(), Agent { proc });
            let mut all_addrs = vec![ip.clone(), format!("{ip}:{port}")];
            all_addrs.extend(addrs);
            started.push(TruthAgent {
                id: id.clone(),
                aliases: vec![Alias::agent_id(id)],
                addrs: all_addrs,
                start_us,
                end: None,
                node: None,
            });
        }
        // Up means: its /health answers with its id.
        let checks: Vec<(String, String)> = started
            .iter()
            .map(|a| (a.id.clone(), format!("http://{}/health", a.addrs[1])))
            .collect();
        let http = self.http.clone();
        let failures: Vec<String> = futures::stream::iter(checks)
            .map(|(id, url)| {
                let http = http.clone();
                async move {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
                    let mut last = String::new();
                    while tokio::time::Instant::now() < deadline {
                        match http.get(&url).send().await {
                            Ok(r) => match r.json::<serde_json::Value>().await {
                                Ok(v) if v["id"] == id.as_str() => return None,
                                Ok(v) => last = format!("answered as {}", v["id"]),
                                Err(e) => last = e.to_string(),
                            },
                            Err(e) => last = e.to_string(),
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Some(format!("{id} ({url}): {last}"))
                }
            })
            .buffer_unordered(UP_CONCURRENCY)
            .filter_map(|x| async move { x })
            .collect()
            .await;
        if !failures.is_empty() {
            let first = failures[0].split(' ').next().unwrap_or_default().to_owned();
            let log =
                std::fs::read_to_string(self.dir.join(format!("{first}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            return Err(format!(
                "{} of {n} agents did not come up, e.g. {}; its log ends: {}",
                failures.len(),
                failures[0],
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )
            .into());
        }
        Ok(started)
    }

    pub(crate) async fn end_agents(
        &mut self,
        ids: &[String],
        kind: EndKind,
    ) -> Result<Vec<(String, i64)>, BoxError> {
        let mut out = Vec::new();
        for id in ids {
            let Some(mut a) = self.agents.remove(id) else {
                return Err(format!("no running agent {id}").into());
            };
            let t = now_us();
            match kind {
                EndKind::Crash => a.proc.kill(),
                EndKind::Graceful => signal(a.proc.id(), "TERM").await?,
            }
            out.push((id.clone(), t));
            self.ending.push(a.proc);
        }
        Ok(out)
    }

    pub(crate) async fn start_vip(
        &mut self,
        agents: &[TruthAgent],
        path: &str,
    ) -> Result<String, BoxError> {
        let port = self.sc.swarm.vip_port;
        let (prefix, ip, port) = match &self.net {
            Some(net) => (self.in_ns("vip"), net.ip(255, 3), port),
            None => (Vec::new(), "127.0.0.1".to_owned(), free_port()?),
        };
        let servers: Vec<String> = agents.iter().map(|a| a.addrs[1].clone()).collect();
        let cfg = self.dir.join("haproxy.cfg");
        std::fs::write(
            &cfg,
            super::haproxy_config(&format!("{ip}:{port}"), &servers),
        )?;
        self.vip = Some(start_haproxy(&prefix, &cfg, &self.dir.join("haproxy.log")).await?);
        Ok(format!("http://{ip}:{port}{path}"))
    }

    pub(crate) fn discoverer(&self, spec: &Path) -> Command {
        let mut argv: Vec<String> = if self.net.is_some() {
            self.in_ns("disc")
        } else {
            Vec::new()
        };
        argv.push(self.exe.display().to_string());
        argv.extend([
            "compare".to_owned(),
            "--scenario".to_owned(),
            spec.display().to_string(),
        ]);
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    }

    pub(crate) fn describe(&self) -> String {
        match &self.net {
            Some(net) => format!(
                "netns: one network namespace per agent on bridge {} ({}.{}.0.0/16); nats-server, load balancer and discoverers in namespaces of their own",
                net.bridge, net.prefix.0, net.prefix.1
            ),
            None => format!(
                "local: `rollcall agent` processes on this machine, one loopback address each (127.{}.x.y)",
                self.loop_octet
            ),
        }
    }

    pub(crate) async fn teardown(&mut self) {
        // Those told to stop had their chance to say goodbye; the rest are killed.
        for mut p in self.ending.drain(..) {
            p.wait_for(Duration::from_secs(5)).await;
        }
        let mut agents: Vec<Agent> = std::mem::take(&mut self.agents).into_values().collect();
        for a in &mut agents {
            a.proc.kill();
        }
        for a in &mut agents {
            a.proc.kill_and_wait().await;
        }
        for mut p in [self.vip.take(), self.nats.take()].into_iter().flatten() {
            p.kill_and_wait().await;
        }
        if let Some(net) = self.net.as_mut() {
            net.remove().await;
        }
        self.torn_down = true;
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if !self.torn_down {
            // Processes are killed on drop (kill_on_drop); the network is ours to remove.
            if let Some(net) = self.net.as_mut() {
                net.remove_blocking();
            }
        }
    }
}

/// A TCP port free on 127.0.0.1 right now.
pub(crate) fn free_port() -> Result<u16, BoxError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
