//! Intake of a new lease: every check that decides between deploying it and rejecting it on
//! chain, each failure with its typed reason and the rule that failed.

use std::{collections::BTreeSet, ops::RangeInclusive};

use berth_bindings::RejectReason;

use berth_protocol::manifest::{
    self, Expose, Manifest,
    policy::{self, Policy, Reservation},
};

use alloy::primitives::U256;

use crate::{render::PortMap, routes::AppsDomain};

/// A decision to reject: the on-chain reason and the rule, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The reason put on chain.
    pub reason: RejectReason,
    /// Which rule failed, in words.
    pub rule: String,
}

impl Rejection {
    /// A rejection for `reason` because of `rule`.
    pub fn new(reason: RejectReason, rule: impl Into<String>) -> Self {
        Self {
            reason,
            rule: rule.into(),
        }
    }
}

/// Checks manifest bytes for a lease: hash, schema, reservation, policy.
pub fn check_manifest(
    bytes: &[u8],
    expected: alloy::primitives::B256,
    reservation: Reservation,
    policy: &Policy,
) -> Result<Manifest, Rejection> {
    manifest::verify(bytes, expected)
        .map_err(|e| Rejection::new(e.reject_reason(), e.to_string()))?;
    let m = Manifest::parse(bytes)
        .map_err(|e| Rejection::new(RejectReason::ManifestInvalid, e.to_string()))?;
    policy::check_reservation(m.totals(), reservation)
        .map_err(|v| Rejection::new(v.reject_reason(), v.to_string()))?;
    policy
        .check(&m)
        .map_err(|v| Rejection::new(v.reject_reason(), v.to_string()))?;
    Ok(m)
}

/// Assigns a public port to every exposed port of `m`: the one the manifest asks for, or the
/// lowest free one of `range`. `used` are the public ports other workloads hold; `bindable`
/// says whether nothing else on the host holds a port (always true where the engine, not this
/// host, owns the ports).
pub fn assign_ports(
    m: &Manifest,
    range: &RangeInclusive<u16>,
    used: &BTreeSet<u16>,
    bindable: impl Fn(u16) -> bool,
) -> Result<PortMap, Rejection> {
    let mut taken = used.clone();
    let mut map = PortMap::new();
    // Explicit requests first, so an automatic pick cannot take a port someone asked for.
    for (name, s) in &m.services {
        for p in s.ports.iter().filter(|p| p.expose != Expose::None) {
            if let Some(hp) = p.host_port {
                if !taken.insert(hp) || !bindable(hp) {
                    return Err(Rejection::new(
                        RejectReason::CapacityUnavailable,
                        format!("public port {hp} requested by services.{name} is taken"),
                    ));
                }
                map.insert((name.clone(), p.port), hp);
            }
        }
    }
    for (name, s) in &m.services {
        for p in s
            .ports
            .iter()
            .filter(|p| p.expose != Expose::None && p.host_port.is_none())
        {
            let free = range
                .clone()
                .find(|c| !taken.contains(c) && bindable(*c))
                .ok_or_else(|| {
                    Rejection::new(
                        RejectReason::CapacityUnavailable,
                        format!("no free public port in {}-{}", range.start(), range.end()),
                    )
                })?;
            taken.insert(free);
            map.insert((name.clone(), p.port), free);
        }
    }
    Ok(map)
}

/// The endpoint confirmed on chain: one exposed port gives its URL (`http://host:port`) or
/// address (`host:port`); several give `service/port=...` pairs joined by commas.
pub fn endpoint(
    m: &Manifest,
    ports: &PortMap,
    host: &str,
    web: Option<(&AppsDomain, U256)>,
) -> String {
    let names = web
        .map(|(apps, lease)| apps.hostnames(m, lease))
        .unwrap_or_default();
    let mut parts = Vec::new();
    for (name, s) in &m.services {
        for p in &s.ports {
            let Some(public) = ports.get(&(name.clone(), p.port)) else {
                continue;
            };
            let named = names
                .iter()
                .find(|n| n.service == *name && n.port == p.port);
            let addr = match (p.expose, named, web) {
                (Expose::Http, Some(n), Some((apps, _))) => apps.url(&n.host),
                (Expose::Http, _, _) => format!("http://{host}:{public}"),
                (Expose::Tcp, _, _) => format!("{host}:{public}"),
                (Expose::None, _, _) => continue,
            };
            parts.push((format!("{name}/{}", p.port), addr));
        }
    }
    match parts.as_slice() {
        [] => format!("{host} (no public ports)"),
        [(_, addr)] => addr.clone(),
        _ => parts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::keccak256;

    use super::*;

    const TWO: &[u8] = b"version: 1\nservices:\n  api:\n    image: x\n    ports: [{port: 80, expose: http}, {port: 9000, expose: tcp, host_port: 30000}]\n    resources: {cpu: 100m, memory: 16Mi}\n";

    fn roomy() -> Reservation {
        Reservation {
            cpu_millis: 1000,
            memory_mib: 1024,
            storage_gib: 1,
        }
    }

    #[test]
    fn every_check_has_its_reason() {
        let p = Policy::default();
        let reason = |bytes: &[u8], hash, r| {
            check_manifest(bytes, hash, r, &p)
                .expect_err("rejects")
                .reason
        };
        assert_eq!(
            reason(TWO, keccak256(b"other"), roomy()),
            RejectReason::ManifestHashMismatch
        );
        assert_eq!(
            reason(b"version: [", keccak256(b"version: ["), roomy()),
            RejectReason::ManifestInvalid
        );
        let tight = Reservation {
            cpu_millis: 50,
            ..roomy()
        };
        assert_eq!(
            reason(TWO, keccak256(TWO), tight),
            RejectReason::ResourcesExceedReservation
        );
        let big = vec![b'#'; manifest::MAX_MANIFEST_BYTES + 1];
        assert_eq!(
            reason(&big, keccak256(&big), roomy()),
            RejectReason::ManifestInvalid
        );
        assert!(check_manifest(TWO, keccak256(TWO), roomy(), &p).is_ok());
    }

    #[test]
    fn ports_honour_requests_then_fill_the_lowest_free() {
        let m = Manifest::parse(TWO).expect("parses");
        let ports =
            assign_ports(&m, &(30000..=30002), &BTreeSet::from([30001]), |_| true).expect("fits");
        assert_eq!(ports[&("api".into(), 9000)], 30000);
        assert_eq!(ports[&("api".into(), 80)], 30002);
        assert_eq!(
            endpoint(&m, &ports, "h", None),
            "api/80=http://h:30002,api/9000=h:30000"
        );
        let apps = AppsDomain::new("apps.test", 443, 1, alloy::primitives::Address::ZERO);
        assert_eq!(
            endpoint(&m, &ports, "h", Some((&apps, U256::from(5)))),
            format!(
                "api/80=https://api-5-{}.apps.test,api/9000=h:30000",
                apps.tag
            ),
            "HTTP through the gateway by hostname, TCP as before"
        );
        let full = assign_ports(&m, &(30000..=30001), &BTreeSet::from([30001]), |_| true)
            .expect_err("full");
        assert_eq!(full.reason, RejectReason::CapacityUnavailable);
        let taken = assign_ports(&m, &(30000..=30002), &BTreeSet::from([30000]), |_| true)
            .expect_err("taken");
        assert!(taken.rule.contains("30000"));
        let held = assign_ports(&m, &(30000..=30003), &BTreeSet::new(), |p| p != 30000)
            .expect_err("a requested port another process holds");
        assert_eq!(held.reason, RejectReason::CapacityUnavailable);
        let busy_host =
            assign_ports(&m, &(30000..=30003), &BTreeSet::new(), |p| p != 30001).expect("fits");
        assert_eq!(
            busy_host[&("api".into(), 80)],
            30002,
            "a port bound by another process is skipped"
        );
    }
}
