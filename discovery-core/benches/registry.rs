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
//! Under a profiler, `ROLLCALL_BENCH_CRITERION_ONLY=1` skips the CPU-time pass, e.g. `... --bench registry -- --bench cold_load/10k --profile-time 8`;
//! `ROLLCALL_BENCH_CPU_ONLY=1` runs that pass alone (medians of thread CPU time).

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

/// Nanoseconds this thread has run on a CPU (`CLOCK_THREAD_CPUTIME_ID`,
/// exact to the nanosecond): unlike wall time, it does not count the time
/// other processes had the core. (The schedstat file counted in 4 ms ticks.)
fn thread_cpu_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// CPU time of `f`.
fn cpu<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let t0 = thread_cpu_ns();
    let out = f();
    (thread_cpu_ns().saturating_sub(t0), out)
}

/// Median CPU time of `runs` cold loads (events taken after each upsert,
/// and once per batch), renewals and status changes, printed as
/// observations per CPU-second (the machine is shared and noisy).
fn cpu_throughput(peers: usize, runs: usize) {
    let n = (peers * SOURCES) as f64;
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (mut cold, mut cold_batched, mut renew, mut change) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let now = tokio::time::Instant::now();
    let wall = SystemTime::now();
    for run in 0..runs {
        let obs = observations(peers, "idle");
        let (t, m) = cpu(|| {
            let mut m = Merger::new(AddressPolicy::default(), SOURCES);
            in_batches(&mut m, obs);
            m
        });
        cold_batched.push(t);
        drop(m);
        let obs = observations(peers, "idle");
        let (t, mut m) = cpu(|| load(obs));
        cold.push(t);
        let obs = observations(peers, "idle");
        let (t, ()) = cpu(|| {
            for (s, o) in obs {
                m.upsert_at(s, o, now, wall);
            }
        });
        renew.push(t);
        let obs = observations(peers, if run % 2 == 0 { "working" } else { "idle" });
        let (t, ()) = cpu(|| {
            for (s, o) in obs {
                m.upsert_at(s, o, now, wall);
            }
        });
        change.push(t);
        drop(m);
    }
    let rate = |ns: u64| {
        format!(
            "{:.1} ms = {:.2} M obs/s",
            ns as f64 / 1e6,
            n / (ns as f64 / 1e9) / 1e6
        )
    };
    println!(
        "cpu: {peers} peers x {SOURCES} sources, median of {runs}: cold load {} (batched {}), renewal {}, status change {}",
        rate(median(cold)),
        rate(median(cold_batched)),
        rate(median(renew)),
        rate(median(change))
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
    // `ROLLCALL_BENCH_CPU_ONLY=1`: the CPU-time pass alone.
    if std::env::var_os("ROLLCALL_BENCH_CPU_ONLY").is_some() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
