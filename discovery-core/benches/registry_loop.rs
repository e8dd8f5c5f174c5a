//! The cold load through the daemon's own path, not the merger alone: three
//! sources hand their sightings to `EventSender`s, the registry's merge
//! loop takes them from the sources in turn, up to 256 at a time, and
//! publishes each batch (events broadcast, counters, the peers gauge). All
//! of it on one thread (a current-thread runtime). Timed from `start` until
//! every source has synced, which it says after its last sighting: the
//! roster then holds every peer with its three sources (checked, untimed).
//!
//! Two orders: `cold_load/*` has the sources send at once, so the loop's
//! turns bring each peer's three sightings one after another (the order of
//! the `registry` bench too); `cold_load_by_source/*` has each source start
//! once the one before it has handed over all of its sightings, as when a
//! daemon's sources come up one after another: each peer's view is then
//! written once per source, after watchers were sent the earlier one.
//!
//! Run: `cargo bench -p discovery-core --bench registry_loop`.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use tokio::sync::watch;

use discovery_core::{
    DiscoverySource, Observation, RegistryBuilder, RegistryConfig, SourceContext, SourceError,
    SourceOptions,
};

#[allow(dead_code)] // the shared fleet; this bench uses part of it
mod fleet;
use fleet::{observations, SOURCES};

/// The order in which the sources send.
#[derive(Clone, Copy)]
enum Order {
    /// All at once: the loop's turns interleave them peer by peer.
    Together,
    /// One source after another.
    BySource,
}

/// A source that sends what it was given once, then says it synced. With
/// `turn`, it starts when the turn counter reaches `me` and moves it on once
/// it has handed over its last sighting.
struct Feed {
    sightings: Mutex<Option<Vec<Observation>>>,
    turn: Option<(watch::Sender<usize>, usize)>,
}

#[async_trait]
impl DiscoverySource for Feed {
    async fn run(&self, ctx: SourceContext) -> Result<(), SourceError> {
        if let Some((turn, me)) = &self.turn {
            let _ = turn.subscribe().wait_for(|t| t >= me).await;
        }
        let sightings = self.sightings.lock().ok().and_then(|mut s| s.take());
        for o in sightings.into_iter().flatten() {
            if ctx.events.upsert(o).await.is_err() {
                return Ok(());
            }
        }
        if let Some((turn, me)) = &self.turn {
            turn.send_replace(me + 1);
        }
        let _ = ctx.events.synced().await;
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

/// A registry fed `peers` x 3 sightings, not started.
fn registry(peers: usize, order: Order) -> RegistryBuilder {
    let mut by_source: Vec<Vec<Observation>> = vec![Vec::new(); SOURCES];
    for (s, o) in observations(peers, "idle") {
        by_source[s as usize].push(o);
    }
    let turn = watch::Sender::new(0);
    let mut b = RegistryBuilder::new(RegistryConfig::default());
    for (i, sightings) in by_source.into_iter().enumerate() {
        b = b.source(
            ["swarm", "nats", "mdns"][i],
            SourceOptions {
                priority: 30 - 10 * i as i32,
                ..Default::default()
            },
            Feed {
                sightings: Mutex::new(Some(sightings)),
                turn: match order {
                    Order::Together => None,
                    Order::BySource => Some((turn.clone(), i)),
                },
            },
        );
    }
    b
}

/// One cold load on a current-thread runtime: (wall time, the thread's CPU time).
fn cold_load(peers: usize, order: Order) -> (Duration, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let builder = registry(peers, order);
    rt.block_on(async move {
        let cpu0 = thread_cpu();
        let t0 = std::time::Instant::now();
        let reg = builder.start().expect("registry starts");
        assert!(
            reg.wait_first_sync(Duration::from_secs(120)).await,
            "every source synced"
        );
        let (wall, cpu) = (t0.elapsed(), thread_cpu().saturating_sub(cpu0));
        let roster = reg.snapshot();
        assert_eq!(roster.peers.len(), peers, "one peer per three sightings");
        assert!(roster.peers.iter().all(|p| p.sources.len() == SOURCES));
        reg.shutdown().await;
        (wall, cpu)
    })
}

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`, exact).
fn thread_cpu() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

const ORDERS: [(Order, &str); 2] = [
    (Order::Together, "cold_load"),
    (Order::BySource, "cold_load_by_source"),
];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("daemon_loop");
    for (peers, name) in [(1_000, "1k"), (10_000, "10k")] {
        g.throughput(Throughput::Elements((peers * SOURCES) as u64));
        g.sample_size(20);
        g.measurement_time(Duration::from_secs(10));
        for (order, what) in ORDERS {
            g.bench_function(
                BenchmarkId::new(what, format!("{name}_peers_x3_sources")),
                |b| b.iter_custom(|iters| (0..iters).map(|_| cold_load(peers, order).0).sum()),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    // The CPU time of the same path, median of 11 (the machine is shared).
    for peers in [1_000, 10_000] {
        for (order, what) in ORDERS {
            let mut cpu: Vec<Duration> = (0..11).map(|_| cold_load(peers, order).1).collect();
            cpu.sort();
            let m = cpu[cpu.len() / 2];
            println!(
                "cpu: daemon loop, {peers} peers x {SOURCES} sources, median of 11: {what} {:.1} ms = {:.2} M obs/s",
                m.as_secs_f64() * 1e3,
                (peers * SOURCES) as f64 / m.as_secs_f64() / 1e6
            );
        }
    }
    if std::env::var_os("ROLLCALL_BENCH_CPU_ONLY").is_some() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
