//! [`RtnlError`]: what failed, as the request it was ([`RtnlOp`]), and the kernel's answer.

use std::fmt;
use std::io;
use std::net::IpAddr;

use crate::error::io_like_error;
use crate::netns::{NetNsError, NsId};

use super::{family_name, IpFamily};

/// A failed rtnetlink operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtnlError {
    /// Opening or setting up the `NETLINK_ROUTE` socket failed (`socket`, `bind`, a socket
    /// option: `doing` says which).
    #[error("{doing}: {source}")]
    Socket {
        doing: &'static str,
        #[source]
        source: io::Error,
    },
    /// Entering the namespace to open the socket there failed ([`super::Rtnl::open_in`]).
    #[error("opening an rtnetlink socket: {0}")]
    Netns(#[source] NetNsError),
    /// A request failed: sending it, receiving the reply, or the kernel's refusal (the errno of
    /// its `NLMSG_ERROR`, e.g. `EEXIST` for an address or route already there, `ENODEV` for a
    /// missing link, `ENOENT`/`ESRCH` for a missing rule or route).
    #[error("{op}: {source}")]
    Request {
        op: RtnlOp,
        #[source]
        source: io::Error,
    },
}

impl RtnlError {
    pub(crate) fn io_source(&self) -> Option<&io::Error> {
        match self {
            RtnlError::Socket { source, .. } | RtnlError::Request { source, .. } => Some(source),
            RtnlError::Netns(e) => e.io_source(),
        }
    }

    fn own_kind(&self) -> Option<io::ErrorKind> {
        match self {
            RtnlError::Netns(e) => Some(e.kind()),
            _ => None,
        }
    }

    /// The request that failed, if the failure was one.
    pub fn op(&self) -> Option<&RtnlOp> {
        match self {
            RtnlError::Request { op, .. } => Some(op),
            _ => None,
        }
    }
}

io_like_error!(RtnlError);

impl From<NetNsError> for RtnlError {
    fn from(e: NetNsError) -> RtnlError {
        RtnlError::Netns(e)
    }
}

/// An rtnetlink request, as [`RtnlError::Request`] names it. Links are named by index
/// (`ifindex`) or by name, tables and marks by number.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtnlOp {
    /// `RTM_GETLINK` dump.
    ListLinks,
    /// `RTM_GETLINK` of one link by name.
    GetLinkByName { name: String },
    /// `RTM_GETLINK` of one link by index.
    GetLinkByIndex { index: u32 },
    /// `RTM_SETLINK` (flags, MTU, MAC, alias, address generation mode).
    SetLink { index: u32 },
    /// `RTM_GETLINK` of one link by index in the namespace of id `nsid`
    /// (`IFLA_TARGET_NETNSID`).
    GetLinkIn { nsid: i32, index: u32 },
    /// `RTM_NEWLINK` of a veth pair `name` / `peer`.
    AddVeth { name: String, peer: String },
    /// `RTM_SETLINK` with `IFLA_NET_NS_FD`.
    MoveLink { index: u32, ns: NsId },
    /// `RTM_SETLINK` with `IFLA_IFNAME`.
    RenameLink { index: u32, name: String },
    /// `RTM_DELLINK`.
    DeleteLink { index: u32 },
    /// `RTM_GETADDR` dump.
    ListAddresses,
    /// `RTM_NEWADDR`.
    AddAddress {
        index: u32,
        addr: IpAddr,
        prefix_len: u8,
    },
    /// `RTM_DELADDR`.
    DeleteAddress {
        index: u32,
        addr: IpAddr,
        prefix_len: u8,
    },
    /// `RTM_GETROUTE` dump.
    ListRoutes { family: IpFamily },
    /// `RTM_NEWROUTE` in the main table.
    AddRoute {
        dst: IpAddr,
        prefix_len: u8,
        oif: u32,
    },
    /// `RTM_DELROUTE` of one route in the main table.
    DeleteRoute {
        dst: IpAddr,
        prefix_len: u8,
        oif: u32,
    },
    /// `RTM_NEWNEIGH` (`add`) or `RTM_DELNEIGH` of a proxy entry (`NTF_PROXY`) on link `index`.
    ProxyNeighbour { add: bool, addr: IpAddr, index: u32 },
    /// `RTM_NEWROUTE` with `NLM_F_REPLACE` of `local default dev lo` in `table`.
    ReplaceLocalDefault { family: IpFamily, table: u32 },
    /// `RTM_DELROUTE` of each route in `table`.
    FlushTable { family: IpFamily, table: u32 },
    /// `RTM_NEWRULE` `fwmark MARK table TABLE pref PREF`.
    AddRule {
        family: IpFamily,
        mark: u32,
        table: u32,
        pref: u32,
    },
    /// `RTM_DELRULE` `fwmark MARK table TABLE`.
    DeleteRule {
        family: IpFamily,
        mark: u32,
        table: u32,
    },
    /// `RTM_GETNSID`.
    GetNsId { ns: NsId },
    /// `RTM_NEWNSID`.
    AssignNsId { ns: NsId },
    /// Reading events from a monitoring socket.
    ReadEvents,
}

impl fmt::Display for RtnlOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtnlOp::ListLinks => write!(f, "listing links"),
            RtnlOp::GetLinkByName { name } => write!(f, "reading link {name}"),
            RtnlOp::GetLinkByIndex { index } => write!(f, "reading link {index}"),
            RtnlOp::SetLink { index } => write!(f, "changing link {index}"),
            RtnlOp::GetLinkIn { nsid, index } => {
                write!(f, "reading link {index} of namespace id {nsid}")
            }
            RtnlOp::AddVeth { name, peer } => write!(f, "creating veth pair {name}/{peer}"),
            RtnlOp::MoveLink { index, ns } => write!(f, "moving link {index} to {ns}"),
            RtnlOp::RenameLink { index, name } => write!(f, "renaming link {index} to {name}"),
            RtnlOp::DeleteLink { index } => write!(f, "deleting link {index}"),
            RtnlOp::ListAddresses => write!(f, "listing addresses"),
            RtnlOp::AddAddress {
                index,
                addr,
                prefix_len,
            } => write!(f, "adding {addr}/{prefix_len} to link {index}"),
            RtnlOp::DeleteAddress {
                index,
                addr,
                prefix_len,
            } => write!(f, "removing {addr}/{prefix_len} from link {index}"),
            RtnlOp::ListRoutes { family } => write!(f, "listing {} routes", family_name(*family)),
            RtnlOp::AddRoute {
                dst,
                prefix_len,
                oif,
            } => write!(f, "adding a route to {dst}/{prefix_len} on link {oif}"),
            RtnlOp::DeleteRoute {
                dst,
                prefix_len,
                oif,
            } => write!(f, "deleting the route to {dst}/{prefix_len} on link {oif}"),
            RtnlOp::ProxyNeighbour { add, addr, index } => write!(
                f,
                "{} the proxy neighbour entry {addr} on link {index}",
                if *add { "adding" } else { "deleting" }
            ),
            RtnlOp::ReplaceLocalDefault { family, table } => write!(
                f,
                "replacing the {} local default route of table {table}",
                family_name(*family)
            ),
            RtnlOp::FlushTable { family, table } => {
                let family = family_name(*family);
                write!(f, "flushing the {family} routes of table {table}")
            }
            RtnlOp::AddRule {
                family,
                mark,
                table,
                pref,
            } => write!(
                f,
                "adding the {} rule fwmark {mark:#x} table {table} pref {pref}",
                family_name(*family)
            ),
            RtnlOp::DeleteRule {
                family,
                mark,
                table,
            } => write!(
                f,
                "deleting the {} rule fwmark {mark:#x} table {table}",
                family_name(*family)
            ),
            RtnlOp::GetNsId { ns } => write!(f, "reading the id of {ns}"),
            RtnlOp::AssignNsId { ns } => write!(f, "assigning an id to {ns}"),
            RtnlOp::ReadEvents => write!(f, "reading rtnetlink events"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_the_kernels_words_and_the_conversion_keeps_the_kind() {
        let e = RtnlError::Request {
            op: RtnlOp::AddAddress {
                index: 5,
                addr: "192.0.2.1".parse().expect("literal"),
                prefix_len: 24,
            },
            source: io::Error::from_raw_os_error(libc::EEXIST),
        };
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let text = e.to_string();
        assert!(
            text.starts_with("adding 192.0.2.1/24 to link 5: "),
            "{text}"
        );
        assert!(text.contains("(os error 17)"), "{text}");
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(io.to_string(), text);
    }

    #[test]
    fn running_out_of_descriptors_stays_a_raw_os_error_through_the_conversion() {
        let e = RtnlError::Socket {
            doing: "opening an rtnetlink socket",
            source: io::Error::from_raw_os_error(libc::EMFILE),
        };
        let io: io::Error = e.into();
        assert_eq!(io.raw_os_error(), Some(libc::EMFILE));
    }

    #[test]
    fn a_namespace_failure_keeps_its_kind() {
        let e = RtnlError::from(NetNsError::Panicked {
            ns: NsId { dev: 4, ino: 9 },
        });
        assert_eq!(e.kind(), io::ErrorKind::Other);
        assert_eq!(e.raw_os_error(), None);
        assert!(e.to_string().contains("net:[9]"), "{e}");
    }
}
