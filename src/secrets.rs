//! Secrets at rest: values the service has to read back (events' check-in signing keys, and
//! any other signing secret) are sealed with authenticated encryption before they are
//! stored, so a dump of the database alone gives none of them away.
//!
//! A sealed value is `0x01 | n | key id (n bytes) | nonce (24 bytes) | ciphertext and tag`,
//! XChaCha20-Poly1305 with a random nonce. The associated data binds it to this format, to
//! its key id and to its place (table, column and row), so a sealed value copied into
//! another row or column does not open.
//!
//! Keys come from `REGISTRAR_ENCRYPTION_KEYS`, comma-separated `id:key` entries where the
//! key is 32 bytes in base64 (`openssl rand -base64 32`). The first key seals new values;
//! every listed key opens what was sealed with it. To rotate: put a new key first (keeping
//! the old ones) on every instance, run `registrar reseal`, then drop the old keys. At start
//! the service refuses to run when a stored value names a key it does not hold, or when the
//! key of that id does not open it.
//!
//! A place that stores sealed values declares it with a [`SealedColumn`] (listed in
//! `startup::SEALED_COLUMNS`), which gives it the start-up check and `registrar reseal`.

use std::fmt;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use diesel::sql_types::{Bytea, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::config::{Config, Environment};

const FORMAT: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const MAX_KEY_ID: usize = 32;
const DOMAIN: &[u8] = b"registrar-sealed-v1\0";

/// The key id used in development when `REGISTRAR_ENCRYPTION_KEYS` is not set.
pub const DEVELOPMENT_KEY_ID: &str = "dev";

/// The keys that seal and open secrets at rest; the first seals.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

struct RingKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids only: the keys never appear in logs.
        f.debug_struct("KeyRing")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why a sealed value did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the value is not a sealed value of this service")]
    Malformed,
    #[error("the value was sealed with key `{0}`, which REGISTRAR_ENCRYPTION_KEYS does not hold")]
    UnknownKey(String),
    #[error(
        "key `{0}` does not open the value: the key is not the one it was sealed with, or the \
         value was altered or moved"
    )]
    Rejected(String),
}

impl KeyRing {
    /// The keys of `REGISTRAR_ENCRYPTION_KEYS`; in development without it, the public
    /// development key (with a warning). Production refuses to start without keys.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        // An empty value (as a compose file's `${VAR:-}` gives) is no value.
        let spec = config
            .encryption_keys
            .as_ref()
            .filter(|spec| !spec.expose_secret().trim().is_empty());
        match (spec, config.environment) {
            (Some(spec), _) => Self::parse(spec.expose_secret()),
            (None, Environment::Production) => bail!(
                "REGISTRAR_ENCRYPTION_KEYS is not set; it is required when \
                 REGISTRAR_ENV=production: `<id>:<32 bytes in base64>`, e.g. \
                 `k1:$(openssl rand -base64 32)`"
            ),
            (None, Environment::Development) => {
                tracing::warn!(
                    "REGISTRAR_ENCRYPTION_KEYS is not set: secrets at rest are sealed with the \
                     public development key `{DEVELOPMENT_KEY_ID}`, which protects nothing"
                );
                Ok(Self::development())
            }
        }
    }

    /// `id:base64key` entries, comma-separated; the first seals.
    pub fn parse(spec: &str) -> anyhow::Result<Self> {
        let mut keys: Vec<RingKey> = Vec::new();
        for (n, entry) in spec.split(',').map(str::trim).enumerate() {
            let n = n + 1;
            let (id, key) = entry.split_once(':').with_context(|| {
                format!("REGISTRAR_ENCRYPTION_KEYS entry {n} is not `<id>:<base64 key>`")
            })?;
            let id = id.trim();
            if id.is_empty()
                || id.len() > MAX_KEY_ID
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                bail!(
                    "REGISTRAR_ENCRYPTION_KEYS entry {n}: the key id must be 1 to {MAX_KEY_ID} \
                     letters, digits, `-`, `_` or `.`"
                );
            }
            if keys.iter().any(|k| k.id == id) {
                bail!("REGISTRAR_ENCRYPTION_KEYS names key `{id}` twice");
            }
            let bytes = Zeroizing::new(decode_base64(key.trim()).with_context(|| {
                format!("REGISTRAR_ENCRYPTION_KEYS key `{id}` is not valid base64")
            })?);
            if bytes.len() != 32 {
                bail!(
                    "REGISTRAR_ENCRYPTION_KEYS key `{id}` is {} bytes long; it must be 32 \
                     (`openssl rand -base64 32`)",
                    bytes.len()
                );
            }
            keys.push(RingKey::new(id, &bytes));
        }
        Ok(KeyRing { keys })
    }

    /// The development key: derived from a constant, so values survive restarts, and public,
    /// so it protects nothing.
    pub fn development() -> Self {
        let key = Sha256::digest(b"registrar development encryption key");
        KeyRing {
            keys: vec![RingKey::new(DEVELOPMENT_KEY_ID, key.as_slice())],
        }
    }

    /// The id of the key that seals new values.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    pub fn holds(&self, key_id: &str) -> bool {
        self.keys.iter().any(|k| k.id == key_id)
    }

    /// Seals `secret` for `place` (see [`SealedColumn::place`]) with the first key.
    pub fn seal(&self, place: &[u8], secret: &[u8]) -> Vec<u8> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let mut sealed = header(&key.id);
        let aad = associated_data(&sealed, place);
        let ciphertext = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message of this size");
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// The secret sealed in `sealed` for `place`.
    pub fn open(&self, place: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let key_id = key_id_of(sealed).ok_or(OpenError::Malformed)?;
        let header_len = 2 + key_id.len();
        let rest = &sealed[header_len..];
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| OpenError::UnknownKey(key_id.to_owned()))?;
        let nonce: [u8; NONCE_LEN] = rest[..NONCE_LEN].try_into().expect("length checked");
        let aad = associated_data(&sealed[..header_len], place);
        key.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &rest[NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Rejected(key_id.to_owned()))
    }
}

impl RingKey {
    fn new(id: &str, key: &[u8]) -> Self {
        RingKey {
            id: id.to_owned(),
            cipher: XChaCha20Poly1305::new_from_slice(key).expect("keys are 32 bytes"),
        }
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
}

fn header(key_id: &str) -> Vec<u8> {
    let mut header = Vec::with_capacity(2 + key_id.len() + NONCE_LEN + 64);
    header.push(FORMAT);
    header.push(key_id.len() as u8);
    header.extend_from_slice(key_id.as_bytes());
    header
}

fn associated_data(header: &[u8], place: &[u8]) -> Vec<u8> {
    [DOMAIN, header, place].concat()
}

/// The id of the key a value was sealed with, if it is a sealed value of this service.
pub fn key_id_of(sealed: &[u8]) -> Option<&str> {
    let (&format, rest) = sealed.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if format != FORMAT || len == 0 || len as usize > MAX_KEY_ID {
        return None;
    }
    std::str::from_utf8(rest.get(..len as usize)?).ok()
}

/// A column of sealed values: `bytea`, in a table whose primary key is a uuid `id`.
#[derive(Debug)]
pub struct SealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    /// A column that held the same secrets in plain text before they were sealed: its
    /// values are sealed into `column` and cleared at start.
    pub plain_column: Option<&'static str>,
}

#[derive(diesel::QueryableByName)]
struct Stored {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Bytea)]
    value: Vec<u8>,
}

impl SealedColumn {
    /// What a value of row `id` is bound to: it opens there only.
    pub fn place(&self, id: Uuid) -> Vec<u8> {
        format!("{}.{}:{id}", self.table, self.column).into_bytes()
    }

    fn name(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }

    /// Seals the values still held in plain text, and clears them.
    async fn seal_plain(
        &self,
        conn: &mut AsyncPgConnection,
        ring: &KeyRing,
    ) -> anyhow::Result<usize> {
        let Some(plain) = self.plain_column else {
            return Ok(0);
        };
        let (table, column) = (self.table, self.column);
        let rows: Vec<Stored> = diesel::sql_query(format!(
            "SELECT id, {plain} AS value FROM {table} WHERE {plain} IS NOT NULL"
        ))
        .load(conn)
        .await?;
        let mut sealed = 0;
        for row in rows {
            let value = Zeroizing::new(row.value);
            sealed += diesel::sql_query(format!(
                "UPDATE {table} SET {column} = coalesce({column}, $2), {plain} = NULL \
                 WHERE id = $1 AND {plain} = $3"
            ))
            .bind::<SqlUuid, _>(row.id)
            .bind::<Bytea, _>(ring.seal(&self.place(row.id), &value))
            .bind::<Bytea, _>(&*value)
            .execute(conn)
            .await?;
        }
        Ok(sealed)
    }

    /// Checks that every key id in use is held and opens a value sealed with it; returns
    /// how many values are sealed with another key than the current one.
    async fn check(&self, conn: &mut AsyncPgConnection, ring: &KeyRing) -> anyhow::Result<i64> {
        #[derive(diesel::QueryableByName)]
        struct Sample {
            #[diesel(sql_type = SqlUuid)]
            id: Uuid,
            #[diesel(sql_type = Bytea)]
            value: Vec<u8>,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            count: i64,
        }
        let (table, column) = (self.table, self.column);
        let samples: Vec<Sample> = diesel::sql_query(format!(
            "SELECT DISTINCT ON (key_id) id, value, count(*) OVER (PARTITION BY key_id) AS count \
             FROM (SELECT id, {column} AS value, \
                          substring({column} FROM 3 FOR get_byte({column}, 1)) AS key_id \
                   FROM {table} WHERE {column} IS NOT NULL) stored \
             ORDER BY key_id, id"
        ))
        .load(conn)
        .await?;
        let mut outdated = 0;
        for sample in samples {
            if let Err(error) = ring.open(&self.place(sample.id), &sample.value) {
                bail!(
                    "{} of row {} (and any other value sealed with the same key): {error}",
                    self.name(),
                    sample.id
                );
            }
            if key_id_of(&sample.value) != Some(ring.current_id()) {
                outdated += sample.count;
            }
        }
        Ok(outdated)
    }

    /// Seals again with the current key every value sealed with another one.
    async fn reseal(&self, conn: &mut AsyncPgConnection, ring: &KeyRing) -> anyhow::Result<usize> {
        let (table, column) = (self.table, self.column);
        let mut resealed = 0;
        let mut after = Uuid::nil();
        loop {
            let rows: Vec<Stored> = diesel::sql_query(format!(
                "SELECT id, {column} AS value FROM {table} \
                 WHERE {column} IS NOT NULL AND id > $1 \
                   AND substring({column} FROM 3 FOR get_byte({column}, 1)) <> convert_to($2, 'UTF8') \
                 ORDER BY id LIMIT 500"
            ))
            .bind::<SqlUuid, _>(after)
            .bind::<Text, _>(ring.current_id())
            .load(conn)
            .await?;
            let Some(last) = rows.last() else {
                return Ok(resealed);
            };
            after = last.id;
            for row in rows {
                let place = self.place(row.id);
                let secret = ring
                    .open(&place, &row.value)
                    .with_context(|| format!("{} of row {}", self.name(), row.id))?;
                // Unless the value changed meanwhile (then it is sealed with the current key).
                resealed += diesel::sql_query(format!(
                    "UPDATE {table} SET {column} = $2 WHERE id = $1 AND {column} = $3"
                ))
                .bind::<SqlUuid, _>(row.id)
                .bind::<Bytea, _>(ring.seal(&place, &secret))
                .bind::<Bytea, _>(&row.value)
                .execute(conn)
                .await?;
            }
        }
    }
}

/// At start: seals what is still stored in plain text, then checks that the keys open what
/// is stored. Fails, naming the column and key, when they do not.
pub async fn prepare(
    conn: &mut AsyncPgConnection,
    ring: &KeyRing,
    columns: &[&SealedColumn],
) -> anyhow::Result<()> {
    for column in columns {
        let sealed = column.seal_plain(conn, ring).await?;
        if sealed > 0 {
            tracing::info!(column = %column.name(), sealed, "sealed secrets stored in plain text");
        }
        let outdated = column.check(conn, ring).await?;
        if outdated > 0 {
            tracing::warn!(
                column = %column.name(),
                outdated,
                current_key = ring.current_id(),
                "secrets sealed with older keys; run `registrar reseal` once every instance \
                 holds the current key"
            );
        }
    }
    Ok(())
}

/// `registrar reseal`: seals every value again with the current key; returns how many.
pub async fn reseal(
    conn: &mut AsyncPgConnection,
    ring: &KeyRing,
    columns: &[&SealedColumn],
) -> anyhow::Result<usize> {
    let mut total = 0;
    for column in columns {
        column.seal_plain(conn, ring).await?;
        total += column.reseal(conn, ring).await?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn sealed_values_open_only_in_their_place() {
        let ring = KeyRing::parse(&format!("k1:{}", key(1))).unwrap();
        let sealed = ring.seal(b"events.x:1", b"secret seed");

        assert_eq!(key_id_of(&sealed), Some("k1"));
        assert_eq!(&*ring.open(b"events.x:1", &sealed).unwrap(), b"secret seed");
        assert_eq!(
            ring.open(b"events.x:2", &sealed),
            Err(OpenError::Rejected("k1".into()))
        );
        assert!(!sealed.windows(11).any(|w| w == b"secret seed"));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(ring.open(b"events.x:1", &altered).is_err());
    }

    #[test]
    fn older_keys_open_and_the_first_seals() {
        let old = KeyRing::parse(&format!("k1:{}", key(1))).unwrap();
        let sealed_before = old.seal(b"p", b"s");
        let rotated = KeyRing::parse(&format!("k2:{}, k1:{}", key(2), key(1))).unwrap();

        assert_eq!(&*rotated.open(b"p", &sealed_before).unwrap(), b"s");
        assert_eq!(key_id_of(&rotated.seal(b"p", b"s")), Some("k2"));
        let only_new = KeyRing::parse(&format!("k2:{}", key(2))).unwrap();
        assert_eq!(
            only_new.open(b"p", &sealed_before),
            Err(OpenError::UnknownKey("k1".into()))
        );
        let impostor = KeyRing::parse(&format!("k1:{}", key(9))).unwrap();
        assert_eq!(
            impostor.open(b"p", &sealed_before),
            Err(OpenError::Rejected("k1".into()))
        );
    }

    #[test]
    fn bad_key_lists_are_refused_with_a_reason() {
        for (spec, reason) in [
            ("", "not `<id>:<base64 key>`"),
            ("k1", "not `<id>:<base64 key>`"),
            (":AAAA", "key id"),
            ("k1:not base64!", "not valid base64"),
            ("k1:AAAA", "must be 32"),
        ] {
            let error = KeyRing::parse(spec).unwrap_err().to_string();
            assert!(error.contains(reason), "{spec}: {error}");
        }
        let twice = format!("k1:{},k1:{}", key(1), key(2));
        assert!(
            KeyRing::parse(&twice)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }

    #[test]
    fn production_needs_keys_and_development_has_a_fixed_one() {
        let mut config = Config::from_env();
        config.encryption_keys = None;
        config.environment = Environment::Production;
        let error = KeyRing::from_config(&config).unwrap_err().to_string();
        assert!(error.contains("REGISTRAR_ENCRYPTION_KEYS"), "{error}");
        config.environment = Environment::Development;
        let ring = KeyRing::from_config(&config).unwrap();
        let sealed = ring.seal(b"p", b"s");
        assert_eq!(&*KeyRing::development().open(b"p", &sealed).unwrap(), b"s");
    }

    #[test]
    fn the_debug_form_shows_key_ids_only() {
        let ring = KeyRing::parse(&format!("k1:{}", key(1))).unwrap();
        assert_eq!(format!("{ring:?}"), r#"KeyRing { key_ids: ["k1"] }"#);
    }
}
