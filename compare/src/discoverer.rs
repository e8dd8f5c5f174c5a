//! The discoverer child: one backend, measured in its own process so that its
//! CPU time and peak memory are its own. Started by the harness as
//! `rollcall compare --scenario <file with a [discoverer] table>`; it speaks
//! the line protocol of [`super::wire`].

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use discovery_core::multiaddr::Protocol;
use discovery_core::{Multiaddr, RosterEvent, WatchUpdate};
use futures::StreamExt;
use tokio::sync::{mpsc, Mutex};

use super::scenario::{DiscovererSpec, HttpVipSpec, PrometheusRun};
use super::wire::{self, AddrCheck, Cmd, Out, WirePeer};
use super::BoxError;
use rollcall::config::Config;

/// Lines queued for stdout; the writer task drains them.
const OUT_QUEUE: usize = 65_536;
/// Health checks in flight at once.
const CHECK_CONCURRENCY: usize = 32;

type Roster = Arc<Mutex<BTreeMap<String, WirePeer>>>;

/// The anchor's Prometheus, once started (its usage is part of the row's).
static PROMETHEUS_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

struct Emitter(mpsc::Sender<String>);

impl Emitter {
    async fn send(&self, out: &Out) {
        if let Ok(line) = serde_json::to_string(out) {
            let _ = self.0.send(line).await;
        }
    }
}

/// Runs a discoverer until `stop` or the end of stdin.
pub(crate) async fn run(spec: DiscovererSpec) -> Result<(), BoxError> {
    let (tx, mut rx) = mpsc::channel::<String>(OUT_QUEUE);
    // A thread of its own writes stdout, so a slow reader never stalls the runtime.
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        while let Some(mut line) = rx.blocking_recv() {
            line.push('\n');
            if stdout.write_all(line.as_bytes()).is_err() {
                break;
            }
            // Flush when nothing else is queued: lines reach the harness at once.
            if rx.is_empty() && stdout.flush().is_err() {
                break;
            }
        }
        let _ = stdout.flush();
    });
    let out = Emitter(tx);
    let roster: Roster = Arc::new(Mutex::new(BTreeMap::new()));
    let result = match (&spec.config, &spec.url, &spec.http_vip, &spec.prometheus) {
        (Some(config), None, None, None) => run_registry(&spec.name, config, &out, roster).await,
        (None, Some(url), Some(vip), None) => run_http_vip(url, vip, &out, roster).await,
        (None, None, None, Some(p)) => run_anchor(p, &out, roster).await,
        _ => Err(format!(
            "discoverer `{}`: give either `config`, `url` with `http_vip`, or `prometheus`",
            spec.name
        )
        .into()),
    };
    if let Err(e) = &result {
        out.send(&Out::Fatal {
            error: e.to_string(),
        })
        .await;
    }
    drop(out);
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    result
}

async fn usage(out: &Emitter) {
    let (mut cpu_ms, mut peak_rss_kib) = wire::self_usage();
    // An anchor's cost is Prometheus's too: its CPU added, the larger peak.
    if let Some(pid) = PROMETHEUS_PID.get() {
        let (c, p) = wire::usage_of(&pid.to_string());
        cpu_ms = cpu_ms.zip(c).map(|(a, b)| a + b);
        peak_rss_kib = peak_rss_kib.zip(p).map(|(a, b)| a.max(b));
    }
    out.send(&Out::Usage {
        cpu_ms,
        peak_rss_kib,
    })
    .await;
}

/// Reads commands from stdin; returns at `stop` or end of input, saying
/// whether usage was reported (at a `check`, before the checking itself).
async fn serve_commands(out: &Emitter, roster: &Roster) -> bool {
    let mut reported = false;
    let (tx, mut lines) = mpsc::channel::<String>(16);
    // stdin is read by a thread (it blocks); the thread ends with the process.
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    loop {
        match lines.recv().await {
            Some(line) if line.trim().is_empty() => continue,
            Some(line) => match serde_json::from_str::<Cmd>(&line) {
                Ok(Cmd::Check { health_port }) => {
                    usage(out).await;
                    reported = true;
                    let peers: Vec<WirePeer> = roster.lock().await.values().cloned().collect();
                    let results = check_addresses(&peers, health_port).await;
                    out.send(&Out::Check { results }).await;
                }
                Ok(Cmd::Stop) => return reported,
                Err(e) => tracing::warn!(error = %e, "unknown command from the harness"),
            },
            None => return reported,
        }
    }
}

async fn run_registry(
    name: &str,
    config: &str,
    out: &Emitter,
    roster: Roster,
) -> Result<(), BoxError> {
    // An empty environment: the spec is the whole configuration.
    let cfg = Config::from_toml_str(
        &format!("discoverer {name}"),
        config,
        Some(Default::default()),
    )?;
    out.send(&Out::Started { t: wire::now_us() }).await;
    let registry = rollcall::discover(&cfg)?;
    let mut watch = registry.watch();
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = {
        let stop = stop.clone();
        let roster = roster.clone();
        let registry = registry.clone();
        let out = Emitter(out.0.clone());
        async move {
            let mut last_health: Option<(String, bool, Option<String>)> = None;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    u = watch.next() => {
                        let Some(u) = u else { return };
                        let t = wire::now_us();
                        match u {
                            WatchUpdate::Snapshot(r) => {
                                let peers: Vec<WirePeer> = r.peers.iter().map(|p| WirePeer::of(p)).collect();
                                {
                                    let mut g = roster.lock().await;
                                    g.clear();
                                    for p in &peers {
                                        g.insert(p.id.clone(), p.clone());
                                    }
                                }
                                out.send(&Out::Snapshot { t, peers }).await;
                            }
                            WatchUpdate::Event(RosterEvent::Joined { peer, .. }) => {
                                let p = WirePeer::of(&peer);
                                roster.lock().await.insert(p.id.clone(), p.clone());
                                out.send(&Out::Joined { t, peer: p }).await;
                            }
                            WatchUpdate::Event(RosterEvent::Updated { peer, .. }) => {
                                let p = WirePeer::of(&peer);
                                let changed = {
                                    let mut g = roster.lock().await;
                                    let changed = g.get(&p.id) != Some(&p);
                                    g.insert(p.id.clone(), p.clone());
                                    changed
                                };
                                if changed {
                                    out.send(&Out::Updated { t, peer: p }).await;
                                }
                            }
                            WatchUpdate::Event(RosterEvent::Left { peer, .. }) => {
                                roster.lock().await.remove(&peer.id);
                                out.send(&Out::Left { t, id: peer.id.clone() }).await;
                            }
                            WatchUpdate::Event(_) => {}
                        }
                    }
                    _ = tick.tick() => {
                        let statuses = registry.sources();
                        let Some(s) = statuses.first() else { continue };
                        let health = match s.health {
                            rollcall::Health::Ok => "ok",
                            rollcall::Health::Degraded => "degraded",
                            rollcall::Health::Starting => "starting",
                        }
                        .to_owned();
                        let now = (health.clone(), s.synced, s.last_error.clone());
                        if last_health.as_ref() != Some(&now) {
                            out.send(&Out::Health { t: wire::now_us(), health, synced: s.synced, error: s.last_error.clone() }).await;
                            last_health = Some(now);
                        }
                    }
                }
            }
        }
    };
    let watcher = tokio::spawn(watcher);
    // Usage is what the discovery cost: taken before the address check, if any.
    if !serve_commands(out, &roster).await {
        usage(out).await;
    }
    stop.cancel();
    let _ = watcher.await;
    // Do not let a slow goodbye hold the harness: the measurement is over.
    let _ = tokio::time::timeout(Duration::from_secs(5), registry.shutdown()).await;
    Ok(())
}

/// The health answer's fields the baseline uses.
#[derive(serde::Deserialize)]
struct HealthAnswer {
    id: String,
    #[serde(default)]
    addrs: Vec<String>,
}

async fn run_http_vip(
    url: &str,
    vip: &HttpVipSpec,
    out: &Emitter,
    roster: Roster,
) -> Result<(), BoxError> {
    let mut builder = reqwest::Client::builder().timeout(vip.timeout);
    if !vip.keepalive {
        builder = builder.pool_max_idle_per_host(0);
    }
    let client = builder.build()?;
    out.send(&Out::Started { t: wire::now_us() }).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let poller = {
        let stop = stop.clone();
        let roster = roster.clone();
        let out = Emitter(out.0.clone());
        let url = url.to_owned();
        let vip = vip.clone();
        async move {
            let mut first = true;
            loop {
                let mut found: BTreeMap<String, WirePeer> = BTreeMap::new();
                let mut errors = Vec::new();
                for _ in 0..vip.polls {
                    if stop.is_cancelled() {
                        return;
                    }
                    let answer = async {
                        let r = client.get(&url).send().await?.error_for_status()?;
                        r.json::<HealthAnswer>().await
                    }
                    .await;
                    match answer {
                        Ok(h) => {
                            if found.contains_key(&h.id) {
                                continue;
                            }
                            let p = WirePeer {
                                id: h.id.clone(),
                                aliases: vec![discovery_core::Alias::agent_id(h.id.clone())],
                                addrs: h.addrs,
                            };
                            if first {
                                // The first round grows as answers come in.
                                roster.lock().await.insert(p.id.clone(), p.clone());
                                out.send(&Out::Joined {
                                    t: wire::now_us(),
                                    peer: p.clone(),
                                })
                                .await;
                            }
                            found.insert(h.id, p);
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                let t = wire::now_us();
                if !first {
                    *roster.lock().await = found.clone();
                    out.send(&Out::Snapshot {
                        t,
                        peers: found.values().cloned().collect(),
                    })
                    .await;
                }
                let (health, error) = if found.is_empty() {
                    (
                        "degraded",
                        errors.first().cloned().or_else(|| Some("no answer".into())),
                    )
                } else {
                    (
                        "ok",
                        errors.first().map(|e| {
                            format!("{} of {} polls failed, e.g. {e}", errors.len(), vip.polls)
                        }),
                    )
                };
                out.send(&Out::Health {
                    t,
                    health: health.into(),
                    synced: !found.is_empty(),
                    error,
                })
                .await;
                first = false;
                let Some(every) = vip.interval else { return };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        }
    };
    let poller = tokio::spawn(poller);
    // Usage is what the discovery cost: taken before the address check, if any.
    if !serve_commands(out, &roster).await {
        usage(out).await;
    }
    stop.cancel();
    let _ = poller.await;
    Ok(())
}

/// Attempts at a free port for Prometheus's API.
const PROMETHEUS_PORT_TRIES: usize = 3;

/// Starts Prometheus on a free port. The port is found by binding and
/// releasing it, so another socket can take it before Prometheus binds it
/// (seen once, when four anchors restarted at the same moment): then it is
/// started again on another port. Returns once it listens or runs on.
async fn start_prometheus(
    p: &PrometheusRun,
    dir: &std::path::Path,
    config: &std::path::Path,
) -> Result<(tokio::process::Child, u16), BoxError> {
    let log_path = dir.join("prometheus.log");
    for attempt in 1..=PROMETHEUS_PORT_TRIES {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = tokio::process::Command::new(&p.binary);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg("--log.level=info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start `{}`: {e} (install it: apt-get install -y prometheus)",
                p.binary
            )
        })?;
        // Until it listens (or exits); the poller reports a slow start itself.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                break;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok((child, port));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let taken = child.try_wait()?.is_some()
            && std::fs::read_to_string(&log_path)
                .is_ok_and(|l| l.contains("address already in use"));
        if !taken || attempt == PROMETHEUS_PORT_TRIES {
            return Ok((child, port));
        }
        tracing::warn!(
            port,
            attempt,
            "prometheus's port was taken meanwhile; starting it on another"
        );
    }
    Err("prometheus: no free port found".into())
}

/// The Prometheus anchor: starts `prometheus` with the generated config (its
/// start is the cold start, as a discoverer's is) and turns every change of
/// its active targets into roster lines.
async fn run_anchor(p: &PrometheusRun, out: &Emitter, roster: Roster) -> Result<(), BoxError> {
    let dir = std::path::PathBuf::from(&p.dir);
    let pid_file = dir.join("prometheus.pid");
    kill_stale(&pid_file).await;
    let _ = std::fs::remove_dir_all(dir.join("data"));
    std::fs::create_dir_all(dir.join("data"))?;
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, &p.config)?;
    out.send(&Out::Started { t: wire::now_us() }).await;
    let (mut child, port) = start_prometheus(p, &dir, &config).await?;
    if let Some(pid) = child.id() {
        // The harness kills it by this pid if this process dies without cleaning up.
        std::fs::write(&pid_file, pid.to_string())?;
        let _ = PROMETHEUS_PID.set(pid);
    }
    let url = format!("http://127.0.0.1:{port}/api/v1/targets?state=active");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let poller = {
        let stop = stop.clone();
        let roster = roster.clone();
        let out = Emitter(out.0.clone());
        let every = p.poll;
        async move {
            let mut last_health: Option<(String, Option<String>)> = None;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let answer = async {
                    let r = client.get(&url).send().await?.error_for_status()?;
                    r.json::<serde_json::Value>().await
                }
                .await
                .map_err(|e| e.to_string())
                .and_then(|v| super::anchor::targets(&v));
                let t = wire::now_us();
                let health = match &answer {
                    Ok(_) => ("ok".to_owned(), None),
                    Err(e)
                        if last_health.is_none()
                            || last_health.as_ref().is_some_and(|h| h.0 == "starting") =>
                    {
                        (
                            "starting".to_owned(),
                            Some(format!("prometheus not answering yet: {e}")),
                        )
                    }
                    Err(e) => ("degraded".to_owned(), Some(e.clone())),
                };
                if last_health.as_ref() != Some(&health) {
                    out.send(&Out::Health {
                        t,
                        health: health.0.clone(),
                        synced: health.0 == "ok",
                        error: health.1.clone(),
                    })
                    .await;
                    last_health = Some(health);
                }
                // A failed read keeps the last good set.
                let Ok(now) = answer else { continue };
                let mut g = roster.lock().await;
                let gone: Vec<String> = g
                    .keys()
                    .filter(|k| !now.contains_key(*k))
                    .cloned()
                    .collect();
                for id in gone {
                    g.remove(&id);
                    out.send(&Out::Left { t, id }).await;
                }
                for (id, peer) in now {
                    match g.get(&id) {
                        None => {
                            out.send(&Out::Joined {
                                t,
                                peer: peer.clone(),
                            })
                            .await
                        }
                        Some(old) if *old != peer => {
                            out.send(&Out::Updated {
                                t,
                                peer: peer.clone(),
                            })
                            .await
                        }
                        Some(_) => continue,
                    }
                    g.insert(id, peer);
                }
            }
        }
    };
    let poller = tokio::spawn(poller);
    let served = tokio::select! {
        r = serve_commands(out, &roster) => Some(r),
        status = child.wait() => {
            stop.cancel();
            let _ = poller.await;
            let _ = std::fs::remove_file(&pid_file);
            let tail = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(2).collect();
            return Err(format!("prometheus exited ({}): {}", status.map(|s| s.to_string()).unwrap_or_default(), tail.join(" | ")).into());
        }
    };
    if served == Some(false) {
        usage(out).await;
    }
    stop.cancel();
    let _ = poller.await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = std::fs::remove_file(&pid_file);
    Ok(())
}

/// Kills a Prometheus a previous discoverer of this row left behind.
pub(crate) async fn kill_stale(pid_file: &std::path::Path) {
    if let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    {
        let _ = super::env::signal(pid, "KILL").await;
        let _ = std::fs::remove_file(pid_file);
    }
}

/// Host and port of an address, as an HTTP authority (`[v6]` bracketed).
pub(crate) fn http_target(addr: &str, default_port: u16) -> Option<(String, u16)> {
    let m: Multiaddr = discovery_core::parse_addr(addr).ok()?;
    let mut host = None;
    let mut port = None;
    for p in m.iter() {
        match p {
            Protocol::Ip4(ip) if host.is_none() => host = Some(ip.to_string()),
            Protocol::Ip6(ip) if host.is_none() => host = Some(format!("[{ip}]")),
            Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) if host.is_none() => {
                host = Some(h.to_string())
            }
            Protocol::Tcp(p) if port.is_none() => port = Some(p),
            _ => {}
        }
    }
    Some((host?, port.unwrap_or(default_port)))
}

async fn check_addresses(peers: &[WirePeer], health_port: u16) -> Vec<AddrCheck> {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return peers
                .iter()
                .flat_map(|p| p.addrs.iter().map(move |a| (p, a)))
                .map(|(p, a)| AddrCheck {
                    peer: p.id.clone(),
                    addr: a.clone(),
                    answered: None,
                    error: Some(format!("no HTTP client: {e}")),
                })
                .collect()
        }
    };
    let mut seen = HashSet::new();
    let jobs: Vec<(String, String)> = peers
        .iter()
        .flat_map(|p| p.addrs.iter().map(move |a| (p.id.clone(), a.clone())))
        .filter(|j| seen.insert(j.clone()))
        .collect();
    futures::stream::iter(jobs)
        .map(|(peer, addr)| {
            let client = client.clone();
            async move {
                let Some((host, port)) = http_target(&addr, health_port) else {
                    return AddrCheck {
                        peer,
                        addr,
                        answered: None,
                        error: Some("not an IP or DNS address".into()),
                    };
                };
                let url = format!("http://{host}:{port}/health");
                let r = async {
                    let r = client.get(&url).send().await?.error_for_status()?;
                    r.json::<HealthAnswer>().await
                }
                .await;
                match r {
                    Ok(h) => AddrCheck {
                        peer,
                        addr,
                        answered: Some(h.id),
                        error: None,
                    },
                    Err(e) => AddrCheck {
                        peer,
                        addr,
                        answered: None,
                        error: Some(e.to_string()),
                    },
                }
            }
        })
        .buffer_unordered(CHECK_CONCURRENCY)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_targets() {
        assert_eq!(
            http_target("/ip4/10.0.0.1/tcp/9000", 8081),
            Some(("10.0.0.1".into(), 9000))
        );
        assert_eq!(
            http_target("/ip4/10.0.0.1", 8081),
            Some(("10.0.0.1".into(), 8081))
        );
        assert_eq!(
            http_target("/dns/svc.1.abc/tcp/8081", 1),
            Some(("svc.1.abc".into(), 8081))
        );
        assert_eq!(http_target("/ip6/::1/tcp/5", 1), Some(("[::1]".into(), 5)));
        assert_eq!(http_target("garbage!", 1), None);
    }
}
