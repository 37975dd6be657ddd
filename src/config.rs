//! Typed configuration, read from `REGISTRAR_*` environment variables (or the matching
//! command-line flags), with defaults that work on a developer machine.

use std::time::Duration;

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

use crate::client_address::TrustedProxies;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL connection URL; the database is created when it does not exist.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/registrar",
        hide_env_values = true
    )]
    pub database_url: SecretString,

    /// Address the HTTP server listens on.
    #[arg(long, env = "REGISTRAR_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Secret that signs access tokens and derives other server keys. Required in production;
    /// generated per process (with a warning) in development.
    #[arg(long, env = "REGISTRAR_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,

    #[arg(
        long = "env",
        env = "REGISTRAR_ENV",
        value_enum,
        default_value = "development"
    )]
    pub environment: Environment,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "REGISTRAR_ACCESS_TOKEN_TTL", default_value_t = 900)]
    pub access_token_ttl_secs: u64,

    /// Lifetime of refresh tokens, in seconds.
    #[arg(long, env = "REGISTRAR_REFRESH_TOKEN_TTL", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl_secs: u64,

    /// Origins allowed to call the API from a browser, comma-separated
    /// (e.g. `https://portal.example.org,https://app.example.org`). Empty: none.
    #[arg(long, env = "REGISTRAR_CORS_ORIGINS", value_delimiter = ',', num_args = 0..)]
    pub cors_origins: Vec<String>,

    /// Log format; defaults to `json` in production and `text` otherwise.
    #[arg(long, env = "REGISTRAR_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Maximum number of database connections held by this instance.
    #[arg(long, env = "REGISTRAR_DB_POOL_SIZE", default_value_t = 32)]
    pub db_pool_size: usize,

    /// How long a request waits for a database connection before answering 503, in ms.
    #[arg(long, env = "REGISTRAR_DB_TIMEOUT_MS", default_value_t = 5000)]
    pub db_timeout_ms: u64,

    /// HTTP worker threads; 0 means one per CPU.
    #[arg(long, env = "REGISTRAR_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "REGISTRAR_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Time a client has to send the request head, in ms; slower clients get 408.
    #[arg(long, env = "REGISTRAR_CLIENT_TIMEOUT_MS", default_value_t = 5000)]
    pub client_timeout_ms: u64,

    /// Login attempts allowed per client address per minute (0 disables the limit).
    #[arg(long, env = "REGISTRAR_LOGIN_RATE_LIMIT", default_value_t = 10)]
    pub login_rate_limit: u32,

    /// Public registrations allowed per client address per minute (0 disables the limit).
    #[arg(long, env = "REGISTRAR_REGISTRATION_RATE_LIMIT", default_value_t = 30)]
    pub registration_rate_limit: u32,

    /// Failed logins allowed per account per hour, from any address (0 disables the limit).
    #[arg(long, env = "REGISTRAR_LOGIN_ACCOUNT_LIMIT", default_value_t = 20)]
    pub login_account_limit: u32,

    /// Proxies whose `X-Forwarded-For` is believed, as addresses or CIDRs, comma-separated.
    /// The client is the right-most address of the header not in this list. Empty: the
    /// header is ignored.
    #[arg(
        long,
        env = "REGISTRAR_TRUSTED_PROXIES",
        default_value = "127.0.0.0/8,::1",
        value_parser = TrustedProxies::parse
    )]
    pub trusted_proxies: TrustedProxies,

    /// Replaced by `REGISTRAR_TRUSTED_PROXIES`: setting it stops the start with an explanation.
    #[arg(
        long,
        env = "REGISTRAR_TRUST_FORWARDED_FOR",
        hide = true,
        value_parser = crate::client_address::replaced_trust_forwarded_for
    )]
    pub trust_forwarded_for: Option<bool>,

    /// Keys sealing secrets stored in the database (check-in signing keys): `id:base64`
    /// entries (32 bytes each), comma-separated; the first seals, all open. Required in
    /// production; a public development key is used otherwise.
    #[arg(long, env = "REGISTRAR_ENCRYPTION_KEYS", hide_env_values = true)]
    pub encryption_keys: Option<SecretString>,

    /// How long one instance may reuse public data it read (the rendered programme, the event
    /// and session settings and the registration form public registrations are checked
    /// against), in ms. Changes made
    /// through the instance are seen at once; 0 turns the caches off.
    #[arg(long, env = "REGISTRAR_PUBLIC_CACHE_MS", default_value_t = 2000)]
    pub public_cache_ms: u64,

    /// Bearer token `GET /metrics` requires; when unset, metrics are open to anyone who can
    /// reach the listener.
    #[arg(long, env = "REGISTRAR_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<SecretString>,

    /// `max-age` of the `Strict-Transport-Security` header, in seconds, for a service reached
    /// over HTTPS only (e.g. behind a TLS-terminating proxy); 0 sends no such header.
    #[arg(long, env = "REGISTRAR_HSTS_MAX_AGE", default_value_t = 0)]
    pub hsts_max_age: u64,

    /// Time a client has to send the request body once its head arrived, in ms; slower
    /// clients get 408.
    #[arg(long, env = "REGISTRAR_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_timeout_ms: u64,

    /// The SMTP server mail to participants goes through, as a URL:
    /// `smtps://user:password@host:465` (TLS), `smtp://user:password@host:587?tls=required`
    /// (STARTTLS), `smtp://host:25` (unencrypted: local relays and mail catchers only).
    /// Unset: email is off; mails are kept and sent once it is set.
    #[arg(long, env = "REGISTRAR_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<SecretString>,

    /// The sender of mail to participants, e.g. `Деловая неделя <noreply@example.org>`;
    /// required with `REGISTRAR_SMTP_URL`.
    #[arg(long, env = "REGISTRAR_EMAIL_FROM")]
    pub email_from: Option<String>,

    /// A directory of mail templates (`ru/registered.txt`, `en/layout.html`, ...) that
    /// replace the built-in ones of the same name.
    #[arg(long, env = "REGISTRAR_EMAIL_TEMPLATES")]
    pub email_templates: Option<std::path::PathBuf>,

    /// How many hours before a participant's first session the reminder goes out, for
    /// events that set no time of their own (0: no reminders).
    #[arg(long, env = "REGISTRAR_EMAIL_REMINDER_HOURS", default_value_t = 24)]
    pub email_reminder_hours: u32,

    /// How often, in ms, the mail rounds look for work nobody woke them for: mails due for
    /// another attempt, reminders, addresses not confirmed in time, queue figures.
    #[arg(long, env = "REGISTRAR_EMAIL_POLL_MS", default_value_t = 15_000)]
    pub email_poll_ms: u64,

    /// Requests to send a registration's link again, per client address per hour (0: no
    /// limit).
    #[arg(long, env = "REGISTRAR_RESEND_RATE_LIMIT", default_value_t = 10)]
    pub resend_rate_limit: u32,

    /// Requests to send a registration's link again, per email address per hour, from any
    /// client (0: no limit).
    #[arg(long, env = "REGISTRAR_RESEND_EMAIL_LIMIT", default_value_t = 3)]
    pub resend_email_limit: u32,

    /// How long an answer may wait for the client to read it, in ms. A client that stops
    /// reading for longer is disconnected, and a streamed export stops and frees its database
    /// connection.
    #[arg(long, env = "REGISTRAR_SEND_TIMEOUT_MS", default_value_t = 30_000)]
    pub send_timeout_ms: u64,

    /// Let webhooks reach loopback, private, link-local and other non-public addresses, and
    /// use plain `http://` URLs: for tests and local development only.
    #[arg(long, env = "REGISTRAR_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,

    /// Longest one webhook request may take, connecting and reading the answer included, in
    /// ms. A delivery's lease is twice this.
    #[arg(long, env = "REGISTRAR_WEBHOOK_TIMEOUT_MS", default_value_t = 15_000)]
    pub webhook_timeout_ms: u64,

    /// The wait after a webhook delivery's first failure, in ms; it doubles after each
    /// further one, up to an hour. Lower it only for tests and trials.
    #[arg(
        long,
        env = "REGISTRAR_WEBHOOK_FIRST_RETRY_MS",
        default_value_t = 5_000
    )]
    pub webhook_first_retry_ms: u64,

    /// Webhook requests one instance sends at once.
    #[arg(long, env = "REGISTRAR_WEBHOOK_CONCURRENCY", default_value_t = 16)]
    pub webhook_concurrency: usize,

    /// The longest, in ms, a round of background work (deliveries, the change log's
    /// consumers, housekeeping) waits while requests wait for database connections; 0: it
    /// never waits.
    #[arg(long, env = "REGISTRAR_BACKGROUND_YIELD_MS", default_value_t = 5_000)]
    pub background_yield_ms: u64,
}

impl Config {
    /// The configuration from the environment alone (no command-line flags).
    pub fn from_env() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        use clap::Parser;
        Only::parse_from(["registrar"]).config
    }

    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }

    pub fn refresh_token_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl_secs)
    }

    pub fn db_timeout(&self) -> Duration {
        Duration::from_millis(self.db_timeout_ms)
    }

    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or(match self.environment {
            Environment::Production => LogFormat::Json,
            Environment::Development => LogFormat::Text,
        })
    }

    /// The database URL with any password masked, for logs and error messages.
    pub fn database_url_for_display(&self) -> String {
        let url = self.database_url.expose_secret();
        match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let credentials = &url[scheme + 3..at];
                match credentials.split_once(':') {
                    Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                    None => url.to_owned(),
                }
            }
            _ => url.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_displayed_urls() {
        let mut config = Config::from_env();
        config.database_url = "postgres://app:s3cret@db:5432/registrar".into();
        assert_eq!(
            config.database_url_for_display(),
            "postgres://app:***@db:5432/registrar"
        );
    }

    #[derive(clap::Parser, Debug)]
    struct Only {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn the_replaced_forwarded_for_switch_stops_the_start_with_an_explanation() {
        use clap::Parser;
        for value in ["true", "false"] {
            let error = Only::try_parse_from(["registrar", "--trust-forwarded-for", value])
                .unwrap_err()
                .to_string();
            assert!(error.contains("REGISTRAR_TRUSTED_PROXIES"), "{error}");
        }
    }

    #[test]
    fn loopback_is_the_trusted_proxy_unless_told_otherwise() {
        use clap::Parser;
        let default = Only::try_parse_from(["registrar"]).unwrap().config;
        assert_eq!(
            default.trusted_proxies,
            TrustedProxies::parse("127.0.0.0/8, ::1").unwrap()
        );
        let none = Only::try_parse_from(["registrar", "--trusted-proxies", ""])
            .unwrap()
            .config;
        assert_eq!(none.trusted_proxies, TrustedProxies::default());
    }

    #[test]
    fn production_logs_json_unless_told_otherwise() {
        let mut config = Config::from_env();
        config.log_format = None;
        config.environment = Environment::Production;
        assert_eq!(config.log_format(), LogFormat::Json);
        config.environment = Environment::Development;
        assert_eq!(config.log_format(), LogFormat::Text);
    }
}
