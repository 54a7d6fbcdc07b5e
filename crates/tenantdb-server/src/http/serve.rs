//! The accept loop. It does what `axum::serve` does, plus two limits that
//! `axum::serve` cannot set:
//!
//! - **Header-read timeout**: a client must send a request's headers within
//!   `header_read_timeout` of connecting (or of the previous response, so an
//!   idle keep-alive connection is closed after that long too). Without it a
//!   client that connects and stalls holds a connection and its task for
//!   ever, and a few thousand of them exhaust the process.
//! - **Connection limit**: at most `max_connections` connections are open at
//!   once. Past it the loop stops accepting: further clients wait in the
//!   listen backlog until a connection closes, rather than being refused.
//!
//! Graceful shutdown as in `axum::serve`: when `shutdown` resolves the loop
//! stops accepting, every connection finishes the request it is serving
//! (idle ones close at once), and `serve` returns when all are gone.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A client has this long to send a request's headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Client connections open at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Limits on client connections (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    /// At least 1.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves and every open
/// connection has finished.
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let builder = Arc::new(builder(limits.header_read_timeout));
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // The slot is taken before accepting: at the limit, clients queue
        // in the backlog instead of being accepted and then left waiting.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let io = tokio::select! {
            // axum's accept logs and retries errors (e.g. out of file
            // descriptors) after a pause.
            (io, _) = axum::serve::Listener::accept(&mut listener) => io,
            () = &mut shutdown => break,
        };
        connections.spawn(connection(builder.clone(), io, app.clone(), slot, stop.clone()));
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
}

fn builder(header_read_timeout: Duration) -> auto::Builder<TokioExecutor> {
    // HTTP/1 only, as before (HTTP/2 is not compiled in). Choosing the
    // version up front also matters for the timeout: while it sniffs for the
    // HTTP/2 preface the builder reads without one, so a client that sends
    // nothing would never time out.
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
}

/// Serves one connection; its slot is given back when it closes.
async fn connection(
    builder: Arc<auto::Builder<TokioExecutor>>,
    io: TcpStream,
    app: Router,
    _slot: OwnedSemaphorePermit,
    stop: CancellationToken,
) {
    let service = TowerToHyperService::new(app);
    let mut conn = std::pin::pin!(builder.serve_connection(TokioIo::new(io), service));
    let result = tokio::select! {
        // The connection first: it is what wakes this task, the stop
        // signal only once.
        biased;
        result = conn.as_mut() => result,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        // Clients hanging up and timing out are routine.
        tracing::debug!(error = %err, "connection ended with an error");
    }
}
