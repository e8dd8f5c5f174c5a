//! `rollcall compare`: the harness that measures discovery per backend on real
//! infrastructure, side by side, against what the harness itself started.
//!
//! A run: the environment comes up (network, nats-server), the agents start
//! and answer `/health`, then every backend's discoverer starts from cold in a
//! process of its own (`rollcall compare` with a `[discoverer]` spec, written
//! by the harness: a hidden mode of this command) and streams what its roster
//! does, timestamped. The churn schedule runs; at the end every discoverer is
//! asked who answers at each address it reports, and how much CPU and memory
//! it used. The metrics are computed afterwards from those records and the
//! ground truth (see `analyze`).

mod analyze;
mod anchor;
mod discoverer;
mod env;
mod report;
mod scenario;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout};

use indicatif::{ProgressBar, ProgressStyle};

use analyze::{EndKind, Record, Truth};
use env::{Env, Proc};
use report::{Body, ChurnDone, Failed, HostInfo, Output, Row};
use scenario::{BackendSpec, ChurnAction, DiscovererFile, DiscovererSpec, Scenario};
use wire::{now_us, Cmd, Out};

/// Errors of the harness.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Command-line options of `rollcall compare`.
#[derive(Debug, Clone)]
pub struct CompareOpts {
    /// The scenario file.
    pub scenario: PathBuf,
    /// Where to write the result JSON.
    pub json: Option<PathBuf>,
    /// Where to write the SVG plot.
    pub plot: Option<PathBuf>,
}

/// Runs a scenario (or, given a `[discoverer]` spec written by the harness,
/// one discoverer child).
pub async fn run(opts: CompareOpts) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let origin = opts.scenario.display().to_string();
    let text = std::fs::read_to_string(&opts.scenario)
        .map_err(|e| format!("{origin}: cannot read: {e}"))?;
    if let Ok(t) = text.parse::<toml::Table>() {
        if t.contains_key("discoverer") {
            let f: DiscovererFile = toml::from_str(&text).map_err(|e| format!("{origin}: {e}"))?;
            return discoverer::run(f.discoverer).await;
        }
    }
    let sc = Scenario::parse(&origin, &text)?;
    harness(sc, opts).await
}

/// Messages to the terminal that do not tear the progress bar.
#[derive(Clone)]
struct Ui {
    bar: Arc<Mutex<Option<ProgressBar>>>,
}

impl Ui {
    fn bar(&self) -> MutexGuard<'_, Option<ProgressBar>> {
        self.bar.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn say(&self, msg: impl AsRef<str>) {
        let line = format!("[compare] {}", msg.as_ref());
        match &*self.bar() {
            Some(b) if !b.is_hidden() => b.println(line),
            _ => eprintln!("{line}"),
        }
    }
}

/// What the harness keeps of one discoverer child while it runs.
#[derive(Default)]
struct Shared {
    rec: Record,
    /// `(generation, cpu_ms, peak_rss_kib)`, latest last.
    usages: Vec<(usize, Option<u64>, Option<u64>)>,
    checked: bool,
    /// Entries listed now (progress display).
    listed: BTreeSet<String>,
    /// The process ended (EOF on its stdout).
    exited: bool,
}

/// One backend's discoverer.
struct Disc {
    spec: BackendSpec,
    kind: String,
    /// Why it cannot run at all (bad config, no load balancer...).
    unusable: Option<String>,
    spec_path: PathBuf,
    generation: usize,
    child: Option<Proc>,
    stdin: Option<ChildStdin>,
    reader: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Mutex<Shared>>,
}

impl Disc {
    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("disc-{}-{}.log", self.spec.name, self.generation))
    }

    async fn spawn(&mut self, env: &mut Env, dir: &Path) -> Result<(), BoxError> {
        let log = std::fs::File::create(self.log_path(dir))?;
        let mut cmd = if self.spec.anchor.is_some() {
            env.anchor_discoverer(&self.spec_path)?
        } else {
            env.discoverer(&self.spec.name, self.generation, &self.spec_path)
        };
        // ROLLCALL_COMPARE_DISC_LOG: a RUST_LOG filter for the discoverers'
        // logs (disc-NAME-N.log in the work dir), to see why one found nothing.
        let filter = std::env::var("ROLLCALL_COMPARE_DISC_LOG").unwrap_or_else(|_| "warn".into());
        cmd.env("RUST_LOG", filter)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = Proc::spawn(&mut cmd, "the discoverer")?;
        let stdout = child.child().stdout.take().ok_or("no stdout")?;
        self.stdin = child.child().stdin.take();
        self.child = Some(child);
        self.shared().exited = false;
        let shared = self.shared.clone();
        let generation = self.generation;
        self.reader = Some(std::thread::spawn(move || {
            read_lines(stdout, shared, generation)
        }));
        Ok(())
    }

    fn send(&mut self, cmd: &Cmd) -> bool {
        let Some(stdin) = self.stdin.as_mut() else {
            return false;
        };
        let Ok(mut line) = serde_json::to_string(cmd) else {
            return false;
        };
        line.push('\n');
        stdin.write_all(line.as_bytes()).is_ok() && stdin.flush().is_ok()
    }

    /// Asks the child to stop (it reports its usage first), waits, kills if it must.
    async fn stop(&mut self, env: &mut Env, dir: &Path) {
        let asked = self.send(&Cmd::Stop);
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            if !(asked && child.wait_for(Duration::from_secs(15)).await) {
                child.kill_and_wait().await;
            }
        }
        if let Some(r) = self.reader.take() {
            // The reader ends at EOF, which the child's exit brings.
            let _ = tokio::task::spawn_blocking(move || r.join()).await;
        }
        env.discoverer_gone(&self.spec.name, self.generation).await;
        if self.spec.anchor.is_some() {
            // If the child died without cleaning up, its Prometheus goes now.
            let pid = dir
                .join(format!("anchor-{}", self.spec.name))
                .join("prometheus.pid");
            discoverer::kill_stale(&pid).await;
        }
    }

    fn log_tail(&self, dir: &Path) -> String {
        let text = std::fs::read_to_string(self.log_path(dir)).unwrap_or_default();
        let tail: Vec<&str> = text
            .lines()
            .rev()
            .filter(|l| !l.trim().is_empty())
            .take(3)
            .collect();
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }
}

fn read_lines(stdout: ChildStdout, shared: Arc<Mutex<Shared>>, generation: usize) {
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(out) = serde_json::from_str::<Out>(&line) else {
            tracing::debug!(%line, "not a discoverer line");
            continue;
        };
        let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
        match out {
            Out::Usage {
                cpu_ms,
                peak_rss_kib,
            } => g.usages.push((generation, cpu_ms, peak_rss_kib)),
            Out::Check { results } => {
                g.rec.checks = results;
                g.checked = true;
            }
            Out::Fatal { error } => g.rec.failure = Some(error),
            other => {
                match &other {
                    Out::Started { .. } => g.listed.clear(),
                    Out::Snapshot { peers, .. } => {
                        g.listed = peers.iter().map(|p| p.id.clone()).collect()
                    }
                    Out::Joined { peer, .. } | Out::Updated { peer, .. } => {
                        g.listed.insert(peer.id.clone());
                    }
                    Out::Left { id, .. } => {
                        g.listed.remove(id);
                    }
                    _ => {}
                }
                g.rec.lines.push(other);
            }
        }
    }
    let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
    g.exited = true;
    g.listed.clear();
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

async fn harness(sc: Scenario, opts: CompareOpts) -> Result<(), BoxError> {
    let tag = (std::process::id() % 100_000).to_string();
    let dir = std::env::temp_dir().join(format!("rollcall-compare-{}-{tag}", sanitize(&sc.name)));
    std::fs::create_dir_all(&dir)?;
    let ui = Ui {
        bar: Arc::new(Mutex::new(None)),
    };
    ui.say(format!(
        "scenario {} ({}, {} agents, {} backends, {}); work dir {}",
        sc.name,
        sc.environment.as_str(),
        sc.agents,
        sc.backends.len(),
        humantime::format_duration(sc.duration),
        dir.display()
    ));
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut env = Env::setup(&sc, &dir, &tag).await?;
    let result = {
        let measure = measure(&sc, &mut env, &dir, &ui);
        tokio::pin!(measure);
        tokio::select! {
            r = &mut measure => r,
            _ = stop_signal() => Err("interrupted: cleaning up".into()),
        }
    };
    if let Some(b) = ui.bar().take() {
        b.finish_and_clear();
    }
    ui.say("cleaning up");
    env.teardown().await;
    let mut out = match result {
        Ok(o) => o,
        Err(e) => {
            return Err(format!("{e} (logs kept in {})", dir.display()).into());
        }
    };
    out.started_at = started_at;
    out.command = std::env::args().collect::<Vec<_>>().join(" ");
    println!(
        "\n{} ({}): {} agents at cold start, {}",
        out.scenario, out.environment, out.agents, out.setup
    );
    print!("{}", report::table(&out));
    for r in &out.backends {
        if let Body::Measured(m) = &r.body {
            for n in &m.notes {
                println!("  {}: {n}", r.name);
            }
        }
    }
    if let Some(p) = &opts.json {
        std::fs::write(p, serde_json::to_string_pretty(&out)? + "\n")
            .map_err(|e| format!("{}: {e}", p.display()))?;
        println!("result: {}", p.display());
    }
    if let Some(p) = &opts.plot {
        report::plot(&out, p).map_err(|e| format!("plot {}: {e}", p.display()))?;
        println!("plot: {}", p.display());
    }
    if std::env::var_os("ROLLCALL_COMPARE_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The discoverer spec of a backend (written to a file), or why it cannot run.
fn discoverer_spec(
    b: &BackendSpec,
    vars: &BTreeMap<&'static str, String>,
    vip: &Result<String, String>,
    dir: &Path,
) -> Result<(String, DiscovererSpec), String> {
    if let Some(v) = &b.http_vip {
        let url = vip.clone().map_err(|e| format!("no load balancer: {e}"))?;
        return Ok((
            "http-vip".into(),
            DiscovererSpec {
                name: b.name.clone(),
                config: None,
                url: Some(url),
                http_vip: Some(v.clone()),
                prometheus: None,
            },
        ));
    }
    if let Some(a) = &b.anchor {
        let run = anchor::prometheus_run(&b.name, a, vars, dir)?;
        return Ok((
            a.sd.kind().into(),
            DiscovererSpec {
                name: b.name.clone(),
                config: None,
                url: None,
                http_vip: None,
                prometheus: Some(run),
            },
        ));
    }
    let source = b.source.as_ref().ok_or("no source")?;
    let source = scenario::render(source, vars);
    let kind = source
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("?")
        .to_owned();
    let mut sources = toml::Table::new();
    sources.insert(b.name.clone(), toml::Value::Table(source));
    let mut root = toml::Table::new();
    root.insert(
        "registry".into(),
        toml::Value::Table(b.registry.clone().unwrap_or_else(env::keep_all_addresses)),
    );
    root.insert("sources".into(), toml::Value::Table(sources));
    let text = toml::to_string(&root).map_err(|e| e.to_string())?;
    // Refused here as it would be in the child: a clear error, no process.
    let cfg = rollcall::config::Config::from_toml_str(
        &format!("backend {}", b.name),
        &text,
        Some(Default::default()),
    )
    .map_err(|e| e.to_string())?;
    rollcall::builder(&cfg).map_err(|e| e.to_string())?;
    Ok((
        kind,
        DiscovererSpec {
            name: b.name.clone(),
            config: Some(text),
            url: None,
            http_vip: None,
            prometheus: None,
        },
    ))
}

fn write_peers_file(dir: &Path, truth: &Truth) -> Result<(), BoxError> {
    let peers: Vec<serde_json::Value> = truth
        .agents
        .iter()
        .map(|a| {
            let addrs: Vec<&String> = a
                .addrs
                .iter()
                .filter(|x| x.contains(':') && x.starts_with(|c: char| c.is_ascii_digit()))
                .collect();
            serde_json::json!({ "id": a.id, "addrs": addrs })
        })
        .collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({ "peers": peers }))?;
    // Written whole, then renamed: the watched file is never seen half-written.
    let tmp = dir.join("peers.json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join("peers.json"))?;
    Ok(())
}

/// Agents to end: `k` live ones, spread evenly over the live list.
fn pick(truth: &Truth, k: usize) -> Vec<String> {
    let alive: Vec<&str> = truth
        .agents
        .iter()
        .filter(|a| a.end.is_none())
        .map(|a| a.id.as_str())
        .collect();
    let k = k.min(alive.len());
    (0..k)
        .map(|j| alive[j * alive.len() / k.max(1)].to_owned())
        .collect()
}

async fn measure(sc: &Scenario, env: &mut Env, dir: &Path, ui: &Ui) -> Result<Output, BoxError> {
    let mut truth = Truth::default();
    let t = std::time::Instant::now();
    ui.say(format!("starting {} agents", sc.agents));
    truth.agents = env.start_agents(sc.agents).await?;
    ui.say(format!(
        "{} agents up in {:.1} s",
        sc.agents,
        t.elapsed().as_secs_f64()
    ));
    write_peers_file(dir, &truth)?;

    let vip = match sc.backends.iter().find_map(|b| b.http_vip.as_ref()) {
        Some(v) => env
            .start_vip(&truth.agents, &v.path)
            .await
            .map_err(|e| e.to_string()),
        None => Err("not started".into()),
    };
    let vars = env.vars();
    let mut discs = Vec::new();
    for b in &sc.backends {
        let spec_path = dir.join(format!("disc-{}.toml", b.name));
        let (kind, unusable) = match discoverer_spec(b, &vars, &vip, dir) {
            Ok((kind, spec)) => {
                std::fs::write(
                    &spec_path,
                    toml::to_string(&DiscovererFile { discoverer: spec })?,
                )?;
                (kind, None)
            }
            Err(e) => (
                b.source
                    .as_ref()
                    .and_then(|s| s.get("type"))
                    .and_then(|t| t.as_str())
                    .unwrap_or("http-vip")
                    .to_owned(),
                Some(e),
            ),
        };
        if let Some(e) = &unusable {
            ui.say(format!("backend {}: cannot run: {e}", b.name));
        }
        discs.push(Disc {
            spec: b.clone(),
            kind,
            unusable,
            spec_path,
            generation: 0,
            child: None,
            stdin: None,
            reader: None,
            shared: Arc::new(Mutex::new(Shared::default())),
        });
    }
    tokio::time::sleep(sc.settle).await;

    // Cold start of every discoverer, at once unless the scenario staggers them.
    for (i, d) in discs
        .iter_mut()
        .filter(|d| d.unusable.is_none())
        .enumerate()
    {
        stagger_pause(i, sc.stagger).await;
        if let Err(e) = d.spawn(env, dir).await {
            d.unusable = Some(e.to_string());
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let waiting = discs.iter().filter(|d| d.unusable.is_none()).any(|d| {
            let g = d.shared();
            !g.exited
                && g.rec.failure.is_none()
                && !g.rec.lines.iter().any(|l| matches!(l, Out::Started { .. }))
        });
        if !waiting || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let starts: Vec<i64> = discs
        .iter()
        .filter_map(|d| {
            d.shared().rec.lines.iter().find_map(|l| match l {
                Out::Started { t } => Some(*t),
                _ => None,
            })
        })
        .collect();
    let t_ref = starts.iter().copied().max().unwrap_or_else(now_us);
    let t_first = starts.iter().copied().min().unwrap_or(t_ref);
    let duration_us = i64::try_from(sc.duration.as_micros()).unwrap_or(i64::MAX);
    let t_end = t_ref + duration_us;

    let bar = ProgressBar::new(sc.duration.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    *ui.bar() = Some(bar);
    let progress = |discs: &[Disc], truth: &Truth| {
        let now = now_us();
        let alive = truth.alive_at(now);
        let msg: Vec<String> = discs
            .iter()
            .map(|d| {
                if d.unusable.is_some() {
                    format!("{} ✗", d.spec.name)
                } else {
                    format!("{} {}/{alive}", d.spec.name, d.shared().listed.len())
                }
            })
            .collect();
        if let Some(b) = &*ui.bar() {
            b.set_position(((now - t_ref).max(0) / 1000) as u64);
            b.set_message(msg.join("  "));
        }
    };

    let mut churn: Vec<_> = sc.churn.clone();
    churn.sort_by_key(|c| c.at);
    let mut done = Vec::new();
    let mut first_churn: Option<i64> = None;
    for c in &churn {
        let at = t_ref + i64::try_from(c.at.as_micros()).unwrap_or(i64::MAX);
        while now_us() < at {
            progress(&discs, &truth);
            let left = Duration::from_micros(u64::try_from(at - now_us()).unwrap_or(0));
            tokio::time::sleep(left.min(Duration::from_millis(100))).await;
        }
        let began = now_us();
        first_churn.get_or_insert(began);
        let mut record = ChurnDone {
            at_ms: (began - t_ref) / 1000,
            action: c.action.as_str().into(),
            count: c.count,
            agents: Vec::new(),
            backend: c.backend.clone(),
            error: None,
        };
        let r: Result<(), BoxError> = async {
            match c.action {
                ChurnAction::Kill | ChurnAction::Stop => {
                    let kind = if c.action == ChurnAction::Kill {
                        EndKind::Crash
                    } else {
                        EndKind::Graceful
                    };
                    let ids = pick(&truth, c.count);
                    record.agents = ids.clone();
                    for (id, t) in env.end_agents(&ids, kind).await? {
                        if let Some(i) = truth.by_id(&id) {
                            truth.agents[i].end = Some((t, kind));
                        }
                    }
                }
                ChurnAction::Add => {
                    let new = env.start_agents(c.count).await?;
                    record.agents = new.iter().map(|a| a.id.clone()).collect();
                    truth.agents.extend(new);
                    write_peers_file(dir, &truth)?;
                }
                ChurnAction::Restart => {
                    let targets: Vec<&mut Disc> = discs
                        .iter_mut()
                        .filter(|d| d.unusable.is_none())
                        .filter(|d| c.backend.as_ref().is_none_or(|b| *b == d.spec.name))
                        .collect();
                    restart(targets, sc.stagger, env, dir).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            ui.say(format!(
                "churn {} at {:?} failed: {e}",
                c.action.as_str(),
                c.at
            ));
            record.error = Some(e.to_string());
        } else {
            ui.say(format!(
                "{} {} at {:.1} s{}",
                c.action.as_str(),
                if c.action == ChurnAction::Restart {
                    c.backend
                        .clone()
                        .unwrap_or_else(|| "all discoverers".into())
                } else {
                    c.count.to_string()
                },
                record.at_ms as f64 / 1000.0,
                if record.agents.is_empty() {
                    String::new()
                } else {
                    format!(": {}", shorten(&record.agents))
                }
            ));
        }
        done.push(record);
    }
    while now_us() < t_end {
        progress(&discs, &truth);
        let left = Duration::from_micros(u64::try_from(t_end - now_us()).unwrap_or(0));
        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
    }
    progress(&discs, &truth);
    if let Some(b) = ui.bar().take() {
        b.finish_and_clear();
    }

    // Who answers at each reported address; then usage and stop.
    if sc.check_addresses {
        ui.say("checking every reported address");
        for d in discs.iter_mut().filter(|d| d.child.is_some()) {
            d.send(&Cmd::Check {
                health_port: sc.agent.health_port,
            });
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while tokio::time::Instant::now() < deadline
            && discs.iter().filter(|d| d.child.is_some()).any(|d| {
                let g = d.shared();
                !g.checked && !g.exited
            })
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for d in discs.iter_mut() {
        if d.child.is_some() {
            d.stop(env, dir).await;
        }
    }

    let mut rows = Vec::new();
    for d in &discs {
        let g = d.shared();
        let metrics = analyze::analyze(&truth, &g.rec, t_ref, t_end, first_churn);
        let mut last: BTreeMap<usize, (Option<u64>, Option<u64>)> = BTreeMap::new();
        for (generation, cpu, peak) in &g.usages {
            last.insert(*generation, (*cpu, *peak));
        }
        let cpu_ms = (!last.is_empty() && last.values().all(|u| u.0.is_some()))
            .then(|| last.values().filter_map(|u| u.0).sum());
        let peak_rss_kib = last.values().filter_map(|u| u.1).max();
        let error = if let Some(e) = &d.unusable {
            Some(e.clone())
        } else if let Some(e) = &g.rec.failure {
            Some(e.clone())
        } else if !g.rec.lines.iter().any(|l| matches!(l, Out::Started { .. })) {
            Some(format!("the discoverer did not start: {}", d.log_tail(dir)))
        } else if !metrics.health.ever_synced {
            Some(format!(
                "the source never completed a sync during the run: {}",
                metrics
                    .health
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "it reported no error".into())
            ))
        } else {
            None
        };
        let mut metrics = metrics;
        if error.is_none() && metrics.final_found == 0 && metrics.timeline.iter().all(|p| p[1] == 0)
        {
            metrics.notes.push(
                "the source synced but never listed an agent of this run: it cannot see them from here".into(),
            );
        }
        let body = if error.is_some() {
            Body::Failed(Failed {
                final_found: metrics.final_found,
                expected: truth.alive_at(t_end),
                timeline: metrics.timeline.clone(),
                phantom_entries: metrics.phantom_entries.clone(),
                health: metrics.health.clone(),
                notes: metrics.notes.clone(),
            })
        } else {
            Body::Measured(Box::new(metrics))
        };
        rows.push(Row {
            name: d.spec.name.clone(),
            kind: d.kind.clone(),
            baseline: d.spec.baseline,
            anchor: d.spec.anchor.is_some(),
            vs_anchor: None,
            note: d
                .spec
                .note
                .clone()
                .or_else(|| d.spec.anchor.as_ref().map(anchor::note)),
            error,
            body,
            cpu_ms,
            peak_rss_kib,
        });
    }

    // Ground truth over the plotted span.
    let mut times: Vec<i64> = truth
        .agents
        .iter()
        .flat_map(|a| [Some(a.start_us), a.end.map(|e| e.0)])
        .flatten()
        .filter(|&t| t > t_first && t <= t_end)
        .collect();
    times.sort_unstable();
    let mut truth_timeline = vec![[(t_first - t_ref) / 1000, truth.alive_at(t_first) as i64]];
    for t in times {
        let alive = truth.alive_at(t) as i64;
        if truth_timeline.last().map(|p| p[1]) != Some(alive) {
            truth_timeline.push([(t - t_ref) / 1000, alive]);
        }
    }

    report::add_anchor_ratios(&mut rows);
    Ok(Output {
        scenario: sc.name.clone(),
        description: sc.description.clone(),
        environment: sc.environment.as_str().into(),
        setup: env.describe(),
        agents: sc.agents,
        agents_per_node: truth
            .agents
            .iter()
            .filter(|a| a.start_us <= t_ref && a.end.is_none_or(|e| e.0 > t_ref))
            .filter_map(|a| a.node.clone())
            .fold(BTreeMap::new(), |mut m, n| {
                *m.entry(n).or_insert(0) += 1;
                m
            }),
        duration_ms: sc.duration.as_millis() as u64,
        started_at: String::new(),
        command: String::new(),
        host: HostInfo::here(),
        churn: done,
        truth_timeline,
        backends: rows,
    })
}

/// Before the `i`-th (re)start of a round: the scenario's `stagger`, none before the first.
async fn stagger_pause(i: usize, stagger: Duration) {
    if i > 0 && !stagger.is_zero() {
        tokio::time::sleep(stagger).await;
    }
}

/// Restarts discoverers from cold, all at once (or `stagger` apart): each is asked to stop, its
/// roster counts as gone when it exited, and a new process starts.
async fn restart(
    mut targets: Vec<&mut Disc>,
    stagger: Duration,
    env: &mut Env,
    dir: &Path,
) -> Result<(), BoxError> {
    for d in targets.iter_mut() {
        d.send(&Cmd::Stop);
        d.stdin = None;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut pending: Vec<usize> = (0..targets.len()).collect();
    while !pending.is_empty() {
        let late = tokio::time::Instant::now() >= deadline;
        pending.retain(|&i| {
            let d = &mut targets[i];
            let exited = d.child.as_mut().is_none_or(|c| c.exited());
            if exited || late {
                if let Some(c) = d.child.as_mut() {
                    c.kill();
                }
                d.shared().rec.resets.push(now_us());
                false
            } else {
                true
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for d in targets.iter_mut() {
        if let Some(mut c) = d.child.take() {
            c.kill_and_wait().await;
        }
        if let Some(r) = d.reader.take() {
            let _ = tokio::task::spawn_blocking(move || r.join()).await;
        }
        env.discoverer_gone(&d.spec.name, d.generation).await;
    }
    for (i, d) in targets.iter_mut().enumerate() {
        stagger_pause(i, stagger).await;
        d.generation += 1;
        d.spawn(env, dir).await?;
    }
    Ok(())
}

fn shorten(ids: &[String]) -> String {
    if ids.len() <= 4 {
        ids.join(", ")
    } else {
        format!("{}, ... ({} agents)", ids[..3].join(", "), ids.len())
    }
}
