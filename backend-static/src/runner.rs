//! One run of the static source: load, resolve, probe, publish; then watch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use discovery_core::multiaddr::Protocol;
use discovery_core::{
    Alias, AliasKind, CancellationToken, Closed, Metadata, Multiaddr, Observation, SourceContext,
    SourceError,
};
use futures::StreamExt;
use hickory_resolver::TokioResolver;
use tokio::time::{Instant, MissedTickBehavior};

use crate::dns::{self, Answer};
use crate::entry::Entry;
use crate::file::{self, Content, Watched};
use crate::probe::{Failure, Health, Prober};
use crate::Settings;

/// A changed file is read again after this pause and taken only if it is
/// still the same (a writer may be half-way through it).
const SETTLE: Duration = Duration::from_millis(50);
/// Names resolved at once.
const DNS_CONCURRENCY: usize = 16;
/// At most one "degraded" warning per this period (every change is logged at debug).
const WARN_EVERY: Duration = Duration::from_secs(30);
/// Failing probes named in the degraded reason.
const REASON_DETAILS: usize = 3;

/// The complete set as things stand and what is wrong with it.
#[derive(Debug)]
struct Evaluation {
    observations: Vec<Observation>,
    problems: Vec<String>,
    /// Every problem is a probe verdict (an entry answered wrong or not at
    /// all): the refresh saw the whole truth, and absent entries are gone.
    probe_only: bool,
    /// Answers from another peer than the entry names (counted once per publication).
    mismatches: u64,
}

/// Which names or targets a refresh covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    All,
    New,
    None,
}

/// The run ends: shutdown, or the registry is gone.
#[derive(Debug)]
struct Stop;

/// What a look at the file found.
#[derive(Debug, PartialEq, Eq)]
enum FileChange {
    None,
    Good,
    Bad,
}

pub(crate) struct Runner {
    s: Arc<Settings>,
    ctx: SourceContext,
    source: Arc<str>,
    file: Option<Watched>,
    resolver: Option<TokioResolver>,
    answers: HashMap<String, Answer>,
    prober: Option<Arc<Prober>>,
    probes: HashMap<SocketAddr, Result<Health, Failure>>,
    last_reason: Option<String>,
    last_warn: Option<Instant>,
    /// Keys of the observations published so far (for probe verdicts).
    published: HashSet<String>,
}

impl Runner {
    pub(crate) fn new(s: Arc<Settings>, ctx: SourceContext) -> Self {
        let source = ctx.name.clone();
        Runner {
            file: s.file.as_ref().map(|path| Watched {
                path: path.clone(),
                seen: None,
                good: Vec::new(),
                error: None,
            }),
            s,
            ctx,
            source,
            resolver: None,
            answers: HashMap::new(),
            prober: None,
            probes: HashMap::new(),
            last_reason: None,
            published: HashSet::new(),
            last_warn: None,
        }
    }

    pub(crate) async fn run(mut self) -> Result<(), SourceError> {
        if let Some(p) = &self.s.probe {
            let prober = Prober::new(p.clone(), self.source.clone()).map_err(SourceError::msg)?;
            self.prober = Some(Arc::new(prober));
        }
        let shutdown = self.ctx.shutdown.clone();
        self.check_file(false).await;
        if self
            .refresh(&shutdown, Scope::All, Scope::All)
            .await
            .is_err()
        {
            return Ok(());
        }
        if self.file.is_none() && self.prober.is_none() && self.names().is_empty() {
            // Nothing can change: the set stays published until shutdown.
            shutdown.cancelled().await;
            return Ok(());
        }

        let mut file_tick = ticker(self.s.watch_interval);
        let mut dns_tick = ticker(self.s.dns_refresh);
        let probe_interval = self
            .s
            .probe
            .as_ref()
            .map_or(Duration::from_secs(3600), |p| p.interval);
        let mut probe_tick = ticker(probe_interval);
        loop {
            let has_file = self.file.is_some();
            // While the file is broken the last good list is published again at
            // every DNS refresh, so the registry does not age it out.
            let dns_due =
                !self.names().is_empty() || self.file.as_ref().is_some_and(|f| f.error.is_some());
            let has_probe = self.prober.is_some();
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                _ = file_tick.tick(), if has_file => match self.check_file(true).await {
                    FileChange::None => Ok(()),
                    FileChange::Bad => self.report(self.evaluate().problems).await.map_err(|_| Stop),
                    // New names and new targets only; the rest is current.
                    FileChange::Good => self.refresh(&shutdown, Scope::New, Scope::New).await,
                },
                _ = dns_tick.tick(), if dns_due => self.refresh(&shutdown, Scope::All, Scope::New).await,
                _ = probe_tick.tick(), if has_probe => self.refresh(&shutdown, Scope::None, Scope::All).await,
            };
            if step.is_err() {
                return Ok(());
            }
        }
    }

    /// Resolves names, probes targets (each: all, only those not known yet,
    /// or none), then publishes. `Err(Stop)`: shutdown, or the registry is gone.
    async fn refresh(
        &mut self,
        shutdown: &CancellationToken,
        names: Scope,
        targets: Scope,
    ) -> Result<(), Stop> {
        let names: Vec<String> = match names {
            Scope::All => self.names(),
            Scope::New => self
                .names()
                .into_iter()
                .filter(|n| !self.answers.contains_key(n))
                .collect(),
            Scope::None => Vec::new(),
        };
        until(shutdown, self.resolve(names)).await.ok_or(Stop)?;
        let targets: Vec<SocketAddr> = match targets {
            Scope::All => self.targets(),
            Scope::New => self
                .targets()
                .into_iter()
                .filter(|t| !self.probes.contains_key(t))
                .collect(),
            Scope::None => Vec::new(),
        };
        until(shutdown, self.probe(targets)).await.ok_or(Stop)?;
        self.publish().await.map_err(|_| Stop)
    }

    /// Every entry: inline first, then the file's last good list.
    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.s
            .inline
            .iter()
            .chain(self.file.iter().flat_map(|f| f.good.iter()))
    }

    fn names(&self) -> Vec<String> {
        dns::names(self.entries().flat_map(|e| e.addrs.iter()))
    }

    /// The entry's addresses with names replaced by their answers, deduplicated.
    fn expanded(&self, e: &Entry) -> Vec<Multiaddr> {
        let mut out: Vec<Multiaddr> = Vec::with_capacity(e.addrs.len());
        for a in &e.addrs {
            for m in dns::expand(a, &self.answers) {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        out
    }

    /// Where the probe asks for an address: its IP and the probe port (or its TCP port).
    fn target_of(&self, addr: &Multiaddr) -> Option<SocketAddr> {
        let probe = self.s.probe.as_ref()?;
        let mut it = addr.iter();
        let ip: IpAddr = match it.next()? {
            Protocol::Ip4(ip) => ip.into(),
            Protocol::Ip6(ip) => ip.into(),
            _ => return None,
        };
        let port = match (probe.port, it.next()) {
            (Some(p), _) => p,
            (None, Some(Protocol::Tcp(p))) => p,
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    }

    fn targets(&self) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for e in self.entries() {
            for a in self.expanded(e) {
                if let Some(t) = self.target_of(&a) {
                    if seen.insert(t) {
                        out.push(t);
                    }
                }
            }
        }
        out
    }

    /// Looks at the file; on a new version parses it. `settle`: read a changed
    /// file twice, [`SETTLE`] apart, and take it only if it did not change.
    async fn check_file(&mut self, settle: bool) -> FileChange {
        let Some(path) = self.file.as_ref().map(|f| f.path.clone()) else {
            return FileChange::None;
        };
        let content = file::read(&path, self.s.max_file_bytes);
        let fp = content.fingerprint();
        if self.file.as_ref().and_then(|f| f.seen.as_ref()) == Some(&fp) {
            return FileChange::None;
        }
        if settle {
            tokio::time::sleep(SETTLE).await;
            if file::read(&path, self.s.max_file_bytes).fingerprint() != fp {
                return FileChange::None;
            }
        }
        let probe = self.s.probe.clone();
        let parsed = match content {
            Content::Bytes(_, bytes) => file::parse(&path, &bytes, probe.as_ref(), &self.s.inline),
            Content::Unreadable(e) => Err(e),
        };
        let source = self.source.clone();
        let Some(f) = self.file.as_mut() else {
            return FileChange::None;
        };
        f.seen = Some(fp);
        match parsed {
            Ok(entries) => {
                metrics::counter!("rollcall_static_reloads_total", "source" => source.to_string(), "result" => "ok").increment(1);
                tracing::info!(source = %source, file = %path.display(), peers = entries.len(), "peers file loaded");
                f.good = entries;
                f.error = None;
                FileChange::Good
            }
            Err(e) => {
                metrics::counter!("rollcall_static_reloads_total", "source" => source.to_string(), "result" => "error").increment(1);
                tracing::warn!(source = %source, file = %path.display(), error = %e, kept = f.good.len(), "peers file refused; keeping the last good list");
                f.error = Some(e);
                FileChange::Bad
            }
        }
    }

    /// Resolves names; a failure keeps the name's previous answer.
    async fn resolve(&mut self, names: Vec<String>) {
        let used: HashSet<String> = self.names().into_iter().collect();
        self.answers.retain(|n, _| used.contains(n));
        if names.is_empty() {
            return;
        }
        if self.resolver.is_none() {
            match dns::build_resolver(&self.s.dns_servers) {
                Ok(r) => self.resolver = Some(r),
                Err(e) => {
                    for n in names {
                        self.answers.entry(n).or_default().error = Some(e.clone());
                    }
                    return;
                }
            }
        }
        let Some(resolver) = self.resolver.clone() else {
            return;
        };
        // A refresh must see the records as they are now, not as cached.
        resolver.clear_cache();
        let results: Vec<(String, Result<Vec<IpAddr>, String>)> = futures::stream::iter(names)
            .map(|n| {
                let r = resolver.clone();
                async move {
                    let res = r.lookup_ip(n.as_str()).await;
                    let res = res
                        .map(|l| l.iter().collect::<Vec<_>>())
                        .map_err(|e| e.to_string());
                    (n, res)
                }
            })
            .buffer_unordered(DNS_CONCURRENCY)
            .collect()
            .await;
        for (name, res) in results {
            let res = match res {
                Ok(ips) if ips.is_empty() => Err("no A/AAAA records".to_owned()),
                other => other,
            };
            let result = if res.is_ok() { "ok" } else { "error" };
            metrics::counter!("rollcall_static_dns_lookups_total", "source" => self.source.to_string(), "result" => result).increment(1);
            let answer = self.answers.entry(name.clone()).or_default();
            match res {
                Ok(ips) => {
                    let mut uniq: Vec<IpAddr> = Vec::with_capacity(ips.len());
                    for ip in ips {
                        if !uniq.contains(&ip) {
                            uniq.push(ip);
                        }
                    }
                    if uniq != answer.ips {
                        tracing::debug!(source = %self.source, name, ips = ?uniq, "name resolved");
                    }
                    answer.ips = uniq;
                    answer.error = None;
                }
                Err(e) => {
                    tracing::debug!(source = %self.source, name, error = %e, kept = answer.ips.len(), "name does not resolve");
                    answer.error = Some(e);
                }
            }
        }
    }

    /// Probes targets (bounded concurrency) and forgets targets no longer used.
    async fn probe(&mut self, targets: Vec<SocketAddr>) {
        let Some(prober) = self.prober.clone() else {
            return;
        };
        let used: HashSet<SocketAddr> = self.targets().into_iter().collect();
        self.probes.retain(|t, _| used.contains(t));
        if targets.is_empty() {
            return;
        }
        let results: Vec<(SocketAddr, Result<Health, Failure>)> = futures::stream::iter(targets)
            .map(|t| {
                let p = prober.clone();
                async move { (t, p.probe(t).await) }
            })
            .buffer_unordered(prober.concurrency())
            .collect()
            .await;
        for (t, r) in results {
            if let Err(f) = &r {
                tracing::debug!(source = %self.source, url = %prober.url(t), error = %f, "probe failed");
            }
            self.probes.insert(t, r);
        }
    }

    /// The complete set as things stand, and what is wrong.
    fn evaluate(&self) -> Evaluation {
        let mut problems = Vec::new();
        if let Some(f) = &self.file {
            if let Some(e) = &f.error {
                problems.push(format!(
                    "file `{}`: {e} (keeping the last good list of {} peers)",
                    file::display(&f.path),
                    f.good.len()
                ));
            }
        }
        for name in self.names() {
            match self.answers.get(&name) {
                Some(Answer {
                    error: Some(e),
                    ips,
                }) if ips.is_empty() => {
                    problems.push(format!("DNS name `{name}` does not resolve: {e}"));
                }
                Some(Answer {
                    error: Some(e),
                    ips,
                }) => {
                    problems.push(format!(
                        "DNS name `{name}` does not resolve: {e} (keeping its previous {} addresses)",
                        ips.len()
                    ));
                }
                Some(_) => {}
                None => problems.push(format!("DNS name `{name}` not resolved yet")),
            }
        }

        let mut out: Vec<Observation> = Vec::new();
        let mut keys: HashSet<String> = HashSet::new();
        let mut probed = 0usize;
        let mut failing: Vec<String> = Vec::new();
        let mut mismatches = 0u64;
        for e in self.entries() {
            let addrs = self.expanded(e);
            for a in &e.addrs {
                // `/dns4/NAME` when NAME has only AAAA records (or `/dns6` and A).
                if let Some(Protocol::Dns4(n) | Protocol::Dns6(n)) = a.iter().next() {
                    let resolved = self.answers.get(&*n).is_some_and(|x| x.error.is_none());
                    let msg = format!("DNS name `{n}` has no address of the family `{a}` asks for");
                    if resolved
                        && dns::expand(a, &self.answers).is_empty()
                        && !problems.contains(&msg)
                    {
                        problems.push(msg);
                    }
                }
            }
            let Some(prober) = &self.prober else {
                if keys.insert(e.key.clone()) {
                    out.push(Observation {
                        key: e.key.clone(),
                        aliases: e.aliases.clone(),
                        addrs,
                        meta: e.meta.clone(),
                        ttl: None,
                    });
                }
                continue;
            };
            // Each target once, with the addresses it vouches for.
            let mut targets: Vec<SocketAddr> = Vec::new();
            for a in &addrs {
                if let Some(t) = self.target_of(a) {
                    if !targets.contains(&t) {
                        targets.push(t);
                    }
                }
            }
            probed += targets.len();
            // identity -> (targets that answered with it, their answers)
            let mut live: BTreeMap<String, Vec<(SocketAddr, &Health)>> = BTreeMap::new();
            for t in &targets {
                let url = prober.url(*t);
                match self.probes.get(t) {
                    Some(Ok(h)) => match mismatch(e, h) {
                        Some(why) => {
                            mismatches += 1;
                            failing.push(format!("{url}: {why}"));
                        }
                        None => match e.id.as_deref().or(h.identity()) {
                            Some(identity) => {
                                live.entry(identity.to_owned()).or_default().push((*t, h))
                            }
                            None => failing
                                .push(format!("{url}: the answer has neither `id` nor `peer_id`")),
                        },
                    },
                    Some(Err(f)) => failing.push(format!("{url}: {f}")),
                    None => failing.push(format!("{url}: not probed yet")),
                }
            }
            for (identity, answers) in live {
                let key = match &e.id {
                    Some(_) => e.key.clone(),
                    // A name may resolve to many replicas, each its own peer.
                    None => format!("{}#{identity}", e.key),
                };
                if keys.insert(key.clone()) {
                    out.push(self.probed_observation(key, e, &addrs, &answers));
                }
            }
        }
        let probe_only = problems.is_empty();
        if !failing.is_empty() {
            let mut msg = format!("{} of {probed} probes failing: ", failing.len());
            msg.push_str(
                &failing
                    .iter()
                    .take(REASON_DETAILS)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            if failing.len() > REASON_DETAILS {
                msg.push_str(&format!(" (and {} more)", failing.len() - REASON_DETAILS));
            }
            problems.push(msg);
        }
        Evaluation {
            observations: out,
            problems,
            probe_only,
            mismatches,
        }
    }

    /// One observation from an entry and the answers that share one identity.
    fn probed_observation(
        &self,
        key: String,
        e: &Entry,
        addrs: &[Multiaddr],
        answers: &[(SocketAddr, &Health)],
    ) -> Observation {
        let mut aliases: Vec<Alias> = Vec::new();
        let push = |aliases: &mut Vec<Alias>, a: Alias| {
            if aliases.contains(&a) {
                return;
            }
            if a.kind.is_singular() && aliases.iter().any(|x| x.kind == a.kind) {
                tracing::debug!(source = %self.source, key, alias = %a.value, kind = %a.kind, "second value of a singular alias ignored");
                return;
            }
            aliases.push(a);
        };
        for a in &e.aliases {
            push(&mut aliases, a.clone());
        }
        for (_, h) in answers {
            if let Some(id) = &h.id {
                push(&mut aliases, Alias::agent_id(id.clone()));
            }
            if let Some(pid) = &h.peer_id {
                push(&mut aliases, Alias::peer_id(pid.clone()));
            }
            for a in &h.aliases {
                push(&mut aliases, a.clone());
            }
        }
        // The agent id first, as the rest of rollcall writes it.
        aliases.sort_by_key(|a| a.kind != AliasKind::AgentId);

        let live: HashSet<SocketAddr> = answers.iter().map(|(t, _)| *t).collect();
        let mut out_addrs: Vec<Multiaddr> = addrs
            .iter()
            .filter(|a| self.target_of(a).is_none_or(|t| live.contains(&t)))
            .cloned()
            .collect();
        for (_, h) in answers {
            for a in &h.addrs {
                if !out_addrs.contains(a) {
                    out_addrs.push(a.clone());
                }
            }
        }
        Observation {
            key,
            aliases,
            addrs: out_addrs,
            meta: merge_meta(&e.meta, &answers[0].1.meta),
            ttl: None,
        }
    }

    /// Publishes one refresh. Complete: a `replace` (a successful sync).
    /// With problems: a `partial` (degraded, what was seen confirmed, the rest
    /// kept as last seen) — never ok-then-degraded within one refresh.
    async fn publish(&mut self) -> Result<(), Closed> {
        let Evaluation {
            observations: obs,
            problems,
            probe_only,
            mismatches,
        } = self.evaluate();
        if mismatches > 0 {
            metrics::counter!("rollcall_static_probe_mismatches_total", "source" => self.source.to_string())
                .increment(mismatches);
        }
        tracing::debug!(source = %self.source, peers = obs.len(), problems = problems.len(), "publishing a refresh");
        let seen: HashSet<String> = obs.iter().map(|o| o.key.clone()).collect();
        if problems.is_empty() {
            self.published = seen;
            self.ctx.events.replace(obs).await?;
            if self.last_reason.take().is_some() {
                tracing::info!(source = %self.source, "source healthy again");
            }
            return Ok(());
        }
        let reason = self.note_problems(problems);
        if probe_only {
            // The probe's verdicts are the truth: a dead or wrong entry leaves
            // now, the source stays degraded while any probe fails.
            let gone: Vec<String> = self.published.difference(&seen).cloned().collect();
            for key in gone {
                self.ctx.events.remove(key).await?;
            }
            self.published = seen;
        } else {
            self.published.extend(seen);
        }
        self.ctx.events.partial(obs, reason).await
    }

    /// Marks the source degraded without publishing observations (a file
    /// that cannot be read keeps the last good set).
    async fn report(&mut self, problems: Vec<String>) -> Result<(), Closed> {
        if problems.is_empty() {
            if self.last_reason.take().is_some() {
                tracing::info!(source = %self.source, "source healthy again");
                self.ctx.events.healthy().await?;
            }
            return Ok(());
        }
        let reason = self.note_problems(problems);
        self.ctx.events.degraded(reason).await
    }

    /// The degraded reason; logged once per distinct reason (rate limited).
    fn note_problems(&mut self, problems: Vec<String>) -> String {
        let reason = problems.join("; ");
        if self.last_reason.as_deref() != Some(reason.as_str()) {
            let now = Instant::now();
            if self
                .last_warn
                .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
            {
                self.last_warn = Some(now);
                tracing::warn!(source = %self.source, reason = %reason, "source degraded");
            } else {
                tracing::debug!(source = %self.source, reason = %reason, "source degraded");
            }
        }
        self.last_reason = Some(reason.clone());
        reason
    }
}

/// Why an answer is not from the configured peer (the VIP problem: another
/// replica answered), if it is not.
fn mismatch(e: &Entry, h: &Health) -> Option<String> {
    if let (Some(want), Some(got)) = (&e.id, &h.id) {
        if want != got {
            return Some(format!("answered as agent `{got}`, expected `{want}`"));
        }
    }
    let want_pid = e.aliases.iter().find(|a| a.kind == AliasKind::PeerId);
    if let (Some(want), Some(got)) = (want_pid, &h.peer_id) {
        if want.value != *got {
            return Some(format!(
                "answered as peer `{got}`, expected `{}`",
                want.value
            ));
        }
    }
    None
}

/// The entry's fields win; the probe fills what the entry leaves unset.
fn merge_meta(entry: &Metadata, probed: &Metadata) -> Metadata {
    let mut labels = probed.labels.clone();
    labels.extend(entry.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    Metadata {
        name: entry.name.clone().or_else(|| probed.name.clone()),
        status: entry.status.clone().or_else(|| probed.status.clone()),
        capabilities: if entry.capabilities.is_empty() {
            probed.capabilities.clone()
        } else {
            entry.capabilities.clone()
        },
        version: entry.version.clone().or_else(|| probed.version.clone()),
        labels,
    }
}

/// An interval whose first tick is one period from now; late ticks are not bunched.
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(Instant::now() + period, period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// Runs `f` unless shutdown comes first (then `None`).
async fn until<F: Future>(shutdown: &CancellationToken, f: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => None,
        out = f => Some(out),
    }
}
