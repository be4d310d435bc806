//! The control socket: root only, one JSON request per connection, served off the event loop.
//!
//! An acceptor thread takes connections; each gets a short-lived thread that checks the
//! caller (`SO_PEERCRED`), reads its request (at most [`MAX_REQUEST`] bytes within
//! [`READ_TIMEOUT`]) and hands it to the event loop as a [`Call`] through a channel, waking the
//! loop with an eventfd. So a client that connects and says nothing holds only its own thread:
//! it never delays kernel events or other clients. At most [`MAX_CLIENTS`] connections are
//! read at once; beyond that a caller is told to retry. (Modelled on Firecracker's API server
//! thread, `api_server_adapter.rs`.)

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ipvlan_linux::EventFd;
use tracing::warn;

use crate::proto::{ErrorKind, Request, Response, MAX_REQUEST};

/// How long a client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections read at the same time; more are refused with a "busy" answer.
pub const MAX_CLIENTS: usize = 64;

/// Binds the socket at `path` with mode 0600, replacing a stale one (but never a live daemon's).
pub fn listen(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!(
                "another ipvlan daemon is already listening on {}",
                path.display()
            );
        }
        fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding control socket {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// A request read from a client, waiting for the event loop's answer.
pub struct Call {
    pub request: Request,
    reply: SyncSender<Response>,
}

impl Call {
    /// Sends the answer to the client's thread (a client that gave up is no error).
    pub fn answer(self, response: Response) {
        let _ = self.reply.send(response);
    }
}

/// The event loop's end of the control socket.
pub struct ControlServer {
    calls: Receiver<Call>,
    wake: Arc<EventFd>,
}

impl ControlServer {
    /// Starts the acceptor thread on `listener`.
    pub fn spawn(listener: UnixListener) -> io::Result<ControlServer> {
        listener.set_nonblocking(false)?;
        let (tx, calls) = mpsc::channel();
        let wake = Arc::new(EventFd::new()?);
        let w = wake.clone();
        std::thread::Builder::new()
            .name("ipvlan-control".into())
            .spawn(move || accept_loop(&listener, &tx, &w))?;
        Ok(ControlServer { calls, wake })
    }

    /// Readable when calls are waiting.
    pub fn fd(&self) -> RawFd {
        self.wake.fd()
    }

    /// The calls waiting now.
    pub fn pending(&self) -> Vec<Call> {
        self.wake.drain();
        self.calls.try_iter().collect()
    }
}

fn accept_loop(listener: &UnixListener, tx: &Sender<Call>, wake: &Arc<EventFd>) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                warn!("control socket: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::SeqCst);
            let busy = Response::Error {
                kind: ErrorKind::System,
                message: format!("the daemon is busy ({MAX_CLIENTS} requests in progress): retry"),
            };
            let _ = stream.set_nonblocking(true);
            write_response(&mut stream, &busy);
            continue;
        }
        let (tx, wake, active) = (tx.clone(), wake.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("ipvlan-client".into())
            .spawn(move || {
                serve_client(stream, &tx, &wake);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            warn!("control socket: cannot start a client thread: {e}");
        }
    }
}

/// Reads one request, has the event loop carry it out, writes the answer.
fn serve_client(mut stream: UnixStream, tx: &Sender<Call>, wake: &EventFd) {
    let response = match read_request(&mut stream) {
        Err(refusal) => refusal,
        Ok(request) => {
            let (reply, answer) = mpsc::sync_channel(1);
            if tx.send(Call { request, reply }).is_err() {
                return; // the daemon is shutting down: the client sees the connection close
            }
            wake.signal();
            match answer.recv() {
                Ok(r) => r,
                Err(_) => Response::Error {
                    kind: ErrorKind::System,
                    message: "the daemon shut down before answering".into(),
                },
            }
        }
    };
    write_response(&mut stream, &response);
    // A refused client may still be sending (an oversized request): closing with its bytes
    // unread would reset the connection and lose the answer. Read on (bounded) until it stops.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = io::copy(&mut (&mut stream).take(DRAIN_MAX), &mut io::sink());
}

/// Bytes read and discarded after answering, so the client sees the answer.
const DRAIN_MAX: u64 = 1 << 20;

/// Reads one request. Errors become responses; they never reach the daemon's loop.
pub fn read_request(stream: &mut UnixStream) -> std::result::Result<Request, Response> {
    let err = |kind, message: String| Response::Error { kind, message };
    match ipvlan_linux::cred::peer_credentials(stream).map(|c| c.uid) {
        Ok(0) => {}
        Ok(uid) => {
            return Err(err(
                ErrorKind::Invalid,
                format!("permission denied: uid {uid} is not root"),
            ))
        }
        Err(e) => {
            return Err(err(
                ErrorKind::System,
                format!("cannot check the caller: {e}"),
            ))
        }
    }
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let mut body = Vec::new();
    let mut limited = (&mut *stream).take(MAX_REQUEST as u64 + 1);
    if let Err(e) = limited.read_to_end(&mut body) {
        return Err(err(ErrorKind::Invalid, format!("reading the request: {e}")));
    }
    if body.len() > MAX_REQUEST {
        return Err(err(
            ErrorKind::Invalid,
            format!("request larger than {MAX_REQUEST} bytes"),
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|e| err(ErrorKind::Invalid, format!("malformed request: {e}")))
}

pub fn write_response(stream: &mut UnixStream, resp: &Response) {
    if let Ok(body) = serde_json::to_vec(resp) {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = stream.write_all(&body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::LinkShow;
    use std::time::Instant;

    fn socket_path(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("ipvlan-ctl-{tag}-{}.sock", std::process::id()))
    }

    fn call(path: &Path, body: &[u8]) -> Response {
        let mut s = UnixStream::connect(path).expect("connect");
        s.write_all(body).expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut out = Vec::new();
        s.read_to_end(&mut out).expect("read");
        serde_json::from_slice(&out).expect("a JSON response")
    }

    /// Five clients that connect and say nothing do not delay a sixth: its request reaches
    /// the event loop at once. (Run as any user: the caller check refuses non-root callers
    /// with an answer, which arrives just as fast.)
    #[test]
    fn silent_clients_do_not_delay_others() {
        let path = socket_path("silent");
        let server = ControlServer::spawn(listen(&path).expect("listen")).expect("spawn");
        let silent: Vec<UnixStream> = (0..5)
            .map(|_| UnixStream::connect(&path).expect("connect"))
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        let body =
            serde_json::to_vec(&Request::LinkShow(LinkShow { name: None })).expect("serialise");
        let loop_thread = std::thread::spawn(move || {
            // The event loop: answer the first call that arrives.
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Some(c) = server.pending().into_iter().next() {
                    c.answer(Response::Ok {
                        notes: vec!["served".into()],
                        links: Vec::new(),
                    });
                    return true;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            false
        });
        let resp = call(&path, &body);
        let took = started.elapsed();
        let root = nix::unistd::geteuid().is_root();
        if root {
            assert!(
                loop_thread.join().expect("loop"),
                "the call reached the loop"
            );
            assert!(
                matches!(&resp, Response::Ok { notes, .. } if notes == &["served".to_string()]),
                "{resp:?}"
            );
        } else {
            assert!(
                matches!(&resp, Response::Error { message, .. } if message.contains("permission denied")),
                "{resp:?}"
            );
        }
        assert!(
            took < Duration::from_millis(100),
            "answered in {took:?} with 5 silent clients connected"
        );
        drop(silent);
        let _ = fs::remove_file(&path);
    }

    #[test]
    #[ignore = "needs root: the caller check answers non-root callers first"]
    fn oversized_and_malformed_requests_are_answered() {
        assert!(nix::unistd::geteuid().is_root(), "run as root");
        let path = socket_path("bad");
        let _server = ControlServer::spawn(listen(&path).expect("listen")).expect("spawn");
        let resp = call(&path, b"{not json");
        assert!(
            matches!(&resp, Response::Error { message, .. } if message.contains("malformed request")),
            "{resp:?}"
        );
        let resp = call(&path, &vec![b'x'; MAX_REQUEST + 10]);
        assert!(
            matches!(&resp, Response::Error { message, .. } if message.contains("larger than")),
            "{resp:?}"
        );
        let _ = fs::remove_file(&path);
    }
}
