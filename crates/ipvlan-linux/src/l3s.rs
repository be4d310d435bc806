//! l3s on a userspace data plane: the master namespace's netfilter and conntrack must see slave
//! traffic in both directions (R-RX-L3S-1, R-RX-L3S-2).
//!
//! Egress already passes the master's OUTPUT and POSTROUTING (it is sent with a raw socket, see
//! [`crate::host`]). Ingress is what the kernel does with an l3mdev hook: after PREROUTING, a
//! packet for a slave address is routed as local, runs the master's INPUT hooks, and at the very
//! end of INPUT is handed to the slave. We reproduce that with what the kernel offers outside a
//! driver:
//! - nftables `ip` and `ip6` tables `ipvlan_rs_l3s_<ifindex>`: in PREROUTING (priority -90, after DNAT)
//!   packets arriving on the master for an active slave address get a firewall mark; at the end
//!   of INPUT (priority 2147483600) they are duplicated to a *sink* TAP owned by the daemon and
//!   the original is dropped;
//! - a policy-routing rule `fwmark MARK lookup TABLE` whose table holds `local default dev lo`,
//!   so marked packets (and only those: ARP is never marked, so the host does not answer ARP for
//!   slave addresses, R-RX-L3S-3) are local and traverse INPUT;
//! - the daemon reads the copies from the sink (`dup` decremented TTL/hop limit; it restores it)
//!   and delivers them to the slave.
//!
//! A rule in the master's PREROUTING or INPUT that drops a slave's traffic therefore takes
//! effect, and replies to connections a slave opened match their conntrack entry.

use std::io;
use std::net::IpAddr;
use std::process::Command;

use crate::cmd::{nft, run};

/// Firewall mark and routing table of one master's l3s port.
pub fn mark_for(ifindex: u32) -> u32 {
    0x1e5b_0000 | (ifindex & 0xffff)
}

/// Priority of the policy-routing rule.
const RULE_PREF: u32 = 300;

/// The installed l3s plumbing of one master.
#[derive(Debug)]
pub struct L3sHooks {
    table: String,
    mark: u32,
}

impl L3sHooks {
    /// Installs the table and the routing rules for master `master` (index `ifindex`), with
    /// copies going to the TAP `sink`.
    pub fn install(master: &str, ifindex: u32, sink: &str) -> io::Result<L3sHooks> {
        let table = format!("ipvlan_rs_l3s_{ifindex}");
        let mark = mark_for(ifindex);
        for name in [master, sink] {
            if name.bytes().any(|b| b == b'"' || b == b'\\') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "unusable device name",
                ));
            }
        }
        // `dup` exists per family (ip, ip6), not in `inet`: one table of each.
        let mut script = String::new();
        for (fam, set, ty, gw) in [
            ("ip", "v4", "ipv4_addr", "169.254.0.1"),
            ("ip6", "v6", "ipv6_addr", "fe80::1"),
        ] {
            script.push_str(&format!(
                "table {fam} {table} {{}}\n\
                 delete table {fam} {table}\n\
                 table {fam} {table} {{\n\
                   set {set} {{ type {ty}; }}\n\
                   chain mark_in {{\n\
                     type filter hook prerouting priority -90; policy accept;\n\
                     iifname \"{master}\" {fam} daddr @{set} meta mark set {mark:#x}\n\
                   }}\n\
                   chain to_slave {{\n\
                     type filter hook input priority 2147483600; policy accept;\n\
                     meta mark {mark:#x} {fam} daddr @{set} dup to {gw} device \"{sink}\" drop\n\
                   }}\n\
                 }}\n"
            ));
        }
        nft(&script)?;
        let hooks = L3sHooks { table, mark };
        if let Err(e) = hooks.add_rules() {
            let _ = hooks.uninstall();
            return Err(e);
        }
        Ok(hooks)
    }

    /// The policy-routing half: marked packets are local.
    fn add_rules(&self) -> io::Result<()> {
        let mark = self.mark;
        let (m, t) = (mark.to_string(), mark.to_string());
        for fam in ["-4", "-6"] {
            let _ = run(
                Command::new("ip").args([fam, "rule", "del", "fwmark", &m, "lookup", &t]),
                None,
            );
            run(
                Command::new("ip").args([
                    fam,
                    "rule",
                    "add",
                    "fwmark",
                    &m,
                    "lookup",
                    &t,
                    "pref",
                    &RULE_PREF.to_string(),
                ]),
                None,
            )?;
            let any = if fam == "-4" { "0.0.0.0/0" } else { "::/0" };
            run(
                Command::new("ip").args([
                    fam, "route", "replace", "local", any, "dev", "lo", "table", &t,
                ]),
                None,
            )
            .map_err(|e| {
                io::Error::other(format!(
                    "{e} (l3s needs the loopback device up in the master's namespace)"
                ))
            })?;
        }
        Ok(())
    }

    /// (family, set) holding `addr`.
    fn set(addr: IpAddr) -> (&'static str, &'static str) {
        match addr {
            IpAddr::V4(_) => ("ip", "v4"),
            IpAddr::V6(_) => ("ip6", "v6"),
        }
    }

    pub fn add(&self, addr: IpAddr) -> io::Result<()> {
        let (f, s) = L3sHooks::set(addr);
        nft(&format!(
            "add element {f} {} {s} {{ {addr} }}\n",
            self.table
        ))
    }

    pub fn remove(&self, addr: IpAddr) -> io::Result<()> {
        let (t, (f, s)) = (&self.table, L3sHooks::set(addr));
        nft(&format!(
            "add element {f} {t} {s} {{ {addr} }}\ndelete element {f} {t} {s} {{ {addr} }}\n"
        ))
    }

    /// Removes the table, the rules and the routes.
    pub fn uninstall(&self) -> io::Result<()> {
        let t = self.mark.to_string();
        for fam in ["-4", "-6"] {
            let _ = run(
                Command::new("ip").args([fam, "rule", "del", "fwmark", &t, "lookup", &t]),
                None,
            );
            let _ = run(
                Command::new("ip").args([fam, "route", "flush", "table", &t]),
                None,
            );
        }
        nft(&format!(
            "table ip {t} {{}}\ndelete table ip {t}\ntable ip6 {t} {{}}\ndelete table ip6 {t}\n",
            t = self.table
        ))
    }
}

/// Undoes what `dup` did to a copied IP packet: TTL / hop limit back up by one (the kernel's
/// l3s does not decrement it, R-TX-L3-3), IPv4 header checksum updated incrementally.
pub fn restore_hop_limit(packet: &mut [u8]) {
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= 20 => {
            packet[8] = packet[8].wrapping_add(1);
            // RFC 1624: HC' = ~(~HC + ~m + m'), the TTL is the high byte of word 4.
            let old = u16::from_be_bytes([packet[8].wrapping_sub(1), packet[9]]);
            let new = u16::from_be_bytes([packet[8], packet[9]]);
            let hc = u16::from_be_bytes([packet[10], packet[11]]);
            let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            let hc = !(sum as u16);
            packet[10..12].copy_from_slice(&hc.to_be_bytes());
        }
        Some(6) if packet.len() >= 40 => packet[7] = packet[7].wrapping_add(1),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum(h: &[u8]) -> u16 {
        let mut sum: u32 = h
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn ttl_is_restored_with_a_valid_checksum() {
        let mut h = [
            0x45, 0, 0, 84, 0x12, 0x34, 0x40, 0, 63, 1, 0, 0, 192, 0, 2, 254, 198, 51, 100, 11,
        ];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        restore_hop_limit(&mut h);
        assert_eq!(h[8], 64);
        assert_eq!(checksum(&h), 0, "header checksum still verifies");
    }

    #[test]
    fn hop_limit_is_restored() {
        let mut p = [0u8; 40];
        p[0] = 0x60;
        p[7] = 63;
        restore_hop_limit(&mut p);
        assert_eq!(p[7], 64);
    }
}
