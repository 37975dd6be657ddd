use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn healthz_answers_while_the_process_is_up() {
    let app = spawn_app().await;
    let answer = app.get("/healthz", None).await;
    answer.assert_status(200);
    assert_eq!(answer.json()["status"], "ok");
}

#[tokio::test]
async fn readyz_follows_the_database() {
    let app = spawn_app().await;
    app.get("/readyz", None).await.assert_status(200);

    // Take the database away under the running service.
    let client = app.db.client().await;
    client.batch_execute("SELECT 1").await.unwrap();
    drop(client);
    let (admin, connection) = tokio_postgres::connect(
        &app.db.url.replace(&app.db.name, "postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", app.db.name))
        .await
        .unwrap();

    let answer = app.get("/readyz", None).await;
    answer.assert_problem(503, "database_unavailable");
    assert!(answer.header("retry-after").is_some());
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    app.get("/healthz", None).await.assert_status(200);
    app.get("/api/v1/users/not-a-uuid", None).await;

    let answer = app.get("/metrics", None).await;

    answer.assert_status(200);
    let text = &answer.text;
    assert!(
        text.contains(
            r#"registrar_http_requests_total{method="GET",route="/healthz",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/api/v1/users/{id}",status="404""#),
        "{text}"
    );
    assert!(
        text.contains("registrar_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"registrar_db_pool_connections{state="max"} 8"#),
        "{text}"
    );
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let app = spawn_app().await;
    let a = app.get("/healthz", None).await;
    let b = app.get("/healthz", None).await;
    let (a, b) = (
        a.header("x-request-id").unwrap(),
        b.header("x-request-id").unwrap(),
    );
    assert_ne!(a, b);
}

#[tokio::test]
async fn the_committed_openapi_document_matches_the_code() {
    let generated = registrar::openapi::to_json(&registrar::openapi::document());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date; refresh it with:\n\n    cargo run -- openapi > openapi/openapi.json\n"
    );
}

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let app = spawn_app().await;
    let answer = app.get("/api/openapi.json", None).await;
    answer.assert_status(200);
    let served = answer.json();
    assert_eq!(served["openapi"], "3.1.0");
    assert_eq!(
        served,
        serde_json::from_str::<serde_json::Value>(&registrar::openapi::to_json(
            &registrar::openapi::document()
        ))
        .unwrap()
    );
}

#[tokio::test]
async fn the_docs_ui_is_served_from_the_binary_with_no_outside_assets() {
    let app = spawn_app().await;
    app.get("/docs", None).await.assert_status(307);
    let page = app.get("/docs/", None).await;
    page.assert_status(200);
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'self'")
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        assert!(page.text.contains(asset), "{asset} is not referenced");
        let answer = app.get(&format!("/docs/{asset}"), None).await;
        answer.assert_status(200);
    }
    // Nothing is fetched from elsewhere: every src/href is relative.
    for attribute in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !page.text.contains(attribute),
            "{attribute} in {}",
            page.text
        );
    }
    let initializer = app.get("/docs/swagger-initializer.js", None).await;
    assert!(
        initializer.text.contains("/api/openapi.json"),
        "{}",
        initializer.text
    );
}

#[tokio::test]
async fn metrics_labels_come_from_a_closed_set_whatever_the_request_says() {
    let app = spawn_app().await;
    let long_method = "X".repeat(2_000);
    for n in 0..20 {
        let method = reqwest::Method::from_bytes(format!("{long_method}{n}").as_bytes()).unwrap();
        app.call(method, &format!("/api/v1/events/{n}-{long_method}"))
            .send()
            .await;
    }
    app.call(
        reqwest::Method::from_bytes(b"PROPFIND").unwrap(),
        "/healthz",
    )
    .send()
    .await;

    let answer = app.get("/metrics", None).await;

    answer.assert_status(200);
    let text = &answer.text;
    assert!(
        !text.contains(&long_method[..100]),
        "a request's text became a label"
    );
    assert!(!text.contains("PROPFIND"), "{text}");
    assert!(
        text.contains(
            r#"registrar_http_requests_total{method="other",route="/healthz",status="405"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"registrar_http_requests_total{method="other",route="/api/v1/events/{event}",status="405"} 20"#
        ),
        "{text}"
    );
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
}

#[tokio::test]
async fn metrics_require_the_token_when_one_is_configured() {
    let app = spawn_app_with(|config| {
        config.metrics_token = Some("scrape-token-0123456789".to_owned().into());
    })
    .await;

    app.get("/metrics", None)
        .await
        .assert_problem(401, "authentication_required");
    app.get("/metrics", Some("another-token"))
        .await
        .assert_problem(401, "invalid_token");
    let answer = app.get("/metrics", Some("scrape-token-0123456789")).await;

    answer.assert_status(200);
    assert!(answer.text.contains("registrar_http_requests_total"));
    // The probes an orchestrator uses stay open.
    app.get("/healthz", None).await.assert_status(200);
    app.get("/readyz", None).await.assert_status(200);
}

/// The JWT secret docker-compose.yml falls back on, read from the file itself.
fn compose_sample_secret() -> String {
    let compose = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"),
    )
    .unwrap();
    let line = compose
        .lines()
        .find(|line| line.trim_start().starts_with("REGISTRAR_JWT_SECRET:"))
        .expect("docker-compose.yml sets REGISTRAR_JWT_SECRET");
    let (_, default) = line
        .split_once(":-")
        .expect("REGISTRAR_JWT_SECRET has a default in docker-compose.yml");
    default.trim().trim_end_matches('}').to_owned()
}

#[tokio::test]
async fn production_refuses_to_start_with_a_published_sample_secret() {
    let db = crate::helpers::TestDb::new().await;
    let mut config = crate::helpers::test_config(&db);
    config.environment = registrar::config::Environment::Production;
    config.jwt_secret = Some(compose_sample_secret().into());

    let error = match registrar::startup::Application::build(config).await {
        Ok(_) => panic!("started in production with the sample secret"),
        Err(error) => format!("{error:#}"),
    };

    assert!(error.contains("REGISTRAR_JWT_SECRET"), "{error}");
    assert!(error.contains("sample"), "{error}");
}

#[tokio::test]
async fn the_compose_file_as_shipped_starts_for_a_trial() {
    let compose = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"),
    )
    .unwrap();
    let environment = compose
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("REGISTRAR_ENV:"))
        .expect("docker-compose.yml sets REGISTRAR_ENV");
    let environment = environment
        .split_once(":-")
        .map_or(environment, |(_, default)| default)
        .trim()
        .trim_end_matches('}');
    let db = crate::helpers::TestDb::new().await;
    let mut config = crate::helpers::test_config(&db);
    config.environment = clap::ValueEnum::from_str(environment, true).expect("a known environment");
    config.jwt_secret = Some(compose_sample_secret().into());

    assert!(
        registrar::startup::Application::build(config).await.is_ok(),
        "docker compose up would not start with REGISTRAR_ENV={environment}"
    );
}

#[tokio::test]
async fn logs_carry_no_colour_codes_when_not_written_to_a_terminal() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args([
            "--database-url",
            "postgres://postgres@127.0.0.1:1/nothing",
            "migrate",
        ])
        .env("REGISTRAR_LOG_FORMAT", "text")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();

    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(logs.contains("ERROR"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "{logs:?}");
}

#[tokio::test]
async fn help_names_environment_variables_without_values() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("--help")
        .env_remove("REGISTRAR_BIND")
        .env("REGISTRAR_DB_POOL_SIZE", "12")
        .output()
        .await
        .unwrap();

    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(help.contains("[env: REGISTRAR_BIND]"), "{help}");
    assert!(help.contains("[env: REGISTRAR_DB_POOL_SIZE]"), "{help}");
    assert!(help.contains("[env: REGISTRAR_METRICS_TOKEN]"), "{help}");
    let with_values: Vec<&str> = help
        .lines()
        .filter(|line| line.contains("[env: ") && line.contains('='))
        .collect();
    assert!(with_values.is_empty(), "{with_values:#?}");
}

#[tokio::test]
async fn instances_started_at_once_against_a_missing_database_all_start() {
    let db = crate::helpers::TestDb::not_created();

    // Each tries to create the database at the same moment.
    let instances = futures_util::future::join_all((0..6).map(|_| {
        let config = crate::helpers::test_config(&db);
        async move { registrar::startup::Application::build(config).await }
    }))
    .await;

    let failures: Vec<String> = instances
        .iter()
        .filter_map(|instance| instance.as_ref().err().map(|e| format!("{e:#}")))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    let http = reqwest::Client::new();
    for instance in instances.into_iter().flatten() {
        let ready = format!("http://127.0.0.1:{}/readyz", instance.port());
        tokio::spawn(instance.run_until_stopped());
        assert_eq!(http.get(ready).send().await.unwrap().status().as_u16(), 200);
    }
    // Migrated once: every migration applied, none twice.
    let migrations =
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations"))
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().path().is_dir())
            .count();
    let applied: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM __diesel_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(applied as usize, migrations);
}

/// Background work gives way while requests wait for a database connection (`runner::Pace`):
/// the signal is a worker's pool with a request waiting, not a pool merely in use, and not
/// the background pool.
#[tokio::test]
async fn the_foreground_is_saturated_while_a_request_waits_for_a_connection() {
    use registrar::state::AppState;
    use secrecy::ExposeSecret;

    let db = crate::helpers::TestDb::new().await;
    let config = crate::helpers::test_config(&db);
    let url = config.database_url.expose_secret().to_owned();
    let background = registrar::db::pool(&url, 1, std::time::Duration::from_secs(5)).unwrap();
    let state = AppState::new(
        config,
        background.clone(),
        "a-test-secret-of-some-length-0123456789".into(),
        registrar::secrets::KeyRing::development(),
    );
    let worker = state.with_own_pool(1).unwrap();
    assert!(!state.foreground_saturated());

    // The background pool's only connection taken, and another asked for: not the foreground.
    let held_by_background = background.get().await.unwrap();
    let background_waits = tokio::spawn({
        let background = background.clone();
        async move { background.get().await.map(|_| ()) }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(background.status().waiting, 1);
    assert!(!state.foreground_saturated());
    drop(held_by_background);
    background_waits.await.unwrap().unwrap();

    // The worker's only connection in use: busy, not saturated.
    let held = worker.db.get().await.unwrap();
    assert!(!state.foreground_saturated());
    // A request waits for it: saturated, until it gets one.
    let waits = tokio::spawn({
        let worker = worker.clone();
        async move { worker.db.get().await.map(|_| ()) }
    });
    let mut saturated = false;
    for _ in 0..50 {
        saturated = state.foreground_saturated();
        if saturated {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(saturated);
    drop(held);
    waits.await.unwrap().unwrap();
    assert!(!state.foreground_saturated());
}
