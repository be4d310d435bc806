//! The events socket: link and address changes of this namespace and of every namespace that
//! has an id here (`NETLINK_LISTEN_ALL_NSID`), each tagged with that id.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_core::{NetlinkPayload, NLM_F_ACK};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::RouteNetlinkMessage;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::netns::NetNs;
use crate::sys::setsockopt;

use super::parse::{event, messages};
use super::{Event, Rtnl, RtnlError, RtnlOp};

/// The multicast groups a monitoring socket joins (`RTMGRP_*` of `<linux/rtnetlink.h>`).
const MONITOR_GROUPS: libc::c_int =
    libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR;

/// `recvmsg` that also returns the id of the namespace the message came from (the
/// `NETLINK_LISTEN_ALL_NSID` control message, level `SOL_NETLINK`, an `int`); `None` for this
/// socket's own namespace. `cbuf` is the control buffer, from `nix::cmsg_space!` (heap
/// memory, hence aligned for `struct cmsghdr`).
fn recv_with_nsid(fd: RawFd, buf: &mut [u8], cbuf: &mut [u8]) -> io::Result<(usize, Option<i32>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(fd, &mut iov, Some(cbuf), MsgFlags::empty())?;
    let mut nsid = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::Unknown(u) = c {
            let ours = u.cmsg_header.cmsg_level == libc::SOL_NETLINK
                && u.cmsg_header.cmsg_type == libc::NETLINK_LISTEN_ALL_NSID;
            if let (true, Some(id)) = (ours, u.data_bytes.get(..4)) {
                nsid = id.try_into().ok().map(i32::from_ne_bytes);
            }
        }
    }
    Ok((msg.bytes, nsid))
}

impl Rtnl {
    /// A non-blocking socket in the calling thread's namespace that receives link and address
    /// events (`RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR`) of this namespace *and*
    /// of every namespace that has an id here (`NETLINK_LISTEN_ALL_NSID`). Unlike a socket
    /// opened inside each slave's namespace, it does not keep those namespaces alive, so
    /// deleting one still deletes its slaves (R-LIFE-5).
    pub fn monitor_all() -> Result<Rtnl, RtnlError> {
        let r = Rtnl::open_groups(MONITOR_GROUPS as u32)?;
        r.sock
            .set_non_blocking(true)
            .map_err(|source| RtnlError::Socket {
                doing: "making the rtnetlink monitor non-blocking",
                source,
            })?;
        let one: libc::c_int = 1;
        setsockopt(
            &r.sock,
            libc::SOL_NETLINK,
            libc::NETLINK_LISTEN_ALL_NSID,
            &one,
        )
        .map_err(|source| RtnlError::Socket {
            doing: "setting NETLINK_LISTEN_ALL_NSID on the rtnetlink monitor",
            source,
        })?;
        Ok(r)
    }

    /// The id `ns` has in this socket's namespace (`RTM_GETNSID`), assigning one if it has
    /// none (`RTM_NEWNSID`), so that [`Rtnl::monitor_all`] hears from it.
    pub fn nsid_of(&mut self, ns: &NetNs) -> Result<i32, RtnlError> {
        if let Some(current) = self.nsid(ns)? {
            return Ok(current);
        }
        let id = ns.id();
        // An open descriptor is never negative.
        let fd = ns.as_raw_fd().unsigned_abs();
        let mut msg = NsidMessage::default();
        msg.attributes.push(NsidAttribute::Id(-1));
        msg.attributes.push(NsidAttribute::Fd(fd));
        let op = RtnlOp::AssignNsId { ns: id };
        match self.request(op, RouteNetlinkMessage::NewNsId(msg), NLM_F_ACK) {
            Ok(_) => {}
            // Another process assigned one in between.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        Ok(self.nsid(ns)?.unwrap_or(-1))
    }

    /// The id `ns` has in this socket's namespace (`RTM_GETNSID` with `NETNSA_FD`), without
    /// assigning one: `None` if it has none (`NETNSA_NSID_NOT_ASSIGNED`, -1). This socket's own
    /// namespace has none unless one was assigned to it explicitly.
    pub fn nsid(&mut self, ns: &NetNs) -> Result<Option<i32>, RtnlError> {
        // An open descriptor is never negative.
        let fd = ns.as_raw_fd().unsigned_abs();
        let mut msg = NsidMessage::default();
        msg.attributes.push(NsidAttribute::Fd(fd));
        let op = RtnlOp::GetNsId { ns: ns.id() };
        let replies = self.request(op, RouteNetlinkMessage::GetNsId(msg), 0)?;
        Ok(replies
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewNsId(n) => n.attributes.iter().find_map(|a| match a {
                    NsidAttribute::Id(id) => Some(*id),
                    _ => None,
                }),
                _ => None,
            })
            .filter(|&id| id >= 0))
    }

    /// Reads the events waiting on a [`Rtnl::monitor_all`] socket, each with the id of the
    /// namespace it happened in (`None`: this socket's own namespace). Returns when none is
    /// left (`EAGAIN`); an overrun receive buffer is an error (`ENOBUFS`: events were lost).
    pub fn events_all(&mut self) -> Result<Vec<(Option<i32>, Event)>, RtnlError> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut cbuf = nix::cmsg_space!(libc::c_int);
        loop {
            let (n, nsid) = match recv_with_nsid(self.sock.as_raw_fd(), &mut buf, &mut cbuf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(source) => {
                    return Err(RtnlError::Request {
                        op: RtnlOp::ReadEvents,
                        source,
                    })
                }
            };
            let datagram = buf.get(..n).unwrap_or(&buf);
            for msg in messages(datagram) {
                if let NetlinkPayload::InnerMessage(m) = msg.payload {
                    if let Some(ev) = event(m) {
                        out.push((nsid, ev));
                    }
                }
            }
        }
    }
}
