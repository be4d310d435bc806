//! Handing IP packets to the master namespace's stack (L2 local miss, R-TX-L2-3; l3 egress,
//! R-TX-L3-3): raw sockets with the header included, opened in the master's namespace, so the
//! packet enters that namespace's routing and local output with its own source address.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::cvt;
use crate::packet::setsockopt;

/// Raw IPv4 and IPv6 sockets in one namespace.
#[derive(Debug)]
pub struct HostStack {
    v4: OwnedFd,
    v6: OwnedFd,
}

fn raw_socket(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = cvt(unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    })?;
    // SAFETY: a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl HostStack {
    /// Opens the sockets in the calling thread's namespace. The IPv4 one is bound to the master
    /// `device`, so its route lookup is pinned to it as the kernel's is (R-TX-L3-3 step 4); for
    /// IPv6 the kernel's interface hint is only a preference (step 5), so that one is not.
    pub fn open(device: &str) -> io::Result<HostStack> {
        let v4 = raw_socket(libc::AF_INET)?;
        let v6 = raw_socket(libc::AF_INET6)?;
        let name = crate::ifr_name(device)?;
        // SAFETY: passing the NUL-terminated name buffer with its length.
        crate::cvt(unsafe {
            libc::setsockopt(
                v4.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                name.as_ptr().cast(),
                device.len() as libc::socklen_t,
            )
        })?;
        let one: libc::c_int = 1;
        // Any source address is allowed (R-TX-NOVALIDATE): freebind + transparent.
        setsockopt(&v4, libc::SOL_IP, libc::IP_FREEBIND, &one)?;
        setsockopt(&v6, libc::SOL_IPV6, libc::IPV6_FREEBIND, &one)?;
        let _ = setsockopt(&v4, libc::SOL_IP, libc::IP_TRANSPARENT, &one);
        let _ = setsockopt(&v6, libc::SOL_IPV6, libc::IPV6_TRANSPARENT, &one);
        setsockopt(&v6, libc::SOL_IPV6, libc::IPV6_HDRINCL, &one)?;
        Ok(HostStack { v4, v6 })
    }

    /// Sends one complete IPv4 or IPv6 packet (header included) into the stack, addressed to
    /// `dst` (its destination).
    pub fn send(&self, packet: &[u8], dst: IpAddr) -> io::Result<usize> {
        let ret = match dst {
            IpAddr::V4(a) => {
                // SAFETY: sockaddr_in is plain old data.
                let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                // SAFETY: sending a borrowed buffer to a sockaddr_in of the size we pass.
                unsafe {
                    libc::sendto(
                        self.v4.as_raw_fd(),
                        packet.as_ptr().cast(),
                        packet.len(),
                        0,
                        (&sin as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                }
            }
            IpAddr::V6(a) => {
                // SAFETY: sockaddr_in6 is plain old data.
                let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_addr.s6_addr = a.octets();
                // SAFETY: as above, for sockaddr_in6.
                unsafe {
                    libc::sendto(
                        self.v6.as_raw_fd(),
                        packet.as_ptr().cast(),
                        packet.len(),
                        0,
                        (&sin6 as *const libc::sockaddr_in6).cast(),
                        std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    )
                }
            }
        };
        crate::cvt_size(ret)
    }
}
