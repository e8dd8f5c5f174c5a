//! Merge throughput: 1k, 10k and 100k peers, each seen by 3 sources, on the
//! system allocator (memory per peer: the `registry_memory` bench).
//!
//! Three shapes of input: `merge/*` hands the registry every observation made
//! beforehand (30k at 10k peers, cold in memory, freed in bulk) and takes the
//! events after each; `streamed/*` makes them 64 at a time just before they
//! are handed over, as a backend decoding messages does (only the upserts
//! are timed); `batched/*` is `merge/*` with the events taken once per 256
//! upserts, as the daemon's merge loop publishes a batch.
//!
//! Run: `cargo bench -p discovery-core --bench registry` (one size: add `-- /10k`).
//! Under a profiler, `ROLLCALL_BENCH_CRITERION_ONLY=1` skips the CPU-time pass, e.g. `... --bench registry -- --bench cold_load/10k --profile-time 8`.

use std::time::{Duration, SystemTime};

use criterion::measurement::WallTime;
use criterion::{criterion_group, BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use discovery_core::bench::Merger;
use discovery_core::AddressPolicy;

mod fleet;
use fleet::{load, observations, observations_range, SIZES, SOURCES};

/// Sets the group's throughput and sampling for `peers` and names the case.
fn size_group(g: &mut BenchmarkGroup<'_, WallTime>, peers: usize, name: &str) -> String {
    g.throughput(Throughput::Elements((peers * SOURCES) as u64));
    g.sample_size(if peers >= 100_000 { 10 } else { 20 });
    g.measurement_time(Duration::from_secs(if peers >= 100_000 { 20 } else { 8 }));
    format!("{name}_peers_x3_sources")
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("merge");
    for (peers, name) in SIZES {
        let id = size_group(&mut g, peers, name);
        g.bench_function(BenchmarkId::new("cold_load", &id), |b| {
            b.iter_batched(
                || observations(peers, "idle"),
                load,
                BatchSize::PerIteration,
            )
        });
        g.bench_function(BenchmarkId::new("renewal", &id), |b| {
            let mut m = load(observations(peers, "idle"));
            let now = tokio::time::Instant::now();
            let wall = SystemTime::now();
            b.iter_batched(
                || observations(peers, "idle"),
                |obs| {
                    for (s, o) in obs {
                        m.upsert_at(s, o, now, wall);
                    }
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function(BenchmarkId::new("status_change", &id), |b| {
            let mut m = load(observations(peers, "idle"));
            let now = tokio::time::Instant::now();
            let wall = SystemTime::now();
            let mut flip = false;
            b.iter_batched(
                || {
                    flip = !flip;
                    observations(peers, if flip { "working" } else { "idle" })
                },
                |obs| {
                    for (s, o) in obs {
                        m.upsert_at(s, o, now, wall);
                    }
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
    let mut g = c.benchmark_group("batched");
    for (peers, name) in SIZES {
        let id = size_group(&mut g, peers, name);
        g.bench_function(BenchmarkId::new("cold_load", &id), |b| {
            b.iter_batched(
                || observations(peers, "idle"),
                |obs| {
                    let mut m = Merger::new(AddressPolicy::default(), SOURCES);
                    in_batches(&mut m, obs);
                    m
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function(BenchmarkId::new("status_change", &id), |b| {
            let mut m = load(observations(peers, "idle"));
            let mut flip = false;
            b.iter_batched(
                || {
                    flip = !flip;
                    observations(peers, if flip { "working" } else { "idle" })
                },
                |obs| in_batches(&mut m, obs),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
    let mut g = c.benchmark_group("streamed");
    for (peers, name) in SIZES {
        let id = size_group(&mut g, peers, name);
        g.bench_function(BenchmarkId::new("cold_load", &id), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut m = Merger::new(AddressPolicy::default(), SOURCES);
                    total += streamed(&mut m, peers, "idle");
                }
                total
            })
        });
        g.bench_function(BenchmarkId::new("renewal", &id), |b| {
            let mut m = load(observations(peers, "idle"));
            b.iter_custom(|iters| (0..iters).map(|_| streamed(&mut m, peers, "idle")).sum())
        });
        g.bench_function(BenchmarkId::new("status_change", &id), |b| {
            let mut m = load(observations(peers, "idle"));
            let mut flip = false;
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        flip = !flip;
                        streamed(&mut m, peers, if flip { "working" } else { "idle" })
                    })
                    .sum()
            })
        });
    }
    g.finish();
}

/// The merge loop's batch: events are published once per this many.
const MERGE_BATCH: usize = 256;

/// Upserts `obs`, taking the events once per `MERGE_BATCH` (and at the end).
fn in_batches(m: &mut Merger, obs: Vec<(u16, discovery_core::Observation)>) {
    let now = tokio::time::Instant::now();
    let wall = SystemTime::now();
    for (i, (s, o)) in obs.into_iter().enumerate() {
        m.apply_at(s, o, now, wall);
        if (i + 1) % MERGE_BATCH == 0 {
            m.drain();
        }
    }
    m.drain();
}

/// Feeds `peers` x 3 observations as a backend would: made just before they
/// are handed over (64 at a time, untimed), then upserted (timed).
fn streamed(m: &mut Merger, peers: usize, status: &str) -> Duration {
    let now = tokio::time::Instant::now();
    let wall = SystemTime::now();
    let mut total = Duration::ZERO;
    let mut chunk = Vec::with_capacity(64 * SOURCES);
    for start in (0..peers).step_by(64) {
        chunk.extend(observations_range(start, (start + 64).min(peers), status));
        let t = std::time::Instant::now();
        for (s, o) in chunk.drain(..) {
            m.upsert_at(s, o, now, wall);
        }
        total += t.elapsed();
    }
    total
}

/// Nanoseconds this thread has run on a CPU (Linux schedstat): unlike wall
/// time, it does not count the time other processes had the core.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Median CPU time of `runs` cold loads, renewals and status changes,
/// printed as observations per CPU-second (the machine is shared and noisy).
fn cpu_throughput(peers: usize, runs: usize) {
    let n = (peers * SOURCES) as f64;
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (mut cold, mut renew, mut change) = (Vec::new(), Vec::new(), Vec::new());
    let now = tokio::time::Instant::now();
    let wall = SystemTime::now();
    for run in 0..runs {
        let obs = observations(peers, "idle");
        let Some(t0) = thread_cpu_ns() else { return };
        let mut m = load(obs);
        cold.push(thread_cpu_ns().unwrap_or(t0) - t0);
        let obs = observations(peers, "idle");
        let t0 = thread_cpu_ns().unwrap_or(0);
        for (s, o) in obs {
            m.upsert_at(s, o, now, wall);
        }
        renew.push(thread_cpu_ns().unwrap_or(t0) - t0);
        let obs = observations(peers, if run % 2 == 0 { "working" } else { "idle" });
        let t0 = thread_cpu_ns().unwrap_or(0);
        for (s, o) in obs {
            m.upsert_at(s, o, now, wall);
        }
        change.push(thread_cpu_ns().unwrap_or(t0) - t0);
        drop(m);
    }
    // The thread clock ticks coarsely on some kernels (4 ms here): a
    // median of zero ticks says so instead of an infinite rate.
    let rate = |ns: u64| match ns {
        0 => "under one clock tick".to_string(),
        ns => format!(
            "{:.1} ms = {:.0} obs/s",
            ns as f64 / 1e6,
            n / (ns as f64 / 1e9)
        ),
    };
    let (c, r, x) = (median(cold), median(renew), median(change));
    println!(
        "cpu: {peers} peers x {SOURCES} sources, median of {runs}: cold load {}, renewal {}, status change {}",
        rate(c),
        rate(r),
        rate(x)
    );
}

criterion_group!(benches, bench);

fn main() {
    // `ROLLCALL_BENCH_CRITERION_ONLY=1`: criterion's cases alone (for a profiler).
    if std::env::var_os("ROLLCALL_BENCH_CRITERION_ONLY").is_some() {
        benches();
        Criterion::default().configure_from_args().final_summary();
        return;
    }
    for (peers, _) in SIZES {
        cpu_throughput(peers, if peers >= 100_000 { 5 } else { 11 });
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
