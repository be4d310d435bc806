//! Slave ids (`dev_id`, R-DEVID-1) and the IPv6 interface identifiers built from them (R-DEVID-2).

use std::fmt;
use std::net::Ipv6Addr;

use crate::wire::MacAddr;

/// Lowest slave id; the master itself is id 0.
pub const FIRST_ID: u16 = 1;
/// Highest slave id (`0xFFFD`): at most 65 533 slaves per port (R-CRT-9).
pub const LAST_ID: u16 = 0xfffd;

/// A slave's id within its port, unique while the slave exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlaveId(u16);

impl SlaveId {
    pub fn get(self) -> u16 {
        self.0
    }

    /// Only for tests and for re-creating persisted state; the allocator hands out real ids.
    pub const fn from_raw(raw: u16) -> SlaveId {
        SlaveId(raw)
    }
}

impl fmt::Display for SlaveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

const WORDS: usize = 65536 / 64;

/// Round-robin id allocation as the kernel's `ida` use in ipvlan: the lowest free id at or above
/// a cursor, wrapping to the lowest free id ≥ 1; the cursor moves past each new id, so ids of
/// deleted slaves are not reused until it wraps.
#[derive(Clone)]
pub struct SlaveIdAllocator {
    used: Box<[u64; WORDS]>,
    cursor: u16,
    count: usize,
}

impl Default for SlaveIdAllocator {
    fn default() -> Self {
        SlaveIdAllocator {
            used: Box::new([0; WORDS]),
            cursor: FIRST_ID,
            count: 0,
        }
    }
}

impl fmt::Debug for SlaveIdAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlaveIdAllocator")
            .field("cursor", &self.cursor)
            .field("count", &self.count)
            .finish()
    }
}

impl SlaveIdAllocator {
    fn is_used(&self, id: u16) -> bool {
        self.used[usize::from(id) / 64] & (1 << (id % 64)) != 0
    }

    fn lowest_free(&self, from: u16, to: u16) -> Option<u16> {
        (from..=to).find(|&id| !self.is_used(id))
    }

    /// `None` when all 65 533 ids are taken.
    pub fn allocate(&mut self) -> Option<SlaveId> {
        let start = self.cursor.clamp(FIRST_ID, LAST_ID + 1);
        let id = (start <= LAST_ID)
            .then(|| self.lowest_free(start, LAST_ID))
            .flatten()
            .or_else(|| self.lowest_free(FIRST_ID, start.saturating_sub(1).max(FIRST_ID)))?;
        self.mark(id);
        self.cursor = id + 1;
        Some(SlaveId(id))
    }

    /// Marks an id taken without moving the cursor (restoring persisted state).
    pub fn reserve(&mut self, id: SlaveId) -> bool {
        if !(FIRST_ID..=LAST_ID).contains(&id.0) || self.is_used(id.0) {
            return false;
        }
        self.mark(id.0);
        true
    }

    fn mark(&mut self, id: u16) {
        self.used[usize::from(id) / 64] |= 1 << (id % 64);
        self.count += 1;
    }

    pub fn release(&mut self, id: SlaveId) {
        if self.is_used(id.0) {
            self.used[usize::from(id.0) / 64] &= !(1 << (id.0 % 64));
            self.count -= 1;
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The 64-bit IPv6 interface identifier of a device with `mac` and slave id `dev_id`
/// (`addrgenmode eui64`). The master (id 0) gets the standard EUI-64 (`ff:fe`, U/L bit flipped);
/// a slave gets the id in place of `ff:fe` and the U/L bit unchanged, so slaves sharing one MAC
/// never collide (R-DEVID-2).
pub fn interface_id(mac: MacAddr, dev_id: u16) -> [u8; 8] {
    let m = mac.0;
    if dev_id == 0 {
        [m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]
    } else {
        let [hi, lo] = dev_id.to_be_bytes();
        [m[0], m[1], m[2], hi, lo, m[3], m[4], m[5]]
    }
}

/// The `fe80::/64` link-local address the kernel would give this device.
pub fn link_local(mac: MacAddr, dev_id: u16) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o[0] = 0xfe;
    o[1] = 0x80;
    o[8..].copy_from_slice(&interface_id(mac, dev_id));
    Ipv6Addr::from(o)
}

/// Whether `addr`'s interface identifier (its low 64 bits) is the one the kernel builds from
/// `mac` for a device without a `dev_id` (modified EUI-64, RFC 4291 appendix A: `ff:fe` in the
/// middle, the universal/local bit flipped) — the master's own identity. An ipvlan slave never
/// generates it (R-DEVID-2: its identifier carries its `dev_id` instead), whatever the prefix:
/// link-local, SLAAC (RFC 4862) or a stable address the user configured.
pub fn is_shared_identity(addr: Ipv6Addr, mac: MacAddr) -> bool {
    addr.octets()[8..] == interface_id(mac, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_devid_2_the_shared_identity_is_the_masters_eui_64_under_any_prefix() {
        let mac = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
        for a in [
            "fe80::ff:fe00:1",
            "2001:db8:5::ff:fe00:1",
            "2001:db8::ff:fe00:1",
        ] {
            assert!(is_shared_identity(a.parse().unwrap(), mac), "{a}");
        }
        for a in [
            "fe80::200:0:100:1",
            "2001:db8:5::200:0:200:1",
            "2001:db8:5::1",
        ] {
            assert!(!is_shared_identity(a.parse().unwrap(), mac), "{a}");
        }
        assert!(!is_shared_identity(link_local(mac, 1), mac));
        assert!(is_shared_identity(link_local(mac, 0), mac));
    }

    #[test]
    fn r_devid_1_t_20_ids_are_round_robin() {
        let mut ids = SlaveIdAllocator::default();
        let s1 = ids.allocate().unwrap();
        let s2 = ids.allocate().unwrap();
        ids.release(s1);
        let s3 = ids.allocate().unwrap();
        assert_eq!((s1.get(), s2.get(), s3.get()), (1, 2, 3));
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn r_devid_1_wraps_to_lowest_free() {
        let mut ids = SlaveIdAllocator::default();
        let all: Vec<_> = (0..LAST_ID).map(|_| ids.allocate().unwrap()).collect();
        assert_eq!(all.last().unwrap().get(), LAST_ID);
        // R-CRT-9: the 65 534th slave has no id.
        assert_eq!(ids.allocate(), None);
        ids.release(SlaveId(7));
        ids.release(SlaveId(3));
        assert_eq!(ids.allocate(), Some(SlaveId(3)));
        assert_eq!(ids.allocate(), Some(SlaveId(7)));
        assert_eq!(ids.allocate(), None);
    }

    #[test]
    fn reserve_restores_without_moving_cursor() {
        let mut ids = SlaveIdAllocator::default();
        assert!(ids.reserve(SlaveId(2)));
        assert!(!ids.reserve(SlaveId(2)));
        assert!(!ids.reserve(SlaveId(0)));
        assert_eq!(ids.allocate(), Some(SlaveId(1)));
        assert_eq!(ids.allocate(), Some(SlaveId(3)));
    }

    #[test]
    fn r_devid_2_t_21_link_locals() {
        let mac = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
        assert_eq!(
            link_local(mac, 0),
            "fe80::ff:fe00:1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            link_local(mac, 1),
            "fe80::200:0:100:1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            link_local(mac, 2),
            "fe80::200:0:200:1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            link_local(mac, 3),
            "fe80::200:0:300:1".parse::<Ipv6Addr>().unwrap()
        );
    }
}
