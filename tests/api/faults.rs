//! Faults survived: PostgreSQL restarting under load, and SIGTERM under load. Nothing that
//! was answered 201 may be lost.
//!
//! The restart test runs its own PostgreSQL cluster (initdb into a temporary directory, on a
//! free port), so that restarting it disturbs no other test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Mutex;

use crate::helpers::{JWT_SECRET, PASSWORD, TestDb, registration_body, send_checked, test_config};

/// A PostgreSQL cluster of this test's own.
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

fn postgres_bin() -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut candidates: Vec<PathBuf> = from_pg_config.into_iter().collect();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        candidates.extend(versions.into_iter().rev());
    }
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
        .expect("the PostgreSQL server programs (initdb, pg_ctl) are needed for the fault tests")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

impl Cluster {
    /// Runs a PostgreSQL program, as the `postgres` user when the tests run as root (the
    /// server refuses to run as root).
    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let path = self.bin.join(program);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .output()
            .expect("running a PostgreSQL program");
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn start_new() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("registrar-fault-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            Command::new("chown")
                .args(["postgres:", dir.to_str().unwrap()])
                .status()
                .unwrap();
        }
        let cluster = Cluster {
            dir,
            bin: postgres_bin(),
            port,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-N",
                "-E",
                "UTF8",
            ],
        );
        cluster.start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").to_str().unwrap().to_owned()
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").to_str().unwrap().to_owned();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    /// Kills the server the way a crash would: committed work survives through the WAL.
    fn crash(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(if is_root() { "runuser" } else { "true" })
            .args(if is_root() {
                vec!["-u", "postgres", "--"]
            } else {
                vec![]
            })
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(Path::new(&self.dir));
    }
}

/// Sends registrations one after another from `clients` tasks until `stop`, noting every
/// id answered 201 and every other status.
struct Load {
    created: Arc<Mutex<Vec<String>>>,
    statuses: Arc<Mutex<Vec<(u16, String)>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(address: &str, event: &str, session: &str, clients: usize) -> Self {
        let created = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|client| {
                let (created, statuses, stop) = (created.clone(), statuses.clone(), stop.clone());
                let url = format!("{address}/api/v1/events/{event}/registrations");
                let session = session.to_owned();
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let body =
                            registration_body(&format!("c{client}-{n}@example.org"), &[&session]);
                        let Ok(answer) = send_checked(http.post(&url).json(&body)).await else {
                            // Connection refused while the service is stopping: not an answer.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        };
                        let (status, text) = (answer.status.as_u16(), answer.text);
                        if status == 201 {
                            let id =
                                serde_json::from_str::<serde_json::Value>(&text).unwrap()["id"]
                                    .as_str()
                                    .unwrap()
                                    .to_owned();
                            created.lock().await.push(id);
                        } else {
                            statuses.lock().await.push((status, text));
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            created,
            statuses,
            stop,
            tasks,
        }
    }

    async fn created(&self) -> usize {
        self.created.lock().await.len()
    }

    async fn wait_for_created(&self, at_least: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.created().await < at_least {
            assert!(
                Instant::now() < deadline,
                "only {} registrations got through",
                self.created().await
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> (Vec<String>, Vec<(u16, String)>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let created = self.created.lock().await.clone();
        let statuses = self.statuses.lock().await.clone();
        (created, statuses)
    }
}

async fn registrations_in(url: &str) -> Vec<String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query("SELECT id::text FROM registrations", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// An admin, a published event `a` with a session, on the service at `address`.
async fn arrange(address: &str, db_url: &str) -> String {
    use diesel_async::AsyncConnection;
    let mut conn = diesel_async::AsyncPgConnection::establish(db_url)
        .await
        .unwrap();
    registrar::users::create_admin(&mut conn, "admin@example.org", "Admin", PASSWORD.into())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let login = send_checked(
        http.post(format!("{address}/api/v1/auth/login"))
            .json(&json!({"email": "admin@example.org", "password": PASSWORD})),
    )
    .await
    .unwrap()
    .json();
    let token = login["access_token"].as_str().unwrap();
    let event = json!({"slug": "a", "title": "Событие", "time_zone": "Europe/Moscow",
        "starts_on": "2027-04-20", "ends_on": "2027-04-24", "status": "published"});
    send_checked(
        http.post(format!("{address}/api/v1/events"))
            .bearer_auth(token)
            .json(&event),
    )
    .await
    .unwrap()
    .assert_status(201);
    let session = json!({"title": "Сессия", "kind": "workshop", "capacity": 100000, "status": "published",
        "starts_at": "2027-04-24T11:00:00+03:00", "ends_at": "2027-04-24T13:00:00+03:00"});
    let session = send_checked(
        http.post(format!("{address}/api/v1/events/a/sessions"))
            .bearer_auth(token)
            .json(&session),
    )
    .await
    .unwrap()
    .json();
    session["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_database_restart_under_load_loses_nothing_and_heals_itself() {
    let cluster = Cluster::start_new();
    let db_url = cluster.url("registrar");
    let mut config = registrar::config::Config::from_env();
    config.database_url = db_url.clone().into();
    config.bind = "127.0.0.1:0".into();
    config.jwt_secret = Some(JWT_SECRET.into());
    config.workers = 1;
    config.db_pool_size = 8;
    config.db_timeout_ms = 1000;
    config.registration_rate_limit = 0;
    let app = registrar::startup::Application::build(config)
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let session = arrange(&address, &db_url).await;
    let load = Load::start(&address, "a", &session, 4);
    load.wait_for_created(20).await;

    cluster.crash();
    // While the database is away, the service says so.
    let http = reqwest::Client::new();
    let away = send_checked(http.get(format!("{address}/readyz")))
        .await
        .unwrap();
    away.assert_problem(503, "database_unavailable");
    let before_restart = load.created().await;
    cluster.start();
    let restarted = Instant::now();
    loop {
        let ready = send_checked(http.get(format!("{address}/readyz")))
            .await
            .unwrap();
        if ready.status.is_success() {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "not ready 10 s after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    load.wait_for_created(before_restart + 20).await;
    let (created, statuses) = load.finish().await;

    let stored = registrations_in(&db_url).await;
    let lost: Vec<&String> = created.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "answered 201 but not stored: {lost:?}");
    for (status, body) in &statuses {
        assert_eq!(*status, 503, "{body}");
        assert!(
            body.contains("\"code\":\"database_unavailable\"")
                || body.contains("\"code\":\"concurrent_request\""),
            "{body}"
        );
    }
}

#[tokio::test]
async fn sigterm_under_load_completes_what_was_accepted() {
    let db = TestDb::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = test_config(&db);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .env("DATABASE_URL", &db.url)
        .env("REGISTRAR_BIND", format!("127.0.0.1:{port}"))
        .env("REGISTRAR_JWT_SECRET", JWT_SECRET)
        .env("REGISTRAR_REGISTRATION_RATE_LIMIT", "0")
        .env("REGISTRAR_LOGIN_RATE_LIMIT", "0")
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let address = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http.get(format!("{address}/readyz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the service did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let session = arrange(&address, &config_url(&config)).await;
    let load = Load::start(&address, "a", &session, 8);
    load.wait_for_created(30).await;

    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the service stops after SIGTERM")
        .unwrap();
    let (created, statuses) = load.finish().await;

    assert!(exit.success(), "{exit:?}");
    let stored = registrations_in(&db.url).await;
    let lost: Vec<&String> = created.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "answered 201 but not stored: {lost:?}");
    assert!(
        statuses.iter().all(|(status, _)| *status < 500),
        "{statuses:?}"
    );
}

fn config_url(config: &registrar::config::Config) -> String {
    use secrecy::ExposeSecret;
    config.database_url.expose_secret().to_owned()
}
