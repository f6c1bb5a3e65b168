//! Secrets sealed in the manifest: HPKE (RFC 9180, base mode, X25519 + HKDF-SHA256 +
//! ChaCha20-Poly1305) to the provider's key from the registry, and a second copy to a key of
//! the tenant's so the tenant's tools can read and re-seal them without keeping plaintext.
//!
//! Each envelope is bound by HPKE's `info` to the chain, the escrow, the provider, the tenant,
//! the provider's key version and the recipient's role, and by its associated data to the
//! rest of the manifest (the manifest text with the envelopes cut out). So an envelope copied
//! into another tenant's lease, another provider's, another manifest or under another key
//! version does not open. The manifest hash the tenant commits on chain covers the
//! envelopes, so what the keeper opens is exactly what the tenant sent. Lease ids are
//! assigned when the lease opens, after that commitment, so binding to one lease is by first
//! use: a keeper refuses an envelope another of its leases already carried.
//!
//! An envelope is `base64(enc ‖ ciphertext)`: the 32-byte encapsulated key, then the sealed
//! JSON object of names to values (16-byte tag included).

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, U256, keccak256};
use base64::Engine as _;
use hpke::{
    Deserializable, Kem as _, OpModeR, OpModeS, Serializable, aead::ChaCha20Poly1305,
    kdf::HkdfSha256, kem::X25519HkdfSha256,
};

/// Most secrets in a manifest.
pub const MAX_SECRETS: usize = 32;
/// The largest sealed plaintext (the JSON object of all secrets), bytes. Two base64
/// envelopes of it stay well inside the manifest's 64 KiB.
pub const MAX_PLAINTEXT_BYTES: usize = 12 * 1024;
/// The longest envelope text a manifest may carry.
pub const MAX_ENVELOPE_CHARS: usize = (MAX_PLAINTEXT_BYTES + 32 + 16).div_ceil(3) * 4;
/// Bytes of an X25519 key.
pub const KEY_BYTES: usize = 32;

const INFO_LABEL: &[u8] = b"berth/secrets/v1";
const AAD_LABEL: &[u8] = b"berth/secrets/aad/v1";
const ENC_BYTES: usize = 32;

/// Why secrets could not be sealed or opened. Never carries a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error("the envelope is not base64 of an encapsulated key and a ciphertext")]
    Malformed,
    #[error(
        "the envelope does not open with this key for this chain, escrow, provider, tenant and key version (another sender, another lease's tenant, or corrupted)"
    )]
    Unopenable,
    #[error("the sealed secrets are not a JSON object of names to strings")]
    NotSecrets,
    #[error("{0}")]
    Invalid(String),
    #[error("the key is not {KEY_BYTES} bytes")]
    BadKey,
}

/// Whose copy an envelope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// The provider's, opened by its keeper.
    Provider,
    /// The tenant's own, opened by the tenant's tools.
    Tenant,
}

/// What an envelope is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub chain_id: u64,
    pub escrow: Address,
    pub provider_id: U256,
    pub tenant: Address,
    /// The version of the provider's key in the registry the envelope is sealed to.
    pub key_version: u32,
}

impl Binding {
    /// HPKE's `info`: the label, then every bound value at a fixed width, then the role.
    fn info(&self, recipient: Recipient) -> Vec<u8> {
        let mut info = INFO_LABEL.to_vec();
        info.extend_from_slice(&self.chain_id.to_be_bytes());
        info.extend_from_slice(self.escrow.as_slice());
        info.extend_from_slice(&self.provider_id.to_be_bytes::<32>());
        info.extend_from_slice(self.tenant.as_slice());
        info.extend_from_slice(&self.key_version.to_be_bytes());
        info.push(match recipient {
            Recipient::Provider => 0,
            Recipient::Tenant => 1,
        });
        info
    }
}

/// Secret values by name. `Debug` never shows a value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretValues(pub BTreeMap<String, String>);

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl SecretValues {
    /// The plaintext that is sealed: a JSON object, names sorted.
    fn to_json(&self) -> Result<Vec<u8>, SecretsError> {
        check_names(self.0.keys())?;
        let json = serde_json::to_vec(&self.0).map_err(|_| SecretsError::NotSecrets)?;
        if json.len() > MAX_PLAINTEXT_BYTES {
            return Err(SecretsError::Invalid(format!(
                "the secrets take {} bytes sealed, the limit is {MAX_PLAINTEXT_BYTES}",
                json.len()
            )));
        }
        Ok(json)
    }

    fn from_json(json: &[u8]) -> Result<Self, SecretsError> {
        let map: BTreeMap<String, String> =
            serde_json::from_slice(json).map_err(|_| SecretsError::NotSecrets)?;
        check_names(map.keys())?;
        Ok(Self(map))
    }
}

/// A secret's name: 1–63 of `a-z`, `0-9`, `_`, `-`, starting with a letter.
pub fn is_secret_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn check_names<'a>(names: impl ExactSizeIterator<Item = &'a String>) -> Result<(), SecretsError> {
    if names.len() > MAX_SECRETS {
        return Err(SecretsError::Invalid(format!(
            "{} secrets, at most {MAX_SECRETS}",
            names.len()
        )));
    }
    for name in names {
        if !is_secret_name(name) {
            return Err(SecretsError::Invalid(format!(
                "`{}` is not a secret name (a-z, 0-9, _ or -, starting with a letter, at most 63)",
                name.escape_debug()
            )));
        }
    }
    Ok(())
}

/// The associated data of a manifest's envelopes: its text with each envelope's first
/// occurrence cut out (whatever the tenant's tools wrote around them stays).
pub fn associated_data(manifest_text: &str, envelopes: &[&str]) -> B256 {
    let mut text = manifest_text.to_owned();
    for envelope in envelopes.iter().filter(|e| !e.is_empty()) {
        text = text.replacen(envelope, "", 1);
    }
    let mut data = AAD_LABEL.to_vec();
    data.extend_from_slice(text.as_bytes());
    keccak256(data)
}

type PublicKey = <X25519HkdfSha256 as hpke::Kem>::PublicKey;
type PrivateKey = <X25519HkdfSha256 as hpke::Kem>::PrivateKey;
type EncappedKey = <X25519HkdfSha256 as hpke::Kem>::EncappedKey;

/// Seals `values` to `public` (the recipient's X25519 key) for `binding` and `aad`.
pub fn seal(
    public: &[u8; KEY_BYTES],
    binding: &Binding,
    recipient: Recipient,
    aad: B256,
    values: &SecretValues,
) -> Result<String, SecretsError> {
    let public = PublicKey::from_bytes(public).map_err(|_| SecretsError::BadKey)?;
    let plaintext = values.to_json()?;
    let mut rng = rand_core::UnwrapErr(rand_core::OsRng);
    let (enc, ciphertext) =
        hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
            &OpModeS::Base,
            &public,
            &binding.info(recipient),
            &plaintext,
            aad.as_slice(),
            &mut rng,
        )
        .map_err(|_| SecretsError::BadKey)?;
    let mut envelope = enc.to_bytes().to_vec();
    envelope.extend_from_slice(&ciphertext);
    Ok(base64::engine::general_purpose::STANDARD.encode(envelope))
}

/// Opens `envelope` with `secret` (the recipient's X25519 private key).
pub fn open(
    secret: &[u8; KEY_BYTES],
    binding: &Binding,
    recipient: Recipient,
    aad: B256,
    envelope: &str,
) -> Result<SecretValues, SecretsError> {
    if envelope.len() > MAX_ENVELOPE_CHARS {
        return Err(SecretsError::Malformed);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(envelope)
        .map_err(|_| SecretsError::Malformed)?;
    if bytes.len() < ENC_BYTES + 16 {
        return Err(SecretsError::Malformed);
    }
    let (enc, ciphertext) = bytes.split_at(ENC_BYTES);
    let enc = EncappedKey::from_bytes(enc).map_err(|_| SecretsError::Malformed)?;
    let secret = PrivateKey::from_bytes(secret).map_err(|_| SecretsError::BadKey)?;
    let plaintext = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &secret,
        &enc,
        &binding.info(recipient),
        ciphertext,
        aad.as_slice(),
    )
    .map_err(|_| SecretsError::Unopenable)?;
    SecretValues::from_json(&plaintext)
}

/// A key pair from 32 bytes of key material (random for a provider's key; derived from a
/// wallet signature for a tenant's): (private, public).
pub fn key_pair(ikm: &[u8; KEY_BYTES]) -> ([u8; KEY_BYTES], [u8; KEY_BYTES]) {
    let (secret, public) = X25519HkdfSha256::derive_keypair(ikm);
    (secret.to_bytes().into(), public.to_bytes().into())
}

/// A fresh random key pair.
pub fn generate_key_pair() -> ([u8; KEY_BYTES], [u8; KEY_BYTES]) {
    let mut ikm = [0u8; KEY_BYTES];
    rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, &mut ikm)
        .unwrap_or_else(|e| panic!("the OS has no randomness: {e}"));
    key_pair(&ikm)
}

/// The public key of `secret`.
pub fn public_key(secret: &[u8; KEY_BYTES]) -> Result<[u8; KEY_BYTES], SecretsError> {
    let secret = PrivateKey::from_bytes(secret).map_err(|_| SecretsError::BadKey)?;
    Ok(X25519HkdfSha256::sk_to_pk(&secret).to_bytes().into())
}

/// The message a tenant's wallet signs (EIP-191) to derive its secrets key: the same wallet
/// always derives the same key, so nothing but the wallet needs keeping.
pub fn tenant_key_message(chain_id: u64) -> String {
    format!("Berth: derive my secrets key for chain {chain_id}. Sign only in Berth's own tools.")
}

/// The tenant's key material from its signature of [`tenant_key_message`].
pub fn tenant_key_material(signature: &[u8]) -> [u8; KEY_BYTES] {
    keccak256([b"berth/secrets/tenant-key/v1".as_slice(), signature].concat()).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding {
            chain_id: 31337,
            escrow: Address::repeat_byte(0xe5),
            provider_id: U256::from(1),
            tenant: Address::repeat_byte(0x7e),
            key_version: 2,
        }
    }

    fn values() -> SecretValues {
        SecretValues(BTreeMap::from([
            ("db_password".into(), "hunter2".into()),
            ("api-key".into(), "sk_live_123".into()),
        ]))
    }

    #[test]
    fn a_sealed_envelope_opens_only_for_its_binding_recipient_and_text() {
        let (secret, public) = key_pair(&[3; 32]);
        assert_eq!(public_key(&secret), Ok(public));
        let aad = associated_data("version: 1\nsecrets: {sealed: }\n", &[]);
        let envelope =
            seal(&public, &binding(), Recipient::Provider, aad, &values()).expect("seals");
        let opened = open(&secret, &binding(), Recipient::Provider, aad, &envelope).expect("opens");
        assert_eq!(opened, values());

        let refused = |b: Binding, r: Recipient, aad: B256| open(&secret, &b, r, aad, &envelope);
        for other in [
            Binding {
                tenant: Address::repeat_byte(1),
                ..binding()
            },
            Binding {
                chain_id: 1,
                ..binding()
            },
            Binding {
                escrow: Address::repeat_byte(2),
                ..binding()
            },
            Binding {
                provider_id: U256::from(2),
                ..binding()
            },
            Binding {
                key_version: 1,
                ..binding()
            },
        ] {
            assert_eq!(
                refused(other, Recipient::Provider, aad),
                Err(SecretsError::Unopenable)
            );
        }
        assert_eq!(
            refused(binding(), Recipient::Tenant, aad),
            Err(SecretsError::Unopenable)
        );
        let other_text = associated_data("version: 1\nsecrets: {sealed: }\n# more\n", &[]);
        assert_eq!(
            refused(binding(), Recipient::Provider, other_text),
            Err(SecretsError::Unopenable)
        );
        let (other_secret, _) = key_pair(&[4; 32]);
        assert_eq!(
            open(
                &other_secret,
                &binding(),
                Recipient::Provider,
                aad,
                &envelope
            ),
            Err(SecretsError::Unopenable)
        );
    }

    #[test]
    fn corrupted_or_oversized_envelopes_are_refused() {
        let (secret, public) = key_pair(&[5; 32]);
        let aad = B256::ZERO;
        let envelope = seal(&public, &binding(), Recipient::Tenant, aad, &values()).expect("seals");
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(&envelope)
            .expect("b64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let flipped = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(
            open(&secret, &binding(), Recipient::Tenant, aad, &flipped),
            Err(SecretsError::Unopenable)
        );
        for bad in [
            "",
            "not base64!",
            "AAAA",
            &"A".repeat(MAX_ENVELOPE_CHARS + 4),
        ] {
            assert_eq!(
                open(&secret, &binding(), Recipient::Tenant, aad, bad),
                Err(SecretsError::Malformed),
                "{bad:.20}"
            );
        }
    }

    #[test]
    fn the_associated_data_is_the_text_without_the_envelopes() {
        let with = "secrets:\n  sealed: QUJD\n  tenant_copy: REVG\n";
        let without = "secrets:\n  sealed: \n  tenant_copy: \n";
        assert_eq!(
            associated_data(with, &["QUJD", "REVG"]),
            associated_data(without, &[])
        );
        assert_ne!(
            associated_data(with, &["QUJD"]),
            associated_data(without, &[])
        );
    }

    #[test]
    fn names_and_sizes_are_bounded() {
        let (_, public) = key_pair(&[6; 32]);
        let seal_values =
            |v: SecretValues| seal(&public, &binding(), Recipient::Provider, B256::ZERO, &v);
        let bad = SecretValues(BTreeMap::from([("Bad Name".into(), "x".into())]));
        assert!(
            matches!(seal_values(bad), Err(SecretsError::Invalid(m)) if m.contains("Bad Name"))
        );
        let big = SecretValues(BTreeMap::from([(
            "big".into(),
            "x".repeat(MAX_PLAINTEXT_BYTES),
        )]));
        assert!(matches!(seal_values(big), Err(SecretsError::Invalid(_))));
        let many = SecretValues(
            (0..=MAX_SECRETS)
                .map(|i| (format!("s{i}"), String::new()))
                .collect(),
        );
        assert!(matches!(seal_values(many), Err(SecretsError::Invalid(_))));
        assert!(format!("{:?}", values()).contains("db_password"));
        assert!(
            !format!("{:?}", values()).contains("hunter2"),
            "Debug shows names only"
        );
    }

    #[test]
    fn a_tenant_key_is_the_same_for_the_same_signature() {
        let a = key_pair(&tenant_key_material(&[9; 65]));
        assert_eq!(a, key_pair(&tenant_key_material(&[9; 65])));
        assert_ne!(a.1, key_pair(&tenant_key_material(&[8; 65])).1);
    }
}
