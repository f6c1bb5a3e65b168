//! The provider's rules on what a manifest may ask for, applied before anything is deployed.

use std::{collections::BTreeSet, ops::RangeInclusive};

use crate::lease::RejectReason;

use super::{Expose, Manifest, Totals};

/// Capabilities a container may add unless the provider configures its own set: the ones a
/// web service may need to bind low ports or drop privileges, none that reach the host.
pub const SAFE_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "SETGID",
    "SETUID",
];

/// Paths the container runtime fills with kernel filesystems: a volume there is refused.
pub const KERNEL_MOUNTS: &[&str] = &["/proc", "/sys", "/dev"];

/// What a provider allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Public ports tenants may ask for (and the keeper assigns from).
    pub host_ports: RangeInclusive<u16>,
    /// Capabilities a service may add.
    pub allowed_capabilities: BTreeSet<String>,
    /// One host publishes every public port itself (the podman engine): each replica would
    /// claim the same port, so services with public ports run one replica.
    pub single_host: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            host_ports: 30000..=32767,
            allowed_capabilities: SAFE_CAPABILITIES.iter().map(|c| (*c).to_string()).collect(),
            single_host: false,
        }
    }
}

/// A rule a manifest breaks; the message says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// More than the lease reserved.
    #[error("manifest needs {needed} {resource}, the lease reserved {reserved}")]
    ExceedsReservation {
        /// `cpu millicores`, `memory MiB` or `storage GiB`.
        resource: &'static str,
        /// What the manifest needs over all replicas.
        needed: u64,
        /// What the lease reserved.
        reserved: u64,
    },
    /// A rule of the provider's policy.
    #[error("policy: {0}")]
    Policy(String),
}

impl Violation {
    /// The reason the keeper puts on chain.
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            Self::ExceedsReservation { .. } => RejectReason::ResourcesExceedReservation,
            Self::Policy(_) => RejectReason::PolicyViolation,
        }
    }
}

/// A lease's reservation, in its on-chain units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// CPU millicores.
    pub cpu_millis: u32,
    /// Memory MiB.
    pub memory_mib: u32,
    /// Storage GiB.
    pub storage_gib: u32,
}

/// Checks that the manifest fits the reservation.
pub fn check_reservation(totals: Totals, r: Reservation) -> Result<(), Violation> {
    for (resource, needed, reserved) in [
        ("cpu millicores", totals.cpu_millis, r.cpu_millis),
        ("memory MiB", totals.memory_mib, r.memory_mib),
        ("storage GiB", totals.storage_gib, r.storage_gib),
    ] {
        if needed > u64::from(reserved) {
            return Err(Violation::ExceedsReservation {
                resource,
                needed,
                reserved: reserved.into(),
            });
        }
    }
    Ok(())
}

impl Policy {
    /// Checks every service against the policy; the first broken rule is returned.
    pub fn check(&self, manifest: &Manifest) -> Result<(), Violation> {
        let deny = |rule: String| Err(Violation::Policy(rule));
        for (name, s) in &manifest.services {
            if s.privileged {
                return deny(format!(
                    "services.{name}.privileged: privileged containers are not allowed"
                ));
            }
            if s.host_network {
                return deny(format!(
                    "services.{name}.host_network: the host network is not allowed"
                ));
            }
            for v in &s.volumes {
                if v.host_path.is_some() {
                    return deny(format!(
                        "services.{name}.volumes.{}: host paths are not allowed",
                        v.name
                    ));
                }
                let mount = v.mount.trim_end_matches('/');
                if let Some(k) = KERNEL_MOUNTS.iter().find(|k| {
                    mount.is_empty() || mount == **k || mount.starts_with(&format!("{k}/"))
                }) {
                    return deny(format!(
                        "services.{name}.volumes.{}: a volume may not cover {}",
                        v.name,
                        if mount.is_empty() { "/" } else { k }
                    ));
                }
            }
            for cap in &s.capabilities {
                let cap = cap.trim_start_matches("CAP_").to_ascii_uppercase();
                if !self.allowed_capabilities.contains(&cap) {
                    return deny(format!(
                        "services.{name}.capabilities: {cap} is not allowed"
                    ));
                }
            }
            if self.single_host
                && s.replicas > 1
                && s.ports.iter().any(|p| p.expose != Expose::None)
            {
                return deny(format!(
                    "services.{name}.replicas: this provider runs one host, where a service with public ports runs one replica"
                ));
            }
            for p in &s.ports {
                if let Some(hp) = p.host_port
                    && p.expose != Expose::None
                    && !self.host_ports.contains(&hp)
                {
                    return deny(format!(
                        "services.{name}.ports: public port {hp} is outside {}-{}",
                        self.host_ports.start(),
                        self.host_ports.end()
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: &str) -> Manifest {
        let text = format!(
            "version: 1\nservices:\n  web:\n    image: x\n    resources: {{cpu: 500m, memory: 64Mi}}\n{extra}"
        );
        Manifest::parse(text.as_bytes()).expect("test manifest parses")
    }

    fn rule(extra: &str) -> String {
        Policy::default()
            .check(&manifest(extra))
            .expect_err("must violate")
            .to_string()
    }

    #[test]
    fn a_plain_service_passes() {
        assert_eq!(
            Policy::default().check(&manifest("    capabilities: [NET_BIND_SERVICE]\n")),
            Ok(())
        );
    }

    #[test]
    fn each_rule_is_named() {
        assert!(rule("    privileged: true\n").contains("privileged"));
        assert!(rule("    host_network: true\n").contains("host network"));
        assert!(
            rule("    volumes: [{name: etc, mount: /etc, host_path: /etc}]\n")
                .contains("host paths")
        );
        assert!(rule("    volumes: [{name: p, mount: /proc}]\n").contains("may not cover /proc"));
        assert!(rule("    volumes: [{name: s, mount: /sys/fs/}]\n").contains("may not cover /sys"));
        assert!(rule("    volumes: [{name: r, mount: /}]\n").contains("may not cover /"));
        assert_eq!(
            Policy::default().check(&manifest("    volumes: [{name: d, mount: /devices}]\n")),
            Ok(())
        );
        assert!(rule("    capabilities: [SYS_ADMIN]\n").contains("SYS_ADMIN"));
        assert!(rule("    capabilities: [CAP_NET_ADMIN]\n").contains("NET_ADMIN"));
        assert!(rule("    ports: [{port: 80, expose: tcp, host_port: 22}]\n").contains("port 22"));
        let v = Policy::default()
            .check(&manifest("    privileged: true\n"))
            .expect_err("violates");
        assert_eq!(v.reject_reason(), RejectReason::PolicyViolation);
    }

    #[test]
    fn a_single_host_runs_one_replica_of_a_public_service() {
        let m = manifest("    replicas: 2\n    ports: [{port: 80, expose: http}]\n");
        assert_eq!(Policy::default().check(&m), Ok(()));
        let single = Policy {
            single_host: true,
            ..Policy::default()
        };
        assert!(
            single
                .check(&m)
                .expect_err("violates")
                .to_string()
                .contains("replicas")
        );
        let internal = manifest("    replicas: 2\n    ports: [{port: 80}]\n");
        assert_eq!(single.check(&internal), Ok(()));
    }

    #[test]
    fn reservations_are_checked_per_resource() {
        let t = manifest("    replicas: 2\n").totals();
        let fits = Reservation {
            cpu_millis: 1000,
            memory_mib: 128,
            storage_gib: 0,
        };
        assert_eq!(check_reservation(t, fits), Ok(()));
        let err = check_reservation(
            t,
            Reservation {
                memory_mib: 127,
                ..fits
            },
        )
        .expect_err("too small");
        assert_eq!(
            err.reject_reason(),
            RejectReason::ResourcesExceedReservation
        );
        assert_eq!(
            err.to_string(),
            "manifest needs 128 memory MiB, the lease reserved 127"
        );
    }
}
