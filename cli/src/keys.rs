//! The signing key: an encrypted JSON keystore (password from a file or the environment) or a
//! hex key in `BERTH_PRIVATE_KEY`. Keys and passwords are never taken from arguments (they
//! would show in `ps` and shell history) and never printed, not even in errors.

use alloy::signers::local::PrivateKeySigner;
use eyre::Result;

use crate::{
    context::Global,
    failure::{Kind, fail},
};

/// Environment variable holding a hex private key.
pub const PRIVATE_KEY_ENV: &str = "BERTH_PRIVATE_KEY";
/// Environment variable holding the keystore's password.
pub const PASSWORD_ENV: &str = "BERTH_KEYSTORE_PASSWORD";

/// Loads the key the options point at.
pub fn load(global: &Global) -> Result<PrivateKeySigner> {
    if let Some(path) = &global.keystore {
        let password = match &global.password_file {
            Some(file) => std::fs::read_to_string(file)
                .map_err(|e| {
                    fail(
                        Kind::Input,
                        format!("--password-file {}: {e}", file.display()),
                    )
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            None => std::env::var(PASSWORD_ENV).map_err(|_| {
                fail(
                    Kind::Input,
                    format!(
                        "--keystore {} needs its password in --password-file or {PASSWORD_ENV}",
                        path.display()
                    ),
                )
            })?,
        };
        return PrivateKeySigner::decrypt_keystore(path, password).map_err(|e| {
            fail(
                Kind::Input,
                format!("cannot open keystore {}: {e}", path.display()),
            )
        });
    }
    let hex = std::env::var(PRIVATE_KEY_ENV).map_err(|_| {
        fail(
            Kind::Input,
            format!("this command signs a transaction: pass --keystore or set {PRIVATE_KEY_ENV}"),
        )
    })?;
    hex.trim().parse::<PrivateKeySigner>().map_err(|_| {
        fail(
            Kind::Input,
            format!("{PRIVATE_KEY_ENV} is not a 32-byte hex private key"),
        )
    })
}
