//! What a lease costs, computed exactly as `LeaseMath.sol` computes it: the maximum rate of a
//! reservation, a report's charge, when a balance runs out, what a runway costs and what an
//! auto top-up must add. Rates are scaled by [`PRICE_SCALE`]; amounts are token base units.
//! The end-to-end suite checks these against the contract's own library on anvil.

use alloy_primitives::U256;

use crate::PRICE_SCALE;

/// A provider's prices, scaled per unit-second: the base rate per lease-second, then per
/// CPU millicore-second, memory MiB-second and storage GiB-second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prices {
    /// Charged every second of an active lease.
    pub base_rate: u128,
    /// Per CPU millicore-second.
    pub cpu: u128,
    /// Per memory MiB-second.
    pub memory: u128,
    /// Per storage GiB-second.
    pub storage: u128,
}

impl From<[u128; 4]> for Prices {
    fn from([base_rate, cpu, memory, storage]: [u128; 4]) -> Self {
        Self {
            base_rate,
            cpu,
            memory,
            storage,
        }
    }
}

/// Per-unit-second factors of an hourly price: the base rate is per lease-hour, CPU per
/// core-hour (1000 millicores), memory per GiB-hour (1024 MiB), storage per GiB-hour.
pub const HOURLY_UNITS: [u64; 4] = [3600, 3600 * 1000, 3600 * 1024, 3600];

/// `LeaseMath.NEVER`: the depletion time of a lease that cannot be charged.
pub const NEVER: u64 = (1 << 40) - 1;

fn scale() -> U256 {
    U256::from(PRICE_SCALE)
}

/// The maximum charge per second of a reservation, scaled (`LeaseMath.rate`).
pub fn rate(p: Prices, cpu_millis: u32, memory_mib: u32, storage_gib: u32) -> U256 {
    U256::from(p.base_rate)
        + U256::from(p.cpu) * U256::from(cpu_millis)
        + U256::from(p.memory) * U256::from(memory_mib)
        + U256::from(p.storage) * U256::from(storage_gib)
}

/// The charge of a report over `period` seconds with the given units, rounded down to base
/// units (`LeaseMath.charge`).
pub fn charge(
    p: Prices,
    period: u64,
    cpu_units: u64,
    memory_units: u64,
    storage_units: u64,
) -> U256 {
    (U256::from(period) * U256::from(p.base_rate)
        + U256::from(cpu_units) * U256::from(p.cpu)
        + U256::from(memory_units) * U256::from(p.memory)
        + U256::from(storage_units) * U256::from(p.storage))
        / scale()
}

/// When `balance` runs out at `rate` with billing from `billed_until`
/// (`LeaseMath.depletionTime`; [`NEVER`] at rate zero).
pub fn depletion_time(billed_until: u64, balance: U256, rate: U256) -> U256 {
    if rate.is_zero() {
        return U256::from(NEVER);
    }
    U256::from(billed_until) + balance * scale() / rate
}

/// What `seconds` at `rate` cost, rounded up (`LeaseMath.costOf`): the minimum deposit of a
/// runway.
pub fn cost_of(seconds: u64, rate: U256) -> U256 {
    (U256::from(seconds) * rate).div_ceil(scale())
}

/// What must be added to `balance` so that a lease billed from `billed_until` at `rate` runs
/// until `now + target` (`LeaseMath.topUpFor`; zero when it already does).
pub fn top_up_for(billed_until: u64, balance: U256, rate: U256, now: u64, target: u64) -> U256 {
    let end = u128::from(now) + u128::from(target);
    if end <= u128::from(billed_until) {
        return U256::ZERO;
    }
    let needed = (U256::from(end - u128::from(billed_until)) * rate).div_ceil(scale());
    needed.saturating_sub(balance)
}

/// The hourly price in base units (rounded to the nearest) of a scaled per-unit-second price.
pub fn hourly_base_units(price: U256, per_hour_units: u64) -> U256 {
    (price * U256::from(per_hour_units) + scale() / U256::from(2)) / scale()
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Prices = Prices {
        base_rate: 2_777_777_778,
        cpu: 5_555_556,
        memory: 271_267,
        storage: 0,
    };

    #[test]
    fn rate_and_cost_match_the_devnet_prices() {
        // 0.01 tUSD/h base + 0.02 tUSD per core-hour at 500 millicores: 0.02 tUSD an hour,
        // one base unit more for the rounding up of the scaled prices
        let r = rate(P, 500, 0, 0);
        assert_eq!(r, U256::from(2_777_777_778u64 + 500 * 5_555_556));
        assert_eq!(cost_of(3600, r), U256::from(20_001));
        assert_eq!(cost_of(1, U256::from(1_500_000_001u64)), U256::from(2));
        assert_eq!(
            hourly_base_units(U256::from(5_555_556u64), HOURLY_UNITS[1]),
            U256::from(20_000)
        );
    }

    #[test]
    fn charge_rounds_down_and_depletion_is_never_at_rate_zero() {
        assert_eq!(charge(P, 1, 0, 0, 0), U256::from(2));
        assert_eq!(charge(P, 3600, 0, 0, 0), U256::from(10_000));
        assert_eq!(
            depletion_time(7, U256::from(99), U256::ZERO),
            U256::from(NEVER)
        );
        assert_eq!(
            depletion_time(100, U256::from(3), U256::from(PRICE_SCALE)),
            U256::from(103)
        );
    }

    #[test]
    fn top_up_covers_exactly_the_missing_runway() {
        let r = U256::from(PRICE_SCALE); // one base unit a second
        assert_eq!(top_up_for(100, U256::from(50), r, 120, 60), U256::from(30));
        assert_eq!(top_up_for(100, U256::from(80), r, 120, 60), U256::ZERO);
        assert_eq!(top_up_for(200, U256::ZERO, r, 120, 60), U256::ZERO);
    }
}
