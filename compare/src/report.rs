//! The result: JSON, the terminal table, the SVG plot.

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::analyze::{HealthInfo, Metrics};
use super::BoxError;

/// The machine the run was measured on.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct HostInfo {
    pub cpus: usize,
    /// `/proc/loadavg` (1, 5, 15 min) when the run ended: the machine is shared.
    pub load_avg: Option<String>,
    pub memory_kib: Option<u64>,
    pub kernel: Option<String>,
}

impl HostInfo {
    pub(crate) fn here() -> Self {
        let memory_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        });
        HostInfo {
            load_avg: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_kib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
        }
    }
}

/// A churn event as it happened.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ChurnDone {
    /// When it was done, ms after the run's reference time (the last discoverer's cold start).
    pub at_ms: i64,
    pub action: String,
    pub count: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a backend that could not run still reports.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Failed {
    /// What it found anyway.
    pub final_found: usize,
    pub expected: usize,
    pub timeline: Vec<[i64; 2]>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phantom_entries: Vec<String>,
    pub health: HealthInfo,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A row's numbers, or why there are none.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Body {
    Measured(Box<Metrics>),
    Failed(Failed),
}

/// One backend's result.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Row {
    pub name: String,
    /// The source type, or `http-vip`.
    #[serde(rename = "type")]
    pub kind: String,
    pub baseline: bool,
    /// An anchor: the discovery operators already run (Prometheus's SD).
    pub anchor: bool,
    /// This row against the best anchor of the same run (`add_anchor_ratios`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_anchor: Option<VsAnchor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why it could not run (then there are no numbers, only what it found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub body: Body,
    /// CPU time of the discoverer process(es), user + system.
    pub cpu_ms: Option<u64>,
    /// Peak resident memory of the discoverer process (the largest, across restarts).
    pub peak_rss_kib: Option<u64>,
}

impl Row {
    fn metrics(&self) -> Option<&Metrics> {
        match &self.body {
            Body::Measured(m) => Some(m),
            Body::Failed(_) => None,
        }
    }

    fn timeline(&self) -> (&[[i64; 2]], i64) {
        match &self.body {
            Body::Measured(m) => (&m.timeline, m.t0_offset_ms),
            Body::Failed(f) => (&f.timeline, 0),
        }
    }
}

/// How many times faster than the best anchor of the run a row is: the
/// anchor's time divided by this row's (2.0 = twice as fast; below 1 slower).
/// Each figure compares with the anchor best at that figure; `None` when
/// either side has no number.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct VsAnchor {
    /// Time to the full roster from cold: anchor / row.
    pub full: Option<f64>,
    /// Worst time to list an arrival.
    pub join: Option<f64>,
    /// Worst time to notice a departure.
    pub leave: Option<f64>,
    /// The anchor rows each figure is relative to.
    pub full_anchor: Option<String>,
    pub join_anchor: Option<String>,
    pub leave_anchor: Option<String>,
}

/// Fills in `vs_anchor` of every non-anchor row, relative to the best anchor.
pub(crate) fn add_anchor_ratios(rows: &mut [Row]) {
    let best = |f: fn(&Metrics) -> Option<i64>| -> Option<(i64, String)> {
        rows.iter()
            .filter(|r| r.anchor)
            .filter_map(|r| Some((f(r.metrics()?)?, r.name.clone())))
            .min_by_key(|(v, _)| *v)
    };
    let full = best(|m| m.time_to_full_ms);
    let join = best(|m| m.arrival_detect_ms);
    let leave = best(|m| m.departure_detect_ms);
    if full.is_none() && join.is_none() && leave.is_none() {
        return;
    }
    let ratio = |anchor: &Option<(i64, String)>, mine: Option<i64>| {
        let (a, _) = anchor.as_ref()?;
        // Below a millisecond is the resolution of the figures: count it as 1 ms.
        Some(*a as f64 / mine?.max(1) as f64)
    };
    for r in rows.iter_mut().filter(|r| !r.anchor) {
        let Some(m) = r.metrics() else { continue };
        r.vs_anchor = Some(VsAnchor {
            full: ratio(&full, m.time_to_full_ms),
            join: ratio(&join, m.arrival_detect_ms),
            leave: ratio(&leave, m.departure_detect_ms),
            full_anchor: full.as_ref().map(|a| a.1.clone()),
            join_anchor: join.as_ref().map(|a| a.1.clone()),
            leave_anchor: leave.as_ref().map(|a| a.1.clone()),
        });
    }
}

fn times(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 10.0 => format!("{v:.0}×"),
        Some(v) => format!("{v:.1}×"),
    }
}

/// The whole result (`--json`).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Output {
    pub scenario: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub environment: String,
    /// How the environment was built.
    pub setup: String,
    /// Agents running at the discoverers' cold start.
    pub agents: usize,
    /// Where they ran (swarm): node -> agents at cold start.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub agents_per_node: std::collections::BTreeMap<String, usize>,
    pub duration_ms: u64,
    pub started_at: String,
    pub command: String,
    pub host: HostInfo,
    pub churn: Vec<ChurnDone>,
    /// `[ms after the reference time, live agents]` (ground truth), at every change.
    pub truth_timeline: Vec<[i64; 2]>,
    pub backends: Vec<Row>,
}

fn dur(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(v) if v < 1000 => format!("{v} ms"),
        Some(v) if v < 100_000 => format!("{:.2} s", v as f64 / 1000.0),
        Some(v) => format!("{:.0} s", v as f64 / 1000.0),
    }
}

fn share(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

/// Column headers of the table (terminal and RESULTS.md).
const HEADER: [&str; 16] = [
    "backend",
    "found",
    "compl.",
    "t50",
    "t90",
    "t100",
    "dup",
    "phantom",
    "leave (graceful)",
    "leave (crash)",
    "join",
    "restart",
    "addr valid",
    "cpu",
    "peak mem",
    "vs best anchor (full/join/leave)",
];

fn cells(r: &Row) -> Vec<String> {
    let name = label(r);
    let Some(m) = r.metrics() else {
        let found = match &r.body {
            Body::Failed(f) => format!("{}/{}", f.final_found, f.expected),
            Body::Measured(_) => "-".into(),
        };
        let mut v = vec![name, found];
        v.push(format!(
            "ERROR: {}",
            r.error.as_deref().unwrap_or("could not run")
        ));
        return v;
    };
    let leave = |v: Option<i64>, any: bool| if any { dur(v) } else { "n/a".into() };
    let has = |k: super::analyze::EndKind| m.departures.iter().any(|d| d.kind == k);
    let restart = if m.restart_full_ms.is_empty() {
        "n/a".into()
    } else {
        m.restart_full_ms
            .iter()
            .map(|v| dur(*v))
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        name,
        format!("{}/{}", m.final_found, m.expected),
        share(m.completeness),
        dur(m.t50_ms),
        dur(m.t90_ms),
        dur(m.time_to_full_ms),
        m.duplicates.to_string(),
        m.phantoms.to_string(),
        leave(
            m.graceful_departure_ms,
            has(super::analyze::EndKind::Graceful),
        ),
        leave(m.crash_departure_ms, has(super::analyze::EndKind::Crash)),
        if m.arrivals.is_empty() {
            "n/a".into()
        } else {
            dur(m.arrival_detect_ms)
        },
        restart,
        m.address_validity
            .as_ref()
            .map_or("-".into(), |v| format!("{}/{}", v.valid, v.checked)),
        // USER_HZ ticks: 10 ms resolution.
        r.cpu_ms.map_or("-".into(), |c| {
            if c == 0 {
                "<10 ms".into()
            } else {
                format!("{c} ms")
            }
        }),
        r.peak_rss_kib
            .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
        match (&r.vs_anchor, r.anchor) {
            (_, true) => "(anchor)".into(),
            (None, false) => "-".into(),
            (Some(v), false) => {
                format!("{} / {} / {}", times(v.full), times(v.join), times(v.leave))
            }
        },
    ]
}

fn label(r: &Row) -> String {
    if r.baseline {
        format!("{} (baseline)", r.name)
    } else if r.anchor {
        format!("{} (anchor)", r.name)
    } else {
        r.name.clone()
    }
}

/// The table for a terminal.
pub(crate) fn table(out: &Output) -> String {
    let rows: Vec<Vec<String>> = out.backends.iter().map(cells).collect();
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for r in &rows {
        // An error row's message spans the columns after "found".
        let n = if r.len() == HEADER.len() { r.len() } else { 2 };
        for (w, c) in widths.iter_mut().zip(r).take(n) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                s.push_str(c);
            } else if i == 0 {
                s.push_str(&format!("{c:<w$}  "));
            } else {
                s.push_str(&format!("{c:>w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut s = String::new();
    s.push_str(&line(&HEADER.map(String::from)));
    s.push('\n');
    for r in &rows {
        s.push_str(&line(r));
        s.push('\n');
    }
    s
}

/// The SVG plot: live agents listed over time, one line per backend, the
/// ground truth dashed, churn events marked.
pub(crate) fn plot(out: &Output, path: &Path) -> Result<(), BoxError> {
    let end_s = out.duration_ms as f64 / 1000.0;
    let start_s = out
        .backends
        .iter()
        .map(|r| r.timeline().1 as f64 / 1000.0)
        .fold(0.0f64, f64::min);
    let ymax = out
        .truth_timeline
        .iter()
        .map(|p| p[1])
        .chain(
            out.backends
                .iter()
                .flat_map(|r| r.timeline().0.iter().map(|p| p[1])),
        )
        .max()
        .unwrap_or(1)
        .max(1);
    let ytop = (ymax as f64 * 1.12).ceil() as i64 + 1;
    let root = SVGBackend::new(path, (1240, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!(
        "{}: live agents listed over time ({})",
        out.scenario, out.environment
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .margin_right(250)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(start_s..end_s, 0i64..ytop)?;
    chart
        .configure_mesh()
        .x_desc("seconds after the discoverers' cold start")
        .y_desc("live agents listed")
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    // Lines that coincide stay visible: the first backend is drawn widest, each
    // next one narrower on top of it.
    let n = out.backends.len() as u32;
    let mut legend: Vec<(String, ShapeStyle)> = Vec::new();
    for (i, r) in out.backends.iter().enumerate() {
        let color = colors[i % colors.len()];
        let width = 2 + 2 * (n - 1 - i as u32);
        let (tl, offset) = r.timeline();
        let pts = step(tl, offset, end_s);
        let label = if r.anchor {
            format!("{} (anchor)", r.name)
        } else if r.baseline {
            format!("{} (baseline)", r.name)
        } else if r.error.is_some() {
            format!("{} (could not run)", r.name)
        } else {
            r.name.clone()
        };
        chart.draw_series(LineSeries::new(
            pts,
            ShapeStyle::from(&color).stroke_width(width),
        ))?;
        legend.push((label, ShapeStyle::from(&color).stroke_width(width.min(6))));
    }
    // Ground truth on top, dashed.
    let mut truth: Vec<(f64, i64)> = step(&out.truth_timeline, 0, end_s);
    if truth.is_empty() {
        truth.push((start_s, out.agents as i64));
    }
    chart.draw_series(DashedLineSeries::new(
        truth,
        6,
        4,
        ShapeStyle::from(&BLACK).stroke_width(1),
    ))?;
    legend.push((
        "live agents (ground truth)".into(),
        ShapeStyle::from(&BLACK).stroke_width(1),
    ));
    for c in &out.churn {
        let x = c.at_ms as f64 / 1000.0;
        let grey = RGBColor(120, 120, 120);
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x, 0), (x, ytop)],
            grey,
        )))?;
        let text = match c.action.as_str() {
            "restart" => format!("restart {}", c.backend.as_deref().unwrap_or("discoverers")),
            a => format!("{a} {}", c.count),
        };
        chart.draw_series(std::iter::once(Text::new(
            text,
            (x, ytop - ((ytop as f64) * 0.03).ceil() as i64),
            ("sans-serif", 13).into_font().color(&grey),
        )))?;
    }
    // The legend, right of the plotting area: it hides no line.
    let x0 = 1240 - 240;
    for (i, (label, style)) in legend.into_iter().enumerate() {
        let y = 60 + 24 * i as i32;
        root.draw(&PathElement::new(vec![(x0, y), (x0 + 28, y)], style))?;
        root.draw(&Text::new(
            label,
            (x0 + 36, y - 7),
            ("sans-serif", 14).into_font(),
        ))?;
    }
    root.present()?;
    Ok(())
}

/// A step line from change points `[ms, value]` shifted by `offset_ms`, to `end_s`.
fn step(points: &[[i64; 2]], offset_ms: i64, end_s: f64) -> Vec<(f64, i64)> {
    let mut out = Vec::new();
    let mut prev: Option<i64> = None;
    for p in points {
        let x = (p[0] + offset_ms) as f64 / 1000.0;
        if x > end_s {
            break;
        }
        if let Some(v) = prev {
            out.push((x, v));
        }
        out.push((x, p[1]));
        prev = Some(p[1]);
    }
    if let Some(v) = prev {
        out.push((end_s, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lines_hold_their_value_until_the_next_change() {
        let s = step(&[[0, 0], [100, 5], [2000, 3]], 0, 3.0);
        assert_eq!(
            s,
            vec![(0.0, 0), (0.1, 0), (0.1, 5), (2.0, 5), (2.0, 3), (3.0, 3)]
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(dur(Some(45)), "45 ms");
        assert_eq!(dur(Some(1500)), "1.50 s");
        assert_eq!(dur(None), "-");
    }
}

#[cfg(test)]
mod plot_tests {
    use super::*;

    fn output() -> Output {
        let measured = Metrics {
            final_found: 3,
            expected: 3,
            completeness: Some(1.0),
            timeline: vec![[0, 0], [20, 3], [5000, 2], [5100, 3]],
            ..Default::default()
        };
        Output {
            scenario: "t".into(),
            description: None,
            environment: "local".into(),
            setup: "test".into(),
            agents: 3,
            agents_per_node: Default::default(),
            duration_ms: 10_000,
            started_at: String::new(),
            command: String::new(),
            host: HostInfo::here(),
            churn: vec![ChurnDone {
                at_ms: 5000,
                action: "kill".into(),
                count: 1,
                agents: vec!["a".into()],
                backend: None,
                error: None,
            }],
            truth_timeline: vec![[-5, 3], [5000, 2], [5090, 3]],
            backends: vec![
                Row {
                    name: "nats".into(),
                    kind: "nats".into(),
                    baseline: false,
                    anchor: false,
                    vs_anchor: None,
                    note: None,
                    error: None,
                    body: Body::Measured(Box::new(measured)),
                    cpu_ms: Some(0),
                    peak_rss_kib: Some(1024),
                },
                Row {
                    name: "broken".into(),
                    kind: "swarm".into(),
                    baseline: false,
                    anchor: false,
                    vs_anchor: None,
                    note: None,
                    error: Some("no socket".into()),
                    body: Body::Failed(Failed {
                        final_found: 0,
                        expected: 3,
                        timeline: vec![],
                        phantom_entries: vec![],
                        health: HealthInfo::default(),
                        notes: vec![],
                    }),
                    cpu_ms: None,
                    peak_rss_kib: None,
                },
            ],
        }
    }

    #[test]
    fn plots_and_tabulates_measured_and_failed_rows() {
        let out = output();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.svg");
        plot(&out, &p).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(
            svg.contains("nats")
                && svg.contains("broken (could not run)")
                && svg.contains("kill 1")
        );
        let t = table(&out);
        assert!(t.contains("<10 ms"), "{t}");
        assert!(t.contains("ERROR: no socket"), "{t}");
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["backends"][0]["completeness"], 1.0);
        assert_eq!(json["backends"][1]["error"], "no socket");
        assert!(json["backends"][1].get("completeness").is_none());
        assert_eq!(json["backends"][1]["final_found"], 0);
    }
}

#[cfg(test)]
mod anchor_tests {
    use super::*;

    fn row(name: &str, anchor: bool, full: Option<i64>, join: Option<i64>) -> Row {
        Row {
            name: name.into(),
            kind: "k".into(),
            baseline: false,
            anchor,
            vs_anchor: None,
            note: None,
            error: None,
            body: Body::Measured(Box::new(Metrics {
                time_to_full_ms: full,
                arrival_detect_ms: join,
                ..Default::default()
            })),
            cpu_ms: None,
            peak_rss_kib: None,
        }
    }

    #[test]
    fn ratios_are_to_the_best_anchor_at_each_figure() {
        let mut rows = vec![
            row("a1", true, Some(6000), Some(60_000)),
            row("a2", true, Some(5400), None),
            row("rc", false, Some(340), Some(2600)),
            row("slow", false, None, Some(0)),
        ];
        add_anchor_ratios(&mut rows);
        assert!(rows[0].vs_anchor.is_none() && rows[1].vs_anchor.is_none());
        let rc = rows[2].vs_anchor.clone().unwrap();
        assert!((rc.full.unwrap() - 5400.0 / 340.0).abs() < 1e-9);
        assert_eq!(rc.full_anchor.as_deref(), Some("a2"));
        assert!((rc.join.unwrap() - 60_000.0 / 2600.0).abs() < 1e-9);
        assert_eq!(rc.join_anchor.as_deref(), Some("a1"));
        assert_eq!(rc.leave, None);
        let slow = rows[3].vs_anchor.clone().unwrap();
        assert_eq!(slow.full, None);
        // 0 ms counts as 1 ms: no division by zero.
        assert_eq!(slow.join, Some(60_000.0));
        assert_eq!(times(rc.full), "16×");
        assert_eq!(times(Some(0.5)), "0.5×");
    }

    #[test]
    fn no_anchor_no_ratio() {
        let mut rows = vec![row("rc", false, Some(340), None)];
        add_anchor_ratios(&mut rows);
        assert!(rows[0].vs_anchor.is_none());
    }
}
