use serde_json::json;

use super::*;

fn args(v: serde_json::Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn fold(events: &[(&str, &str, serde_json::Value, u64)]) -> Fold {
    let mut f = Fold::default();
    let maps: Vec<_> = events.iter().map(|(_, _, a, _)| args(a.clone())).collect();
    for ((contract, event, _, time), a) in events.iter().zip(&maps) {
        f.apply(EventRef {
            contract,
            event,
            lease_id: a.get("leaseId").and_then(Value::as_str),
            provider_id: a.get("providerId").and_then(Value::as_str),
            args: a,
            block_time: *time,
        });
    }
    f
}

#[test]
fn a_lease_history_folds_into_its_current_state() {
    let f = fold(&[
        (
            "escrow",
            "LeaseOpened",
            json!({"leaseId": "7", "providerId": "2", "tenant": "0xT", "priceVersion": "1",
                   "cpuMillis": "500", "memoryMiB": "256", "storageGiB": "1", "manifestHash": "0xh0",
                   "manifestUri": "u0", "deposit": "1000", "maxRate": "5"}),
            100,
        ),
        (
            "escrow",
            "LeaseConfirmed",
            json!({"leaseId": "7", "endpoint": "https://e"}),
            110,
        ),
        (
            "escrow",
            "LeaseToppedUp",
            json!({"leaseId": "7", "amount": "50"}),
            120,
        ),
        (
            "escrow",
            "UsageReported",
            json!({"leaseId": "7", "providerId": "2", "sequence": "1", "to": "3600", "charge": "30"}),
            86_400 + 5,
        ),
        (
            "escrow",
            "UsageReported",
            json!({"leaseId": "7", "providerId": "2", "sequence": "2", "to": "7200", "charge": "20"}),
            86_400 + 9,
        ),
        (
            "escrow",
            "ManifestUpdated",
            json!({"leaseId": "7", "version": "1", "manifestHash": "0xh1", "manifestUri": "u1"}),
            130,
        ),
        ("escrow", "LeaseSuspended", json!({"leaseId": "7"}), 140),
        (
            "escrow",
            "LeaseClosed",
            json!({"leaseId": "7", "reason": "1", "closedAt": "150"}),
            150,
        ),
        (
            "escrow",
            "LeaseWithdrawn",
            json!({"leaseId": "7", "amount": "900"}),
            160,
        ),
    ]);
    let l = &f.leases["7"];
    assert_eq!(l.openings, 1);
    assert_eq!(l.withdrawals, 1);
    assert_eq!(
        l.status_event,
        Some("closing"),
        "closed after the withdrawal, in SQL"
    );
    assert_eq!(l.close_reason, Some("tenant_closed"));
    assert_eq!(l.manifest_hash.as_deref(), Some("0xh1"));
    assert_eq!(l.manifest_version, Some(1));
    assert_eq!(l.charged, U256::from(50));
    assert_eq!(l.topped_up, U256::from(50));
    assert_eq!(l.withdrawn, U256::from(900));
    assert_eq!(l.report_count, Some(2));
    assert_eq!((l.reports, l.reported_seconds), (2, 3600 + 7200));
    assert_eq!(l.last_report_to, Some(7200));
    assert_eq!((l.opened_at, l.confirmed_at), (Some(100), Some(110)));
    assert_eq!(l.last_suspended_at, Some(140));
    assert_eq!(l.closed_at_s, Some(150));
    let day = &f.revenue[&(86_400, "2".to_owned())];
    assert_eq!((day.charged, day.reports), (U256::from(50), 2));
}

#[test]
fn a_run_without_status_events_leaves_the_status_alone() {
    let f = fold(&[(
        "escrow",
        "LeaseToppedUp",
        json!({"leaseId": "1", "amount": "3"}),
        1,
    )]);
    assert_eq!(f.leases["1"].status_event, None);
    assert_eq!(f.leases["1"].openings, 0);
}

#[test]
fn rejections_name_their_reason_and_unknown_ones_keep_the_last() {
    let f = fold(&[
        (
            "escrow",
            "LeaseRejected",
            json!({"leaseId": "1", "reason": "9"}),
            1,
        ),
        (
            "escrow",
            "LeaseRejected",
            json!({"leaseId": "2", "reason": "77"}),
            1,
        ),
    ]);
    assert_eq!(f.leases["1"].close_reason, Some("image_unavailable"));
    assert_eq!(f.leases["2"].close_reason, None);
    assert_eq!(f.leases["2"].status_event, Some("rejected"));
}

#[test]
fn provider_changes_take_the_latest_and_reservations_net_out() {
    let f = fold(&[
        (
            "registry",
            "ProviderRegistered",
            json!({"providerId": "3", "owner": "0xO", "operator": "0xA", "endpoint": "e0", "stake": "10"}),
            5,
        ),
        (
            "registry",
            "EndpointUpdated",
            json!({"providerId": "3", "endpoint": "e1"}),
            6,
        ),
        (
            "registry",
            "EndpointUpdated",
            json!({"providerId": "3", "endpoint": "e2"}),
            7,
        ),
        (
            "registry",
            "CapacityReserved",
            json!({"providerId": "3", "cpuMillis": "500", "memoryMiB": "64"}),
            8,
        ),
        (
            "registry",
            "CapacityReserved",
            json!({"providerId": "3", "cpuMillis": "250", "memoryMiB": "32"}),
            8,
        ),
        (
            "registry",
            "CapacityReleased",
            json!({"providerId": "3", "cpuMillis": "500", "memoryMiB": "64"}),
            9,
        ),
    ]);
    let p = &f.providers["3"];
    assert!(p.registered);
    assert_eq!(p.endpoint.as_deref(), Some("e2"));
    assert_eq!(p.reg_endpoint.as_deref(), Some("e0"));
    assert_eq!(
        (p.reserved_cpu, p.reserved_memory, p.reservations),
        (250, 32, 1)
    );
    assert_eq!(p.reg_stake, Some(U256::from(10)));
}

#[test]
fn strings_that_were_not_utf8_read_as_postgres_prints_them() {
    let f = fold(&[(
        "registry",
        "EndpointUpdated",
        json!({"providerId": "1", "endpoint": {"text": "a\\xff", "hex": "0x61ff"}}),
        1,
    )]);
    assert_eq!(
        f.providers["1"].endpoint.as_deref(),
        Some(r#"{"hex": "0x61ff", "text": "a\\xff"}"#)
    );
}

#[test]
fn days_start_at_midnight_utc() {
    assert_eq!(day_of(0), 0);
    assert_eq!(day_of(86_399), 0);
    assert_eq!(day_of(86_400 * 3 + 1), 86_400 * 3);
}
