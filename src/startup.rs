//! Building and running the HTTP application; `main` and the tests share this code.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::{Server, Service};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{App, HttpMessage, HttpRequest, HttpServer, web};
use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tracing_actix_web::{RequestId, TracingLogger};
use utoipa_actix_web::{AppExt, scope};
use utoipa_swagger_ui::SwaggerUi;

use crate::body_deadline::BodyDeadline;
use crate::config::{Config, Environment};
use crate::error::{ApiError, extractors};
use crate::headers::CommonHeaders;
use crate::metrics::RecordMetrics;
use crate::openapi::{self, OpenApiJson};
use crate::runner::{Pace, Runner};
use crate::secrets::{self, KeyRing, SealedColumn};
use crate::state::AppState;
use crate::{
    auth, badges, db, email, events, forms, imports, maintenance, notifications, ops, privacy,
    programme, registrations, telemetry, users, widget,
};

/// Every documented route of the API. The OpenAPI document is collected from this too.
pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(ops::routes)
        .service(openapi::openapi_json)
        .configure(widget::routes)
        .service(
            scope::scope("/api/v1")
                .configure(auth::routes)
                .configure(users::routes)
                .configure(events::routes)
                .configure(programme::routes)
                .configure(forms::routes)
                .configure(registrations::routes)
                .configure(badges::routes)
                .configure(imports::routes)
                .configure(notifications::routes)
                .configure(privacy::routes),
        );
}

/// What the service sends on its own, for the OpenAPI document: the webhooks' messages.
pub fn describe_outgoing(doc: &mut utoipa::openapi::OpenApi) {
    notifications::webhooks::payloads::describe(doc);
}

/// Every column of secrets sealed at rest (see `secrets`): checked at start and sealed again
/// by `registrar reseal`.
pub const SEALED_COLUMNS: &[&SealedColumn] = &[
    &badges::qr::CHECKIN_KEY,
    &notifications::webhooks::signing::SECRET,
    &notifications::webhooks::signing::PREVIOUS_SECRET,
];

/// At start: seals secrets still stored in plain text, and checks that the configured keys
/// open what is stored.
async fn prepare_sealed_secrets(url: &str, sealing: &KeyRing) -> anyhow::Result<()> {
    use diesel_async::AsyncConnection;
    let mut conn = diesel_async::AsyncPgConnection::establish(url)
        .await
        .context("connecting to the database")?;
    secrets::prepare(&mut conn, sealing, SEALED_COLUMNS)
        .await
        .context("checking the secrets stored in the database against REGISTRAR_ENCRYPTION_KEYS")
}

/// `registrar reseal`: seals every stored secret again with the first key of
/// `REGISTRAR_ENCRYPTION_KEYS`; returns how many were sealed again.
pub async fn reseal_secrets(config: &Config) -> anyhow::Result<usize> {
    use diesel_async::AsyncConnection;
    let url = config.database_url.expose_secret();
    db::ensure_database(url).await?;
    db::migrate(url, db::MigrationAction::Run).await?;
    let sealing = KeyRing::from_config(config)?;
    let mut conn = diesel_async::AsyncPgConnection::establish(url)
        .await
        .context("connecting to the database")?;
    secrets::reseal(&mut conn, &sealing, SEALED_COLUMNS).await
}

/// Makes `ring` the process's TLS crypto provider: the only one compiled in (see the webhooks'
/// sender), and the one any HTTP client of the process then uses. Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub struct Application {
    port: u16,
    server: Server,
    runner: Runner,
}

impl Application {
    /// Creates the database if needed, applies migrations, and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        install_tls_provider();
        // Before anything else, so that a configuration refused does not touch the database.
        let secret = jwt_secret(&config)?;
        let sealing = KeyRing::from_config(&config)?;
        let url = config.database_url.expose_secret().to_owned();
        db::ensure_database(&url).await?;
        let applied = db::migrate(&url, db::MigrationAction::Run).await?;
        if applied > 0 {
            tracing::info!(applied, "database migrated");
        }
        email::bring_to_rule(&url).await?;
        prepare_sealed_secrets(&url, &sealing).await?;
        let listener =
            TcpListener::bind(&config.bind).with_context(|| format!("binding {}", config.bind))?;
        let port = listener.local_addr()?.port();
        let (server, runner) = serve(config, listener, secret, sealing)?;
        Ok(Self {
            port,
            server,
            runner,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT (or a stop through the server handle); in-flight
    /// requests are completed first, then the background work stops.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.runner.shutdown(Duration::from_secs(30)).await;
        served
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

/// Secrets published with the project (docker-compose.yml's trial default): anyone can sign
/// tokens with them.
const SAMPLE_SECRETS: &[&str] = &["compose-trial-secret-replace-me-0123456789abcdef"];

/// The secret that signs tokens: required in production (and not a published sample),
/// generated in development.
fn jwt_secret(config: &Config) -> anyhow::Result<SecretString> {
    let sample = config
        .jwt_secret
        .as_ref()
        .is_some_and(|secret| SAMPLE_SECRETS.contains(&secret.expose_secret()));
    match (config.environment, sample) {
        (Environment::Production, true) => anyhow::bail!(
            "REGISTRAR_JWT_SECRET is the sample secret published in docker-compose.yml, with \
             which anyone can sign tokens; set a secret of your own for production (at least \
             32 random characters, e.g. `openssl rand -base64 48`)"
        ),
        (Environment::Development, true) => {
            tracing::warn!(
                "REGISTRAR_JWT_SECRET is the published sample secret: fine for a trial, never \
                 for real data (production refuses it)"
            );
        }
        _ => {}
    }
    match (&config.jwt_secret, config.environment) {
        (Some(secret), _) if secret.expose_secret().len() >= 32 => Ok(secret.clone()),
        (Some(_), Environment::Production) => {
            anyhow::bail!("REGISTRAR_JWT_SECRET must be at least 32 characters in production")
        }
        (Some(secret), Environment::Development) => {
            tracing::warn!("REGISTRAR_JWT_SECRET is shorter than 32 characters");
            Ok(secret.clone())
        }
        (None, Environment::Production) => anyhow::bail!(
            "REGISTRAR_JWT_SECRET is not set; it is required when REGISTRAR_ENV=production \
             (use at least 32 random characters, e.g. `openssl rand -base64 48`)"
        ),
        (None, Environment::Development) => {
            tracing::warn!(
                "REGISTRAR_JWT_SECRET is not set: using a random secret for this process; \
                 tokens will not survive a restart or work across instances"
            );
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            Ok(hex::encode(bytes).into())
        }
    }
}

/// Connections of REGISTRAR_DB_POOL_SIZE kept for background work (on the main runtime);
/// each HTTP worker gets its own share of the rest (see `AppState`).
const BACKGROUND_CONNECTIONS: usize = 6;

fn serve(
    config: Config,
    listener: TcpListener,
    secret: SecretString,
    sealing: KeyRing,
) -> anyhow::Result<(Server, Runner)> {
    let pool = db::pool(
        config.database_url.expose_secret(),
        BACKGROUND_CONNECTIONS,
        config.db_timeout(),
    )?;
    auth::password::warm_up();
    let document = openapi::document();
    let route_table = web::Data::new(RouteTable::from_document(&document));
    let openapi_json = web::Data::new(OpenApiJson(openapi::to_json(&document)));
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let client_timeout = Duration::from_millis(config.client_timeout_ms);
    let send_timeout = Duration::from_millis(config.send_timeout_ms);
    let per_worker = (config.db_pool_size.saturating_sub(BACKGROUND_CONNECTIONS) / workers).max(1);
    // Checks the pool settings once, so that building a worker's pool cannot fail later.
    db::pool(
        config.database_url.expose_secret(),
        per_worker,
        config.db_timeout(),
    )?;
    let shared = AppState::new(config, pool, secret, sealing);
    let mut runner = Runner::new();
    let foreground = shared.clone();
    runner.give_way(Pace::new(
        move || foreground.foreground_saturated(),
        Duration::from_millis(shared.config.background_yield_ms),
    ));
    runner.spawn(shared.signals.clone().run(
        shared.config.database_url.expose_secret().to_owned(),
        runner.stopping(),
    ));
    runner.spawn(shared.clone().forget_what_others_changed(runner.stopping()));
    maintenance::start(&mut runner, shared.clone());
    notifications::start(&mut runner, &shared)?;
    privacy::start(&mut runner, shared.clone());
    imports::start(&mut runner, &shared);

    let server = HttpServer::new(move || {
        let state = web::Data::new(
            shared
                .with_own_pool(per_worker)
                .expect("the pool settings were checked at start-up"),
        );
        let common_headers = CommonHeaders::new(&state.config);
        let (app, _) = App::new()
            .into_utoipa_app()
            .configure(routes)
            .split_for_parts();
        app.app_data(state.clone())
            .app_data(openapi_json.clone())
            .app_data(route_table.clone())
            .app_data(web::PathConfig::default().error_handler(extractors::path))
            .app_data(web::PayloadConfig::default().limit(state.config.max_body_bytes))
            .service(
                SwaggerUi::new("/docs/{_:.*}")
                    .config(utoipa_swagger_ui::Config::new(["/api/openapi.json"])),
            )
            .service(web::redirect("/docs", "/docs/"))
            .default_service(web::to(fallback))
            .wrap(BodyDeadline::new(Duration::from_millis(
                state.config.body_timeout_ms,
            )))
            // Outside CORS, so that what CORS answers itself (preflights, refusals) carries
            // the same headers as everything else.
            .wrap(cors(&state.config))
            .wrap_fn(move |req, srv| {
                let request_id = req.extensions().get::<RequestId>().copied();
                // A write may have committed changes: wake the change log's consumers.
                let signals =
                    (!matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS))
                        .then(|| {
                            req.app_data::<web::Data<AppState>>()
                                .map(|s| s.signals.clone())
                        })
                        .flatten();
                let response = srv.call(req);
                let headers = common_headers.clone();
                async move {
                    let response = response.await?;
                    if let Some(signals) = signals
                        && !response.status().is_server_error()
                    {
                        signals.committed();
                    }
                    Ok(headers.finish(response, request_id))
                }
            })
            .wrap(RecordMetrics(Arc::clone(&state.metrics)))
            .wrap(TracingLogger::<telemetry::RequestSpan>::new())
    })
    .on_connect(move |connection, _| close_when_stalled(connection, send_timeout))
    .workers(workers)
    .client_request_timeout(client_timeout)
    .client_disconnect_timeout(Duration::from_secs(1))
    .keep_alive(Duration::from_secs(75))
    .shutdown_timeout(30)
    .listen(listener)?
    .run();
    Ok((server, runner))
}

/// Has the kernel close a connection whose client has taken none of what was sent to it for
/// `timeout` (`TCP_USER_TIMEOUT`, which also covers a receive window that stays closed):
/// actix-web has no write timeout, and a client that stops reading would otherwise keep its
/// connection, and the answer buffered for it, for as long as it likes.
fn close_when_stalled(connection: &dyn std::any::Any, timeout: Duration) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>()
        && let Err(error) = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(timeout))
    {
        tracing::warn!(%error, "could not set the connection's send timeout");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (connection, timeout);
}

/// CORS for third-party frontends: only the configured origins, never a wildcard. The
/// widget's script is public, so any page may load it with CORS (`<script integrity
/// crossorigin>`); what the widget then asks of the API is held to the configured origins.
fn cors(config: &Config) -> Cors {
    let mut cors = Cors::default()
        .allowed_origin_fn(|_, request| request.uri.path().starts_with(widget::PREFIX))
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            header::RETRY_AFTER,
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("idempotent-replayed"),
            header::HeaderName::from_static("badge-count"),
        ])
        .max_age(3600);
    for origin in config
        .cors_origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
    {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// The documented routes, to tell an unknown path (404) from a wrong method (405).
pub struct RouteTable(Vec<(actix_web::dev::ResourceDef, Vec<Method>)>);

impl RouteTable {
    pub fn from_document(doc: &utoipa::openapi::OpenApi) -> Self {
        let routes = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    (Method::GET, item.get.is_some()),
                    (Method::POST, item.post.is_some()),
                    (Method::PUT, item.put.is_some()),
                    (Method::PATCH, item.patch.is_some()),
                    (Method::DELETE, item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(method, present)| present.then_some(method))
                .collect();
                (actix_web::dev::ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        RouteTable(routes)
    }

    fn allowed(&self, path: &str) -> Vec<Method> {
        self.0
            .iter()
            .filter(|(def, _)| def.is_match(path))
            .flat_map(|(_, methods)| methods.iter().cloned())
            .collect()
    }
}

async fn fallback(
    req: HttpRequest,
    table: web::Data<RouteTable>,
) -> Result<actix_web::HttpResponse, ApiError> {
    let allowed = table.allowed(req.path());
    if allowed.is_empty() {
        return Err(ApiError::not_found("route").with("path", req.path()));
    }
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    Err(ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed here; use {allow}", req.method()),
    )
    .with_header(
        header::ALLOW,
        HeaderValue::from_str(&allow).expect("method names are valid header text"),
    ))
}
