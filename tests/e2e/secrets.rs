//! Sealed secrets end to end (real keeper, podman, anvil, Postgres): a value sealed to the
//! provider's registered key reaches the container's environment and a read-only file in it,
//! and nowhere else (not the keeper's database, not its debug log, not the disk: the file
//! lives on a tmpfs and goes with the lease); an envelope sealed for another tenant, a corrupted
//! one, one replayed onto a second lease and one sealed to a retired key version are each
//! rejected as `SecretsUnreadable` with the whole deposit refunded and nothing run; a key
//! rotation leaves the lease sealed to the old key running and a new lease on the new key runs.

use alloy::primitives::{Address, B256, U256, keccak256};
use base64::Engine as _;
use berth_bindings::{LeaseStatus, ProviderRegistry, RejectReason};
use berth_e2e::{database_url, gateway::scratch_dir, keeper::KeeperProcess, mined, unique_suffix};
use berth_protocol::secrets::{self, Binding, Recipient, SecretValues};
use eyre::{Result, ensure};

use crate::keeper::{TENANT, World, world};

/// The example app with `BERTH_SECRET` from the sealed secret `token`; the tenant's copy is
/// sealed to `tenant_key`.
fn sealed_manifest(
    w: &World,
    tenant: Address,
    version: u32,
    provider_key: &[u8; 32],
    tenant_key: &[u8; 32],
    value: &str,
) -> Result<String> {
    let service = "  web:\n    image: localhost/berth-hello:latest\n    ports:\n      - port: 8080\n        expose: http\n    env: {BERTH_SECRET_FILE: /etc/berth/token}\n    secret_env: {BERTH_SECRET: token}\n    secret_files: {/etc/berth/token: token}\n    resources:\n      cpu: 500m\n      memory: 256Mi\n";
    seal_manifest(
        w,
        tenant,
        version,
        (provider_key, tenant_key),
        service,
        &[("token", value)],
    )
}

/// A manifest of `services` (YAML under `services:`) with `values` sealed to
/// (provider key, tenant key) for `tenant` at key `version`.
pub(crate) fn seal_manifest(
    w: &World,
    tenant: Address,
    version: u32,
    (provider_key, tenant_key): (&[u8; 32], &[u8; 32]),
    services: &str,
    values: &[(&str, &str)],
) -> Result<String> {
    let names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
    let head = format!(
        "version: 1\nsecrets:\n  key_version: {version}\n  names: [{}]\n  sealed: ",
        names.join(", ")
    );
    let middle = "\n  tenant_copy: ";
    let tail = format!("\nservices:\n{services}");
    let aad = secrets::associated_data(&format!("{head}{middle}{tail}"), &[]);
    let binding = Binding {
        chain_id: w.chain.chain_id(),
        escrow: w.c.escrow,
        provider_id: U256::from(1),
        tenant,
        key_version: version,
    };
    let values = SecretValues(
        values
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
    );
    let sealed = secrets::seal(provider_key, &binding, Recipient::Provider, aad, &values)?;
    let copy = secrets::seal(tenant_key, &binding, Recipient::Tenant, aad, &values)?;
    Ok(format!("{head}{sealed}{middle}{copy}{tail}"))
}

pub(crate) async fn register_key(w: &World, public: &[u8; 32]) -> Result<()> {
    let owner = w.chain.wallet(2)?;
    mined(
        ProviderRegistry::new(w.c.registry, &owner)
            .setEncryptionKey(U256::from(1), B256::from(*public)),
        "setEncryptionKey",
    )
    .await
}

/// A keeper key file holding `keys` as versions 1, 2, …
pub(crate) fn key_file(dir: &std::path::Path, keys: &[[u8; 32]]) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("encryption-keys");
    let text: String = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{} {}\n", i + 1, alloy::hex::encode(k)))
        .collect();
    std::fs::write(&path, text)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

/// Runs `berth-indexer` on the world's chain into `pool`'s database until it is at the head.
async fn index_to_head(w: &World, pool: &sqlx::PgPool) -> Result<()> {
    let indexer = berth_e2e::indexer_harness::IndexerProcess::spawn(
        &w.chain.rpc_url(),
        &w.setup.deployment,
        &database_url(&pool.connect_options()),
        &[],
    )?;
    berth_e2e::indexer_harness::wait_caught_up(&w.chain, pool, std::time::Duration::from_secs(60))
        .await?;
    indexer.kill()
}

fn sha256_hex(text: &str) -> String {
    alloy::hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

async fn served_secret_hash(w: &World, lease: U256) -> Result<String> {
    served(w, lease, "secret").await
}

/// What the example app's CGI `script` answers (trimmed).
async fn served(w: &World, lease: U256, script: &str) -> Result<String> {
    let url = format!("{}/cgi-bin/{script}", w.endpoint(lease).await?);
    Ok(berth_e2e::keeper::fetch(&url)
        .await
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// The lease's directory of secret files on the host.
fn secret_files_of(w: &World, lease: U256) -> std::path::PathBuf {
    let key = berth_keepers::render::LeaseKey {
        chain_id: w.chain.chain_id(),
        escrow: w.c.escrow,
        lease_id: lease,
    };
    w.setup.secret_files_dir().join(key.namespace())
}

#[sqlx::test(migrations = false)]
async fn sealed_secrets_reach_the_container_and_nowhere_else(pool: sqlx::PgPool) -> Result<()> {
    let dir = scratch_dir("secrets")?;
    let (old_secret, old_public) = secrets::generate_key_pair();
    let (new_secret, new_public) = secrets::generate_key_pair();
    let (tenant_secret, tenant_public) = secrets::generate_key_pair();
    let keys = key_file(&dir, &[old_secret, new_secret])?;
    let keys_setting = keys.display().to_string();
    let w = world(
        &pool.connect_options(),
        &[("BERTH_ENCRYPTION_KEYS", keys_setting.as_str())],
    )
    .await?;
    register_key(&w, &old_public).await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let tenant = w.chain.signer(TENANT)?.address();
    let value = format!("hunter2-{}", unique_suffix());

    let first = sealed_manifest(&w, tenant, 1, &old_public, &tenant_public, &value)?;
    let (a, status) = w.lease_with(first.as_bytes(), first.as_bytes()).await?;
    ensure!(status == 202, "upload answered {status}");
    w.wait_status(a, LeaseStatus::Active, &keeper).await?;
    ensure!(
        served_secret_hash(&w, a).await? == sha256_hex(&value),
        "the container does not see the secret"
    );
    let file = served(&w, a, "secret-file").await?;
    ensure!(
        file == format!("{} read-only", sha256_hex(&value)),
        "the container's secret file: {file}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p).map_or(0, |m| m.permissions().mode() & 0o777)
        };
        let host = secret_files_of(&w, a);
        ensure!(
            mode(&w.setup.secret_files_dir()) == 0o700,
            "the keeper's own directory"
        );
        ensure!(mode(&host.join("token")) == 0o444, "the file on the host");
        let tmpfs = std::fs::read_to_string("/proc/self/mountinfo")?
            .lines()
            .any(|l| l.contains(" /dev/shm ") && l.contains(" - tmpfs "));
        ensure!(tmpfs, "the files are on a tmpfs");
    }
    // The tenant's copy opens with the tenant's key (what its tools use to edit and re-seal).
    let m = berth_protocol::manifest::Manifest::parse(first.as_bytes())?;
    let sealed = m
        .secrets
        .as_ref()
        .ok_or_else(|| eyre::eyre!("no secrets"))?;
    let aad = secrets::associated_data(&first, &sealed.envelopes());
    let binding = Binding {
        chain_id: w.chain.chain_id(),
        escrow: w.c.escrow,
        provider_id: U256::from(1),
        tenant,
        key_version: 1,
    };
    let copy = secrets::open(
        &tenant_secret,
        &binding,
        Recipient::Tenant,
        aad,
        sealed.tenant_copy.as_deref().unwrap_or_default(),
    )?;
    ensure!(copy.0["token"] == value, "the tenant's copy");

    // Each refused with a reason, the deposit refunded, nothing run.
    let forged = sealed_manifest(
        &w,
        Address::repeat_byte(9),
        1,
        &old_public,
        &tenant_public,
        "x",
    )?;
    let mut corrupted = sealed_manifest(&w, tenant, 1, &old_public, &tenant_public, "y")?;
    let at = corrupted.find("sealed: ").unwrap_or_default() + 20;
    let flipped = if &corrupted[at..=at] == "A" { "B" } else { "A" };
    corrupted.replace_range(at..=at, flipped);
    let (forged_lease, _) = w.lease_with(forged.as_bytes(), forged.as_bytes()).await?;
    let (corrupted_lease, _) = w
        .lease_with(corrupted.as_bytes(), corrupted.as_bytes())
        .await?;
    let (replayed_lease, _) = w.lease_with(first.as_bytes(), first.as_bytes()).await?;

    // Rotation: the registry's key becomes version 2.
    register_key(&w, &new_public).await?;
    let second_value = format!("rotated-{}", unique_suffix());
    let second = sealed_manifest(&w, tenant, 2, &new_public, &tenant_public, &second_value)?;
    let (b, _) = w.lease_with(second.as_bytes(), second.as_bytes()).await?;
    let stale = sealed_manifest(&w, tenant, 1, &old_public, &tenant_public, "z")?;
    let (stale_lease, _) = w.lease_with(stale.as_bytes(), stale.as_bytes()).await?;

    for (name, lease, says) in [
        ("another tenant's envelope", forged_lease, "does not open"),
        ("a corrupted envelope", corrupted_lease, "does not open"),
        ("a replayed envelope", replayed_lease, "replayed"),
        ("a retired key version", stale_lease, "key version 1"),
    ] {
        w.wait_status(lease, LeaseStatus::Rejected, &keeper).await?;
        let reason = w.reject_reason(lease).await?;
        ensure!(
            reason == Some(RejectReason::SecretsUnreadable),
            "{name}: rejected for {reason:?}"
        );
        ensure!(w.pods(lease).await? == 0, "{name}: a pod runs");
        ensure!(
            w.escrow()?.refundableOf(lease).call().await? == U256::from(10_000_000),
            "{name}: the whole deposit is the tenant's to withdraw"
        );
        ensure!(
            keeper.log_text().contains(says),
            "{name}: the log says why ({says}):\n{}",
            keeper.log_text()
        );
    }
    w.wait_status(b, LeaseStatus::Active, &keeper).await?;
    ensure!(
        served_secret_hash(&w, b).await? == sha256_hex(&second_value),
        "the lease on the new key"
    );
    ensure!(
        served_secret_hash(&w, a).await? == sha256_hex(&value),
        "the lease on the old key still runs"
    );

    // Nowhere else: not in the keeper's answers, nor in the keeper's database, the indexer's
    // tables (indexed into the same database up to the head) or the keeper's debug log,
    // plain or in base64 (the form podman stores).
    let mut answers = String::new();
    for lease in [a, b, replayed_lease] {
        for path in [
            format!("/v1/leases/{lease}"),
            format!("/v1/leases/{lease}/reports"),
        ] {
            let url = format!("{}{path}", w.setup.gateway());
            answers.push_str(&berth_e2e::keeper::fetch(&url).await.unwrap_or_default());
        }
    }
    ensure!(
        answers.contains("\"status\""),
        "the keeper answered: {answers}"
    );
    index_to_head(&w, &pool).await?;
    let dump = std::process::Command::new("pg_dump")
        .args(["--data-only", &database_url(&pool.connect_options())])
        .output()?;
    ensure!(
        dump.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    ensure!(
        dump.contains("berth_keeper"),
        "the dump holds the keeper's tables"
    );
    let log = keeper.log_text();
    for v in [&value, &second_value] {
        let encoded = base64::engine::general_purpose::STANDARD.encode(v);
        for (what, text) in [
            ("database", &dump),
            ("keeper log", &log),
            ("keeper's answers", &answers),
        ] {
            ensure!(
                !text.contains(v.as_str()),
                "the {what} holds a secret value"
            );
            ensure!(
                !text.contains(&encoded),
                "the {what} holds a secret value in base64"
            );
        }
    }
    // The envelope is remembered by digest, for the lease that carried it first.
    ensure!(
        dump.contains(&alloy::hex::encode(keccak256(sealed.sealed.as_bytes()))),
        "the envelope's digest is recorded"
    );

    // The lease's end takes its files with it; a rejected lease never had any.
    ensure!(
        !secret_files_of(&w, replayed_lease).exists(),
        "files of a rejected lease"
    );
    berth_e2e::mined(w.escrow()?.closeLease(a), "closeLease").await?;
    berth_e2e::keeper::wait_for(
        "the closed lease's secret files to go",
        std::time::Duration::from_secs(30),
        || async { Ok((!secret_files_of(&w, a).exists()).then_some(())) },
    )
    .await?;
    ensure!(
        secret_files_of(&w, b).join("token").exists(),
        "the other lease's file"
    );

    // A keeper told to keep secret files on a disk (/var/tmp: kept across reboots, so never
    // a tmpfs) refuses to start, naming the setting.
    let disk = std::path::Path::new("/var/tmp").join(format!("berth-files-{}", unique_suffix()));
    let mut on_disk = w.setup.clone();
    on_disk.gateway_port = berth_e2e::keeper::free_port()?;
    on_disk
        .env
        .push(("BERTH_SECRET_FILES_DIR".into(), disk.display().to_string()));
    let refused = KeeperProcess::start(&on_disk)
        .await
        .err()
        .map(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&disk);
    ensure!(
        refused
            .as_ref()
            .is_some_and(|e| e.contains("secret_files_dir") && e.contains("not in memory")),
        "a keeper with secret files on disk: {refused:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The same story driven with the `berth` CLI: the provider's `rotate-key`, the tenant's
/// `deploy --secret`, `secrets show`, and after a second rotation (and a keeper restart)
/// `update --secrets-from`, which re-seals the values to the new key without the tenant
/// typing them again; values given as arguments are refused.
#[sqlx::test(migrations = false)]
async fn the_cli_seals_shows_and_reseals_secrets_across_a_key_rotation(
    pool: sqlx::PgPool,
) -> Result<()> {
    use crate::cli_harness::{Cli, OPERATOR, OWNER, PodsOf, manifest_file, settings, str_of};
    use berth_e2e::keeper::{KeeperSetup, PodmanService, hello_image, hello_manifest};

    hello_image()?;
    let chain = berth_e2e::Chain::start()?;
    let c = berth_e2e::deploy(&chain, settings()).await?;
    let podman = PodmanService::start().await?;
    let dir = scratch_dir("cli-secrets")?;
    let keys = dir.join("encryption-keys");
    let mut setup = KeeperSetup::new(
        &chain,
        &c,
        settings(),
        database_url(&pool.connect_options()),
        &podman,
    )?;
    setup.env = [
        ("BERTH_MIN_RUNWAY_S", "0".to_owned()),
        ("BERTH_ENCRYPTION_KEYS", keys.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let _cleanup = PodsOf(chain.chain_id());
    let cli = Cli {
        rpc_url: chain.rpc_url(),
        deployment: setup.deployment.clone(),
    };
    let operator = chain.signer(OPERATOR)?.address().to_string();
    cli.run(
        &chain,
        Some(OWNER),
        &[
            "--json",
            "provider",
            "register",
            "--endpoint",
            &setup.gateway(),
            "--operator",
            &operator,
            "--cpu",
            "4000",
            "--memory",
            "8192",
            "--base-price",
            "0.01",
        ],
    )?
    .ok()?;
    let keys_arg = keys.display().to_string();
    let first = cli
        .run(
            &chain,
            Some(OWNER),
            &["--json", "provider", "rotate-key", "1", "--keys", &keys_arg],
        )?
        .ok()?
        .json()?;
    ensure!(first["version"] == 1, "{first}");
    let mut keeper = KeeperProcess::start(&setup).await?;
    mined(
        berth_bindings::TestToken::new(c.token, chain.wallet(TENANT)?).mint(
            chain.signer(TENANT)?.address(),
            U256::from(1_000_000_000u64),
        ),
        "mint",
    )
    .await?;

    let text = String::from_utf8(hello_manifest())?.replace(
        "    resources:",
        "    secret_env: {BERTH_SECRET: token}\n    resources:",
    );
    let manifest = manifest_file("sealed.yaml", text.as_bytes())?;
    let value = format!("from-a-file-{}", unique_suffix());
    let value_file = dir.join("token");
    std::fs::write(&value_file, format!("{value}\n"))?;
    let m = manifest.display().to_string();

    // Values as arguments are refused before anything is sent.
    let bad = cli.run(
        &chain,
        Some(TENANT),
        &["deploy", &m, "--hours", "1", "--secret", "token=hunter2"],
    )?;
    ensure!(
        bad.code != 0 && bad.stderr.contains("never come from arguments"),
        "{bad:?}"
    );
    let missing = cli.run(&chain, Some(TENANT), &["deploy", &m, "--hours", "1"])?;
    ensure!(
        missing.code != 0
            && missing.stderr.contains("not in secrets.names")
            && missing.stderr.contains("--secret NAME=file:PATH"),
        "a secret_env without its secret: {missing:?}"
    );

    let secret_arg = format!("token=file:{}", value_file.display());
    let deployed = cli
        .run(
            &chain,
            Some(TENANT),
            &[
                "--json",
                "deploy",
                &m,
                "--hours",
                "1",
                "--secret",
                &secret_arg,
            ],
        )?
        .ok()?
        .json()?;
    let lease: U256 = str_of(&deployed, "lease").parse()?;
    let endpoint = str_of(&deployed, "endpoint");
    let hash = || async {
        berth_e2e::keeper::fetch(&format!("{endpoint}/cgi-bin/secret"))
            .await
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    ensure!(hash().await == sha256_hex(&value), "the container's secret");
    let kept = manifest.with_file_name(format!(
        "{}.lease-{lease}.yaml",
        manifest
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default()
    ));
    ensure!(
        kept.exists(),
        "deploy keeps the sealed manifest at {}",
        kept.display()
    );
    let kept_arg = kept.display().to_string();
    let shown = cli
        .run(
            &chain,
            Some(TENANT),
            &["--json", "secrets", "show", &lease.to_string(), &kept_arg],
        )?
        .ok()?
        .json()?;
    ensure!(shown["secrets"]["token"] == value.as_str(), "{shown}");
    let stranger = cli.run(
        &chain,
        Some(5),
        &["secrets", "show", &lease.to_string(), &kept_arg],
    )?;
    ensure!(
        stranger.code != 0,
        "another wallet opens the tenant's copy: {stranger:?}"
    );

    // Rotation to version 2; the keeper restarts to load it; the update re-seals to it.
    let second = cli
        .run(
            &chain,
            Some(OWNER),
            &["--json", "provider", "rotate-key", "1", "--keys", &keys_arg],
        )?
        .ok()?
        .json()?;
    ensure!(second["version"] == 2, "{second}");
    keeper.kill9();
    let keeper = KeeperProcess::start(&setup).await?;
    let updated = cli
        .run(
            &chain,
            Some(TENANT),
            &[
                "--json",
                "update",
                &lease.to_string(),
                &m,
                "--secrets-from",
                &kept_arg,
                "--wait",
                "120",
            ],
        )?
        .ok()?
        .json()?;
    ensure!(
        updated["running"] == true,
        "{updated}\n{}",
        keeper.log_text()
    );
    let resealed = berth_protocol::manifest::Manifest::parse(&std::fs::read(&kept)?)?;
    ensure!(
        resealed.secrets.map(|s| s.key_version) == Some(2),
        "the kept manifest is sealed to the new key"
    );
    ensure!(
        hash().await == sha256_hex(&value),
        "the same value after the update"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&manifest);
    Ok(())
}
