//! `berth deploy`: from a manifest file to a serving endpoint — validate locally, pick a
//! provider, open and fund the lease in one transaction (EIP-2612 permit), upload the signed
//! manifest, wait for the keeper's confirmation or rejection.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use alloy::primitives::{U256, keccak256};
use berth_bindings::{LeaseEscrow, LeaseStatus, RejectReason};
use berth_protocol::manifest::{
    MAX_MANIFEST_BYTES, Manifest,
    policy::{Policy, Reservation, check_reservation},
};
use clap::Args;
use eyre::Result;
use serde_json::json;

use crate::{
    amounts::Resources,
    context::{Ctx, Wallet, progress},
    failure::{self, Kind, fail},
    gateway, history,
    market::{self, Wanted},
    output::{emit, table},
    secrets::{self, SecretArgs},
    token::Token,
};
use berth_protocol::pricing;
use berth_protocol::secrets::SecretValues;

/// `deploy`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("funding").required(true).args(["deposit", "hours"])))]
pub struct Deploy {
    /// The manifest file (see docs/manifest.md).
    pub manifest: PathBuf,
    /// `auto` (the cheapest active provider that fits) or a provider id.
    #[arg(long, default_value = "auto")]
    pub provider: String,
    /// Deposit, in the provider's token.
    #[arg(long)]
    pub deposit: Option<String>,
    /// Fund this many hours at the lease's maximum rate instead of a fixed deposit.
    #[arg(long)]
    pub hours: Option<f64>,
    /// A provider attribute that must match, `key=value` (repeatable).
    #[arg(long = "attribute")]
    pub attributes: Vec<String>,
    /// The most the lease may cost per hour at its maximum rate, in the deployment's payment token.
    #[arg(long)]
    pub max_hourly: Option<String>,
    /// Let the keeper download the manifest from this URL instead of uploading it.
    #[arg(long)]
    pub manifest_uri: Option<String>,
    /// Approve the escrow in a separate transaction instead of signing a permit.
    #[arg(long)]
    pub no_permit: bool,
    /// Seconds to wait for the provider to confirm or reject.
    #[arg(long, default_value_t = 300)]
    pub wait_s: u64,
    /// Secret values, sealed to the provider's key before anything leaves this machine.
    #[command(flatten)]
    pub secrets: SecretArgs,
    /// What to reserve (each left out: what the manifest asks for). Last: its help heading
    /// holds for every argument after it.
    #[command(
        flatten,
        next_help_heading = "Reservation (each left out: what the manifest asks for)"
    )]
    pub reserve: Resources,
}

/// Reads and validates a manifest file; its bytes and what it asks for.
pub fn read_manifest(path: &PathBuf) -> Result<(Vec<u8>, Manifest)> {
    let bytes = std::fs::read(path)
        .map_err(|e| fail(Kind::Input, format!("manifest {}: {e}", path.display())))?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(fail(
            Kind::Input,
            format!(
                "manifest {}: {} bytes, more than the {MAX_MANIFEST_BYTES} a keeper accepts",
                path.display(),
                bytes.len()
            ),
        ));
    }
    let m = Manifest::parse(&bytes)
        .map_err(|e| fail(Kind::Input, format!("manifest {}: {e}", path.display())))?;
    Ok((bytes, m))
}

/// A manifest file read and validated, with its secret values when `--secret` gives them
/// (sealed once the provider is known).
#[derive(Debug)]
pub struct Draft {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// What it asks for.
    pub manifest: Manifest,
    /// Values to seal, if any.
    pub values: Option<SecretValues>,
}

/// Reads a manifest and its `--secret` values; with secrets it is validated as it will be
/// once sealed.
/// `secrets_from`: an earlier sealed manifest whose secret names are kept (update).
pub fn read_draft(
    path: &PathBuf,
    args: &SecretArgs,
    secrets_from: Option<&PathBuf>,
) -> Result<Draft> {
    if args.secrets.is_empty() && secrets_from.is_none() {
        let (bytes, manifest) = read_manifest(path).map_err(|e| {
            if e.to_string().contains("is not in secrets.names") {
                fail(
                    Kind::Input,
                    format!(
                        "{}; give its value with --secret NAME=file:PATH or NAME=env:VAR",
                        failure::one_line(&e)
                    ),
                )
            } else {
                e
            }
        })?;
        return Ok(Draft {
            bytes,
            manifest,
            values: None,
        });
    }
    let bytes = std::fs::read(path)
        .map_err(|e| fail(Kind::Input, format!("manifest {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes.clone()).map_err(|_| {
        fail(
            Kind::Input,
            format!("manifest {}: not UTF-8", path.display()),
        )
    })?;
    if text.starts_with("secrets:") || text.contains("\nsecrets:") {
        return Err(fail(
            Kind::Input,
            format!(
                "manifest {}: already has a secrets section; --secret seals a manifest without one",
                path.display()
            ),
        ));
    }
    let values = secrets::read_values(args)?;
    let mut names: Vec<&String> = values.0.keys().collect();
    let earlier = match secrets_from {
        Some(p) => {
            let (_, m) = read_manifest(p)?;
            m.secrets.map(|s| s.names).unwrap_or_default()
        }
        None => Vec::new(),
    };
    names.extend(earlier.iter().filter(|n| !values.0.contains_key(*n)));
    names.sort();
    let draft = secrets::draft(&text, &names);
    let manifest = Manifest::parse(draft.as_bytes())
        .map_err(|e| fail(Kind::Input, format!("manifest {}: {e}", path.display())))?;
    Ok(Draft {
        bytes,
        manifest,
        values: Some(values),
    })
}

fn reservation(d: &Deploy, m: &Manifest) -> Result<Reservation> {
    let t = m.totals();
    let fit = |field: &str, total: u64, given: Option<u32>| -> Result<u32> {
        let asked = u32::try_from(total).map_err(|_| {
            fail(
                Kind::Input,
                format!("manifest asks for {total} {field}: too much"),
            )
        })?;
        Ok(given.unwrap_or(asked))
    };
    let r = Reservation {
        cpu_millis: fit("CPU millicores", t.cpu_millis, d.reserve.cpu)?,
        memory_mib: fit("memory MiB", t.memory_mib, d.reserve.memory)?,
        storage_gib: fit("storage GiB", t.storage_gib, d.reserve.storage)?,
    };
    check_reservation(t, r).map_err(|v| fail(Kind::Input, format!("reservation: {v}")))?;
    Ok(r)
}

/// Runs `deploy` for a manifest already read and validated by [`read_manifest`] (before any
/// connection: a bad manifest is reported as such even with the chain unreachable).
pub async fn run(ctx: &Ctx, d: Deploy, draft: Draft) -> Result<()> {
    let json = ctx.global.json;
    let Draft {
        bytes,
        manifest,
        values,
    } = draft;
    let r = reservation(&d, &manifest)?;
    if let Err(v) = Policy::default().check(&manifest) {
        progress(
            json,
            &format!("warning: keepers with the default policy refuse this manifest: {v}"),
        );
    }
    let mut wanted = Wanted {
        cpu_millis: r.cpu_millis,
        memory_mib: r.memory_mib,
        storage_gib: r.storage_gib,
        attributes: d
            .attributes
            .iter()
            .map(|a| {
                a.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| fail(Kind::Input, format!("--attribute `{a}` is not key=value")))
            })
            .collect::<Result<_>>()?,
        max_hourly: None,
        secrets: values.is_some(),
    };
    let w = ctx.wallet()?;
    let offers = market::offers(ctx).await?;
    if offers.is_empty() {
        return Err(fail(Kind::Refused, "no provider is registered"));
    }
    // --max-hourly is in the deployment's payment token
    let token_for_limits = Token::load(ctx, ctx.deployment.payment_token).await?;
    if let Some(max) = &d.max_hourly {
        wanted.max_hourly = Some(token_for_limits.parse("--max-hourly", max)?);
    }
    let chosen = if d.provider == "auto" {
        let (verdicts, best) = market::choose(&offers, &wanted, token_for_limits.decimals);
        match best {
            Some(o) => o.clone(),
            None => {
                let why: Vec<String> = verdicts
                    .iter()
                    .map(|v| {
                        format!(
                            "provider {}: {}",
                            v.id,
                            v.excluded.clone().unwrap_or_default()
                        )
                    })
                    .collect();
                return Err(fail(
                    Kind::Refused,
                    format!(
                        "no provider fits {} millicores, {} MiB, {} GiB: {}",
                        r.cpu_millis,
                        r.memory_mib,
                        r.storage_gib,
                        why.join("; ")
                    ),
                ));
            }
        }
    } else {
        let id: u32 = d.provider.parse().map_err(|_| {
            fail(
                Kind::Input,
                format!("--provider `{}` is neither auto nor an id", d.provider),
            )
        })?;
        let o = market::offer(ctx, id).await?;
        if let Some(why) = o.exclusion(&wanted, token_for_limits.decimals) {
            return Err(fail(
                Kind::Refused,
                format!("provider {id} cannot take this lease: {why}"),
            ));
        }
        o
    };
    let token = Token::load(ctx, chosen.token).await?;
    let rate = chosen.max_rate(&wanted);
    let escrow_read = ctx.escrow();
    let min_runway: u64 = escrow_read
        .minRunway()
        .call()
        .await
        .map_err(|e| failure::contract("minRunway", &e))?
        .to();
    let required = pricing::cost_of(min_runway, rate);
    let deposit = match (&d.deposit, d.hours) {
        (Some(text), _) => token.parse("--deposit", text)?,
        (None, Some(h)) if h.is_finite() && h > 0.0 => {
            pricing::cost_of((h * 3600.0).ceil() as u64, rate)
        }
        (None, _) => return Err(fail(Kind::Input, "--hours must be a positive number")),
    };
    let hourly = pricing::cost_of(3600, rate);
    if deposit < required {
        return Err(fail(
            Kind::Refused,
            format!(
                "deposit {} is below the minimum {}: the escrow requires {min_runway} s of runway at this lease's maximum rate of {} per hour",
                token.show(deposit),
                token.show(required),
                token.show(hourly)
            ),
        ));
    }
    token.require_balance(ctx, w.address, deposit).await?;
    let sealed = values.is_some();
    let bytes = match &values {
        Some(v) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            secrets::seal(ctx, &w, &text, v, chosen.id).await?
        }
        None => bytes,
    };
    progress(
        json,
        &format!(
            "provider {} ({}): {} millicores, {} MiB, {} GiB at most {} per hour; deposit {}",
            chosen.id,
            chosen.endpoint,
            r.cpu_millis,
            r.memory_mib,
            r.storage_gib,
            token.show(hourly),
            token.show(deposit)
        ),
    );
    let lease = open(
        ctx,
        &w,
        &d,
        &token,
        chosen.id,
        r,
        keccak256(&bytes),
        deposit,
        rate,
    )
    .await?;
    progress(json, &format!("lease {lease} opened"));
    if sealed {
        let kept = secrets::kept_path(&d.manifest, lease);
        std::fs::write(&kept, &bytes).map_err(|e| {
            fail(
                Kind::Input,
                format!("keeping the sealed manifest at {}: {e}", kept.display()),
            )
        })?;
        progress(
            json,
            &format!(
                "sealed manifest kept at {} (secrets show and update --secrets-from read it)",
                kept.display()
            ),
        );
    }
    if d.manifest_uri.is_none() {
        gateway::upload(ctx, &w, &chosen.endpoint, lease, &bytes).await?;
    }
    let view = wait(ctx, lease, Duration::from_secs(d.wait_s)).await?;
    emit(
        json,
        &json!({
            "lease": lease.to_string(),
            "provider": chosen.id,
            "status": "active",
            "endpoint": view.endpoint,
            "deposit": deposit.to_string(),
            "max_rate": rate.to_string(),
            "tenant": w.address,
        }),
        || {
            table(
                &["lease", "provider", "endpoint"],
                &[vec![
                    lease.to_string(),
                    chosen.id.to_string(),
                    view.endpoint.clone(),
                ]],
            )
        },
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn open(
    ctx: &Ctx,
    w: &Wallet,
    d: &Deploy,
    token: &Token,
    provider: u32,
    r: Reservation,
    hash: alloy::primitives::B256,
    deposit: U256,
    rate: U256,
) -> Result<U256> {
    let escrow = LeaseEscrow::new(ctx.deployment.lease_escrow, w.provider.clone());
    let uri = d.manifest_uri.clone().unwrap_or_default();
    // 50% padding: a keeper releasing capacity between estimate and mining makes the
    // allocation slot costlier to fill than the estimate assumed.
    let receipt = if d.no_permit {
        token
            .ensure_allowance(w, ctx.deployment.lease_escrow, deposit)
            .await?;
        w.send(
            escrow.openLease(
                U256::from(provider),
                r.cpu_millis,
                r.memory_mib,
                r.storage_gib,
                hash,
                uri,
                deposit,
                rate,
            ),
            "openLease",
            50,
        )
        .await?
    } else {
        let deadline = U256::from(ctx.now().await? + 3600);
        let (sig_r, vs) = token
            .permit(ctx, w, ctx.deployment.lease_escrow, deposit, deadline)
            .await?;
        w.send(
            escrow.openLeaseWithPermit(
                U256::from(provider),
                r.cpu_millis,
                r.memory_mib,
                r.storage_gib,
                hash,
                uri,
                deposit,
                rate,
                deadline,
                sig_r,
                vs,
            ),
            "openLeaseWithPermit",
            50,
        )
        .await?
    };
    receipt
        .decoded_log::<LeaseEscrow::LeaseOpened>()
        .map(|l| l.data.leaseId)
        .ok_or_else(|| fail(Kind::Internal, "openLease mined without LeaseOpened"))
}

/// What the provider's confirmation put on chain.
#[derive(Debug)]
struct Confirmed {
    endpoint: String,
}

/// The lease once the provider answered: its endpoint if confirmed; an error naming the
/// reject reason, or the timeout.
async fn wait(ctx: &Ctx, lease: U256, limit: Duration) -> Result<Confirmed> {
    let json = ctx.global.json;
    let start = Instant::now();
    let mut said = Instant::now();
    // A getLease every half second: cheap, and the endpoint shows within a block of the
    // keeper's confirmation.
    let delay = Duration::from_millis(500);
    loop {
        let status = crate::lease::load(ctx, lease).await?.status;
        // The endpoint is in the confirmation's event.
        let endpoint = if status == LeaseStatus::Pending {
            String::new()
        } else {
            history::endpoint_of(ctx, lease).await?.unwrap_or_default()
        };
        match status {
            LeaseStatus::Active | LeaseStatus::Closing | LeaseStatus::Closed
                if !endpoint.is_empty() =>
            {
                progress(
                    json,
                    &format!(
                        "lease {lease} confirmed after {:.1} s",
                        start.elapsed().as_secs_f64()
                    ),
                );
                return Ok(Confirmed { endpoint });
            }
            LeaseStatus::Rejected => {
                let reason = history::rejection_of(ctx, lease)
                    .await?
                    .and_then(RejectReason::from_u8)
                    .map_or_else(|| "unknown reason".to_owned(), |r| format!("{r:?}"));
                return Err(fail(
                    Kind::NotDeployed,
                    format!(
                        "provider rejected lease {lease}: {reason}; get the deposit back with `berth withdraw {lease}`"
                    ),
                ));
            }
            LeaseStatus::Pending => {}
            other => {
                return Err(fail(
                    Kind::NotDeployed,
                    format!("lease {lease} is {other:?}, not running"),
                ));
            }
        }
        if start.elapsed() > limit {
            return Err(fail(
                Kind::NotDeployed,
                format!(
                    "lease {lease} was not confirmed within {} s; it stays pending: `berth status {lease}` to watch, `berth close {lease}` to cancel after the accept timeout",
                    limit.as_secs()
                ),
            ));
        }
        if said.elapsed() >= Duration::from_secs(5) {
            progress(
                json,
                &format!(
                    "waiting for the provider… {:.0} s",
                    start.elapsed().as_secs_f64()
                ),
            );
            said = Instant::now();
        }
        tokio::time::sleep(delay).await;
    }
}
