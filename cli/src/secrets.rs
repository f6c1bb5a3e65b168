//! Sealed secrets on the tenant's side ([`berth_protocol::secrets`]): values from files or
//! the environment (never from arguments, which other users of the machine can read), sealed
//! to the chosen provider's registered key and to the tenant's own key, which is derived from
//! a wallet signature so nothing but the wallet needs keeping. `secrets show` opens the
//! tenant's copy of a sealed manifest; `update --secrets-from` re-seals the same values for a
//! new manifest without writing them anywhere.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use alloy::{
    primitives::{Address, U256},
    signers::SignerSync,
};
use berth_protocol::{
    manifest::Manifest,
    secrets::{self, Binding, Recipient, SecretValues},
};
use eyre::Result;
use serde_json::json;

use crate::{
    context::{Ctx, Wallet},
    failure::{self, Kind, fail},
    lease,
    output::{emit, table},
};

/// Where secret values come from.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecretArgs {
    /// A value the manifest's `secret_env`, `secret_files` or `pull_secret` names: `NAME=file:PATH` (the
    /// file's contents, one trailing newline dropped) or `NAME=env:VAR` (repeatable). Values
    /// never come from arguments.
    #[arg(long = "secret", value_name = "NAME=file:PATH|NAME=env:VAR")]
    pub secrets: Vec<String>,
}

/// Reads every `--secret` value now (a missing file or variable is the user's first problem).
pub fn read_values(args: &SecretArgs) -> Result<SecretValues> {
    let mut values = BTreeMap::new();
    for spec in &args.secrets {
        let bad = || {
            fail(
                Kind::Input,
                format!(
                    "--secret `{spec}` is not NAME=file:PATH or NAME=env:VAR (values never come from arguments)"
                ),
            )
        };
        let (name, source) = spec.split_once('=').ok_or_else(bad)?;
        if !secrets::is_secret_name(name) {
            return Err(fail(
                Kind::Input,
                format!("--secret `{name}`: a name is a-z, 0-9, _ or -, starting with a letter"),
            ));
        }
        let value = if let Some(path) = source.strip_prefix("file:") {
            let text = std::fs::read_to_string(path)
                .map_err(|e| fail(Kind::Input, format!("--secret {name}: {path}: {e}")))?;
            text.strip_suffix('\n').unwrap_or(&text).to_owned()
        } else if let Some(var) = source.strip_prefix("env:") {
            std::env::var(var).map_err(|_| {
                fail(
                    Kind::Input,
                    format!("--secret {name}: environment variable {var} is not set"),
                )
            })?
        } else {
            return Err(bad());
        };
        if values.insert(name.to_owned(), value).is_some() {
            return Err(fail(Kind::Input, format!("--secret {name} is given twice")));
        }
    }
    Ok(SecretValues(values))
}

/// The section appended to a manifest, around its two envelopes.
fn section(version: u32, names: &[&String]) -> (String, &'static str) {
    let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    (
        format!(
            "secrets:\n  key_version: {version}\n  names: [{}]\n  sealed: ",
            names.join(", ")
        ),
        "\n  tenant_copy: ",
    )
}

fn with_newline(text: &str) -> String {
    if text.ends_with('\n') || text.is_empty() {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

/// `text` with a placeholder section naming `names`, to validate a manifest before it is
/// sealed.
pub fn draft(text: &str, names: &[&String]) -> String {
    let (head, middle) = section(1, names);
    format!("{}{head}AAAA{middle}AAAA\n", with_newline(text))
}

/// The tenant's secrets key pair on this chain: derived from the wallet's signature of a
/// fixed message, so the same wallet always finds it again.
pub fn tenant_key(ctx: &Ctx, w: &Wallet) -> Result<([u8; 32], [u8; 32])> {
    let message = secrets::tenant_key_message(ctx.deployment.chain_id);
    let signature = w
        .signer
        .sign_message_sync(message.as_bytes())
        .map_err(|e| fail(Kind::Input, format!("signing with the wallet: {e}")))?;
    Ok(secrets::key_pair(&secrets::tenant_key_material(
        &signature.as_bytes(),
    )))
}

/// The provider's registered key and its version; refused when it has none.
pub async fn provider_key(ctx: &Ctx, provider: u32) -> Result<([u8; 32], u32)> {
    let key = ctx
        .registry()
        .encryptionKeyOf(U256::from(provider))
        .call()
        .await
        .map_err(|e| failure::contract("encryptionKeyOf", &e))?;
    if key.version == 0 {
        return Err(fail(
            Kind::Refused,
            format!("provider {provider} has registered no encryption key: it cannot take secrets"),
        ));
    }
    Ok((key.publicKey.0, key.version))
}

/// Seals `values` into `text` for `provider`'s lease of `w`'s: the manifest bytes to commit.
pub async fn seal(
    ctx: &Ctx,
    w: &Wallet,
    text: &str,
    values: &SecretValues,
    provider: u32,
) -> Result<Vec<u8>> {
    let (provider_key, version) = provider_key(ctx, provider).await?;
    let (_, tenant_public) = tenant_key(ctx, w)?;
    let names: Vec<&String> = values.0.keys().collect();
    let (head, middle) = section(version, &names);
    let text = with_newline(text);
    let aad = secrets::associated_data(&format!("{text}{head}{middle}\n"), &[]);
    let binding = binding(ctx, provider, w.address, version);
    let seal = |key: &[u8; 32], r| {
        secrets::seal(key, &binding, r, aad, values).map_err(|e| fail(Kind::Input, e.to_string()))
    };
    let sealed = seal(&provider_key, Recipient::Provider)?;
    let copy = seal(&tenant_public, Recipient::Tenant)?;
    let bytes = format!("{text}{head}{sealed}{middle}{copy}\n").into_bytes();
    Manifest::parse(&bytes).map_err(|e| fail(Kind::Input, format!("sealed manifest: {e}")))?;
    Ok(bytes)
}

fn binding(ctx: &Ctx, provider: u32, tenant: Address, key_version: u32) -> Binding {
    Binding {
        chain_id: ctx.deployment.chain_id,
        escrow: ctx.deployment.lease_escrow,
        provider_id: U256::from(provider),
        tenant,
        key_version,
    }
}

/// Opens the tenant's copy in the sealed manifest at `path` for `provider`.
pub fn open_copy(ctx: &Ctx, w: &Wallet, path: &Path, provider: u32) -> Result<SecretValues> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(Kind::Input, format!("{}: {e}", path.display())))?;
    let m = Manifest::parse(text.as_bytes())
        .map_err(|e| fail(Kind::Input, format!("{}: {e}", path.display())))?;
    let sealed = m.secrets.as_ref().ok_or_else(|| {
        fail(
            Kind::Input,
            format!("{} has no secrets section", path.display()),
        )
    })?;
    let copy = sealed.tenant_copy.as_deref().ok_or_else(|| {
        fail(
            Kind::Input,
            format!("{} has no tenant copy of its secrets", path.display()),
        )
    })?;
    let (tenant_secret, _) = tenant_key(ctx, w)?;
    let aad = secrets::associated_data(&text, &sealed.envelopes());
    let b = binding(ctx, provider, w.address, sealed.key_version);
    secrets::open(&tenant_secret, &b, Recipient::Tenant, aad, copy).map_err(|e| {
        fail(
            Kind::Refused,
            format!(
                "{}: {e} (is it this wallet's manifest for this lease's provider?)",
                path.display()
            ),
        )
    })
}

/// Where `deploy` keeps the sealed manifest of `lease`: beside the manifest it read.
pub fn kept_path(manifest: &Path, lease: U256) -> PathBuf {
    let stem = manifest
        .file_stem()
        .map_or_else(|| "manifest".into(), |s| s.to_string_lossy().into_owned());
    manifest.with_file_name(format!("{stem}.lease-{lease}.yaml"))
}

/// `secrets show <lease> <sealed manifest>`.
#[derive(Debug, clap::Args)]
pub struct Show {
    /// Lease id.
    pub lease: U256,
    /// The sealed manifest (`deploy` keeps it as `<manifest>.lease-<id>.yaml`).
    pub manifest: PathBuf,
}

/// Prints the secrets of a lease's sealed manifest, opened with the wallet's key.
pub async fn show(ctx: &Ctx, s: Show) -> Result<()> {
    let l = lease::load(ctx, s.lease).await?;
    let w = ctx.wallet()?;
    if l.raw.tenant != w.address {
        return Err(fail(
            Kind::Refused,
            format!(
                "lease {} is {}'s, not this wallet's ({})",
                s.lease, l.raw.tenant, w.address
            ),
        ));
    }
    let values = open_copy(ctx, &w, &s.manifest, l.raw.providerId)?;
    emit(
        ctx.global.json,
        &json!({ "lease": s.lease.to_string(), "secrets": values.0 }),
        || {
            let rows: Vec<Vec<String>> = values
                .0
                .iter()
                .map(|(k, v)| vec![k.clone(), v.clone()])
                .collect();
            table(&["secret", "value"], &rows)
        },
    );
    Ok(())
}
