//! # ipvlan-linux
//!
//! The thin Linux layer of ipvlan-rs: it opens devices and sockets and moves bytes; every
//! forwarding decision is `ipvlan-core`'s. Its folders follow a frame's path:
//!
//! - [`dev`]: where frames enter and leave.
//!   - [`tap`]: slave devices as TAP interfaces (the `ipvlan` daemon's TAP backend).
//!   - [`veth`]: slave devices as veth pairs whose host end eBPF programs (or the userspace
//!     data plane, through a packet socket) switch.
//!   - [`packet`]: the master through an AF_PACKET socket.
//!   - [`host`]: handing IP packets to the master namespace's stack.
//!   - [`vnet`]: the `virtio_net_hdr` in front of every frame.
//!   - [`steer`]: a BPF program that keeps each flow on one queue of a multiqueue TAP.
//! - [`kernel`]: talking to the kernel about the devices, not through them.
//!   - [`rtnl`]: rtnetlink requests (links, addresses, routes, rules) and event monitoring, in
//!     any namespace.
//!   - [`netns`]: network namespace handles and running code inside one.
//!   - [`cred`]: who is at the other end of the control socket.
//!   - [`poll`]: epoll and eventfd.
//! - [`netfilter`]: the master namespace's nftables and policy routing for a port: keeping its
//!   own stack away from frames that belong to slaves, and the l3s hooks.
//!
//! Setup and control operations return one typed error per module ([`tap::TapError`],
//! [`veth::VethError`],
//! [`packet::PacketError`], [`host::HostError`], [`steer::SteerError`], [`rtnl::RtnlError`],
//! [`netns::NetNsError`];
//! see [Errors](#errors) below); the per-frame calls return `io::Result`.
//!
//! Every `unsafe` block carries a `SAFETY:` comment (the workspace lint
//! `clippy::undocumented_unsafe_blocks` enforces it); the raw system calls `nix` does not wrap
//! sit in the private `sys` module.
//!
//! ## Errors
//!
//! Each typed error has a variant per failing operation, naming the device, link or namespace,
//! with the kernel's `io::Error` as its `source`. Its `Display` ends with the kernel's words
//! (most callers print errors with `{}` alone; a chain printer shows them twice). Each has
//! `raw_os_error()` and `kind()` as `io::Error` has, and converts into an `io::Error` of the
//! same kind with its `Display` as the message, so `?` into `io::Result` keeps working.
//! Running out of descriptors (`EMFILE`, `ENFILE`) converts into the bare OS error instead, so
//! `raw_os_error()` still finds it after the conversion.

pub mod dev;
mod error;
pub mod kernel;
pub mod netfilter;
mod sys;

pub use dev::{host, packet, steer, tap, veth, vmtap, vnet};
pub use kernel::{cred, netns, poll, rtnl};

pub use netfilter::{Netfilter, NetfilterError};
pub use netns::{NetNs, NsId};
pub use packet::{PacketSocket, PktType};
pub use poll::{Epoll, EventFd, Ready};
pub use steer::FlowSteering;
pub use tap::Tap;
pub use veth::{Veth, VethIo};
pub use vmtap::VmTap;

/// The old path of the l3s helpers the data plane uses (`ipvlan_linux::l3s::restore_hop_limit`);
/// they live in [`netfilter`] now.
pub mod l3s {
    pub use crate::netfilter::{mark_for, restore_hop_limit};
}
