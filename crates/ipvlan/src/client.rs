//! The CLI's side of the control socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::proto::{Request, Response};

/// Sends one request and waits for the response.
pub fn call(socket: &Path, req: &Request) -> Result<Response> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the ipvlan daemon at {} (is `ipvlan daemon` running? another socket: the CLI's --socket, the CNI configuration's \"socket\", netavark's -o socket=, or IPVLAN_SOCKET)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = serde_json::to_vec(req)?;
    // The daemon may answer (a refusal) before reading everything: a failed write is not the
    // end, its answer is still waiting to be read.
    let sent = stream.write_all(&body);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut reply = Vec::new();
    let read = stream.read_to_end(&mut reply);
    if reply.is_empty() {
        sent.context("sending the request")?;
        read.context("reading the daemon's answer")?;
    }
    serde_json::from_slice(&reply).context("the daemon's answer is not valid")
}
