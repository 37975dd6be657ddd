//! A small HTTP/1.1 load generator for `bench/run`.
//!
//! `loadgen run`: a fixed number of requests (or a fixed time) over C keep-alive connections,
//! each connection sending its next request as soon as the previous answer is fully read
//! (a closed loop, like wrk). Latency is measured from sending a request to reading the last
//! byte of its answer and kept in an HDR histogram. Request bodies can come from a file, one
//! per line, so that every request of a run is distinct (say, a new participant's email).
//!
//! `loadgen feed`: pulls a paginated attendee feed from the start until it is exhausted,
//! as a badge printer would, and counts what came.
//!
//! Both print one JSON object on standard output.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// No request may take longer than this; one that does counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const USAGE: &str = "usage:
  loadgen run --url URL [--method M] [--header 'name: value']... [--body TEXT | --bodies FILE]
              --concurrency C (--requests N | --duration SECONDS [--warmup SECONDS])
              [--expect STATUS]... [--tally WORD]... [--positions] [--threads T]
  loadgen feed --url URL [--header 'name: value']... [--limit L] [--expect-items N] [--max-wait SECONDS]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => Options::parse(&args[1..]).and_then(run_command),
        Some("feed") => Options::parse(&args[1..]).and_then(feed_command),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(report) => println!("{report}"),
        Err(error) => {
            eprintln!("loadgen: {error}");
            std::process::exit(2);
        }
    }
}

/// Where to send requests: `http://host:port/path?query` only (no TLS, no redirects).
#[derive(Clone)]
struct Target {
    address: String,
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("only http:// URLs: {url}"))?;
        let (address, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        Ok(Target {
            address: address.to_owned(),
            path_and_query: path.to_owned(),
        })
    }
}

struct Options {
    target: Target,
    method: Method,
    headers: Vec<(String, String)>,
    /// Request `i` sends `bodies[i % len]`; empty: no body.
    bodies: Vec<Bytes>,
    concurrency: usize,
    requests: Option<usize>,
    duration: Option<Duration>,
    warmup: Duration,
    /// Statuses that count as success; empty: any 2xx or 3xx.
    expect: Vec<u16>,
    /// Count the answers whose body contains `"WORD"`.
    tally: Vec<String>,
    /// Collect the `"waitlist_position": N` numbers the answers carry.
    positions: bool,
    threads: usize,
    /// Keep answers' bodies (for `--tally` and the feed).
    keep_bodies: bool,
    limit: usize,
    expect_items: Option<usize>,
    max_wait: Duration,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut url = None;
        let mut options = Options {
            target: Target::parse("http://127.0.0.1/")?,
            method: Method::GET,
            headers: Vec::new(),
            bodies: Vec::new(),
            concurrency: 1,
            requests: None,
            duration: None,
            warmup: Duration::ZERO,
            expect: Vec::new(),
            tally: Vec::new(),
            positions: false,
            threads: 1,
            keep_bodies: false,
            limit: 1000,
            expect_items: None,
            max_wait: Duration::from_secs(30),
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            if flag == "--positions" {
                options.positions = true;
                continue;
            }
            let value = args
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let number = || {
                value
                    .parse::<f64>()
                    .map_err(|_| format!("{flag}: not a number: {value}"))
            };
            match flag.as_str() {
                "--url" => url = Some(Target::parse(value)?),
                "--method" => {
                    options.method = Method::from_bytes(value.as_bytes())
                        .map_err(|_| format!("bad method {value}"))?
                }
                "--header" => {
                    let (name, v) = value
                        .split_once(':')
                        .ok_or_else(|| format!("header without ':': {value}"))?;
                    options
                        .headers
                        .push((name.trim().to_owned(), v.trim().to_owned()));
                }
                "--body" => options.bodies = vec![Bytes::from(value.clone())],
                "--bodies" => {
                    let text = std::fs::read_to_string(value)
                        .map_err(|e| format!("reading {value}: {e}"))?;
                    options.bodies = text
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(|l| Bytes::from(l.to_owned()))
                        .collect();
                }
                "--concurrency" => options.concurrency = number()? as usize,
                "--requests" => options.requests = Some(number()? as usize),
                "--duration" => options.duration = Some(Duration::from_secs_f64(number()?)),
                "--warmup" => options.warmup = Duration::from_secs_f64(number()?),
                "--expect" => options.expect.push(number()? as u16),
                "--tally" => options.tally.push(value.clone()),
                "--threads" => options.threads = number()? as usize,
                "--limit" => options.limit = number()? as usize,
                "--expect-items" => options.expect_items = Some(number()? as usize),
                "--max-wait" => options.max_wait = Duration::from_secs_f64(number()?),
                _ => return Err(format!("unknown option {flag}\n{USAGE}")),
            }
        }
        options.target = url.ok_or_else(|| format!("--url is required\n{USAGE}"))?;
        options.keep_bodies = !options.tally.is_empty() || options.positions;
        if options.concurrency == 0 || options.threads == 0 {
            return Err("--concurrency and --threads must be at least 1".into());
        }
        Ok(options)
    }

    fn success(&self, status: StatusCode) -> bool {
        if self.expect.is_empty() {
            status.is_success() || status.is_redirection()
        } else {
            self.expect.contains(&status.as_u16())
        }
    }

    fn runtime(&self) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    }
}

type Connection = SendRequest<Full<Bytes>>;

async fn connect(target: &Target) -> Result<Connection, String> {
    let stream = TcpStream::connect(&target.address)
        .await
        .map_err(|e| format!("connect {}: {e}", target.address))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

/// A connection ready for the next request: the open one, or a new one when the server
/// closed it (keep-alive limits) or a request on it failed.
async fn ready(slot: &mut Option<Connection>, target: &Target) -> Result<(), String> {
    if let Some(sender) = slot
        && !sender.is_closed()
        && sender.ready().await.is_ok()
    {
        return Ok(());
    }
    *slot = Some(connect(target).await?);
    Ok(())
}

struct Answer {
    status: StatusCode,
    length: u64,
    /// Empty unless `keep_bodies`.
    body: Bytes,
}

/// Sends one request and reads the whole answer.
async fn exchange(
    slot: &mut Option<Connection>,
    options: &Options,
    path_and_query: &str,
    body: Bytes,
) -> Result<Answer, String> {
    ready(slot, &options.target).await?;
    let sender = slot.as_mut().expect("connected above");
    let mut request = Request::builder()
        .method(options.method.clone())
        .uri(path_and_query)
        .header("host", &options.target.address);
    for (name, value) in &options.headers {
        request = request.header(name, value);
    }
    if !body.is_empty() {
        request = request.header("content-length", body.len());
    }
    let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    // Read every byte; keep them only when something will look at them (copying a large
    // body would make the load generator, not the server, the bottleneck).
    let mut incoming = response.into_body();
    let (mut length, mut kept) = (0, Vec::new());
    while let Some(frame) = incoming.frame().await {
        if let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() {
            length += data.len() as u64;
            if options.keep_bodies {
                kept.extend_from_slice(&data);
            }
        }
    }
    Ok(Answer {
        status,
        length,
        body: Bytes::from(kept),
    })
}

/// What one connection saw.
struct Stats {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    first_transport_error: Option<String>,
    unexpected: u64,
    bytes: u64,
    tallies: Vec<u64>,
    positions: Vec<u64>,
}

impl Stats {
    fn new(tallies: usize) -> Self {
        Stats {
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            statuses: BTreeMap::new(),
            transport_errors: 0,
            first_transport_error: None,
            unexpected: 0,
            bytes: 0,
            tallies: vec![0; tallies],
            positions: Vec::new(),
        }
    }

    fn record(&mut self, options: &Options, elapsed: Duration, result: Result<Answer, String>) {
        match result {
            Ok(answer) => {
                self.latency_us
                    .saturating_record(elapsed.as_micros().max(1) as u64);
                *self.statuses.entry(answer.status.as_u16()).or_default() += 1;
                if !options.success(answer.status) {
                    self.unexpected += 1;
                }
                self.bytes += answer.length;
                for (count, word) in self.tallies.iter_mut().zip(&options.tally) {
                    if contains(&answer.body, format!("\"{word}\"").as_bytes()) {
                        *count += 1;
                    }
                }
                if options.positions {
                    self.positions.extend(waitlist_positions(&answer.body));
                }
            }
            Err(error) => {
                self.transport_errors += 1;
                self.first_transport_error.get_or_insert(error);
            }
        }
    }

    fn merge(&mut self, other: Stats) {
        self.latency_us.add(&other.latency_us).expect("same bounds");
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        if self.first_transport_error.is_none() {
            self.first_transport_error = other.first_transport_error;
        }
        self.unexpected += other.unexpected;
        self.bytes += other.bytes;
        for (mine, theirs) in self.tallies.iter_mut().zip(other.tallies) {
            *mine += theirs;
        }
        self.positions.extend(other.positions);
    }

    fn report(&self, options: &Options, seconds: f64) -> Value {
        let count = self.latency_us.len() + self.transport_errors;
        let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1000.0;
        let tally: serde_json::Map<String, Value> = options
            .tally
            .iter()
            .zip(&self.tallies)
            .map(|(word, n)| (word.clone(), json!(n)))
            .collect();
        json!({
            "requests": count,
            "seconds": round(seconds, 3),
            "rps": round(count as f64 / seconds.max(1e-9), 1),
            "status": self.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "transport_errors": self.transport_errors,
            "first_transport_error": self.first_transport_error,
            "errors": self.unexpected + self.transport_errors,
            "p50_ms": round(ms(0.50), 2),
            "p90_ms": round(ms(0.90), 2),
            "p99_ms": round(ms(0.99), 2),
            "max_ms": round(self.latency_us.max() as f64 / 1000.0, 2),
            "mean_ms": round(self.latency_us.mean() / 1000.0, 2),
            "bytes_received": self.bytes,
            "tally": tally,
            "positions": self.positions_report(),
        })
    }
}

impl Stats {
    /// How many waitlist positions the answers told, how many distinct, the least and the
    /// greatest: exact positions are each told once.
    fn positions_report(&self) -> Value {
        let distinct: std::collections::BTreeSet<u64> = self.positions.iter().copied().collect();
        json!({
            "told": self.positions.len(),
            "distinct": distinct.len(),
            "min": distinct.first(),
            "max": distinct.last(),
        })
    }
}

/// Every `"waitlist_position": N` (N a number, not null) in a JSON body.
fn waitlist_positions(body: &[u8]) -> Vec<u64> {
    const KEY: &[u8] = b"\"waitlist_position\":";
    let mut found = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.windows(KEY.len()).position(|w| w == KEY) {
        rest = &rest[at + KEY.len()..];
        let digits: Vec<u8> = rest
            .iter()
            .skip_while(|b| b.is_ascii_whitespace())
            .take_while(|b| b.is_ascii_digit())
            .copied()
            .collect();
        if let Ok(n) = std::str::from_utf8(&digits).unwrap_or("").parse() {
            found.push(n);
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// One connection's closed loop: take the next request number, send it, read the answer,
/// until the requests are used up or the time is over.
async fn connection_loop(
    options: Arc<Options>,
    next: Arc<AtomicUsize>,
    until: Option<Instant>,
) -> Stats {
    let mut stats = Stats::new(options.tally.len());
    let mut slot = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if options.requests.is_some_and(|n| i >= n) || until.is_some_and(|t| Instant::now() >= t) {
            return stats;
        }
        let body = match options.bodies.len() {
            0 => Bytes::new(),
            n => options.bodies[i % n].clone(),
        };
        let started = Instant::now();
        let result = tokio::time::timeout(
            REQUEST_TIMEOUT,
            exchange(&mut slot, &options, &options.target.path_and_query, body),
        )
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()));
        if result.is_err() {
            slot = None;
        }
        stats.record(&options, started.elapsed(), result);
    }
}

/// Runs C connections until `requests` are sent or `duration` is over; returns the merged
/// statistics and the wall time.
async fn phase(options: Arc<Options>, duration: Option<Duration>) -> (Stats, f64) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let until = duration.map(|d| started + d);
    let tasks: Vec<_> = (0..options.concurrency)
        .map(|_| tokio::spawn(connection_loop(options.clone(), next.clone(), until)))
        .collect();
    let mut total = Stats::new(options.tally.len());
    for task in tasks {
        total.merge(task.await.expect("a connection task panicked"));
    }
    (total, started.elapsed().as_secs_f64())
}

/// CPU seconds this process has used so far (user + system; Linux's USER_HZ is 100), so the
/// report shows how much of the machine the load generator itself took.
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = after_name
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of the line; 12th and 13th after the name.
    fields
        .get(11)
        .zip(fields.get(12))
        .map_or(0.0, |(u, s)| (u + s) / 100.0)
}

fn run_command(options: Options) -> Result<String, String> {
    if options.requests.is_none() == options.duration.is_none() {
        return Err(format!(
            "give exactly one of --requests and --duration\n{USAGE}"
        ));
    }
    if options.requests.is_some() && !options.warmup.is_zero() {
        // Every request of a counted run is a distinct one that must be made exactly once.
        return Err("--warmup goes with --duration only".into());
    }
    let runtime = options.runtime();
    let options = Arc::new(options);
    let report = runtime.block_on(async {
        if !options.warmup.is_zero() {
            phase(options.clone(), Some(options.warmup)).await;
        }
        let cpu = own_cpu_seconds();
        let (stats, seconds) = phase(options.clone(), options.duration).await;
        let mut report = stats.report(&options, seconds);
        let cpu = own_cpu_seconds() - cpu;
        report["client_cpu_s"] = json!(round(cpu, 2));
        report["client_cores"] = json!(round(cpu / seconds.max(1e-9), 2));
        report
    });
    Ok(report.to_string())
}

/// Pulls the feed from the beginning: `?limit=L`, then `&since=<next_cursor>` until a poll
/// returns nothing. The feed only hands out rows of transactions older than every running
/// one, so an empty poll before `--expect-items` arrived is retried for up to `--max-wait`.
fn feed_command(mut options: Options) -> Result<String, String> {
    options.method = Method::GET;
    options.expect = vec![200];
    options.keep_bodies = true;
    let runtime = options.runtime();
    runtime.block_on(async move {
        let base = options.target.path_and_query.clone();
        let separator = if base.contains('?') { '&' } else { '?' };
        let mut slot = None;
        let mut stats = Stats::new(0);
        let mut seen: HashSet<String> = HashSet::new();
        let (mut items, mut pages, mut empty_polls) = (0usize, 0usize, 0usize);
        let mut cursor: Option<String> = None;
        let started = Instant::now();
        let mut waiting_since: Option<Instant> = None;
        loop {
            let path = match &cursor {
                None => format!("{base}{separator}limit={}", options.limit),
                Some(c) => format!("{base}{separator}limit={}&since={c}", options.limit),
            };
            let t = Instant::now();
            let answer = exchange(&mut slot, &options, &path, Bytes::new()).await;
            let elapsed = t.elapsed();
            let answer = match answer {
                Ok(a) if a.status == StatusCode::OK => a,
                Ok(a) => {
                    let text = String::from_utf8_lossy(&a.body).into_owned();
                    stats.record(&options, elapsed, Ok(a));
                    return Err(format!("feed answered {}", text));
                }
                Err(e) => return Err(format!("feed request failed: {e}")),
            };
            let page: Value = serde_json::from_slice(&answer.body)
                .map_err(|e| format!("feed page is not JSON: {e}"))?;
            stats.record(&options, elapsed, Ok(answer));
            let list = page["items"].as_array().cloned().unwrap_or_default();
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if list.is_empty() {
                let done = options.expect_items.is_none_or(|n| seen.len() >= n);
                let since = *waiting_since.get_or_insert_with(Instant::now);
                if done || since.elapsed() >= options.max_wait {
                    break;
                }
                empty_polls += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            waiting_since = None;
            pages += 1;
            items += list.len();
            for item in &list {
                if let Some(id) = item["registration_id"].as_str() {
                    seen.insert(id.to_owned());
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let mut report = stats.report(&options, seconds);
        report["client_cpu_s"] = json!(round(own_cpu_seconds(), 2));
        report["pages"] = json!(pages);
        report["items"] = json!(items);
        report["distinct"] = json!(seen.len());
        report["empty_polls_while_waiting"] = json!(empty_polls);
        report["items_per_s"] = json!(round(items as f64 / seconds.max(1e-9), 1));
        Ok(report.to_string())
    })
}
