//! The map key and value layouts of `bpf/ipvlan.bpf.c`, byte for byte (`#[repr(C)]`, the same
//! field order and padding). Change both sides together.

use std::net::IpAddr;

use ipvlan_core::{DropCounts, DropReason, PortCounters, SlaveCounters};

/// Slaves per port: the fan-out list's length and the size of every per-slave map
/// (`FANOUT_MAX` in the C source).
pub const FANOUT_MAX: usize = 256;
/// Addresses per port (`ADDR_MAX`).
pub const ADDR_MAX: usize = 4096;

/// `struct port_cfg` (map `config`, one entry).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCfg {
    pub master_ifindex: u32,
    pub master_mtu: u32,
    pub master_mac: [u8; 6],
    /// 0 l2, 1 l3, 2 l3s.
    pub mode: u8,
    /// 0 bridge, 1 private, 2 vepa.
    pub flag: u8,
    /// 0 stack, 1 FIB.
    pub route_v4: u8,
    pub route_v6: u8,
    pub trace: u8,
    /// Some slave's device is in the master's own namespace: l3/l3s egress is checked for
    /// routing loops (they can only come back through such a slave).
    pub has_local: u8,
    /// Token bucket size, multicast frames per CPU; 0: unbounded.
    pub mc_burst: u32,
    /// Token refill, frames per second per CPU.
    pub mc_rate: u32,
}

/// Slave flag bits (`struct slave.flags`).
pub const SLAVE_UP: u32 = 1 << 0;
pub const SLAVE_SPOOFCHK: u32 = 1 << 1;
pub const SLAVE_ROUTER: u32 = 1 << 2;
pub const SLAVE_SAME_NS: u32 = 1 << 3;
/// `hostreach`: the port's host slave.
pub const SLAVE_HOST: u32 = 1 << 4;
/// An ipvtap's guest: Ethernet source must be the master's; delivered by a plain redirect.
pub const SLAVE_MAC_GUARD: u32 = 1 << 5;

/// `struct slave` (map `slaves`, keyed by slave id as `u32`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlaveV {
    pub host_ifindex: u32,
    pub mtu: u32,
    pub flags: u32,
}

/// `struct addr_key` (map `addrs`): family 4 or 6, IPv4 in the first four bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrKey {
    pub family: u8,
    pub pad: [u8; 3],
    pub addr: [u8; 16],
}

impl AddrKey {
    pub fn new(a: IpAddr) -> AddrKey {
        let mut addr = [0u8; 16];
        let family = match a {
            IpAddr::V4(v4) => {
                addr[..4].copy_from_slice(&v4.octets());
                4
            }
            IpAddr::V6(v6) => {
                addr = v6.octets();
                6
            }
        };
        AddrKey {
            family,
            pad: [0; 3],
            addr,
        }
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self.family {
            4 => Some(IpAddr::from([
                self.addr[0],
                self.addr[1],
                self.addr[2],
                self.addr[3],
            ])),
            6 => Some(IpAddr::from(self.addr)),
            _ => None,
        }
    }
}

const NREASONS: usize = DropReason::COUNT;

/// `struct slave_ctr` (per-CPU map `slave_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlaveCtr {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_multicast: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
    pub tx_dropped: [u64; NREASONS],
    pub rx_dropped: [u64; NREASONS],
    pub rx_dhcp_steered: u64,
}

/// `struct port_ctr` (per-CPU map `port_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCtr {
    pub rx_claimed: u64,
    pub rx_passed: u64,
    pub rx_multicast_queued: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub to_host_stack: u64,
    pub dropped: [u64; NREASONS],
    pub clone_failed: u64,
    pub fib_fallback: u64,
    pub fanout_cut: u64,
    pub dhcp_xid_taken: u64,
}

/// `struct dhcp_xid` (map `dhcp_xids`, keyed by the xid as loaded from the frame, `u32`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DhcpXid {
    pub slave: u32,
    pub pad: u32,
    /// `bpf_ktime_get_ns` of the last request with this xid.
    pub ts: u64,
}

/// Option bytes of a DHCP request the programs copy (`DHCP_SNAP`).
pub const DHCP_SNAP: usize = 256;

/// `struct dhcp_req` (map `dhcp_reqs`, keyed by slave id as `u32`): the options of the slave's
/// latest DHCP request.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpReq {
    /// Bumped before and after each copy: odd while the program writes.
    pub seq: u64,
    /// Option bytes in `opts`.
    pub len: u32,
    /// Non-zero: more options followed than `opts` holds.
    pub truncated: u32,
    pub opts: [u8; DHCP_SNAP],
}

impl Default for DhcpReq {
    fn default() -> DhcpReq {
        DhcpReq {
            seq: 0,
            len: 0,
            truncated: 0,
            opts: [0; DHCP_SNAP],
        }
    }
}

/// `struct trace` (per-CPU map `trace`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TraceV {
    pub ts: u64,
    pub hook: u32,
    pub verdict: u32,
    pub target: u32,
    pub reason: u32,
    pub site: u32,
    pub family: u32,
    pub ncopies: u32,
    pub pad: u32,
    pub copies: [u32; FANOUT_MAX],
}

impl Default for TraceV {
    fn default() -> TraceV {
        TraceV {
            ts: 0,
            hook: 0,
            verdict: 0,
            target: 0,
            reason: 0,
            site: 0,
            family: 0,
            ncopies: 0,
            pad: 0,
            copies: [0; FANOUT_MAX],
        }
    }
}

// SAFETY: all of these are #[repr(C)] structs of integers and integer arrays with no implicit
// padding (each field is laid out at a multiple of its alignment and the sizes are multiples of
// the largest alignment), so every byte pattern is a valid value and none is uninitialised.
unsafe impl aya::Pod for PortCfg {}
// SAFETY: as above.
unsafe impl aya::Pod for SlaveV {}
// SAFETY: as above.
unsafe impl aya::Pod for AddrKey {}
// SAFETY: as above.
unsafe impl aya::Pod for SlaveCtr {}
// SAFETY: as above.
unsafe impl aya::Pod for PortCtr {}
// SAFETY: as above.
unsafe impl aya::Pod for DhcpXid {}
// SAFETY: as above (8 + 4 + 4 + 256 bytes).
unsafe impl aya::Pod for DhcpReq {}
// SAFETY: as above (ts, then 8 + 256 u32: 1064 bytes).
unsafe impl aya::Pod for TraceV {}

fn drops(a: &[u64; NREASONS]) -> DropCounts {
    let mut d = DropCounts::default();
    for (r, n) in DropReason::ALL.into_iter().zip(a) {
        d.add_n(r, *n);
    }
    d
}

impl SlaveCtr {
    pub fn add(&mut self, o: &SlaveCtr) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.rx_multicast += o.rx_multicast;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.tx_errors += o.tx_errors;
        for i in 0..NREASONS {
            self.tx_dropped[i] += o.tx_dropped[i];
            self.rx_dropped[i] += o.rx_dropped[i];
        }
        self.rx_dhcp_steered += o.rx_dhcp_steered;
    }

    pub fn to_core(&self) -> SlaveCounters {
        SlaveCounters {
            rx_packets: self.rx_packets,
            rx_bytes: self.rx_bytes,
            rx_multicast: self.rx_multicast,
            tx_packets: self.tx_packets,
            tx_bytes: self.tx_bytes,
            tx_errors: self.tx_errors,
            tx_dropped: drops(&self.tx_dropped),
            rx_dropped: drops(&self.rx_dropped),
            rx_dhcp_steered: self.rx_dhcp_steered,
        }
    }
}

impl PortCtr {
    pub fn add(&mut self, o: &PortCtr) {
        self.rx_claimed += o.rx_claimed;
        self.rx_passed += o.rx_passed;
        self.rx_multicast_queued += o.rx_multicast_queued;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.to_host_stack += o.to_host_stack;
        for i in 0..NREASONS {
            self.dropped[i] += o.dropped[i];
        }
        self.clone_failed += o.clone_failed;
        self.fib_fallback += o.fib_fallback;
        self.fanout_cut += o.fanout_cut;
        self.dhcp_xid_taken += o.dhcp_xid_taken;
    }

    pub fn to_core(&self) -> PortCounters {
        PortCounters {
            rx_claimed: self.rx_claimed,
            rx_passed: self.rx_passed,
            rx_multicast_queued: self.rx_multicast_queued,
            tx_packets: self.tx_packets,
            tx_bytes: self.tx_bytes,
            to_host_stack: self.to_host_stack,
            dropped: drops(&self.dropped),
            dhcp_xid_taken: self.dhcp_xid_taken,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_c_structs() {
        assert_eq!(std::mem::size_of::<PortCfg>(), 28);
        assert_eq!(std::mem::size_of::<SlaveV>(), 12);
        assert_eq!(std::mem::size_of::<AddrKey>(), 20);
        assert_eq!(std::mem::size_of::<SlaveCtr>(), (6 + 2 * 17 + 1) * 8);
        assert_eq!(std::mem::size_of::<PortCtr>(), (6 + 17 + 3 + 1) * 8);
        assert_eq!(std::mem::size_of::<DhcpXid>(), 16);
        assert_eq!(std::mem::size_of::<DhcpReq>(), 16 + DHCP_SNAP);
        assert_eq!(std::mem::size_of::<TraceV>(), 8 + 8 * 4 + 4 * FANOUT_MAX);
    }

    #[test]
    fn addr_key_round_trips() {
        for a in ["192.0.2.1", "2001:db8::1"] {
            let ip: IpAddr = a.parse().expect("address");
            assert_eq!(AddrKey::new(ip).ip(), Some(ip));
        }
    }
}
