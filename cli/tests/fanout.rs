//! `/v1/watch` at scale, through the real daemon: many SSE clients share one
//! encoding of the snapshot and of each event, so the daemon's memory does
//! not grow with a copy of the roster per client. Measured from
//! `/proc/<pid>/status` of the `rollcall run` process.
//!
//! CI runs a small case (20k peers, 200 clients). The full figure recorded in
//! BENCHMARKS.md (100k peers, 1000 clients) is ignored by default:
//!
//! ```sh
//! cargo test -p rollcall-cli --all-features --locked --test fanout -- --ignored --nocapture
//! ```
//!
//! `ROLLCALL_FANOUT_BIN=<path>` runs another `rollcall` binary (e.g. an older
//! build, to compare); `ROLLCALL_FANOUT_PEERS` / `_WATCHERS` change the
//! ignored test's sizes. The figures are printed before anything is asserted.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use support::*;

/// Peer JSON starts with its uid: one occurrence per peer in a roster.
const PEER_MARK: &[u8] = b"{\"uid\":";
/// Longest non-snapshot SSE line a test client keeps.
const MAX_LINE: usize = 1 << 20;

fn peers_json(n: usize, extra: &[(&str, &str)]) -> String {
    let mut s = String::with_capacity(n * 90);
    s.push_str("{\"peers\": [\n");
    for i in 0..n {
        let status = if i == 0 { extra_status(extra) } else { "idle" };
        s.push_str(&format!(
            "{{\"id\": \"peer-{i:06}\", \"status\": \"{status}\", \"addrs\": [\"/ip4/10.{}.{}.{}/tcp/9000\"]}},\n",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        ));
    }
    for (id, status) in extra {
        if *id != "peer-000000" {
            s.push_str(&format!(
                "{{\"id\": \"{id}\", \"status\": \"{status}\"}},\n"
            ));
        }
    }
    // JSON allows no trailing comma.
    if s.ends_with(",\n") {
        s.truncate(s.len() - 2);
    }
    s.push_str("\n]}\n");
    s
}

fn extra_status<'a>(extra: &[(&str, &'a str)]) -> &'a str {
    extra
        .iter()
        .find(|(id, _)| *id == "peer-000000")
        .map(|(_, s)| *s)
        .unwrap_or("idle")
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Index of the first `\n`. `read_until` finds it with std's memchr,
/// which is optimised even in this debug test binary (a byte loop is not).
fn newline(hay: &[u8], scratch: &mut Vec<u8>) -> Option<usize> {
    use std::io::BufRead;
    scratch.clear();
    let mut r = hay;
    let n = r.read_until(b'\n', scratch).unwrap_or(0);
    (n > 0 && scratch.last() == Some(&b'\n')).then(|| n - 1)
}

/// What one SSE client saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    snapshot_version: Option<u64>,
    snapshot_peers: usize,
    snapshot_bytes: usize,
    /// (event name, the event's JSON) of every later event.
    events: Vec<(String, serde_json::Value)>,
    snapshot_done_at: Option<Instant>,
}

/// Reads an SSE stream without keeping the snapshot: its data line is only
/// counted (peers, bytes); other events are parsed.
#[derive(Default)]
struct Reader {
    /// Count the snapshot's peers (one reference client does; the others
    /// compare the snapshot's size: counting in this unoptimised test
    /// binary would make the clients, not the daemon, the bottleneck).
    count: bool,
    scratch: Vec<u8>,
    seen: Seen,
    name: String,
    line: Vec<u8>,
    in_snapshot_data: bool,
    tail: Vec<u8>,
}

impl Reader {
    fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if self.in_snapshot_data {
                let end = newline(chunk, &mut self.scratch);
                let part = &chunk[..end.unwrap_or(chunk.len())];
                self.count_peers(part);
                self.seen.snapshot_bytes += part.len();
                match end {
                    Some(e) => {
                        self.in_snapshot_data = false;
                        chunk = &chunk[e + 1..];
                    }
                    None => return,
                }
                continue;
            }
            let end = newline(chunk, &mut self.scratch);
            let part = &chunk[..end.unwrap_or(chunk.len())];
            self.line.extend_from_slice(part);
            assert!(self.line.len() <= MAX_LINE, "an event line over 1 MiB");
            if self.name == "snapshot" && self.line.starts_with(b"data: ") {
                // The rest of this line is the roster: count, don't keep.
                let rest = self.line.split_off(6);
                self.line.clear();
                self.in_snapshot_data = true;
                self.tail.clear();
                self.count_peers(&rest);
                self.seen.snapshot_bytes += rest.len();
                if let Some(e) = end {
                    self.in_snapshot_data = false;
                    chunk = &chunk[e + 1..];
                } else {
                    return;
                }
                continue;
            }
            let Some(e) = end else { return };
            chunk = &chunk[e + 1..];
            let line = std::mem::take(&mut self.line);
            self.line_done(&line);
        }
    }

    fn count_peers(&mut self, part: &[u8]) {
        if !self.count {
            return;
        }
        // Matches that straddle two chunks: keep the last bytes of the previous one.
        let mut hay = std::mem::take(&mut self.tail);
        hay.extend_from_slice(part);
        self.seen.snapshot_peers += hay
            .windows(PEER_MARK.len())
            .filter(|w| *w == PEER_MARK)
            .count();
        let keep = hay.len().min(PEER_MARK.len() - 1);
        self.tail = hay[hay.len() - keep..].to_vec();
    }

    fn line_done(&mut self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        if line.is_empty() {
            if self.name == "snapshot" {
                self.seen.snapshot_done_at = Some(Instant::now());
            }
            self.name.clear();
        } else if let Some(n) = line.strip_prefix("event: ") {
            self.name = n.to_owned();
        } else if let Some(id) = line.strip_prefix("id: ") {
            if self.name == "snapshot" {
                self.seen.snapshot_version = id.parse().ok();
                self.seen.snapshot_peers = 0;
                self.seen.snapshot_bytes = 0;
            }
        } else if let Some(d) = line.strip_prefix("data: ") {
            let v = serde_json::from_str(d).unwrap_or(serde_json::Value::String(d.to_owned()));
            self.seen.events.push((self.name.clone(), v));
        }
    }
}

#[derive(Debug)]
struct Figures {
    peers: usize,
    watchers: usize,
    rss_before_kib: u64,
    rss_with_watchers_kib: u64,
    peak_kib: u64,
    all_snapshots: Duration,
    snapshot_bytes: usize,
    snapshot_encodes: Option<f64>,
}

async fn measure(peers: usize, watchers: usize) -> (Figures, Vec<Seen>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("peers.json");
    std::fs::write(&file, peers_json(peers, &[])).unwrap();
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[registry]\nexclude_addresses = []\n[sources.file]\ntype = \"static\"\nfile = \"{}\"\nwatch_interval = \"200ms\"\nmax_file_bytes = 100_000_000\n",
            file.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let bin = std::env::var("ROLLCALL_FANOUT_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_rollcall").to_owned());
    let mut cfg_arg = cfg.clone();
    if std::env::var_os("ROLLCALL_FANOUT_BIN").is_some() {
        // An older binary may not know `max_file_bytes` (it had a fixed 8 MiB cap).
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("max_file_bytes = 100_000_000\n", "");
        cfg_arg = dir.path().join("run-old.toml");
        std::fs::write(&cfg_arg, text).unwrap();
    }
    let child = std::process::Command::new(&bin)
        .args(["run", "--listen", &format!("127.0.0.1:{port}"), "-c"])
        .arg(&cfg_arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _daemon = Killed(vec![child]);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let metrics = || {
        let http = http.clone();
        let url = format!("{base}/metrics");
        async move { http.get(url).send().await.ok()?.text().await.ok() }
    };
    let want = format!("rollcall_roster_peers {peers}");
    eventually(60, "the daemon to load every peer", || {
        let m = metrics();
        let want = want.clone();
        async move { m.await.is_some_and(|t| t.lines().any(|l| l == want)) }
    })
    .await;
    // Let the load's transient allocations settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_before_kib, _) = rss_kib(pid);

    let start = Instant::now();
    let mut clients = Vec::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(watchers.max(1));
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    for w in 0..watchers {
        let url = format!("{base}/v1/watch");
        let http = http.clone();
        let done_tx = done_tx.clone();
        let mut stop = stop_tx.subscribe();
        clients.push(tokio::spawn(async move {
            let resp = http.get(url).send().await.expect("watch request");
            assert_eq!(resp.headers()["content-type"], "text/event-stream");
            let mut body = resp.bytes_stream();
            let mut r = Reader {
                count: w == 0,
                ..Default::default()
            };
            let mut told = false;
            loop {
                tokio::select! {
                    _ = stop.recv() => break,
                    chunk = body.next() => match chunk {
                        Some(Ok(c)) => r.feed(&c),
                        _ => break,
                    },
                }
                if !told && r.seen.snapshot_done_at.is_some() {
                    told = true;
                    let _ = done_tx.send(()).await;
                }
            }
            r.seen
        }));
    }
    drop(done_tx);
    let mut peak_sampled = 0;
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while got < watchers {
        match tokio::time::timeout(Duration::from_millis(50), done_rx.recv()).await {
            Ok(Some(())) => got += 1,
            Ok(None) => break,
            Err(_) => {}
        }
        peak_sampled = peak_sampled.max(rss_kib(pid).0);
        assert!(
            Instant::now() < deadline,
            "{got} of {watchers} watchers got the snapshot in 600 s"
        );
    }
    let all_snapshots = start.elapsed();
    let (rss_with_watchers_kib, peak_kib) = rss_kib(pid);
    let snapshot_encodes = metrics()
        .await
        .and_then(|t| metric(&t, "rollcall_api_snapshot_encodes_total"));

    // A later change reaches every watcher: one peer changes, one joins.
    std::fs::write(
        &file,
        peers_json(peers, &[("peer-000000", "working"), ("newcomer", "idle")]),
    )
    .unwrap();
    let roster_moved = Instant::now() + Duration::from_secs(60);
    loop {
        let m = metrics().await.unwrap_or_default();
        if metric(&m, "rollcall_roster_peers") == Some((peers + 1) as f64) {
            break;
        }
        assert!(
            Instant::now() < roster_moved,
            "the file change never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give the streams a moment to deliver, then stop the clients.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(());
    let mut seen = Vec::new();
    for c in clients {
        seen.push(c.await.unwrap());
    }
    let figures = Figures {
        peers,
        watchers,
        rss_before_kib,
        rss_with_watchers_kib: rss_with_watchers_kib.max(peak_sampled),
        peak_kib,
        all_snapshots,
        snapshot_bytes: seen.first().map(|s| s.snapshot_bytes).unwrap_or(0),
        snapshot_encodes,
    };
    println!(
        "FANOUT peers={} watchers={} rss_before={:.1}MiB rss_with_watchers(max sampled)={:.1}MiB vmhwm={:.1}MiB all_snapshots_in={:.2}s snapshot={:.1}MiB snapshot_encodes={:?} bin={bin}",
        figures.peers,
        figures.watchers,
        figures.rss_before_kib as f64 / 1024.0,
        figures.rss_with_watchers_kib as f64 / 1024.0,
        figures.peak_kib as f64 / 1024.0,
        figures.all_snapshots.as_secs_f64(),
        figures.snapshot_bytes as f64 / (1024.0 * 1024.0),
        figures.snapshot_encodes,
    );
    (figures, seen)
}

/// Every watcher got the whole snapshot, then the change and the join.
fn check_streams(peers: usize, seen: &[Seen]) {
    let reference = &seen[0];
    assert_eq!(
        reference.snapshot_peers, peers,
        "peers in the reference client's snapshot"
    );
    for (i, s) in seen.iter().enumerate() {
        assert!(s.snapshot_version.is_some(), "watcher {i} got no snapshot");
        assert!(
            s.snapshot_done_at.is_some(),
            "watcher {i}: its snapshot never ended"
        );
        if s.snapshot_version == reference.snapshot_version {
            assert_eq!(
                s.snapshot_bytes, reference.snapshot_bytes,
                "watcher {i}: snapshot size"
            );
        }
        let has = |name: &str, id: &str| {
            s.events
                .iter()
                .any(|(n, v)| n == name && v["peer"]["id"] == id)
        };
        assert!(
            has("joined", "newcomer"),
            "watcher {i}: no joined newcomer: {:?}",
            s.events
        );
        assert!(
            has("updated", "peer-000000"),
            "watcher {i}: no updated peer-000000: {:?}",
            s.events
        );
        for (n, v) in &s.events {
            assert!(
                v["version"].as_u64() > s.snapshot_version,
                "watcher {i}: {n} at version {} is not after its snapshot {:?}",
                v["version"],
                s.snapshot_version
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_watchers_share_one_snapshot_of_twenty_thousand_peers() {
    let (peers, watchers) = (20_000, 200);
    let (f, seen) = measure(peers, watchers).await;
    check_streams(peers, &seen);
    // One copy per watcher would be 200 × the snapshot (about 4 MiB each):
    // 800 MiB. Shared, the watchers cost their connections and a few copies.
    let growth = f.rss_with_watchers_kib.saturating_sub(f.rss_before_kib);
    let one_copy_kib = (f.snapshot_bytes / 1024) as u64;
    assert!(
        growth < 20 * one_copy_kib,
        "RSS grew by {growth} KiB with {watchers} watchers: more than 20 snapshot copies ({one_copy_kib} KiB each)"
    );
    assert!(
        f.peak_kib < 1024 * 1024,
        "peak RSS {} KiB over 1 GiB",
        f.peak_kib
    );
    // The snapshot was encoded about once, not once per watcher.
    let encodes = f
        .snapshot_encodes
        .expect("rollcall_api_snapshot_encodes_total is exported");
    assert!(
        encodes <= 3.0,
        "the snapshot was encoded {encodes} times for {watchers} watchers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the full measurement for BENCHMARKS.md: 100k peers, 1000 watchers (minutes)"]
async fn a_thousand_watchers_of_a_hundred_thousand_peers_within_one_gib() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    // Other sizes (e.g. to measure an older binary that copies per watcher):
    let peers = env("ROLLCALL_FANOUT_PEERS", 100_000);
    let watchers = env("ROLLCALL_FANOUT_WATCHERS", 1000);
    let (f, seen) = measure(peers, watchers).await;
    check_streams(peers, &seen);
    assert!(
        f.peak_kib < 1024 * 1024,
        "peak RSS {} KiB over 1 GiB",
        f.peak_kib
    );
}
