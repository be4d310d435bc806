//! The metrics listener: routing (pure), and a real listener on a loopback port answered by a
//! stand-in event loop (no root, no daemon).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::daemon::control::{listen, ControlServer};

#[test]
fn listen_values() {
    assert_eq!(
        parse_listen("9477").unwrap(),
        "127.0.0.1:9477".parse().unwrap()
    );
    assert_eq!(
        parse_listen("0.0.0.0:9477").unwrap(),
        "0.0.0.0:9477".parse().unwrap()
    );
    assert_eq!(
        parse_listen("[::1]:80").unwrap(),
        "[::1]:80".parse().unwrap()
    );
    for bad in ["", "localhost:9477", "70000", "::1:80", "1.2.3.4"] {
        let e = parse_listen(bad).unwrap_err();
        assert!(e.contains("is not PORT, ADDR:PORT"), "{bad}: {e}");
    }
}

#[test]
fn routes() {
    let om = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let cases: &[(&str, Route)] = &[
        (
            "GET /metrics HTTP/1.1\r\nHost: x\r\n",
            Route::Metrics {
                format: Format::Prometheus,
                head_only: false,
            },
        ),
        (
            &format!("GET /metrics?x=1 HTTP/1.0\r\naccept: {om}\r\n"),
            Route::Metrics {
                format: Format::OpenMetrics,
                head_only: false,
            },
        ),
        (
            "HEAD /metrics HTTP/1.1\nAccept: text/plain\n",
            Route::Metrics {
                format: Format::Prometheus,
                head_only: true,
            },
        ),
        ("GET / HTTP/1.1\r\n", Route::NotFound),
        ("GET /metricsx HTTP/1.1\r\n", Route::NotFound),
        ("POST /metrics HTTP/1.1\r\n", Route::MethodNotAllowed),
        ("GET /metrics\r\n", Route::BadRequest),
        ("GET /metrics HTTP/2\r\n", Route::BadRequest),
        ("GET metrics HTTP/1.1\r\n", Route::BadRequest),
        ("\u{1}\u{2}", Route::BadRequest),
        ("", Route::BadRequest),
    ];
    for (head, want) in cases {
        assert_eq!(route(head.as_bytes()), *want, "{head:?}");
    }
}

/// A listener on 127.0.0.1 (an ephemeral port) whose event loop is a thread answering every
/// call with a daemon without slaves, until the returned flag is set.
fn server(tag: &str) -> (SocketAddr, Arc<AtomicBool>) {
    let path: PathBuf =
        std::env::temp_dir().join(format!("ipvlan-metrics-{tag}-{}.sock", std::process::id()));
    let control = ControlServer::spawn(listen(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    spawn(l, control.submitter()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            for c in control.pending() {
                c.answer(Response::Ok {
                    notes: Vec::new(),
                    links: Vec::new(),
                    ports: Vec::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    (addr, stop)
}

fn get(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serves_metrics_and_nothing_else() {
    let (addr, stop) = server("serve");
    let r = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{r}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{r}"
    );
    assert!(body.contains("\nipvlan_ports 0\n"), "{body}");

    let r = get(
        addr,
        "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
    );
    assert!(
        r.contains("Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{r}"
    );
    assert!(r.ends_with("# EOF\n"), "{r}");

    let r = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
        "{r}"
    );

    let r = get(addr, "GET /favicon.ico HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
    let r = get(
        addr,
        "DELETE /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert!(
        r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n") && r.contains("Allow: GET, HEAD"),
        "{r}"
    );
    let r = get(addr, "hello\n\n");
    assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
    let r = get(
        addr,
        &format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        ),
    );
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    stop.store(true, Ordering::Relaxed);
}

/// Scrapers that connect and say nothing hold only their own thread: with all but one slot
/// taken, a scrape is answered at once.
#[test]
fn silent_clients_do_not_delay_a_scrape() {
    let (addr, stop) = server("silent");
    let silent: Vec<TcpStream> = (0..MAX_CONNECTIONS - 1)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let r = get(addr, "GET /metrics HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // A silent client is let go, unanswered, once the read timeout passes.
    let mut s = silent.into_iter().next().unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT * 2)).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        s.read_to_end(&mut out).unwrap(),
        0,
        "closed without an answer"
    );
    assert!(
        t.elapsed() < READ_TIMEOUT + Duration::from_secs(1),
        "{:?}",
        t.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
}

/// Many silent or slow clients (a port scanner, a broken scraper, any local user: the port is
/// open to every user of the host) do not hold a scrape back: each has a thread of its own
/// while it is read, up to a bound far above what a scraper needs.
#[test]
fn many_silent_clients_do_not_delay_a_scrape() {
    let (addr, stop) = server("many-silent");
    let silent: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // And one that sends its request a byte at a time.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"G").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let r = get(addr, "GET /metrics HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    drop((silent, slow));
    stop.store(true, Ordering::Relaxed);
}
