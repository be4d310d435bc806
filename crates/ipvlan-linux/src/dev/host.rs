//! Handing IP packets to the master namespace's stack (L2 local miss, R-TX-L2-3; l3 egress,
//! R-TX-L3-3): raw sockets with the header included, opened in the master's namespace, so the
//! packet enters that namespace's routing and local output with its own source address.

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

use nix::sys::socket::{self, sockopt, MsgFlags, SockaddrIn, SockaddrIn6, SockaddrLike};

use crate::error::io_like_error;
use crate::sys::{ifr_name, raw_socket, setsockopt};

/// A failed opening of the raw sockets to the host stack. [`HostStack::send`] returns plain
/// `io::Error`s instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The device name is empty, has a NUL or is longer than 15 bytes (`IFNAMSIZ`; the kernel
    /// would silently cut it). Kind `InvalidInput`; no OS error.
    #[error("invalid interface name {device:?}")]
    InvalidName { device: String },
    /// `socket(AF_INET or AF_INET6, SOCK_RAW, IPPROTO_RAW)` failed (`EPERM` without
    /// `CAP_NET_RAW`); `family` is `IPv4` or `IPv6`.
    #[error("opening a raw {family} socket: {source}")]
    Socket {
        family: &'static str,
        #[source]
        source: io::Error,
    },
    /// Setting a socket option failed; `option` is its name in `<linux/in.h>`, `<linux/in6.h>`
    /// or `<asm-generic/socket.h>` (`SO_BINDTODEVICE`, `IP_FREEBIND`…).
    #[error("setting {option} on the raw socket for {device}: {source}")]
    SetOption {
        device: String,
        option: &'static str,
        #[source]
        source: io::Error,
    },
}

impl HostError {
    pub(crate) fn io_source(&self) -> Option<&io::Error> {
        match self {
            HostError::InvalidName { .. } => None,
            HostError::Socket { source, .. } | HostError::SetOption { source, .. } => Some(source),
        }
    }

    fn own_kind(&self) -> Option<io::ErrorKind> {
        match self {
            HostError::InvalidName { .. } => Some(io::ErrorKind::InvalidInput),
            _ => None,
        }
    }
}

io_like_error!(HostError);

/// Raw IPv4 and IPv6 sockets in one namespace.
#[derive(Debug)]
pub struct HostStack {
    v4: OwnedFd,
    v6: OwnedFd,
    /// IPv4, not bound to the master: for what the namespace itself sends anywhere
    /// ([`HostStack::send_unpinned`]).
    v4_any: OwnedFd,
    /// Unconnected UDP sockets of the same namespace, connected only to ask the stack which
    /// source address it picks towards a destination ([`HostStack::source_for`]); `None` for a
    /// family the namespace has no stack for.
    probe: Mutex<(Option<UdpSocket>, Option<UdpSocket>)>,
}

impl HostStack {
    /// Opens the sockets in the calling thread's namespace. The IPv4 one is bound to the master
    /// `device` (`SO_BINDTODEVICE`), so its route lookup is pinned to it as the kernel's is
    /// (R-TX-L3-3 step 4); for IPv6 the kernel's interface hint is only a preference (step 5),
    /// so that one is not. Both may send from any source address (`IP_FREEBIND`,
    /// `IPV6_FREEBIND`, and `IP(V6)_TRANSPARENT` where allowed); both take the IP header from
    /// the packet (`IPPROTO_RAW` implies it for IPv4, `IPV6_HDRINCL` for IPv6).
    pub fn open(device: &str) -> Result<HostStack, HostError> {
        if ifr_name(device).is_none() {
            return Err(HostError::InvalidName {
                device: device.to_owned(),
            });
        }
        let raw = |domain: libc::c_int, family: &'static str| {
            raw_socket(domain, libc::SOCK_RAW, libc::IPPROTO_RAW)
                .map_err(|source| HostError::Socket { family, source })
        };
        let v4 = raw(libc::AF_INET, "IPv4")?;
        let v6 = raw(libc::AF_INET6, "IPv6")?;
        let option = |option: &'static str| {
            move |source: io::Error| HostError::SetOption {
                device: device.to_owned(),
                option,
                source,
            }
        };
        socket::setsockopt(&v4, sockopt::BindToDevice, &OsString::from(device))
            .map_err(|e| option("SO_BINDTODEVICE")(e.into()))?;
        let one: libc::c_int = 1;
        // Any source address is allowed (R-TX-NOVALIDATE): freebind + transparent.
        setsockopt(&v4, libc::SOL_IP, libc::IP_FREEBIND, &one).map_err(option("IP_FREEBIND"))?;
        setsockopt(&v6, libc::SOL_IPV6, libc::IPV6_FREEBIND, &one)
            .map_err(option("IPV6_FREEBIND"))?;
        // Needs CAP_NET_ADMIN; freebind alone covers the daemon's own use.
        let _ = setsockopt(&v4, libc::SOL_IP, libc::IP_TRANSPARENT, &one);
        let _ = setsockopt(&v6, libc::SOL_IPV6, libc::IPV6_TRANSPARENT, &one);
        setsockopt(&v6, libc::SOL_IPV6, libc::IPV6_HDRINCL, &one)
            .map_err(option("IPV6_HDRINCL"))?;
        let v4_any = raw(libc::AF_INET, "IPv4")?;
        setsockopt(&v4_any, libc::SOL_IP, libc::IP_FREEBIND, &one)
            .map_err(option("IP_FREEBIND"))?;
        let probe = (
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok(),
            UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).ok(),
        );
        Ok(HostStack {
            v4,
            v6,
            v4_any,
            probe: Mutex::new(probe),
        })
    }

    /// The source address this namespace's stack picks for a packet to `to` (its route and
    /// source address selection, RFC 6724 for IPv6), as it would for an ICMP error it sends
    /// there. Nothing is sent: a UDP socket is connected, read back, and left connected until
    /// the next call. `ENETUNREACH`/`EHOSTUNREACH` when there is no route; `Unsupported` when
    /// the namespace has no stack of that family.
    pub fn source_for(&self, to: IpAddr) -> io::Result<IpAddr> {
        let probe = self
            .probe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let socket = match to {
            IpAddr::V4(_) => probe.0.as_ref(),
            IpAddr::V6(_) => probe.1.as_ref(),
        }
        .ok_or_else(|| io::Error::from(io::ErrorKind::Unsupported))?;
        socket.connect((to, 9))?;
        Ok(socket.local_addr()?.ip())
    }

    /// [`HostStack::send`], routed wherever the namespace routes `dst` (IPv4 too: not pinned
    /// to the master), as a packet the namespace itself originates (an ICMP error to a slave,
    /// which may be routed back through a slave of its own).
    pub fn send_unpinned(&self, packet: &[u8], dst: IpAddr) -> io::Result<usize> {
        match dst {
            IpAddr::V4(a) => Ok(socket::sendto(
                self.v4_any.as_raw_fd(),
                packet,
                &SockaddrIn::from(SocketAddrV4::new(a, 0)),
                MsgFlags::empty(),
            )?),
            IpAddr::V6(_) => self.send(packet, dst),
        }
    }

    /// Sends one complete IPv4 or IPv6 packet (header included) into the stack, addressed to
    /// `dst` (its destination); returns the bytes sent. `WouldBlock` when the send buffer is
    /// full.
    pub fn send(&self, packet: &[u8], dst: IpAddr) -> io::Result<usize> {
        let v4;
        let v6;
        let (fd, addr): (&OwnedFd, &dyn SockaddrLike) = match dst {
            IpAddr::V4(a) => {
                v4 = SockaddrIn::from(SocketAddrV4::new(a, 0));
                (&self.v4, &v4)
            }
            IpAddr::V6(a) => {
                v6 = SockaddrIn6::from(SocketAddrV6::new(a, 0, 0, 0));
                (&self.v6, &v6)
            }
        };
        Ok(socket::sendto(
            fd.as_raw_fd(),
            packet,
            addr,
            MsgFlags::empty(),
        )?)
    }
}
