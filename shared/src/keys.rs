//! Secrets callers present: platform keys and portal tokens. Each is shown once
//! at creation and stored only as a SHA-256.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::ids::ApiKeyId;

pub const KEY_PREFIX: &str = "hlk_";
const KEY_BYTES: usize = 32;
/// How many leading characters of a key a listing shows: enough to tell keys
/// apart, far too few to guess the rest.
pub const SHOWN_PREFIX_CHARS: usize = 12;

/// A platform key as stored and listed: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub key_hash: String,
    /// The key's first [`SHOWN_PREFIX_CHARS`] characters.
    pub prefix: String,
    pub created_at: OffsetDateTime,
}

impl ApiKey {
    /// The stored form of `key`, made at `now`.
    pub fn new(key: &str, now: OffsetDateTime) -> Self {
        Self {
            id: ApiKeyId::new(),
            key_hash: hash(key),
            prefix: key.chars().take(SHOWN_PREFIX_CHARS).collect(),
            created_at: now,
        }
    }
}

/// A new platform key.
pub fn generate() -> String {
    generate_with(KEY_PREFIX)
}

/// `prefix` followed by 32 random bytes in URL-safe base64.
pub fn generate_with(prefix: &str) -> String {
    let mut bytes = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The hex SHA-256 the table stores in place of the key.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hash_to_hex() {
        let key = generate();
        assert!(key.starts_with(KEY_PREFIX) && key.len() > 40);
        assert_ne!(generate(), key);
        let stored = ApiKey::new(&key, OffsetDateTime::now_utc());
        assert_eq!(stored.key_hash, hash(&key));
        assert_eq!(stored.prefix, key[..SHOWN_PREFIX_CHARS]);
        assert!(stored.id.as_str().starts_with("key_"));
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
