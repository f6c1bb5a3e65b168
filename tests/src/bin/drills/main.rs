//! `cargo run --release -p berth-e2e --bin drills -- <drill> [--rounds N] [--seed S]`
//!
//! Fault drills: each runs rounds of random faults against real processes, checks after
//! every round that nothing was lost, duplicated or left behind, prints what it did and
//! what it counted, and ends with `N passed, N failed` (failures named). The exit status
//! is non-zero when a round failed. `scripts/test` runs a short round of each; longer rounds
//! on demand. Drills:
//!
//! - `indexer`: the indexer SIGKILLed at random moments during backfill and following, with
//!   anvil reorgs of random depth 1–5 in between, every RPC request through a proxy adding
//!   30–150 ms; after each round the events equal the chain's logs, the leases equal
//!   `getLease`, and the entity tables equal the event log.
//! - `keeper`: the keeper SIGKILLed at random moments while 20 leases are opened, deployed,
//!   reported, closed and exhausted (chain time moved forward): after each round every
//!   active lease has one workload and every ended one none, each lease was confirmed once,
//!   reports are contiguous and within the reservation, closed leases finally reported.
//! - `hostile`: rounds of 50 generated hostile manifests and uploads against a real keeper
//!   (policy escapes, oversized, deeply nested and alias-bomb YAML, invalid UTF-8, NUL bytes,
//!   huge numbers, path-like and unicode names, wrong hashes, manifest URLs that drip or
//!   never end): each lease rejected with a manifest reason, every deposit refunded in full,
//!   no workload, the keeper up with its peak memory under 512 MiB.
//! - `outages`: a keeper and an indexer together while the node freezes (SIGSTOP, 1–8 s),
//!   the podman service goes away (1–5 s), Postgres restarts (1–5 s down), or node and
//!   podman at once, tenants opening and closing leases
//!   meanwhile: after each round every active lease serves from one workload, every closed
//!   one has none, and the indexer equals the chain, with no manual step.

mod corpus;
mod hostile;
mod indexer;
mod keeper;
mod outages;
mod postgres;

use eyre::{Result, bail};

/// A small deterministic generator (xorshift64*): a drill's faults are reproducible from the
/// seed it prints.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        lo + x % (hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.between(1, 100) <= percent
    }
}

/// Rounds passed and failed, with what failed.
#[derive(Debug, Default)]
pub struct Tally {
    passed: u32,
    failures: Vec<String>,
}

impl Tally {
    /// Records one round's outcome.
    pub fn record(&mut self, round: u32, outcome: Result<String>) {
        match outcome {
            Ok(summary) => {
                self.passed += 1;
                println!("round {round}: passed — {summary}");
            }
            Err(e) => {
                println!("round {round}: FAILED — {e:#}");
                self.failures.push(format!("round {round}: {e:#}"));
            }
        }
    }

    /// Prints the verdict; an error when a round failed.
    pub fn finish(self, drill: &str) -> Result<()> {
        println!(
            "{drill}: {} passed, {} failed",
            self.passed,
            self.failures.len()
        );
        for f in &self.failures {
            println!("  failed: {f}");
        }
        if !self.failures.is_empty() {
            bail!("{drill}: {} rounds failed", self.failures.len());
        }
        Ok(())
    }
}

struct Args {
    drill: String,
    rounds: u32,
    seed: u64,
}

fn parse_args() -> Result<Args> {
    let usage = "usage: drills <indexer|keeper|hostile|outages> [--rounds N] [--seed S]";
    let mut args = std::env::args().skip(1);
    let Some(drill) = args.next() else {
        bail!("{usage}");
    };
    let mut rounds = 5;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| eyre::eyre!("{flag} needs a value; {usage}"))?;
        match flag.as_str() {
            "--rounds" => {
                rounds = value
                    .parse()
                    .map_err(|_| eyre::eyre!("--rounds must be a whole number, not `{value}`"))?;
            }
            "--seed" => {
                seed = value
                    .parse()
                    .map_err(|_| eyre::eyre!("--seed must be a whole number, not `{value}`"))?;
            }
            other => bail!("unknown option `{other}`; {usage}"),
        }
    }
    Ok(Args {
        drill,
        rounds,
        seed,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    println!(
        "drill {} — {} rounds, seed {} (rerun with --seed {} to repeat the faults)",
        args.drill, args.rounds, args.seed, args.seed
    );
    let mut rng = Rng::new(args.seed);
    match args.drill.as_str() {
        "indexer" => indexer::run(args.rounds, &mut rng).await,
        "hostile" => hostile::run(args.rounds, &mut rng).await,
        "outages" => outages::run(args.rounds, &mut rng).await,
        "keeper" => keeper::run(args.rounds, &mut rng).await,
        other => bail!("unknown drill `{other}`; drills: indexer, keeper, hostile, outages"),
    }
}
