//! `ipvlan daemon --metrics-listen [ADDR:]PORT`: `GET /metrics` over HTTP/1.x, the text of
//! `ipvlan metrics` ([`crate::metrics::render`]), for Prometheus to scrape. Opt-in; `PORT`
//! alone listens on 127.0.0.1 only.
//!
//! It never stalls the daemon nor a scrape: an acceptor thread of its own gives each
//! connection a short-lived thread (at most [`MAX_CONNECTIONS`] at once; more wait in the
//! listen backlog, at most [`READ_TIMEOUT`] since every slot frees within it), which reads the
//! request head within [`READ_TIMEOUT`] and at most [`MAX_HEAD`] bytes, answers with
//! `Connection: close`, and writes within [`WRITE_TIMEOUT`]. So a client that connects and
//! says nothing, or sends a byte at a time, holds only its own thread (the port is open to
//! every local user, not only to root as the control socket is), as the control socket's
//! clients do (`control.rs`). The numbers come from the event loop exactly as `link show` gets
//! them: a `LinkShow` request queued through the control socket's channel
//! ([`Submitter`]), answered between two batches of kernel events, so no lock the data plane
//! takes is held longer than for `ipvlan -s link show`.
//!
//! Why std's `TcpListener` and not an HTTP crate: the one resource is a fixed path answered
//! with one body, which needs only the request line and the `Accept` header; `tiny_http` (the
//! small synchronous server) has no per-connection read timeout nor a bound on connections
//! being read, which are what keep a slow or silent scraper from holding the daemon's threads.
//! The parsing is [`route`], a pure function with its tests. Answers: 200 for `GET`/`HEAD
//! /metrics` (a query string is ignored), 404 for another path, 405 for another method, 400
//! for a request line that is not HTTP, 431 for a head over [`MAX_HEAD`], 503 when the event
//! loop did not answer within [`ANSWER_TIMEOUT`]. The format follows `Accept`
//! ([`Format::from_accept`]): OpenMetrics for Prometheus (which asks for it), else the 0.0.4
//! text format.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::control::{serve_each, Submitter};
use crate::metrics::{render, Format};
use crate::proto::{LinkShow, Request, Response};

/// Connections read or answered at once, each on a thread of its own; more wait in the listen
/// backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its whole request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing an answer may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head (request line and headers) read.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long the event loop may take to answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses `--metrics-listen`'s value: `PORT` (on 127.0.0.1), `ADDR:PORT` or `[V6ADDR]:PORT`,
/// addresses as literals (no names are resolved). The error says what is expected.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse::<SocketAddr>().map_err(|_| {
        format!(
            "--metrics-listen: \"{s}\" is not PORT, ADDR:PORT or [IPV6]:PORT (e.g. 9477, \
             127.0.0.1:9477, [::1]:9477)"
        )
    })
}

/// Binds the listener (before the daemon serves anything, so a taken port stops the start).
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("--metrics-listen {addr}: binding"))
}

/// Starts the thread accepting on `listener`; each connection is served on a thread of its
/// own, asking the event loop through `control`.
pub fn spawn(listener: TcpListener, control: Submitter) -> io::Result<()> {
    std::thread::Builder::new()
        .name("ipvlan-metrics".into())
        .spawn(move || accept_loop(&listener, &control))?;
    Ok(())
}

fn accept_loop(listener: &TcpListener, control: &Submitter) {
    let control = control.clone();
    serve_each(
        "metrics listener",
        "ipvlan-scrape",
        MAX_CONNECTIONS,
        Duration::from_millis(100),
        || listener.accept().map(|(s, _)| s),
        move |stream| serve(stream, &control),
    );
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (`head_only`: `HEAD`), in this format.
    Metrics { format: Format, head_only: bool },
    /// 400: not an HTTP/1.x request line.
    BadRequest,
    /// 404: another path.
    NotFound,
    /// 405: another method.
    MethodNotAllowed,
}

/// Routes a request head (the bytes before the empty line).
pub fn route(head: &[u8]) -> Route {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let request_line = lines.next().unwrap_or_default();
    let mut words = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Route::BadRequest;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if path != "/metrics" {
        return Route::NotFound;
    }
    let accept = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("accept")
            .then(|| value.trim())
    });
    Route::Metrics {
        format: Format::from_accept(accept),
        head_only,
    }
}

/// How reading a request head ended.
enum Head {
    /// The head, up to the empty line.
    Complete(Vec<u8>),
    TooLarge,
    /// Closed, timed out or failed before the head was complete: nothing to answer.
    Gone,
}

/// Reads up to the end of the head (`\r\n\r\n`, or `\n\n`) within [`READ_TIMEOUT`] in all.
fn read_head(stream: &mut TcpStream) -> Head {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match head_end(&buf) {
            Some(end) if end <= MAX_HEAD => {
                buf.truncate(end);
                return Head::Complete(buf);
            }
            Some(_) => return Head::TooLarge,
            None if buf.len() > MAX_HEAD => return Head::TooLarge,
            None => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Head::Gone;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Head::Gone,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Head::Gone,
        }
    }
}

/// Where the head ends (the index of its empty line), if it does.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Serves one connection: one request, one answer, then close.
fn serve(mut stream: TcpStream, control: &Submitter) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let head = match read_head(&mut stream) {
        Head::Complete(h) => h,
        Head::TooLarge => {
            respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                TEXT,
                b"request head too large\n",
                false,
            );
            return;
        }
        Head::Gone => return,
    };
    match route(&head) {
        Route::Metrics { format, head_only } => {
            let request = Request::LinkShow(LinkShow { name: None });
            match control.call(request, ANSWER_TIMEOUT) {
                Some(Response::Ok { links, ports, .. }) => {
                    let body = render(&links, &ports, format);
                    respond(
                        &mut stream,
                        "200 OK",
                        format.content_type(),
                        body.as_bytes(),
                        head_only,
                    );
                }
                Some(Response::Error { message, .. }) => {
                    let body = format!("the daemon refused: {message}\n");
                    respond(
                        &mut stream,
                        "503 Service Unavailable",
                        TEXT,
                        body.as_bytes(),
                        head_only,
                    );
                }
                None => respond(
                    &mut stream,
                    "503 Service Unavailable",
                    TEXT,
                    b"the daemon did not answer in time\n",
                    head_only,
                ),
            }
        }
        Route::NotFound => respond(
            &mut stream,
            "404 Not Found",
            TEXT,
            b"not found: the metrics are at /metrics\n",
            false,
        ),
        Route::MethodNotAllowed => respond(
            &mut stream,
            "405 Method Not Allowed",
            TEXT,
            b"only GET and HEAD\n",
            false,
        ),
        Route::BadRequest => respond(
            &mut stream,
            "400 Bad Request",
            TEXT,
            b"not an HTTP/1.x request\n",
            false,
        ),
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8], head_only: bool) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n{}\r\n",
        body.len(),
        if status.starts_with("405") {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        }
    );
    let _ = stream.write_all(head.as_bytes());
    if !head_only {
        let _ = stream.write_all(body);
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // A client still sending (a request body) would see a reset, not the answer, if its bytes
    // were left unread at close: read on briefly until it stops.
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// After answering, how long a client still sending is read and discarded.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

#[cfg(test)]
#[path = "metrics_listen_tests.rs"]
mod tests;
