//! # ipvlan-core
//!
//! The brain of ipvlan-rs: Linux IPVLAN's behaviour as pure, sans-I/O code. It owns the port and
//! slave model, the address table, frame classification, the forwarding decision for every mode ×
//! flag, the multicast backlog and the counters. It opens no file, socket or device and reads no
//! clock; the I/O crates move bytes and ask it what to do.
//!
//! Rule IDs (`R-…`, `T-…`) refer to `shared/spec/ipvlan-behavior.md`.

#![forbid(unsafe_code)]

mod account;
pub mod addr_table;
pub mod classify;
pub mod counters;
pub mod decide;
pub mod dhcp;
pub mod error;
pub mod identity;
pub mod ifname;
pub mod link_args;
pub mod mode;
pub mod multicast;
pub mod offload;
pub mod pmtu;
pub mod port;
pub mod slave_id;
pub mod wire;

#[cfg(any(test, feature = "frames"))]
pub mod frames;

pub use addr_table::Claim;
pub use classify::{classify, Classified, Keys, Malformed, Runt, L3};
pub use counters::{DropCounts, DropReason, PortCounters, SlaveCounters};
pub use decide::{
    decide_rx, decide_tx, multicast_fanout, DropSite, IpFamily, McCopy, RxAction, RxMeta, TxAction,
    TxMeta,
};
pub use error::{ConfigError, PortError};
pub use ifname::IfName;
pub use link_args::{LinkArgsError, LinkTypeArgs};
pub use mode::{Flag, Mode};
pub use multicast::{McFilter, McOrigin, MulticastBacklog, BACKLOG_LIMIT};
pub use port::{Added, Master, MissingMode, NewSlave, Port, PortChange, Slave};
pub use slave_id::SlaveId;
pub use wire::MacAddr;
