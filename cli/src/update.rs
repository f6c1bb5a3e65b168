//! A tenant's changes to a running lease: a new manifest rolled out in place (`update`) and the
//! auto top-up policy that keeps it funded (`auto-top-up set|show|clear`).

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use alloy::primitives::{U256, keccak256};
use berth_bindings::{LeaseEscrow, LeaseStatus};
use berth_protocol::api::WorkloadAnswer;
use eyre::Result;
use serde_json::json;

use crate::{
    context::{Ctx, progress},
    failure::{self, Kind, fail},
    gateway, lease, market,
    output::emit,
};

/// `update <lease> <manifest>`.
#[derive(Debug, clap::Args)]
pub struct Update {
    /// Lease id.
    pub lease: U256,
    /// The new manifest (YAML); its reservation must fit the lease's.
    pub manifest: PathBuf,
    /// Where the keeper downloads it; without it the manifest is uploaded to the gateway.
    #[arg(long)]
    pub manifest_uri: Option<String>,
    /// Seconds to wait for the provider to run the new version (0: do not wait).
    #[arg(long = "wait", default_value_t = 180)]
    pub wait_s: u64,
    /// Secret values, sealed to the provider's current key.
    #[command(flatten)]
    pub secrets: crate::secrets::SecretArgs,
    /// Keep the values of an earlier sealed manifest of this lease (its tenant copy, opened
    /// with your wallet's key); `--secret` adds or replaces names.
    #[arg(long, value_name = "SEALED_MANIFEST")]
    pub secrets_from: Option<PathBuf>,
}

/// `auto-top-up` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AutoTopUpCmd {
    /// Let anyone (the provider's keeper) top the lease up from your allowance, within caps.
    Set(SetPolicy),
    /// Show the lease's policy and what it would pull now.
    Show(LeaseId),
    /// Remove the lease's policy.
    Clear(LeaseId),
}

/// A lease id.
#[derive(Debug, clap::Args)]
pub struct LeaseId {
    /// Lease id.
    pub lease: U256,
}

/// `auto-top-up set`.
#[derive(Debug, clap::Args)]
pub struct SetPolicy {
    /// Lease id.
    pub lease: U256,
    /// A top-up is allowed once the runway is below this (e.g. `2h`, `90m`, `1d`).
    #[arg(long)]
    pub below: String,
    /// Each top-up brings the runway back to this.
    #[arg(long)]
    pub target: String,
    /// Most one top-up may pull, in tokens.
    #[arg(long)]
    pub max_per_top_up: String,
    /// Most all top-ups together may pull, in tokens (also the allowance given).
    #[arg(long)]
    pub max_total: String,
    /// How long the policy lasts.
    #[arg(long, default_value = "30d")]
    pub expires_in: String,
}

/// Parses `90`, `90s`, `15m`, `2h` or `30d` into seconds.
pub fn parse_duration(field: &str, text: &str) -> Result<u64> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = number.parse().map_err(|_| {
        fail(
            Kind::Input,
            format!("{field} `{text}` is not a duration such as 90s, 15m, 2h or 30d"),
        )
    })?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(fail(
                Kind::Input,
                format!("{field} `{text}`: the unit must be s, m, h or d"),
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| fail(Kind::Input, format!("{field} `{text}` is too long")))
}

/// `update`: commits the lease to a new manifest on chain, delivers it and waits until the
/// provider runs it.
pub async fn update(ctx: &Ctx, u: Update, draft: crate::deploy::Draft) -> Result<()> {
    let json = ctx.global.json;
    let l = lease::load(ctx, u.lease).await?;
    if !matches!(l.status, LeaseStatus::Active | LeaseStatus::Suspended) {
        return Err(fail(
            Kind::Refused,
            format!(
                "lease {} is {:?}: only an active or suspended lease takes a new manifest",
                u.lease, l.status
            ),
        ));
    }
    let w = ctx.wallet()?;
    let bytes = match &draft.values {
        Some(given) => {
            let mut values = match &u.secrets_from {
                Some(p) => crate::secrets::open_copy(ctx, &w, p, l.raw.providerId)?,
                None => berth_protocol::secrets::SecretValues::default(),
            };
            values.0.extend(given.0.clone());
            let text = String::from_utf8_lossy(&draft.bytes).into_owned();
            let sealed = crate::secrets::seal(ctx, &w, &text, &values, l.raw.providerId).await?;
            let kept = crate::secrets::kept_path(&u.manifest, u.lease);
            std::fs::write(&kept, &sealed).map_err(|e| {
                fail(
                    Kind::Input,
                    format!("keeping the sealed manifest at {}: {e}", kept.display()),
                )
            })?;
            progress(json, &format!("sealed manifest kept at {}", kept.display()));
            sealed
        }
        None => draft.bytes,
    };
    let escrow = LeaseEscrow::new(ctx.deployment.lease_escrow, w.provider.clone());
    let hash = keccak256(&bytes);
    let uri = u.manifest_uri.clone().unwrap_or_default();
    let receipt = w
        .send(
            escrow.updateManifest(u.lease, hash, uri),
            "updateManifest",
            20,
        )
        .await?;
    let version = receipt
        .decoded_log::<LeaseEscrow::ManifestUpdated>()
        .map(|e| e.data.version)
        .unwrap_or_default();
    progress(
        json,
        &format!("lease {} committed to manifest version {version}", u.lease),
    );
    let offer = market::offer(ctx, l.raw.providerId).await?;
    if u.manifest_uri.is_none() {
        gateway::upload(ctx, &w, &offer.endpoint, u.lease, &bytes).await?;
    }
    let running = if u.wait_s == 0 {
        false
    } else {
        wait_rollout(
            ctx,
            &offer.endpoint,
            u.lease,
            version,
            Duration::from_secs(u.wait_s),
        )
        .await?
    };
    emit(
        json,
        &json!({ "lease": u.lease.to_string(), "manifest_version": version, "manifest_hash": hash, "running": running, "tx": receipt.transaction_hash }),
        || {
            if running {
                format!("lease {}: manifest version {version} is running", u.lease)
            } else {
                format!(
                    "lease {}: committed to manifest version {version}; the provider rolls it out",
                    u.lease
                )
            }
        },
    );
    Ok(())
}

/// Polls the provider's gateway until the lease's workload runs `version`.
async fn wait_rollout(
    ctx: &Ctx,
    endpoint: &str,
    lease: U256,
    version: u32,
    limit: Duration,
) -> Result<bool> {
    let start = Instant::now();
    let mut said = Instant::now();
    loop {
        if let Ok(status) = gateway::lease_status(endpoint, lease).await
            && let Some(WorkloadAnswer::Seen(w)) = status.workload
            && w.running
            && w.manifest_version == Some(version)
        {
            progress(
                ctx.global.json,
                &format!(
                    "version {version} running after {:.1} s",
                    start.elapsed().as_secs_f64()
                ),
            );
            return Ok(true);
        }
        if start.elapsed() > limit {
            return Err(fail(
                Kind::NotDeployed,
                format!(
                    "lease {lease}: the provider did not run manifest version {version} within {} s (`berth status {lease}` shows the lease)",
                    limit.as_secs()
                ),
            ));
        }
        if said.elapsed() > Duration::from_secs(10) {
            progress(
                ctx.global.json,
                &format!(
                    "waiting for the provider to roll out version {version}… {} s",
                    start.elapsed().as_secs()
                ),
            );
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `auto-top-up …`.
pub async fn auto_top_up(ctx: &Ctx, cmd: AutoTopUpCmd) -> Result<()> {
    match cmd {
        AutoTopUpCmd::Set(s) => set(ctx, s).await,
        AutoTopUpCmd::Show(a) => show(ctx, a.lease).await,
        AutoTopUpCmd::Clear(a) => clear(ctx, a.lease).await,
    }
}

async fn set(ctx: &Ctx, s: SetPolicy) -> Result<()> {
    let below = parse_duration("--below", &s.below)?;
    let target = parse_duration("--target", &s.target)?;
    let expires_in = parse_duration("--expires-in", &s.expires_in)?;
    if target <= below {
        return Err(fail(
            Kind::Input,
            format!(
                "--target {} must be longer than --below {}",
                s.target, s.below
            ),
        ));
    }
    let l = lease::load(ctx, s.lease).await?;
    let token = lease::token_of(ctx, &l).await?;
    let per = token.parse("--max-per-top-up", &s.max_per_top_up)?;
    let total = token.parse("--max-total", &s.max_total)?;
    if per.is_zero() || per > total {
        return Err(fail(
            Kind::Input,
            "--max-per-top-up must be more than zero and at most --max-total",
        ));
    }
    let w = ctx.wallet()?;
    let now = ctx.now().await?;
    // The policy pulls from the tenant's allowance: give the escrow the total.
    token
        .ensure_allowance(&w, ctx.deployment.lease_escrow, total)
        .await?;
    let escrow = LeaseEscrow::new(ctx.deployment.lease_escrow, w.provider.clone());
    let receipt = w
        .send(
            escrow.setAutoTopUp(
                s.lease,
                per,
                total,
                U256::from(now + expires_in),
                U256::from(below),
                U256::from(target),
            ),
            "setAutoTopUp",
            20,
        )
        .await?;
    emit(
        ctx.global.json,
        &json!({ "lease": s.lease.to_string(), "below_s": below, "target_s": target, "max_per_top_up": per.to_string(), "max_total": total.to_string(), "expires_at": now + expires_in, "tx": receipt.transaction_hash }),
        || {
            format!(
                "lease {}: anyone may top it up from your allowance once its runway is below {}, back to {}; at most {} each and {} in all, until {}",
                s.lease,
                s.below,
                s.target,
                token.show(per),
                token.show(total),
                crate::output::utc(now + expires_in)
            )
        },
    );
    Ok(())
}

async fn show(ctx: &Ctx, id: U256) -> Result<()> {
    let l = lease::load(ctx, id).await?;
    let token = lease::token_of(ctx, &l).await?;
    let escrow = ctx.escrow();
    let p = escrow
        .autoTopUpOf(id)
        .call()
        .await
        .map_err(|e| failure::contract("autoTopUpOf", &e))?;
    let due = escrow
        .autoTopUpDue(id)
        .call()
        .await
        .map_err(|e| failure::contract("autoTopUpDue", &e))?;
    let set = !p.maxTotal.is_zero();
    emit(
        ctx.global.json,
        &json!({
            "lease": id.to_string(),
            "policy": set.then(|| json!({
                "max_per_top_up": p.maxPerTopUp.to_string(),
                "max_total": p.maxTotal.to_string(),
                "pulled": p.pulled.to_string(),
                "expires_at": p.expiresAt,
                "trigger_runway_s": p.triggerRunway,
                "target_runway_s": p.targetRunway,
            })),
            "due_now": due.to_string(),
        }),
        || {
            if !set {
                return format!("lease {id} has no auto top-up policy");
            }
            format!(
                "lease {id}: top-up below {} s of runway, back to {} s; at most {} each, {} in all, {} used; until {}; due now: {}",
                p.triggerRunway,
                p.targetRunway,
                token.show(U256::from(p.maxPerTopUp)),
                token.show(U256::from(p.maxTotal)),
                token.show(U256::from(p.pulled)),
                crate::output::utc(u64::from(p.expiresAt)),
                token.show(due)
            )
        },
    );
    Ok(())
}

async fn clear(ctx: &Ctx, id: U256) -> Result<()> {
    let w = ctx.wallet()?;
    let escrow = LeaseEscrow::new(ctx.deployment.lease_escrow, w.provider.clone());
    let receipt = w
        .send(escrow.clearAutoTopUp(id), "clearAutoTopUp", 20)
        .await?;
    emit(
        ctx.global.json,
        &json!({ "lease": id.to_string(), "cleared": true, "tx": receipt.transaction_hash }),
        || format!("lease {id}: auto top-up policy removed (your token allowance is unchanged)"),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("t", "90").ok(), Some(90));
        assert_eq!(parse_duration("t", "15m").ok(), Some(900));
        assert_eq!(parse_duration("t", "2h").ok(), Some(7200));
        assert_eq!(parse_duration("t", "30d").ok(), Some(2_592_000));
        assert!(parse_duration("t", "2w").is_err());
        assert!(parse_duration("t", "h").is_err());
    }
}
