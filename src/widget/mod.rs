//! The embeddable registration widget: one script (`registrar.js`, plain JavaScript with no
//! build step), compiled into the binary and served at a versioned path. `v1` names the
//! element's interface (`<registrar-registration event lang api>`, its CSS custom properties
//! and parts); the file may change within it, and its `ETag` and integrity hash with it.
//!
//! The script is public and the same for everyone, so any page may load it, with CORS too
//! (`<script integrity crossorigin>` needs that): see `startup::cors`. What it then asks of the
//! API is subject to the configured origins like any other browser request.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, get};
use base64::Engine;
use sha2::{Digest, Sha256, Sha384};

use crate::conditional::{etag_header, is_fresh};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(widget_script);
}

/// Where the widget is served; everything under this prefix is public.
pub const PREFIX: &str = "/widget/";

/// The script, as served.
pub const SCRIPT: &str = include_str!("registrar.js");

/// A day fresh, then a week more while the browser checks for a new version in the background.
const CACHE_CONTROL: &str = "public, max-age=86400, stale-while-revalidate=604800";

struct Digests {
    etag: String,
    integrity: String,
}

static DIGESTS: LazyLock<Digests> = LazyLock::new(|| Digests {
    etag: format!("\"w{}\"", hex::encode(&Sha256::digest(SCRIPT)[..16])),
    integrity: format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha384::digest(SCRIPT))
    ),
});

/// The Subresource Integrity value of the script (`sha384-…`), as pages put it in
/// `<script integrity="…">`; the README gives it, and a test keeps the two the same.
pub fn integrity() -> &'static str {
    &DIGESTS.integrity
}

/// The embeddable registration widget (JavaScript): a custom element,
/// `<registrar-registration event="…">`, that shows the event's public programme and its
/// registration form on any page, and registers through the public API. The same for every
/// caller; cacheable (send the `ETag` back as `If-None-Match` to get 304).
#[utoipa::path(
    tag = "widget",
    params(
        ("If-None-Match" = Option<String>, Header, description = "ETag of a copy the caller holds; 304 when it is current"),
    ),
    responses(
        (status = 200, description = "The script.", body = String, content_type = "text/javascript",
         headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "The copy named by `If-None-Match` is current.",
         headers(("ETag" = String), ("Cache-Control" = String))),
    )
)]
#[get("/widget/v1/registrar.js")]
async fn widget_script(req: HttpRequest) -> HttpResponse {
    let digests = &*DIGESTS;
    let cache = (
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    if is_fresh(&req, &digests.etag) {
        return HttpResponse::NotModified()
            .insert_header(etag_header(&digests.etag))
            .insert_header(cache)
            .finish();
    }
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(etag_header(&digests.etag))
        .insert_header(cache)
        .body(SCRIPT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_integrity_is_the_sha384_of_the_script() {
        let encoded = integrity().strip_prefix("sha384-").unwrap();
        let digest = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(digest, Sha384::digest(SCRIPT.as_bytes()).to_vec());
    }
}
