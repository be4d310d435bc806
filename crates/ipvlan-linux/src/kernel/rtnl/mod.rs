//! rtnetlink: the requests the daemon makes (read links and addresses, change a link, add or
//! remove an address, routes and policy-routing rules) and the events it watches, in whichever
//! namespace the socket was opened. Messages are netlink-packet-route's; this module sends them
//! and reads the replies.
//!
//! - this file: the socket, the request/reply loop, links and addresses;
//! - `route`: routes and `fwmark` rules (see [below](#routes-and-rules));
//! - `monitor`: the events socket of every namespace (`NETLINK_LISTEN_ALL_NSID`);
//! - `parse`: from bytes to [`Link`], [`LinkAddr`] and [`Event`] (pure, unit-tested);
//! - `error`: [`RtnlError`] and [`RtnlOp`].
//!
//! # Routes and rules
//!
//! [`Rtnl::add_route`], [`Rtnl::add_rule_fwmark`], [`Rtnl::del_rule_fwmark`],
//! [`Rtnl::replace_local_default_route`], [`Rtnl::flush_route_table`] and
//! [`Rtnl::default_route_device`] speak `RTM_*ROUTE` and `RTM_*RULE` as `ip route` and
//! `ip rule` do.

use std::fmt;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

use ipvlan_core::MacAddr;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::netns::NetNs;

mod error;
mod monitor;
mod neigh;
mod parse;
mod route;

/// The IP version of a per-family request (routes, rules): the core's type.
pub use ipvlan_core::IpFamily;

pub use error::{RtnlError, RtnlOp};
pub use route::{Route, TABLE_MAIN};

use parse::{messages, parse_addr, parse_link};

/// `ARPHRD_ETHER` (`<linux/if_arp.h>`): the `link_type` of an Ethernet link.
pub const LINK_TYPE_ETHER: u16 = libc::ARPHRD_ETHER;

/// What the daemon needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index (`ifindex`).
    pub index: u32,
    /// `IFLA_IFNAME`.
    pub name: String,
    /// `IFLA_ADDRESS`, if it is 6 bytes long.
    pub mac: Option<MacAddr>,
    /// `IFLA_MTU`, in bytes.
    pub mtu: u32,
    /// `ARPHRD_*` value (`ifi_type`).
    pub link_type: u16,
    /// `IFF_UP`: administratively up.
    pub up: bool,
    /// `IFF_NOARP`.
    pub noarp: bool,
    /// `IFF_LOOPBACK`, or a loopback link type.
    pub loopback: bool,
    /// `IFLA_CARRIER`, if reported.
    pub carrier: Option<bool>,
    /// `IFLA_OPERSTATE` is `up` or `unknown` (virtual devices without a carrier notion).
    pub oper_up: bool,
    /// `IFLA_IFALIAS`.
    pub alias: Option<String>,
    /// `IFLA_INFO_KIND` (veth, tun, bridge…), if any.
    pub kind: Option<String>,
    /// Index of the bridge/bond the link is enslaved to (`IFLA_MASTER`).
    pub controller: Option<u32>,
    /// `IFLA_LINK`: the link this one is tied to, when it differs from the link itself (a
    /// veth's peer, a VLAN's parent), as an index in the namespace [`Link::link_netnsid`] names.
    pub link: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the id, in the requesting socket's namespace, of the namespace
    /// [`Link::link`] lives in; absent when it is the link's own namespace.
    pub link_netnsid: Option<i32>,
    /// How the kernel makes the device's own IPv6 addresses (`IFLA_INET6_ADDR_GEN_MODE`);
    /// `None` where the device has no IPv6 state (IPv6 off by an MTU below 1280, or not
    /// reported).
    pub addrgen: Option<AddrGenMode>,
    /// The device's IPv6 token (`IFLA_INET6_TOKEN`, `ip token`): `Some(::)` when unset.
    pub ipv6_token: Option<std::net::Ipv6Addr>,
}

/// `IN6_ADDR_GEN_MODE_*` (`<linux/if_link.h>`): how the kernel makes a device's link-local
/// and SLAAC interface identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrGenMode {
    /// EUI-64 from the MAC (RFC 4291), the default.
    Eui64,
    /// None: no link-local; SLAAC from the token if one is set.
    None,
    /// Stable private identifiers from `stable_secret` (RFC 7217).
    StablePrivacy,
    /// RFC 7217 identifiers from a random secret.
    Random,
    /// A value this build does not know.
    Other(u8),
}

/// An address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkAddr {
    /// Interface index of the link the address is on.
    pub index: u32,
    /// The address (`IFA_LOCAL`, else `IFA_ADDRESS`).
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix_len: u8,
    /// Duplicate address detection has not finished (`IFA_F_TENTATIVE`).
    pub tentative: bool,
    /// Duplicate address detection failed: the stack will not use it (`IFA_F_DADFAILED`).
    pub dad_failed: bool,
    /// `IFA_F_PERMANENT`: an infinite lifetime.
    pub permanent: bool,
    /// `IFA_PROTO` (Linux ≥ 5.18): `Some(true)` for `kernel_ll`/`kernel_ra` (the kernel's own
    /// link-local, SLAAC from a router advertisement, RFC 4862, and its RFC 8981 temporary
    /// addresses), `Some(false)` for another origin, `None` when absent.
    pub proto_kernel: Option<bool>,
}

impl LinkAddr {
    /// Whether the kernel made the address itself (see [`LinkAddr::proto_kernel`]). A kernel
    /// that reports `IFA_PROTO` leaves it out for configured addresses; an older one says
    /// nothing, and then only an address without `IFA_F_PERMANENT` (a finite lifetime) is
    /// taken as the kernel's, which a configured one with a lifetime may also be.
    pub fn kernel_made(&self) -> bool {
        match self.proto_kernel {
            Some(k) => k,
            None => !kernel_reports_proto() && !self.permanent,
        }
    }
}

/// Whether the running kernel reports `IFA_PROTO` (Linux ≥ 5.18), read once from `uname`.
fn kernel_reports_proto() -> bool {
    static REPORTS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REPORTS.get_or_init(|| {
        let Ok(u) = nix::sys::utsname::uname() else {
            return false;
        };
        let release = u.release().to_string_lossy().into_owned();
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        (major, minor) >= (5, 18)
    })
}

/// A change seen on a monitoring socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A link appeared or changed (`RTM_NEWLINK`).
    LinkChanged(Link),
    /// The link left this namespace (`RTM_DELLINK`): deleted, or moved (then `new_netnsid` is
    /// set: the id, in this namespace, of the one it moved to).
    LinkGone {
        /// Its interface index in the namespace it left.
        index: u32,
        /// `IFLA_NEW_NETNSID`.
        new_netnsid: Option<i32>,
    },
    /// An address was added (`RTM_NEWADDR`; also sent when its flags change).
    AddrAdded(LinkAddr),
    /// An address was removed (`RTM_DELADDR`).
    AddrRemoved(LinkAddr),
}

/// A change to make to a link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    /// New MTU in bytes (`IFLA_MTU`).
    pub mtu: Option<u32>,
    /// New MAC (`IFLA_ADDRESS`).
    pub mac: Option<MacAddr>,
    /// Administratively up or down (`IFF_UP`).
    pub up: Option<bool>,
    /// ARP off or on (`IFF_NOARP`).
    pub noarp: Option<bool>,
    /// New alias (`IFLA_IFALIAS`).
    pub alias: Option<String>,
    /// `addrgenmode none`: the kernel must not invent an EUI-64 link-local from the shared MAC.
    pub addrgen_none: bool,
    /// `ip token set`: the interface identifier SLAAC builds addresses from
    /// (`IFLA_INET6_TOKEN`; the kernel refuses it on NOARP devices and where RAs are not
    /// accepted).
    pub token: Option<std::net::Ipv6Addr>,
}

/// The IP version of `addr`.
pub(crate) fn family_of(addr: IpAddr) -> IpFamily {
    match addr {
        IpAddr::V4(_) => IpFamily::V4,
        IpAddr::V6(_) => IpFamily::V6,
    }
}

/// The rtnetlink address family of `family` (`AF_INET`, `AF_INET6`).
pub(crate) fn address_family(family: IpFamily) -> AddressFamily {
    match family {
        IpFamily::V4 => AddressFamily::Inet,
        IpFamily::V6 => AddressFamily::Inet6,
    }
}

/// `IPv4` or `IPv6`, for messages.
pub(crate) fn family_name(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "IPv4",
        IpFamily::V6 => "IPv6",
    }
}

/// A netlink route socket (`socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)`), bound in the
/// namespace of the thread that opened it, for as long as it lives.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

impl fmt::Debug for Rtnl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rtnl")
            .field("fd", &self.sock.as_raw_fd())
            .finish()
    }
}

impl Rtnl {
    /// A request socket in the calling thread's namespace.
    pub fn open() -> Result<Rtnl, RtnlError> {
        Rtnl::open_groups(0)
    }

    /// A request socket in `ns` (opened by a short-lived thread inside it).
    pub fn open_in(ns: &NetNs) -> Result<Rtnl, RtnlError> {
        ns.run(Rtnl::open)?
    }

    /// A socket bound to the `RTMGRP_*` multicast `groups` (0: none), with a 4 MiB receive
    /// buffer where allowed.
    fn open_groups(groups: u32) -> Result<Rtnl, RtnlError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|source| RtnlError::Socket {
            doing: "opening an rtnetlink socket",
            source,
        })?;
        sock.bind(&SocketAddr::new(0, groups))
            .map_err(|source| RtnlError::Socket {
                doing: "binding an rtnetlink socket",
                source,
            })?;
        let _ = sock.set_rx_buf_sz(4 << 20);
        Ok(Rtnl { sock, seq: 1 })
    }

    /// The socket's descriptor, to poll for readability (a monitoring socket).
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Sends `msg` with `NLM_F_REQUEST | flags` and collects the replies with its sequence
    /// number: every message of a dump (`NLM_F_DUMP`) up to `NLMSG_DONE`, none but the
    /// acknowledgement with `NLM_F_ACK`, else the first. The kernel's `NLMSG_ERROR` becomes
    /// an OS error; failures are reported as `op`.
    fn request(
        &mut self,
        op: RtnlOp,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, RtnlError> {
        self.exchange(msg, flags)
            .map_err(|source| RtnlError::Request { op, source })
    }

    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> std::io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (bytes, _) = self.sock.recv_from_full()?;
            for msg in messages(&bytes) {
                if msg.header.sequence_number != seq {
                    continue; // a stale reply or an event: not ours
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(code) => Err(std::io::Error::from_raw_os_error(-code.get())),
                            None => Ok(out), // the ACK
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// All links of the namespace (`RTM_GETLINK` dump).
    pub fn links(&mut self) -> Result<Vec<Link>, RtnlError> {
        let msg = RouteNetlinkMessage::GetLink(LinkMessage::default());
        Ok(self
            .request(RtnlOp::ListLinks, msg, NLM_F_DUMP)?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(&l)),
                _ => None,
            })
            .collect())
    }

    /// One link by name; `None` if there is no such link.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, RtnlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let op = RtnlOp::GetLinkByName {
            name: name.to_owned(),
        };
        self.get_link(op, msg)
    }

    /// One link by index; `None` if there is no such link.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>, RtnlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_link(RtnlOp::GetLinkByIndex { index }, msg)
    }

    /// One link by index in the namespace whose id here is `nsid` (`None`: this socket's own),
    /// asked from this namespace (`RTM_GETLINK` with `IFLA_TARGET_NETNSID`, Linux 4.20+; needs
    /// `CAP_NET_ADMIN` over the target). Only reads take it: `RTM_SETLINK` and a non-creating
    /// `RTM_NEWLINK` ignore the attribute (6.18 looks the index up in this namespace, `ENODEV`),
    /// so changes must be made from inside the target ([`NetNs::run`]). `None` if there is no such link; an error
    /// (`EINVAL`/`ENETUNREACH`) if no namespace has that id. In the reply, `link_netnsid` is
    /// relative to this socket's namespace.
    pub fn link_by_index_in(
        &mut self,
        nsid: Option<i32>,
        index: u32,
    ) -> Result<Option<Link>, RtnlError> {
        let Some(nsid) = nsid else {
            return self.link_by_index(index);
        };
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::IfNetnsId(nsid));
        self.get_link(RtnlOp::GetLinkIn { nsid, index }, msg)
    }

    fn get_link(&mut self, op: RtnlOp, msg: LinkMessage) -> Result<Option<Link>, RtnlError> {
        match self.request(op, RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(&l)),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Applies `change` to link `index` (`RTM_SETLINK`).
    pub fn set_link(&mut self, index: u32, change: &LinkChange) -> Result<(), RtnlError> {
        let msg = link_change_message(index, change);
        let op = RtnlOp::SetLink { index };
        self.request(op, RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// Creates a veth pair in this namespace in one request (`RTM_NEWLINK` with
    /// `NLM_F_CREATE | NLM_F_EXCL`, `IFLA_INFO_KIND` `veth` and `VETH_INFO_PEER`, as
    /// `ip link add NAME type veth peer name PEER` sends it): `name` with `change`'s MTU, MAC
    /// and flags, its peer `peer` with `peer_change`'s. Without a MAC, the kernel gives an end
    /// a random locally administered one (`eth_hw_addr_random` in `veth_newlink`). The address
    /// generation mode and token of the changes are left out (the kernel refuses
    /// `IFLA_AF_SPEC` in a creating `RTM_NEWLINK`): set them with [`Rtnl::set_link`] before
    /// bringing the links up. `EEXIST` if either name is taken.
    pub fn add_veth(
        &mut self,
        name: &str,
        change: &LinkChange,
        peer: &str,
        peer_change: &LinkChange,
    ) -> Result<(), RtnlError> {
        let mut peer_msg = link_change_message(0, peer_change);
        strip_af_spec(&mut peer_msg);
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_owned()));
        let mut msg = link_change_message(0, change);
        strip_af_spec(&mut msg);
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        let op = RtnlOp::AddVeth {
            name: name.to_owned(),
            peer: peer.to_owned(),
        };
        self.request(
            op,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Moves link `index` into the network namespace `ns` (`IFLA_NET_NS_FD`).
    pub fn move_to_netns(&mut self, index: u32, ns: &NetNs) -> Result<(), RtnlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        let op = RtnlOp::MoveLink { index, ns: ns.id() };
        self.request(op, RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// Renames link `index` (it must be down: `EBUSY` otherwise).
    pub fn rename(&mut self, index: u32, name: &str) -> Result<(), RtnlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let op = RtnlOp::RenameLink {
            index,
            name: name.to_owned(),
        };
        self.request(op, RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// Deletes link `index` (`RTM_DELLINK`).
    pub fn del_link(&mut self, index: u32) -> Result<(), RtnlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let op = RtnlOp::DeleteLink { index };
        self.request(op, RouteNetlinkMessage::DelLink(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// All addresses of the namespace, or of link `index` only (`RTM_GETADDR` dump).
    pub fn addresses(&mut self, index: Option<u32>) -> Result<Vec<LinkAddr>, RtnlError> {
        let msg = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        Ok(self
            .request(RtnlOp::ListAddresses, msg, NLM_F_DUMP)?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => parse_addr(&a),
                _ => None,
            })
            .filter(|a| index.is_none_or(|i| a.index == i))
            .collect())
    }

    /// Adds `addr/prefix_len` to link `index` (`RTM_NEWADDR`, `EEXIST` if it is there);
    /// `nodad` skips duplicate address detection (`IFA_F_NODAD`).
    pub fn add_address(
        &mut self,
        index: u32,
        addr: IpAddr,
        prefix_len: u8,
        nodad: bool,
    ) -> Result<(), RtnlError> {
        let mut msg = address_message(index, addr, prefix_len);
        if nodad {
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        let op = RtnlOp::AddAddress {
            index,
            addr,
            prefix_len,
        };
        self.request(
            op,
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Removes `addr/prefix_len` from link `index` (`RTM_DELADDR`; `EADDRNOTAVAIL` if absent).
    pub fn del_address(
        &mut self,
        index: u32,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), RtnlError> {
        let msg = address_message(index, addr, prefix_len);
        let op = RtnlOp::DeleteAddress {
            index,
            addr,
            prefix_len,
        };
        self.request(op, RouteNetlinkMessage::DelAddress(msg), NLM_F_ACK)?;
        Ok(())
    }
}

/// The `RTM_SETLINK` body applying `change` to link `index` (also the attributes of a new
/// link, with `index` 0).
fn link_change_message(index: u32, change: &LinkChange) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    if let Some(up) = change.up {
        msg.header.change_mask |= LinkFlags::Up;
        if up {
            msg.header.flags |= LinkFlags::Up;
        }
    }
    if let Some(noarp) = change.noarp {
        msg.header.change_mask |= LinkFlags::Noarp;
        if noarp {
            msg.header.flags |= LinkFlags::Noarp;
        }
    }
    if let Some(mtu) = change.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = change.mac {
        msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    if let Some(alias) = &change.alias {
        msg.attributes.push(LinkAttribute::IfAlias(alias.clone()));
    }
    let mut inet6 = Vec::new();
    if let Some(token) = change.token {
        inet6.push(AfSpecInet6::Token(token));
    }
    if change.addrgen_none {
        inet6.push(AfSpecInet6::AddrGenMode(In6AddrGenMode::None));
    }
    if !inet6.is_empty() {
        msg.attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                inet6,
            )]));
    }
    msg
}

/// Drops `IFLA_AF_SPEC` from a new link's attributes: `RTM_NEWLINK` refuses it for a link that
/// does not exist yet (`EAFNOSUPPORT` on 6.18, as `ip link add … addrgenmode none` shows).
fn strip_af_spec(msg: &mut LinkMessage) {
    msg.attributes
        .retain(|a| !matches!(a, LinkAttribute::AfSpecUnspec(_)));
}

/// The `RTM_NEWADDR`/`RTM_DELADDR` body for `addr/prefix_len` on link `index`: link scope for
/// an IPv6 link-local address (`fe80::/10`), universe otherwise.
pub(crate) fn address_message(index: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = address_family(family_of(addr));
    msg.header.prefix_len = prefix_len;
    msg.header.index = index;
    msg.header.scope = match addr {
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => AddressScope::Link,
        _ => AddressScope::Universe,
    };
    msg.attributes.push(AddressAttribute::Local(addr));
    msg.attributes.push(AddressAttribute::Address(addr));
    msg
}
