//! Prometheus metrics: requests by route and status, their latency, and pool usage.
//!
//! Every label value comes from a closed set (known methods or `other`, route patterns or
//! `unmatched`, status codes), never from the text of a request: a client must not be able
//! to grow the exposition, or the process, by sending new methods or paths.

use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix_web::Error;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::Method;
use futures_util::future::LocalBoxFuture;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::db::DbPool;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool: IntGaugeVec,
    deliveries: IntCounterVec,
    queue_depth: IntGaugeVec,
    queue_oldest: prometheus::GaugeVec,
    delivery_latency: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("registrar".into()), None).expect("a valid metrics prefix");
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer HTTP requests",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database connections by state"),
            &["state"],
        )
        .expect("valid metric");
        let deliveries = IntCounterVec::new(
            Opts::new(
                "notification_deliveries_total",
                "Attempts to deliver notifications, by channel and outcome",
            ),
            &["channel", "outcome"],
        )
        .expect("valid metric");
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "notification_queue_depth",
                "Notifications not delivered yet (waiting or to be retried), by channel",
            ),
            &["channel"],
        )
        .expect("valid metric");
        let queue_oldest = prometheus::GaugeVec::new(
            Opts::new(
                "notification_oldest_undelivered_seconds",
                "Age of the oldest notification not delivered yet, by channel",
            ),
            &["channel"],
        )
        .expect("valid metric");
        let delivery_latency = HistogramVec::new(
            HistogramOpts::new(
                "notification_delivery_seconds",
                "From the commit of a change to its successful delivery, by channel",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0,
            ]),
            &["channel"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(deliveries.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(queue_depth.clone()),
            Box::new(queue_oldest.clone()),
            Box::new(delivery_latency.clone()),
        ] {
            registry.register(collector).expect("registered once");
        }
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        registry
            .register(Box::new(pool.clone()))
            .expect("registered once");
        Self {
            registry,
            requests,
            latency,
            pool,
            deliveries,
            queue_depth,
            queue_oldest,
            delivery_latency,
        }
    }

    /// One attempt to deliver a notification on `channel` (`webhook`, `email`) ended with
    /// `outcome` (`delivered`, `retry`, `failed`, ...): labels from the callers' constants only.
    pub fn delivery(&self, channel: &'static str, outcome: &'static str) {
        self.deliveries.with_label_values(&[channel, outcome]).inc();
    }

    /// A notification was delivered `seconds` after its change committed.
    pub fn delivered_after(&self, channel: &'static str, seconds: f64) {
        self.delivery_latency
            .with_label_values(&[channel])
            .observe(seconds);
    }

    /// What is waiting on `channel`: how many, and the oldest's age.
    pub fn queue(&self, channel: &'static str, depth: i64, oldest_seconds: f64) {
        self.queue_depth.with_label_values(&[channel]).set(depth);
        self.queue_oldest
            .with_label_values(&[channel])
            .set(oldest_seconds);
    }

    fn observe(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }

    /// The Prometheus text exposition of every metric, pool figures read now.
    pub fn render(&self, pools: &[DbPool]) -> String {
        let (mut max, mut open, mut idle, mut waiting) = (0, 0, 0, 0);
        for status in pools.iter().map(DbPool::status) {
            max += status.max_size as i64;
            open += status.size as i64;
            idle += status.available as i64;
            waiting += status.waiting as i64;
        }
        for (state, value) in [
            ("max", max),
            ("open", open),
            ("idle", idle),
            ("in_use", open - idle),
            ("waiting", waiting),
        ] {
            self.pool.with_label_values(&[state]).set(value);
        }
        let mut buffer = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding of metrics");
        String::from_utf8(buffer).expect("metrics are UTF-8")
    }
}

/// The `method` label: the methods the API knows, and `other` for anything a client invents.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware recording every answered request under its route pattern (never the raw
/// path, so ids do not explode the label set) and its method's label, and logging it.
pub struct RecordMetrics(pub Arc<Metrics>);

impl<S, B> Transform<S, ServiceRequest> for RecordMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RecordMetricsMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RecordMetricsMiddleware {
            service: Rc::new(service),
            metrics: Arc::clone(&self.0),
        }))
    }
}

pub struct RecordMetricsMiddleware<S> {
    service: Rc<S>,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<ServiceRequest> for RecordMetricsMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let method = method_label(req.method());
        let metrics = Arc::clone(&self.metrics);
        let service = Rc::clone(&self.service);
        Box::pin(async move {
            let response = service.call(req).await?;
            let route = response
                .request()
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned());
            let seconds = started.elapsed().as_secs_f64();
            let status = response.status().as_u16();
            metrics.observe(method, &route, status, seconds);
            // Inside the request's span, so it carries the request id.
            tracing::info!(status, latency_ms = seconds * 1000.0, "request served");
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_label() {
        let invented = Method::from_bytes("X".repeat(30_000).as_bytes()).unwrap();
        assert_eq!(method_label(&invented), "other");
        assert_eq!(
            method_label(&Method::from_bytes(b"PROPFIND").unwrap()),
            "other"
        );
        assert_eq!(method_label(&Method::PATCH), "PATCH");
    }
}
