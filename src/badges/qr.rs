//! Signed QR codes: each badge carries its event and registration, signed with the event's
//! Ed25519 key, so a check-in desk can verify a code offline with the event's public key.
//!
//! The code is `RG1.` followed by the URL-safe base64 (no padding) of 96 bytes: the event id
//! (16), the registration id (16), and the Ed25519 signature (64) of
//! `registrar-checkin-v1` ‖ event id ‖ registration id.
//!
//! The key's 32-byte seed is stored sealed (see `secrets`), never in plain text.

use actix_web::{HttpResponse, get, web};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use qrcode::QrCode;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::access::{self, EventAction, RegistrationAction};
use crate::auth::Caller;
use crate::db::schema::events;
use crate::db::sql::coalesce_bytes;
use crate::error::{ApiError, ApiResult};
use crate::openapi::{EventErrors, RegistrationErrors};
use crate::secrets::{KeyRing, SealedColumn};
use crate::state::State;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(checkin_key).service(qr_svg).service(qr_png);
}

const PREFIX: &str = "RG1.";
const CONTEXT: &[u8] = b"registrar-checkin-v1";

/// Where events' check-in key seeds are kept, sealed.
pub static CHECKIN_KEY: SealedColumn = SealedColumn {
    table: "events",
    column: "checkin_key_sealed",
    plain_column: Some("checkin_key_seed"),
};

/// The event's signing key, created the first time it is needed.
pub async fn signing_key(
    conn: &mut AsyncPgConnection,
    sealing: &KeyRing,
    event_id: Uuid,
) -> ApiResult<SigningKey> {
    let stored: Option<Vec<u8>> = events::table
        .find(event_id)
        .select(events::checkin_key_sealed)
        .get_results(conn)
        .await
        .and_then(crate::db::single)?;
    let sealed = match stored {
        Some(sealed) => sealed,
        None => create_seed(conn, sealing, event_id).await?,
    };
    let seed = sealing
        .open(&CHECKIN_KEY.place(event_id), &sealed)
        .map_err(|error| {
            ApiError::internal(
                anyhow::Error::new(error).context(format!("the check-in key of event {event_id}")),
            )
        })?;
    let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| {
        ApiError::internal(anyhow::anyhow!(
            "malformed check-in key of event {event_id}"
        ))
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Stores a fresh sealed seed unless another request stored one first; either way returns
/// the one kept. A racing update waits for the first and then sees its committed row, so
/// every caller gets the same seed.
async fn create_seed(
    conn: &mut AsyncPgConnection,
    sealing: &KeyRing,
    event_id: Uuid,
) -> ApiResult<Vec<u8>> {
    let mut fresh = zeroize::Zeroizing::new([0u8; 32]);
    rand::fill(&mut *fresh);
    let sealed = sealing.seal(&CHECKIN_KEY.place(event_id), &*fresh);
    let kept: Option<Vec<u8>> = diesel::update(events::table.find(event_id))
        .set(events::checkin_key_sealed.eq(coalesce_bytes(events::checkin_key_sealed, sealed)))
        .returning(events::checkin_key_sealed)
        .get_results(conn)
        .await
        .and_then(crate::db::single)?;
    kept.ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!(
            "check-in key of event {event_id} was not stored"
        ))
    })
}

fn message(event_id: Uuid, registration_id: Uuid) -> Vec<u8> {
    [CONTEXT, event_id.as_bytes(), registration_id.as_bytes()].concat()
}

/// The QR payload of a registration's badge.
pub fn encode(key: &SigningKey, event_id: Uuid, registration_id: Uuid) -> String {
    let signature = key.sign(&message(event_id, registration_id));
    let mut bytes = Vec::with_capacity(96);
    bytes.extend_from_slice(event_id.as_bytes());
    bytes.extend_from_slice(registration_id.as_bytes());
    bytes.extend_from_slice(&signature.to_bytes());
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The registration a code names, if the code is intact and signed by `key` for `event_id`.
pub fn decode(key: &VerifyingKey, event_id: Uuid, code: &str) -> Result<Uuid, &'static str> {
    let bytes = code
        .trim()
        .strip_prefix(PREFIX)
        .and_then(|rest| URL_SAFE_NO_PAD.decode(rest).ok())
        .filter(|bytes| bytes.len() == 96)
        .ok_or("this is not a badge code of this service")?;
    let for_event = Uuid::from_slice(&bytes[..16]).expect("16 bytes");
    let registration_id = Uuid::from_slice(&bytes[16..32]).expect("16 bytes");
    let signature =
        Signature::from_slice(&bytes[32..]).map_err(|_| "the code's signature is malformed")?;
    if for_event != event_id {
        return Err("the code belongs to another event");
    }
    key.verify(&message(event_id, registration_id), &signature)
        .map_err(|_| "the code's signature does not match: it was altered or forged")?;
    Ok(registration_id)
}

/// The public key desks verify badge codes with.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckinKey {
    pub event_id: Uuid,
    /// Always `Ed25519`.
    pub algorithm: &'static str,
    /// The 32-byte public key, base64.
    pub public_key: String,
    /// How codes are built, for desks that verify them offline.
    pub code_format: &'static str,
}

/// The event's check-in public key, to verify badge codes offline.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id")),
    responses((status = 200, description = "The public key.", body = CheckinKey), EventErrors),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/checkin-key")]
async fn checkin_key(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<web::Json<CheckinKey>> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::View).await?;
    let key = signing_key(&mut conn, &state.sealing, ctx.event.id).await?;
    Ok(web::Json(CheckinKey {
        event_id: ctx.event.id,
        algorithm: "Ed25519",
        public_key: STANDARD.encode(key.verifying_key().to_bytes()),
        code_format: "RG1.<base64url without padding of: event id (16 bytes) | registration id (16 bytes) | \
                      Ed25519 signature (64 bytes) of \"registrar-checkin-v1\" | event id | registration id>",
    }))
}

async fn code_of(state: &State, caller: &Caller, id: Uuid) -> ApiResult<QrCode> {
    let mut conn = state.conn().await?;
    let ctx = access::registration(&mut conn, caller, id, RegistrationAction::View).await?;
    let key = signing_key(&mut conn, &state.sealing, ctx.event.id).await?;
    let payload = encode(&key, ctx.event.id, id);
    QrCode::new(payload.as_bytes()).map_err(ApiError::internal)
}

/// The badge's QR code as SVG (the participant with the manage token, or organisers).
#[utoipa::path(
    tag = "badges",
    params(("id" = Uuid, Path, description = "Registration id")),
    responses(
        (status = 200, description = "The QR code.", body = String, content_type = "image/svg+xml"),
        RegistrationErrors,
    ),
    security(("bearer" = []))
)]
#[get("/registrations/{id}/qr.svg")]
async fn qr_svg(state: State, caller: Caller, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let code = code_of(&state, &caller, *id).await?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build();
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header(("Cache-Control", "private, no-store"))
        .body(svg))
}

/// The badge's QR code as PNG (the participant with the manage token, or organisers).
#[utoipa::path(
    tag = "badges",
    params(("id" = Uuid, Path, description = "Registration id")),
    responses(
        (status = 200, description = "The QR code.", body = Vec<u8>, content_type = "image/png"),
        RegistrationErrors,
    ),
    security(("bearer" = []))
)]
#[get("/registrations/{id}/qr.png")]
async fn qr_png(state: State, caller: Caller, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let code = code_of(&state, &caller, *id).await?;
    let png = png_of(&code).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("image/png")
        .insert_header(("Cache-Control", "private, no-store"))
        .body(png))
}

/// A black-on-white greyscale PNG, 8 pixels a module, with the standard 4-module quiet zone.
pub fn png_of(code: &QrCode) -> anyhow::Result<Vec<u8>> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let modules = code.width();
    let side = (modules + 2 * QUIET) * SCALE;
    let colors = code.to_colors();
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
            for y in my * SCALE..(my + 1) * SCALE {
                pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&pixels)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_verify_and_tampering_is_caught() {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let (event, registration) = (Uuid::now_v7(), Uuid::now_v7());
        let code = encode(&key, event, registration);
        let public = key.verifying_key();
        assert_eq!(decode(&public, event, &code), Ok(registration));
        // Another registration id with the old signature.
        let mut bytes = URL_SAFE_NO_PAD.decode(&code[PREFIX.len()..]).unwrap();
        bytes[20] ^= 1;
        let altered = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert!(decode(&public, event, &altered).is_err());
        assert!(decode(&public, Uuid::now_v7(), &code).is_err());
        let other = SigningKey::from_bytes(&[4u8; 32]);
        assert!(decode(&other.verifying_key(), event, &code).is_err());
        assert!(decode(&public, event, "hello").is_err());
    }

    #[test]
    fn png_has_the_png_signature() {
        let code = QrCode::new(b"RG1.test").unwrap();
        let png = png_of(&code).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}
