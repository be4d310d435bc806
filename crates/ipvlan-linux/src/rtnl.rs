//! rtnetlink: the requests the daemon makes (read links and addresses, change a link, add or
//! remove an address) and the events it watches, in whichever namespace the socket was opened.

use std::io;
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
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo,
    LinkLayerType, LinkMessage, State,
};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::netns::NetNs;

/// Multicast groups (`RTMGRP_*`).
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_LISTEN_ALL_NSID: libc::c_int = 8;

/// `recvmsg` that also returns the `NETLINK_LISTEN_ALL_NSID` control message.
fn recv_with_nsid(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<i32>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain old data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: the iovec and control buffer point into live buffers of the stated sizes.
    let n = crate::cvt_size(unsafe { libc::recvmsg(fd, &mut msg, 0) })?;
    let mut nsid = None;
    // SAFETY: walking the control messages the kernel wrote into `cbuf`, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == SOL_NETLINK && (*c).cmsg_type == NETLINK_LISTEN_ALL_NSID {
                nsid = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>()));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, nsid))
}

/// ARPHRD_ETHER.
pub const LINK_TYPE_ETHER: u16 = 1;

/// What the daemon needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// ARPHRD_* value.
    pub link_type: u16,
    pub up: bool,
    pub noarp: bool,
    pub loopback: bool,
    pub carrier: Option<bool>,
    pub oper_up: bool,
    pub alias: Option<String>,
    /// `IFLA_INFO_KIND` (veth, tun, bridge…), if any.
    pub kind: Option<String>,
    /// Index of the bridge/bond the link is enslaved to (`IFLA_MASTER`).
    pub controller: Option<u32>,
}

/// An address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkAddr {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub tentative: bool,
}

/// A change seen on a monitoring socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    LinkChanged(Link),
    /// The link left this namespace: deleted, or moved (then `new_netnsid` is set).
    LinkGone {
        index: u32,
        new_netnsid: Option<i32>,
    },
    AddrAdded(LinkAddr),
    AddrRemoved(LinkAddr),
}

/// A change to make to a link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    pub mtu: Option<u32>,
    pub mac: Option<MacAddr>,
    pub up: Option<bool>,
    pub noarp: Option<bool>,
    pub alias: Option<String>,
    /// `addrgenmode none`: the kernel must not invent an EUI-64 link-local from the shared MAC.
    pub addrgen_none: bool,
}

/// A netlink route socket.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

impl std::fmt::Debug for Rtnl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtnl")
            .field("fd", &self.sock.as_raw_fd())
            .finish()
    }
}

impl Rtnl {
    /// A request socket in the calling thread's namespace.
    pub fn open() -> io::Result<Rtnl> {
        Rtnl::open_groups(0)
    }

    /// A request socket in `ns`.
    pub fn open_in(ns: &NetNs) -> io::Result<Rtnl> {
        ns.run(Rtnl::open)?
    }

    /// A non-blocking socket in the calling thread's namespace that receives link and address
    /// events of this namespace *and* of every namespace that has an id here
    /// (`NETLINK_LISTEN_ALL_NSID`). Unlike a socket opened inside each slave's namespace, it
    /// does not keep those namespaces alive, so deleting one still deletes its slaves (R-LIFE-5).
    pub fn monitor_all() -> io::Result<Rtnl> {
        let r = Rtnl::open_groups(RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)?;
        r.sock.set_non_blocking(true)?;
        let one: libc::c_int = 1;
        // SAFETY: passing a live int of the size we pass.
        crate::cvt(unsafe {
            libc::setsockopt(
                r.sock.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_LISTEN_ALL_NSID,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
        Ok(r)
    }

    /// The id `ns` has in this socket's namespace, assigning one if it has none (so that
    /// `monitor_all` hears from it).
    pub fn nsid_of(&mut self, ns: &NetNs) -> io::Result<i32> {
        let fd = u32::try_from(ns.as_raw_fd()).map_err(|_| io::Error::other("bad fd"))?;
        let get = |r: &mut Rtnl| -> io::Result<i32> {
            let mut msg = NsidMessage::default();
            msg.attributes.push(NsidAttribute::Fd(fd));
            let replies = r.request(RouteNetlinkMessage::GetNsId(msg), 0)?;
            Ok(replies
                .into_iter()
                .find_map(|m| match m {
                    RouteNetlinkMessage::NewNsId(n) => n.attributes.iter().find_map(|a| match a {
                        NsidAttribute::Id(id) => Some(*id),
                        _ => None,
                    }),
                    _ => None,
                })
                .unwrap_or(-1))
        };
        let id = get(self)?;
        if id >= 0 {
            return Ok(id);
        }
        let mut msg = NsidMessage::default();
        msg.attributes.push(NsidAttribute::Id(-1));
        msg.attributes.push(NsidAttribute::Fd(fd));
        match self.request(RouteNetlinkMessage::NewNsId(msg), NLM_F_ACK) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        get(self)
    }

    /// Reads the events waiting on a `monitor_all` socket, each with the id of the namespace it
    /// happened in (`None`: this socket's own namespace).
    pub fn events_all(&mut self) -> io::Result<Vec<(Option<i32>, Event)>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let (n, nsid) = match recv_with_nsid(self.sock.as_raw_fd(), &mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) => return Err(e),
            };
            for msg in messages(&buf[..n]) {
                if let NetlinkPayload::InnerMessage(m) = msg.payload {
                    if let Some(ev) = event(m) {
                        out.push((nsid, ev));
                    }
                }
            }
        }
    }

    fn open_groups(groups: u32) -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind(&SocketAddr::new(0, groups))?;
        let _ = sock.set_rx_buf_sz(4 << 20);
        Ok(Rtnl { sock, seq: 1 })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    pub(crate) fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
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
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
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

    /// All links of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let msg = RouteNetlinkMessage::GetLink(LinkMessage::default());
        Ok(self
            .request(msg, NLM_F_DUMP)?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(&l)),
                _ => None,
            })
            .collect())
    }

    /// One link by name; `None` if there is no such link.
    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        self.get_link(msg)
    }

    /// One link by index; `None` if there is no such link.
    pub fn link_by_index(&mut self, index: u32) -> io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_link(msg)
    }

    fn get_link(&mut self, msg: LinkMessage) -> io::Result<Option<Link>> {
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(&l)),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Applies `change` to link `index`.
    pub fn set_link(&mut self, index: u32, change: &LinkChange) -> io::Result<()> {
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
        if change.addrgen_none {
            msg.attributes
                .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                    vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
                )]));
        }
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// Moves link `index` into the network namespace `ns`.
    pub fn move_to_netns(&mut self, index: u32, ns: &NetNs) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// Renames link `index` (it must be down).
    pub fn rename(&mut self, index: u32, name: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// Adds a route to `dst`/`prefix_len` (the default route with 0) via `gateway` or directly on
    /// link `oif`.
    pub fn add_route(
        &mut self,
        dst: IpAddr,
        prefix_len: u8,
        gateway: Option<IpAddr>,
        oif: u32,
    ) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = match dst {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.destination_prefix_length = prefix_len;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.kind = RouteType::Unicast;
        msg.header.scope = if gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if prefix_len > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        }
        if let Some(gw) = gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(oif));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Deletes link `index`.
    pub fn del_link(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// All addresses of the namespace, optionally of one link.
    pub fn addresses(&mut self, index: Option<u32>) -> io::Result<Vec<LinkAddr>> {
        let msg = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        Ok(self
            .request(msg, NLM_F_DUMP)?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => parse_addr(&a),
                _ => None,
            })
            .filter(|a| index.is_none_or(|i| a.index == i))
            .collect())
    }

    /// Adds an address; `nodad` skips duplicate address detection.
    pub fn add_address(
        &mut self,
        index: u32,
        addr: IpAddr,
        prefix_len: u8,
        nodad: bool,
    ) -> io::Result<()> {
        let mut msg = address_message(index, addr, prefix_len);
        if nodad {
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Removes an address.
    pub fn del_address(&mut self, index: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let msg = address_message(index, addr, prefix_len);
        self.request(RouteNetlinkMessage::DelAddress(msg), NLM_F_ACK)?;
        Ok(())
    }
}

/// The netlink messages in one datagram, in order; stops at the first undecodable one.
fn messages(bytes: &[u8]) -> impl Iterator<Item = NetlinkMessage<RouteNetlinkMessage>> + '_ {
    let mut offset = 0;
    std::iter::from_fn(move || {
        if offset >= bytes.len() {
            return None;
        }
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[offset..]).ok()?;
        let len = msg.header.length as usize;
        if len == 0 {
            return None;
        }
        offset += (len + 3) & !3;
        Some(msg)
    })
}

fn address_message(index: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
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

fn event(m: RouteNetlinkMessage) -> Option<Event> {
    match m {
        RouteNetlinkMessage::NewLink(l) => Some(Event::LinkChanged(parse_link(&l))),
        RouteNetlinkMessage::DelLink(l) => Some(Event::LinkGone {
            index: l.header.index,
            new_netnsid: l.attributes.iter().find_map(|a| match a {
                LinkAttribute::NewNetnsId(id) => Some(*id),
                _ => None,
            }),
        }),
        RouteNetlinkMessage::NewAddress(a) => parse_addr(&a).map(Event::AddrAdded),
        RouteNetlinkMessage::DelAddress(a) => parse_addr(&a).map(Event::AddrRemoved),
        _ => None,
    }
}

fn parse_link(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        link_type: u16::from(l.header.link_layer_type),
        up: l.header.flags.contains(LinkFlags::Up),
        noarp: l.header.flags.contains(LinkFlags::Noarp),
        loopback: l.header.flags.contains(LinkFlags::Loopback)
            || l.header.link_layer_type == LinkLayerType::Loopback,
        carrier: None,
        oper_up: false,
        alias: None,
        kind: None,
        controller: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(b);
                link.mac = Some(MacAddr(m));
            }
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Carrier(c) => link.carrier = Some(*c != 0),
            LinkAttribute::OperState(s) => link.oper_up = matches!(s, State::Up | State::Unknown),
            LinkAttribute::IfAlias(s) => link.alias = Some(s.clone()),
            LinkAttribute::Controller(c) => link.controller = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let NlLinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn parse_addr(a: &AddressMessage) -> Option<LinkAddr> {
    // The local address is what the interface owns (IFA_ADDRESS is the peer on point-to-point).
    let local = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    let flags = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Flags(f) => Some(*f),
        _ => None,
    });
    let tentative = flags.is_some_and(|f| f.contains(AddressFlags::Tentative))
        || a.header.flags.contains(AddressHeaderFlags::Tentative);
    Some(LinkAddr {
        index: a.header.index,
        addr: local.or(address)?,
        prefix_len: a.header.prefix_len,
        tentative,
    })
}
