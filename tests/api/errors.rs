//! Everything actix-web or the API rejects answers with problem+json.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, registration_body, spawn_app};

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

// ---- request bodies: one strict rule for every route ----------------------------------------

/// The `errors[]` of a problem as `(field, message)` pairs.
fn field_errors(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap().to_owned(),
                        e["message"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn register_raw(app: &TestApp, body: &str) -> crate::helpers::Answer {
    app.call(Method::POST, "/api/v1/events/a/registrations")
        .body("application/json", body.to_owned())
        .send()
        .await
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_named_by_its_json_path() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    let cases = [
        ("full_name", json!(42), "full_name", "must be a string"),
        ("consent", json!("yes"), "consent", "must be a boolean"),
        ("category", json!(42), "category", "must be a string"),
        (
            "session_ids",
            json!(["not-a-uuid"]),
            "session_ids[0]",
            "must be a UUID",
        ),
        ("session_ids", json!("x"), "session_ids", "must be an array"),
    ];
    for (member, value, field, message) in cases {
        let mut body = registration_body("anna@example.org", &[]);
        body[member] = value;

        let problem = app
            .post("/api/v1/events/a/registrations", None, &body)
            .await
            .assert_problem(422, "invalid_body");

        assert_eq!(
            field_errors(&problem),
            [(field.to_owned(), message.to_owned())],
            "{member}"
        );
        assert_eq!(problem["detail"], format!("{field}: {message}"));
    }
}

#[tokio::test]
async fn a_missing_or_unknown_member_is_named() {
    let app = spawn_app().await;
    let mut missing = registration_body("anna@example.org", &[]);
    missing.as_object_mut().unwrap().remove("email");
    let mut unknown = registration_body("anna@example.org", &[]);
    unknown["nickname"] = json!("Аня");

    let missing = app
        .post("/api/v1/events/a/registrations", None, &missing)
        .await
        .assert_problem(422, "invalid_body");
    let unknown = app
        .post("/api/v1/events/a/registrations", None, &unknown)
        .await
        .assert_problem(422, "invalid_body");

    assert_eq!(field_errors(&missing)[0].0, "email");
    assert_eq!(field_errors(&missing)[0].1, "is required");
    assert_eq!(field_errors(&unknown)[0].0, "nickname");
    assert_eq!(field_errors(&unknown)[0].1, "is not a known field");
}

#[tokio::test]
async fn nested_members_are_named_by_their_path() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    let scans = json!({"scans": [
        {"qr_code": "RG1.x", "client_nonce": "n1"},
        {"qr_code": "RG1.y", "client_nonce": 7},
    ]});

    let problem = app
        .post(
            "/api/v1/events/a/checkins/batch",
            Some(&admin.access),
            &scans,
        )
        .await
        .assert_problem(422, "invalid_body");

    assert_eq!(
        field_errors(&problem),
        [(
            "scans[1].client_nonce".to_owned(),
            "must be a string".to_owned()
        )]
    );
}

#[tokio::test]
async fn duplicate_members_are_refused_in_public_registration_too() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    let body = registration_body("anna@example.org", &[]).to_string();
    let twice = body.replacen('{', "{\"email\": \"other@example.org\", ", 1);

    let problem = register_raw(&app, &twice)
        .await
        .assert_problem(422, "invalid_body");

    assert_eq!(
        field_errors(&problem),
        [("email".to_owned(), "is given more than once".to_owned())]
    );
}

#[tokio::test]
async fn answers_do_not_repeat_the_values_sent() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    let mut misplaced = registration_body("anna@example.org", &[]);
    misplaced["category"] = json!("kate.secret@example.org");

    let password = app
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"email": "admin@example.org", "password": 731_902_554_116_u64}),
        )
        .await
        .assert_problem(422, "invalid_body");
    let category = app
        .post("/api/v1/events/a/registrations", None, &misplaced)
        .await
        .assert_problem(422, "validation_failed");
    let users = app
        .post(
            "/api/v1/users",
            Some(&admin.access),
            &json!({"email": "o@example.org", "display_name": "О", "password": ["s3cr3t-passw0rd"]}),
        )
        .await
        .assert_problem(422, "invalid_body");

    assert!(!password.to_string().contains("731902554116"), "{password}");
    assert_eq!(field_errors(&password)[0].0, "password");
    assert!(!category.to_string().contains("kate.secret"), "{category}");
    assert!(!users.to_string().contains("s3cr3t"), "{users}");
}

#[tokio::test]
async fn claiming_print_jobs_takes_no_lenient_body() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    let claim = |body: Option<(&'static str, &'static str)>| {
        let mut call = app
            .call(Method::POST, "/api/v1/events/a/print-jobs/claim")
            .bearer(&admin.access);
        if let Some((content_type, text)) = body {
            call = call.body(content_type, text);
        }
        call.send()
    };

    claim(None).await.assert_status(200);
    claim(Some(("application/json", "{}")))
        .await
        .assert_status(200);
    claim(Some(("application/json", "null")))
        .await
        .assert_status(200);
    claim(Some(("application/json", r#"{"batch_size": 5}"#)))
        .await
        .assert_status(200);
    claim(Some(("application/json", r#"{"batch": 5}"#)))
        .await
        .assert_problem(422, "invalid_body");
    claim(Some(("application/json", r#"{"batch_size": 1e12}"#)))
        .await
        .assert_problem(422, "invalid_body");
    claim(Some(("application/json", r#"{"batch_size": 99999999999}"#)))
        .await
        .assert_problem(422, "invalid_body");
    claim(Some((
        "application/json",
        r#"{"batch_size": 5, "batch_size": 6}"#,
    )))
    .await
    .assert_problem(422, "invalid_body");
    claim(Some(("text/plain", r#"{"batch_size": 5}"#)))
        .await
        .assert_problem(415, "unsupported_media_type");
    claim(Some(("application/json", "{\"batch_size\": ")))
        .await
        .assert_problem(400, "malformed_json");
}

/// Every route the OpenAPI document gives a request body, called with bodies no route may
/// take: each answers the same problem.
#[tokio::test]
async fn every_route_with_a_body_refuses_the_same_bad_bodies() {
    let app = spawn_app().await;
    let document = app.get("/api/openapi.json", None).await.json();
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(request_body) = operation.get("requestBody") else {
                continue;
            };
            // Uploads of files (imports) are not JSON: their bad input is tested with them.
            if request_body["content"].get("application/json").is_none() {
                continue;
            }
            checked += 1;
            let url = fill_path(path);
            let method: Method = method.to_uppercase().parse().unwrap();
            let send = |content_type: &'static str, body: &'static str| {
                app.call(method.clone(), &url)
                    .body(content_type, body)
                    .send()
            };
            let route = format!("{method} {path}");

            let answer = send("text/plain", "{}").await;
            assert_eq!(answer.status.as_u16(), 415, "{route}: {}", answer.text);
            let problem = send("application/json", r#"{"no_such_member": 1}"#)
                .await
                .assert_problem(422, "invalid_body");
            assert_eq!(field_errors(&problem)[0].0, "no_such_member", "{route}");
            let problem = send("application/json", r#"{"a": 1, "a": 2}"#)
                .await
                .assert_problem(422, "invalid_body");
            assert_eq!(
                field_errors(&problem),
                [("a".to_owned(), "is given more than once".to_owned())],
                "{route}"
            );
            send("application/json", "[]")
                .await
                .assert_problem(422, "invalid_body");
            send("application/json", "{")
                .await
                .assert_problem(400, "malformed_json");
            if request_body.get("required") != Some(&Value::Bool(true)) {
                // An optional body may be left out, whatever the content type says.
                let answer = app.call(method.clone(), &url).send().await;
                assert!(
                    ![400, 415, 422].contains(&answer.status.as_u16()),
                    "{route}: {}",
                    answer.text
                );
            }
        }
    }
    assert!(checked >= 26, "{checked} routes with a body");
}

/// A path with its parameters filled with a made-up id.
fn fill_path(template: &str) -> String {
    let mut path = String::new();
    for part in template.split('/') {
        if !path.is_empty() || !part.is_empty() {
            path.push('/');
        }
        if part.starts_with('{') {
            path.push_str(&uuid::Uuid::now_v7().to_string());
        } else {
            path.push_str(part);
        }
    }
    path
}

// ---- dates: 0001-01-01 to 9999-12-31 wherever they enter ------------------------------------

const FAR_DAYS: [&str; 3] = ["-262143-01-01", "+262142-12-31", "10000-01-01"];
const FAR_TIMES: [&str; 4] = [
    "-262143-04-24T11:00:00+03:00",
    "+262142-04-24T11:00:00Z",
    "0000-12-31T23:00:00Z",
    "9999-12-31T23:00:00-05:00",
];

#[tokio::test]
async fn a_day_out_of_range_in_the_programme_query_is_an_invalid_query() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    for day in FAR_DAYS {
        for path in ["programme", "programme.ics"] {
            let problem = app
                .get(&format!("/api/v1/events/a/{path}?day={day}"), None)
                .await
                .assert_problem(400, "invalid_query");

            assert_eq!(field_errors(&problem)[0].0, "day", "{day}");
        }
    }
    app.get("/api/v1/events/a/programme?day=9999-12-31", None)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn an_event_with_a_date_out_of_range_is_refused_naming_it() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    let new_event = |extra: Value| {
        let mut body = json!({"slug": "far", "title": "Т", "time_zone": "Europe/Moscow",
                              "starts_on": "2027-04-20", "ends_on": "2027-04-24"});
        crate::helpers::merge(&mut body, extra);
        body
    };
    for day in FAR_DAYS {
        for field in ["starts_on", "ends_on"] {
            let problem = app
                .post(
                    "/api/v1/events",
                    Some(&admin.access),
                    &new_event(json!({field: day})),
                )
                .await
                .assert_problem(422, "invalid_body");
            assert_eq!(field_errors(&problem)[0].0, field, "{day}");
            let problem = app
                .patch(
                    "/api/v1/events/a",
                    Some(&admin.access),
                    &json!({field: day}),
                )
                .await
                .assert_problem(422, "invalid_body");
            assert_eq!(field_errors(&problem)[0].0, field, "{day}");
        }
    }
    for time in FAR_TIMES {
        for field in ["registration_opens_at", "registration_closes_at"] {
            let problem = app
                .post(
                    "/api/v1/events",
                    Some(&admin.access),
                    &new_event(json!({field: time})),
                )
                .await
                .assert_problem(422, "invalid_body");
            assert_eq!(field_errors(&problem)[0].0, field, "{time}");
        }
    }
}

#[tokio::test]
async fn a_session_or_scan_with_a_time_out_of_range_is_refused_naming_it() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    let session = app.session(&admin.access, "a", json!({})).await;
    let session = session["id"].as_str().unwrap();
    for time in FAR_TIMES {
        for field in [
            "starts_at",
            "ends_at",
            "registration_opens_at",
            "registration_closes_at",
        ] {
            let mut body = json!({"title": "С", "kind": "business_session",
                "starts_at": "2027-04-24T11:00:00+03:00", "ends_at": "2027-04-24T13:00:00+03:00"});
            body[field] = json!(time);
            let problem = app
                .post("/api/v1/events/a/sessions", Some(&admin.access), &body)
                .await
                .assert_problem(422, "invalid_body");
            assert_eq!(field_errors(&problem)[0].0, field, "{time}");
            let problem = app
                .patch(
                    &format!("/api/v1/events/a/sessions/{session}"),
                    Some(&admin.access),
                    &json!({field: time}),
                )
                .await
                .assert_problem(422, "invalid_body");
            assert_eq!(field_errors(&problem)[0].0, field, "{time}");
        }
        let problem = app
            .post(
                "/api/v1/events/a/checkins/batch",
                Some(&admin.access),
                &json!({"scans": [{"qr_code": "RG1.x", "client_nonce": "n", "scanned_at": time}]}),
            )
            .await
            .assert_problem(422, "invalid_body");
        assert_eq!(field_errors(&problem)[0].0, "scans[0].scanned_at", "{time}");
    }
}

#[tokio::test]
async fn a_cursor_holding_a_date_out_of_range_is_refused() {
    use base64::Engine;
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    let cursor =
        |key: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.to_string());
    let id = uuid::Uuid::now_v7().to_string();
    for (path, key) in [
        ("/api/v1/events", json!(["-262143-01-01", id])),
        (
            "/api/v1/events/a/sessions",
            json!(["+262142-01-01T00:00:00Z", id]),
        ),
        (
            "/api/v1/events/a/print-jobs",
            json!(["-262143-01-01T00:00:00Z", id]),
        ),
    ] {
        let problem = app
            .get(
                &format!("{path}?cursor={}", cursor(key)),
                Some(&admin.access),
            )
            .await
            .assert_problem(422, "validation_failed");
        assert_eq!(field_errors(&problem)[0].0, "cursor", "{path}");
    }
}

#[tokio::test]
async fn a_category_with_a_time_out_of_range_is_refused_naming_it() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    app.post(
        "/api/v1/events/a/categories",
        Some(&admin.access),
        &json!({"code": "press", "name": {"ru": "Пресса", "en": "Press"}}),
    )
    .await
    .assert_status(201);
    for time in FAR_TIMES {
        for field in ["registration_opens_at", "registration_closes_at"] {
            let problem = app
                .post(
                    "/api/v1/events/a/categories",
                    Some(&admin.access),
                    &json!({"code": "far", "name": {"ru": "Т", "en": "T"}, field: time}),
                )
                .await
                .assert_problem(422, "invalid_body");
            assert_eq!(field_errors(&problem)[0].0, field, "{time}");
            let problem = app
                .patch(
                    "/api/v1/events/a/categories/press",
                    Some(&admin.access),
                    &json!({field: time}),
                )
                .await
                .assert_problem(422, "invalid_body");
            assert_eq!(field_errors(&problem)[0].0, field, "{time}");
        }
    }
}
