//! Signing secrets and signatures, as Standard Webhooks 1.0 has them: a secret is shown once
//! as `whsec_<base64>`; each request carries `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, with one signature per
//! secret in use, space-separated (two while a rotated secret overlaps the new one).
//! Signatures come from the `standardwebhooks` crate, the specification's own library.
//!
//! Secrets are stored sealed (see `crate::secrets`): a database dump gives none away.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::secrets::SealedColumn;

/// Where endpoints' signing secrets are kept, sealed.
pub static SECRET: SealedColumn = SealedColumn {
    table: "webhook_endpoints",
    column: "secret_sealed",
    plain_column: None,
};

/// The secret before the last rotation, while it still signs.
pub static PREVIOUS_SECRET: SealedColumn = SealedColumn {
    table: "webhook_endpoints",
    column: "previous_secret_sealed",
    plain_column: None,
};

const PREFIX: &str = "whsec_";

/// A new random secret (32 bytes), and the form it is shown in.
pub fn generate() -> (Zeroizing<Vec<u8>>, String) {
    let mut key = Zeroizing::new(vec![0u8; 32]);
    rand::fill(key.as_mut_slice());
    let shown = format!("{PREFIX}{}", STANDARD.encode(key.as_slice()));
    (key, shown)
}

/// The `webhook-signature` header: one `v1,` signature per secret, space-separated.
pub fn signature_header(secrets: &[&[u8]], webhook_id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .map(|secret| {
            standardwebhooks::Webhook::from_bytes(secret.to_vec())
                .and_then(|hook| hook.sign(webhook_id, timestamp, body.as_bytes()))
                .expect("a UTF-8 body is always signed")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_shown_secret() {
        let (key, shown) = generate();
        assert!(shown.starts_with("whsec_"));
        let body = r#"{"type":"registration.created"}"#;
        let now = chrono::Utc::now().timestamp();
        let header = signature_header(&[key.as_slice()], "msg_1", now, body);
        assert!(header.starts_with("v1,"));

        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert("webhook-signature", header.parse().unwrap());
        let verifier = standardwebhooks::Webhook::new(&shown).unwrap();
        verifier.verify(body.as_bytes(), &headers).unwrap();
        assert!(verifier.verify(b"{}", &headers).is_err());
    }

    #[test]
    fn two_secrets_give_two_signatures() {
        let (old, _) = generate();
        let (new, _) = generate();
        let header = signature_header(&[new.as_slice(), old.as_slice()], "msg_1", 1, "{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }
}
