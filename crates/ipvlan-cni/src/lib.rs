//! The container side of ipvlan-rs, shared by its container-network plugins: the CNI plugin
//! `ipvlan-rs` (reference `ipvlan` plugin configuration) and the netavark plugin.
//!
//! - [`cni`]: the CNI commands ADD, DEL, CHECK, STATUS, GC, VERSION;
//! - [`conf`]: the CNI network configuration and `CNI_*` parameters;
//! - [`result`]: the CNI result types;
//! - [`error`]: CNI error objects (codes of the CNI spec, section 5 "Error");
//! - [`ipam`]: delegation to an IPAM plugin (CNI spec, section 4);
//! - [`daemon`]: requests to the ipvlan-rs daemon;
//! - [`netcfg`]: what happens in the container's namespace (move, rename, addresses, DAD,
//!   routes).

pub mod cni;
pub mod conf;
pub mod daemon;
pub mod error;
pub mod ipam;
pub mod netcfg;
pub mod result;
