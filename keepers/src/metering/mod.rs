//! The keeper's side of metering: the sampler that reads each workload's counters into the
//! store, and the report built from what it stored. The units and the Merkle tree are
//! [`berth_protocol::metering`]'s, the same code a tenant recomputes them with.

pub mod sampler;

use berth_protocol::{
    manifest::policy::Reservation,
    metering::{merkle, units},
};

/// Builds a lease's report for `(from_s, to_s]` from the samples stored for it: the units,
/// and the Merkle root over the period's samples taken up to `now_ms` (when the chain's clock
/// is ahead of ours, samples stored after this moment must not fall under a sent root).
#[allow(clippy::too_many_arguments)]
pub async fn build_report(
    store: &crate::store::Store,
    lease: alloy::primitives::U256,
    sequence: u32,
    from_s: u64,
    to_s: u64,
    running_s: u64,
    reservation: Reservation,
    max_gap_ms: u64,
    now_ms: u64,
) -> Result<crate::store::StoredReport, crate::store::StoreError> {
    let until_ms = (to_s * 1000).min(now_ms);
    let samples = store.samples(lease, from_s * 1000, until_ms).await?;
    let baseline = store.baseline(lease, from_s * 1000).await?;
    Ok(crate::store::StoredReport {
        lease,
        sequence,
        from_s,
        to_s,
        units: units(
            &baseline,
            &samples,
            from_s,
            to_s,
            running_s,
            reservation,
            max_gap_ms,
        ),
        root: merkle::samples_root(lease, &samples),
        sample_count: samples.len(),
        samples_until_ms: until_ms,
        tx: None,
    })
}
