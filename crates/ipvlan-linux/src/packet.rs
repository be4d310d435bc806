//! The master through AF_PACKET sockets: every frame it receives (before the ingress hooks, so
//! the steal rules cannot hide anything from us), and a way to transmit frames on it.
//!
//! Several sockets on one master form a fanout group (`PACKET_FANOUT_HASH`): each received frame
//! goes to exactly one of them, chosen by its flow's hash, so every worker reads its own socket
//! and a flow always reaches the same worker.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::{cvt, cvt_size};

const ETH_P_ALL: u16 = 0x0003;
const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_ALLMULTI: libc::c_ushort = 2;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_HASH: libc::c_int = 0;
/// Let the kernel pick a group id no other process uses (returned by getsockopt).
const PACKET_FANOUT_FLAG_UNIQUEID: libc::c_int = 0x2000;

/// `sll_pkttype` of a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PktType {
    Host,
    Broadcast,
    Multicast,
    OtherHost,
    Outgoing,
    /// The master's own transmission looped back (R-RX-L2-1).
    Loopback,
    Other(u8),
}

impl From<u8> for PktType {
    fn from(v: u8) -> PktType {
        match v {
            0 => PktType::Host,
            1 => PktType::Broadcast,
            2 => PktType::Multicast,
            3 => PktType::OtherHost,
            4 => PktType::Outgoing,
            5 => PktType::Loopback,
            other => PktType::Other(other),
        }
    }
}

/// A raw socket bound to one device.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
}

impl PacketSocket {
    /// Opens a non-blocking socket on `ifindex` that sees all incoming frames (not our own
    /// transmissions) and puts the device in allmulti so slaves' groups get through (R-FEAT-3).
    ///
    /// Every frame read or written carries a [`crate::vnet::HEADER_LEN`]-byte `virtio_net_hdr`
    /// first: frames from a veth or a NIC with offloads arrive with their checksum not yet
    /// computed, or as 64 KiB GSO super-frames, and the header says so. Passed through unchanged
    /// to a TAP opened with the same header, the slave's kernel finishes the job.
    pub fn open(ifindex: u32) -> io::Result<PacketSocket> {
        let proto = ETH_P_ALL.to_be();
        // SAFETY: plain socket(2) call.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::c_int::from(proto),
            )
        })?;
        // SAFETY: socket(2) returned a new descriptor that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let index = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))?;
        // SAFETY: sockaddr_ll is plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index;
        // SAFETY: binding to a sockaddr_ll of the size we pass.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        let one: libc::c_int = 1;
        setsockopt(&fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one)?;
        setsockopt(&fd, SOL_PACKET, PACKET_VNET_HDR, &one)?;
        // SAFETY: packet_mreq is plain old data.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = index;
        mreq.mr_type = PACKET_MR_ALLMULTI;
        setsockopt(&fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)?;
        let rcvbuf: libc::c_int = 4 << 20;
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf)?;
        Ok(PacketSocket { fd, ifindex })
    }

    /// Opens `n` sockets on `ifindex` (as [`PacketSocket::open`]) sharing its received frames
    /// by flow hash.
    pub fn open_fanout(ifindex: u32, n: usize) -> io::Result<Vec<PacketSocket>> {
        let first = PacketSocket::open(ifindex)?;
        if n <= 1 {
            return Ok(vec![first]);
        }
        let arg = (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16;
        setsockopt(&first.fd, SOL_PACKET, PACKET_FANOUT, &arg)?;
        let mut got: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: PACKET_FANOUT reads back an int into `got`, whose size we pass.
        cvt(unsafe {
            libc::getsockopt(
                first.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_FANOUT,
                (&mut got as *mut libc::c_int).cast(),
                &mut len,
            )
        })?;
        // A socket must be bound before it can join, so frames arriving in between reach it
        // and the group both: harmless, the port has no slave yet when its sockets open.
        let join = (got & 0xffff) | (PACKET_FANOUT_HASH << 16);
        let mut all = vec![first];
        for _ in 1..n {
            let s = PacketSocket::open(ifindex)?;
            setsockopt(&s.fd, SOL_PACKET, PACKET_FANOUT, &join)?;
            all.push(s);
        }
        Ok(all)
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Receives one frame (with its vnet header). `WouldBlock` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, PktType)> {
        // SAFETY: sockaddr_ll is plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: receiving into our buffer and address storage, with their true sizes.
        let n = cvt_size(unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        })?;
        Ok((n, PktType::from(sll.sll_pkttype)))
    }

    /// Transmits one vnet header + Ethernet frame on the device.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: sending from a borrowed buffer of the length we pass on a bound socket.
        cvt_size(unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) })
    }

    pub fn poll_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

pub(crate) fn setsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: passing a reference to a live T with its exact size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}
