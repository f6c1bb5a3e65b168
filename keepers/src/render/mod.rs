//! One rendering for both engines: a lease's manifest becomes Kubernetes objects (a namespace
//! per lease, a Deployment and a Service per service, a NetworkPolicy that admits traffic from
//! the lease's own pods and to its public ports only), every object labelled with the chain,
//! the escrow and the lease so the keeper finds them again after a restart.

use std::collections::BTreeMap;

use alloy::primitives::{Address, U256};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            Capabilities, Container, ContainerPort, EnvVar, Namespace, PodSpec, PodTemplateSpec,
            ResourceRequirements, SecurityContext, Service as KubeService, ServicePort,
            ServiceSpec, VolumeMount,
        },
        networking::v1::{
            NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
            NetworkPolicySpec,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};

use berth_protocol::manifest::{Expose, Manifest, Service};

mod isolation;
mod secrets;
pub mod volumes;
pub use isolation::{GatewayPeers, service_upstream};
pub use secrets::{PullAuth, RegistryLogin, SECRETS_NAME, registry_of};

/// Label: chain id of the lease.
pub const LABEL_CHAIN: &str = "berth.dev/chain-id";
/// Label: escrow contract address (lowercase hex).
pub const LABEL_ESCROW: &str = "berth.dev/escrow";
/// Label: lease id (decimal).
pub const LABEL_LEASE: &str = "berth.dev/lease-id";
/// Label: the manifest's service name.
pub const LABEL_SERVICE: &str = "berth.dev/service";
/// Label: the version of the lease's manifest the objects run (0 for the opening one).
pub const LABEL_MANIFEST_VERSION: &str = "berth.dev/manifest-version";
/// Label (podman only: a digest reference is longer than Kubernetes allows a label value):
/// the image the service runs, pinned to the digest pulled.
pub const LABEL_IMAGE: &str = "berth.dev/image";
/// Name prefix of container ports exposed as HTTP (`http-8080`).
pub const HTTP_PORT_PREFIX: &str = "http-";

/// Label prefix of a public port: `berth.dev/port-<container port>: "<public port>"`.
pub const LABEL_PORT_PREFIX: &str = "berth.dev/port-";
/// Who manages the objects.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "berth-keeper");

/// Which lease a workload belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey {
    /// Chain id.
    pub chain_id: u64,
    /// `LeaseEscrow` address.
    pub escrow: Address,
    /// Lease id.
    pub lease_id: U256,
}

impl LeaseKey {
    /// The lease's namespace: `berth-<chain>-<first 8 hex of escrow>-<lease>`.
    pub fn namespace(&self) -> String {
        let escrow = hex_lower(self.escrow);
        format!(
            "berth-{}-{}-{}",
            self.chain_id,
            &escrow[2..10],
            self.lease_id
        )
    }

    /// The host-wide name of a lease's volume: `<namespace>-<volume>`, so that two leases
    /// naming a volume alike never share it. Every name of the lease starts with
    /// [`Self::volume_prefix`].
    pub fn volume_name(&self, volume: &str) -> String {
        format!("{}{volume}", self.volume_prefix())
    }

    /// What every volume name of the lease starts with (the `-` keeps lease 7 apart from 70).
    pub fn volume_prefix(&self) -> String {
        format!("{}-", self.namespace())
    }

    /// Labels every object of the lease carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_CHAIN.into(), self.chain_id.to_string()),
            (LABEL_ESCROW.into(), hex_lower(self.escrow)),
            (LABEL_LEASE.into(), self.lease_id.to_string()),
            (MANAGED_BY.0.into(), MANAGED_BY.1.into()),
        ])
    }

    /// The label selector of every workload of this escrow on this chain.
    pub fn escrow_selector(chain_id: u64, escrow: Address) -> String {
        format!(
            "{LABEL_CHAIN}={chain_id},{LABEL_ESCROW}={}",
            hex_lower(escrow)
        )
    }
}

fn hex_lower(a: Address) -> String {
    format!("{a:#x}")
}

/// Public ports of a lease: (service, container port) → public port.
pub type PortMap = BTreeMap<(String, u16), u16>;

/// A lease's objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The lease.
    pub key: LeaseKey,
    /// Its namespace.
    pub namespace: Namespace,
    /// Ingress isolation.
    pub network_policy: NetworkPolicy,
    /// One per manifest service with ports.
    pub services: Vec<KubeService>,
    /// One per manifest service.
    pub deployments: Vec<Deployment>,
    /// The lease's opened secrets, for the engine's secret object ([`SECRETS_NAME`]).
    pub secrets: Option<berth_protocol::secrets::SecretValues>,
    /// Registry credentials by image, from the services' `pull_secret`.
    pub pull_auth: PullAuth,
    /// One per persistent volume.
    pub claims: Vec<k8s_openapi::api::core::v1::PersistentVolumeClaim>,
}

impl Rendered {
    /// Labels every deployment and its pods with the manifest version they run, so that the
    /// engine's listing says which version a workload runs after any restart.
    pub fn with_manifest_version(mut self, version: u32) -> Self {
        let v = version.to_string();
        for d in &mut self.deployments {
            d.metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(LABEL_MANIFEST_VERSION.into(), v.clone());
            if let Some(meta) = d.spec.as_mut().and_then(|s| s.template.metadata.as_mut()) {
                meta.labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(LABEL_MANIFEST_VERSION.into(), v.clone());
            }
        }
        self
    }
}

/// Renders `manifest` for `key` with the public ports `ports` (one per exposed port).
pub fn render(key: LeaseKey, manifest: &Manifest, ports: &PortMap) -> Rendered {
    let ns = key.namespace();
    let labels = key.labels();
    let meta = |name: &str, extra: &[(&str, &str)]| {
        let mut l = labels.clone();
        l.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        );
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.clone()),
            labels: Some(l),
            ..ObjectMeta::default()
        }
    };
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.clone()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };

    let mut public_ports = Vec::new();
    let mut services = Vec::new();
    let mut deployments = Vec::new();
    for (name, svc) in &manifest.services {
        let mut port_labels: Vec<(String, String)> = Vec::new();
        let mut service_ports = Vec::new();
        for p in &svc.ports {
            let public = ports.get(&(name.clone(), p.port)).copied();
            if let Some(public) = public.filter(|_| p.expose != Expose::None) {
                port_labels.push((format!("{LABEL_PORT_PREFIX}{}", p.port), public.to_string()));
                public_ports.push(p.port);
            }
            service_ports.push(ServicePort {
                name: Some(format!("p{}", p.port)),
                port: p.port.into(),
                target_port: Some(IntOrString::Int(p.port.into())),
                node_port: public.filter(|_| p.expose != Expose::None).map(i32::from),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            });
        }
        let port_refs: Vec<(&str, &str)> = port_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut extra = vec![(LABEL_SERVICE, name.as_str())];
        extra.extend(port_refs);
        let selector: BTreeMap<String, String> = BTreeMap::from([
            (LABEL_LEASE.into(), key.lease_id.to_string()),
            (LABEL_ESCROW.into(), hex_lower(key.escrow)),
            (LABEL_SERVICE.into(), name.clone()),
        ]);
        if !service_ports.is_empty() {
            let exposed = service_ports.iter().any(|p| p.node_port.is_some());
            services.push(KubeService {
                metadata: meta(name, &[(LABEL_SERVICE, name.as_str())]),
                spec: Some(ServiceSpec {
                    type_: Some(if exposed { "NodePort" } else { "ClusterIP" }.into()),
                    selector: Some(selector.clone()),
                    ports: Some(service_ports),
                    ..ServiceSpec::default()
                }),
                ..KubeService::default()
            });
        }
        deployments.push(Deployment {
            metadata: meta(name, &extra),
            spec: Some(DeploymentSpec {
                replicas: Some(i32::try_from(svc.replicas).unwrap_or(1)),
                selector: LabelSelector {
                    match_labels: Some(selector),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: meta(name, &extra).labels,
                        ..ObjectMeta::default()
                    }),
                    spec: Some(pod_spec(name, svc)),
                },
                strategy: volumes::strategy(svc),
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        });
    }

    let mut ingress = vec![NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        }]),
        ..NetworkPolicyIngressRule::default()
    }];
    if !public_ports.is_empty() {
        public_ports.sort_unstable();
        public_ports.dedup();
        ingress.push(NetworkPolicyIngressRule {
            ports: Some(
                public_ports
                    .iter()
                    .map(|p| NetworkPolicyPort {
                        port: Some(IntOrString::Int((*p).into())),
                        protocol: Some("TCP".into()),
                        ..NetworkPolicyPort::default()
                    })
                    .collect(),
            ),
            ..NetworkPolicyIngressRule::default()
        });
    }
    let network_policy = NetworkPolicy {
        metadata: meta("isolate-lease", &[]),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            ..NetworkPolicySpec::default()
        }),
    };

    Rendered {
        namespace,
        network_policy,
        services,
        deployments,
        secrets: None,
        pull_auth: PullAuth::default(),
        claims: volumes::claims(&key, manifest),
        key,
    }
}

fn pod_spec(name: &str, svc: &Service) -> PodSpec {
    let (cpu, mem_mib, sto_gib) = svc.per_replica();
    let mut limits = BTreeMap::from([
        ("cpu".to_string(), Quantity(format!("{cpu}m"))),
        ("memory".to_string(), Quantity(format!("{mem_mib}Mi"))),
    ]);
    if sto_gib > 0 {
        limits.insert("ephemeral-storage".into(), Quantity(format!("{sto_gib}Gi")));
    }
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let container = Container {
        name: name.into(),
        image: Some(svc.image.clone()),
        command: non_empty(&svc.command),
        args: non_empty(&svc.args),
        env: (!svc.env.is_empty() || !svc.secret_env.is_empty()).then(|| {
            svc.env
                .iter()
                .map(|(k, v)| EnvVar {
                    name: k.clone(),
                    value: Some(v.clone()),
                    ..EnvVar::default()
                })
                .chain(secrets::secret_env(svc))
                .collect()
        }),
        ports: (!svc.ports.is_empty()).then(|| {
            svc.ports
                .iter()
                .map(|p| ContainerPort {
                    container_port: p.port.into(),
                    // Names the ports the gateway fronts (podman may publish them on loopback).
                    name: (p.expose == Expose::Http)
                        .then(|| format!("{HTTP_PORT_PREFIX}{}", p.port)),
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                })
                .collect()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(limits.clone()),
            limits: Some(limits),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: non_empty(
                    &svc.capabilities
                        .iter()
                        .map(|c| c.trim_start_matches("CAP_").to_ascii_uppercase())
                        .collect(),
                ),
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: (!svc.volumes.is_empty() || !svc.secret_files.is_empty()).then(|| {
            svc.volumes
                .iter()
                .map(|v| VolumeMount {
                    name: v.name.clone(),
                    mount_path: v.mount.clone(),
                    ..VolumeMount::default()
                })
                .chain(secrets::secret_file_mounts(svc))
                .collect()
        }),
        // A registry image is pulled at every deploy, with the lease's own credentials: an
        // image another lease pulled is no way around them, and a moved tag is seen.
        image_pull_policy: Some(
            if svc.image.starts_with("localhost/") {
                "IfNotPresent"
            } else {
                "Always"
            }
            .into(),
        ),
        ..Container::default()
    };
    PodSpec {
        containers: vec![container],
        image_pull_secrets: svc.pull_secret.as_ref().map(|s| {
            vec![k8s_openapi::api::core::v1::LocalObjectReference {
                name: secrets::pull_secret_name(s),
            }]
        }),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        volumes: volumes::pod_volumes(name, svc, secrets::secret_files_volume(svc)),
        ..PodSpec::default()
    }
}

impl Rendered {
    /// The objects as a multi-document YAML stream for podman's `kube play`. Podman has no
    /// namespaces, so deployments are named `<namespace>-<service>`, and a pod publishes its
    /// public ports as host ports (HTTP ports on `http_host_ip` only, when given: the
    /// gateway's side of the host, so no app is reachable around it); podman ignores the
    /// kinds it does not run (Namespace, NetworkPolicy, Service), which a single host does
    /// not need.
    /// Secret files are bind mounts of the files the engine writes under `secret_files` (the
    /// keeper's `secret_files_dir`).
    pub fn to_podman_yaml(
        &self,
        http_host_ip: Option<&str>,
        secret_files: &std::path::Path,
    ) -> Result<String, serde_yaml::Error> {
        let mut docs = vec![
            serde_yaml::to_string(&self.namespace)?,
            serde_yaml::to_string(&self.network_policy)?,
        ];
        for s in &self.services {
            docs.push(serde_yaml::to_string(s)?);
        }
        let ns = self.key.namespace();
        for d in &self.deployments {
            let mut d = d.clone();
            let service = d.metadata.name.clone().unwrap_or_default();
            d.metadata.name = Some(format!("{ns}-{service}"));
            d.metadata.namespace = None;
            let labels = d.metadata.labels.clone().unwrap_or_default();
            if let Some(spec) = d.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
                for c in &mut spec.containers {
                    for p in c.ports.iter_mut().flatten() {
                        let label = format!("{LABEL_PORT_PREFIX}{}", p.container_port);
                        p.host_port = labels.get(&label).and_then(|v| v.parse().ok());
                        if p.name
                            .as_deref()
                            .is_some_and(|n| n.starts_with(HTTP_PORT_PREFIX))
                        {
                            p.host_ip = http_host_ip.map(str::to_owned);
                        }
                    }
                    // The engine pulled the image already, with the lease's login, and pinned
                    // it to the digest it got: kube play must not pull again (without one).
                    c.image_pull_policy = Some("IfNotPresent".into());
                    // podman secrets are host-wide too.
                    for e in c.env.iter_mut().flatten() {
                        if let Some(r) = e
                            .value_from
                            .as_mut()
                            .and_then(|f| f.secret_key_ref.as_mut())
                        {
                            r.name = self.podman_secret_name();
                        }
                    }
                }
                secrets::files_from_host(spec, &self.secret_files_dir(secret_files));
                volumes::scope_to_lease(&self.key, spec);
            }
            docs.push(serde_yaml::to_string(&d)?);
        }
        Ok(docs.join("---\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LeaseKey {
        LeaseKey {
            chain_id: 31337,
            escrow: Address::repeat_byte(0xab),
            lease_id: U256::from(7),
        }
    }

    fn hello() -> Manifest {
        Manifest::parse(include_bytes!("../../../examples/hello/manifest.yaml")).expect("parses")
    }

    #[test]
    fn objects_carry_the_lease_labels_and_limits() {
        let ports = PortMap::from([(("web".into(), 8080), 30001)]);
        let r = render(key(), &hello(), &ports);
        assert_eq!(key().namespace(), "berth-31337-abababab-7");
        let d = &r.deployments[0];
        let labels = d.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[LABEL_LEASE], "7");
        assert_eq!(labels[LABEL_ESCROW], format!("0x{}", "ab".repeat(20)));
        assert_eq!(labels["berth.dev/port-8080"], "30001");
        let spec = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        let limits = spec.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .expect("limits");
        assert_eq!(limits["cpu"], Quantity("500m".into()));
        assert_eq!(limits["memory"], Quantity("256Mi".into()));
        let svc = r.services[0].spec.as_ref().expect("service spec");
        assert_eq!(svc.type_.as_deref(), Some("NodePort"));
        assert_eq!(svc.ports.as_ref().expect("ports")[0].node_port, Some(30001));
        let ingress = r
            .network_policy
            .spec
            .as_ref()
            .and_then(|s| s.ingress.as_ref())
            .expect("rules");
        assert_eq!(ingress.len(), 2, "own pods + the public port");
    }

    #[test]
    fn podman_yaml_publishes_host_ports_without_namespaces() {
        let ports = PortMap::from([(("web".into(), 8080), 30001)]);
        let yaml = render(key(), &hello(), &ports)
            .to_podman_yaml(None, std::path::Path::new("/run/s"))
            .expect("yaml");
        assert!(yaml.contains("name: berth-31337-abababab-7-web"), "{yaml}");
        assert!(yaml.contains("hostPort: 30001"), "{yaml}");
        assert!(
            !yaml.contains("hostIP"),
            "on every address without a gateway: {yaml}"
        );
        assert_eq!(yaml.matches("kind: Deployment").count(), 1);
        assert_eq!(
            yaml.split("---\n").count(),
            4,
            "namespace, policy, service, deployment"
        );
    }

    #[test]
    fn behind_a_gateway_http_ports_are_published_on_its_address_and_tcp_ports_everywhere() {
        let m = Manifest::parse(
            b"version: 1\nservices:\n  web:\n    image: x\n    ports: [{port: 80, expose: http}, {port: 9000, expose: tcp}]\n    resources: {cpu: 1, memory: 1Mi}\n",
        )
        .expect("parses");
        let ports = PortMap::from([(("web".into(), 80), 30001), (("web".into(), 9000), 30002)]);
        let yaml = render(key(), &m, &ports)
            .to_podman_yaml(Some("127.0.0.1"), std::path::Path::new("/run/s"))
            .expect("yaml");
        let entry = |port: &str| {
            yaml.split("- containerPort: ")
                .find(|e| e.starts_with(&format!("{port}\n")))
                .map(str::to_owned)
                .unwrap_or_default()
        };
        let (http, tcp) = (entry("80"), entry("9000"));
        assert!(
            http.contains("hostIP: 127.0.0.1") && http.contains("hostPort: 30001"),
            "{yaml}"
        );
        assert!(
            !tcp.contains("hostIP") && tcp.contains("hostPort: 30002"),
            "{yaml}"
        );
    }

    #[test]
    fn podman_volumes_are_scoped_to_the_lease() {
        let m = Manifest::parse(
            b"version: 1\nservices:\n  web:\n    image: x\n    resources: {cpu: 1, memory: 1Mi}\n    volumes: [{name: data, mount: /data}]\n",
        )
        .expect("parses");
        let other = LeaseKey {
            lease_id: U256::from(70),
            ..key()
        };
        let yaml = render(key(), &m, &PortMap::new())
            .to_podman_yaml(None, std::path::Path::new("/run/s"))
            .expect("yaml");
        assert!(yaml.contains("name: berth-31337-abababab-7-data"), "{yaml}");
        assert!(!yaml.contains("name: data"), "{yaml}");
        let yaml70 = render(other, &m, &PortMap::new())
            .to_podman_yaml(None, std::path::Path::new("/run/s"))
            .expect("yaml");
        assert!(
            yaml70.contains("name: berth-31337-abababab-70-data"),
            "{yaml70}"
        );
        assert!(
            !other
                .volume_name("data")
                .starts_with(&key().volume_prefix())
        );
    }

    #[test]
    fn rendering_is_deterministic() {
        let ports = PortMap::from([(("web".into(), 8080), 30001)]);
        assert_eq!(
            render(key(), &hello(), &ports),
            render(key(), &hello(), &ports)
        );
    }
}
