//! The HMAC key: subject hashes in the audit log, and the `hash` strategy.
//!
//! One secret from the environment; two keys derived from it, so the hash an
//! auditor searches the log with is never the pseudonym written into a
//! database column (the log cannot be joined to pseudonymized data).

use crate::error::Error;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// `hex(SHA-256(k1 "\n" k2 … "\n" kn))`: the unkeyed inner part of a batch's
/// keys digest, the same value PostgreSQL's `sha256(string_agg(k, E'\n'))`
/// computes.
pub(crate) fn keys_sha256(keys: &[String]) -> String {
    use sha2::Digest;
    let mut h = Sha256::new();
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            h.update(b"\n");
        }
        h.update(k.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The demo's key: printed as such, never for production.
pub(crate) const DEMO_KEY: &str = "lethe-demo-key-not-for-production";

/// The two keys derived from one secret (audit hashes, pseudonyms); the
/// secret itself is not kept.
#[derive(Clone)]
pub struct Keys {
    audit: Vec<u8>,
    pseudonym: Vec<u8>,
    /// Short public id of the key, recorded so keys can be rotated.
    pub key_id: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys {{ key_id: {} }}", self.key_id)
    }
}

fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(data);
    m.finalize().into_bytes().into()
}

impl Keys {
    /// Derive both keys from `secret` (tests and the demo pass one directly;
    /// a run reads it from the environment).
    pub fn from_secret(secret: &[u8]) -> Keys {
        Keys {
            audit: mac(secret, b"lethe/audit-subject/v1").to_vec(),
            pseudonym: mac(secret, b"lethe/pseudonym/v1").to_vec(),
            key_id: hex::encode(&mac(secret, b"lethe/key-id/v1")[..4]),
        }
    }

    /// Read the secret from the variable `var`.
    pub(crate) fn from_env(var: &str) -> Result<Keys, Error> {
        match std::env::var(var) {
            Ok(v) if v.len() >= 16 => Ok(Keys::from_secret(v.as_bytes())),
            Ok(_) => Err(Error::Usage(format!(
                "{var} is shorter than 16 bytes; use a long random secret"
            ))),
            Err(_) => Err(Error::MissingKey(var.to_string())),
        }
    }

    /// The audit log's stand-in for a subject value.
    pub fn subject(&self, value: &str) -> String {
        hex::encode(mac(&self.audit, value.as_bytes()))
    }

    /// The `hash` anonymization strategy: deterministic, so rows still join.
    pub fn pseudonym(&self, value: &str) -> String {
        hex::encode(mac(&self.pseudonym, value.as_bytes()))
    }

    /// The `hash` strategy's key as the two HMAC pad blocks, so a server
    /// with SHA-256 computes `pseudonym` itself, one statement per batch:
    /// `HMAC(k, m) = SHA-256((k ^ opad) || SHA-256((k ^ ipad) || m))`
    /// (RFC 2104; the 32-byte key is zero-padded to SHA-256's 64-byte block).
    /// Only this derived key leaves Lethe, bound as a statement parameter;
    /// the secret and the audit key never do.
    pub(crate) fn pseudonym_pads(&self) -> HashPads {
        let mut block = [0u8; 64];
        block[..self.pseudonym.len()].copy_from_slice(&self.pseudonym);
        HashPads {
            inner: block.iter().map(|b| b ^ 0x36).collect(),
            outer: block.iter().map(|b| b ^ 0x5c).collect(),
        }
    }

    /// A keyed digest of a batch's keys (keys can themselves identify people):
    /// `HMAC(audit key, hex(SHA-256(k1 "\n" k2 … "\n" kn)))`.
    pub fn digest(&self, keys: &[String]) -> String {
        self.digest_of(&keys_sha256(keys))
    }

    /// The keyed digest from the keys' SHA-256 (hex) alone. A one-statement
    /// batch on PostgreSQL has the server hash its keys, so thousands of
    /// keys need not travel to Lethe only to be hashed.
    pub(crate) fn digest_of(&self, keys_sha256_hex: &str) -> String {
        hex::encode(mac(&self.audit, keys_sha256_hex.as_bytes()))
    }
}

/// The pseudonym key's HMAC pad blocks (`Keys::pseudonym_pads`).
#[derive(Clone)]
pub struct HashPads {
    pub inner: Vec<u8>,
    pub outer: Vec<u8>,
}

impl std::fmt::Debug for HashPads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashPads { .. }")
    }
}

/// Every key an auditor can search with: the current one and those retired
/// by rotation (`audit.previous_key_envs`), found by the `kid` each record
/// carries.
#[derive(Debug, Clone)]
pub(crate) struct KeyRing {
    keys: Vec<Keys>,
    /// Variables of previous keys that are not set (their records cannot be searched).
    pub unset: Vec<String>,
}

impl KeyRing {
    /// The current key (required) and every previous key that is set.
    pub(crate) fn from_env(current: &str, previous: &[String]) -> Result<KeyRing, Error> {
        let mut keys = vec![Keys::from_env(current)?];
        let mut unset = Vec::new();
        for var in previous {
            match Keys::from_env(var) {
                Ok(k) => {
                    if !keys.iter().any(|h| h.key_id == k.key_id) {
                        keys.push(k);
                    }
                }
                Err(Error::MissingKey(v)) => unset.push(v),
                Err(e) => return Err(e),
            }
        }
        Ok(KeyRing { keys, unset })
    }

    /// The key whose id is `kid`.
    pub(crate) fn by_kid(&self, kid: &str) -> Option<&Keys> {
        self.keys.iter().find(|k| k.key_id == kid)
    }

    pub(crate) fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.key_id.clone()).collect()
    }
}

/// What the `hash` strategy writes: 64 lowercase hex characters.
pub fn looks_hashed(v: &str) -> bool {
    v.len() == 64
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_hash_and_pseudonym_differ_and_are_stable() {
        let k = Keys::from_secret(b"0123456789abcdef");
        assert_eq!(
            k.subject("42"),
            Keys::from_secret(b"0123456789abcdef").subject("42")
        );
        assert_ne!(k.subject("42"), k.pseudonym("42"));
        assert_ne!(
            k.subject("42"),
            Keys::from_secret(b"another-secret-123").subject("42")
        );
        assert!(looks_hashed(&k.pseudonym("x")));
        assert!(!looks_hashed("13800138000"));
        assert_eq!(k.key_id.len(), 8);
    }

    #[test]
    fn pads_compute_the_pseudonym_with_plain_sha256() {
        use sha2::Digest;
        let k = Keys::from_secret(b"0123456789abcdef");
        let pads = k.pseudonym_pads();
        for v in ["42", "", "王小明 北京市朝阳区", "alice@example.com"] {
            let inner = Sha256::new()
                .chain_update(&pads.inner)
                .chain_update(v.as_bytes())
                .finalize();
            let outer = Sha256::new()
                .chain_update(&pads.outer)
                .chain_update(inner)
                .finalize();
            assert_eq!(hex::encode(outer), k.pseudonym(v), "{v}");
        }
    }
}
