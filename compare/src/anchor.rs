//! The anchors: the discovery operators already run, measured like every
//! backend. An anchor is Debian's `prometheus` with one service-discovery
//! config (`dockerswarm_sd_configs` or `dns_sd_configs`); its roster is what
//! Prometheus's own `GET /api/v1/targets` lists as active targets.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use super::scenario::{AnchorSd, AnchorSpec, PrometheusRun};
use super::wire::WirePeer;

/// The scrape job's name in the generated config.
const JOB: &str = "anchor";

/// Prometheus's own defaults, quoted in notes and docs.
pub(crate) fn default_refresh(sd: AnchorSd) -> &'static str {
    match sd {
        AnchorSd::Dockerswarm => "60s",
        AnchorSd::Dns => "30s",
    }
}

/// What a reader of an anchor row must know: its refresh, honestly.
pub(crate) fn note(a: &AnchorSpec) -> String {
    let refresh = match a.refresh {
        Some(r) => format!(
            "refresh_interval {} (Prometheus's default: {})",
            humantime::format_duration(r),
            default_refresh(a.sd)
        ),
        None => format!(
            "refresh_interval at Prometheus's default, {}",
            default_refresh(a.sd)
        ),
    };
    format!(
        "Debian's prometheus, {}; {refresh}; its discovery manager passes updates on at most every 5 s; /api/v1/targets read every {}; timed from the Prometheus process start",
        a.sd.kind(),
        humantime::format_duration(a.poll)
    )
}

/// The anchor's discoverer spec: Prometheus's config for this run.
pub(crate) fn prometheus_run(
    name: &str,
    a: &AnchorSpec,
    vars: &BTreeMap<&'static str, String>,
    dir: &Path,
) -> Result<PrometheusRun, String> {
    let var = |k: &str| {
        vars.get(k)
            .cloned()
            .ok_or_else(|| format!("anchor {name}: this environment has no {{{k}}}"))
    };
    let service = var("service")?;
    let port: u16 = var("health_port")?.parse().map_err(|_| "bad health_port")?;
    let mut sd = match a.sd {
        AnchorSd::Dockerswarm => json!({
            "host": var("manager")?,
            "role": "tasks",
            "port": port,
        }),
        AnchorSd::Dns => json!({
            "names": [format!("tasks.{service}")],
            "type": "A",
            "port": port,
        }),
    };
    if let Some(r) = a.refresh {
        sd["refresh_interval"] = json!(format!("{}ms", r.as_millis().max(1)));
    }
    let mut job = json!({
        "job_name": JOB,
        // Discovery is measured, not scraping: scrape rarely.
        "scrape_interval": "1m",
        "scrape_timeout": "10s",
        "metrics_path": "/health",
    });
    match a.sd {
        AnchorSd::Dockerswarm => {
            let network = var("network")?;
            job["dockerswarm_sd_configs"] = json!([sd]);
            // What an operator writes: this service's tasks meant to run, on its network,
            // with the task id kept as a label.
            job["relabel_configs"] = json!([
                keep("__meta_dockerswarm_service_name", &service),
                keep("__meta_dockerswarm_task_desired_state", "running"),
                keep("__meta_dockerswarm_network_name", &network),
                {"source_labels": ["__meta_dockerswarm_task_id"], "target_label": "task_id"},
            ]);
        }
        AnchorSd::Dns => job["dns_sd_configs"] = json!([sd]),
    }
    let config = json!({
        "global": {"scrape_interval": "1m", "evaluation_interval": "1m"},
        "scrape_configs": [job],
    });
    Ok(PrometheusRun {
        binary: a.binary.clone(),
        config: serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?,
        poll: a.poll,
        dir: dir.join(format!("anchor-{name}")).display().to_string(),
    })
}

fn keep(label: &str, regex: &str) -> Value {
    json!({"source_labels": [label], "regex": regex, "action": "keep"})
}

/// The roster an anchor lists: Prometheus's active targets of the job, one
/// entry per target (keyed by task id when the job keeps it, else address).
pub(crate) fn targets(answer: &Value) -> Result<BTreeMap<String, WirePeer>, String> {
    if answer["status"] != "success" {
        return Err(format!(
            "/api/v1/targets answered status {}",
            answer["status"]
        ));
    }
    let list = answer["data"]["activeTargets"]
        .as_array()
        .ok_or("/api/v1/targets: no data.activeTargets")?;
    let mut out = BTreeMap::new();
    for t in list {
        let labels = &t["labels"];
        if labels["job"] != JOB {
            continue;
        }
        let Some(addr) = labels["instance"].as_str() else {
            continue;
        };
        let task = labels["task_id"].as_str().filter(|s| !s.is_empty());
        let id = task.unwrap_or(addr).to_owned();
        let aliases = task
            .map(|t| {
                vec![discovery_core::Alias::new(
                    discovery_core::AliasKind::TaskId,
                    t,
                )]
            })
            .unwrap_or_default();
        out.insert(
            id.clone(),
            WirePeer {
                id,
                aliases,
                addrs: vec![addr.to_owned()],
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn vars() -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("service", "svc".to_owned()),
            ("network", "net".to_owned()),
            ("health_port", "8081".to_owned()),
            ("manager", "unix:///var/run/docker.sock".to_owned()),
        ])
    }

    #[test]
    fn swarm_config_keeps_the_running_tasks_of_the_service() {
        let a = AnchorSpec {
            sd: AnchorSd::Dockerswarm,
            refresh: Some(Duration::from_secs(1)),
            poll: Duration::from_millis(100),
            binary: "prometheus".into(),
        };
        let r = prometheus_run("p", &a, &vars(), Path::new("/tmp/x")).unwrap();
        let c: Value = serde_json::from_str(&r.config).unwrap();
        let job = &c["scrape_configs"][0];
        let sd = &job["dockerswarm_sd_configs"][0];
        assert_eq!(sd["role"], "tasks");
        assert_eq!(sd["host"], "unix:///var/run/docker.sock");
        assert_eq!(sd["refresh_interval"], "1000ms");
        let relabel = job["relabel_configs"].to_string();
        assert!(relabel.contains("__meta_dockerswarm_service_name"));
        assert!(relabel.contains("\"running\""));
        assert_eq!(r.dir, "/tmp/x/anchor-p");
    }

    #[test]
    fn dns_config_asks_for_tasks_of_the_service_and_keeps_the_default_refresh() {
        let a = AnchorSpec {
            sd: AnchorSd::Dns,
            refresh: None,
            poll: Duration::from_millis(100),
            binary: "prometheus".into(),
        };
        let r = prometheus_run("p", &a, &vars(), Path::new("/tmp/x")).unwrap();
        let c: Value = serde_json::from_str(&r.config).unwrap();
        let sd = &c["scrape_configs"][0]["dns_sd_configs"][0];
        assert_eq!(sd["names"][0], "tasks.svc");
        assert_eq!(sd["port"], 8081);
        assert!(sd.get("refresh_interval").is_none());
    }

    #[test]
    fn reads_active_targets() {
        let answer = json!({"status": "success", "data": {"activeTargets": [
            {"labels": {"job": "anchor", "instance": "10.0.1.5:8081", "task_id": "abc"}},
            {"labels": {"job": "anchor", "instance": "10.0.1.6:8081"}},
            {"labels": {"job": "other", "instance": "10.0.1.7:8081"}},
            {"labels": {"job": "anchor"}},
        ]}});
        let t = targets(&answer).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t["abc"].addrs, vec!["10.0.1.5:8081".to_owned()]);
        assert_eq!(t["abc"].aliases.len(), 1);
        assert!(t["10.0.1.6:8081"].aliases.is_empty());
        assert!(targets(&json!({"status": "error"})).is_err());
        assert!(targets(&json!({"status": "success", "data": {}})).is_err());
    }
}
