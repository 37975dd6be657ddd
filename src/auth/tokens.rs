//! Opaque bearer tokens: refresh tokens (`rgr_`), participants' manage tokens (`rgm_`) and
//! device API keys (`rgk_`). Only their SHA-256 digests are stored; the tokens carry 256 bits
//! of randomness, so a fast digest is as good as a slow password hash here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

pub const REFRESH_PREFIX: &str = "rgr_";
pub const MANAGE_PREFIX: &str = "rgm_";
pub const DEVICE_KEY_PREFIX: &str = "rgk_";

/// A new random token: `prefix` + 43 URL-safe characters.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A token derived from a random `nonce` with a server key: random to anyone without the
/// key, yet reproducible by the server (to replay a response that carried it).
pub fn derived(prefix: &str, key: &[u8; 32], nonce: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(nonce);
    format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// The digest stored in place of a token.
pub fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether `token` looks like one of ours with the given prefix (cheap pre-check before a
/// database look-up).
pub fn has_shape(token: &str, prefix: &str) -> bool {
    token.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_their_prefix_and_differ() {
        let a = generate(MANAGE_PREFIX);
        let b = generate(MANAGE_PREFIX);
        assert!(has_shape(&a, MANAGE_PREFIX), "{a}");
        assert_ne!(a, b);
        assert_ne!(digest(&a), digest(&b));
        assert!(!has_shape(&a, DEVICE_KEY_PREFIX));
        assert!(!has_shape("rgm_short", MANAGE_PREFIX));
    }

    #[test]
    fn derived_tokens_are_reproducible_only_with_the_key() {
        let key = [7u8; 32];
        let token = derived(MANAGE_PREFIX, &key, b"nonce");
        assert!(has_shape(&token, MANAGE_PREFIX), "{token}");
        assert_eq!(token, derived(MANAGE_PREFIX, &key, b"nonce"));
        assert_ne!(token, derived(MANAGE_PREFIX, &[8u8; 32], b"nonce"));
        assert_ne!(token, derived(MANAGE_PREFIX, &key, b"other"));
    }
}
