//! The container side of ipvlan-rs, shared by its container-network plugins: the CNI plugin
//! `ipvlan-rs` (reference `ipvlan` plugin configuration) and the netavark plugin.
//!
//! - [`conf`]: the CNI network configuration and `CNI_*` environment;
//! - [`error`]: CNI error objects (codes of the CNI spec, section "Error");
//! - [`ipam`]: delegation to an IPAM plugin (CNI spec, section 4);
//! - [`netcfg`]: what happens in the container's namespace (move, rename, addresses, routes).

pub mod conf;
pub mod error;
pub mod ipam;
pub mod netcfg;
