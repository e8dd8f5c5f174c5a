#[path = "../benches/fleet/mod.rs"]
mod fleet;
use std::time::{Instant as StdInstant, SystemTime};
#[inline(never)]
fn renew_all(m: &mut discovery_core::bench::Merger, obs: Vec<(u16, discovery_core::Observation)>, now: tokio::time::Instant, wall: SystemTime) {
    for (s, o) in obs {
        m.upsert_at(s, o, now, wall);
    }
}
fn main() {
    let peers: usize = std::env::var("P").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let now = tokio::time::Instant::now();
    let wall = SystemTime::now();
    let (mut ts, mut cs) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        let mut pre: Vec<_> = (0..2).map(|_| fleet::observations(peers, "idle")).collect();
        let obs = fleet::observations(peers, "idle");
        let t = StdInstant::now();
        let mut m = fleet::load(obs);
        cs.push(t.elapsed().as_secs_f64() * 1e3);
        for _ in 0..2 {
            let obs = pre.pop().unwrap();
            let t = StdInstant::now();
            renew_all(&mut m, obs, now, wall);
            ts.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    cs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("cold median {:.2} min {:.2} | renewal median {:.2} ms min {:.2}", cs[cs.len() / 2], cs[0], ts[ts.len() / 2], ts[0]);
}
