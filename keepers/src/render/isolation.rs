//! No way around the gateway on Kubernetes: a lease's HTTP ports get no NodePort (only the
//! ClusterIP Service, which the gateway reaches by its cluster DNS name) and the lease's
//! NetworkPolicy admits traffic to them only from the gateway — its namespace, or the
//! addresses it connects from when it runs outside the cluster. TCP ports stay NodePorts open
//! to all, and the lease's own pods still reach each other.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::networking::v1::{
        IPBlock, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::{HTTP_PORT_PREFIX, LABEL_PORT_PREFIX, LeaseKey, Rendered};

/// Where the gateway's connections come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPeers {
    /// The namespace the gateway runs in, if it runs in the cluster.
    pub namespace: Option<String>,
    /// Addresses (CIDR) it connects from, if it runs outside (e.g. the nodes' addresses).
    pub cidrs: Vec<String>,
}

impl GatewayPeers {
    fn peers(&self) -> Vec<NetworkPolicyPeer> {
        let by_namespace = self.namespace.iter().map(|ns| NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_owned(),
                    ns.clone(),
                )])),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        });
        let by_address = self.cidrs.iter().map(|cidr| NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: cidr.clone(),
                except: None,
            }),
            ..NetworkPolicyPeer::default()
        });
        by_namespace.chain(by_address).collect()
    }
}

/// The address the gateway reaches `service`'s `port` of `key` at: the Service's cluster DNS
/// name.
pub fn service_upstream(key: &LeaseKey, service: &str, port: u16, cluster_domain: &str) -> String {
    format!("{service}.{}.svc.{cluster_domain}:{port}", key.namespace())
}

fn tcp_port(port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port.into())),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }
}

impl Rendered {
    /// The lease's public ports, HTTP ones apart: (HTTP, TCP) container ports.
    fn public_ports(&self) -> (Vec<u16>, Vec<u16>) {
        let (mut http, mut tcp) = (Vec::new(), Vec::new());
        for d in &self.deployments {
            let labels = d.metadata.labels.clone().unwrap_or_default();
            let containers = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|p| p.containers.as_slice())
                .unwrap_or_default();
            for p in containers.iter().flat_map(|c| c.ports.iter().flatten()) {
                let Ok(port) = u16::try_from(p.container_port) else {
                    continue;
                };
                if !labels.contains_key(&format!("{LABEL_PORT_PREFIX}{port}")) {
                    continue;
                }
                if p.name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(HTTP_PORT_PREFIX))
                {
                    http.push(port);
                } else {
                    tcp.push(port);
                }
            }
        }
        for v in [&mut http, &mut tcp] {
            v.sort_unstable();
            v.dedup();
        }
        (http, tcp)
    }

    /// These objects with HTTP ports reachable only from the gateway's `peers`.
    #[must_use]
    pub fn behind_gateway(mut self, peers: &GatewayPeers) -> Self {
        let (http, tcp) = self.public_ports();
        for s in &mut self.services {
            let Some(spec) = s.spec.as_mut() else {
                continue;
            };
            for p in spec.ports.iter_mut().flatten() {
                if u16::try_from(p.port).is_ok_and(|port| http.contains(&port)) {
                    p.node_port = None;
                }
            }
            let exposed = spec.ports.iter().flatten().any(|p| p.node_port.is_some());
            spec.type_ = Some(if exposed { "NodePort" } else { "ClusterIP" }.into());
        }
        if let Some(spec) = self.network_policy.spec.as_mut() {
            // The lease's own pods (always the first rule), then the public TCP ports from
            // anywhere, then the HTTP ports from the gateway alone.
            let own = spec
                .ingress
                .as_ref()
                .and_then(|rules| rules.first().cloned())
                .unwrap_or_default();
            let mut rules = vec![own];
            if !tcp.is_empty() {
                rules.push(NetworkPolicyIngressRule {
                    ports: Some(tcp.iter().copied().map(tcp_port).collect()),
                    ..NetworkPolicyIngressRule::default()
                });
            }
            let from = peers.peers();
            if !http.is_empty() && !from.is_empty() {
                rules.push(NetworkPolicyIngressRule {
                    from: Some(from),
                    ports: Some(http.iter().copied().map(tcp_port).collect()),
                });
            }
            spec.ingress = Some(rules);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, U256};
    use berth_protocol::manifest::Manifest;

    use super::*;
    use crate::render::{PortMap, render};

    fn key() -> LeaseKey {
        LeaseKey {
            chain_id: 31337,
            escrow: Address::repeat_byte(0xab),
            lease_id: U256::from(7),
        }
    }

    const TWO_PORTS: &str = "version: 1
services:
  web:
    image: localhost/berth-hello:latest
    ports:
      - port: 8080
        expose: http
      - port: 5432
        expose: tcp
      - port: 9000
    resources:
      cpu: 500m
      memory: 256Mi
";

    #[test]
    fn http_ports_lose_their_node_port_and_admit_only_the_gateway() {
        let manifest = Manifest::parse(TWO_PORTS.as_bytes()).expect("parses");
        let ports = PortMap::from([(("web".into(), 8080), 30001), (("web".into(), 5432), 30002)]);
        let peers = GatewayPeers {
            namespace: Some("berth-system".into()),
            cidrs: vec!["10.0.0.5/32".into()],
        };
        let r = render(key(), &manifest, &ports).behind_gateway(&peers);
        let svc = r.services[0].spec.as_ref().expect("spec");
        assert_eq!(
            svc.type_.as_deref(),
            Some("NodePort"),
            "the TCP port keeps one"
        );
        let node_ports: Vec<_> = svc
            .ports
            .iter()
            .flatten()
            .map(|p| (p.port, p.node_port))
            .collect();
        assert_eq!(
            node_ports,
            [(8080, None), (5432, Some(30002)), (9000, None)]
        );
        let rules = r
            .network_policy
            .spec
            .and_then(|s| s.ingress)
            .expect("rules");
        assert_eq!(rules.len(), 3);
        assert!(rules[0].ports.is_none(), "own pods: every port");
        let port_of = |rule: &NetworkPolicyIngressRule| -> Vec<IntOrString> {
            rule.ports
                .iter()
                .flatten()
                .filter_map(|p| p.port.clone())
                .collect()
        };
        assert_eq!(port_of(&rules[1]), [IntOrString::Int(5432)]);
        assert!(rules[1].from.is_none(), "TCP: from anywhere");
        assert_eq!(port_of(&rules[2]), [IntOrString::Int(8080)]);
        let from = rules[2].from.as_ref().expect("only the gateway");
        assert_eq!(from.len(), 2);
        assert_eq!(
            from[0]
                .namespace_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                .map(|l| l["kubernetes.io/metadata.name"].as_str()),
            Some("berth-system")
        );
        assert_eq!(
            from[1].ip_block.as_ref().map(|b| b.cidr.as_str()),
            Some("10.0.0.5/32")
        );
    }

    #[test]
    fn an_http_only_lease_has_a_cluster_ip_service() {
        let manifest = Manifest::parse(include_bytes!("../../../examples/hello/manifest.yaml"))
            .expect("parses");
        let ports = PortMap::from([(("web".into(), 8080), 30001)]);
        let peers = GatewayPeers {
            namespace: Some("berth-system".into()),
            cidrs: vec![],
        };
        let r = render(key(), &manifest, &ports).behind_gateway(&peers);
        let svc = r.services[0].spec.as_ref().expect("spec");
        assert_eq!(svc.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(
            service_upstream(&key(), "web", 8080, "cluster.local"),
            "web.berth-31337-abababab-7.svc.cluster.local:8080"
        );
    }
}
