//! Past events of the contracts, read in bounded block ranges (public RPCs cap `eth_getLogs`).

use alloy::{
    primitives::{Address, B256, U256},
    providers::Provider,
    rpc::types::Filter,
    sol_types::SolEvent,
};
use berth_bindings::LeaseEscrow;
use eyre::Result;

use crate::{context::Ctx, failure};

/// Blocks per `eth_getLogs` request.
const SPAN: u64 = 5_000;

async fn logs<E: SolEvent>(
    ctx: &Ctx,
    address: Address,
    topic1: Option<U256>,
    topic2: Option<U256>,
) -> Result<Vec<E>> {
    let head = ctx
        .rpc
        .get_block_number()
        .await
        .map_err(|e| failure::transport("reading the block number", &e))?;
    let mut out = Vec::new();
    let mut from = ctx.deployment.start_block;
    while from <= head {
        let to = (from + SPAN - 1).min(head);
        let mut filter = Filter::new()
            .address(address)
            .event_signature(E::SIGNATURE_HASH)
            .from_block(from)
            .to_block(to);
        if let Some(t) = topic1 {
            filter = filter.topic1(t);
        }
        if let Some(t) = topic2 {
            filter = filter.topic2(t);
        }
        let found = ctx
            .rpc
            .get_logs(&filter)
            .await
            .map_err(|e| failure::transport("reading event logs", &e))?;
        for log in found {
            if let Ok(decoded) = E::decode_log(&log.inner) {
                out.push(decoded.data);
            }
        }
        from = to + 1;
    }
    Ok(out)
}

/// Ids of every lease ever opened with `provider`.
pub async fn leases_of_provider(ctx: &Ctx, provider: u32) -> Result<Vec<U256>> {
    let opened: Vec<LeaseEscrow::LeaseOpened> = logs(
        ctx,
        ctx.deployment.lease_escrow,
        None,
        Some(U256::from(provider)),
    )
    .await?;
    Ok(opened.into_iter().map(|e| e.leaseId).collect())
}

/// Every usage report accepted for `lease`, by sequence.
pub async fn reports_of(ctx: &Ctx, lease: U256) -> Result<Vec<LeaseEscrow::UsageReported>> {
    let mut reports: Vec<LeaseEscrow::UsageReported> =
        logs(ctx, ctx.deployment.lease_escrow, Some(lease), None).await?;
    reports.sort_by_key(|r| r.sequence);
    Ok(reports)
}

/// Why `lease` was rejected, if it was.
pub async fn rejection_of(ctx: &Ctx, lease: U256) -> Result<Option<u8>> {
    let rejected: Vec<LeaseEscrow::LeaseRejected> =
        logs(ctx, ctx.deployment.lease_escrow, Some(lease), None).await?;
    Ok(rejected.first().map(|r| r.reason))
}

/// The endpoint `lease` was confirmed with, if it was.
pub async fn endpoint_of(ctx: &Ctx, lease: U256) -> Result<Option<String>> {
    let confirmed: Vec<LeaseEscrow::LeaseConfirmed> =
        logs(ctx, ctx.deployment.lease_escrow, Some(lease), None).await?;
    Ok(confirmed.into_iter().next().map(|c| c.endpoint))
}

/// The manifest hash `lease` committed to at `version` (0: the one it opened with).
pub async fn manifest_hash_of(ctx: &Ctx, lease: U256, version: u32) -> Result<Option<B256>> {
    if version == 0 {
        let opened: Vec<LeaseEscrow::LeaseOpened> =
            logs(ctx, ctx.deployment.lease_escrow, Some(lease), None).await?;
        return Ok(opened.into_iter().next().map(|o| o.manifestHash));
    }
    let updates: Vec<LeaseEscrow::ManifestUpdated> =
        logs(ctx, ctx.deployment.lease_escrow, Some(lease), None).await?;
    Ok(updates
        .into_iter()
        .find(|u| u.version == version)
        .map(|u| u.manifestHash))
}
