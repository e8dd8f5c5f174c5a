//! Ground truth and the metrics computed from it: which roster entry is which
//! agent, and how each backend's roster compared with the live agents over time.
//!
//! Everything here is computed after the run from timestamped records (what
//! the harness did, what each discoverer saw), so slow harness work during the
//! run never skews a number.

use std::collections::{BTreeMap, HashMap, HashSet};

use discovery_core::{Alias, AliasKind};
use serde::Serialize;

use super::discoverer::http_target;
use super::wire::{AddrCheck, Out, WirePeer};

/// How an agent went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EndKind {
    /// Killed without a goodbye (SIGKILL).
    Crash,
    /// Stopped with SIGTERM: it said goodbye.
    Graceful,
}

/// One agent the harness started.
#[derive(Clone, Debug)]
pub(crate) struct TruthAgent {
    /// Its agent id (what its `/health` answers).
    pub id: String,
    /// Every identity it is known by (agent id, container id, task id...).
    pub aliases: Vec<Alias>,
    /// Addresses it can be found at: IPs, names, `host:port`.
    pub addrs: Vec<String>,
    /// When its process started (µs since the epoch).
    pub start_us: i64,
    /// When it was killed or stopped, and how.
    pub end: Option<(i64, EndKind)>,
    /// Where it runs (swarm node), for the record.
    pub node: Option<String>,
}

impl TruthAgent {
    fn alive_at(&self, t: i64) -> bool {
        self.start_us <= t && self.end.is_none_or(|(e, _)| t < e)
    }
}

/// Everything the harness started, with its life times.
#[derive(Clone, Debug, Default)]
pub(crate) struct Truth {
    pub agents: Vec<TruthAgent>,
}

impl Truth {
    pub(crate) fn alive_at(&self, t: i64) -> usize {
        self.agents.iter().filter(|a| a.alive_at(t)).count()
    }

    pub(crate) fn by_id(&self, id: &str) -> Option<usize> {
        self.agents.iter().position(|a| a.id == id)
    }
}

/// Address keys: `host:port` (when there is a port) and `host`.
fn addr_keys(addr: &str) -> Vec<String> {
    match http_target(addr, 0) {
        Some((host, 0)) => vec![host.to_ascii_lowercase()],
        Some((host, port)) => {
            let h = host.to_ascii_lowercase();
            vec![format!("{h}:{port}"), h]
        }
        None => vec![addr.trim().to_ascii_lowercase()],
    }
}

/// Looks roster entries up in the ground truth.
pub(crate) struct Matcher<'a> {
    truth: &'a Truth,
    by_alias: HashMap<(AliasKind, String), usize>,
    by_addr: HashMap<String, Vec<usize>>,
}

/// Alias kinds tried, in order: the agent id first.
const MATCH_ORDER: [AliasKind; 4] = [
    AliasKind::AgentId,
    AliasKind::PeerId,
    AliasKind::ContainerId,
    AliasKind::TaskId,
];

impl<'a> Matcher<'a> {
    pub(crate) fn new(truth: &'a Truth) -> Self {
        let mut by_alias = HashMap::new();
        let mut by_addr: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, a) in truth.agents.iter().enumerate() {
            by_alias.insert((AliasKind::AgentId, a.id.clone()), i);
            for al in &a.aliases {
                if al.kind.is_strong() {
                    by_alias.insert((al.kind, al.match_value().to_owned()), i);
                }
            }
            for addr in &a.addrs {
                for k in addr_keys(addr) {
                    let v = by_addr.entry(k).or_default();
                    if !v.contains(&i) {
                        v.push(i);
                    }
                }
            }
        }
        Matcher {
            truth,
            by_alias,
            by_addr,
        }
    }

    /// The agent an entry stands for at time `t`: by alias (agent id first),
    /// else by address (a live agent preferred when an address was reused).
    pub(crate) fn find(&self, p: &WirePeer, t: i64) -> Option<usize> {
        for kind in MATCH_ORDER {
            for al in p.aliases.iter().filter(|a| a.kind == kind) {
                if let Some(&i) = self.by_alias.get(&(kind, al.match_value().to_owned())) {
                    return Some(i);
                }
            }
        }
        let mut dead = None;
        for addr in &p.addrs {
            for k in addr_keys(addr) {
                if let Some(c) = self.by_addr.get(&k) {
                    if let Some(&i) = c.iter().find(|&&i| self.truth.agents[i].alive_at(t)) {
                        return Some(i);
                    }
                    dead = dead.or(c.first().copied());
                }
            }
        }
        dead
    }
}

/// What the harness recorded of one backend.
#[derive(Clone, Debug, Default)]
pub(crate) struct Record {
    /// Lines from the discoverer(s), in arrival order; `Started` begins a new process.
    pub lines: Vec<Out>,
    /// Times at which the harness stopped a discoverer process (its roster is gone).
    pub resets: Vec<i64>,
    /// Address check answers.
    pub checks: Vec<AddrCheck>,
    /// Why the discoverer could not run, if it could not.
    pub failure: Option<String>,
}

/// One state of a backend's roster against the truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Point {
    t: i64,
    found: usize,
    alive: usize,
    phantoms: usize,
    duplicates: usize,
}

/// A departure and how long the backend took to notice it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Departure {
    pub agent: String,
    pub kind: EndKind,
    /// When it went, ms after the backend's cold start.
    pub at_ms: i64,
    /// How long the roster still listed it; `null`: still listed at the end.
    pub detect_ms: Option<i64>,
}

/// An arrival and how long the backend took to list it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Arrival {
    pub agent: String,
    pub at_ms: i64,
    /// `null`: never listed during the run.
    pub detect_ms: Option<i64>,
}

/// Share of reported addresses at which the right agent answered `/health`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct AddrValidity {
    pub checked: usize,
    pub valid: usize,
    pub share: Option<f64>,
    /// A few failures, for the reader.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

/// The source's health at the end of the run.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct HealthInfo {
    pub state: String,
    pub synced: bool,
    pub ever_synced: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The metrics of one backend (one JSON row).
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Metrics {
    pub final_found: usize,
    pub expected: usize,
    pub completeness: Option<f64>,
    pub time_to_full_ms: Option<i64>,
    pub t50_ms: Option<i64>,
    pub t90_ms: Option<i64>,
    pub duplicates: usize,
    pub phantoms: usize,
    pub max_duplicates: usize,
    pub max_phantoms: usize,
    /// Entries at the end that match no live agent, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phantom_entries: Vec<String>,
    /// Worst time to notice any departure (graceful or crash) that was noticed.
    pub departure_detect_ms: Option<i64>,
    pub graceful_departure_ms: Option<i64>,
    pub crash_departure_ms: Option<i64>,
    pub arrival_detect_ms: Option<i64>,
    /// Time to the full roster again after each discoverer restart.
    pub restart_full_ms: Vec<Option<i64>>,
    pub departures: Vec<Departure>,
    pub arrivals: Vec<Arrival>,
    pub address_validity: Option<AddrValidity>,
    pub health: HealthInfo,
    /// The backend's cold start, ms after the run's reference time.
    pub t0_offset_ms: i64,
    /// `[ms after cold start, live agents listed]`, at every change.
    pub timeline: Vec<[i64; 2]>,
    /// `[ms, entries matching no live agent]`, at every change (when there were any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phantom_timeline: Vec<[i64; 2]>,
    /// Things the reader should know about these numbers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn ms(us: i64) -> i64 {
    us.div_euclid(1000)
}

/// The roster of one backend, replayed.
struct Replay {
    roster: BTreeMap<String, WirePeer>,
}

/// Computes a backend's metrics from its record.
///
/// `t_ref` is the run's reference time (churn `at` counts from it), `t_end`
/// the end of the measurement, `first_churn` the first churn time (the cold
/// start's percentiles are only looked for before it).
pub(crate) fn analyze(
    truth: &Truth,
    rec: &Record,
    t_ref: i64,
    t_end: i64,
    first_churn: Option<i64>,
) -> Metrics {
    let matcher = Matcher::new(truth);
    let mut m = Metrics::default();
    let starts: Vec<i64> = rec
        .lines
        .iter()
        .filter_map(|l| match l {
            Out::Started { t } => Some(*t),
            _ => None,
        })
        .collect();
    let Some(&t0) = starts.first() else {
        m.notes.push("the discoverer never started".into());
        return m;
    };
    m.t0_offset_ms = ms(t0 - t_ref);

    // Timed inputs: backend lines (with their time), resets, truth changes.
    enum Input<'l> {
        Truth,
        Reset,
        Line(&'l Out),
    }
    let mut inputs: Vec<(i64, u8, Input)> = Vec::new();
    for l in &rec.lines {
        let t = match l {
            Out::Started { t }
            | Out::Snapshot { t, .. }
            | Out::Joined { t, .. }
            | Out::Updated { t, .. }
            | Out::Left { t, .. }
            | Out::Health { t, .. } => *t,
            _ => continue,
        };
        inputs.push((t, 2, Input::Line(l)));
    }
    for &r in &rec.resets {
        inputs.push((r, 1, Input::Reset));
    }
    for a in &truth.agents {
        if a.start_us > t0 {
            inputs.push((a.start_us, 0, Input::Truth));
        }
        if let Some((e, _)) = a.end {
            if e > t0 {
                inputs.push((e, 0, Input::Truth));
            }
        }
    }
    // Stable: lines keep their arrival order at equal times.
    inputs.sort_by_key(|(t, prio, _)| (*t, *prio));

    let mut replay = Replay {
        roster: BTreeMap::new(),
    };
    let mut points: Vec<Point> = Vec::new();
    // Agents listed (matched by some entry, alive or not) after each point.
    let mut listed_after: Vec<HashSet<usize>> = Vec::new();
    let mut health = HealthInfo::default();
    let evaluate = |roster: &BTreeMap<String, WirePeer>, t: i64| -> (Point, HashSet<usize>) {
        let mut listed = HashSet::new();
        let mut live_entries = 0usize;
        let mut phantoms = 0usize;
        for p in roster.values() {
            match matcher.find(p, t) {
                Some(i) if truth.agents[i].alive_at(t) => {
                    live_entries += 1;
                    listed.insert(i);
                }
                Some(i) => {
                    phantoms += 1;
                    listed.insert(i);
                }
                None => phantoms += 1,
            }
        }
        let found = listed
            .iter()
            .filter(|&&i| truth.agents[i].alive_at(t))
            .count();
        (
            Point {
                t,
                found,
                alive: truth.alive_at(t),
                phantoms,
                duplicates: live_entries - found,
            },
            listed,
        )
    };
    {
        let (p, l) = evaluate(&replay.roster, t0);
        points.push(p);
        listed_after.push(l);
    }
    for (t, _, input) in &inputs {
        let t = *t;
        if t > t_end {
            break;
        }
        let t = t.max(t0);
        match input {
            Input::Truth => {}
            Input::Reset => replay.roster.clear(),
            Input::Line(l) => match l {
                Out::Started { .. } => replay.roster.clear(),
                Out::Snapshot { peers, .. } => {
                    replay.roster = peers.iter().map(|p| (p.id.clone(), p.clone())).collect();
                }
                Out::Joined { peer, .. } | Out::Updated { peer, .. } => {
                    replay.roster.insert(peer.id.clone(), peer.clone());
                }
                Out::Left { id, .. } => {
                    replay.roster.remove(id);
                }
                Out::Health {
                    health: h,
                    synced,
                    error,
                    ..
                } => {
                    health.state = h.clone();
                    health.synced = *synced;
                    health.ever_synced |= *synced;
                    if error.is_some() {
                        health.last_error = error.clone();
                    }
                    continue;
                }
                _ => continue,
            },
        }
        let (p, l) = evaluate(&replay.roster, t);
        if let Some(last) = points.last_mut() {
            if last.t == p.t {
                *last = p;
                if let Some(ll) = listed_after.last_mut() {
                    *ll = l;
                }
                continue;
            }
        }
        points.push(p);
        listed_after.push(l);
    }
    m.health = health;

    let last = points.last().copied().unwrap_or(Point {
        t: t0,
        found: 0,
        alive: 0,
        phantoms: 0,
        duplicates: 0,
    });
    m.final_found = last.found;
    m.expected = last.alive;
    m.completeness = (last.alive > 0).then(|| last.found as f64 / last.alive as f64);
    m.duplicates = last.duplicates;
    m.phantoms = last.phantoms;
    m.max_duplicates = points.iter().map(|p| p.duplicates).max().unwrap_or(0);
    m.max_phantoms = points.iter().map(|p| p.phantoms).max().unwrap_or(0);
    for p in replay.roster.values() {
        match matcher.find(p, t_end) {
            Some(i) if truth.agents[i].alive_at(t_end) => {}
            Some(i) => m
                .phantom_entries
                .push(format!("{} (agent {} is gone)", p.id, truth.agents[i].id)),
            None => m
                .phantom_entries
                .push(format!("{} (matches no agent the harness started)", p.id)),
        }
    }

    // Timelines, at every change.
    // One point per millisecond: the last value in it.
    let push = |series: &mut Vec<[i64; 2]>, t: i64, v: usize| match series.last_mut() {
        Some(last) if last[0] == ms(t - t0) => last[1] = v as i64,
        _ => series.push([ms(t - t0), v as i64]),
    };
    let mut prev: Option<(usize, usize)> = None;
    for p in &points {
        if prev.map(|(f, _)| f) != Some(p.found) {
            push(&mut m.timeline, p.t, p.found);
        }
        if prev.map(|(_, ph)| ph) != Some(p.phantoms) {
            push(&mut m.phantom_timeline, p.t, p.phantoms);
        }
        prev = Some((p.found, p.phantoms));
    }
    if m.max_phantoms == 0 {
        m.phantom_timeline.clear();
    }
    if let Some(lp) = points.last() {
        if m.timeline.last().map(|x| x[0]) != Some(ms(t_end - t0)) && t_end > lp.t {
            m.timeline.push([ms(t_end - t0), lp.found as i64]);
        }
    }

    // Cold start: 50, 90, 100 % of the live agents.
    let cold_end = first_churn
        .unwrap_or(i64::MAX)
        .min(starts.get(1).copied().unwrap_or(i64::MAX));
    let reach = |pct: usize, from: i64, until: i64| -> Option<i64> {
        points
            .iter()
            .filter(|p| p.t >= from && p.t <= until && p.alive > 0)
            .find(|p| p.found * 100 >= p.alive * pct)
            .map(|p| ms(p.t - from))
    };
    m.t50_ms = reach(50, t0, cold_end);
    m.t90_ms = reach(90, t0, cold_end);
    m.time_to_full_ms = reach(100, t0, cold_end);
    for &s in starts.iter().skip(1) {
        let until = starts.iter().copied().find(|&x| x > s).unwrap_or(i64::MAX);
        m.restart_full_ms.push(reach(100, s, until));
    }

    // Departures: from the moment it went until no entry stands for it.
    let index_before = |t: i64| points.iter().rposition(|p| p.t < t);
    let (mut never_listed, mut until_restart) = (0usize, 0usize);
    for (i, a) in truth.agents.iter().enumerate() {
        let Some((end, kind)) = a.end else { continue };
        if end <= t0 || end > t_end {
            continue;
        }
        let listed_before = index_before(end).is_some_and(|k| listed_after[k].contains(&i));
        if !listed_before {
            never_listed += 1;
            continue;
        }
        let mut detect = points
            .iter()
            .zip(&listed_after)
            .find(|(p, l)| p.t >= end && !l.contains(&i))
            .map(|(p, _)| p.t);
        // A roster emptied by a discoverer restart noticed nothing.
        let restart_between = |d: i64| {
            rec.resets.iter().any(|&r| r >= end && r <= d)
                || starts.iter().skip(1).any(|&s| s >= end && s <= d)
        };
        if detect.is_some_and(restart_between) {
            until_restart += 1;
            detect = None;
        }
        let detect = detect.map(|d| ms(d - end));
        m.departures.push(Departure {
            agent: a.id.clone(),
            kind,
            at_ms: ms(end - t0),
            detect_ms: detect,
        });
    }
    let worst = |kind: Option<EndKind>| -> Option<i64> {
        m.departures
            .iter()
            .filter(|d| kind.is_none_or(|k| d.kind == k))
            .filter_map(|d| d.detect_ms)
            .max()
    };
    m.graceful_departure_ms = worst(Some(EndKind::Graceful));
    m.crash_departure_ms = worst(Some(EndKind::Crash));
    m.departure_detect_ms = worst(None);
    if never_listed > 0 {
        m.notes.push(format!(
            "{never_listed} agent(s) went before this backend listed them: no departure time for them"
        ));
    }
    if until_restart > 0 {
        m.notes.push(format!(
            "{until_restart} departure(s) were still listed when the discoverer restarted: not noticed, no departure time"
        ));
    }
    let still = m
        .departures
        .iter()
        .filter(|d| d.detect_ms.is_none())
        .count()
        - until_restart;
    if still > 0 {
        m.notes.push(format!(
            "{still} departure(s) still listed at the end of the run: not noticed"
        ));
    }

    // Arrivals: from the agent's start until an entry stands for it.
    for (i, a) in truth.agents.iter().enumerate() {
        if a.start_us <= t0 || a.start_us > t_end {
            continue;
        }
        let detect = points
            .iter()
            .zip(&listed_after)
            .find(|(p, l)| p.t >= a.start_us && l.contains(&i))
            .map(|(p, _)| ms(p.t - a.start_us));
        m.arrivals.push(Arrival {
            agent: a.id.clone(),
            at_ms: ms(a.start_us - t0),
            detect_ms: detect,
        });
    }
    m.arrival_detect_ms = m.arrivals.iter().filter_map(|a| a.detect_ms).max();
    let unseen = m.arrivals.iter().filter(|a| a.detect_ms.is_none()).count();
    if unseen > 0 {
        m.notes
            .push(format!("{unseen} new agent(s) never listed during the run"));
    }

    if !rec.checks.is_empty() || rec.lines.iter().any(|l| matches!(l, Out::Check { .. })) {
        m.address_validity = Some(validity(
            truth,
            &matcher,
            &replay.roster,
            &rec.checks,
            t_end,
        ));
    }
    m
}

fn validity(
    truth: &Truth,
    matcher: &Matcher<'_>,
    roster: &BTreeMap<String, WirePeer>,
    checks: &[AddrCheck],
    t_end: i64,
) -> AddrValidity {
    let mut checked = 0;
    let mut valid = 0;
    let mut examples = Vec::new();
    for c in checks {
        // Only addresses of entries listed at the end of the measurement.
        let Some(p) = roster.get(&c.peer) else {
            continue;
        };
        checked += 1;
        let want = matcher
            .find(p, t_end)
            .filter(|&i| truth.agents[i].alive_at(t_end))
            .map(|i| truth.agents[i].id.as_str());
        let ok = match (want, &c.answered) {
            (Some(w), Some(a)) => w == a,
            _ => false,
        };
        if ok {
            valid += 1;
        } else if examples.len() < 5 {
            examples.push(match (&c.answered, &c.error, want) {
                (Some(a), _, Some(w)) => format!("{}: {a} answered, expected {w}", c.addr),
                (Some(a), _, None) => format!(
                    "{}: {a} answered for an entry that is no live agent",
                    c.addr
                ),
                (None, Some(e), _) => format!("{}: {e}", c.addr),
                (None, None, _) => format!("{}: no answer", c.addr),
            });
        }
    }
    AddrValidity {
        checked,
        valid,
        share: (checked > 0).then(|| valid as f64 / checked as f64),
        examples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    const MS: i64 = 1_000;

    fn agent(i: usize, start: i64) -> TruthAgent {
        TruthAgent {
            id: format!("agent-{i}"),
            aliases: vec![Alias::container_id(format!("{i:012}deadbeef"))],
            addrs: vec![format!("10.0.0.{i}:8081")],
            start_us: start,
            end: None,
            node: None,
        }
    }

    fn by_id(i: usize) -> WirePeer {
        WirePeer {
            id: format!("agent-{i}"),
            aliases: vec![Alias::agent_id(format!("agent-{i}"))],
            addrs: vec![format!("/ip4/10.0.0.{i}/tcp/8081")],
        }
    }

    fn by_addr(i: usize) -> WirePeer {
        WirePeer {
            id: format!("swarm/{i}"),
            aliases: vec![],
            addrs: vec![format!("/ip4/10.0.0.{i}")],
        }
    }

    #[test]
    fn matches_alias_then_address() {
        let mut truth = Truth {
            agents: (1..=3).map(|i| agent(i, 0)).collect(),
        };
        truth.agents.push(TruthAgent {
            id: "agent-4".into(),
            addrs: vec!["10.0.0.1:8081".into()],
            start_us: 5 * S,
            ..agent(4, 0)
        });
        truth.agents[0].end = Some((4 * S, EndKind::Crash));
        let m = Matcher::new(&truth);
        assert_eq!(m.find(&by_id(2), 0), Some(1));
        assert_eq!(m.find(&by_addr(3), 0), Some(2));
        // Container id on its short form.
        let c = WirePeer {
            id: "x".into(),
            aliases: vec![Alias::container_id("000000000002")],
            addrs: vec![],
        };
        assert_eq!(m.find(&c, 0), Some(1));
        // 10.0.0.1 was agent-1's, then agent-4's: the live one wins.
        assert_eq!(m.find(&by_addr(1), S), Some(0));
        assert_eq!(m.find(&by_addr(1), 6 * S), Some(3));
        let nobody = WirePeer {
            id: "ghost".into(),
            aliases: vec![Alias::agent_id("ghost")],
            addrs: vec!["/ip4/10.9.9.9/tcp/1".into()],
        };
        assert_eq!(m.find(&nobody, 0), None);
    }

    fn rec(lines: Vec<Out>) -> Record {
        Record {
            lines,
            ..Default::default()
        }
    }

    #[test]
    fn cold_start_percentiles_duplicates_and_phantoms() {
        let t0 = 100 * S;
        let truth = Truth {
            agents: (1..=10).map(|i| agent(i, 0)).collect(),
        };
        let mut lines = vec![Out::Started { t: t0 }];
        for i in 1..=10 {
            lines.push(Out::Joined {
                t: t0 + i as i64 * 10 * MS,
                peer: by_id(i),
            });
        }
        // A second entry for agent-3 (found by address only) and a ghost.
        lines.push(Out::Joined {
            t: t0 + 200 * MS,
            peer: by_addr(3),
        });
        lines.push(Out::Joined {
            t: t0 + 210 * MS,
            peer: WirePeer {
                id: "ghost".into(),
                aliases: vec![],
                addrs: vec![],
            },
        });
        let m = analyze(&truth, &rec(lines), t0, t0 + 10 * S, None);
        assert_eq!(m.t50_ms, Some(50));
        assert_eq!(m.t90_ms, Some(90));
        assert_eq!(m.time_to_full_ms, Some(100));
        assert_eq!(m.final_found, 10);
        assert_eq!(m.completeness, Some(1.0));
        assert_eq!(m.duplicates, 1);
        assert_eq!(m.phantoms, 1);
        assert_eq!(m.timeline.first(), Some(&[0, 0]));
        assert_eq!(m.timeline[m.timeline.len() - 2], [100, 10]);
        assert_eq!(m.timeline.last(), Some(&[10_000, 10]));
    }

    #[test]
    fn departures_arrivals_and_restarts() {
        let t0 = 100 * S;
        let mut truth = Truth {
            agents: (1..=4).map(|i| agent(i, 0)).collect(),
        };
        truth.agents[0].end = Some((t0 + 2 * S, EndKind::Crash));
        truth.agents[1].end = Some((t0 + 3 * S, EndKind::Graceful));
        truth.agents.push(agent(5, t0 + 4 * S));
        let mut lines = vec![
            Out::Started { t: t0 },
            Out::Snapshot {
                t: t0 + MS,
                peers: (1..=4).map(by_id).collect(),
            },
            // The graceful one is noticed in 20 ms; the crash after 3 s.
            Out::Left {
                t: t0 + 3 * S + 20 * MS,
                id: "agent-2".into(),
            },
            Out::Joined {
                t: t0 + 4 * S + 50 * MS,
                peer: by_id(5),
            },
            Out::Left {
                t: t0 + 5 * S,
                id: "agent-1".into(),
            },
        ];
        // Restart at 6 s: full again 30 ms after the new cold start.
        lines.push(Out::Started { t: t0 + 6 * S });
        lines.push(Out::Snapshot {
            t: t0 + 6 * S + 30 * MS,
            peers: vec![by_id(3), by_id(4), by_id(5)],
        });
        let mut r = rec(lines);
        r.resets.push(t0 + 6 * S - MS);
        let m = analyze(&truth, &r, t0, t0 + 8 * S, Some(t0 + 2 * S));
        assert_eq!(m.time_to_full_ms, Some(1));
        assert_eq!(m.crash_departure_ms, Some(3000));
        assert_eq!(m.graceful_departure_ms, Some(20));
        assert_eq!(m.departure_detect_ms, Some(3000));
        assert_eq!(m.arrival_detect_ms, Some(50));
        assert_eq!(m.restart_full_ms, vec![Some(30)]);
        // Between 3 s and 3.02 s both gone agents were still listed.
        assert_eq!(m.max_phantoms, 2);
        assert_eq!(m.phantoms, 0);
        assert_eq!(m.completeness, Some(1.0));
        assert_eq!(m.expected, 3);
        // Found dropped to 0 at the restart, and came back.
        assert!(m.timeline.iter().any(|p| p[1] == 0 && p[0] > 5000));
    }

    #[test]
    fn a_restart_is_not_a_departure_noticed() {
        let t0 = 100 * S;
        let mut truth = Truth {
            agents: (1..=2).map(|i| agent(i, 0)).collect(),
        };
        truth.agents[0].end = Some((t0 + S, EndKind::Crash));
        let mut r = rec(vec![
            Out::Started { t: t0 },
            Out::Snapshot {
                t: t0,
                peers: vec![by_id(1), by_id(2)],
            },
            Out::Started { t: t0 + 2 * S },
            Out::Snapshot {
                t: t0 + 2 * S + MS,
                peers: vec![by_id(2)],
            },
        ]);
        r.resets.push(t0 + 2 * S - MS);
        let m = analyze(&truth, &r, t0, t0 + 3 * S, Some(t0 + S));
        assert_eq!(m.departures.len(), 1);
        assert_eq!(m.departures[0].detect_ms, None);
        assert_eq!(m.crash_departure_ms, None);
        assert_eq!(m.restart_full_ms, vec![Some(1)]);
        assert_eq!(m.phantoms, 0);
    }

    #[test]
    fn address_validity_judges_the_right_agent() {
        let t0 = 100 * S;
        let truth = Truth {
            agents: (1..=2).map(|i| agent(i, 0)).collect(),
        };
        let mut r = rec(vec![
            Out::Started { t: t0 },
            Out::Snapshot {
                t: t0,
                peers: vec![by_id(1), by_id(2)],
            },
        ]);
        r.checks = vec![
            AddrCheck {
                peer: "agent-1".into(),
                addr: "/ip4/10.0.0.1/tcp/8081".into(),
                answered: Some("agent-1".into()),
                error: None,
            },
            AddrCheck {
                peer: "agent-2".into(),
                addr: "/ip4/10.0.0.2/tcp/8081".into(),
                answered: Some("agent-1".into()),
                error: None,
            },
        ];
        let m = analyze(&truth, &r, t0, t0 + S, None);
        let v = m.address_validity.unwrap();
        assert_eq!((v.checked, v.valid), (2, 1));
        assert_eq!(v.share, Some(0.5));
    }

    #[test]
    fn a_backend_that_never_started_has_no_numbers() {
        let truth = Truth {
            agents: vec![agent(1, 0)],
        };
        let m = analyze(&truth, &Record::default(), 0, S, None);
        assert_eq!(m.completeness, None);
        assert!(!m.notes.is_empty());
    }
}
