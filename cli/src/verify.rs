//! `verify-usage <lease>`: every usage report on chain recomputed from the samples the
//! provider serves — the Merkle root and the units — with the keeper's own metering code.

use alloy::primitives::{B256, U256};
use berth_protocol::{
    manifest::policy::Reservation,
    metering::{self, merkle},
};
use eyre::Result;
use serde_json::json;

use crate::{
    context::Ctx,
    failure::{Kind, fail},
    gateway, history, lease, market,
    output::{emit, table},
};

/// The check of one report.
#[derive(Debug, serde::Serialize)]
struct Check {
    sequence: u32,
    from: u64,
    to: u64,
    samples: usize,
    root_matches: bool,
    units_match: bool,
    onchain: [u64; 3],
    recomputed: [u64; 3],
    problem: Option<String>,
}

/// Runs `verify-usage`.
pub async fn run(ctx: &Ctx, id: U256) -> Result<()> {
    let l = lease::load(ctx, id).await?;
    let endpoint = market::offer(ctx, l.raw.providerId).await?.endpoint;
    let reservation = Reservation {
        cpu_millis: l.raw.cpuMillis,
        memory_mib: l.raw.memoryMiB,
        storage_gib: l.raw.storageGiB,
    };
    let reports = history::reports_of(ctx, id).await?;
    let mut checks = Vec::new();
    for r in &reports {
        let (from, to) = (r.from.to::<u64>(), r.to.to::<u64>());
        let onchain = [r.cpuUnits, r.memoryUnits, r.storageUnits];
        let mut check = Check {
            sequence: r.sequence,
            from,
            to,
            samples: 0,
            root_matches: false,
            units_match: false,
            onchain,
            recomputed: [0; 3],
            problem: None,
        };
        match gateway::report(&endpoint, id, r.sequence).await {
            Ok(served) => {
                let (inside, baseline, max_gap_ms) =
                    (served.samples, served.baseline, served.max_gap_ms);
                let root: B256 = merkle::samples_root(id, &inside);
                // Caps over the running time: the lease's last suspension is on chain (earlier ones are
                // not, so a clamped report from before them may read as a mismatch).
                let running = metering::running_seconds(
                    from,
                    to,
                    l.raw.suspendedAt.to::<u64>(),
                    l.raw.resumedAt.to::<u64>(),
                );
                let units = metering::units(
                    &baseline,
                    &inside,
                    from,
                    to,
                    running,
                    reservation,
                    max_gap_ms,
                );
                check.samples = inside.len();
                check.root_matches = root == r.samplesRoot;
                check.recomputed = [units.cpu, units.memory, units.storage];
                check.units_match = check.recomputed == onchain;
                if !check.root_matches {
                    check.problem = Some(format!(
                        "root {root} from the served samples ≠ {} on chain",
                        r.samplesRoot
                    ));
                } else if !check.units_match {
                    check.problem = Some("units on chain differ from the samples".into());
                }
            }
            Err(e) if crate::failure::exit_code(&e) == Kind::Mismatch as i32 => {
                check.problem = Some(format!(
                    "the provider does not serve this report: {}",
                    crate::failure::one_line(&e)
                ));
            }
            Err(e) => return Err(e),
        }
        checks.push(check);
    }
    let bad = checks.iter().filter(|c| c.problem.is_some()).count();
    emit(
        ctx.global.json,
        &json!({ "lease": id.to_string(), "reports": checks, "mismatches": bad }),
        || {
            let rows: Vec<Vec<String>> = checks
                .iter()
                .map(|c| {
                    vec![
                        c.sequence.to_string(),
                        format!("{}-{}", c.from, c.to),
                        c.samples.to_string(),
                        format!("{}/{}/{}", c.onchain[0], c.onchain[1], c.onchain[2]),
                        if c.problem.is_none() {
                            "ok".into()
                        } else {
                            c.problem.clone().unwrap_or_default()
                        },
                    ]
                })
                .collect();
            format!(
                "lease {id}: {} reports, {} verified\n{}",
                checks.len(),
                checks.len() - bad,
                table(
                    &["seq", "period", "samples", "cpu/mem/sto units", "check"],
                    &rows
                )
            )
        },
    );
    if bad > 0 {
        return Err(fail(
            Kind::Mismatch,
            format!(
                "{bad} of lease {id}'s reports do not match the provider's samples; `berth dispute {id}` freezes unmatured charges"
            ),
        ));
    }
    Ok(())
}
