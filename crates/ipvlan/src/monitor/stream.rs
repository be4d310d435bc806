//! The daemon's side of one `monitor drops` connection: after the event loop accepted the
//! request, the connection's own thread joins the [`HUB`] and writes the stream — the
//! answer, then one JSON [`Item`] a line — until the client goes.
//!
//! Nothing here can stall the daemon: the data paths only ever `try_send` into this watcher's
//! bounded queue; a write that the client does not take within [`WRITE_TIMEOUT`] ends the
//! stream (a stopped or stuck client), and an empty line every [`HEARTBEAT`] while nothing
//! happens finds a client that has gone (the write fails), so its leaving turns the data
//! paths' flag off when it was the last.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use super::{Item, HUB};
use crate::proto::{ErrorKind, Response};

/// How long one write may wait for the client to read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle stream is probed (an empty line) and the counts of what was not copied
/// are reported.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Serves the stream of the drops charged to `filter` (or all) on `stream`, `answer` (the
/// event loop's acceptance) first. Returns when the client is gone or too slow.
pub fn serve(mut stream: UnixStream, filter: Option<String>, answer: Response) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut watch = match HUB.join(filter.clone()) {
        Ok(w) => w,
        Err(e) => {
            let _ = write_line(
                &mut stream,
                &Response::Error {
                    kind: ErrorKind::Conflict,
                    message: e.to_string(),
                },
            );
            return;
        }
    };
    info!(filter = ?filter, watchers = HUB.watchers(), "drop monitor started");
    // The eBPF ports' programs copy from now on: what follows the answer is seen.
    HUB.wait_armed(Duration::from_secs(1));
    let ended = (|| -> io::Result<()> {
        write_line(&mut stream, &answer)?;
        let mut last_report = Instant::now();
        loop {
            match watch.events.recv_timeout(HEARTBEAT) {
                Ok(e) => write_line(&mut stream, &Item::from_event(&e))?,
                Err(RecvTimeoutError::Timeout) => stream.write_all(b"\n")?,
                Err(RecvTimeoutError::Disconnected) => {
                    if let (true, Some(dev)) = (watch.gone(), &filter) {
                        write_line(&mut stream, &Item::Gone { dev: dev.clone() })?;
                    }
                    return Ok(());
                }
            }
            if last_report.elapsed() >= HEARTBEAT {
                last_report = Instant::now();
                let lost = watch.take_lost();
                if lost > 0 {
                    write_line(&mut stream, &Item::Lost { count: lost })?;
                }
                let limited = watch.take_rate_limited();
                if limited > 0 {
                    write_line(&mut stream, &Item::RateLimited { count: limited })?;
                }
            }
        }
    })();
    if let Err(e) = ended {
        debug!("drop monitor client gone: {e}");
    }
    drop(watch);
    info!(watchers = HUB.watchers(), "drop monitor ended");
}

/// Writes `v` as one JSON line.
fn write_line(stream: &mut UnixStream, v: &impl serde::Serialize) -> io::Result<()> {
    let mut line = serde_json::to_vec(v).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}
