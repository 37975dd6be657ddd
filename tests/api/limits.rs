//! Limits that keep one client from hurting others: sizes, lengths, page sizes, slow
//! clients, rate limits (shared by every instance), and CORS for browser frontends.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    ADMIN_EMAIL, Answer, PASSWORD, TestApp, registration_body, send_checked, spawn_app,
    spawn_app_with, test_config,
};

#[tokio::test]
async fn strings_longer_than_their_limit_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    let mut body = registration_body("anna@example.org", &[]);
    body["full_name"] = json!("Я".repeat(201));
    body["organisation"] = json!("О".repeat(301));

    let problem = app
        .post("/api/v1/events/a/registrations", None, &body)
        .await
        .assert_problem(422, "validation_failed");

    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["full_name", "organisation"]);
}

#[tokio::test]
async fn lists_longer_than_their_limit_are_refused() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    let too_many: Vec<String> = (0..51).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let ids: Vec<&str> = too_many.iter().map(String::as_str).collect();

    let problem = app
        .post(
            "/api/v1/events/a/registrations",
            None,
            &registration_body("a@example.org", &ids),
        )
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "session_ids");

    let scans: Vec<_> = (0..501)
        .map(|n| json!({"qr_code": "RG1.x", "scanned_at": "2026-11-20T08:00:00Z", "client_nonce": format!("n{n}")}))
        .collect();
    let problem = app
        .post(
            "/api/v1/events/a/checkins/batch",
            Some(&admin.access),
            &json!({"scans": scans}),
        )
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "scans");
}

#[tokio::test]
async fn page_sizes_are_bounded_everywhere() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    for path in [
        "/api/v1/events?limit=201",
        "/api/v1/events/a/sessions?limit=201",
        "/api/v1/events/a/registrations?limit=0",
        "/api/v1/events/a/attendees?limit=1001",
    ] {
        let problem = app
            .get(path, Some(&admin.access))
            .await
            .assert_problem(422, "validation_failed");
        assert_eq!(problem["errors"][0]["field"], "limit", "{path}");
    }
}

#[tokio::test]
async fn a_client_that_sends_its_request_too_slowly_is_cut_off() {
    let app = spawn_app_with(|config| config.client_timeout_ms = 300).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();

    // The head is never finished: the server answers 408 and closes the connection.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn too_many_logins_from_one_address_get_429_with_retry_after() {
    let app = spawn_app_with(|config| config.login_rate_limit = 3).await;
    app.create_admin(ADMIN_EMAIL).await;

    for _ in 0..3 {
        app.login(ADMIN_EMAIL, "wrong password")
            .await
            .assert_problem(401, "invalid_credentials");
    }
    let limited = app.login(ADMIN_EMAIL, PASSWORD).await;

    let problem = limited.assert_problem(429, "rate_limited");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(problem["retry_after"], retry_after);
}

async fn login_via_proxy(
    app: &TestApp,
    forwarded_for: &str,
    email: &str,
    password: &str,
) -> Answer {
    app.call(Method::POST, "/api/v1/auth/login")
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
}

#[tokio::test]
async fn rotating_the_forwarded_address_a_client_writes_does_not_escape_the_limit() {
    // The test connects from loopback, a trusted proxy by default; the proxy appends the
    // address it saw (203.0.113.7) to whatever the client sent.
    let app = spawn_app_with(|config| config.login_rate_limit = 3).await;
    app.create_admin(ADMIN_EMAIL).await;

    for n in 0..3 {
        login_via_proxy(
            &app,
            &format!("198.51.100.{n}, 203.0.113.7"),
            ADMIN_EMAIL,
            PASSWORD,
        )
        .await
        .assert_status(200);
    }
    let rotated = login_via_proxy(&app, "198.51.100.99, 203.0.113.7", ADMIN_EMAIL, PASSWORD).await;
    // The same client through one more trusted hop is still the same client.
    let another_hop = login_via_proxy(&app, "203.0.113.7, 127.0.0.1", ADMIN_EMAIL, PASSWORD).await;
    // Another client behind the same proxy is not limited.
    let neighbour =
        login_via_proxy(&app, "198.51.100.99, 203.0.113.8", ADMIN_EMAIL, PASSWORD).await;

    rotated.assert_problem(429, "rate_limited");
    another_hop.assert_problem(429, "rate_limited");
    neighbour.assert_status(200);
}

#[tokio::test]
async fn failed_logins_are_limited_per_account_whatever_the_address() {
    let app = spawn_app_with(|config| config.login_account_limit = 3).await;
    let admin = app.admin().await;
    app.organiser(&admin, "olga@example.org").await;

    for n in 0..3 {
        login_via_proxy(
            &app,
            &format!("198.51.100.{n}"),
            "olga@example.org",
            "wrong password",
        )
        .await
        .assert_problem(401, "invalid_credentials");
    }
    let locked = login_via_proxy(&app, "198.51.100.50", "olga@example.org", PASSWORD).await;
    let other_account = login_via_proxy(&app, "198.51.100.50", ADMIN_EMAIL, PASSWORD).await;

    let problem = locked.assert_problem(429, "rate_limited");
    let retry_after: u64 = locked.header("retry-after").unwrap().parse().unwrap();
    // Bounded: one more attempt comes back within an hour / 3 after the failures stop.
    assert!((1..=1200).contains(&retry_after), "{retry_after}");
    assert_eq!(problem["retry_after"], retry_after);
    other_account.assert_status(200);
    // One interval later the owner logs in.
    app.db
        .client()
        .await
        .execute(
            "UPDATE rate_limits SET tat = tat - interval '20 minutes' WHERE bucket = 'login-account'",
            &[],
        )
        .await
        .unwrap();
    login_via_proxy(&app, "198.51.100.50", "olga@example.org", PASSWORD)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn the_account_limit_counts_failures_only_and_treats_unknown_emails_alike() {
    let app = spawn_app_with(|config| config.login_account_limit = 2).await;
    app.create_admin(ADMIN_EMAIL).await;

    for _ in 0..4 {
        app.login(ADMIN_EMAIL, PASSWORD).await.assert_status(200);
    }
    let unknown: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(
                app.login("nobody@example.org", "guess")
                    .await
                    .status
                    .as_u16(),
            );
        }
        statuses
    };
    let known: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(app.login(ADMIN_EMAIL, "guess").await.status.as_u16());
        }
        statuses
    };

    assert_eq!(unknown, [401, 401, 429]);
    assert_eq!(known, unknown);
}

#[tokio::test]
async fn rate_limits_hold_across_instances() {
    let first = spawn_app_with(|config| config.registration_rate_limit = 4).await;
    let admin = first.admin().await;
    first.event(&admin.access, "a", json!({})).await;
    // A second instance of the service on the same database.
    let mut config = test_config(&first.db);
    config.registration_rate_limit = 4;
    let second = registrar::startup::Application::build(config)
        .await
        .unwrap();
    let second_address = format!("http://127.0.0.1:{}", second.port());
    tokio::spawn(second.run_until_stopped());
    let client = reqwest::Client::new();

    for n in 0..2 {
        first
            .register("a", &format!("one{n}@example.org"), &[])
            .await
            .assert_status(201);
        send_checked(
            client
                .post(format!("{second_address}/api/v1/events/a/registrations"))
                .json(&registration_body(&format!("two{n}@example.org"), &[])),
        )
        .await
        .unwrap()
        .assert_status(201);
    }
    let limited = send_checked(
        client
            .post(format!("{second_address}/api/v1/events/a/registrations"))
            .json(&registration_body("three@example.org", &[])),
    )
    .await
    .unwrap();

    limited.assert_problem(429, "rate_limited");
    assert!(limited.header("retry-after").is_some());
    first
        .register("a", "four@example.org", &[])
        .await
        .assert_problem(429, "rate_limited");
}

async fn preflight(app: &TestApp, origin: &str) -> crate::helpers::Answer {
    app.call(Method::OPTIONS, "/api/v1/events/a/registrations")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, idempotency-key",
        )
        .send()
        .await
}

#[tokio::test]
async fn cors_answers_preflights_for_allowed_origins_only() {
    let app = spawn_app().await;

    let allowed = preflight(&app, "https://portal.example.org").await;
    let refused = preflight(&app, "https://evil.example.com").await;

    assert!(allowed.status.is_success(), "{allowed:?}");
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://portal.example.org")
    );
    let methods = allowed.header("access-control-allow-methods").unwrap();
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    let headers = allowed
        .header("access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    assert!(
        headers.contains("idempotency-key") && headers.contains("content-type"),
        "{headers}"
    );
    assert!(
        refused.header("access-control-allow-origin").is_none(),
        "{refused:?}"
    );
}

#[tokio::test]
async fn cors_never_answers_with_a_wildcard() {
    let app = spawn_app().await;

    let answer = app
        .call(Method::GET, "/api/v1/events")
        .header("origin", "https://portal.example.org")
        .send()
        .await;

    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://portal.example.org")
    );
    assert!(answer.header("vary").unwrap().contains("Origin"));
    assert_ne!(
        answer.header("access-control-allow-credentials"),
        Some("true")
    );
    let foreign = app
        .call(Method::GET, "/api/v1/events")
        .header("origin", "https://evil.example.com")
        .send()
        .await;
    assert!(foreign.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_client_that_trickles_its_body_gets_408_once_the_body_deadline_passes() {
    let app = spawn_app_with(|config| config.body_timeout_ms = 1_000).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let body = br#"{"email": "a@example.org", "password": "a long enough password"}"#;
    stream
        .write_all(
            format!(
                "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();

    // One byte every 200 ms: each arrives well within any per-read timeout, but the whole body
    // would take 13 s.
    let started = std::time::Instant::now();
    let trickle = async {
        for byte in body {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;

    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        answer
            .to_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_refused_preflight_is_a_problem_with_the_usual_headers() {
    let app = spawn_app().await;
    let wrong_origin = preflight(&app, "https://evil.example.com").await;
    let wrong_method = app
        .call(Method::OPTIONS, "/api/v1/events")
        .header("origin", "https://portal.example.org")
        .header("access-control-request-method", "TRACE")
        .send()
        .await;
    let wrong_header = app
        .call(Method::OPTIONS, "/api/v1/events")
        .header("origin", "https://portal.example.org")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "x-something-else")
        .send()
        .await;

    for refused in [wrong_origin, wrong_method, wrong_header] {
        refused.assert_problem(400, "cors_refused");
        assert!(refused.header("x-request-id").is_some(), "{refused:?}");
        assert_eq!(refused.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(refused.header("x-frame-options"), Some("DENY"));
        assert!(refused.header("content-security-policy").is_some());
        assert!(refused.header("access-control-allow-origin").is_none());
    }
}

#[tokio::test]
async fn browsers_may_read_every_header_the_api_documents() {
    let app = spawn_app().await;

    let answer = app
        .call(Method::GET, "/api/v1/events")
        .header("origin", "https://portal.example.org")
        .send()
        .await;

    let exposed = answer
        .header("access-control-expose-headers")
        .unwrap()
        .to_lowercase();
    // Every response header the document names, but those browsers show scripts anyway.
    let mut documented = std::collections::BTreeSet::new();
    let doc = crate::contract::document();
    for item in doc["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            for response in operation["responses"].as_object().unwrap().values() {
                for (name, _) in response["headers"].as_object().into_iter().flatten() {
                    documented.insert(name.to_lowercase());
                }
            }
        }
    }
    documented.remove("cache-control");
    assert!(documented.len() >= 5, "{documented:?}");
    let exposed: Vec<&str> = exposed.split(',').map(str::trim).collect();
    for name in &documented {
        assert!(
            exposed.contains(&name.as_str()),
            "{name} is not exposed: {exposed:?}"
        );
    }
}
