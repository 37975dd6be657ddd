use serde_json::json;

use crate::helpers::{PASSWORD, spawn_app};

#[tokio::test]
async fn admins_create_organisers_who_can_log_in() {
    let app = spawn_app().await;
    let admin = app.admin().await;

    let created = app
        .post(
            "/api/v1/users",
            Some(&admin.access),
            &json!({"email": "Olga@Example.org", "display_name": "Ольга Петрова", "password": PASSWORD}),
        )
        .await;

    created.assert_status(201);
    let body = created.json();
    assert_eq!(body["role"], "organiser");
    assert_eq!(body["display_name"], "Ольга Петрова");
    assert_eq!(body["disabled"], false);
    assert!(body.get("password_hash").is_none() && body.get("password").is_none());
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/users/{}", body["id"].as_str().unwrap()).as_str())
    );
    app.login("olga@example.org", PASSWORD)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn emails_are_unique_regardless_of_case() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.organiser(&admin, "olga@example.org").await;

    let again = app
        .post(
            "/api/v1/users",
            Some(&admin.access),
            &json!({"email": "OLGA@example.org", "display_name": "Другая", "password": PASSWORD}),
        )
        .await;

    again.assert_problem(409, "email_taken");
}

#[tokio::test]
async fn an_account_is_one_address_whatever_its_unicode_form() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.organiser(&admin, "olga@пример.рф").await;
    app.organiser(&admin, "kate@example.org").await;
    app.organiser(&admin, "straße@example.org").await;

    for taken in [
        "OLGA@xn--e1afmkfd.xn--p1ai",
        "\u{212a}ate@example.org",
        "ｋａｔｅ@example.org",
        "STRASSE@example.org",
    ] {
        app.post(
            "/api/v1/users",
            Some(&admin.access),
            &json!({"email": taken, "display_name": "Другая", "password": PASSWORD}),
        )
        .await
        .assert_problem(409, "email_taken");
    }
    for (written, password) in [
        ("olga@XN--E1AFMKFD.xn--p1ai", PASSWORD),
        ("\u{212a}ATE@example.org", PASSWORD),
        ("strasse@example.org", PASSWORD),
    ] {
        app.login(written, password).await.assert_status(200);
    }
}

#[tokio::test]
async fn new_accounts_are_validated_field_by_field() {
    let app = spawn_app().await;
    let admin = app.admin().await;

    let answer = app
        .post(
            "/api/v1/users",
            Some(&admin.access),
            &json!({"email": "not-an-email", "display_name": " ", "password": "short"}),
        )
        .await;

    let problem = answer.assert_problem(422, "validation_failed");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "display_name", "password"]);
}

#[tokio::test]
async fn only_admins_manage_users() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (id, organiser) = app.organiser(&admin, "olga@example.org").await;
    let new_user = json!({"email": "x@example.org", "display_name": "X", "password": PASSWORD});

    app.post("/api/v1/users", Some(&organiser.access), &new_user)
        .await
        .assert_problem(403, "forbidden");
    app.get("/api/v1/users", Some(&organiser.access))
        .await
        .assert_problem(403, "forbidden");
    app.patch(
        &format!("/api/v1/users/{id}"),
        Some(&organiser.access),
        &json!({"role": "admin"}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.post("/api/v1/users", None, &new_user)
        .await
        .assert_problem(401, "authentication_required");
    app.get("/api/v1/users", None)
        .await
        .assert_problem(401, "authentication_required");
}

#[tokio::test]
async fn users_are_listed_page_by_page() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    for n in 0..4 {
        app.organiser(&admin, &format!("o{n}@example.org")).await;
    }

    let first = app
        .get("/api/v1/users?limit=3", Some(&admin.access))
        .await
        .json();
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app
        .get(
            &format!("/api/v1/users?limit=3&cursor={cursor}"),
            Some(&admin.access),
        )
        .await
        .json();

    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    assert_eq!(second["items"].as_array().unwrap().len(), 2);
    assert!(second["next_cursor"].is_null());
    let emails: Vec<_> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|u| u["email"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        emails,
        [
            "admin@example.org",
            "o0@example.org",
            "o1@example.org",
            "o2@example.org",
            "o3@example.org"
        ]
    );
    app.get("/api/v1/users?limit=201", Some(&admin.access))
        .await
        .assert_problem(422, "validation_failed");
    app.get("/api/v1/users?cursor=bogus", Some(&admin.access))
        .await
        .assert_problem(422, "validation_failed");
}

#[tokio::test]
async fn admins_change_roles_names_and_passwords() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (id, _) = app.organiser(&admin, "olga@example.org").await;

    let changed = app
        .patch(
            &format!("/api/v1/users/{id}"),
            Some(&admin.access),
            &json!({"role": "admin", "display_name": "Ольга", "password": "another long password"}),
        )
        .await;

    changed.assert_status(200);
    assert_eq!(changed.json()["role"], "admin");
    assert_eq!(changed.json()["display_name"], "Ольга");
    app.login("olga@example.org", PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    app.login("olga@example.org", "another long password")
        .await
        .assert_status(200);
    app.patch(
        &format!("/api/v1/users/{id}"),
        Some(&admin.access),
        &json!({"display_name": null}),
    )
    .await
    .assert_problem(422, "invalid_body");
    app.patch(
        &format!("/api/v1/users/{}", uuid::Uuid::now_v7()),
        Some(&admin.access),
        &json!({"display_name": "Никто"}),
    )
    .await
    .assert_problem(404, "not_found");
}

#[tokio::test]
async fn admins_cannot_lock_themselves_out() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let me = app.get("/api/v1/me", Some(&admin.access)).await.json();
    let path = format!("/api/v1/users/{}", me["id"].as_str().unwrap());

    app.patch(&path, Some(&admin.access), &json!({"disabled": true}))
        .await
        .assert_problem(409, "cannot_change_own_access");
    app.patch(&path, Some(&admin.access), &json!({"role": "organiser"}))
        .await
        .assert_problem(409, "cannot_change_own_access");
}
