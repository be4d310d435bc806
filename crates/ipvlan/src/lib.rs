//! The parts of the `ipvlan` tool other programs (the CNI plugin) use: the control protocol and
//! its client.

pub mod client;
pub mod proto;
