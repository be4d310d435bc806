//! The control socket: root-only, one JSON request per connection.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::proto::{ErrorKind, Request, Response, MAX_REQUEST};

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
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Reads one request. Errors become responses; they never reach the daemon's loop.
pub fn read_request(stream: &mut UnixStream) -> Result<Request, Response> {
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
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
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
