//! Spawning the application against a fresh database, and small request helpers.

use std::sync::OnceLock;

use registrar::config::Config;
use registrar::db::{self, MigrationAction};
use registrar::startup::Application;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::sync::OnceCell;
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "admin@example.org";
pub const PASSWORD: &str = "correct horse battery staple";
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// The server's base URL, read from `DATABASE_URL` (default: the local PostgreSQL).
fn server_url() -> String {
    let url = Config::from_env().database_url.expose_secret().to_owned();
    // Keep everything up to the database name.
    match url.rfind('/') {
        Some(slash) if url[..slash].contains("://") && url[..slash].len() > "postgres://".len() => {
            url[..slash].to_owned()
        }
        _ => url,
    }
}

fn template_name() -> String {
    // A template per set of migrations, so a changed migration never reuses a stale one.
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut entries: Vec<_> = walk(&dir);
    entries.sort();
    for path in entries {
        path.hash(&mut hasher);
        std::fs::read(&path).unwrap().hash(&mut hasher);
    }
    format!("registrar_test_template_{:016x}", hasher.finish())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

async fn maintenance() -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&format!("{}/postgres", server_url()), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL must be reachable at DATABASE_URL for the tests");
    tokio::spawn(connection);
    client
}

/// Creates the migrated template once per process (and once across processes: the
/// advisory lock serialises concurrent test runs).
async fn template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = template_name();
            let client = maintenance().await;
            client
                .execute("SELECT pg_advisory_lock(7235)", &[])
                .await
                .unwrap();
            let exists = client
                .query_opt(
                    "SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate",
                    &[&name],
                )
                .await
                .unwrap()
                .is_some();
            if !exists {
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .unwrap();
                client
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                db::migrate(&format!("{}/{name}", server_url()), MigrationAction::Run)
                    .await
                    .expect("migrating the template database");
                client
                    .batch_execute(&format!("ALTER DATABASE {name} IS_TEMPLATE true"))
                    .await
                    .unwrap();
            }
            client
                .execute("SELECT pg_advisory_unlock(7235)", &[])
                .await
                .unwrap();
            name
        })
        .await
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
    /// Dropped with this value (false for a second handle on another's database).
    owned: bool,
}

impl TestDb {
    pub async fn new() -> Self {
        // Before any HTTP client of the tests is made.
        registrar::startup::install_tls_provider();
        let template = template().await;
        let name = format!("registrar_test_{}", Uuid::new_v4().simple());
        maintenance()
            .await
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .expect("creating a test database");
        let url = format!("{}/{name}", server_url());
        TestDb {
            name,
            url,
            owned: true,
        }
    }

    /// An empty database of its own, with no migration applied (to migrate step by step).
    pub async fn empty() -> Self {
        registrar::startup::install_tls_provider();
        let name = format!("registrar_test_{}", Uuid::new_v4().simple());
        maintenance()
            .await
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .await
            .expect("creating an empty test database");
        let url = format!("{}/{name}", server_url());
        TestDb {
            name,
            url,
            owned: true,
        }
    }

    /// A name for a database that does not exist yet (the service is to create it); dropped
    /// when the test ends, if it was created.
    pub fn not_created() -> Self {
        let name = format!("registrar_test_{}", Uuid::new_v4().simple());
        let url = format!("{}/{name}", server_url());
        TestDb {
            name,
            url,
            owned: true,
        }
    }

    /// A plain connection, for arranging or inspecting state behind the API.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a thread of its own to block on.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let _ = maintenance()
                        .await
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                });
        })
        .join();
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    // Declared last: dropped after the server stops.
    pub db: TestDb,
}

pub fn test_config(db: &TestDb) -> Config {
    let mut config = Config::from_env();
    config.database_url = db.url.clone().into();
    config.bind = "127.0.0.1:0".into();
    config.jwt_secret = Some(JWT_SECRET.into());
    config.workers = 1;
    config.db_pool_size = 8;
    // Many tests run at once on a small machine: waiting a while for a connection is not a
    // failure of the service under test.
    config.db_timeout_ms = 30_000;
    // Nor is a saturated pool of two a rush to give way to: background work never waits here
    // (`runner` and `operations` test the waiting).
    config.background_yield_ms = 0;
    config.login_rate_limit = 0;
    config.login_account_limit = 0;
    config.registration_rate_limit = 0;
    config.resend_rate_limit = 0;
    config.resend_email_limit = 0;
    config.cors_origins = vec!["https://portal.example.org".into()];
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on(TestDb::new().await, configure).await
}

/// The application on `db` as it is (it applies the migrations still pending, as at start-up).
pub async fn spawn_app_on(db: TestDb, configure: impl FnOnce(&mut Config)) -> TestApp {
    init_logs();
    let mut config = test_config(&db);
    configure(&mut config);
    let app = Application::build(config).await.expect("building the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    // The server stops when the test's runtime drops this task.
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        db,
    }
}

fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            registrar::telemetry::init(registrar::config::LogFormat::Text);
        }
    });
}

/// An answer, with its body read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    /// The body as text (binary bodies: lossily; see `bytes`).
    pub text: String,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json answer with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        let body = self.json();
        assert_eq!(body["code"], code, "{}", self.text);
        assert_eq!(body["status"], status);
        assert!(
            body["title"].is_string() && body["detail"].is_string() && body["type"].is_string()
        );
        body
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        self
    }
}

/// Sends a request built with any client, and checks its answer as [`Call::send`] does; an
/// error only when no answer came (the connection failed).
pub async fn send_checked(builder: reqwest::RequestBuilder) -> reqwest::Result<Answer> {
    let (client, request) = builder.build_split();
    let request = request?;
    let (method, url) = (request.method().clone(), request.url().clone());
    let response = client.execute(request).await?;
    Ok(checked(&method, &url, response).await)
}

/// Reads an answer to `method` `url` and checks it against the OpenAPI document
/// (`crate::contract`), failing the test on a mismatch.
pub async fn checked(method: &Method, url: &reqwest::Url, response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("the body was read").to_vec();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    if let Err(mismatch) = crate::contract::check(method, &path, status, &headers, &text) {
        panic!("the answer does not match the OpenAPI document: {mismatch}");
    }
    Answer {
        status,
        headers,
        text,
        bytes,
    }
}

/// A request being built.
pub struct Call {
    builder: reqwest::RequestBuilder,
}

impl Call {
    pub fn bearer(mut self, token: &str) -> Self {
        self.builder = self.builder.bearer_auth(token);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.builder = self.builder.json(body);
        self
    }

    pub fn body(mut self, content_type: &str, body: impl Into<reqwest::Body>) -> Self {
        self.builder = self.builder.header("content-type", content_type).body(body);
        self
    }

    /// Sends the request and reads the answer, which must match the OpenAPI document
    /// (`crate::contract`): a mismatch fails the test here.
    pub async fn send(self) -> Answer {
        send_checked(self.builder)
            .await
            .expect("the request was sent")
    }
}

impl TestApp {
    pub fn call(&self, method: Method, path: &str) -> Call {
        Call {
            builder: self
                .client
                .request(method, format!("{}{path}", self.address)),
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut call = self.call(Method::GET, path);
        if let Some(token) = token {
            call = call.bearer(token);
        }
        call.send().await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        let mut call = self.call(Method::POST, path).json(body);
        if let Some(token) = token {
            call = call.bearer(token);
        }
        call.send().await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        let mut call = self.call(Method::PATCH, path).json(body);
        if let Some(token) = token {
            call = call.bearer(token);
        }
        call.send().await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        let mut call = self.call(Method::PUT, path).json(body);
        if let Some(token) = token {
            call = call.bearer(token);
        }
        call.send().await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Answer {
        let mut call = self.call(Method::DELETE, path);
        if let Some(token) = token {
            call = call.bearer(token);
        }
        call.send().await
    }

    /// Creates an admin straight in the database (as `registrar create-admin` does).
    pub async fn create_admin(&self, email: &str) -> Uuid {
        use diesel_async::AsyncConnection;
        let mut conn = diesel_async::AsyncPgConnection::establish(&self.db.url)
            .await
            .unwrap();
        registrar::users::create_admin(&mut conn, email, "Администратор", PASSWORD.into())
            .await
            .unwrap()
            .id
    }

    pub async fn login(&self, email: &str, password: &str) -> Answer {
        self.post(
            "/api/v1/auth/login",
            None,
            &serde_json::json!({"email": email, "password": password}),
        )
        .await
    }

    /// Tokens of a fresh admin.
    pub async fn admin(&self) -> Tokens {
        self.create_admin(ADMIN_EMAIL).await;
        Tokens::from(self.login(ADMIN_EMAIL, PASSWORD).await.assert_status(200))
    }

    /// A new organiser account (created by a new or existing admin), logged in.
    pub async fn organiser(&self, admin: &Tokens, email: &str) -> (Uuid, Tokens) {
        let created = self
            .post(
                "/api/v1/users",
                Some(&admin.access),
                &serde_json::json!({
                    "email": email, "display_name": "Организатор", "password": PASSWORD
                }),
            )
            .await;
        created.assert_status(201);
        let id = created.json()["id"].as_str().unwrap().parse().unwrap();
        let tokens = Tokens::from(self.login(email, PASSWORD).await.assert_status(200));
        (id, tokens)
    }
}

/// The API of a service started elsewhere (its own process) on `db`, which the caller keeps.
pub fn served_at(address: &str, db: &TestDb) -> TestApp {
    TestApp {
        address: address.to_owned(),
        client: reqwest::Client::new(),
        db: TestDb {
            name: db.name.clone(),
            url: db.url.clone(),
            owned: false,
        },
    }
}

/// Another instance of the service on the test's database (it runs the start-up steps again).
pub async fn another_instance(app: &TestApp) -> TestApp {
    another_instance_with(app, |_| {}).await
}

/// Another instance, configured further by `configure`.
pub async fn another_instance_with(app: &TestApp, configure: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb {
        name: app.db.name.clone(),
        url: app.db.url.clone(),
        // The first instance's handle drops it.
        owned: false,
    };
    let mut config = test_config(&db);
    configure(&mut config);
    let application = Application::build(config)
        .await
        .expect("building another instance");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        client: app.client.clone(),
        db,
    }
}

#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

impl From<&Answer> for Tokens {
    fn from(answer: &Answer) -> Self {
        let body = answer.json();
        Tokens {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// Fixtures for the programme and registrations.
impl TestApp {
    /// Creates a published event (`slug`) five days long in Europe/Moscow, a year from now;
    /// `extra` fields override the defaults.
    pub async fn event(&self, token: &str, slug: &str, extra: Value) -> Value {
        let mut body = serde_json::json!({
            "slug": slug,
            "title": "VII Мурманская международная деловая неделя",
            "time_zone": "Europe/Moscow",
            "starts_on": EVENT_FIRST_DAY,
            "ends_on": EVENT_LAST_DAY,
            "city": "Мурманск",
            "status": "published",
        });
        merge(&mut body, extra);
        let answer = self.post("/api/v1/events", Some(token), &body).await;
        answer.assert_status(201);
        answer.json()
    }

    /// Creates a published session in `event` on its last day, 11:00–13:00 Moscow time.
    pub async fn session(&self, token: &str, event: &str, extra: Value) -> Value {
        let mut body = serde_json::json!({
            "title": "Социальное партнёрство. Социальное проектирование",
            "kind": "business_session",
            "starts_at": format!("{EVENT_LAST_DAY}T11:00:00+03:00"),
            "ends_at": format!("{EVENT_LAST_DAY}T13:00:00+03:00"),
            "status": "published",
        });
        merge(&mut body, extra);
        let answer = self
            .post(
                &format!("/api/v1/events/{event}/sessions"),
                Some(token),
                &body,
            )
            .await;
        answer.assert_status(201);
        answer.json()
    }

    /// A public registration for `event` (`email` must be unique per test).
    pub async fn register(&self, event: &str, email: &str, session_ids: &[&str]) -> Answer {
        self.post(
            &format!("/api/v1/events/{event}/registrations"),
            None,
            &registration_body(email, session_ids),
        )
        .await
    }
}

pub const EVENT_FIRST_DAY: &str = "2027-04-20";
pub const EVENT_LAST_DAY: &str = "2027-04-24";

pub fn registration_body(email: &str, session_ids: &[&str]) -> Value {
    serde_json::json!({
        "full_name": "Анна Сергеевна Иванова",
        "email": email,
        "organisation": "АНО «Городские события»",
        "position": "Координатор волонтёров",
        "city": "Мончегорск",
        "category": "nonprofit",
        "consent": true,
        "session_ids": session_ids,
    })
}

/// Shallow merge of `extra`'s fields into `body`.
pub fn merge(body: &mut Value, extra: Value) {
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        for (key, value) in extra {
            body.insert(key, value);
        }
    }
}

/// Returns once some session of the test's database waits for a lock.
pub async fn lock_wait(observer: &tokio_postgres::Client) {
    loop {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE NOT l.granted AND a.datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The first column of the rows `sql` selects.
pub async fn column<T: tokio_postgres::types::FromSqlOwned>(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<T> {
    client
        .query(sql, params)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Deadlocks PostgreSQL detected in the test's database. Every other connection to it is
/// closed first, the service's too: a server process reports its counts when it exits, and
/// otherwise up to ten seconds late. Connections opened afterwards have nothing to report.
pub async fn deadlocks(db: &TestDb) -> i64 {
    let client = db.client().await;
    let closed: Vec<i32> = column(
        &client,
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
        &[],
    )
    .await;
    loop {
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                &[&closed],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A process leaves the list just before it writes its counts.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    client
        .query_one(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A device key of `event` with `scopes`.
pub async fn device_key(app: &TestApp, token: &str, event: &str, scopes: &[&str]) -> String {
    let answer = app
        .post(
            &format!("/api/v1/events/{event}/api-keys"),
            Some(token),
            &serde_json::json!({"name": "Стойка регистрации", "scopes": scopes}),
        )
        .await;
    answer.assert_status(201);
    answer.json()["key"].as_str().unwrap().to_owned()
}

/// The signed QR payload of `registration` as the attendee feed gives it to devices (read as
/// the organiser `token`), once the feed shows it.
pub async fn qr_code(app: &TestApp, token: &str, event: &str, registration: &str) -> String {
    loop {
        let feed = app
            .get(
                &format!("/api/v1/events/{event}/attendees?limit=1000"),
                Some(token),
            )
            .await
            .json();
        if let Some(record) = feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["registration_id"] == registration)
        {
            return record["qr_code"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `EXPLAIN ANALYZE` of `sql`, in a transaction rolled back afterwards.
pub async fn explained(client: &tokio_postgres::Client, sql: &str) -> String {
    client.batch_execute("BEGIN").await.unwrap();
    let plan = client
        .query(&format!("EXPLAIN ANALYZE {sql}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|line| line.get::<_, String>(0) + "\n")
        .collect();
    client.batch_execute("ROLLBACK").await.unwrap();
    plan
}

/// The plan read no more than a few rows only to throw them away.
pub fn assert_reads_few(plan: &str) {
    for line in plan.lines() {
        if let Some((_, removed)) = line.split_once("Rows Removed by ") {
            let removed: u64 = removed.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(removed < 1_000, "{plan}");
        }
    }
}

/// The rows a plan's scans of `table` returned, over all their loops.
pub fn rows_scanned(plan: &str, table: &str) -> u64 {
    plan.lines()
        .filter(|line| line.contains(&format!(" on {table} ")))
        .filter_map(|line| {
            let actual = line.split_once("(actual ")?.1;
            let rows: u64 = actual
                .split_once("rows=")?
                .1
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            let loops: u64 = actual
                .split_once("loops=")?
                .1
                .trim_end_matches(')')
                .parse()
                .ok()?;
            Some(rows * loops)
        })
        .sum()
}

/// Adds `count` active registrations of the event `event_id` straight in the database (names
/// `Участник 1`…, addresses `{prefix}1@example.org`…), for tests of plans on many rows.
pub async fn bulk_registrations(
    client: &tokio_postgres::Client,
    event_id: &str,
    prefix: &str,
    count: i32,
) {
    client
        .execute(
            "INSERT INTO registrations (id, event_id, full_name, email, email_normalized, \
                 category, status, source, manage_token_hash, consent_at) \
             SELECT gen_random_uuid(), $1::text::uuid, 'Участник ' || g, \
                 $2 || g || '@example.org', $2 || g || '@example.org', 'business', 'active', \
                 'public', sha256(convert_to($2 || g, 'UTF8')), now() \
             FROM generate_series(1, $3) AS g",
            &[&event_id, &prefix, &count],
        )
        .await
        .unwrap();
}
