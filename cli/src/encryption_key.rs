//! `berth provider rotate-key <id> --keys FILE`: a provider's X25519 encryption key, which
//! tenants seal secrets to. The new private key is appended to the keeper's key file
//! (`<version> <hex>`, mode 600, created if missing) before its public half is registered,
//! so a registered key is never lost; old lines stay, so leases sealed to earlier versions
//! keep running. Restart the keeper afterwards to load the new line.

use std::{io::Write, os::unix::fs::PermissionsExt, path::PathBuf};

use alloy::primitives::{B256, U256};
use berth_bindings::ProviderRegistry::ProviderRegistryInstance;
use eyre::Result;
use serde_json::json;

use crate::{
    context::Ctx,
    failure::{self, Kind, fail},
    output::emit,
};

/// `provider rotate-key`.
#[derive(Debug, clap::Args)]
pub struct RotateKey {
    /// Provider id.
    pub id: u32,
    /// The keeper's key file (its `encryption_keys` setting).
    #[arg(long)]
    pub keys: PathBuf,
}

/// The private key of `version` in the key file's text, if a line holds it.
fn line_of(text: &str, version: u32) -> Option<[u8; 32]> {
    text.lines().find_map(|l| {
        let (v, hex) = l.trim().split_once(char::is_whitespace)?;
        (v.parse::<u32>().ok()? == version)
            .then(|| alloy::hex::decode(hex.trim()).ok()?.try_into().ok())
            .flatten()
    })
}

/// Generates (or, after a failed registration, reuses) the next key and registers it.
pub async fn rotate(ctx: &Ctx, a: RotateKey) -> Result<()> {
    let w = ctx.wallet()?;
    let registry =
        ProviderRegistryInstance::new(ctx.deployment.provider_registry, w.provider.clone());
    let current = registry
        .encryptionKeyOf(U256::from(a.id))
        .call()
        .await
        .map_err(|e| failure::contract("encryptionKeyOf", &e))?
        .version;
    let next = current + 1;
    let shown = a.keys.display().to_string();
    let text = match std::fs::read_to_string(&a.keys) {
        Ok(t) => {
            let mode = std::fs::metadata(&a.keys)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(fail(
                    Kind::Input,
                    format!("{shown} is readable by others than its owner (chmod 600)"),
                ));
            }
            t
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(fail(Kind::Input, format!("{shown}: {e}"))),
    };
    let secret = match line_of(&text, next) {
        Some(secret) => secret,
        None => {
            let (secret, _) = berth_protocol::secrets::generate_key_pair();
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&a.keys)
                .map_err(|e| fail(Kind::Input, format!("{shown}: {e}")))?;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            writeln!(file, "{next} {}", alloy::hex::encode(secret))
                .and_then(|()| file.sync_all())
                .map_err(|e| fail(Kind::Input, format!("{shown}: {e}")))?;
            secret
        }
    };
    let public = berth_protocol::secrets::public_key(&secret)
        .map_err(|e| fail(Kind::Input, format!("{shown}: {e}")))?;
    let receipt = w
        .send(
            registry.setEncryptionKey(U256::from(a.id), B256::from(public)),
            "setEncryptionKey",
            20,
        )
        .await?;
    emit(
        ctx.global.json,
        &json!({ "provider": a.id, "version": next, "public_key": B256::from(public), "keys": shown, "tx": receipt.transaction_hash }),
        || {
            format!(
                "provider {} encryption key version {next} registered ({}); restart the keeper to load it",
                a.id,
                B256::from(public)
            )
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_found_by_its_line() {
        let hex = alloy::hex::encode([5u8; 32]);
        let text = format!("# keys\n1 {hex}\n2 zz\n");
        assert_eq!(line_of(&text, 1), Some([5; 32]));
        assert_eq!(line_of(&text, 2), None, "not hex");
        assert_eq!(line_of(&text, 3), None);
    }
}
