//! The swarm source against a real one-node Docker Swarm (scripts/docker-rig.sh).
//!
//! Each test creates uniquely named services and networks and removes them
//! when it ends, also when it fails. Times are printed, never asserted.
#![allow(clippy::unwrap_used)]
// Each #[tokio::test] has its own runtime: the std Mutex held across awaits only
// serialises the Docker tests across the harness's threads.
#![allow(clippy::await_holding_lock)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use backend_swarm::{Config, Mode};
use common::{
    docker, docker_or_skip, peers_of, seen, start, unique, wait_docker_running, wait_for, Cleanup,
};
use discovery_core::{AliasKind, Health};

const CONVERGE: Duration = Duration::from_secs(120);

fn api_config(service: &str) -> Config {
    Config {
        service: vec![service.to_owned()],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_all_34_replicas_with_identity_and_overlay_addresses() {
    let Some(_lock) = docker_or_skip("finds_all_34_replicas") else {
        return;
    };
    let (net, svc) = (unique("net"), unique("svc"));
    let mut guard = Cleanup::new();
    guard.overlay(&net);
    let t0 = Instant::now();
    guard.service(
        &svc,
        &net,
        34,
        &[
            "--label",
            "rollcall.port=9000",
            "--label",
            "rollcall.capabilities=go_development, database_design",
            "--container-label",
            "rollcall.role=agent",
        ],
    );
    let reg = start(api_config(&svc));
    let took = wait_for(&reg, CONVERGE, |r| peers_of(r, &svc).len() == 34)
        .await
        .unwrap_or_else(|r| {
            panic!(
                "saw {} of 34 tasks: {:#?}",
                peers_of(&r, &svc).len(),
                reg.sources()
            )
        });
    let observed_at = std::time::SystemTime::now();
    println!("34 replicas: all 34 observed {took:?} after the source started ({:?} after service create)", t0.elapsed());

    let truth = wait_docker_running(&svc, &net, 34, CONVERGE);
    let roster = reg.snapshot();
    let tasks: Vec<String> = seen(&roster, &svc).into_keys().collect();
    println!(
        "  ... {:?} after the last task became running (Swarm's status timestamp)",
        common::lag_behind_docker(&tasks, observed_at)
    );
    let peers = peers_of(&roster, &svc);
    assert_eq!(peers.len(), 34, "one peer per task, no duplicates");
    assert_eq!(roster.peers.len(), 34, "nothing else in the roster");
    let addrs: BTreeSet<&String> = peers.iter().flat_map(|p| p.addrs.iter()).collect();
    assert_eq!(addrs.len(), 34, "34 distinct overlay addresses");
    let subnet = docker(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Subnet}}",
        &net,
    ]);
    let prefix: String = subnet.split('.').take(3).collect::<Vec<_>>().join(".");
    let mut slots = BTreeSet::new();
    for p in &peers {
        assert_eq!(
            p.addrs.len(),
            1,
            "one address per attached network (ingress left out): {p:?}"
        );
        assert!(
            p.addrs[0].starts_with(&format!("/ip4/{prefix}.")),
            "{} is not on {subnet}",
            p.addrs[0]
        );
        assert!(
            p.addrs[0].ends_with("/tcp/9000"),
            "port from the rollcall.port label: {}",
            p.addrs[0]
        );
        let cid = p.alias(AliasKind::ContainerId).expect("container id alias");
        assert_eq!(cid.len(), 64, "the full container id");
        assert_eq!(
            p.id,
            cid[..12],
            "display id: the container id's short form (its hostname)"
        );
        assert!(p.alias(AliasKind::TaskId).is_some());
        assert_eq!(p.capabilities, vec!["go_development", "database_design"]);
        assert_eq!(
            p.labels.get("rollcall.role").map(String::as_str),
            Some("agent"),
            "container labels"
        );
        assert_eq!(
            p.labels.get("rollcall.test").map(String::as_str),
            Some("1"),
            "service labels"
        );
        assert!(p.labels.contains_key("swarm.node") && p.labels.contains_key("swarm.node_id"));
        assert_eq!(
            p.name.as_deref(),
            Some(format!("{svc}.{}", p.labels["swarm.slot"]).as_str())
        );
        slots.insert(p.labels["swarm.slot"].parse::<u32>().unwrap());
    }
    assert_eq!(slots, (1..=34).collect::<BTreeSet<_>>(), "every slot once");
    assert_eq!(
        seen(&roster, &svc),
        truth,
        "task -> (container id, IP) as Docker's containers report it"
    );
    let status = &reg.sources()[0];
    assert_eq!(status.health, Health::Ok, "{status:?}");
    assert!(status.synced);
    reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_scale_up_and_scale_down() {
    let Some(_lock) = docker_or_skip("follows_scale_up_and_scale_down") else {
        return;
    };
    let (net, svc) = (unique("net"), unique("svc"));
    let mut guard = Cleanup::new();
    guard.overlay(&net);
    guard.service(&svc, &net, 34, &[]);
    let reg = start(api_config(&svc));
    wait_for(&reg, CONVERGE, |r| peers_of(r, &svc).len() == 34)
        .await
        .unwrap_or_else(|r| panic!("saw {} of 34", peers_of(&r, &svc).len()));
    wait_docker_running(&svc, &net, 34, CONVERGE);

    for n in [40usize, 20] {
        let t0 = Instant::now();
        docker(&["service", "scale", "--detach", &format!("{svc}={n}")]);
        let took = wait_for(&reg, CONVERGE, |r| peers_of(r, &svc).len() == n)
            .await
            .unwrap_or_else(|r| {
                panic!(
                    "after scaling to {n} the source sees {}",
                    peers_of(&r, &svc).len()
                )
            });
        let observed_at = std::time::SystemTime::now();
        println!(
            "scale to {n}: {n} observed {took:?} after `docker service scale` ({:?} incl. the CLI)",
            t0.elapsed()
        );
        if n > 34 {
            let tasks: Vec<String> = seen(&reg.snapshot(), &svc).into_keys().collect();
            println!(
                "  ... {:?} after the last new task became running (Swarm's status timestamp)",
                common::lag_behind_docker(&tasks, observed_at)
            );
        }
        let truth = wait_docker_running(&svc, &net, n, CONVERGE);
        // The source may see the final set a moment before Docker's containers settle.
        wait_for(&reg, Duration::from_secs(15), |r| seen(r, &svc) == truth)
            .await
            .unwrap_or_else(|r| {
                panic!(
                    "after scaling to {n}: source {:?}\ndocker {truth:?}",
                    seen(&r, &svc)
                )
            });
        let roster = reg.snapshot();
        let addrs: BTreeSet<&String> = roster.peers.iter().flat_map(|p| p.addrs.iter()).collect();
        assert_eq!(
            (roster.peers.len(), addrs.len()),
            (n, n),
            "no duplicates, no stale peers"
        );
    }
    reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_task_leaves_and_its_replacement_joins() {
    let Some(_lock) = docker_or_skip("a_killed_task_leaves_and_its_replacement_joins") else {
        return;
    };
    let (net, svc) = (unique("net"), unique("svc"));
    let mut guard = Cleanup::new();
    guard.overlay(&net);
    guard.service(&svc, &net, 6, &[]);
    let reg = start(api_config(&svc));
    wait_for(&reg, CONVERGE, |r| peers_of(r, &svc).len() == 6)
        .await
        .unwrap();
    let before = wait_docker_running(&svc, &net, 6, CONVERGE);
    wait_for(&reg, Duration::from_secs(15), |r| seen(r, &svc) == before)
        .await
        .unwrap();

    let (victim_task, (victim_cid, _)) = before
        .iter()
        .next()
        .map(|(t, v)| (t.clone(), v.clone()))
        .unwrap();
    let t0 = Instant::now();
    docker(&["kill", &victim_cid]);
    let gone = wait_for(&reg, Duration::from_secs(30), |r| {
        !seen(r, &svc).contains_key(&victim_task)
    })
    .await
    .unwrap_or_else(|_| panic!("the killed task {victim_task} is still listed"));
    let replaced = wait_for(&reg, CONVERGE, |r| {
        let s = seen(r, &svc);
        s.len() == 6 && !s.contains_key(&victim_task)
    })
    .await
    .unwrap_or_else(|r| panic!("no replacement: {:?}", seen(&r, &svc)));
    println!("docker kill: the dead task left after {gone:?}, the replacement joined after {replaced:?} (restart delay 0 s)");
    let after = wait_docker_running(&svc, &net, 6, CONVERGE);
    assert!(!after.contains_key(&victim_task));
    wait_for(&reg, Duration::from_secs(15), |r| seen(r, &svc) == after)
        .await
        .unwrap_or_else(|r| panic!("source {:?}\ndocker {after:?}", seen(&r, &svc)));
    let new: Vec<_> = after.keys().filter(|t| !before.contains_key(*t)).collect();
    assert_eq!(new.len(), 1, "exactly one new task replaced the killed one");
    println!("{:?} total", t0.elapsed());
    reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_mode_inside_the_overlay_sees_the_same_34_addresses() {
    let Some(_lock) = docker_or_skip("dns_mode_inside_the_overlay") else {
        return;
    };
    let (net, svc) = (unique("net"), unique("svc"));
    let mut guard = Cleanup::new();
    guard.overlay(&net);
    guard.service(&svc, &net, 34, &[]);
    let reg = start(Config {
        port: Some(9000),
        ..api_config(&svc)
    });
    wait_for(&reg, CONVERGE, |r| peers_of(r, &svc).len() == 34)
        .await
        .unwrap();
    wait_docker_running(&svc, &net, 34, CONVERGE);
    let api: BTreeSet<String> = reg
        .snapshot()
        .peers
        .iter()
        .flat_map(|p| p.addrs.clone())
        .collect();

    // The swarm source in dns mode, run by the probe inside a container on the
    // overlay network, against Docker's embedded DNS (127.0.0.11).
    let probe = unique("dnsprobe");
    let t0 = Instant::now();
    let out = docker(&[
        "run",
        "--rm",
        "--name",
        &probe,
        "--label",
        "rollcall.test=1",
        "--network",
        &net,
        common::PROBE_IMAGE,
        "dns",
        &svc,
        "9000",
    ]);
    println!("dns probe container ran in {:?}", t0.elapsed());
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("probe output {out:?}: {e}"));
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
    let dns: BTreeSet<String> = v["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(dns.len(), 34, "{v}");
    assert_eq!(
        dns, api,
        "tasks.{svc} answers exactly the task addresses the API reports"
    );

    // The shipped binary: `rollcall peers` with a `type = "swarm"`, `mode = "dns"`
    // source, in a container on the overlay (image from scripts/docker-rig.sh image).
    assert!(
        common::try_docker(&["image", "inspect", common::AGENT_IMAGE]).is_ok(),
        "this test needs the image {}: run `scripts/docker-rig.sh image`",
        common::AGENT_IMAGE
    );
    let dir = std::env::temp_dir().join(unique("cfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("rollcall.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources.swarm]\ntype = \"swarm\"\nmode = \"dns\"\nservice = \"{svc}\"\nport = 9000\n"
        ),
    )
    .unwrap();
    let t0 = Instant::now();
    let out = docker(&[
        "run",
        "--rm",
        "--label",
        "rollcall.test=1",
        "--network",
        &net,
        "-v",
        &format!("{}:/rollcall.toml:ro", cfg.display()),
        common::AGENT_IMAGE,
        "peers",
        "-c",
        "/rollcall.toml",
        "--json",
        "--wait",
        "10s",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "`rollcall peers` (dns mode) in a container on the overlay: {:?}",
        t0.elapsed()
    );
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("rollcall peers --json printed {out:?}: {e}"));
    let found: BTreeSet<String> = v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["addrs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(found, api, "rollcall peers in dns mode finds all 34");
    reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_mode_follows_labelled_containers() {
    let Some(_lock) = docker_or_skip("containers_mode_follows_labelled_containers") else {
        return;
    };
    let (net, group) = (unique("bnet"), unique("grp"));
    let mut guard = Cleanup::new();
    guard.bridge(&net);
    let sel = format!("rollcall.test.group={group}");
    let mut ids = BTreeMap::new();
    for i in 0..3 {
        let name = format!("{group}-{i}");
        let id = guard.container(
            &name,
            &[
                "--network",
                &net,
                "--label",
                &sel,
                "--label",
                "rollcall.port=7000",
                "--label",
                "rollcall.capabilities=db",
            ],
        );
        ids.insert(id, name);
    }
    // One that does not match the selector.
    guard.container(&format!("{group}-other"), &["--network", &net]);
    let reg = start(Config {
        mode: Mode::Containers,
        label: vec![sel.clone()],
        ..Default::default()
    });
    let took = wait_for(&reg, Duration::from_secs(30), |r| r.peers.len() == 3)
        .await
        .unwrap();
    println!("containers mode: 3 containers observed in {took:?}");
    let roster = reg.snapshot();
    for p in &roster.peers {
        let cid = p.alias(AliasKind::ContainerId).unwrap();
        assert!(ids.contains_key(cid), "{cid} is one of ours");
        let ip = docker(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
            cid,
        ]);
        assert_eq!(p.addrs, vec![format!("/ip4/{ip}/tcp/7000")]);
        assert_eq!(p.name.as_deref(), Some(ids[cid].as_str()));
        assert_eq!(p.capabilities, vec!["db"]);
    }
    let (victim, _) = ids.iter().next().unwrap();
    let t0 = Instant::now();
    docker(&["rm", "-f", victim]);
    wait_for(&reg, Duration::from_secs(15), |r| r.peers.len() == 2)
        .await
        .unwrap();
    println!(
        "containers mode: a removed container left after {:?}",
        t0.elapsed()
    );
    let t0 = Instant::now();
    guard.container(&format!("{group}-3"), &["--network", &net, "--label", &sel]);
    wait_for(&reg, Duration::from_secs(15), |r| r.peers.len() == 3)
        .await
        .unwrap();
    println!(
        "containers mode: a started container joined after {:?}",
        t0.elapsed()
    );
    reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_selection_and_a_service_created_later() {
    let Some(_lock) = docker_or_skip("label_selection_and_a_service_created_later") else {
        return;
    };
    let (net, a, b, group) = (unique("net"), unique("sa"), unique("sb"), unique("grp"));
    let sel = format!("rollcall.test.group={group}");
    let mut guard = Cleanup::new();
    guard.overlay(&net);
    guard.service(&a, &net, 3, &["--label", &sel]);
    let reg = start(Config {
        label: vec![sel.clone()],
        ..Default::default()
    });
    wait_for(&reg, CONVERGE, |r| peers_of(r, &a).len() == 3)
        .await
        .unwrap();
    let t0 = Instant::now();
    guard.service(&b, &net, 2, &["--label", &sel]);
    let took = wait_for(&reg, CONVERGE, |r| {
        peers_of(r, &b).len() == 2 && peers_of(r, &a).len() == 3
    })
    .await
    .unwrap_or_else(|r| panic!("{:?}", r.peers.len()));
    let observed_at = std::time::SystemTime::now();
    println!(
        "a new labelled service: its 2 tasks observed {took:?} after create ({:?})",
        t0.elapsed()
    );
    let tasks: Vec<String> = common::seen(&reg.snapshot(), &b).into_keys().collect();
    println!(
        "  ... {:?} after its last task became running (Swarm's status timestamp)",
        common::lag_behind_docker(&tasks, observed_at)
    );
    docker(&["service", "rm", &a]);
    wait_for(&reg, Duration::from_secs(15), |r| {
        peers_of(r, &a).is_empty() && r.peers.len() == 2
    })
    .await
    .unwrap();
    reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_alone_drive_refreshes_and_the_stream_outlives_the_request_timeout() {
    let Some(_lock) = docker_or_skip("events_alone_drive_refreshes") else {
        return;
    };
    let (net, svc) = (unique("net"), unique("svc"));
    let mut guard = Cleanup::new();
    guard.overlay(&net);
    guard.service(&svc, &net, 2, &[]);
    // No periodic resync within the test: only events (and the convergence
    // polls they start) can make the source see a change.
    let reg = start(Config {
        resync: Duration::from_secs(600),
        timeout: Duration::from_secs(2),
        ..api_config(&svc)
    });
    wait_for(&reg, CONVERGE, |r| peers_of(r, &svc).len() == 2)
        .await
        .unwrap();
    wait_docker_running(&svc, &net, 2, CONVERGE);
    // Idle for longer than the request timeout: the event stream must survive it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let t0 = Instant::now();
    docker(&["service", "scale", "--detach", &format!("{svc}=5")]);
    let took = wait_for(&reg, Duration::from_secs(60), |r| {
        peers_of(r, &svc).len() == 5
    })
    .await
    .unwrap_or_else(|r| {
        panic!(
            "events did not drive a refresh: {} of 5",
            peers_of(&r, &svc).len()
        )
    });
    println!(
        "events only: scale 2 -> 5 observed {took:?} after the command ({:?})",
        t0.elapsed()
    );
    let st = reg.sources().remove(0);
    assert_eq!(st.health, Health::Ok, "{st:?}");
    reg.shutdown().await;
}
