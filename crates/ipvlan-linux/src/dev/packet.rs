//! The master through AF_PACKET sockets: every frame it receives (before the ingress hooks, so
//! the steal rules cannot hide anything from us), and a way to transmit frames on it.
//!
//! Several sockets on one master form a fanout group (`PACKET_FANOUT_HASH`): each received frame
//! goes to exactly one of them, chosen by its flow's hash, so every worker reads its own socket
//! and a flow always reaches the same worker.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};

use crate::error::io_like_error;
use crate::sys::{cvt, cvt_size, getsockopt_int, setsockopt};

/// A failed setup of a packet socket on the master. The per-frame calls
/// ([`PacketSocket::recv`], [`PacketSocket::send`]) return plain `io::Error`s instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// The interface index does not fit the kernel's `int`. Kind `InvalidInput`; no OS error.
    #[error("interface index {ifindex} is out of range")]
    BadIndex { ifindex: u32 },
    /// `socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)` failed (`EPERM` without `CAP_NET_RAW`,
    /// `EMFILE` when out of descriptors).
    #[error("opening a packet socket for link {ifindex}: {source}")]
    Socket {
        ifindex: u32,
        #[source]
        source: io::Error,
    },
    /// Binding the socket to the link failed (`ENODEV`: no such link).
    #[error("binding a packet socket to link {ifindex}: {source}")]
    Bind {
        ifindex: u32,
        #[source]
        source: io::Error,
    },
    /// Setting a socket option failed; `option` is its name in `<linux/if_packet.h>` or
    /// `<asm-generic/socket.h>` (`PACKET_VNET_HDR`, `SO_RCVBUF`…).
    #[error("setting {option} on the packet socket of link {ifindex}: {source}")]
    SetOption {
        ifindex: u32,
        option: &'static str,
        #[source]
        source: io::Error,
    },
    /// Creating or joining the fanout group (`PACKET_FANOUT`) failed.
    #[error("joining the fanout group of link {ifindex}: {source}")]
    Fanout {
        ifindex: u32,
        #[source]
        source: io::Error,
    },
}

impl PacketError {
    pub(crate) fn io_source(&self) -> Option<&io::Error> {
        match self {
            PacketError::BadIndex { .. } => None,
            PacketError::Socket { source, .. }
            | PacketError::Bind { source, .. }
            | PacketError::SetOption { source, .. }
            | PacketError::Fanout { source, .. } => Some(source),
        }
    }

    fn own_kind(&self) -> Option<io::ErrorKind> {
        match self {
            PacketError::BadIndex { .. } => Some(io::ErrorKind::InvalidInput),
            _ => None,
        }
    }
}

io_like_error!(PacketError);

/// `sll_pkttype` of a received frame (`PACKET_*` of `<linux/if_packet.h>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PktType {
    /// Addressed to the device's own MAC (`PACKET_HOST`).
    Host,
    /// To the broadcast address (`PACKET_BROADCAST`).
    Broadcast,
    /// To a multicast group (`PACKET_MULTICAST`).
    Multicast,
    /// To another host's MAC, seen in promiscuous mode (`PACKET_OTHERHOST`).
    OtherHost,
    /// Sent by this host (`PACKET_OUTGOING`).
    Outgoing,
    /// The master's own transmission looped back (`PACKET_LOOPBACK`, R-RX-L2-1).
    Loopback,
    /// Any other value (`PACKET_USER`, `PACKET_KERNEL`…).
    Other(u8),
}

impl From<u8> for PktType {
    fn from(v: u8) -> PktType {
        match v {
            libc::PACKET_HOST => PktType::Host,
            libc::PACKET_BROADCAST => PktType::Broadcast,
            libc::PACKET_MULTICAST => PktType::Multicast,
            libc::PACKET_OTHERHOST => PktType::OtherHost,
            libc::PACKET_OUTGOING => PktType::Outgoing,
            libc::PACKET_LOOPBACK => PktType::Loopback,
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
    /// transmissions: `PACKET_IGNORE_OUTGOING`) and puts the device in allmulti
    /// (`PACKET_ADD_MEMBERSHIP` of `PACKET_MR_ALLMULTI`) so slaves' groups get through
    /// (R-FEAT-3). Its receive buffer is 4 MiB (`SO_RCVBUF`, capped by `rmem_max`).
    ///
    /// Every frame read or written carries a [`crate::vnet::HEADER_LEN`]-byte `virtio_net_hdr`
    /// first (`PACKET_VNET_HDR`): frames from a veth or a NIC with offloads arrive with their
    /// checksum not yet computed, or as 64 KiB GSO super-frames, and the header says so. Passed
    /// through unchanged to a TAP opened with the same header, the slave's kernel finishes the
    /// job.
    pub fn open(ifindex: u32) -> Result<PacketSocket, PacketError> {
        let index =
            libc::c_int::try_from(ifindex).map_err(|_| PacketError::BadIndex { ifindex })?;
        let fd = socket::socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::EthAll,
        )
        .map_err(|e| PacketError::Socket {
            ifindex,
            source: e.into(),
        })?;
        bind(&fd, index).map_err(|source| PacketError::Bind { ifindex, source })?;
        let option = |option: &'static str| {
            move |source: io::Error| PacketError::SetOption {
                ifindex,
                option,
                source,
            }
        };
        let one: libc::c_int = 1;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)
            .map_err(option("PACKET_IGNORE_OUTGOING"))?;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &one)
            .map_err(option("PACKET_VNET_HDR"))?;
        let mreq = libc::packet_mreq {
            mr_ifindex: index,
            mr_type: libc::PACKET_MR_ALLMULTI as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(option("PACKET_ADD_MEMBERSHIP"))?;
        socket::setsockopt(&fd, sockopt::RcvBuf, &(4 << 20))
            .map_err(|e| option("SO_RCVBUF")(e.into()))?;
        Ok(PacketSocket { fd, ifindex })
    }

    /// Opens `n` sockets (at least one) on `ifindex`, as [`PacketSocket::open`], sharing its
    /// received frames by flow hash: the first creates a fanout group of a unique id
    /// (`PACKET_FANOUT` with `PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID`), the others
    /// join it.
    pub fn open_fanout(ifindex: u32, n: usize) -> Result<Vec<PacketSocket>, PacketError> {
        let first = PacketSocket::open(ifindex)?;
        if n <= 1 {
            return Ok(vec![first]);
        }
        let fanout = |source| PacketError::Fanout { ifindex, source };
        let hash = libc::PACKET_FANOUT_HASH as libc::c_int;
        let unique = libc::PACKET_FANOUT_FLAG_UNIQUEID as libc::c_int;
        // The argument is `id | (type | flags) << 16`; the kernel picks the id.
        let arg = (hash | unique) << 16;
        setsockopt(&first.fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg).map_err(fanout)?;
        let got =
            getsockopt_int(&first.fd, libc::SOL_PACKET, libc::PACKET_FANOUT).map_err(fanout)?;
        // A socket must be bound before it can join, so frames arriving in between reach it
        // and the group both: harmless, the port has no slave yet when its sockets open.
        let join = (got & 0xffff) | (hash << 16);
        let mut all = vec![first];
        for _ in 1..n {
            let s = PacketSocket::open(ifindex)?;
            setsockopt(&s.fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &join).map_err(fanout)?;
            all.push(s);
        }
        Ok(all)
    }

    /// The index of the link the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Receives one frame (with its vnet header) into `buf`; returns its length and how it was
    /// addressed (`sll_pkttype`). `WouldBlock` when none is waiting. A frame longer than `buf`
    /// is cut, and the length returned is its full one (`MSG_TRUNC`).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, PktType)> {
        let mut sll = empty_sockaddr_ll();
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf` and at most `len` bytes
        // (a `sockaddr_ll`) into `sll`, both live for the call; `len` is updated in place.
        // (`nix::sys::socket::recvfrom` takes no flags, and we need `MSG_TRUNC`.)
        let n = cvt_size(unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                std::ptr::from_mut(&mut sll).cast(),
                &mut len,
            )
        })?;
        Ok((n, PktType::from(sll.sll_pkttype)))
    }

    /// Transmits one vnet header + Ethernet frame on the device; returns the bytes sent.
    /// `WouldBlock` when the socket's send buffer is full.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        Ok(socket::send(self.fd.as_raw_fd(), frame, MsgFlags::empty())?)
    }

    /// Frames the kernel dropped for this socket since the last call because its receive
    /// buffer was full (`PACKET_STATISTICS`, which resets on each read).
    pub fn take_drops(&self) -> io::Result<u32> {
        let stats: TpacketStats =
            crate::sys::getsockopt_value(&self.fd, libc::SOL_PACKET, PACKET_STATISTICS)?;
        Ok(stats.drops)
    }

    /// The descriptor, to poll for readability.
    pub fn poll_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// `PACKET_STATISTICS` (`<linux/if_packet.h>`).
const PACKET_STATISTICS: libc::c_int = 6;

/// `struct tpacket_stats`: frames received and dropped since the last read.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct TpacketStats {
    packets: u32,
    drops: u32,
}

/// A `sockaddr_ll` with every field zero.
fn empty_sockaddr_ll() -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: 0,
        sll_protocol: 0,
        sll_ifindex: 0,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    }
}

/// Binds a packet socket to link `index`, for every protocol (`ETH_P_ALL`).
///
/// `nix::sys::socket::LinkAddr` can only be made from a raw `sockaddr` (unsafe as well), so
/// this binds with libc directly.
fn bind(fd: &OwnedFd, index: libc::c_int) -> io::Result<()> {
    let sll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: (libc::ETH_P_ALL as u16).to_be(),
        sll_ifindex: index,
        ..empty_sockaddr_ll()
    };
    // SAFETY: the kernel reads at most the length we pass, which is that of `sll`, a live
    // `sockaddr_ll` on our stack.
    cvt(unsafe {
        libc::bind(
            fd.as_fd().as_raw_fd(),
            std::ptr::from_ref(&sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_types_follow_if_packet_h() {
        let got: Vec<PktType> = (0..=6).map(PktType::from).collect();
        use PktType::*;
        assert_eq!(
            got,
            [
                Host,
                Broadcast,
                Multicast,
                OtherHost,
                Outgoing,
                Loopback,
                Other(6)
            ]
        );
    }

    #[test]
    fn an_index_beyond_int_is_refused_before_any_syscall() {
        let e = PacketSocket::open(u32::MAX).expect_err("out of range");
        assert!(matches!(e, PacketError::BadIndex { ifindex: u32::MAX }));
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(e.raw_os_error(), None);
    }
}
