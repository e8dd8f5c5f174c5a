//! An embedder who picks one backend compiles the core and that backend, never
//! the CLI, the daemon or the harness.

use std::process::Command;

/// Crates that belong to the binary (CLI, HTTP daemon, harness), not to the library.
const BINARY_ONLY: [&str; 7] = [
    "axum",
    "clap",
    "plotters",
    "indicatif",
    "reqwest",
    "metrics-exporter-prometheus",
    "rollcall-compare",
];

fn normal_deps(features: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "rollcall",
            "--no-default-features",
            "--features",
        ])
        .arg(features)
        .args(["-e", "normal", "--prefix", "none", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn one_backend_pulls_no_cli_daemon_or_harness_crates() {
    // backend-static's HTTP identity probe is itself a reqwest client.
    for (features, own) in [("nats", None), ("swarm", None), ("static", Some("reqwest"))] {
        let deps = normal_deps(features);
        assert!(deps.iter().any(|d| d == "discovery-core"), "{deps:?}");
        for banned in BINARY_ONLY.into_iter().filter(|b| Some(*b) != own) {
            assert!(
                !deps.iter().any(|d| d == banned),
                "`--features {features}` pulls {banned}"
            );
        }
    }
}

#[test]
fn a_backend_not_chosen_is_not_compiled() {
    let deps = normal_deps("static");
    for other in ["backend-nats", "backend-swarm", "async-nats", "bollard"] {
        assert!(!deps.iter().any(|d| d == other), "static pulls {other}");
    }
}
