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

use crate::config::{Config, Environment};
use crate::error::{ApiError, extractors};
use crate::metrics::RecordMetrics;
use crate::openapi::{self, OpenApiJson};
use crate::state::AppState;
use crate::{
    auth, badges, db, email, events, maintenance, ops, programme, registrations, telemetry, users,
};

/// Every documented route of the API. The OpenAPI document is collected from this too.
pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(ops::routes)
        .service(openapi::openapi_json)
        .service(
            scope::scope("/api/v1")
                .configure(auth::routes)
                .configure(users::routes)
                .configure(events::routes)
                .configure(programme::routes)
                .configure(registrations::routes)
                .configure(badges::routes),
        );
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Creates the database if needed, applies migrations, and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let url = config.database_url.expose_secret().to_owned();
        db::ensure_database(&url).await?;
        let applied = db::migrate(&url, db::MigrationAction::Run).await?;
        if applied > 0 {
            tracing::info!(applied, "database migrated");
        }
        email::bring_to_rule(&url).await?;
        let listener =
            TcpListener::bind(&config.bind).with_context(|| format!("binding {}", config.bind))?;
        let port = listener.local_addr()?.port();
        let server = serve(config, listener)?;
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT (or a stop through the server handle); in-flight
    /// requests are completed first.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

/// The secret that signs tokens: required in production, generated in development.
fn jwt_secret(config: &Config) -> anyhow::Result<SecretString> {
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

fn serve(config: Config, listener: TcpListener) -> anyhow::Result<Server> {
    let secret = jwt_secret(&config)?;
    // One connection for housekeeping on the main runtime; each worker gets its own share of
    // the rest of REGISTRAR_DB_POOL_SIZE (see `AppState`).
    let pool = db::pool(config.database_url.expose_secret(), 1, config.db_timeout())?;
    auth::password::warm_up();
    let document = openapi::document();
    let route_table = web::Data::new(RouteTable::from_document(&document));
    let openapi_json = web::Data::new(OpenApiJson(openapi::to_json(&document)));
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let client_timeout = Duration::from_millis(config.client_timeout_ms);
    let per_worker = (config.db_pool_size.saturating_sub(1) / workers).max(1);
    // Checks the pool settings once, so that building a worker's pool cannot fail later.
    db::pool(
        config.database_url.expose_secret(),
        per_worker,
        config.db_timeout(),
    )?;
    let shared = AppState::new(config, pool, secret);
    maintenance::spawn(Arc::new(shared.clone()));

    let server = HttpServer::new(move || {
        let state = web::Data::new(
            shared
                .with_own_pool(per_worker)
                .expect("the pool settings were checked at start-up"),
        );
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
            .wrap_fn(|req, srv| {
                let docs = req.path().starts_with("/docs");
                let request_id = req.extensions().get::<RequestId>().copied();
                let response = srv.call(req);
                async move {
                    let mut response = response.await?;
                    set_common_headers(response.headers_mut(), docs, request_id);
                    Ok(response)
                }
            })
            .wrap(RecordMetrics)
            .wrap(cors(&state.config))
            .wrap(TracingLogger::<telemetry::RequestSpan>::new())
    })
    .workers(workers)
    .client_request_timeout(client_timeout)
    .client_disconnect_timeout(Duration::from_secs(1))
    .keep_alive(Duration::from_secs(75))
    .shutdown_timeout(30)
    .listen(listener)?
    .run();
    Ok(server)
}

fn set_common_headers(
    headers: &mut actix_web::http::header::HeaderMap,
    docs: bool,
    request_id: Option<RequestId>,
) {
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id.to_string()).ok()) {
        headers.insert(header::HeaderName::from_static("x-request-id"), id);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let policy = if docs {
        // Swagger UI: its own scripts and styles only (served from this binary), nothing
        // from elsewhere.
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'none'"
    } else {
        "default-src 'none'; frame-ancestors 'none'"
    };
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
}

/// CORS for third-party frontends: only the configured origins, never a wildcard.
fn cors(config: &Config) -> Cors {
    let mut cors = Cors::default()
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
