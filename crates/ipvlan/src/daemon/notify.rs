//! Telling a service manager how the daemon is doing: systemd's notification protocol
//! (`sd_notify(3)`: `KEY=VALUE` lines in one datagram to the unix socket named by
//! `$NOTIFY_SOCKET`), through the `sd-notify` crate. Without `NOTIFY_SOCKET` (not started by
//! systemd with `Type=notify`) every call does nothing.
//!
//! `deploy/systemd/ipvlan.service` is `Type=notify`: `READY=1` is sent once the control socket
//! answers requests, so a unit ordered `After=ipvlan.service` can use the socket at once.

use std::path::Path;

use sd_notify::NotifyState;
use tracing::warn;

/// Sends `READY=1` and a `STATUS=` line naming the socket and what was restored: called when
/// the control socket is bound, the restored slaves are served and requests are taken.
pub(super) fn ready(socket: &Path, ports: usize, slaves: usize) {
    let status = format!(
        "serving {slaves} slave(s) on {ports} master(s); control socket {}",
        socket.display()
    );
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Sends `STOPPING=1`: the daemon is shutting down (slaves persist for the next start).
pub(super) fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("shutting down (slaves persist; a restart serves them again)"),
    ]);
}

fn send(states: &[NotifyState]) {
    // A manager that asked for notifications and cannot get them will time the start out and
    // say so; the daemon itself works on.
    if let Err(e) = sd_notify::notify(states) {
        warn!("cannot notify the service manager (NOTIFY_SOCKET): {e}");
    }
}
