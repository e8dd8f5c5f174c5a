//! `rollcall compare` end to end: the CI scenario (local agents, nats and
//! static side by side, with churn) runs, and its JSON says every measured
//! backend found every live agent, once, with no phantom left at the end.
//!
//! Needs nats-server (`apt-get install -y nats-server`); set
//! `ROLLCALL_SKIP_NATS=1` to skip on purpose. haproxy (for the baseline row)
//! is optional here: without it the row reports why it could not run.

mod support;

use std::process::Command;

use support::{have, run_compare};

fn nats_or_skip() -> bool {
    if have("nats-server") {
        return true;
    }
    if std::env::var("ROLLCALL_SKIP_NATS").as_deref() == Ok("1") {
        eprintln!(
            "SKIPPED: ROLLCALL_SKIP_NATS=1 and no nats-server: the compare CI scenario did not run"
        );
        return false;
    }
    panic!("this test needs nats-server: `apt-get install -y nats-server` (or set ROLLCALL_SKIP_NATS=1 to skip it)");
}

#[test]
fn ci_scenario_finds_every_agent_with_no_duplicate_and_no_phantom() {
    if !nats_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = run_compare("ci-local.toml", dir.path(), true);
    let svg = dir.path().join("plot.svg");
    assert_eq!(v["scenario"], "ci-local");
    assert_eq!(v["agents"], 20);
    let backends = v["backends"].as_array().unwrap();
    let names: Vec<&str> = backends
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nats", "static", "http-vip"], "{v:#}");
    for b in backends.iter().filter(|b| b["baseline"] != true) {
        let name = &b["name"];
        assert!(b.get("error").is_none(), "{name} could not run: {b:#}");
        assert_eq!(b["completeness"], 1.0, "{name}: {b:#}");
        assert_eq!(b["duplicates"], 0, "{name}: {b:#}");
        assert_eq!(b["phantoms"], 0, "{name}: {b:#}");
        assert_eq!(b["final_found"], b["expected"], "{name}: {b:#}");
        // The churn happened and was seen: two departures, two arrivals.
        assert_eq!(
            b["departures"].as_array().unwrap().len(),
            2,
            "{name}: {b:#}"
        );
        assert!(
            b["departures"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["detect_ms"].is_number()),
            "{name}: {b:#}"
        );
        assert_eq!(b["arrivals"].as_array().unwrap().len(), 2, "{name}: {b:#}");
        assert!(
            b["arrivals"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["detect_ms"].is_number()),
            "{name}: {b:#}"
        );
        assert_eq!(b["address_validity"]["share"], 1.0, "{name}: {b:#}");
        assert!(
            b["timeline"].as_array().unwrap().len() >= 2,
            "{name}: {b:#}"
        );
        assert!(
            b["cpu_ms"].is_number() && b["peak_rss_kib"].is_number(),
            "{name}: {b:#}"
        );
    }
    // The restarted nats discoverer got its roster back.
    let nats = &backends[0];
    assert!(nats["restart_full_ms"][0].is_number(), "{nats:#}");
    // The baseline row is there and labelled, measured or with its reason.
    let vip = &backends[2];
    assert_eq!(vip["baseline"], true);
    assert!(
        vip.get("error").is_some() || vip["final_found"].is_number(),
        "{vip:#}"
    );
    assert_eq!(v["churn"].as_array().unwrap().len(), 4);
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.starts_with("<svg") && plot.contains("nats") && plot.contains("kill 1"),
        "{plot}"
    );
}

#[test]
fn a_bad_scenario_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "name = \"bad\"\nenvironment = \"local\"\nagents = 2\nduration = \"5s\"\n[[backends]]\nname = \"x\"\nsource = { type = \"static\" }\n[[churn]]\nat = \"9s\"\naction = \"kill\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["compare", "--scenario"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("churn[0].at"), "{err}");
}
