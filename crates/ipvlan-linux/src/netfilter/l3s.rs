//! The l3s half of [`super::Netfilter`] that is not nftables: the firewall mark (which is also
//! the routing table id), the policy routing through rtnetlink, and the TTL fix for the copies
//! `dup` hands to the sink.

use crate::rtnl::{IpFamily, Rtnl, RtnlError};

use super::NetfilterError;

/// Firewall mark of one master's l3s port, also the id of its routing table:
/// `0x1e5b0000 | (ifindex & 0xffff)`.
pub fn mark_for(ifindex: u32) -> u32 {
    0x1e5b_0000 | (ifindex & 0xffff)
}

/// Preference of the policy-routing rule.
pub const RULE_PREF: u32 = 300;

/// For each family: `ip rule del fwmark MARK lookup MARK` (a leftover), `ip rule add fwmark MARK
/// lookup MARK pref 300`, `ip route replace local default dev lo table MARK`: marked packets are
/// local. Acts in the calling thread's namespace; stops at the first failure.
pub(super) fn add_policy_routing(ifindex: u32) -> Result<(), NetfilterError> {
    let mark = mark_for(ifindex);
    let mut r = Rtnl::open().map_err(NetfilterError::Rtnl)?;
    r.link_by_name("lo")
        .map_err(NetfilterError::Rtnl)?
        .ok_or(NetfilterError::NoLoopback)?;
    for family in IpFamily::ALL {
        let err = |op: &'static str| {
            move |source| NetfilterError::Routing {
                op,
                family,
                table: mark,
                source,
            }
        };
        absent_is_fine(r.del_rule_fwmark(family, mark, mark))
            .map_err(err("delete a leftover fwmark rule"))?;
        r.add_rule_fwmark(family, mark, mark, RULE_PREF)
            .map_err(err("add the fwmark rule"))?;
        r.replace_local_default_route(family, mark)
            .map_err(|source| NetfilterError::LocalRoute {
                family,
                table: mark,
                source,
            })?;
    }
    Ok(())
}

/// A rule to delete that is not there (ENOENT, or ESRCH from older kernels) is no failure.
fn absent_is_fine(r: Result<(), RtnlError>) -> Result<(), RtnlError> {
    match r {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => Ok(()),
        r => r,
    }
}

/// For each family: delete the rule (absent is fine) and flush the table. Tries every step and
/// returns every failure.
pub(super) fn remove_policy_routing(ifindex: u32) -> Vec<NetfilterError> {
    let mark = mark_for(ifindex);
    let mut r = match Rtnl::open() {
        Ok(r) => r,
        Err(e) => return vec![NetfilterError::Rtnl(e)],
    };
    let mut errors = Vec::new();
    for family in IpFamily::ALL {
        if let Err(source) = absent_is_fine(r.del_rule_fwmark(family, mark, mark)) {
            errors.push(NetfilterError::Routing {
                op: "delete the fwmark rule",
                family,
                table: mark,
                source,
            });
        }
        if let Err(source) = r.flush_route_table(family, mark) {
            errors.push(NetfilterError::Routing {
                op: "flush the routing table",
                family,
                table: mark,
                source,
            });
        }
    }
    errors
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
