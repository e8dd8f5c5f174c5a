//! `mode = "api"`: the running tasks of the selected services, read from a
//! swarm manager.
//!
//! # Where the task addresses come from: the raw `/tasks` answer
//!
//! bollard's `Task` has no `NetworksAttachments`, so two ways were open: the
//! raw `GET /tasks` JSON, or a verbose swarm-scope network inspect
//! (`GET /networks/NET?verbose=true&scope=swarm`, whose `Services` map lists
//! each task's endpoint IP). This crate reads `/tasks` raw, because:
//!
//! * `/tasks` comes from the manager's Raft store: it lists every task of the
//!   cluster, on every node, whatever node asks. The verbose network inspect
//!   answers from the asking node's gossip table of that network, which exists
//!   only where a container is attached to the network; on a manager that runs
//!   none of the service's tasks (drained managers are the usual production
//!   layout) it has no `Services` at all — checked on Docker 20.10 with the
//!   two-node swarm of `scripts/swarm2.sh` and a service constrained to the
//!   worker: `"Services": null` on the manager, all 3 tasks on the worker —
//!   and elsewhere it lags behind by gossip convergence.
//! * One answer carries everything an observation needs, consistently: task
//!   id, desired and actual state, container id, slot, node, and the addresses
//!   on every attached network. The network inspect has no container id and no
//!   state, so it would still need `/tasks` and a join between two snapshots
//!   taken at different moments.
//! * It costs one request per refresh, whatever the number of networks.
//!
//! The price is a small hand-written serde model of the task (only the fields
//! used, every one optional, so newer or older daemons parse) and a raw call
//! through the same connection bollard uses (see `docker.rs`).

use std::collections::{BTreeSet, HashMap, HashSet};

use bollard::models::{EndpointPortConfigProtocolEnum, Service};
use bollard::query_parameters::{ListNodesOptions, ListServicesOptions};
use discovery_core::{Alias, AliasKind, Metadata, Observation};
use serde::Deserialize;

use crate::config::Settings;
use crate::docker::Conn;
use crate::observe::{
    addr, capabilities, merge_labels, network_rank, parse_ip, port_from_labels, Drops,
};
use crate::Error;

/// Task states on the way to `running`.
const STARTING: [&str; 8] = [
    "new",
    "allocated",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawTask {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(default)]
    pub slot: Option<u64>,
    #[serde(rename = "NodeID", default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub desired_state: Option<String>,
    #[serde(default)]
    pub status: Option<RawStatus>,
    #[serde(default)]
    pub spec: Option<RawTaskSpec>,
    #[serde(default)]
    pub networks_attachments: Option<Vec<RawAttachment>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawStatus {
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub container_status: Option<RawContainerStatus>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawContainerStatus {
    #[serde(rename = "ContainerID", default)]
    pub container_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawTaskSpec {
    #[serde(default)]
    pub container_spec: Option<RawContainerSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawContainerSpec {
    #[serde(default)]
    pub labels: Option<HashMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawAttachment {
    #[serde(default)]
    pub network: Option<RawNetwork>,
    #[serde(default)]
    pub addresses: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawNetwork {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub spec: Option<RawNetworkSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawNetworkSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub ingress: bool,
}

impl RawTask {
    fn state(&self) -> &str {
        self.status
            .as_ref()
            .and_then(|s| s.state.as_deref())
            .unwrap_or("")
    }
    fn desired(&self) -> &str {
        self.desired_state.as_deref().unwrap_or("")
    }
    fn container_id(&self) -> Option<&str> {
        self.status
            .as_ref()
            .and_then(|s| s.container_status.as_ref())
            .and_then(|c| c.container_id.as_deref())
            .filter(|c| !c.is_empty())
    }
}

/// What the source needs of one selected service.
#[derive(Debug, Clone, Default)]
pub(crate) struct SvcInfo {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    /// First published TCP target port.
    pub target_port: Option<u16>,
    /// Replica count of a replicated service; `None` for global services and jobs.
    pub replicas: Option<u64>,
}

impl SvcInfo {
    pub(crate) fn from_service(s: &Service) -> Option<SvcInfo> {
        let id = s.id.clone().filter(|i| !i.is_empty())?;
        let spec = s.spec.as_ref()?;
        let name = spec.name.clone().filter(|n| !n.is_empty())?;
        let ports = s
            .endpoint
            .as_ref()
            .and_then(|e| e.ports.as_ref())
            .or_else(|| spec.endpoint_spec.as_ref().and_then(|e| e.ports.as_ref()));
        let target_port = ports.and_then(|ps| {
            ps.iter()
                .filter(|p| matches!(p.protocol, None | Some(EndpointPortConfigProtocolEnum::TCP)))
                .filter_map(|p| p.target_port)
                .find_map(|p| u16::try_from(p).ok().filter(|p| *p > 0))
        });
        let replicas = spec
            .mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .and_then(|r| r.replicas)
            .and_then(|r| u64::try_from(r).ok());
        Some(SvcInfo {
            id,
            name,
            labels: spec.labels.clone().unwrap_or_default(),
            target_port,
            replicas,
        })
    }
}

/// One complete look at the swarm.
#[derive(Debug, Default)]
pub(crate) struct Refresh {
    pub observations: Vec<Observation>,
    /// No selected service is starting or stopping tasks.
    pub converged: bool,
    /// Names of the selected services (api) or ids of the selected
    /// containers (containers): to judge which events matter.
    pub known: HashSet<String>,
}

/// Node id → host name, refreshed when an unknown node shows up.
#[derive(Debug, Default)]
pub(crate) struct NodeNames(HashMap<String, String>);

/// What `/info` says about the swarm.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InfoAnswer {
    #[serde(default)]
    swarm: Option<SwarmAnswer>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SwarmAnswer {
    #[serde(default)]
    local_node_state: Option<String>,
    #[serde(default)]
    control_available: Option<bool>,
}

/// Checks that the daemon is a swarm manager, with a clear error otherwise.
pub(crate) async fn check_manager(conn: &Conn) -> Result<(), Error> {
    let info: InfoAnswer = conn.get_json("/info", &[]).await?;
    let swarm = info.swarm.unwrap_or(SwarmAnswer {
        local_node_state: None,
        control_available: None,
    });
    let state = swarm.local_node_state.unwrap_or_default();
    if state != "active" {
        return Err(Error::NotInSwarm {
            endpoint: conn.endpoint.clone(),
            state: if state.is_empty() {
                "inactive".into()
            } else {
                state
            },
        });
    }
    if swarm.control_available != Some(true) {
        return Err(Error::NotManager {
            endpoint: conn.endpoint.clone(),
        });
    }
    Ok(())
}

/// The selected services.
pub(crate) async fn selected_services(conn: &Conn, s: &Settings) -> Result<Vec<SvcInfo>, Error> {
    let mut filters: HashMap<String, Vec<String>> = HashMap::new();
    if !s.labels.is_empty() {
        filters.insert(
            "label".into(),
            s.labels.iter().map(|l| l.as_filter()).collect(),
        );
    }
    let opts = ListServicesOptions {
        filters: Some(filters),
        ..Default::default()
    };
    let services = conn
        .api
        .list_services(Some(opts))
        .await
        .map_err(|e| conn.api_error("GET /services", e))?;
    Ok(services
        .iter()
        .filter_map(SvcInfo::from_service)
        // The server filtered by label; names are matched exactly here
        // (Docker's `name` filter matches prefixes).
        .filter(|svc| s.services.is_empty() || s.services.contains(&svc.name))
        .filter(|svc| s.labels.iter().all(|l| l.matches(&svc.labels)))
        .collect())
}

async fn running_tasks(
    conn: &Conn,
    services: &[SvcInfo],
    drops: &mut Drops,
) -> Result<Vec<RawTask>, Error> {
    let filters = serde_json::json!({
        "service": services.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        "desired-state": ["running"],
    });
    let raw: Vec<serde_json::Value> = conn
        .get_json("/tasks", &[("filters", filters.to_string())])
        .await?;
    let mut out = Vec::with_capacity(raw.len());
    for v in raw {
        match serde_json::from_value::<RawTask>(v) {
            Ok(t) if !t.id.is_empty() => out.push(t),
            Ok(_) => drops.drop("task", "a task without an ID"),
            Err(e) => drops.drop("task", &e.to_string()),
        }
    }
    Ok(out)
}

impl NodeNames {
    async fn update_if_needed(&mut self, conn: &Conn, tasks: &[RawTask], drops: &mut Drops) {
        let unknown = tasks
            .iter()
            .filter_map(|t| t.node_id.as_deref())
            .any(|n| !n.is_empty() && !self.0.contains_key(n));
        if !unknown {
            return;
        }
        match conn.api.list_nodes(None::<ListNodesOptions>).await {
            Ok(nodes) => {
                self.0 = nodes
                    .into_iter()
                    .filter_map(|n| {
                        let id = n.id?;
                        let host = n.description.and_then(|d| d.hostname).unwrap_or_default();
                        Some((id, host))
                    })
                    .collect();
            }
            Err(e) => drops.note(
                "nodes",
                &format!("cannot list nodes (node names fall back to ids): {e}"),
            ),
        }
    }

    pub(crate) fn forget(&mut self) {
        self.0.clear();
    }

    fn get(&self, id: &str) -> Option<&str> {
        self.0.get(id).map(String::as_str).filter(|h| !h.is_empty())
    }
}

/// One full refresh: services, their running tasks, node names.
pub(crate) async fn refresh(
    conn: &Conn,
    s: &Settings,
    nodes: &mut NodeNames,
    drops: &mut Drops,
) -> Result<Refresh, Error> {
    let services = selected_services(conn, s).await?;
    let names: HashSet<String> = services.iter().map(|svc| svc.name.clone()).collect();
    for want in &s.services {
        if !names.contains(want) {
            drops.note(
                "missing_service",
                &format!("no service named `{want}` matches (a typo, a stack prefix like STACK_{want}, or not created yet)"),
            );
        }
    }
    if services.is_empty() {
        return Ok(Refresh {
            observations: Vec::new(),
            converged: true,
            known: names,
        });
    }
    let tasks = running_tasks(conn, &services, drops).await?;
    nodes.update_if_needed(conn, &tasks, drops).await;
    let by_id: HashMap<&str, &SvcInfo> =
        services.iter().map(|svc| (svc.id.as_str(), svc)).collect();
    let mut observations = Vec::new();
    for t in &tasks {
        let Some(svc) = by_id.get(t.service_id.as_str()) else {
            continue;
        };
        if let Some(o) = task_observation(t, svc, nodes, s, drops) {
            observations.push(o);
        }
    }
    observations.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Refresh {
        converged: converged(&services, &tasks),
        observations,
        known: names,
    })
}

/// Whether every selected service has settled: no task starting, and every
/// replicated service running exactly its replica count.
pub(crate) fn converged(services: &[SvcInfo], tasks: &[RawTask]) -> bool {
    if tasks
        .iter()
        .any(|t| t.desired() == "running" && STARTING.contains(&t.state()))
    {
        return false;
    }
    services.iter().all(|svc| match svc.replicas {
        None => true,
        Some(want) => {
            let running = tasks
                .iter()
                .filter(|t| {
                    t.service_id == svc.id && t.desired() == "running" && t.state() == "running"
                })
                .count() as u64;
            running == want
        }
    })
}

/// One observation for a task whose desired and actual state are both running.
pub(crate) fn task_observation(
    t: &RawTask,
    svc: &SvcInfo,
    nodes: &NodeNames,
    s: &Settings,
    drops: &mut Drops,
) -> Option<Observation> {
    if t.desired() != "running" || t.state() != "running" {
        return None;
    }
    let empty = HashMap::new();
    let container_labels = t
        .spec
        .as_ref()
        .and_then(|sp| sp.container_spec.as_ref())
        .and_then(|c| c.labels.as_ref())
        .unwrap_or(&empty);
    let port = s
        .port
        .or_else(|| port_from_labels(&s.port_label, &[container_labels, &svc.labels], drops))
        .or(svc.target_port);

    let mut ranked: Vec<(usize, std::net::IpAddr)> = Vec::new();
    for att in t.networks_attachments.iter().flatten() {
        let Some(net) = att.network.as_ref() else {
            continue;
        };
        let (name, ingress) = net
            .spec
            .as_ref()
            .map(|sp| (sp.name.as_str(), sp.ingress || sp.name == "ingress"))
            .unwrap_or(("", false));
        let Some(rank) = network_rank(&s.networks, name, &net.id, ingress) else {
            continue;
        };
        for a in att.addresses.iter().flatten() {
            match parse_ip(a) {
                Some(ip) => ranked.push((rank, ip)),
                None => drops.drop("address", &format!("task {} has address {a:?}", t.id)),
            }
        }
    }
    if ranked.is_empty() && !s.networks.is_empty() {
        let attached: Vec<&str> = t
            .networks_attachments
            .iter()
            .flatten()
            .filter_map(|a| a.network.as_ref()?.spec.as_ref().map(|sp| sp.name.as_str()))
            .collect();
        if !attached.is_empty() {
            drops.note(
                "network_filter",
                &format!(
                    "`network` = {:?} matches none of the networks of task {} ({attached:?})",
                    s.networks, t.id
                ),
            );
        }
    }
    ranked.sort_by_key(|(r, _)| *r);
    let mut seen = BTreeSet::new();
    let addrs = ranked
        .into_iter()
        .filter(|(_, ip)| seen.insert(*ip))
        .map(|(_, ip)| addr(ip, port))
        .collect();

    let mut aliases = vec![Alias::new(AliasKind::TaskId, t.id.clone())];
    if let Some(cid) = t.container_id() {
        aliases.push(Alias::container_id(cid));
    }
    let mut labels = merge_labels(&[&svc.labels, container_labels]);
    labels.insert("swarm.service".into(), svc.name.clone());
    labels.insert("swarm.service_id".into(), svc.id.clone());
    let node_id = t.node_id.clone().filter(|n| !n.is_empty());
    if let Some(slot) = t.slot.filter(|s| *s > 0) {
        labels.insert("swarm.slot".into(), slot.to_string());
    }
    if let Some(n) = &node_id {
        labels.insert("swarm.node_id".into(), n.clone());
        labels.insert("swarm.node".into(), nodes.get(n).unwrap_or(n).to_owned());
    }
    let name = match (t.slot.filter(|s| *s > 0), &node_id) {
        (Some(slot), _) => format!("{}.{slot}", svc.name),
        (None, Some(n)) => format!("{}.{n}", svc.name),
        (None, None) => format!("{}.{}", svc.name, t.id),
    };
    Some(Observation {
        key: t.id.clone(),
        aliases,
        addrs,
        meta: Metadata {
            name: Some(name),
            status: None,
            capabilities: capabilities(&s.capabilities_label, &[container_labels, &svc.labels]),
            version: None,
            labels: labels.into(),
        },
        ttl: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    /// A `/tasks` answer captured from Docker 20.10 (trimmed to two tasks).
    const TASKS: &str = include_str!("../tests/fixtures/tasks-20.10.json");

    fn settings(extra: impl FnOnce(&mut Config)) -> Settings {
        let mut c = Config {
            service: vec!["explore".into()],
            docker_host: Some("unix:///var/run/docker.sock".into()),
            ..Default::default()
        };
        extra(&mut c);
        c.validate().unwrap()
    }

    fn svc(replicas: Option<u64>) -> SvcInfo {
        SvcInfo {
            id: "h3p8knvlszvzfm9q5p5orebb6".into(),
            name: "explore".into(),
            labels: [
                ("rollcall.port".to_owned(), "9000".to_owned()),
                (
                    "rollcall.capabilities".to_owned(),
                    "go_development,database_design".to_owned(),
                ),
            ]
            .into_iter()
            .collect(),
            target_port: Some(8080),
            replicas,
        }
    }

    fn tasks() -> Vec<RawTask> {
        serde_json::from_str(TASKS).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn maps_a_real_tasks_answer() {
        let ts = tasks();
        assert_eq!(ts.len(), 2);
        let mut d = Drops::new("t".into());
        let mut nodes = NodeNames::default();
        nodes
            .0
            .insert("r7am5omwvtav14swpex5mqvs7".into(), "vm".into());
        let o = task_observation(&ts[0], &svc(Some(2)), &nodes, &settings(|_| {}), &mut d).unwrap();
        assert_eq!(o.key, "oociyytzcmkbpuniojxiabc7t");
        assert_eq!(
            o.alias(AliasKind::TaskId),
            Some("oociyytzcmkbpuniojxiabc7t")
        );
        assert_eq!(
            o.alias(AliasKind::ContainerId),
            Some("074a6fbeb6f257cc5d711c81638e73532473363be2786a5e1329bd34690e4f88")
        );
        assert_eq!(
            o.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            vec!["/ip4/10.0.1.4/tcp/9000"]
        );
        assert_eq!(o.meta.name.as_deref(), Some("explore.1"));
        assert_eq!(
            o.meta.capabilities,
            vec!["go_development", "database_design"]
        );
        assert_eq!(o.meta.labels["swarm.service"], "explore");
        assert_eq!(o.meta.labels["swarm.slot"], "1");
        assert_eq!(o.meta.labels["swarm.node"], "vm");
        assert_eq!(o.meta.labels["swarm.node_id"], "r7am5omwvtav14swpex5mqvs7");
        assert_eq!(o.meta.labels["c"], "1", "container labels are metadata");

        // `port` wins over labels; an unknown network filter leaves no address.
        let o = task_observation(
            &ts[0],
            &svc(Some(2)),
            &nodes,
            &settings(|c| c.port = Some(7)),
            &mut d,
        )
        .unwrap();
        assert_eq!(o.addrs[0].to_string(), "/ip4/10.0.1.4/tcp/7");
        let o = task_observation(
            &ts[0],
            &svc(Some(2)),
            &nodes,
            &settings(|c| c.network = vec!["other".into()]),
            &mut d,
        )
        .unwrap();
        assert!(o.addrs.is_empty());
        let o = task_observation(
            &ts[0],
            &svc(Some(2)),
            &nodes,
            &settings(|c| c.network = vec!["explore-net".into()]),
            &mut d,
        )
        .unwrap();
        assert_eq!(o.addrs.len(), 1);
        // Without the label, the published target port.
        let mut plain = svc(Some(2));
        plain.labels.clear();
        let o = task_observation(
            &ts[0],
            &plain,
            &NodeNames::default(),
            &settings(|_| {}),
            &mut d,
        )
        .unwrap();
        assert_eq!(o.addrs[0].to_string(), "/ip4/10.0.1.4/tcp/8080");
        assert_eq!(
            o.meta.labels["swarm.node"], "r7am5omwvtav14swpex5mqvs7",
            "node id when the name is unknown"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_running_tasks_count_and_convergence() {
        let mut ts = tasks();
        let mut d = Drops::new("t".into());
        let s = settings(|_| {});
        assert!(converged(&[svc(Some(2))], &ts));
        assert!(
            !converged(&[svc(Some(3))], &ts),
            "fewer running than replicas"
        );
        assert!(converged(&[svc(None)], &ts), "global service");
        ts[1].status.as_mut().unwrap().state = Some("starting".into());
        assert!(!converged(&[svc(None)], &ts));
        assert!(task_observation(&ts[1], &svc(None), &NodeNames::default(), &s, &mut d).is_none());
        ts[1].status.as_mut().unwrap().state = Some("running".into());
        ts[1].desired_state = Some("shutdown".into());
        assert!(task_observation(&ts[1], &svc(None), &NodeNames::default(), &s, &mut d).is_none());
    }

    #[test]
    fn tolerates_nulls_and_missing_fields() {
        let t: RawTask = serde_json::from_str(
            r#"{"ID":"x","Labels":null,"Spec":{"ContainerSpec":{"Labels":null}},"Status":{"State":"running"},"DesiredState":"running","NetworksAttachments":null}"#,
        )
        .unwrap();
        assert_eq!(t.container_id(), None);
        let mut d = Drops::new("t".into());
        let mut s = svc(None);
        s.labels.clear();
        s.target_port = None;
        let o = task_observation(&t, &s, &NodeNames::default(), &settings(|_| {}), &mut d).unwrap();
        assert_eq!(o.aliases.len(), 1);
        assert!(o.addrs.is_empty());
        assert_eq!(o.meta.name.as_deref(), Some("explore.x"));
    }
}
