//! `berth-protocol`'s price, charge and runway formulas against the contracts' own
//! `LeaseMath`, on anvil, over random inputs: the CLI quotes and the keeper decides with the
//! Rust copies, the escrow bills with the Solidity ones.

use alloy::primitives::U256;
use berth_bindings::testing::LeaseMathHarness::{self, Prices as SolPrices};
use berth_e2e::{Chain, unique_suffix};
use berth_protocol::{
    metering::running_seconds,
    pricing::{self, Prices},
};
use eyre::{Result, ensure};

/// Random cases per formula.
const CASES: usize = 150;

/// xorshift64*: reproducible from the seed printed on failure, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value of at most `bits` bits, with small values and zero as likely as large ones.
    fn up_to(&mut self, bits: u32) -> u128 {
        let width = (self.next() % u64::from(bits + 1)) as u32;
        let raw = (u128::from(self.next()) << 64) | u128::from(self.next());
        if width == 0 { 0 } else { raw >> (128 - width) }
    }

    fn u64_up_to(&mut self, bits: u32) -> u64 {
        self.up_to(bits.min(64)) as u64
    }
}

#[tokio::test]
async fn rust_prices_charges_and_runways_equal_the_contracts() -> Result<()> {
    let chain = Chain::start()?;
    let p = chain.wallet(0)?;
    let math = LeaseMathHarness::deploy(p).await?;
    let seed = unique_suffix() | 1;
    let mut rng = Rng(seed);
    let mut checked = 0;
    for case in 0..CASES {
        let prices = Prices {
            base_rate: rng.up_to(100),
            cpu: rng.up_to(100),
            memory: rng.up_to(100),
            storage: rng.up_to(100),
        };
        let sol = SolPrices {
            baseRate: prices.base_rate,
            cpuPrice: prices.cpu,
            memoryPrice: prices.memory,
            storagePrice: prices.storage,
        };
        let (cpu, mem, sto) = (
            rng.u64_up_to(32) as u32,
            rng.u64_up_to(32) as u32,
            rng.u64_up_to(32) as u32,
        );
        let rate = pricing::rate(prices, cpu, mem, sto);
        let on_chain = math
            .rate(
                sol.clone(),
                U256::from(cpu),
                U256::from(mem),
                U256::from(sto),
            )
            .call()
            .await?;
        ensure!(rate == on_chain, "rate differs (seed {seed}, case {case})");

        let (period, cu, mu, su) = (
            rng.u64_up_to(40),
            rng.u64_up_to(64),
            rng.u64_up_to(64),
            rng.u64_up_to(64),
        );
        let charge = pricing::charge(prices, period, cu, mu, su);
        let on_chain = math
            .charge(
                sol,
                U256::from(period),
                U256::from(cu),
                U256::from(mu),
                U256::from(su),
            )
            .call()
            .await?;
        ensure!(
            charge == on_chain,
            "charge differs (seed {seed}, case {case})"
        );

        let (billed, balance, runway) = (
            rng.u64_up_to(40),
            U256::from(rng.up_to(96)),
            rng.u64_up_to(40),
        );
        let depletion = pricing::depletion_time(billed, balance, rate);
        let on_chain = math
            .depletionTime(U256::from(billed), balance, rate)
            .call()
            .await?;
        ensure!(
            depletion == on_chain,
            "depletion time differs (seed {seed}, case {case})"
        );
        let cost = pricing::cost_of(runway, rate);
        let on_chain = math.costOf(U256::from(runway), rate).call().await?;
        ensure!(cost == on_chain, "cost differs (seed {seed}, case {case})");

        let (now, target) = (rng.u64_up_to(40), rng.u64_up_to(32));
        let top_up = pricing::top_up_for(billed, balance, rate, now, target);
        let on_chain = math
            .topUpFor(
                U256::from(billed),
                balance,
                rate,
                U256::from(now),
                U256::from(target),
            )
            .call()
            .await?;
        ensure!(
            top_up == on_chain,
            "top-up differs (seed {seed}, case {case})"
        );

        let from = rng.u64_up_to(40);
        let to = from + rng.u64_up_to(32);
        let idle_from = if rng.next().is_multiple_of(3) {
            0
        } else {
            rng.u64_up_to(40)
        };
        let idle_until = if rng.next().is_multiple_of(3) {
            0
        } else {
            idle_from + rng.u64_up_to(32)
        };
        let running = running_seconds(from, to, idle_from, idle_until);
        let on_chain = math
            .runningSeconds(
                U256::from(from),
                U256::from(to),
                U256::from(idle_from),
                U256::from(idle_until),
            )
            .call()
            .await?;
        ensure!(
            U256::from(running) == on_chain,
            "running seconds differ for [{from}, {to}) idle [{idle_from}, {idle_until}) (seed {seed}, case {case})"
        );
        checked += 6;
    }
    println!("{checked} formula evaluations equal on anvil (seed {seed})");
    Ok(())
}
