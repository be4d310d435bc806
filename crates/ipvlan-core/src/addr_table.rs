//! The port's address table (spec §2): exact IPv4/IPv6 address → owning slave.
//!
//! Every address is *reserved* by one slave (R-ADDR-3, checked across all slaves, up or down) and
//! *active* only while that slave is up (R-ADDR-6); lookups see active entries only (R-CLS-5).
//! Scope is ignored, so link-local addresses are unique per port too (R-ADDR-8).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::slave_id::SlaveId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    owner: SlaveId,
    active: bool,
}

/// Result of a successful claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The address is now this slave's.
    New,
    /// The slave already owned it (e.g. a re-announced address, R-ADDR-9).
    AlreadyOwned,
}

/// A claim refused because another slave owns the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owned {
    pub owner: SlaveId,
}

#[derive(Debug, Clone, Default)]
pub struct AddressTable {
    entries: HashMap<IpAddr, Entry>,
    by_slave: HashMap<SlaveId, Vec<IpAddr>>,
}

/// IPv4-mapped IPv6 addresses are kept as IPv6, as the kernel keeps the families apart.
fn key(addr: IpAddr) -> IpAddr {
    addr
}

impl AddressTable {
    /// Records `addr` for `slave`; `active` says whether the slave is up now.
    pub fn claim(&mut self, addr: IpAddr, slave: SlaveId, active: bool) -> Result<Claim, Owned> {
        let addr = key(addr);
        if let Some(entry) = self.entries.get(&addr) {
            return if entry.owner == slave {
                Ok(Claim::AlreadyOwned)
            } else {
                Err(Owned { owner: entry.owner })
            };
        }
        self.entries.insert(
            addr,
            Entry {
                owner: slave,
                active,
            },
        );
        self.by_slave.entry(slave).or_default().push(addr);
        Ok(Claim::New)
    }

    /// Forgets `addr` if `slave` owns it (R-ADDR-7). Returns whether it was removed.
    pub fn release(&mut self, addr: IpAddr, slave: SlaveId) -> bool {
        let addr = key(addr);
        match self.entries.get(&addr) {
            Some(e) if e.owner == slave => {
                self.entries.remove(&addr);
                if let Some(list) = self.by_slave.get_mut(&slave) {
                    list.retain(|a| *a != addr);
                    if list.is_empty() {
                        self.by_slave.remove(&slave);
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// Forgets every address of `slave` (R-LIFE-3).
    pub fn release_all(&mut self, slave: SlaveId) -> Vec<IpAddr> {
        let addrs = self.by_slave.remove(&slave).unwrap_or_default();
        for a in &addrs {
            self.entries.remove(a);
        }
        addrs
    }

    /// Activates or withdraws all of `slave`'s addresses (slave up/down, R-ADDR-6).
    pub fn set_active(&mut self, slave: SlaveId, active: bool) {
        if let Some(list) = self.by_slave.get(&slave) {
            for a in list {
                if let Some(e) = self.entries.get_mut(a) {
                    e.active = active;
                }
            }
        }
    }

    /// The slave an address steers to: O(1), active entries only (R-CLS-5).
    pub fn lookup(&self, addr: IpAddr) -> Option<SlaveId> {
        self.entries
            .get(&key(addr))
            .filter(|e| e.active)
            .map(|e| e.owner)
    }

    /// The slave that reserves an address, active or not.
    pub fn owner(&self, addr: IpAddr) -> Option<SlaveId> {
        self.entries.get(&key(addr)).map(|e| e.owner)
    }

    /// A slave's addresses in the order they were claimed.
    pub fn addresses_of(&self, slave: SlaveId) -> &[IpAddr] {
        self.by_slave.get(&slave).map_or(&[], Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::ip;

    const S1: SlaveId = SlaveId::from_raw(1);
    const S2: SlaveId = SlaveId::from_raw(2);

    #[test]
    fn r_addr_1_exact_lookup() {
        let mut t = AddressTable::default();
        assert_eq!(t.claim(ip("192.0.2.11"), S1, true), Ok(Claim::New));
        assert_eq!(t.lookup(ip("192.0.2.11")), Some(S1));
        assert_eq!(t.lookup(ip("192.0.2.12")), None);
        assert_eq!(t.claim(ip("2001:db8:1::11"), S1, true), Ok(Claim::New));
        assert_eq!(t.lookup(ip("2001:db8:1::11")), Some(S1));
        // IPv4 and IPv4-mapped IPv6 are different keys.
        assert_eq!(t.lookup(ip("::ffff:192.0.2.11")), None);
    }

    #[test]
    fn r_addr_3_second_claim_names_the_owner() {
        let mut t = AddressTable::default();
        t.claim(ip("192.0.2.11"), S1, true).unwrap();
        assert_eq!(
            t.claim(ip("192.0.2.11"), S2, true),
            Err(Owned { owner: S1 })
        );
        assert_eq!(t.claim(ip("192.0.2.11"), S1, true), Ok(Claim::AlreadyOwned));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn r_addr_3_down_slaves_still_reserve() {
        let mut t = AddressTable::default();
        t.claim(ip("192.0.2.12"), S2, false).unwrap();
        assert_eq!(t.lookup(ip("192.0.2.12")), None);
        assert_eq!(
            t.claim(ip("192.0.2.12"), S1, true),
            Err(Owned { owner: S2 })
        );
    }

    #[test]
    fn r_addr_6_active_subset_follows_up_down() {
        let mut t = AddressTable::default();
        t.claim(ip("192.0.2.11"), S1, true).unwrap();
        t.claim(ip("2001:db8:1::11"), S1, true).unwrap();
        t.set_active(S1, false);
        assert_eq!(t.lookup(ip("192.0.2.11")), None);
        assert_eq!(t.owner(ip("192.0.2.11")), Some(S1));
        t.set_active(S1, true);
        assert_eq!(t.lookup(ip("2001:db8:1::11")), Some(S1));
    }

    #[test]
    fn r_addr_7_removal_is_immediate_and_owner_checked() {
        let mut t = AddressTable::default();
        t.claim(ip("192.0.2.11"), S1, true).unwrap();
        assert!(!t.release(ip("192.0.2.11"), S2));
        assert!(t.release(ip("192.0.2.11"), S1));
        assert_eq!(t.lookup(ip("192.0.2.11")), None);
        assert!(t.is_empty());
        assert_eq!(t.claim(ip("192.0.2.11"), S2, true), Ok(Claim::New));
    }

    #[test]
    fn r_addr_8_link_local_is_unique_per_port() {
        let mut t = AddressTable::default();
        t.claim(ip("fe80::1"), S1, true).unwrap();
        assert_eq!(t.claim(ip("fe80::1"), S2, true), Err(Owned { owner: S1 }));
    }

    #[test]
    fn r_life_3_release_all() {
        let mut t = AddressTable::default();
        t.claim(ip("192.0.2.11"), S1, true).unwrap();
        t.claim(ip("2001:db8:1::11"), S1, true).unwrap();
        t.claim(ip("192.0.2.12"), S2, true).unwrap();
        assert_eq!(t.addresses_of(S1).len(), 2);
        assert_eq!(t.release_all(S1).len(), 2);
        assert_eq!(t.len(), 1);
        assert!(t.addresses_of(S1).is_empty());
    }
}
