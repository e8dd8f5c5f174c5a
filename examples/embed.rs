//! Embedding rollcall: build the registry from a config file and print joins
//! and leaves as they happen.
//!
//!     cargo run --example embed -- examples/static.toml

use rollcall::config::Config;
use rollcall::{RosterEvent, WatchUpdate};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/static.toml".into());
    let config = Config::load(path.as_ref())?;
    let registry = rollcall::discover(&config)?;
    let mut watch = registry.watch();
    println!("watching {path}; Ctrl-C to stop");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            update = watch.next() => match update {
                Some(WatchUpdate::Snapshot(roster)) => {
                    println!("snapshot v{}: {} peers", roster.version, roster.peers.len());
                }
                Some(WatchUpdate::Event(RosterEvent::Joined { version, peer, .. })) => {
                    println!("v{version} joined  {} {:?}", peer.id, peer.addrs);
                }
                Some(WatchUpdate::Event(RosterEvent::Updated { version, peer, .. })) => {
                    println!("v{version} updated {} {:?}", peer.id, peer.addrs);
                }
                Some(WatchUpdate::Event(RosterEvent::Left { version, peer, .. })) => {
                    println!("v{version} left    {}", peer.id);
                }
                Some(WatchUpdate::Event(RosterEvent::Conflict { conflict, .. })) => {
                    println!("conflict: {} {} claimed by {:?}", conflict.shared.kind, conflict.shared.value, conflict.observations);
                }
                Some(WatchUpdate::Event(_)) => {}
                None => break,
            }
        }
    }
    registry.shutdown().await;
    Ok(())
}
