//! Limits on client connections: the header-read timeout and the
//! connection limit. They do not depend on where databases live: SQLite only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Backend, Service};

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";

/// `/healthz` on a connection of its own (a pooled one could be the one
/// the service is closing at that moment).
async fn healthz(service: &Service) -> StatusCode {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    client
        .get(format!("{}/healthz", service.base))
        .send()
        .await
        .unwrap()
        .status()
}

/// Reads until the peer closes the connection (or resets it).
async fn read_until_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Reads one HTTP response (head and a `Content-Length` body).
async fn read_response(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed mid-response");
        bytes.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&bytes);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text.into_owned();
            }
        }
    }
}

/// A connection that has had one request answered and stays open, idle.
async fn served_connection(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), read_response(&mut stream))
        .await
        .expect("a connection under the limit is served");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    stream
}

/// A client that connects and sends nothing, and one that stops halfway
/// through its request line, are both disconnected once the header-read
/// timeout has passed; other clients are served meanwhile and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    let service = Service::start_with(Backend::Sqlite, |_, options| {
        options.connections.header_read_timeout = TIMEOUT;
    })
    .await;
    let started = Instant::now();
    let silent = TcpStream::connect(service.addr).await.unwrap();
    let mut halfway = TcpStream::connect(service.addr).await.unwrap();
    halfway.write_all(b"GET /heal").await.unwrap();
    assert_eq!(healthz(&service).await, StatusCode::OK);

    for (client, mut stream) in [("silent", silent), ("halfway", halfway)] {
        let closed = tokio::time::timeout(TIMEOUT + Duration::from_secs(4), read_until_closed(&mut stream)).await;
        assert!(closed.is_ok(), "the {client} client is still connected");
        assert!(
            started.elapsed() >= TIMEOUT,
            "the {client} client was dropped before the timeout"
        );
    }
    assert_eq!(healthz(&service).await, StatusCode::OK);
    service.stop().await;
}

/// With a limit of two connections, two open (idle) ones take it: a third
/// client's request is not answered while they stay open, and is answered
/// once one of them closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_the_limit_waits_until_another_closes() {
    let service = Service::start_with(Backend::Sqlite, |_, options| {
        options.connections.max_connections = 2;
        // The idle connections must outlast the test.
        options.connections.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let first = served_connection(service.addr).await;
    let second = served_connection(service.addr).await;

    let mut third = TcpStream::connect(service.addr).await.unwrap();
    third.write_all(HEALTHZ).await.unwrap();
    let mut buf = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(early.is_err(), "the third connection was answered while two were open");

    drop(first);
    let response = tokio::time::timeout(Duration::from_secs(5), read_response(&mut third))
        .await
        .expect("the third connection is served once another closes");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    drop((second, third));
    service.stop().await;
}
