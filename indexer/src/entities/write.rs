//! Merging folded deltas into the entity tables (the undo and rebuild paths are in
//! [`super::undo`]). Every function runs inside the caller's transaction.

use alloy::primitives::U256;
use sqlx::PgConnection;

use super::{Fold, LeaseDelta, ProviderDelta};
use crate::store::StoreError;

fn dec(v: U256) -> String {
    v.to_string()
}

fn opt_dec(v: Option<U256>) -> Option<String> {
    v.map(dec)
}

fn secs(v: Option<u64>) -> Option<i64> {
    v.and_then(|s| i64::try_from(s).ok())
}

/// Merges every delta of `fold` into the tables (a batch written after everything stored).
pub async fn merge(conn: &mut PgConnection, chain_id: i64, fold: &Fold) -> Result<(), StoreError> {
    merge_leases(conn, chain_id, fold.leases.iter()).await?;
    merge_providers(conn, chain_id, fold.providers.iter()).await?;
    add_revenue(conn, chain_id, fold, 1).await?;
    add_tenant_spend(conn, chain_id, fold, 1).await?;
    Ok(())
}

pub(super) async fn merge_leases<'a>(
    conn: &mut PgConnection,
    chain_id: i64,
    leases: impl Iterator<Item = (&'a String, &'a LeaseDelta)>,
) -> Result<(), StoreError> {
    #[derive(Default)]
    struct Cols {
        id: Vec<String>,
        provider: Vec<Option<String>>,
        tenant: Vec<Option<String>>,
        openings: Vec<i64>,
        withdrawals: Vec<i64>,
        status: Vec<Option<String>>,
        reason: Vec<Option<String>>,
        price_version: Vec<Option<i64>>,
        cpu: Vec<Option<i64>>,
        memory: Vec<Option<i64>>,
        storage: Vec<Option<i64>>,
        hash: Vec<Option<String>>,
        uri: Vec<Option<String>>,
        version: Vec<Option<i64>>,
        max_rate: Vec<Option<String>>,
        deposit: Vec<Option<String>>,
        opened_at: Vec<Option<i64>>,
        sums: [Vec<String>; 11],
        reports: Vec<i64>,
        reported_seconds: Vec<i64>,
        report_count: Vec<Option<i64>>,
        last_report_to: Vec<Option<i64>>,
        confirmed_at: Vec<Option<i64>>,
        endpoint: Vec<Option<String>>,
        suspended_at: Vec<Option<i64>>,
        closed_at: Vec<Option<i64>>,
    }
    let mut c = Cols::default();
    for (id, l) in leases {
        c.id.push(id.clone());
        c.provider.push(l.provider_id.clone());
        c.tenant.push(l.tenant.clone());
        c.openings.push(l.openings);
        c.withdrawals.push(l.withdrawals);
        c.status.push(l.status_event.map(str::to_owned));
        c.reason.push(l.close_reason.map(str::to_owned));
        c.price_version.push(l.price_version);
        c.cpu.push(l.cpu_millis);
        c.memory.push(l.memory_mib);
        c.storage.push(l.storage_gib);
        c.hash.push(l.manifest_hash.clone());
        c.uri.push(l.manifest_uri.clone());
        c.version.push(l.manifest_version);
        c.max_rate.push(opt_dec(l.max_rate));
        c.deposit.push(opt_dec(l.deposit));
        c.opened_at.push(secs(l.opened_at));
        let sums = [
            l.topped_up,
            l.auto_topped_up,
            l.charged,
            l.refunded,
            l.withdrawn,
            l.claimed,
            l.dispute_opened,
            l.dispute_to_provider,
            l.dispute_to_tenant,
            l.cpu_units,
            l.memory_units,
        ];
        for (col, v) in c.sums.iter_mut().zip(sums) {
            col.push(dec(v));
        }
        c.report_count.push(l.report_count);
        c.last_report_to.push(l.last_report_to);
        c.confirmed_at.push(secs(l.confirmed_at));
        c.endpoint.push(l.endpoint.clone());
        c.suspended_at.push(secs(l.last_suspended_at));
        c.closed_at.push(l.closed_at_s);
        c.reports.push(l.reports);
        c.reported_seconds.push(l.reported_seconds);
    }
    if c.id.is_empty() {
        return Ok(());
    }
    let [s0, s1, s2, s3, s4, s5, s6, s7, s8, cpu_units, memory_units] = &c.sums;
    sqlx::query(
        "INSERT INTO berth.lease_state AS t (chain_id, lease_id, provider_id, tenant, openings, withdrawals,
           status_event, close_reason, price_version, cpu_millis, memory_mib, storage_gib, manifest_hash,
           manifest_uri, manifest_version, max_rate, deposit, opened_at, topped_up, auto_topped_up, charged,
           refunded, withdrawn, claimed, dispute_opened, dispute_to_provider, dispute_to_tenant, report_count,
           last_report_to, confirmed_at, endpoint, last_suspended_at, closed_at_s, reports, cpu_units,
           memory_units, reported_seconds)
         SELECT $1, u.id::NUMERIC, u.provider::NUMERIC, u.tenant, u.openings, u.withdrawals, u.status, u.reason,
           u.price_version, u.cpu, u.memory, u.storage, u.hash, u.uri, COALESCE(u.version, 0),
           u.max_rate::NUMERIC, u.deposit::NUMERIC, to_timestamp(u.opened_at), u.s0::NUMERIC, u.s1::NUMERIC,
           u.s2::NUMERIC, u.s3::NUMERIC, u.s4::NUMERIC, u.s5::NUMERIC, u.s6::NUMERIC, u.s7::NUMERIC, u.s8::NUMERIC,
           COALESCE(u.report_count, 0), u.last_report_to, to_timestamp(u.confirmed_at), u.endpoint,
           to_timestamp(u.suspended_at), u.closed_at, u.reports, u.cpu_units::NUMERIC, u.memory_units::NUMERIC,
           u.reported_seconds
         FROM UNNEST($2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[], $7::TEXT[], $8::TEXT[],
           $9::BIGINT[], $10::BIGINT[], $11::BIGINT[], $12::BIGINT[], $13::TEXT[], $14::TEXT[], $15::BIGINT[],
           $16::TEXT[], $17::TEXT[], $18::BIGINT[], $19::TEXT[], $20::TEXT[], $21::TEXT[], $22::TEXT[],
           $23::TEXT[], $24::TEXT[], $25::TEXT[], $26::TEXT[], $27::TEXT[], $28::BIGINT[], $29::BIGINT[],
           $30::BIGINT[], $31::TEXT[], $32::BIGINT[], $33::BIGINT[], $34::BIGINT[], $35::TEXT[], $36::TEXT[],
           $37::BIGINT[])
           AS u(id, provider, tenant, openings, withdrawals, status, reason, price_version, cpu, memory, storage,
                hash, uri, version, max_rate, deposit, opened_at, s0, s1, s2, s3, s4, s5, s6, s7, s8,
                report_count, last_report_to, confirmed_at, endpoint, suspended_at, closed_at, reports,
                cpu_units, memory_units, reported_seconds)
         ON CONFLICT (chain_id, lease_id) DO UPDATE SET
           provider_id = GREATEST(t.provider_id, EXCLUDED.provider_id),
           tenant = GREATEST(t.tenant, EXCLUDED.tenant),
           openings = t.openings + EXCLUDED.openings,
           withdrawals = t.withdrawals + EXCLUDED.withdrawals,
           status_event = COALESCE(EXCLUDED.status_event, t.status_event),
           close_reason = COALESCE(EXCLUDED.close_reason, t.close_reason),
           price_version = GREATEST(t.price_version, EXCLUDED.price_version),
           cpu_millis = GREATEST(t.cpu_millis, EXCLUDED.cpu_millis),
           memory_mib = GREATEST(t.memory_mib, EXCLUDED.memory_mib),
           storage_gib = GREATEST(t.storage_gib, EXCLUDED.storage_gib),
           manifest_hash = COALESCE(EXCLUDED.manifest_hash, t.manifest_hash),
           manifest_uri = COALESCE(EXCLUDED.manifest_uri, t.manifest_uri),
           manifest_version = GREATEST(t.manifest_version, EXCLUDED.manifest_version),
           max_rate = GREATEST(t.max_rate, EXCLUDED.max_rate),
           deposit = GREATEST(t.deposit, EXCLUDED.deposit),
           opened_at = LEAST(t.opened_at, EXCLUDED.opened_at),
           topped_up = t.topped_up + EXCLUDED.topped_up,
           auto_topped_up = t.auto_topped_up + EXCLUDED.auto_topped_up,
           charged = t.charged + EXCLUDED.charged,
           refunded = t.refunded + EXCLUDED.refunded,
           withdrawn = t.withdrawn + EXCLUDED.withdrawn,
           claimed = t.claimed + EXCLUDED.claimed,
           dispute_opened = t.dispute_opened + EXCLUDED.dispute_opened,
           dispute_to_provider = t.dispute_to_provider + EXCLUDED.dispute_to_provider,
           dispute_to_tenant = t.dispute_to_tenant + EXCLUDED.dispute_to_tenant,
           report_count = GREATEST(t.report_count, EXCLUDED.report_count),
           last_report_to = GREATEST(t.last_report_to, EXCLUDED.last_report_to),
           confirmed_at = LEAST(t.confirmed_at, EXCLUDED.confirmed_at),
           endpoint = GREATEST(t.endpoint, EXCLUDED.endpoint),
           last_suspended_at = GREATEST(t.last_suspended_at, EXCLUDED.last_suspended_at),
           closed_at_s = GREATEST(t.closed_at_s, EXCLUDED.closed_at_s),
           reports = t.reports + EXCLUDED.reports,
           cpu_units = t.cpu_units + EXCLUDED.cpu_units,
           memory_units = t.memory_units + EXCLUDED.memory_units,
           reported_seconds = t.reported_seconds + EXCLUDED.reported_seconds",
    )
    .bind(chain_id)
    .bind(&c.id)
    .bind(&c.provider)
    .bind(&c.tenant)
    .bind(&c.openings)
    .bind(&c.withdrawals)
    .bind(&c.status)
    .bind(&c.reason)
    .bind(&c.price_version)
    .bind(&c.cpu)
    .bind(&c.memory)
    .bind(&c.storage)
    .bind(&c.hash)
    .bind(&c.uri)
    .bind(&c.version)
    .bind(&c.max_rate)
    .bind(&c.deposit)
    .bind(&c.opened_at)
    .bind(s0)
    .bind(s1)
    .bind(s2)
    .bind(s3)
    .bind(s4)
    .bind(s5)
    .bind(s6)
    .bind(s7)
    .bind(s8)
    .bind(&c.report_count)
    .bind(&c.last_report_to)
    .bind(&c.confirmed_at)
    .bind(&c.endpoint)
    .bind(&c.suspended_at)
    .bind(&c.closed_at)
    .bind(&c.reports)
    .bind(cpu_units)
    .bind(memory_units)
    .bind(&c.reported_seconds)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn merge_providers<'a>(
    conn: &mut PgConnection,
    chain_id: i64,
    providers: impl Iterator<Item = (&'a String, &'a ProviderDelta)>,
) -> Result<(), StoreError> {
    let (mut id, mut registered, mut texts, mut ints, mut sums) = (
        Vec::new(),
        Vec::new(),
        std::array::from_fn::<Vec<Option<String>>, 8, _>(|_| Vec::new()),
        std::array::from_fn::<Vec<Option<i64>>, 9, _>(|_| Vec::new()),
        std::array::from_fn::<Vec<String>, 3, _>(|_| Vec::new()),
    );
    for (pid, p) in providers {
        id.push(pid.clone());
        registered.push(p.registered);
        let t = [
            &p.owner,
            &p.token,
            &p.reg_operator,
            &p.reg_endpoint,
            &p.reg_attributes,
            &p.operator,
            &p.endpoint,
            &p.attributes,
        ];
        for (col, v) in texts.iter_mut().zip(t) {
            col.push(v.clone());
        }
        let cap = p.capacity;
        let i = [
            secs(p.registered_at),
            p.status_code,
            cap.map(|c| c.0),
            cap.map(|c| c.1),
            cap.map(|c| c.2),
            p.price_version,
            Some(p.reserved_cpu),
            Some(p.reserved_memory),
            Some(p.reservations),
        ];
        for (col, v) in ints.iter_mut().zip(i) {
            col.push(v);
        }
        let s = [
            p.reg_stake.map_or_else(String::new, dec),
            dec(p.stake_added),
            dec(p.stake_withdrawn),
        ];
        for (col, v) in sums.iter_mut().zip(s) {
            col.push(v);
        }
    }
    if id.is_empty() {
        return Ok(());
    }
    let [
        owner,
        token,
        reg_operator,
        reg_endpoint,
        reg_attributes,
        operator,
        endpoint,
        attributes,
    ] = &texts;
    let [
        registered_at,
        status,
        cpu,
        memory,
        storage,
        price_version,
        res_cpu,
        res_mem,
        reservations,
    ] = &ints;
    let [reg_stake, added, withdrawn] = &sums;
    sqlx::query(
        "INSERT INTO berth.provider_state AS t (chain_id, provider_id, registered, owner, token, registered_at,
           reg_operator, reg_endpoint, reg_attributes, reg_stake, operator, endpoint, attributes, status_code,
           cpu_millis, memory_mib, storage_gib, price_version, stake_added, stake_withdrawn, reserved_cpu,
           reserved_memory, reservations)
         SELECT $1, u.id::NUMERIC, u.registered, u.owner, u.token, to_timestamp(u.registered_at), u.reg_operator,
           u.reg_endpoint, u.reg_attributes, NULLIF(u.reg_stake, '')::NUMERIC, u.operator, u.endpoint,
           u.attributes, u.status, u.cpu, u.memory, u.storage, u.price_version, u.added::NUMERIC,
           u.withdrawn::NUMERIC, u.res_cpu, u.res_mem, u.reservations
         FROM UNNEST($2::TEXT[], $3::BOOL[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::TEXT[], $8::TEXT[],
           $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::TEXT[], $13::TEXT[], $14::BIGINT[], $15::BIGINT[],
           $16::BIGINT[], $17::BIGINT[], $18::BIGINT[], $19::TEXT[], $20::TEXT[], $21::BIGINT[], $22::BIGINT[],
           $23::BIGINT[])
           AS u(id, registered, owner, token, registered_at, reg_operator, reg_endpoint, reg_attributes,
                reg_stake, operator, endpoint, attributes, status, cpu, memory, storage, price_version, added,
                withdrawn, res_cpu, res_mem, reservations)
         ON CONFLICT (chain_id, provider_id) DO UPDATE SET
           registered = t.registered OR EXCLUDED.registered,
           owner = COALESCE(EXCLUDED.owner, t.owner),
           token = COALESCE(EXCLUDED.token, t.token),
           registered_at = COALESCE(EXCLUDED.registered_at, t.registered_at),
           reg_operator = COALESCE(EXCLUDED.reg_operator, t.reg_operator),
           reg_endpoint = COALESCE(EXCLUDED.reg_endpoint, t.reg_endpoint),
           reg_attributes = COALESCE(EXCLUDED.reg_attributes, t.reg_attributes),
           reg_stake = COALESCE(EXCLUDED.reg_stake, t.reg_stake),
           operator = COALESCE(EXCLUDED.operator, t.operator),
           endpoint = COALESCE(EXCLUDED.endpoint, t.endpoint),
           attributes = COALESCE(EXCLUDED.attributes, t.attributes),
           status_code = COALESCE(EXCLUDED.status_code, t.status_code),
           cpu_millis = COALESCE(EXCLUDED.cpu_millis, t.cpu_millis),
           memory_mib = COALESCE(EXCLUDED.memory_mib, t.memory_mib),
           storage_gib = COALESCE(EXCLUDED.storage_gib, t.storage_gib),
           price_version = COALESCE(EXCLUDED.price_version, t.price_version),
           stake_added = t.stake_added + EXCLUDED.stake_added,
           stake_withdrawn = t.stake_withdrawn + EXCLUDED.stake_withdrawn,
           reserved_cpu = t.reserved_cpu + EXCLUDED.reserved_cpu,
           reserved_memory = t.reserved_memory + EXCLUDED.reserved_memory,
           reservations = t.reservations + EXCLUDED.reservations",
    )
    .bind(chain_id)
    .bind(&id)
    .bind(&registered)
    .bind(owner)
    .bind(token)
    .bind(registered_at)
    .bind(reg_operator)
    .bind(reg_endpoint)
    .bind(reg_attributes)
    .bind(reg_stake)
    .bind(operator)
    .bind(endpoint)
    .bind(attributes)
    .bind(status)
    .bind(cpu)
    .bind(memory)
    .bind(storage)
    .bind(price_version)
    .bind(added)
    .bind(withdrawn)
    .bind(res_cpu)
    .bind(res_mem)
    .bind(reservations)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Adds (`sign` 1) or subtracts (`sign` -1) the fold's charges per provider and day.
pub(super) async fn add_revenue(
    conn: &mut PgConnection,
    chain_id: i64,
    fold: &Fold,
    sign: i64,
) -> Result<(), StoreError> {
    if fold.revenue.is_empty() {
        return Ok(());
    }
    let (mut days, mut providers, mut charged, mut reports) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((day, provider), r) in &fold.revenue {
        days.push(secs(Some(*day)));
        providers.push(provider.clone());
        charged.push(dec(r.charged));
        reports.push(r.reports);
    }
    sqlx::query(
        "INSERT INTO berth.provider_revenue_daily AS t (chain_id, day, provider_id, charged, reports)
         SELECT $1, to_timestamp(u.day), u.provider::NUMERIC, u.charged::NUMERIC * $6, u.reports * $6
         FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[]) AS u(day, provider, charged, reports)
         ON CONFLICT (chain_id, day, provider_id) DO UPDATE SET
           charged = t.charged + EXCLUDED.charged, reports = t.reports + EXCLUDED.reports",
    )
    .bind(chain_id)
    .bind(&days)
    .bind(&providers)
    .bind(&charged)
    .bind(&reports)
    .bind(sign)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Adds (`sign` 1) or subtracts (`sign` -1) the fold's lease sums to their tenants' spend;
/// the tenant of each lease is read from `lease_state`, which must hold its opening.
pub(super) async fn add_tenant_spend(
    conn: &mut PgConnection,
    chain_id: i64,
    fold: &Fold,
    sign: i64,
) -> Result<(), StoreError> {
    if fold.leases.is_empty() {
        return Ok(());
    }
    let (mut ids, mut openings, mut paid_in, mut charged, mut returned) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, l) in &fold.leases {
        ids.push(id.clone());
        openings.push(l.openings);
        let paid = l.deposit.unwrap_or_default().saturating_add(l.topped_up);
        paid_in.push(dec(paid));
        charged.push(dec(l.charged));
        returned.push(dec(l.refunded.saturating_add(l.withdrawn)));
    }
    sqlx::query(
        "INSERT INTO berth.tenant_spend AS t (chain_id, tenant, leases, paid_in, charged, returned)
         SELECT $1, l.tenant, SUM(u.openings) * $7, SUM(u.paid_in::NUMERIC) * $7,
                SUM(u.charged::NUMERIC) * $7, SUM(u.returned::NUMERIC) * $7
         FROM UNNEST($2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::TEXT[])
           AS u(id, openings, paid_in, charged, returned)
         JOIN berth.lease_state l ON l.chain_id = $1 AND l.lease_id = u.id::NUMERIC
         WHERE l.tenant IS NOT NULL
         GROUP BY l.tenant
         ON CONFLICT (chain_id, tenant) DO UPDATE SET
           leases = t.leases + EXCLUDED.leases, paid_in = t.paid_in + EXCLUDED.paid_in,
           charged = t.charged + EXCLUDED.charged, returned = t.returned + EXCLUDED.returned",
    )
    .bind(chain_id)
    .bind(&ids)
    .bind(&openings)
    .bind(&paid_in)
    .bind(&charged)
    .bind(&returned)
    .bind(sign)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
