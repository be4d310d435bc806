//! Who is at the other end of a Unix socket (`SO_PEERCRED`, through
//! `nix::sys::socket::sockopt::PeerCredentials`).

use std::io;
use std::os::unix::net::UnixStream;

use nix::sys::socket::{getsockopt, sockopt};

/// The peer's process credentials as the kernel recorded them when it connected
/// (`struct ucred` of `<linux/socket.h>`): the same fields, by the same names, as `libc::ucred`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id, in this process's pid namespace (0 if the peer is in none of its
    /// descendants' or its own).
    pub pid: libc::pid_t,
    /// Effective user id.
    pub uid: libc::uid_t,
    /// Effective group id.
    pub gid: libc::gid_t,
}

impl PeerCred {
    /// The effective user id.
    pub fn uid(&self) -> libc::uid_t {
        self.uid
    }
}

/// The peer's process credentials: pid, uid, gid. Fails only if `stream` is not a connected
/// Unix socket (`ENOTCONN`, `ENOTSOCK`).
pub fn peer_credentials(stream: &UnixStream) -> io::Result<PeerCred> {
    let c = getsockopt(stream, sockopt::PeerCredentials)?;
    Ok(PeerCred {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_pair_sees_this_process() {
        let (a, _b) = UnixStream::pair().expect("socketpair");
        let c = peer_credentials(&a).expect("SO_PEERCRED");
        assert_eq!(c.pid, std::process::id() as libc::pid_t);
        // /proc/self belongs to the effective uid and gid.
        let me = std::fs::metadata("/proc/self").expect("/proc/self");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(c.uid(), me.uid());
        assert_eq!(c.gid, me.gid());
    }
}
