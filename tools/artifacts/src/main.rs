//! `export-artifacts [--check]`: compiles the contracts the bindings are generated from and
//! writes `bindings/artifacts/`, or (with `--check`) fails when the committed files differ from
//! a fresh build.

use std::path::PathBuf;

use berth_artifacts::{CONTRACTS, Profile, TYPESCRIPT_BINDINGS, build, drift, typescript, write};
use clap::Parser;
use eyre::{WrapErr, bail};

#[derive(Debug, Parser)]
#[command(about = "Compile the Berth contracts and export the artifacts the bindings use")]
struct Args {
    /// Fail if `bindings/artifacts/` differs from a fresh build instead of writing it.
    #[arg(long)]
    check: bool,
    /// The project root (where `foundry.toml` is).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))]
    root: PathBuf,
}

fn main() -> eyre::Result<()> {
    let args = Args::parse();
    let root = args
        .root
        .canonicalize()
        .wrap_err_with(|| format!("project root {}", args.root.display()))?;
    let profile = Profile::load(&root)?;
    let started = std::time::Instant::now();
    let fresh = build(&profile, CONTRACTS)?;
    let dest = root.join("bindings/artifacts");
    let ts_path = root.join(TYPESCRIPT_BINDINGS);
    let ts = typescript(&fresh)?;
    if args.check {
        if std::fs::read(&ts_path).ok().as_deref() != Some(ts.as_slice()) {
            bail!(
                "{TYPESCRIPT_BINDINGS} is stale: run tools/export-artifacts and commit the result"
            );
        }
        let found = drift(&dest, &fresh).wrap_err_with(|| format!("reading {}", dest.display()))?;
        if !found.is_empty() {
            bail!(
                "bindings/artifacts is stale: run tools/export-artifacts and commit the result\n{found}"
            );
        }
        println!(
            "bindings/artifacts matches the contracts ({} artifacts, compiled in {:.1} s)",
            fresh.len(),
            started.elapsed().as_secs_f64()
        );
    } else {
        write(&dest, &fresh).wrap_err_with(|| format!("writing {}", dest.display()))?;
        if let Some(dir) = ts_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&ts_path, &ts).wrap_err_with(|| format!("writing {}", ts_path.display()))?;
        println!(
            "exported {} artifacts to {} and {TYPESCRIPT_BINDINGS}",
            fresh.len(),
            dest.display()
        );
    }
    Ok(())
}
