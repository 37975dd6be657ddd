//! What browsers and caches are told: private answers are never stored, HSTS when the service
//! is reached over HTTPS only.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Answer, spawn_app, spawn_app_with};

#[track_caller]
fn assert_not_stored(answer: &Answer, what: &str) {
    assert_eq!(
        answer.header("cache-control"),
        Some("no-store"),
        "{what}: {answer:?}"
    );
}

#[tokio::test]
async fn answers_carrying_tokens_or_personal_data_are_never_stored() {
    let app = spawn_app().await;
    app.create_admin(crate::helpers::ADMIN_EMAIL).await;
    let login = app
        .login(crate::helpers::ADMIN_EMAIL, crate::helpers::PASSWORD)
        .await;
    login.assert_status(200);
    assert_not_stored(&login, "login");
    let admin = crate::helpers::Tokens::from(&login);
    let refresh = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": admin.refresh}),
        )
        .await;
    refresh.assert_status(200);
    assert_not_stored(&refresh, "refresh");
    let admin = crate::helpers::Tokens::from(&refresh);
    app.event(&admin.access, "a", json!({})).await;
    let registration = app.register("a", "anna@example.org", &[]).await;
    registration.assert_status(201);
    assert_not_stored(&registration, "registration");
    let (id, manage) = {
        let body = registration.json();
        (
            body["id"].as_str().unwrap().to_owned(),
            body["manage_token"].as_str().unwrap().to_owned(),
        )
    };
    let key = app
        .post(
            "/api/v1/events/a/api-keys",
            Some(&admin.access),
            &json!({"name": "Вход 1", "scopes": ["attendees:read"]}),
        )
        .await;
    key.assert_status(201);
    assert_not_stored(&key, "API key");
    let key = key.json()["key"].as_str().unwrap().to_owned();

    for (path, token) in [
        (format!("/api/v1/registrations/{id}"), manage.as_str()),
        ("/api/v1/events/a/registrations".to_owned(), &admin.access),
        ("/api/v1/events/a/attendees".to_owned(), &key),
        ("/api/v1/events/a/attendees.csv".to_owned(), &admin.access),
        ("/api/v1/events/a/attendees.xlsx".to_owned(), &admin.access),
        ("/api/v1/users".to_owned(), &admin.access),
        ("/api/v1/me".to_owned(), &admin.access),
    ] {
        let answer = app.get(&path, Some(token)).await;
        answer.assert_status(200);
        assert_not_stored(&answer, &path);
    }
    // Errors too: they may echo what the caller sent.
    let refused = app.get("/api/v1/me", Some("not-a-token")).await;
    assert_not_stored(&refused, "a refused token");
}

#[tokio::test]
async fn the_public_programme_keeps_its_own_caching() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;

    let answer = app.get("/api/v1/events/a/programme", None).await;

    answer.assert_status(200);
    assert_eq!(
        answer.header("cache-control"),
        Some("public, max-age=5, stale-while-revalidate=30")
    );
}

#[tokio::test]
async fn hsts_is_sent_on_every_answer_only_when_configured() {
    let plain = spawn_app().await;
    let behind_https = spawn_app_with(|config| config.hsts_max_age = 31_536_000).await;

    assert_eq!(
        plain
            .get("/healthz", None)
            .await
            .header("strict-transport-security"),
        None
    );
    for answer in [
        behind_https.get("/healthz", None).await,
        behind_https.get("/api/v1/nothing-here", None).await,
        behind_https
            .call(Method::OPTIONS, "/api/v1/events")
            .header("origin", "https://portal.example.org")
            .header("access-control-request-method", "GET")
            .send()
            .await,
    ] {
        assert_eq!(
            answer.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{answer:?}"
        );
    }
}
