//! A tenant's commands on an open lease: status, top-up, close, withdraw, dispute, upload.

use std::path::PathBuf;

use alloy::primitives::U256;
use berth_bindings::{CloseReason, LeaseEscrow, LeaseStatus};
use eyre::Result;
use serde_json::json;

use crate::{
    context::Ctx,
    deploy::read_manifest,
    failure::{self, Kind, fail},
    gateway, history, market,
    output::{emit, table},
    token::Token,
};
use berth_protocol::pricing;

/// A lease as the escrow stores it, with what the commands derive from it.
#[derive(Debug)]
pub struct Lease {
    /// The stored struct.
    pub raw: LeaseEscrow::Lease,
    /// Decoded status.
    pub status: LeaseStatus,
}

/// Reads a lease; [`Kind::NotFound`] when it does not exist.
pub async fn load(ctx: &Ctx, id: U256) -> Result<Lease> {
    let raw = ctx
        .escrow()
        .getLease(id)
        .call()
        .await
        .map_err(|e| failure::contract("getLease", &e))?;
    let status = LeaseStatus::from_u8(raw.status).unwrap_or(LeaseStatus::None);
    if status == LeaseStatus::None {
        return Err(fail(Kind::NotFound, format!("lease {id} does not exist")));
    }
    Ok(Lease { raw, status })
}

fn status_name(s: LeaseStatus) -> String {
    format!("{s:?}").to_lowercase()
}

pub(crate) async fn token_of(ctx: &Ctx, l: &Lease) -> Result<Token> {
    let address = ctx
        .registry()
        .tokenOf(U256::from(l.raw.providerId))
        .call()
        .await
        .map_err(|e| failure::contract("tokenOf", &e))?;
    Token::load(ctx, address).await
}

/// `status <lease>`.
pub async fn status(ctx: &Ctx, id: U256, with_events: bool) -> Result<()> {
    let l = load(ctx, id).await?;
    let events = if with_events {
        let offer = crate::market::offer(ctx, l.raw.providerId).await?;
        Some(crate::gateway::events(ctx, &ctx.wallet()?, &offer.endpoint, id).await?)
    } else {
        None
    };
    let token = token_of(ctx, &l).await?;
    let escrow = ctx.escrow();
    let now = ctx.now().await?;
    let call_u256 = |r: Result<U256, alloy::contract::Error>, what: &str| {
        r.map_err(|e| failure::contract(what, &e))
    };
    let max_rate = call_u256(escrow.maxRateOf(id).call().await, "maxRateOf")?;
    let depletion = call_u256(escrow.depletionTimeOf(id).call().await, "depletionTimeOf")?;
    let claimable = call_u256(escrow.claimableOf(id).call().await, "claimableOf")?;
    let pending = call_u256(escrow.pendingOf(id).call().await, "pendingOf")?;
    let depletion: u64 = depletion.try_into().unwrap_or(u64::MAX);
    let runway = matches!(l.status, LeaseStatus::Active | LeaseStatus::Suspended)
        .then(|| depletion.saturating_sub(now));
    let reports = history::reports_of(ctx, id).await?;
    let endpoint = history::endpoint_of(ctx, id).await?.unwrap_or_default();
    let grace: u64 = call_u256(escrow.gracePeriod().call().await, "gracePeriod")?.saturating_to();
    let suspension = (l.status == LeaseStatus::Suspended).then(|| {
        let since = l.raw.suspendedAt.to::<u64>();
        json!({ "since": since, "terminable_at": since + grace })
    });
    let policy = escrow
        .autoTopUpOf(id)
        .call()
        .await
        .map_err(|e| failure::contract("autoTopUpOf", &e))?;
    let auto_top_up = (policy.maxTotal > alloy::primitives::Uint::ZERO).then(|| {
        json!({
            "max_per_top_up": policy.maxPerTopUp.to_string(),
            "max_total": policy.maxTotal.to_string(),
            "pulled": policy.pulled.to_string(),
            "expires_at": policy.expiresAt,
            "trigger_runway_s": policy.triggerRunway,
            "target_runway_s": policy.targetRunway,
        })
    });
    let last: Vec<_> = reports.iter().rev().take(5).rev().collect();
    let r = &l.raw;
    let close_reason = CloseReason::from_u8(r.closeReason)
        .filter(|c| *c != CloseReason::None)
        .map(|c| format!("{c:?}"));
    let value = json!({
        "lease": id.to_string(),
        "status": status_name(l.status),
        "close_reason": close_reason,
        "provider": r.providerId,
        "tenant": r.tenant,
        "endpoint": endpoint,
        "manifest_version": r.manifestVersion,
        "suspension": suspension,
        "auto_top_up": auto_top_up,
        "reservation": { "cpu_millis": r.cpuMillis, "memory_mib": r.memoryMiB, "storage_gib": r.storageGiB },
        "balance": r.balance.to_string(),
        "max_rate": max_rate.to_string(),
        "hourly_max": pricing::cost_of(3600, max_rate).to_string(),
        "runway_s": runway,
        "depletion_time": depletion,
        "billed_until": r.billedUntil.to::<u64>(),
        "pending_charges": pending.to_string(),
        "claimable": claimable.to_string(),
        "disputed": r.disputed.to_string(),
        "report_count": r.reportCount,
        "reports": last.iter().map(|u| json!({
            "sequence": u.sequence,
            "from": u.from.to::<u64>(),
            "to": u.to.to::<u64>(),
            "cpu_units": u.cpuUnits,
            "memory_units": u.memoryUnits,
            "storage_units": u.storageUnits,
            "charge": u.charge.to_string(),
        })).collect::<Vec<_>>(),
        "events": events.as_ref().map(|e| &e.events),
    });
    emit(ctx.global.json, &value, || {
        let mut s = format!(
            "lease {id}: {}{}\n  provider    {}\n  endpoint    {}\n  reserved    {} millicores, {} MiB, {} GiB (at most {} per hour)\n  balance     {}\n",
            status_name(l.status),
            close_reason.map(|c| format!(" ({c})")).unwrap_or_default(),
            r.providerId,
            if endpoint.is_empty() { "-" } else { &endpoint },
            r.cpuMillis,
            r.memoryMiB,
            r.storageGiB,
            token.show(pricing::cost_of(3600, max_rate)),
            token.show(U256::from(r.balance)),
        );
        s += &format!("  manifest    version {}\n", r.manifestVersion);
        if let Some(runway) = runway {
            s += &format!("  runway      {} at the maximum rate\n", duration(runway));
        }
        if l.status == LeaseStatus::Suspended {
            let since = l.raw.suspendedAt.to::<u64>();
            s += &format!(
                "  suspended   since {since}: workload stopped, volumes kept, base rate billed;\n              a top-up restoring the minimum runway resumes it, else it may be\n              terminated in {} (at {})\n",
                duration((since + grace).saturating_sub(now)),
                since + grace
            );
        }
        if policy.maxTotal > alloy::primitives::Uint::ZERO {
            s += &format!(
                "  auto top-up below {} of runway, back to {}; at most {} each, {} in all ({} used); until {}\n",
                duration(u64::from(policy.triggerRunway)),
                duration(u64::from(policy.targetRunway)),
                token.show(U256::from(policy.maxPerTopUp)),
                token.show(U256::from(policy.maxTotal)),
                token.show(U256::from(policy.pulled)),
                crate::output::utc(u64::from(policy.expiresAt))
            );
        }
        s += &format!(
            "  charges     {} pending, {} claimable, {} disputed\n  reports     {}\n",
            token.show(pending),
            token.show(claimable),
            token.show(U256::from(r.disputed)),
            r.reportCount
        );
        if !last.is_empty() {
            let rows: Vec<Vec<String>> = last
                .iter()
                .map(|u| {
                    vec![
                        u.sequence.to_string(),
                        format!("{}-{}", u.from, u.to),
                        u.cpuUnits.to_string(),
                        u.memoryUnits.to_string(),
                        u.storageUnits.to_string(),
                        token.show(u.charge),
                    ]
                })
                .collect();
            s += &table(
                &[
                    "seq",
                    "period",
                    "cpu m·s",
                    "mem MiB·s",
                    "sto GiB·s",
                    "charge",
                ],
                &rows,
            );
        }
        if let Some(e) = &events {
            s += &format!("\n\nevents ({}):\n", e.events.len());
            let rows: Vec<Vec<String>> = e
                .events
                .iter()
                .map(|ev| {
                    vec![
                        crate::output::utc(ev.at),
                        ev.kind.clone(),
                        event_detail(&ev.detail),
                    ]
                })
                .collect();
            s += &table(&["at", "event", "detail"], &rows);
        }
        s
    });
    Ok(())
}

/// An event's detail as `key=value` pairs.
fn event_detail(detail: &serde_json::Value) -> String {
    detail
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn duration(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}m {}s", s / 60, s % 60),
    }
}

/// `top-up <lease> --amount`.
pub async fn top_up(ctx: &Ctx, id: U256, amount: &str) -> Result<()> {
    let l = load(ctx, id).await?;
    if !matches!(
        l.status,
        LeaseStatus::Pending | LeaseStatus::Active | LeaseStatus::Suspended
    ) {
        return Err(fail(
            Kind::Refused,
            format!(
                "lease {id} is {}: only pending, active or suspended leases take top-ups",
                status_name(l.status)
            ),
        ));
    }
    let token = token_of(ctx, &l).await?;
    let amount = token.parse("--amount", amount)?;
    if amount.is_zero() {
        return Err(fail(Kind::Input, "--amount must be more than zero"));
    }
    let w = ctx.wallet()?;
    token.require_balance(ctx, w.address, amount).await?;
    token
        .ensure_allowance(&w, ctx.deployment.lease_escrow, amount)
        .await?;
    let escrow = LeaseEscrow::new(ctx.deployment.lease_escrow, w.provider.clone());
    let receipt = w.send(escrow.topUp(id, amount), "topUp", 20).await?;
    let balance = receipt
        .decoded_log::<LeaseEscrow::LeaseToppedUp>()
        .map(|l| l.data.balance)
        .unwrap_or_default();
    let resumed = receipt.decoded_log::<LeaseEscrow::LeaseResumed>().is_some();
    emit(
        ctx.global.json,
        &json!({ "lease": id.to_string(), "amount": amount.to_string(), "balance": balance.to_string(), "resumed": resumed, "tx": receipt.transaction_hash }),
        || {
            format!(
                "lease {id} topped up by {}: balance {}{}",
                token.show(amount),
                token.show(balance),
                if resumed {
                    "; the lease resumed, its workload starts again"
                } else {
                    ""
                }
            )
        },
    );
    Ok(())
}

/// `close <lease>`: closes an active lease, cancels a pending one (after the accept timeout).
pub async fn close(ctx: &Ctx, id: U256) -> Result<()> {
    let l = load(ctx, id).await?;
    let w = ctx.wallet()?;
    let escrow = LeaseEscrow::new(ctx.deployment.lease_escrow, w.provider.clone());
    let (receipt, done) = match l.status {
        LeaseStatus::Active | LeaseStatus::Suspended => (
            w.send(escrow.closeLease(id), "closeLease", 20).await?,
            "closed",
        ),
        LeaseStatus::Pending => (
            w.send(escrow.cancelLease(id), "cancelLease", 20).await?,
            "cancelled",
        ),
        other => {
            return Err(fail(
                Kind::Refused,
                format!("lease {id} is {}: nothing to close", status_name(other)),
            ));
        }
    };
    let after = load(ctx, id).await?;
    emit(
        ctx.global.json,
        &json!({ "lease": id.to_string(), "status": status_name(after.status), "closed_at": after.raw.closedAt.to::<u64>(), "tx": receipt.transaction_hash }),
        || match after.status {
            LeaseStatus::Closing => format!(
                "lease {id} {done}: billing ended at {}; the provider has its final-report window, then `berth withdraw {id}`",
                after.raw.closedAt
            ),
            s => format!("lease {id} {done}: {}", status_name(s)),
        },
    );
    Ok(())
}

/// `withdraw <lease>`.
pub async fn withdraw(ctx: &Ctx, id: U256) -> Result<()> {
    let l = load(ctx, id).await?;
    let token = token_of(ctx, &l).await?;
    let w = ctx.wallet()?;
    let escrow = LeaseEscrow::new(ctx.deployment.lease_escrow, w.provider.clone());
    let receipt = w.send(escrow.withdraw(id), "withdraw", 20).await?;
    let amount = receipt
        .decoded_log::<LeaseEscrow::LeaseWithdrawn>()
        .map(|l| l.data.amount)
        .unwrap_or_default();
    emit(
        ctx.global.json,
        &json!({ "lease": id.to_string(), "withdrawn": amount.to_string(), "tx": receipt.transaction_hash }),
        || format!("withdrew {} from lease {id}", token.show(amount)),
    );
    Ok(())
}

/// `dispute <lease>`.
pub async fn dispute(ctx: &Ctx, id: U256) -> Result<()> {
    let l = load(ctx, id).await?;
    let token = token_of(ctx, &l).await?;
    let w = ctx.wallet()?;
    let escrow = LeaseEscrow::new(ctx.deployment.lease_escrow, w.provider.clone());
    let receipt = w.send(escrow.dispute(id), "dispute", 20).await?;
    let amount = receipt
        .decoded_log::<LeaseEscrow::ChargesDisputed>()
        .map(|l| l.data.amount)
        .unwrap_or_default();
    emit(
        ctx.global.json,
        &json!({ "lease": id.to_string(), "disputed": amount.to_string(), "tx": receipt.transaction_hash }),
        || {
            format!(
                "froze {} of lease {id}'s unmatured charges for the arbiter",
                token.show(amount)
            )
        },
    );
    Ok(())
}

/// `upload <lease> <manifest>`: delivers the manifest again (after a failed delivery).
pub async fn upload(ctx: &Ctx, id: U256, manifest: &PathBuf) -> Result<()> {
    let (bytes, _) = read_manifest(manifest)?;
    let l = load(ctx, id).await?;
    let version = l.raw.manifestVersion;
    let expected = history::manifest_hash_of(ctx, id, version)
        .await?
        .unwrap_or_default();
    if alloy::primitives::keccak256(&bytes) != expected {
        return Err(fail(
            Kind::Input,
            format!(
                "manifest {} does not hash to lease {id}'s manifest (version {version}, hash {expected})",
                manifest.display(),
            ),
        ));
    }
    let offer = market::offer(ctx, l.raw.providerId).await?;
    let w = ctx.wallet()?;
    gateway::upload(ctx, &w, &offer.endpoint, id, &bytes).await?;
    emit(
        ctx.global.json,
        &json!({ "lease": id.to_string(), "uploaded": true }),
        || format!("manifest delivered for lease {id}"),
    );
    Ok(())
}
