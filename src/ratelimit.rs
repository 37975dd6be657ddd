//! Rate limits per client address (see `client_address`), kept in PostgreSQL so that they
//! hold across instances.
//!
//! Each limit is "N per minute, bursts of up to N", enforced with the generic cell rate
//! algorithm in a single statement.

use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use diesel_async::RunQueryDsl;

use crate::client_address::TrustedProxies;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct RateLimits {
    login_per_minute: u32,
    registrations_per_minute: u32,
    proxies: TrustedProxies,
}

#[derive(diesel::QueryableByName)]
struct Verdict {
    #[diesel(sql_type = Bool)]
    allowed: bool,
    #[diesel(sql_type = Nullable<Double>)]
    retry_after: Option<f64>,
}

impl RateLimits {
    pub fn new(
        login_per_minute: u32,
        registrations_per_minute: u32,
        proxies: TrustedProxies,
    ) -> Self {
        RateLimits {
            login_per_minute,
            registrations_per_minute,
            proxies,
        }
    }

    /// The address limits are counted against.
    pub fn client(&self, req: &HttpRequest) -> String {
        self.proxies
            .client_of(req)
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "unknown".to_owned())
    }

    pub async fn check_login(&self, state: &AppState, req: &HttpRequest) -> ApiResult<()> {
        self.check(state, "login", self.login_per_minute, &self.client(req))
            .await
    }

    pub async fn check_registration(&self, state: &AppState, req: &HttpRequest) -> ApiResult<()> {
        self.check(
            state,
            "registration",
            self.registrations_per_minute,
            &self.client(req),
        )
        .await
    }

    async fn check(
        &self,
        state: &AppState,
        bucket: &str,
        per_minute: u32,
        client: &str,
    ) -> ApiResult<()> {
        if per_minute == 0 {
            return Ok(());
        }
        let interval = Duration::from_secs(60) / per_minute;
        let tolerance = interval * (per_minute - 1);
        let mut conn = state.conn().await?;
        let verdict: Verdict = diesel::sql_query(
            "WITH attempt AS ( \
                 INSERT INTO rate_limits AS r (bucket, client, tat) \
                 VALUES ($1, $2, now() + $3 * interval '1 microsecond') \
                 ON CONFLICT (bucket, client) DO UPDATE \
                 SET tat = greatest(r.tat, now()) + $3 * interval '1 microsecond' \
                 WHERE greatest(r.tat, now()) - now() <= $4 * interval '1 microsecond' \
                 RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM attempt) AS allowed, \
                    (SELECT extract(epoch FROM greatest(r.tat, now()) - now() \
                                              - $4 * interval '1 microsecond')::float8 \
                     FROM rate_limits r WHERE r.bucket = $1 AND r.client = $2) AS retry_after",
        )
        .bind::<Text, _>(bucket)
        .bind::<Text, _>(client)
        .bind::<BigInt, _>(interval.as_micros() as i64)
        .bind::<BigInt, _>(tolerance.as_micros() as i64)
        .get_result(&mut conn)
        .await?;
        if verdict.allowed {
            return Ok(());
        }
        let seconds = verdict.retry_after.unwrap_or(1.0).ceil().max(1.0) as u64;
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests from this address; retry in {seconds} s"),
        )
        .with("retry_after", seconds)
        .with_header(
            RETRY_AFTER,
            HeaderValue::from_str(&seconds.to_string()).expect("digits are a valid header"),
        ))
    }
}
