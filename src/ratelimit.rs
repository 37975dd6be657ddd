//! Rate limits, kept in PostgreSQL so that they hold across instances.
//!
//! Per client address (see `client_address`): logins and public registrations, each
//! "N per minute, bursts of up to N"; requests to mail a registration's link again, "N per
//! hour", also per email address. Per account: failed logins, "N per hour, bursts of up
//! to N", from whatever addresses they come. All are enforced with the generic cell rate
//! algorithm in a single statement.
//!
//! The account limit counts failures only, and a locked account waits for one interval
//! (an hour / N) at most once the failures stop, so a stranger who knows an email address
//! can slow its owner down but cannot shut them out for long. An attempt takes its place
//! before the password is checked, so parallel guesses cannot overrun the limit; a right
//! password gives the place back.

use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use diesel_async::RunQueryDsl;

use sha2::{Digest, Sha256};

use crate::client_address::TrustedProxies;
use crate::db::DbPool;
use crate::error::{ApiError, ApiResult};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct RateLimits {
    login_per_minute: u32,
    registrations_per_minute: u32,
    failed_logins_per_account_hour: u32,
    resend_per_client_hour: u32,
    resend_per_address_hour: u32,
    proxies: TrustedProxies,
}

/// A login attempt counted against its account; give it back with [`AccountAttempt::succeeded`].
#[must_use]
pub struct AccountAttempt {
    account: Option<String>,
    interval: Duration,
}

/// A limit: `count` per `period`, in bursts of up to `count`.
#[derive(Clone, Copy)]
struct Rate {
    count: u32,
    period: Duration,
}

impl Rate {
    fn interval(self) -> Duration {
        self.period / self.count
    }
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
        failed_logins_per_account_hour: u32,
        resend: (u32, u32),
        proxies: TrustedProxies,
    ) -> Self {
        RateLimits {
            login_per_minute,
            registrations_per_minute,
            failed_logins_per_account_hour,
            resend_per_client_hour: resend.0,
            resend_per_address_hour: resend.1,
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

    pub async fn check_login(&self, db: &DbPool, req: &HttpRequest) -> ApiResult<()> {
        let rate = Rate {
            count: self.login_per_minute,
            period: MINUTE,
        };
        match self.check(db, "login", rate, &self.client(req)).await? {
            Some(seconds) => Err(limited(seconds, "too many logins from this address")),
            None => Ok(()),
        }
    }

    pub async fn check_registration(&self, db: &DbPool, req: &HttpRequest) -> ApiResult<()> {
        let rate = Rate {
            count: self.registrations_per_minute,
            period: MINUTE,
        };
        match self
            .check(db, "registration", rate, &self.client(req))
            .await?
        {
            Some(seconds) => Err(limited(seconds, "too many requests from this address")),
            None => Ok(()),
        }
    }

    /// Requests to mail a registration's link again: per client address, and per email
    /// address (normalised) from any client, so that nobody can flood one inbox.
    pub async fn check_resend(&self, db: &DbPool, req: &HttpRequest, email: &str) -> ApiResult<()> {
        let per_client = Rate {
            count: self.resend_per_client_hour,
            period: HOUR,
        };
        if let Some(seconds) = self
            .check(db, "resend", per_client, &self.client(req))
            .await?
        {
            return Err(limited(seconds, "too many requests from this address"));
        }
        let per_address = Rate {
            count: self.resend_per_address_hour,
            period: HOUR,
        };
        // A digest: the table of limits holds no email addresses.
        let address = hex::encode(Sha256::digest(email.as_bytes()));
        match self
            .check(db, "resend-address", per_address, &address)
            .await?
        {
            Some(seconds) => Err(limited(
                seconds,
                "the link was sent to this email address several times already",
            )),
            None => Ok(()),
        }
    }

    /// Counts a login attempt (or a check of the current password) against the account of
    /// `email` (normalised), known or not, so the answer does not tell whether it exists.
    pub async fn login_attempt(&self, db: &DbPool, email: &str) -> ApiResult<AccountAttempt> {
        let rate = Rate {
            count: self.failed_logins_per_account_hour,
            period: HOUR,
        };
        if rate.count == 0 {
            return Ok(AccountAttempt {
                account: None,
                interval: Duration::ZERO,
            });
        }
        // A digest: the table of limits holds no email addresses.
        let account = hex::encode(Sha256::digest(email.as_bytes()));
        if let Some(seconds) = self.check(db, "login-account", rate, &account).await? {
            return Err(limited(
                seconds,
                "too many failed logins for this account; it is locked for a while",
            ));
        }
        Ok(AccountAttempt {
            account: Some(account),
            interval: rate.interval(),
        })
    }

    /// Lets one more request of `client` through if `rate` allows it (`None`); otherwise
    /// the seconds to wait.
    async fn check(
        &self,
        db: &DbPool,
        bucket: &str,
        rate: Rate,
        client: &str,
    ) -> ApiResult<Option<u64>> {
        if rate.count == 0 {
            return Ok(None);
        }
        let interval = rate.interval();
        let tolerance = interval * (rate.count - 1);
        let mut conn = db.get().await?;
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
        .get_results(&mut conn)
        .await
        .and_then(crate::db::single)?;
        if verdict.allowed {
            return Ok(None);
        }
        Ok(Some(
            verdict.retry_after.unwrap_or(1.0).ceil().max(1.0) as u64
        ))
    }
}

impl AccountAttempt {
    /// The password was right: the attempt does not count.
    pub async fn succeeded(self, db: &DbPool) -> ApiResult<()> {
        let Some(account) = self.account else {
            return Ok(());
        };
        let mut conn = db.get().await?;
        diesel::sql_query(
            "UPDATE rate_limits SET tat = tat - $2 * interval '1 microsecond' \
             WHERE bucket = 'login-account' AND client = $1",
        )
        .bind::<Text, _>(account)
        .bind::<BigInt, _>(self.interval.as_micros() as i64)
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}

fn limited(seconds: u64, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("{what}; retry in {seconds} s"),
    )
    .with("retry_after", seconds)
    .with_header(
        RETRY_AFTER,
        HeaderValue::from_str(&seconds.to_string()).expect("digits are a valid header"),
    )
}
