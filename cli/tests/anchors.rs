//! The anchors in CI: `rollcall compare` runs a 10-replica Swarm service with
//! rollcall's swarm source beside Prometheus's own service discovery
//! (`dockerswarm_sd_configs`, `dns_sd_configs`), and every anchor row says
//! something: a number, or an explicit reason why not. Never silence.
//!
//! Needs the Docker rig and the agent image (`scripts/docker-rig.sh &&
//! scripts/docker-rig.sh image agent`, as root) and Debian's `prometheus`
//! (`apt-get install -y prometheus`); `ROLLCALL_SKIP_DOCKER=1` skips it, saying so.

mod support;

use std::process::Command;

use support::{have, run_compare};

fn docker_or_skip() -> bool {
    if std::env::var("ROLLCALL_SKIP_DOCKER").as_deref() == Ok("1") {
        eprintln!("SKIPPED: ROLLCALL_SKIP_DOCKER=1: the anchors' CI scenario did not run");
        return false;
    }
    let fix = "run `scripts/docker-rig.sh && scripts/docker-rig.sh image agent` as root and `apt-get install -y prometheus`, or set ROLLCALL_SKIP_DOCKER=1 to skip";
    assert!(have("docker"), "this test needs the docker CLI: {fix}");
    assert!(
        have("prometheus"),
        "this test needs Debian's prometheus: {fix}"
    );
    let img = Command::new("docker")
        .args(["image", "inspect", "rollcall-agent:test"])
        .output()
        .expect("docker runs");
    assert!(img.status.success(), "no rollcall-agent:test image: {fix}");
    true
}

/// A measured number (ms) of a row, if it has one.
fn number(row: &serde_json::Value, key: &str) -> Option<i64> {
    row[key].as_i64()
}

#[test]
fn every_anchor_row_measures_something_or_says_why_not() {
    if !docker_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (v, stdout) = run_compare("ci-swarm-anchors.toml", dir.path(), false);
    eprintln!("{stdout}");
    assert_eq!(v["scenario"], "ci-swarm-anchors");
    let rows = v["backends"].as_array().unwrap();
    let anchors: Vec<&serde_json::Value> = rows.iter().filter(|r| r["anchor"] == true).collect();
    let kinds: Vec<&str> = anchors.iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(
        kinds,
        ["prometheus-dockerswarm-sd", "prometheus-dns-sd"],
        "both anchors are rows of the result:\n{stdout}"
    );
    for a in &anchors {
        let name = a["name"].as_str().unwrap();
        let reason = a["error"].as_str().filter(|e| !e.trim().is_empty());
        let full = number(a, "time_to_full_ms");
        assert!(
            full.is_some() || reason.is_some(),
            "anchor {name} has neither a time to the full roster nor a reason why not: {a}"
        );
        if let Some(ms) = full {
            assert!(ms >= 0, "{name}: {ms}");
            assert_eq!(a["final_found"], a["expected"], "{name} ends complete: {a}");
        }
        // The note says which refresh it ran with, and Prometheus's default.
        let note = a["note"].as_str().unwrap_or_default();
        assert!(note.contains("refresh_interval 1s"), "{name}: {note}");
        assert!(note.contains("default"), "{name}: {note}");
    }
    // Prometheus's dockerswarm SD reads the same API as rollcall: here it must work.
    let swarm_anchor = anchors[0];
    assert!(
        number(swarm_anchor, "time_to_full_ms").is_some(),
        "Prometheus's dockerswarm_sd listed the service: {swarm_anchor}"
    );
    // rollcall's row is complete and carries its ratio to the best anchor.
    let api = rows.iter().find(|r| r["name"] == "swarm-api").unwrap();
    assert_eq!(api["final_found"], api["expected"], "{api}");
    assert_eq!(api["phantoms"], 0, "{api}");
    let ratio = api["vs_anchor"]["full"].as_f64();
    assert!(
        ratio.is_some_and(|r| r > 0.0),
        "swarm-api has a ratio to the best anchor's time to full roster: {api}"
    );
    assert!(
        stdout.contains("(anchor)"),
        "the table marks anchors:\n{stdout}"
    );
}
