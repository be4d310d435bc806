//! # ipvlan-linux
//!
//! The thin Linux layer of ipvlan-rs: it opens devices and sockets and moves bytes; every
//! forwarding decision is `ipvlan-core`'s.
//!
//! - [`tap`]: slave devices as TAP interfaces (behind the [`SlaveDevice`] trait, so a veth
//!   backend can follow for kernels without TUN).
//! - [`packet`]: the master through an AF_PACKET socket.
//! - [`netns`]: network namespace handles and running code inside one.
//! - [`rtnl`]: rtnetlink requests and event monitoring, in any namespace.
//! - [`steer`]: a BPF program that keeps each flow on one queue of a multiqueue TAP.
//! - [`netfilter`]: the master namespace's nftables and policy routing for a port: keeping its own
//!   stack away from frames that belong to slaves, and the l3s hooks.
//! - [`rtnl_policy`]: the `fwmark` rules and routing tables that l3s needs, through [`rtnl`].
//! - [`host`]: handing IP packets to the master namespace's stack.
//!
//! Every `unsafe` block carries a `SAFETY:` comment.

pub mod cred;
pub mod host;
pub mod netfilter;
pub mod netns;
pub mod packet;
pub mod poll;
pub mod rtnl;
pub mod rtnl_policy;
pub mod steer;
pub mod tap;
pub mod vnet;

pub use netfilter::{Netfilter, NetfilterError};
pub use netns::{NetNs, NsId};
pub use packet::{PacketSocket, PktType};
pub use poll::{Epoll, EventFd, Ready};
pub use steer::FlowSteering;
pub use tap::{SlaveDevice, Tap};

/// The old path of the l3s helpers the data plane uses (`ipvlan_linux::l3s::restore_hop_limit`);
/// they live in [`netfilter`] now.
pub mod l3s {
    pub use crate::netfilter::{mark_for, restore_hop_limit};
}

use std::io;

/// Turns a libc return value into an `io::Result`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Turns a libc size return value into an `io::Result`.
pub(crate) fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Copies an interface name into a zeroed `ifr_name`.
pub(crate) fn ifr_name(name: &str) -> io::Result<[libc::c_char; libc::IFNAMSIZ]> {
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ));
    }
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b as libc::c_char;
    }
    Ok(out)
}

/// Reads a NUL-terminated `ifr_name`.
pub(crate) fn from_ifr_name(name: &[libc::c_char]) -> String {
    name.iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect()
}
