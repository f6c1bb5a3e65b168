//! `berth`: what tenants and providers would otherwise do on Etherscan — register and run a
//! provider, find one, deploy a manifest to it, watch, fund, verify and close the lease.
//!
//! Results go to stdout (text, or JSON with `--json`), progress and errors to stderr; the
//! exit code says what kind of failure happened (see `failure::Kind` and cli/README.md).

mod alerts;
mod amounts;
mod context;
mod deploy;
mod encryption_key;
mod failure;
mod gateway;
mod history;
mod keys;
mod lease;
mod logs;
mod market;
mod output;
mod provider;
mod secrets;
mod shell;
mod token;
mod update;
mod verify;

use std::path::PathBuf;

use alloy::primitives::U256;
use clap::{Parser, Subcommand};
use eyre::Result;
use serde_json::json;

use crate::{
    context::{Ctx, Global},
    market::Wanted,
    output::{emit, table},
    token::Token,
};
use berth_protocol::pricing::{self, HOURLY_UNITS};

/// Berth: a decentralized container cloud, from the command line.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Provider commands (signed by the provider's owner).
    #[command(subcommand)]
    Provider(provider::ProviderCmd),
    /// List providers, with the price of a reservation and why a provider does not fit.
    Providers(Providers),
    /// Deploy a manifest: pick a provider, open and fund a lease, upload, wait for the endpoint.
    Deploy(deploy::Deploy),
    /// Show a lease: state, endpoint, balance, runway, last reports (and, with --events, what
    /// happened to it: deployed, confirmed, restarted, updated, suspended, ...).
    Status(StatusArgs),
    /// Add funds to a pending, active or suspended lease (a suspended one resumes).
    TopUp(TopUp),
    /// Commit a running lease to a new manifest; the provider rolls it out in place.
    Update(update::Update),
    /// A policy that lets the provider's keeper top the lease up within your caps.
    #[command(subcommand)]
    AutoTopUp(update::AutoTopUpCmd),
    /// Close an active or suspended lease (or cancel a pending one after the accept timeout).
    Close(LeaseArg),
    /// Withdraw the unearned rest of a closed lease.
    Withdraw(LeaseArg),
    /// Recompute every usage report of a lease from the provider's samples.
    VerifyUsage(LeaseArg),
    /// Freeze a lease's unmatured charges for the arbiter.
    Dispute(LeaseArg),
    /// Deliver a lease's manifest to its provider again.
    Upload(Upload),
    /// A lease's sealed secrets.
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// Print what a lease's workload writes to stdout and stderr (-f to follow).
    Logs(logs::Logs),
    /// Run a command (a shell by default) in a lease's container; interactive in a terminal.
    Shell(shell::Shell),
    /// A tenant's alerts from an indexer: runway running low, suspension, failed auto top-ups.
    Alerts(alerts::Alerts),
}

#[derive(Debug, clap::Subcommand)]
enum SecretsCmd {
    /// Open the tenant's copy of a sealed manifest's secrets with this wallet's key.
    Show(secrets::Show),
}

#[derive(Debug, clap::Args)]
struct LeaseArg {
    /// Lease id.
    lease: U256,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// Lease id.
    lease: U256,
    /// Also the lease's event feed from its provider (signed by this wallet, the tenant).
    #[arg(long)]
    events: bool,
}

#[derive(Debug, clap::Args)]
struct TopUp {
    /// Lease id.
    lease: U256,
    /// Amount, in the lease's token.
    #[arg(long)]
    amount: String,
}

#[derive(Debug, clap::Args)]
struct Upload {
    /// Lease id.
    lease: U256,
    /// The manifest file the lease committed to.
    manifest: PathBuf,
}

#[derive(Debug, clap::Args)]
struct Providers {
    /// CPU millicores the lease needs.
    #[arg(long, default_value_t = 0)]
    cpu: u32,
    /// Memory MiB the lease needs.
    #[arg(long, default_value_t = 0)]
    memory: u32,
    /// Storage GiB the lease needs.
    #[arg(long, default_value_t = 0)]
    storage: u32,
    /// An attribute that must match, `key=value` (repeatable).
    #[arg(long = "attribute")]
    attributes: Vec<String>,
    /// The most the reservation may cost per hour, in tokens.
    #[arg(long)]
    max_hourly: Option<String>,
    /// Also list providers that do not fit, with the reason.
    #[arg(long)]
    all: bool,
}

async fn providers(ctx: &Ctx, p: Providers) -> Result<()> {
    let offers = market::offers(ctx).await?;
    // prices are shown, and --max-hourly read, in the deployment's payment token
    let decimals = Token::load(ctx, ctx.deployment.payment_token)
        .await?
        .decimals;
    let mut wanted = Wanted {
        cpu_millis: p.cpu,
        memory_mib: p.memory,
        storage_gib: p.storage,
        attributes: market::parse_attributes(&p.attributes.join(",")),
        max_hourly: None,
        secrets: false,
    };
    if let Some(max) = &p.max_hourly {
        wanted.max_hourly = Some(amounts::parse("--max-hourly", max, decimals)?);
    }
    let (verdicts, best) = market::choose(&offers, &wanted, decimals);
    let listed: Vec<_> = offers
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| p.all || v.excluded.is_none())
        .collect();
    let value = json!({
        "providers": listed.iter().map(|(o, v)| json!({
            "offer": o,
            "hourly": pricing::cost_of(3600, o.max_rate(&wanted)).to_string(),
            "fits": v.excluded.is_none(),
            "excluded": v.excluded,
        })).collect::<Vec<_>>(),
        "cheapest": best.map(|o| o.id),
    });
    emit(ctx.global.json, &value, || {
        let rows: Vec<Vec<String>> = listed
            .iter()
            .map(|(o, v)| {
                let mut row = vec![
                    o.id.to_string(),
                    o.status.to_owned(),
                    format!("{}/{}/{}", o.free[0], o.free[1], o.free[2]),
                    amounts::format(pricing::cost_of(3600, o.max_rate(&wanted)), decimals),
                    amounts::format(
                        pricing::hourly_base_units(U256::from(o.prices[1]), HOURLY_UNITS[1]),
                        decimals,
                    ),
                    o.attributes
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                    o.endpoint.clone(),
                ];
                if p.all {
                    row.push(v.excluded.clone().unwrap_or_else(|| "fits".into()));
                }
                row
            })
            .collect();
        let mut header = vec![
            "id",
            "status",
            "free cpu/mem/sto",
            "per hour",
            "per core-hour",
            "attributes",
            "endpoint",
        ];
        if p.all {
            header.push("fit");
        }
        if rows.is_empty() {
            "no provider fits (--all shows why)".into()
        } else {
            table(&header, &rows)
        }
    });
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    // Local checks first: a bad manifest is the user's first problem, whatever the chain does.
    let manifest = match &cli.command {
        Command::Deploy(d) => Some(deploy::read_draft(&d.manifest, &d.secrets, None)?),
        Command::Update(u) => Some(deploy::read_draft(
            &u.manifest,
            &u.secrets,
            u.secrets_from.as_ref(),
        )?),
        _ => None,
    };
    let ctx = Ctx::connect(&cli.global).await?;
    match cli.command {
        Command::Provider(cmd) => provider::run(&ctx, cmd).await,
        Command::Providers(p) => providers(&ctx, p).await,
        Command::Deploy(d) => match manifest {
            Some(m) => deploy::run(&ctx, d, m).await,
            None => Err(eyre::eyre!("deploy without its manifest")),
        },
        Command::Status(a) => lease::status(&ctx, a.lease, a.events).await,
        Command::TopUp(t) => lease::top_up(&ctx, t.lease, &t.amount).await,
        Command::Update(u) => match manifest {
            Some(m) => update::update(&ctx, u, m).await,
            None => Err(eyre::eyre!("update without its manifest")),
        },
        Command::AutoTopUp(cmd) => update::auto_top_up(&ctx, cmd).await,
        Command::Close(a) => lease::close(&ctx, a.lease).await,
        Command::Withdraw(a) => lease::withdraw(&ctx, a.lease).await,
        Command::VerifyUsage(a) => verify::run(&ctx, a.lease).await,
        Command::Dispute(a) => lease::dispute(&ctx, a.lease).await,
        Command::Upload(u) => lease::upload(&ctx, u.lease, &u.manifest).await,
        Command::Secrets(SecretsCmd::Show(s)) => secrets::show(&ctx, s).await,
        Command::Logs(l) => logs::run(&ctx, l).await,
        Command::Alerts(a) => alerts::run(&ctx, a).await,
        Command::Shell(s) => shell::run(&ctx, s).await,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    if let Err(report) = run(cli).await {
        eprintln!("error: {}", failure::one_line(&report));
        std::process::exit(failure::exit_code(&report));
    }
}
