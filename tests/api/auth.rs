use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::{ADMIN_EMAIL, JWT_SECRET, PASSWORD, Tokens, lock_wait, spawn_app};

#[tokio::test]
async fn login_returns_bearer_tokens_for_any_case_of_the_email() {
    let app = spawn_app().await;
    app.create_admin(ADMIN_EMAIL).await;

    let answer = app.login("  Admin@Example.ORG ", PASSWORD).await;

    answer.assert_status(200);
    let body = answer.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body["refresh_token"].as_str().unwrap().starts_with("rgr_"));
    let me = app.get("/api/v1/me", body["access_token"].as_str()).await;
    me.assert_status(200);
    assert_eq!(me.json()["email"], ADMIN_EMAIL);
    assert_eq!(me.json()["role"], "admin");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let app = spawn_app().await;
    app.create_admin(ADMIN_EMAIL).await;

    let wrong_password = app.login(ADMIN_EMAIL, "not the password").await;
    let unknown_email = app.login("nobody@example.org", PASSWORD).await;

    let a = wrong_password.assert_problem(401, "invalid_credentials");
    let b = unknown_email.assert_problem(401, "invalid_credentials");
    assert_eq!(a, b);
}

#[tokio::test]
async fn a_refresh_token_is_rotated_on_use() {
    let app = spawn_app().await;
    let first = app.admin().await;

    let answer = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": first.refresh}),
        )
        .await;

    answer.assert_status(200);
    let second = Tokens::from(&answer);
    assert_ne!(second.refresh, first.refresh);
    app.get("/api/v1/me", Some(&second.access))
        .await
        .assert_status(200);
    let again = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": second.refresh}),
        )
        .await;
    again.assert_status(200);
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_ends_the_whole_login() {
    let app = spawn_app().await;
    let first = app.admin().await;
    let second = Tokens::from(
        app.post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": first.refresh}),
        )
        .await
        .assert_status(200),
    );

    let reuse = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": first.refresh}),
        )
        .await;

    reuse.assert_problem(401, "refresh_token_reused");
    // Everything issued from that login stopped working, including the newest tokens.
    app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({"refresh_token": second.refresh}),
    )
    .await
    .assert_problem(401, "invalid_refresh_token");
    app.get("/api/v1/me", Some(&second.access))
        .await
        .assert_problem(401, "invalid_token");
    // Another login of the same account is unaffected.
    let other = Tokens::from(app.login(ADMIN_EMAIL, PASSWORD).await.assert_status(200));
    app.get("/api/v1/me", Some(&other.access))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn unknown_refresh_tokens_are_refused() {
    let app = spawn_app().await;
    for token in [
        "rgr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "garbage",
        "",
    ] {
        app.post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": token}),
        )
        .await
        .assert_problem(401, "invalid_refresh_token");
    }
}

#[tokio::test]
async fn logout_ends_the_login_for_access_and_refresh_tokens() {
    let app = spawn_app().await;
    let tokens = app.admin().await;

    app.post("/api/v1/auth/logout", Some(&tokens.access), &json!({}))
        .await
        .assert_status(204);

    app.get("/api/v1/me", Some(&tokens.access))
        .await
        .assert_problem(401, "invalid_token");
    app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({"refresh_token": tokens.refresh}),
    )
    .await
    .assert_problem(401, "invalid_refresh_token");
}

#[tokio::test]
async fn logout_with_only_the_refresh_token_works_too() {
    let app = spawn_app().await;
    let tokens = app.admin().await;

    app.post(
        "/api/v1/auth/logout",
        None,
        &json!({"refresh_token": tokens.refresh}),
    )
    .await
    .assert_status(204);

    app.get("/api/v1/me", Some(&tokens.access))
        .await
        .assert_problem(401, "invalid_token");
    app.post("/api/v1/auth/logout", None, &json!({}))
        .await
        .assert_problem(401, "authentication_required");
}

#[tokio::test]
async fn a_disabled_account_can_neither_log_in_nor_use_its_tokens() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (organiser_id, organiser) = app.organiser(&admin, "org@example.org").await;

    app.patch(
        &format!("/api/v1/users/{organiser_id}"),
        Some(&admin.access),
        &json!({"disabled": true}),
    )
    .await
    .assert_status(200);

    app.get("/api/v1/me", Some(&organiser.access))
        .await
        .assert_problem(401, "invalid_token");
    app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({"refresh_token": organiser.refresh}),
    )
    .await
    .assert_problem(401, "invalid_refresh_token");
}

#[tokio::test]
async fn a_disabled_account_with_the_right_password_is_answered_like_a_wrong_one() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (organiser_id, _) = app.organiser(&admin, "org@example.org").await;
    app.patch(
        &format!("/api/v1/users/{organiser_id}"),
        Some(&admin.access),
        &json!({"disabled": true}),
    )
    .await
    .assert_status(200);

    let right = app.login("org@example.org", PASSWORD).await;
    let wrong = app.login("org@example.org", "wrong password").await;
    let unknown = app.login("nobody@example.org", PASSWORD).await;

    let right = right.assert_problem(401, "invalid_credentials");
    assert_eq!(right, wrong.assert_problem(401, "invalid_credentials"));
    assert_eq!(right, unknown.assert_problem(401, "invalid_credentials"));
}

async fn refresh(app: &crate::helpers::TestApp, token: &str) -> crate::helpers::Answer {
    app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({"refresh_token": token}),
    )
    .await
}

#[tokio::test]
async fn changing_ones_own_password_ends_every_other_login() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (_, here) = app.organiser(&admin, "org@example.org").await;
    let elsewhere = Tokens::from(
        app.login("org@example.org", PASSWORD)
            .await
            .assert_status(200),
    );

    app.post(
        "/api/v1/me/password",
        Some(&here.access),
        &json!({"current_password": PASSWORD, "new_password": "a new long password"}),
    )
    .await
    .assert_status(204);

    // The other login: its access token and its refresh token are refused.
    app.get("/api/v1/me", Some(&elsewhere.access))
        .await
        .assert_problem(401, "invalid_token");
    refresh(&app, &elsewhere.refresh)
        .await
        .assert_problem(401, "invalid_refresh_token");
    // The login that made the change continues.
    app.get("/api/v1/me", Some(&here.access))
        .await
        .assert_status(200);
    refresh(&app, &here.refresh).await.assert_status(200);
    app.login("org@example.org", PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    app.login("org@example.org", "a new long password")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_password_reset_by_an_admin_ends_every_login_of_the_account() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (organiser_id, first) = app.organiser(&admin, "org@example.org").await;
    let second = Tokens::from(
        app.login("org@example.org", PASSWORD)
            .await
            .assert_status(200),
    );

    app.patch(
        &format!("/api/v1/users/{organiser_id}"),
        Some(&admin.access),
        &json!({"password": "a new long password"}),
    )
    .await
    .assert_status(200);

    for login in [&first, &second] {
        app.get("/api/v1/me", Some(&login.access))
            .await
            .assert_problem(401, "invalid_token");
        refresh(&app, &login.refresh)
            .await
            .assert_problem(401, "invalid_refresh_token");
    }
    // The admin's own login is not touched.
    app.get("/api/v1/me", Some(&admin.access))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn an_admin_setting_their_own_password_keeps_only_the_login_that_did_it() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let other = Tokens::from(app.login(ADMIN_EMAIL, PASSWORD).await.assert_status(200));
    let me = app.get("/api/v1/me", Some(&admin.access)).await.json();

    app.patch(
        &format!("/api/v1/users/{}", me["id"].as_str().unwrap()),
        Some(&admin.access),
        &json!({"password": "a new long password"}),
    )
    .await
    .assert_status(200);

    app.get("/api/v1/me", Some(&other.access))
        .await
        .assert_problem(401, "invalid_token");
    app.get("/api/v1/me", Some(&admin.access))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_wrong_current_password_changes_nothing() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (_, here) = app.organiser(&admin, "org@example.org").await;
    let elsewhere = Tokens::from(
        app.login("org@example.org", PASSWORD)
            .await
            .assert_status(200),
    );

    let answer = app
        .post(
            "/api/v1/me/password",
            Some(&here.access),
            &json!({"current_password": "not the password", "new_password": "a new long password"}),
        )
        .await;
    let short = app
        .post(
            "/api/v1/me/password",
            Some(&here.access),
            &json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;

    let problem = answer.assert_problem(422, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "current_password");
    let problem = short.assert_problem(422, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "new_password");
    app.get("/api/v1/me", Some(&elsewhere.access))
        .await
        .assert_status(200);
    app.login("org@example.org", PASSWORD)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_login_racing_a_password_change_does_not_outlive_it() {
    let app = spawn_app().await;
    app.create_admin(ADMIN_EMAIL).await;
    // A password change is in flight: the new hash is written but not committed.
    let in_flight = app.db.client().await;
    in_flight
        .batch_execute(
            "BEGIN; UPDATE users SET password_hash = 'changed' WHERE email = 'admin@example.org'",
        )
        .await
        .unwrap();
    let observer = app.db.client().await;
    let login = app.login(ADMIN_EMAIL, PASSWORD);
    tokio::pin!(login);
    tokio::select! {
        answer = &mut login => panic!("answered without waiting for the change: {}", answer.text),
        () = lock_wait(&observer) => {}
    }
    in_flight.batch_execute("COMMIT").await.unwrap();

    login.await.assert_problem(401, "invalid_credentials");
    let sessions: i64 = app
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM auth_sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sessions, 0);
}

fn forged(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn every_kind_of_bad_token_is_401() {
    let app = spawn_app().await;
    let tokens = app.admin().await;
    let me = app.get("/api/v1/me", Some(&tokens.access)).await.json();
    let valid_payload = tokens.access.split('.').nth(1).unwrap().to_owned();
    let now = chrono::Utc::now().timestamp();
    let claims = |exp: i64| {
        json!({
            "sub": me["id"], "sid": uuid::Uuid::now_v7(), "iss": "registrar",
            "aud": "registrar-api", "iat": now - 1000, "exp": exp
        })
    };
    use base64::Engine;
    let none_header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);

    let cases = [
        ("expired", forged(claims(now - 600), JWT_SECRET)),
        (
            "wrongly signed",
            forged(claims(now + 600), "another-secret-another-secret-0000"),
        ),
        ("alg none", format!("{none_header}.{valid_payload}.")),
        ("malformed", "not.a.jwt".to_owned()),
        ("tampered", format!("{}x", tokens.access)),
        ("unknown session", forged(claims(now + 600), JWT_SECRET)),
    ];
    for (case, token) in cases {
        let answer = app.get("/api/v1/me", Some(&token)).await;
        let problem = answer.assert_problem(401, "invalid_token");
        assert!(
            answer.header("www-authenticate").is_some(),
            "{case}: {problem}"
        );
    }
    for header in ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer    "] {
        app.call(reqwest::Method::GET, "/api/v1/me")
            .header("authorization", header)
            .send()
            .await
            .assert_problem(401, "invalid_token");
    }
    app.get("/api/v1/me", None)
        .await
        .assert_problem(401, "authentication_required");
}
