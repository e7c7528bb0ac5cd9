//! Argon2id hashes at rest: user passwords and API tokens are configured as
//! PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), written by
//! `outpost-controller hash-password` / `generate-token`, so no clear secret
//! is ever in a config file.
//!
//! Verifying costs about 20 ms of CPU by design (argon2's point), so callers
//! bound it: [`Verifier`] runs at most [`CONCURRENT_VERIFICATIONS`] at once on
//! blocking threads, and the login form and unknown bearer tokens are rate
//! limited per client address before they get here ([`super::ratelimit`]).
//! The comparison of the computed and the stored hash is constant time
//! (`password_hash`'s `Output` equality).

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};
use tokio::sync::Semaphore;

/// Fewest characters `hash-password` accepts for a dashboard password.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Argon2 verifications running at once; more wait their turn.
pub const CONCURRENT_VERIFICATIONS: usize = 2;
/// Largest memory cost (KiB) a configured hash may ask for: a verification
/// allocates it, so a hash with m=4 GiB would be a way to exhaust memory.
pub const MAX_MEMORY_KIB: u32 = 256 * 1024;
/// Largest time cost (passes) a configured hash may ask for.
pub const MAX_TIME_COST: u32 = 16;
/// Largest parallelism a configured hash may ask for.
pub const MAX_PARALLELISM: u32 = 8;

/// A password or token could not be hashed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The system RNG failed (no salt).
    #[error("the system random number generator failed")]
    Rng,
    /// Argon2 refused the input (e.g. longer than 2^32 bytes).
    #[error("argon2: {0}")]
    Argon2(String),
}

/// The hasher every hash is written with: argon2id v19, the argon2 crate's
/// (and OWASP's) default cost, m=19 MiB, t=2, p=1.
fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Hashes `secret` with a fresh 16-byte salt into a PHC string.
pub fn hash(secret: &[u8]) -> Result<String, HashError> {
    let salt: [u8; 16] = super::random_bytes().map_err(|_| HashError::Rng)?;
    hasher()
        .hash_password_with_salt(secret, &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

/// A fresh API token: 32 random bytes, base64url without padding (43
/// characters), and its PHC string for `[[auth.tokens]] hash`.
pub fn generate_token() -> Result<(String, String), HashError> {
    use base64::Engine as _;
    let raw: [u8; 32] = super::random_bytes().map_err(|_| HashError::Rng)?;
    let token = format!(
        "opt_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let phc = hash(token.as_bytes())?;
    Ok((token, phc))
}

/// Checks that `phc` is an argon2id PHC string with bounded costs; the
/// message names what is wrong and how to make a good one.
pub fn check(phc: &str) -> Result<(), String> {
    const FIX: &str = "write it with `outpost-controller hash-password` (or `generate-token`)";
    let parsed = PasswordHash::new(phc).map_err(|_| {
        format!(
            "not a PHC hash string (\"$argon2id$v=19$…\"): {FIX}; never put the secret itself here"
        )
    })?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "hash algorithm {:?} is not accepted, only argon2id: {FIX}",
            parsed.algorithm.as_str()
        ));
    }
    let params =
        Params::try_from(&parsed).map_err(|e| format!("invalid argon2 parameters ({e}): {FIX}"))?;
    if params.m_cost() > MAX_MEMORY_KIB
        || params.t_cost() > MAX_TIME_COST
        || params.p_cost() > MAX_PARALLELISM
    {
        return Err(format!(
            "argon2 cost m={} KiB, t={}, p={} is above the accepted maximum (m ≤ {MAX_MEMORY_KIB}, t ≤ {MAX_TIME_COST}, p ≤ {MAX_PARALLELISM}): {FIX}",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(format!("the hash string has no salt or no hash: {FIX}"));
    }
    Ok(())
}

/// True when `secret` matches the PHC string `phc` (constant-time compare).
pub fn verify_now(secret: &[u8], phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| hasher().verify_password(secret, &h).is_ok())
}

/// A PHC string of a random secret, verified when a user name is unknown so
/// that a wrong name costs as much time as a wrong password.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let secret: [u8; 32] = super::random_bytes().unwrap_or([7; 32]);
        hash(&secret).unwrap_or_default()
    })
}

/// Runs verifications on blocking threads, [`CONCURRENT_VERIFICATIONS`] at a time.
#[derive(Debug, Clone)]
pub struct Verifier {
    permits: Arc<Semaphore>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            permits: Arc::new(Semaphore::new(CONCURRENT_VERIFICATIONS)),
        }
    }
}

impl Verifier {
    /// True when `secret` matches one of `hashes`; returns the index of the
    /// first match.
    pub async fn find(&self, secret: Vec<u8>, hashes: Vec<String>) -> Option<usize> {
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return None;
        };
        tokio::task::spawn_blocking(move || hashes.iter().position(|h| verify_now(&secret, h)))
            .await
            .ok()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_secret_only_and_passes_the_check() {
        let h = hash(b"correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        check(&h).unwrap();
        assert!(verify_now(b"correct horse battery staple", &h));
        assert!(!verify_now(b"correct horse battery stapl", &h));
        assert_ne!(h, hash(b"correct horse battery staple").unwrap(), "salted");
    }

    #[test]
    fn generated_tokens_are_long_distinct_and_verify_against_their_hash() {
        let (a, ha) = generate_token().unwrap();
        let (b, _) = generate_token().unwrap();
        assert_ne!(a, b);
        assert!(a.len() >= crate::auth::config::MIN_TOKEN_CHARS, "{a}");
        check(&ha).unwrap();
        assert!(verify_now(a.as_bytes(), &ha));
        assert!(!verify_now(b.as_bytes(), &ha));
    }

    #[test]
    fn literal_secrets_other_algorithms_and_huge_costs_are_refused() {
        assert!(
            check("hunter2")
                .unwrap_err()
                .contains("never put the secret itself")
        );
        let h = hash(b"x").unwrap();
        let argon2i = h.replacen("$argon2id$", "$argon2i$", 1);
        assert!(check(&argon2i).unwrap_err().contains("only argon2id"));
        let huge = h.replacen("m=19456", "m=4000000", 1);
        assert!(
            check(&huge)
                .unwrap_err()
                .contains("above the accepted maximum")
        );
    }
}
