//! Everything actix-web or the API rejects answers with problem+json.

use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_app().await;
    app.call(Method::POST, "/api/v1/auth/login")
        .body("application/json", "{\"email\": ")
        .send()
        .await
        .assert_problem(400, "malformed_json");
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_422_problem() {
    let app = spawn_app().await;
    app.post("/api/v1/auth/login", None, &json!({"email": 42}))
        .await
        .assert_problem(422, "invalid_body");
    app.post(
        "/api/v1/auth/login",
        None,
        &json!({"email": "a@b.c", "password": "x", "extra": 1}),
    )
    .await
    .assert_problem(422, "invalid_body");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let app = spawn_app().await;
    app.call(Method::POST, "/api/v1/auth/login")
        .body("text/plain", "email=a")
        .send()
        .await
        .assert_problem(415, "unsupported_media_type");
}

#[tokio::test]
async fn an_oversized_body_is_a_413_problem() {
    let app = spawn_app_with_small_bodies().await;
    let big = json!({"email": "a@example.org", "password": "x".repeat(5000)});
    app.post("/api/v1/auth/login", None, &big)
        .await
        .assert_problem(413, "payload_too_large");
}

async fn spawn_app_with_small_bodies() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(|config| config.max_body_bytes = 1024).await
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = spawn_app().await;
    app.get("/api/v1/nothing-here", None)
        .await
        .assert_problem(404, "not_found");
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_that_lists_the_allowed_ones() {
    let app = spawn_app().await;
    let answer = app.delete("/api/v1/auth/login", None).await;
    answer.assert_problem(405, "method_not_allowed");
    assert_eq!(answer.header("allow"), Some("POST"));
}

#[tokio::test]
async fn a_malformed_path_parameter_is_a_404_problem() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.get("/api/v1/users/not-a-uuid", Some(&admin.access))
        .await
        .assert_problem(404, "not_found");
}

#[tokio::test]
async fn a_malformed_query_is_a_400_problem() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.get("/api/v1/users?limit=many", Some(&admin.access))
        .await
        .assert_problem(400, "invalid_query");
}
