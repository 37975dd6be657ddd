//! The embeddable widget's script: served from the binary, cacheable, with the integrity hash
//! the README gives; loadable by any page, while the API it calls answers browsers of the
//! configured origins only.

use base64::Engine;
use reqwest::Method;
use sha2::{Digest, Sha384};

use crate::helpers::spawn_app;

const PATH: &str = "/widget/v1/registrar.js";
/// The file in the source tree: what is served must be exactly this.
const SOURCE: &str = include_str!("../../src/widget/registrar.js");

fn integrity_of(bytes: &[u8]) -> String {
    format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha384::digest(bytes))
    )
}

#[tokio::test]
async fn the_widget_is_served_as_javascript_for_a_day_with_an_etag() {
    let app = spawn_app().await;

    let answer = app.get(PATH, None).await;

    answer.assert_status(200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        answer.header("cache-control"),
        Some("public, max-age=86400, stale-while-revalidate=604800")
    );
    let etag = answer.header("etag").expect("an ETag");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(answer.text, SOURCE);
    assert_eq!(
        integrity_of(answer.text.as_bytes()),
        registrar::widget::integrity()
    );
}

#[tokio::test]
async fn a_copy_with_the_current_etag_is_answered_304_and_a_stale_one_gets_the_script() {
    let app = spawn_app().await;
    let first = app.get(PATH, None).await;
    let etag = first.header("etag").unwrap().to_owned();

    let fresh = app
        .call(Method::GET, PATH)
        .header("if-none-match", &etag)
        .send()
        .await;
    let weak = app
        .call(Method::GET, PATH)
        .header("if-none-match", &format!("W/{etag}"))
        .send()
        .await;
    let stale = app
        .call(Method::GET, PATH)
        .header("if-none-match", "\"w0000\"")
        .send()
        .await;

    fresh.assert_status(304);
    assert!(fresh.text.is_empty());
    assert_eq!(fresh.header("etag"), Some(etag.as_str()));
    assert!(fresh.header("cache-control").unwrap().contains("max-age"));
    weak.assert_status(304);
    stale.assert_status(200);
    assert_eq!(stale.text, SOURCE);
}

#[tokio::test]
async fn the_readme_gives_the_integrity_hash_of_the_script_served() {
    let readme = include_str!("../../README.md");
    let integrity = integrity_of(SOURCE.as_bytes());

    assert_eq!(registrar::widget::integrity(), integrity);
    assert!(
        readme.contains(&format!("integrity=\"{integrity}\"")),
        "README's \"Embedding the widget\" must give the script's current integrity hash, \
         {integrity} (the script changed: update the snippet)"
    );
    let documented = readme.matches("sha384-").count();
    assert_eq!(
        documented,
        readme.matches(integrity.as_str()).count(),
        "every sha384 hash in the README must be the current one, {integrity}"
    );
}

#[tokio::test]
async fn any_page_may_load_the_script_but_only_allowed_origins_may_call_the_api() {
    let app = spawn_app().await;

    let script = app
        .call(Method::GET, PATH)
        .header("origin", "https://evil.example.com")
        .send()
        .await;
    let api = app
        .call(Method::GET, "/api/v1/events")
        .header("origin", "https://evil.example.com")
        .send()
        .await;
    let preflight = |origin: &'static str| {
        app.call(Method::OPTIONS, "/api/v1/events/a/registrations")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, idempotency-key",
            )
            .send()
    };
    let refused = preflight("https://evil.example.com").await;
    let allowed = preflight("https://portal.example.org").await;

    script.assert_status(200);
    assert_eq!(
        script.header("access-control-allow-origin"),
        Some("https://evil.example.com")
    );
    assert!(
        api.header("access-control-allow-origin").is_none(),
        "{api:?}"
    );
    refused.assert_problem(400, "cors_refused");
    assert!(refused.header("access-control-allow-origin").is_none());
    assert!(allowed.status.is_success(), "{allowed:?}");
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://portal.example.org")
    );
}
