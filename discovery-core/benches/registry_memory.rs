//! Memory per peer after a cold load of 1k, 10k and 100k peers, each seen by
//! 3 sources (the `registry` bench's fleet). A counting allocator measures
//! everything live since before the observations were made: the strings the
//! registry keeps from them count, what it frees of them nets out.
//!
//! Run: `cargo bench -p discovery-core --bench registry_memory`.

mod fleet;
use fleet::{load, observations, SIZES, SOURCES};

/// The system allocator, counting the bytes asked for and not given back
/// (reallocations included): what is live, not the allocator's overhead.
/// Its own binary: the counter's atomic adds would slow the timed bench.
#[global_allocator]
static GLOBAL: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn main() {
    for (peers, _) in SIZES {
        let before = GLOBAL.allocated() as i64;
        let m = load(observations(peers, "idle"));
        let live = GLOBAL.allocated() as i64 - before;
        assert_eq!(
            m.peers(),
            peers,
            "every peer merged from its three sightings"
        );
        println!(
            "memory: {peers} peers x {SOURCES} sources: {live} bytes live after load = {:.0} bytes per peer (observations with the strings kept from them, indexes, expiry queue, merged views)",
            live as f64 / peers as f64
        );
    }
}
