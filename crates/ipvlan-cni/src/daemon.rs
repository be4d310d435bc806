//! Talking to the ipvlan-rs daemon that makes and serves the slaves: where its control socket
//! is, one request, and the wait until it serves a container's addresses.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipvlan::client;
use ipvlan::proto::{LinkShow, LinkView, Request, Response};

use crate::error::{CniError, Code};

/// The daemon's control socket: `socket` from the configuration, else `IPVLAN_SOCKET`, else
/// the daemon's default (`/run/ipvlan/ipvlan.sock`).
pub fn socket_path(configured: Option<&str>) -> PathBuf {
    configured
        .map(str::to_owned)
        .or_else(|| std::env::var("IPVLAN_SOCKET").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| ipvlan::proto::DEFAULT_SOCKET.to_owned())
        .into()
}

/// The daemon could not be reached or did not answer (code 11, try again later).
pub fn call(socket: &Path, req: &Request) -> Result<Response, CniError> {
    client::call(socket, req).map_err(|e| {
        CniError::new(
            Code::TryAgainLater,
            format!("the ipvlan-rs daemon at {}: {e:#}", socket.display()),
        )
    })
}

/// The daemon's view of slave `name`; `None` if it has none of that name.
pub fn show(socket: &Path, name: &str) -> Result<Option<LinkView>, CniError> {
    match call(
        socket,
        &Request::LinkShow(LinkShow {
            name: Some(name.to_owned()),
        }),
    )? {
        Response::Ok { links, .. } => Ok(links.into_iter().next()),
        Response::Error { .. } => Ok(None),
    }
}

/// Every slave the daemon serves.
pub fn show_all(socket: &Path) -> Result<Vec<LinkView>, CniError> {
    match call(socket, &Request::LinkShow(LinkShow { name: None }))? {
        Response::Ok { links, .. } => Ok(links),
        Response::Error { message, .. } => Err(CniError::new(Code::Plugin, message)),
    }
}

/// How long ADD waits for the daemon to serve the container's addresses.
pub const SERVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Returns once the daemon serves every address in `want` on slave `name` (lists it as the
/// slave's, which it does only once its forwarding state is in place), so that the
/// container's first packet is not lost; an error after [`SERVE_TIMEOUT`], naming what is
/// missing and, for an address another slave owns, that slave.
pub fn wait_served(socket: &Path, name: &str, want: &[std::net::IpAddr]) -> Result<(), CniError> {
    let want: Vec<String> = want.iter().map(ToString::to_string).collect();
    if want.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + SERVE_TIMEOUT;
    loop {
        let link = show(socket, name)?.ok_or_else(|| {
            CniError::new(
                Code::Plugin,
                format!("the daemon no longer has the new slave {name}: it went with the container's namespace as the daemon sees it — can the daemon see CNI_NETNS (is it in another mount namespace, or was the namespace deleted)? see the daemon's log"),
            )
        })?;
        let missing: Vec<&String> = want
            .iter()
            .filter(|a| !link.addresses.contains(a))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let why: Vec<String> = missing
                .iter()
                .map(|a| match link.conflicts.iter().find(|c| &&c.address == a) {
                    Some(c) => format!("{a} (owned by slave {})", c.owner),
                    None => a.to_string(),
                })
                .collect();
            return Err(CniError::new(
                Code::Plugin,
                format!(
                    "the daemon does not serve {} on the new interface after {} s (see `ipvlan link show`)",
                    why.join(", "),
                    SERVE_TIMEOUT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
