//! The few raw system calls `nix` does not wrap for us, each in one small function so that the
//! `unsafe` sits here and not at every call site:
//!
//! - [`cvt`] and [`cvt_size`] turn a libc return value into an `io::Result`;
//! - [`IfReq`] is a `struct ifreq` (`<linux/if.h>`), and the TUN ioctls are typed by how they
//!   take their argument ([`Ioctl`]): [`ioctl_ifreq`] (a pointer to an `ifreq`),
//!   [`ioctl_int_ptr`] (a pointer to an `int`) and [`ioctl_value`] (an integer by value), in
//!   the style of cloud-hypervisor's `net_util/src/tap.rs` and Firecracker's `IfReqBuilder`;
//! - [`setsockopt`] and [`getsockopt`] for the options `nix::sys::socket::sockopt` lacks
//!   (`PACKET_*`, `IPV6_HDRINCL`, `IPV6_FREEBIND`, `NETLINK_LISTEN_ALL_NSID`);
//! - [`raw_socket`] for `socket(2)` with a protocol `nix::sys::socket::SockProtocol` cannot
//!   name (`IPPROTO_RAW`).

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use ipvlan_core::MacAddr;

/// Turns a libc return value into an `io::Result` (`errno` on a negative value).
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Turns a libc size return value into an `io::Result` (`errno` on a negative value).
pub(crate) fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// Copies an interface name into a zeroed, NUL-terminated `ifr_name`; `None` if the name is
/// empty, has a NUL, or does not fit in `IFNAMSIZ - 1` bytes.
pub(crate) fn ifr_name(name: &str) -> Option<[libc::c_char; libc::IFNAMSIZ]> {
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return None;
    }
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b as libc::c_char;
    }
    Some(out)
}

/// Reads a NUL-terminated `ifr_name` (the whole array if it has no NUL).
pub(crate) fn from_ifr_name(name: &[libc::c_char]) -> String {
    name.iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect()
}

/// A `struct ifreq` (`<linux/if.h>`), all zero but for the fields set through its methods.
/// Only writes to the `ifr_ifru` union happen here (safe in Rust); the kernel reads it.
pub(crate) struct IfReq(libc::ifreq);

impl IfReq {
    /// An `ifreq` naming `name`; `None` if the name is not a valid interface name.
    pub(crate) fn with_name(name: &str) -> Option<IfReq> {
        // SAFETY: `ifreq` is a C struct of integers, arrays and a union of such; all-zero bytes
        // are a valid value of every field (`ifr_name` empty, the union's integers 0).
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_name = ifr_name(name)?;
        Some(IfReq(req))
    }

    /// Sets `ifr_flags` (`TUNSETIFF`: `IFF_TAP | IFF_NO_PI | …`, a `short` in the kernel).
    pub(crate) fn set_flags(&mut self, flags: libc::c_int) {
        // The IFF_* flags of <linux/if_tun.h> are 16 bits wide; libc declares them as `int`.
        self.0.ifr_ifru.ifru_flags = flags as libc::c_short;
    }

    /// Sets `ifr_hwaddr` to an Ethernet address (`SIOCSIFHWADDR`).
    pub(crate) fn set_hwaddr(&mut self, mac: MacAddr) {
        let mut sa_data = [0 as libc::c_char; 14];
        for (d, s) in sa_data.iter_mut().zip(mac.0) {
            *d = s as libc::c_char;
        }
        self.0.ifr_ifru.ifru_hwaddr = libc::sockaddr {
            sa_family: libc::ARPHRD_ETHER,
            sa_data,
        };
    }

    /// The name in `ifr_name` (the kernel writes the device's name there on `TUNSETIFF` and
    /// `TUNGETIFF`).
    pub(crate) fn name(&self) -> String {
        from_ifr_name(&self.0.ifr_name)
    }
}

/// An ioctl request whose argument has the type `A` says ([`ByIfReq`], [`ByIntPtr`],
/// [`ByValue`]). Only the constants below exist (the fields are private to this module), so a
/// request is always passed the argument the kernel expects for it: that is what makes
/// [`ioctl_ifreq`], [`ioctl_int_ptr`] and [`ioctl_value`] safe to call.
pub(crate) struct Ioctl<A> {
    request: libc::Ioctl,
    name: &'static str,
    arg: PhantomData<A>,
}

impl<A> Clone for Ioctl<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for Ioctl<A> {}

impl<A> Ioctl<A> {
    const fn new(request: libc::Ioctl, name: &'static str) -> Ioctl<A> {
        Ioctl {
            request,
            name,
            arg: PhantomData,
        }
    }

    /// The request's name in the kernel headers (`TUNSETIFF`…), for error messages.
    pub(crate) const fn name(&self) -> &'static str {
        self.name
    }
}

/// The argument is a `struct ifreq *` the kernel reads and may write back.
pub(crate) enum ByIfReq {}
/// The argument is an `int *` the kernel only reads.
pub(crate) enum ByIntPtr {}
/// The argument is an integer passed by value (or ignored).
pub(crate) enum ByValue {}

// <linux/if_tun.h> and <linux/sockios.h>, the argument as drivers/net/tun.c reads it.
pub(crate) const TUNSETIFF: Ioctl<ByIfReq> = Ioctl::new(libc::TUNSETIFF, "TUNSETIFF");
pub(crate) const TUNGETIFF: Ioctl<ByIfReq> = Ioctl::new(libc::TUNGETIFF, "TUNGETIFF");
pub(crate) const SIOCSIFHWADDR: Ioctl<ByIfReq> =
    Ioctl::new(libc::SIOCSIFHWADDR as libc::Ioctl, "SIOCSIFHWADDR");
pub(crate) const TUNSETVNETHDRSZ: Ioctl<ByIntPtr> =
    Ioctl::new(libc::TUNSETVNETHDRSZ, "TUNSETVNETHDRSZ");
pub(crate) const TUNSETCARRIER: Ioctl<ByIntPtr> = Ioctl::new(libc::TUNSETCARRIER, "TUNSETCARRIER");
pub(crate) const TUNSETSTEERINGEBPF: Ioctl<ByIntPtr> =
    Ioctl::new(libc::TUNSETSTEERINGEBPF, "TUNSETSTEERINGEBPF");
pub(crate) const TUNSETPERSIST: Ioctl<ByValue> = Ioctl::new(libc::TUNSETPERSIST, "TUNSETPERSIST");
pub(crate) const TUNSETOFFLOAD: Ioctl<ByValue> = Ioctl::new(libc::TUNSETOFFLOAD, "TUNSETOFFLOAD");
pub(crate) const TUNSETOWNER: Ioctl<ByValue> = Ioctl::new(libc::TUNSETOWNER, "TUNSETOWNER");
pub(crate) const TUNSETGROUP: Ioctl<ByValue> = Ioctl::new(libc::TUNSETGROUP, "TUNSETGROUP");
pub(crate) const TUNGETDEVNETNS: Ioctl<ByValue> =
    Ioctl::new(libc::TUNGETDEVNETNS, "TUNGETDEVNETNS");

/// An ioctl whose argument is a pointer to a `struct ifreq` (`TUNSETIFF`, `TUNGETIFF`,
/// `SIOCSIFHWADDR`).
pub(crate) fn ioctl_ifreq(
    fd: BorrowedFd<'_>,
    ioctl: Ioctl<ByIfReq>,
    req: &mut IfReq,
) -> io::Result<()> {
    // SAFETY: `ioctl` is one of the `ByIfReq` constants above, each of which takes a
    // `struct ifreq *`; `req` is a whole, initialised `ifreq` that outlives the call, and the
    // kernel reads and writes at most `sizeof(struct ifreq)` bytes of it.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            ioctl.request,
            std::ptr::from_mut(&mut req.0),
        )
    })?;
    Ok(())
}

/// An ioctl whose argument is a pointer to an `int` the kernel only reads (`TUNSETVNETHDRSZ`,
/// `TUNSETCARRIER`, `TUNSETSTEERINGEBPF`).
pub(crate) fn ioctl_int_ptr(
    fd: BorrowedFd<'_>,
    ioctl: Ioctl<ByIntPtr>,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `ioctl` is one of the `ByIntPtr` constants above, each of which reads one `int`
    // through its argument; `value` lives on our stack for the whole call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), ioctl.request, std::ptr::from_ref(&value)) })?;
    Ok(())
}

/// An ioctl whose argument is an integer passed by value, or none (`TUNSETPERSIST`,
/// `TUNSETOFFLOAD`, `TUNSETOWNER`, `TUNSETGROUP`, `TUNGETDEVNETNS`); returns the ioctl's non-negative result.
pub(crate) fn ioctl_value(
    fd: BorrowedFd<'_>,
    ioctl: Ioctl<ByValue>,
    value: libc::c_ulong,
) -> io::Result<libc::c_int> {
    // SAFETY: `ioctl` is one of the `ByValue` constants above, each of which takes its
    // argument by value or ignores it, so the kernel dereferences no pointer of ours.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), ioctl.request, value) })
}

/// `setsockopt(2)` with a plain-old-data value (`int`, `struct packet_mreq`…), passed with
/// its exact size.
pub(crate) fn setsockopt<T: Copy>(
    fd: impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the kernel reads at most `len` bytes from `value`, which is a live `T` of exactly
    // that size; `T: Copy` keeps it plain data (the option's C type is the caller's contract).
    cvt(unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            len,
        )
    })?;
    Ok(())
}

/// `getsockopt(2)` of an `int` option (`PACKET_FANOUT`).
pub(crate) fn getsockopt_int(
    fd: impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    getsockopt_value(fd, level, name)
}

/// `getsockopt(2)` of an option whose value is the plain C type `T` (`int`, `PACKET_STATISTICS`).
pub(crate) fn getsockopt_value<T: Copy + Default>(
    fd: impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<T> {
    let mut value = T::default();
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the kernel writes at most `len` bytes (one `T`, plain data by the caller's
    // contract) into `value`, which lives on our stack for the call, and updates `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// `socket(2)`, non-blocking and close-on-exec, for a (domain, type, protocol) `nix` cannot
/// name (`AF_INET`/`AF_INET6`, `SOCK_RAW`, `IPPROTO_RAW`).
pub(crate) fn raw_socket(
    domain: libc::c_int,
    ty: libc::c_int,
    protocol: libc::c_int,
) -> io::Result<OwnedFd> {
    let fd = cvt(
        // SAFETY: socket(2) takes integers only and dereferences nothing of ours.
        unsafe {
            libc::socket(
                domain,
                ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                protocol,
            )
        },
    )?;
    // SAFETY: `fd` is the new descriptor socket(2) just returned (non-negative, checked by
    // `cvt`); nothing else owns it, so the `OwnedFd` may close it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_must_fit_ifnamsiz() {
        assert!(ifr_name("").is_none());
        assert!(ifr_name("a\0b").is_none());
        assert!(ifr_name("sixteen-bytes-xx").is_none());
        let name = ifr_name("fifteen-bytes-x").expect("15 bytes fit");
        assert_eq!(from_ifr_name(&name), "fifteen-bytes-x");
        assert_eq!(
            IfReq::with_name("tap0").map(|r| r.name()).as_deref(),
            Some("tap0")
        );
    }

    #[test]
    fn cvt_keeps_non_negative_values() {
        assert_eq!(cvt(3).ok(), Some(3));
        assert_eq!(cvt_size(7).ok(), Some(7));
    }
}
