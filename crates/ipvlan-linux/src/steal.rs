//! Keeps the master namespace's own stack away from frames that belong to slaves.
//!
//! The kernel driver's receive hook *consumes* claimed frames (R-RX-0). An AF_PACKET socket only
//! gets a copy, so without help the host would also process them: answer for an address a slave
//! took from it (T-25), or forward them when `ip_forward` is on. We install, per master, an
//! nftables `netdev` table whose ingress chain drops unicast frames (`pkttype host`) addressed to
//! an active slave address: IPv4, IPv6 and ARP by target. Why this mechanism:
//! - ordering: in `__netif_receive_skb_core` AF_PACKET taps run *before* the netdev ingress hook,
//!   so the daemon still sees every frame it must forward, while the stack never does;
//! - exactness: set lookups keyed by address are what the core's table is (R-ADDR-1), updated
//!   element by element as addresses come and go, with no BPF toolchain or verifier involved;
//! - visibility and cleanup: `nft list table netdev ipvlan_rs_<ifindex>` shows it, and removing
//!   the table with the last slave restores the host exactly.
//!
//! Broadcast and multicast are never dropped: the master keeps its copy (R-RX-L2-2).

use std::io;
use std::net::IpAddr;

use crate::cmd::nft;

/// The nftables table for one master.
#[derive(Debug)]
pub struct Steal {
    table: String,
}

impl Steal {
    /// The table name for a master.
    pub fn table_name(ifindex: u32) -> String {
        format!("ipvlan_rs_{ifindex}")
    }

    /// Installs (or replaces) the table for master `device`, with empty address sets.
    pub fn install(device: &str, ifindex: u32) -> io::Result<Steal> {
        let table = Steal::table_name(ifindex);
        if device.bytes().any(|b| b == b'"' || b == b'\\') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "unusable device name",
            ));
        }
        // `table` first so `delete` never fails on a fresh host.
        let script = format!(
            "table netdev {table} {{}}\n\
             delete table netdev {table}\n\
             table netdev {table} {{\n\
               set v4 {{ type ipv4_addr; }}\n\
               set v6 {{ type ipv6_addr; }}\n\
               chain steal {{\n\
                 type filter hook ingress device \"{device}\" priority -500; policy accept;\n\
                 meta pkttype host ip daddr @v4 drop\n\
                 meta pkttype host ip6 daddr @v6 drop\n\
                 meta pkttype host arp daddr ip @v4 drop\n\
               }}\n\
             }}\n"
        );
        nft(&script)?;
        Ok(Steal { table })
    }

    /// Re-opens the handle of an installed table (after a daemon restart).
    pub fn existing(ifindex: u32) -> Steal {
        Steal {
            table: Steal::table_name(ifindex),
        }
    }

    fn set(addr: IpAddr) -> &'static str {
        match addr {
            IpAddr::V4(_) => "v4",
            IpAddr::V6(_) => "v6",
        }
    }

    /// Starts dropping host-bound unicast to `addr`.
    pub fn add(&self, addr: IpAddr) -> io::Result<()> {
        nft(&format!(
            "add element netdev {} {} {{ {addr} }}\n",
            self.table,
            Steal::set(addr)
        ))
    }

    /// Stops dropping it. Absent elements are fine.
    pub fn remove(&self, addr: IpAddr) -> io::Result<()> {
        let script = format!(
            "add element netdev {t} {s} {{ {addr} }}\ndelete element netdev {t} {s} {{ {addr} }}\n",
            t = self.table,
            s = Steal::set(addr)
        );
        nft(&script)
    }

    /// Removes the table: the host sees everything again.
    pub fn uninstall(&self) -> io::Result<()> {
        nft(&format!(
            "table netdev {t} {{}}\ndelete table netdev {t}\n",
            t = self.table
        ))
    }
}
