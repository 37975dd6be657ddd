//! Sending one attempt: a signed POST with connect and total timeouts, no redirects followed
//! (a 3xx is a failure), no proxy, the address guard as resolver, and at most 64 KiB of the
//! answer read (the rest is not read: the connection is dropped instead). TLS is rustls on
//! `ring`, trusting Mozilla's root certificates compiled into the binary (`webpki-roots`),
//! so nothing is read from the system or fetched at run time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::Url;

use super::guard::{self, GuardedResolver, Policy, Refused};
use super::signing;

/// How much of an answer is read.
pub const MAX_ANSWER: usize = 64 * 1024;
/// How much of it is kept, to show organisers.
const EXCERPT: usize = 1024;
/// Time to connect, at most (less when the whole request has less).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What came of one attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The answer's status, when there was one.
    pub status: Option<u16>,
    /// Why it failed, when it did (also for answers that are not 2xx).
    pub error: Option<String>,
    /// The start of the answer's body.
    pub excerpt: Option<String>,
    pub duration: Duration,
}

impl Attempt {
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// The endpoint says it is gone for good: stop sending to it.
    pub fn gone(&self) -> bool {
        self.status == Some(410)
    }

    fn failed(error: impl Into<String>, started: Instant) -> Self {
        Attempt {
            status: None,
            error: Some(error.into()),
            excerpt: None,
            duration: started.elapsed(),
        }
    }
}

pub struct Sender {
    client: reqwest::Client,
    policy: Policy,
    timeout: Duration,
}

impl Sender {
    pub fn new(policy: Policy, timeout: Duration) -> anyhow::Result<Self> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS settings for webhooks")?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(GuardedResolver { policy })
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .user_agent(concat!("registrar-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the webhooks' HTTP client")?;
        Ok(Sender {
            client,
            policy,
            timeout,
        })
    }

    /// POSTs `body` to `url`, signed with each of `secrets`.
    pub async fn send(
        &self,
        url: &str,
        webhook_id: &str,
        body: &str,
        secrets: &[&[u8]],
    ) -> Attempt {
        let started = Instant::now();
        let url = match Url::parse(url) {
            Ok(url) => url,
            Err(_) => return Attempt::failed("the URL is not valid", started),
        };
        if let Err(refused) = guard::check_literal(&url, self.policy) {
            return Attempt::failed(refused.to_string(), started);
        }
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signing::signature_header(secrets, webhook_id, timestamp, body);
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => return Attempt::failed(self.describe(&error), started),
        };
        let status = response.status().as_u16();
        let mut kept = Vec::new();
        let mut read = 0;
        let mut error = None;
        while read < MAX_ANSWER {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len();
                    let room = EXCERPT.saturating_sub(kept.len());
                    kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(self.describe(&e));
                    break;
                }
            }
        }
        // Beyond MAX_ANSWER the rest is left unread; dropping the response closes the
        // connection.
        drop(response);
        let error = error.or_else(|| match status {
            200..=299 => None,
            300..=399 => Some(format!("answered {status}: redirects are not followed")),
            410 => Some("answered 410 Gone".to_owned()),
            _ => Some(format!("answered {status}")),
        });
        Attempt {
            status: Some(status),
            error,
            excerpt: (!kept.is_empty()).then(|| excerpt(&kept)),
            duration: started.elapsed(),
        }
    }

    /// Why a request failed, in words an organiser can act on (never the service's internals).
    fn describe(&self, error: &reqwest::Error) -> String {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        let mut root = error.to_string();
        while let Some(cause) = source {
            if let Some(refused) = cause.downcast_ref::<Refused>() {
                return refused.to_string();
            }
            root = cause.to_string();
            source = cause.source();
        }
        if error.is_timeout() {
            format!(
                "no complete answer within {} s",
                self.timeout.as_secs_f64().round()
            )
        } else if error.is_connect() {
            format!("could not connect: {root}")
        } else {
            root
        }
    }
}

/// The start of an answer, as text that PostgreSQL can store.
fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{fffd}")
}
