//! `mode = "containers"`: running containers selected by label, on any daemon
//! (no swarm needed; docker compose users).

use std::collections::{BTreeSet, HashMap, HashSet};

use bollard::models::{ContainerSummary, PortSummaryTypeEnum};
use bollard::query_parameters::ListContainersOptions;
use discovery_core::{Alias, Metadata, Observation};

use crate::config::Settings;
use crate::docker::Conn;
use crate::observe::{
    addr, capabilities, merge_labels, network_rank, parse_ip, port_from_labels, Drops,
};
use crate::swarm::Refresh;
use crate::Error;

/// The docker compose label that names a container's compose service.
pub(crate) const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// Lists the selected running containers.
pub(crate) async fn refresh(
    conn: &Conn,
    s: &Settings,
    drops: &mut Drops,
) -> Result<Refresh, Error> {
    let mut filters: HashMap<String, Vec<String>> = HashMap::new();
    filters.insert("status".into(), vec!["running".into()]);
    if !s.labels.is_empty() {
        filters.insert(
            "label".into(),
            s.labels.iter().map(|l| l.as_filter()).collect(),
        );
    }
    let opts = ListContainersOptions {
        all: false,
        filters: Some(filters),
        ..Default::default()
    };
    let list = conn
        .api
        .list_containers(Some(opts))
        .await
        .map_err(|e| conn.api_error("GET /containers/json", e))?;
    let mut observations = Vec::new();
    let mut ids = HashSet::new();
    for c in &list {
        if let Some(o) = container_observation(c, s, drops) {
            ids.insert(o.key.clone());
            observations.push(o);
        }
    }
    observations.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Refresh {
        observations,
        converged: true,
        known: ids,
    })
}

/// One observation for a running container that matches the selection.
pub(crate) fn container_observation(
    c: &ContainerSummary,
    s: &Settings,
    drops: &mut Drops,
) -> Option<Observation> {
    let Some(id) = c.id.clone().filter(|i| !i.is_empty()) else {
        drops.drop("container", "a container without an Id");
        return None;
    };
    let empty = HashMap::new();
    let labels_in = c.labels.as_ref().unwrap_or(&empty);
    if !s.labels.iter().all(|l| l.matches(labels_in)) {
        return None;
    }
    if !s.services.is_empty()
        && !labels_in
            .get(COMPOSE_SERVICE)
            .is_some_and(|v| s.services.contains(v))
    {
        return None;
    }
    let exposed = c.ports.as_ref().and_then(|ps| {
        ps.iter()
            .filter(|p| matches!(p.typ, None | Some(PortSummaryTypeEnum::TCP)))
            .map(|p| p.private_port)
            .filter(|p| *p > 0)
            .min()
    });
    let port = s
        .port
        .or_else(|| port_from_labels(&s.port_label, &[labels_in], drops))
        .or(exposed);
    let mut ranked = Vec::new();
    if let Some(nets) = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
    {
        let mut names: Vec<&String> = nets.keys().collect();
        names.sort();
        for name in names {
            let ep = &nets[name];
            let net_id = ep.network_id.as_deref().unwrap_or("");
            let Some(rank) = network_rank(&s.networks, name, net_id, name == "ingress") else {
                continue;
            };
            if let Some(ip) = ep.ip_address.as_deref().filter(|i| !i.is_empty()) {
                match parse_ip(ip) {
                    Some(ip) => ranked.push((rank, ip)),
                    None => drops.drop("address", &format!("container {id} has address {ip:?}")),
                }
            }
        }
    }
    ranked.sort_by_key(|(r, _)| *r);
    let mut seen = BTreeSet::new();
    let addrs = ranked
        .into_iter()
        .filter(|(_, ip)| seen.insert(*ip))
        .map(|(_, ip)| addr(ip, port))
        .collect();
    let name = c
        .names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_owned())
        .filter(|n| !n.is_empty());
    let mut labels = merge_labels(&[labels_in]);
    if let Some(n) = &name {
        labels.insert("docker.container".into(), n.clone());
    }
    Some(Observation {
        key: id.clone(),
        aliases: vec![Alias::container_id(id)],
        addrs,
        meta: Metadata {
            name,
            status: None,
            capabilities: capabilities(&s.capabilities_label, &[labels_in]),
            version: None,
            labels: labels.into(),
        },
        ttl: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;
    use crate::Config;
    use bollard::models::{ContainerSummaryNetworkSettings, EndpointSettings, PortSummary};

    fn summary() -> ContainerSummary {
        let mut nets = HashMap::new();
        nets.insert(
            "app_default".to_owned(),
            EndpointSettings {
                ip_address: Some("172.20.0.3".into()),
                network_id: Some("n1".into()),
                ..Default::default()
            },
        );
        nets.insert(
            "bridge".to_owned(),
            EndpointSettings {
                ip_address: Some("".into()),
                ..Default::default()
            },
        );
        ContainerSummary {
            id: Some("59e0f87c2aa3f495e0ae069c51fb8b62a1e18c27ed19a09efa5b84286933cf78".into()),
            names: Some(vec!["/app-agent-1".into()]),
            labels: Some(
                [(COMPOSE_SERVICE, "agent"), ("rollcall.capabilities", "go")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
            ports: Some(vec![
                PortSummary {
                    private_port: 9000,
                    typ: Some(PortSummaryTypeEnum::TCP),
                    ..Default::default()
                },
                PortSummary {
                    private_port: 53,
                    typ: Some(PortSummaryTypeEnum::UDP),
                    ..Default::default()
                },
            ]),
            network_settings: Some(ContainerSummaryNetworkSettings {
                networks: Some(nets),
            }),
            ..Default::default()
        }
    }

    fn settings(c: Config) -> Settings {
        Config {
            mode: Mode::Containers,
            docker_host: Some("unix:///var/run/docker.sock".into()),
            ..c
        }
        .validate()
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn maps_a_container() {
        let mut d = Drops::new("t".into());
        let s = settings(Config {
            service: vec!["agent".into()],
            ..Default::default()
        });
        let o = container_observation(&summary(), &s, &mut d).unwrap();
        assert_eq!(o.key.len(), 64);
        assert_eq!(o.meta.name.as_deref(), Some("app-agent-1"));
        assert_eq!(
            o.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            vec!["/ip4/172.20.0.3/tcp/9000"]
        );
        assert_eq!(o.meta.capabilities, vec!["go"]);
        let other = settings(Config {
            service: vec!["db".into()],
            ..Default::default()
        });
        assert!(container_observation(&summary(), &other, &mut d).is_none());
        let by_label = settings(Config {
            label: vec!["rollcall.capabilities".into()],
            port: Some(1),
            ..Default::default()
        });
        let o = container_observation(&summary(), &by_label, &mut d).unwrap();
        assert_eq!(o.addrs[0].to_string(), "/ip4/172.20.0.3/tcp/1");
    }
}
