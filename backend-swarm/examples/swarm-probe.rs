//! A small static workload for the Docker tests of backend-swarm, packed by
//! `scripts/docker-rig.sh image` into the FROM-scratch image
//! `rollcall-swarm-probe:test`.
//!
//! * `swarm-probe serve` — stay up until SIGTERM/SIGINT (a replica that exits
//!   at once when Swarm stops it, so scale-downs are quick).
//! * `swarm-probe dns SERVICE [PORT]` — run the swarm source in `dns` mode
//!   (Docker's embedded DNS, `tasks.SERVICE`) until its first sync, print what
//!   it saw as JSON (`{"synced":true,"addrs":["/ip4/10.0.1.3/tcp/9000",...]}`)
//!   and exit: run inside a container on the service's overlay network.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use backend_swarm::{Config, Mode, SwarmSource};
use discovery_core::{RegistryBuilder, RegistryConfig, SourceOptions};

fn usage() -> ! {
    eprintln!("usage: swarm-probe serve | swarm-probe dns SERVICE [PORT]");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve().await,
        Some("dns") => {
            let service = args.get(1).cloned().unwrap_or_else(|| usage());
            let port = args
                .get(2)
                .map(|p| p.parse::<u16>().unwrap_or_else(|_| usage()));
            dns(service, port).await
        }
        _ => usage(),
    }
}

async fn serve() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).unwrap();
    let mut int = signal(SignalKind::interrupt()).unwrap();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn dns(service: String, port: Option<u16>) {
    let source = SwarmSource::new(Config {
        service: vec![service],
        mode: Mode::Dns,
        port,
        ..Default::default()
    })
    .unwrap();
    let registry = RegistryBuilder::new(RegistryConfig {
        exclude_addresses: vec![],
        ..Default::default()
    })
    .source("swarm-dns", SourceOptions::default(), source)
    .start()
    .unwrap();
    let synced = registry.wait_first_sync(Duration::from_secs(15)).await;
    let roster = registry.snapshot();
    let addrs: Vec<String> = roster.peers.iter().flat_map(|p| p.addrs.clone()).collect();
    let errors: Vec<String> = registry
        .sources()
        .into_iter()
        .filter_map(|s| s.last_error)
        .collect();
    println!(
        "{}",
        serde_json::json!({ "synced": synced, "peers": roster.peers.len(), "addrs": addrs, "errors": errors })
    );
    registry.shutdown().await;
}
