//! Password hashing with argon2id, always on a blocking thread.
//!
//! Parameters follow the OWASP Password Storage Cheat Sheet: m = 19 MiB, t = 2, p = 1.
//! A login for an unknown email verifies against a dummy hash so that it takes as long as
//! a login with a wrong password.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

use crate::error::ApiError;

pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .expect("the OWASP argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let mut random = [0u8; 16];
    rand::fill(&mut random);
    hash_now(&hex::encode(random)).expect("hashing a random password")
});

fn hash_now(password: &str) -> anyhow::Result<String> {
    hasher()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| anyhow::anyhow!("argon2: {error}"))
}

/// Hashes a password off the async workers.
pub async fn hash(password: SecretString) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_now(password.expose_secret()))
        .await?
        .map_err(ApiError::internal)
}

/// Verifies a password off the async workers. With no stored hash (unknown account) it
/// still spends the time of one verification, and answers false.
pub async fn verify(password: SecretString, stored: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let matches = hasher()
            .verify_password(password.expose_secret().as_bytes(), stored.as_str())
            .is_ok();
        known && matches
    })
    .await
    .map_err(ApiError::from)
}

/// Builds the dummy hash ahead of the first login, so that login does not pay for it.
pub fn warm_up() {
    LazyLock::force(&DUMMY_HASH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_password() {
        let stored = hash("correct horse battery".into()).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(
            verify("correct horse battery".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong".into(), Some(stored)).await.unwrap());
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify() {
        assert!(!verify("anything".into(), None).await.unwrap());
    }
}
