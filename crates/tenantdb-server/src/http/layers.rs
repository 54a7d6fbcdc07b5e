//! The service's own layers, each one step with no more per-request work
//! than it needs (they run on every request):
//!
//! - [`Telemetry`]: every request's id, metrics and log line.
//! - [`RequestTimeout`]: cuts a request off after a limit and answers
//!   `408 timeout` in the error shape, in one layer (tower-http's timeout
//!   answers with an empty body, which took a second layer to reshape).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use tenantdb_axum::ApiError;
use tracing::Instrument;

type Boxed = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The header that carries a request's id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Buckets of the latency histograms, in seconds: 1 ms to 5 minutes
/// (requests, pool waits, provisioning and migrations share them).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Every request: an id, a count and a duration, and a log line.
///
/// - **Id**: the client's `X-Request-Id` when it is 1 to 128 visible ASCII
///   characters, else a new one; sent back in `X-Request-Id`, put in the
///   request's extensions as [`RequestId`] and in the `request` span, so
///   every log line of the request (a 500's cause too) carries it.
/// - **Metrics**: `tenantdb_http_requests_total` and
///   `tenantdb_http_request_duration_seconds` by method, route template
///   (`/v1/projects/{id}`, or `unmatched`) and status class (`2xx`).
/// - **Log**: one line when the response is ready (method, path, tenant,
///   status, latency); headers are not logged (tokens live there). When
///   nothing listens at INFO there is no span and no line.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    routes: Arc<RouteMetrics>,
}

/// A request's id, in the request's extensions: the client's
/// `X-Request-Id` when usable (1 to 128 visible ASCII characters), else one
/// made by the service; the response carries it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub HeaderValue);

impl<S> tower::Layer<S> for Telemetry {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed {
            inner,
            routes: self.routes.clone(),
        }
    }
}

/// [`Telemetry`]'s service.
#[derive(Debug, Clone)]
pub struct Observed<S> {
    inner: S,
    routes: Arc<RouteMetrics>,
}

impl<S> tower::Service<Request> for Observed<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Boxed;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let id = request_id(request.headers());
        request.extensions_mut().insert(RequestId(id.clone()));
        let route = RouteKey::of(&request);
        let routes = self.routes.clone();
        let span = tracing::enabled!(tracing::Level::INFO).then(|| {
            tracing::info_span!(
                "request",
                request_id = id.to_str().unwrap_or_default(),
                method = %request.method(),
                path = %request.uri().path(),
                tenant = %tenantdb_axum::tenant_of(request.headers(), None).unwrap_or_default()
            )
        });
        let answer = self.inner.call(request);
        let logged = span.is_some();
        let finish = move |mut response: Response| {
            let elapsed = started.elapsed();
            let status = response.status();
            routes.record(&route, status, elapsed);
            if logged {
                let latency_ms = elapsed.as_secs_f64() * 1e3;
                if status.is_server_error() {
                    tracing::error!(status = status.as_u16(), latency_ms, "finished processing request");
                } else {
                    tracing::info!(status = status.as_u16(), latency_ms, "finished processing request");
                }
            }
            response.headers_mut().insert(REQUEST_ID, id);
            Ok(response)
        };
        match span {
            None => Box::pin(async move { finish(answer.await?) }),
            // Entered while the handler runs and while the line is written.
            Some(span) => Box::pin(async move { finish(answer.await?) }.instrument(span)),
        }
    }
}

/// The client's id when it is usable, else a new one: a random prefix
/// drawn once per process and a counter (unique, and cheap on every
/// request).
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(given) = headers.get(&REQUEST_ID)
        && (1..=128).contains(&given.len())
        && given.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return given.clone();
    }
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    HeaderValue::try_from(format!("{prefix:016x}{n:016x}")).expect("hex digits are a valid header value")
}

/// Which series a request counts in: its method and route template.
#[derive(Debug)]
struct RouteKey {
    method: usize,
    route: Option<MatchedPath>,
}

/// The methods with series of their own; any other counts as `OTHER`.
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OTHER"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl RouteKey {
    fn of(request: &Request) -> Self {
        let method = METHODS[..5]
            .iter()
            .position(|m| *m == request.method().as_str())
            .unwrap_or(5);
        Self {
            method,
            route: request.extensions().get::<MatchedPath>().cloned(),
        }
    }
}

type Series = OnceLock<(metrics::Counter, metrics::Histogram)>;

/// The request metrics' handles by route, method and status class, made
/// on first use: recording is a map lookup and two atomic updates, not a
/// registry lookup with label allocations.
#[derive(Debug, Default)]
struct RouteMetrics {
    routes: DashMap<Box<str>, [Series; 30], foldhash::fast::RandomState>,
}

impl RouteMetrics {
    fn record(&self, key: &RouteKey, status: StatusCode, elapsed: Duration) {
        let route = key.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        // A read lock on the route's shard while two atomics move; the
        // entry is made once per route.
        let series = match self.routes.get(route) {
            Some(series) => series,
            None => self
                .routes
                .entry(route.into())
                .or_insert_with(|| std::array::from_fn(|_| OnceLock::new()))
                .downgrade(),
        };
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        let (count, duration) = series[key.method * CLASSES.len() + class].get_or_init(|| {
            let labels = [
                ("method", METHODS[key.method].to_owned()),
                ("route", route.to_owned()),
                ("status", CLASSES[class].to_owned()),
            ];
            (
                metrics::counter!("tenantdb_http_requests_total", &labels),
                metrics::histogram!("tenantdb_http_request_duration_seconds", &labels),
            )
        });
        count.increment(1);
        duration.record(elapsed.as_secs_f64());
    }
}

/// Describes the service's own metrics (`# HELP`).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "tenantdb_http_requests_total",
        metrics::Unit::Count,
        "HTTP requests answered, by method, route template and status class."
    );
    metrics::describe_histogram!(
        "tenantdb_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from a request's arrival to its response's head, by method, route template and status class."
    );
    metrics::describe_gauge!(
        "tenantdb_build_info",
        "The running build: always 1, with the version as a label."
    );
}

/// Answers `408 timeout` when the routes it wraps take longer than its
/// limit.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeout(pub Duration);

impl<S> tower::Layer<S> for RequestTimeout {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Timed<S> {
        Timed { inner, limit: self.0 }
    }
}

/// [`RequestTimeout`]'s service.
#[derive(Debug, Clone)]
pub struct Timed<S> {
    inner: S,
    limit: Duration,
}

impl<S> tower::Service<Request> for Timed<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Boxed;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let answer = tokio::time::timeout(self.limit, self.inner.call(request));
        Box::pin(async move {
            match answer.await {
                Ok(response) => response,
                Err(_) => Ok(
                    ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", "the request took too long").into_response(),
                ),
            }
        })
    }
}
