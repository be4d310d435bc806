//! Typed errors. Each message is written for the person at the keyboard.

use std::net::IpAddr;

use thiserror::Error;

/// A configuration value or request that can never be valid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("argument of \"mode\" must be either \"l2\", \"l3\" or \"l3s\" (got \"{0}\")")]
    UnknownMode(String),
    #[error("ipvlan mode value {0} is invalid: must be 0, 1 or 2 (l2, l3 or l3s)")]
    ModeValue(u16),
    #[error("unknown ipvlan flag \"{0}\": must be bridge, private or vepa")]
    UnknownFlag(String),
    #[error("flags private and vepa cannot be combined")]
    PrivateAndVepa,
    #[error("ipvlan flags value {0:#x} has unknown bits: only 0x1 (private) and 0x2 (vepa) exist")]
    FlagBits(u16),
    #[error("invalid interface name \"{name}\": {why}")]
    InterfaceName { name: String, why: &'static str },
    #[error("mtu {0} is out of range: an ipvlan slave's mtu must be between 68 and 65535")]
    Mtu(u32),
    #[error("invalid MAC address \"{0}\": expected six hex bytes like 02:00:00:00:00:01")]
    MacAddress(String),
}

/// A request that is well-formed but conflicts with the port's current state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PortError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("a slave named \"{0}\" already exists on this port")]
    SlaveExists(String),
    #[error("no slave named \"{0}\" on this port")]
    NoSuchSlave(String),
    #[error("no slave with id {0:#x} on this port")]
    NoSuchSlaveId(u16),
    #[error("the port has no free slave id: at most 65533 slaves per master")]
    TooManySlaves,
    #[error("address {addr} is already assigned to ipvlan slave \"{owner}\" on this master")]
    AddressInUse { addr: IpAddr, owner: String },
    #[error("address {addr} is not assigned to slave \"{slave}\"")]
    AddressNotAssigned { addr: IpAddr, slave: String },
    #[error("address {0} cannot be used by a slave: it is unspecified, multicast or broadcast")]
    AddressNotUnicast(IpAddr),
}
