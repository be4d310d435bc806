//! Why a request failed: one typed error per cause, each with the user's message as its
//! `Display` and an [`ErrorKind`] for the CLI's exit code. Operations the kernel refused keep
//! the kernel's words (`#[source]`) and say what was being done to which device.

use std::io;

use ipvlan_core::{ConfigError, IfName, PortError};

use crate::proto::ErrorKind;

/// A request the daemon could not carry out. Nothing it started is left half-done: the
/// handler that returns it has rolled back first.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A rule of the port model refused it (R-OBJ-*, R-ADDR-*, R-MTU-*).
    #[error(transparent)]
    Port(#[from] PortError),
    /// A mode, flag or name is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The named device (a master or a slave) does not exist.
    #[error("Cannot find device \"{0}\"")]
    NoDevice(String),
    /// `link add` for a name the daemon already serves.
    #[error("slave {0} already exists")]
    SlaveExists(IfName),
    /// `link add` for a name another device of the daemon's namespace has.
    #[error("a device named {0} already exists in the daemon's namespace")]
    NameTaken(IfName),
    /// R-CRT-3.
    #[error("{0} cannot be an ipvlan master: it is a loopback or non-Ethernet device (R-CRT-3)")]
    NotEthernet(String),
    /// R-CRT-4.
    #[error(
        "{master} is busy: it is a port of another device (ifindex {controller}), e.g. a bridge or bond (R-CRT-4)"
    )]
    MasterBusy { master: String, controller: u32 },
    /// The master has no Ethernet address to share.
    #[error("{0} has no MAC address")]
    NoMac(String),
    /// Asked for something this port or machine cannot do (the message says what instead).
    #[error("{0}")]
    Unsupported(String),
    /// `address add` of an address another slave of the port (or this one) has: the kernel's
    /// words (`ipvlan_addr_busy`, `EADDRINUSE`).
    #[error("Address already assigned to an ipvlan device. ({addr} is slave \"{owner}\"'s)")]
    AddressAssigned {
        addr: std::net::IpAddr,
        owner: String,
    },
    /// [`RequestError::AddressAssigned`] where the owner is the port's `hostreach` device: the
    /// address is the master's own (docs/hostreach.md).
    #[error("Address already assigned to an ipvlan device. ({addr} is the master's, which hostreach device \"{device}\" serves to the slaves)")]
    MasterAddress {
        addr: std::net::IpAddr,
        device: String,
    },
    /// `address add|del` on a slave that is not an ipvtap: its addresses are learnt from its
    /// namespace.
    #[error("{name} is a {kind} slave: its addresses are learnt from its namespace; use `ip address add|del … dev {name}` there (ipvlan address is for ipvtap slaves, whose addresses live in their guests)")]
    NotIpvtap { name: String, kind: &'static str },
    /// Creating the slave's device failed.
    #[error("creating {} device {name}: {source}{}", kind.to_uppercase(), emfile_hint(.source))]
    CreateDevice {
        /// The backend's kind (`tap`).
        kind: &'static str,
        name: IfName,
        #[source]
        source: io::Error,
    },
    /// The port's netfilter state could not be installed.
    #[error(transparent)]
    Netfilter(#[from] ipvlan_linux::NetfilterError),
    /// Another operation the kernel refused (the source is `ipvlan_linux`'s typed error, or
    /// an `io::Error`).
    #[error("{what}: {source}")]
    System {
        /// What the daemon was doing, e.g. "opening the master's packet sockets".
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// EMFILE on slave creation: each slave holds a descriptor per data-plane worker.
fn emfile_hint(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::EMFILE) {
        " (each slave holds a descriptor per data-plane worker: raise the daemon's open-file \
         limit, e.g. LimitNOFILE= in its unit)"
    } else {
        ""
    }
}

impl RequestError {
    /// Wraps a refused operation with what was being done.
    pub fn system<E>(what: &'static str) -> impl FnOnce(E) -> RequestError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |source| RequestError::System {
            what,
            source: Box::new(source),
        }
    }

    /// How the CLI reports it.
    pub fn kind(&self) -> ErrorKind {
        use PortError as P;
        match self {
            RequestError::Port(P::SlaveExists(_) | P::AddressInUse { .. } | P::TooManySlaves)
            | RequestError::SlaveExists(_)
            | RequestError::NameTaken(_)
            | RequestError::AddressAssigned { .. }
            | RequestError::MasterAddress { .. }
            | RequestError::MasterBusy { .. } => ErrorKind::Conflict,
            RequestError::Port(
                P::NoSuchSlave(_) | P::NoSuchSlaveId(_) | P::AddressNotAssigned { .. },
            )
            | RequestError::NoDevice(_) => ErrorKind::NotFound,
            RequestError::CreateDevice { source, .. }
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                ErrorKind::Conflict
            }
            RequestError::Port(_)
            | RequestError::Config(_)
            | RequestError::NotEthernet(_)
            | RequestError::NoMac(_)
            | RequestError::NotIpvtap { .. }
            | RequestError::Unsupported(_) => ErrorKind::Invalid,
            RequestError::CreateDevice { .. }
            | RequestError::Netfilter(_)
            | RequestError::System { .. } => ErrorKind::System,
        }
    }
}

/// Failures of a teardown, all of them (a teardown goes on after a failure).
#[derive(Debug, Default)]
pub struct TeardownErrors(pub Vec<String>);

impl TeardownErrors {
    /// Records `what` failed, if it did.
    pub fn note<E: std::fmt::Display>(&mut self, what: &str, r: Result<(), E>) {
        if let Err(e) = r {
            self.0.push(format!("{what}: {e}"));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for TeardownErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_messages() {
        let e = RequestError::NoDevice("eth9".into());
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "Cannot find device \"eth9\"");
        let name = IfName::new("s0").expect("valid name");
        let e = RequestError::CreateDevice {
            kind: "tap",
            name: name.clone(),
            source: io::Error::from_raw_os_error(libc::EMFILE),
        };
        assert_eq!(e.kind(), ErrorKind::System);
        assert!(e.to_string().contains("LimitNOFILE"), "{e}");
        assert!(e.to_string().starts_with("creating TAP device s0: "), "{e}");
        let e = RequestError::CreateDevice {
            kind: "tap",
            name,
            source: io::Error::new(io::ErrorKind::AlreadyExists, "device s0 already exists"),
        };
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(!e.to_string().contains("LimitNOFILE"), "{e}");
        let e = RequestError::MasterBusy {
            master: "m0".into(),
            controller: 7,
        };
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.to_string().contains("busy"));
    }

    #[test]
    fn teardown_collects_every_failure() {
        let mut t = TeardownErrors::default();
        t.note("a", Err::<(), _>("x"));
        t.note("b", Ok::<(), &str>(()));
        t.note("c", Err::<(), _>("y"));
        assert_eq!(t.to_string(), "a: x; c: y");
    }
}
