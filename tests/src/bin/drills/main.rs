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

const DRILLS: [&str; 4] = ["indexer", "keeper", "hostile", "outages"];

/// The command line after the program name; `seed` unless `--seed` names one.
fn parse_args(mut args: impl Iterator<Item = String>, seed: u64) -> Result<Args> {
    let usage = "usage: drills <indexer|keeper|hostile|outages> [--rounds N] [--seed S]";
    let Some(drill) = args.next() else {
        bail!("{usage}");
    };
    if !DRILLS.contains(&drill.as_str()) {
        bail!("unknown drill `{drill}`; drills: {}", DRILLS.join(", "));
    }
    let mut rounds = 5;
    let mut seed = seed;
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
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    Ok(Args {
        drill,
        rounds,
        seed,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let args = parse_args(std::env::args().skip(1), clock)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args> {
        parse_args(line.split_whitespace().map(str::to_owned), 42)
    }

    fn error(line: &str) -> String {
        parse(line).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn a_drill_with_rounds_and_seed_parses() {
        let a = parse("keeper --rounds 50 --seed 7").expect("valid");
        assert_eq!((a.drill.as_str(), a.rounds, a.seed), ("keeper", 50, 7));
        let a = parse("hostile").expect("valid");
        assert_eq!(
            (a.rounds, a.seed),
            (5, 42),
            "defaults: 5 rounds, the clock's seed"
        );
    }

    #[test]
    fn bad_command_lines_are_refused_with_what_is_wrong() {
        for (line, says) in [
            ("", "usage: drills"),
            (
                "everything",
                "unknown drill `everything`; drills: indexer, keeper",
            ),
            ("indexer --rounds", "--rounds needs a value"),
            (
                "indexer --rounds many",
                "--rounds must be a whole number, not `many`",
            ),
            ("indexer --rounds 0", "--rounds must be at least 1"),
            ("indexer --rounds -3", "--rounds must be a whole number"),
            ("indexer --seed x", "--seed must be a whole number"),
            ("indexer --fast 1", "unknown option `--fast`"),
        ] {
            assert!(error(line).contains(says), "{line:?}: {}", error(line));
        }
    }

    #[test]
    fn the_generator_is_reproducible_and_stays_in_range() {
        let (mut a, mut b) = (Rng::new(9), Rng::new(9));
        for _ in 0..1000 {
            let x = a.between(3, 7);
            assert_eq!(x, b.between(3, 7));
            assert!((3..=7).contains(&x));
        }
    }
}
