//! The drop monitor's maps (`bpf/ipvlan.bpf.c`, "drop monitor"): a switch (`mon_on`), the
//! ring buffer the programs copy dropped frames into (`mon_ring`) and their per-CPU budget
//! (`mon_budget`). Opened from the pins of a [`crate::PortProgram`] on descriptors of their
//! own, so a reader thread can hold them while the loader's maps change.

use std::path::Path;

use aya::maps::{Array, Map, MapData, PerCpuArray, RingBuf};

use crate::BpfError;

/// Bytes of a dropped frame copied (`MON_SNAP`).
pub const SNAPLEN: usize = 128;
/// Copies per second per CPU (`MON_RATE`).
pub const RATE: u32 = 200;

/// `struct mon_event` without its data: ts, slave, len, dir, reason, caplen, pad.
const HEADER: usize = 8 + 4 + 4 + 1 + 1 + 2 + 4;

/// `struct mon_budget`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Budget {
    second: u64,
    used: u64,
    suppressed: u64,
}

// SAFETY: a #[repr(C)] struct of three u64s: no padding, every byte pattern valid.
unsafe impl aya::Pod for Budget {}

/// One dropped frame as the programs copied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropCopy {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the drop.
    pub ktime_ns: u64,
    /// The slave charged with it; 0: the port (master).
    pub slave: u16,
    /// 0 `rx`, 1 `tx`, 2 `port`.
    pub direction: u8,
    /// `ipvlan_core::DropReason` as its index in `DropReason::ALL`.
    pub reason: u8,
    /// The frame's whole length (`skb->len`), bytes.
    pub len: u32,
    /// Its first [`SNAPLEN`] bytes at most, from the Ethernet header on.
    pub data: Vec<u8>,
}

impl DropCopy {
    /// Parses one ring record (`struct mon_event`, native endianness); `None` if short.
    pub fn parse(b: &[u8]) -> Option<DropCopy> {
        let u32_at = |o: usize| Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?));
        let ktime_ns = u64::from_ne_bytes(b.get(0..8)?.try_into().ok()?);
        let slave = u16::try_from(u32_at(8)?).ok()?;
        let len = u32_at(12)?;
        let direction = *b.get(16)?;
        let reason = *b.get(17)?;
        let caplen = usize::from(u16::from_ne_bytes(b.get(18..20)?.try_into().ok()?));
        let data = b.get(HEADER..HEADER + caplen.min(SNAPLEN))?.to_vec();
        Some(DropCopy {
            ktime_ns,
            slave,
            direction,
            reason,
            len,
            data,
        })
    }
}

/// A port's drop-monitor maps.
pub struct DropRing {
    on: Map,
    ring: RingBuf<MapData>,
    budget: Map,
}

impl DropRing {
    /// Opens the maps pinned under `pin_dir` by [`crate::PortProgram::load`]. Errors:
    /// [`BpfError::Pin`] when one is missing (programs pinned by a build before the monitor),
    /// [`BpfError::Map`].
    pub fn open(pin_dir: &Path) -> Result<DropRing, BpfError> {
        let open = |name: &'static str| crate::pinned_map(pin_dir, name);
        let ring = RingBuf::try_from(open("mon_ring")?).map_err(|source| BpfError::Map {
            name: "mon_ring",
            source,
        })?;
        Ok(DropRing {
            on: open("mon_on")?,
            ring,
            budget: open("mon_budget")?,
        })
    }

    /// Turns copying on or off. Errors: [`BpfError::Map`].
    pub fn set_on(&mut self, on: bool) -> Result<(), BpfError> {
        let err = |source| BpfError::Map {
            name: "mon_on",
            source,
        };
        let mut a: Array<_, u32> = Array::try_from(&mut self.on).map_err(err)?;
        a.set(0, u32::from(on), 0).map_err(err)
    }

    /// Takes every copy waiting in the ring, oldest first.
    pub fn drain(&mut self, mut f: impl FnMut(DropCopy)) {
        while let Some(item) = self.ring.next() {
            if let Some(c) = DropCopy::parse(&item) {
                f(c);
            }
        }
    }

    /// Drops not copied (budget spent, ring full) since the programs were loaded, summed over
    /// CPUs. Errors: [`BpfError::Map`].
    pub fn suppressed(&self) -> Result<u64, BpfError> {
        let err = |source| BpfError::Map {
            name: "mon_budget",
            source,
        };
        let a: PerCpuArray<_, Budget> = PerCpuArray::try_from(&self.budget).map_err(err)?;
        let v = a.get(&0, 0).map_err(err)?;
        Ok(v.iter().map(|b| b.suppressed).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_record() {
        let mut b = Vec::new();
        b.extend_from_slice(&123u64.to_ne_bytes());
        b.extend_from_slice(&7u32.to_ne_bytes());
        b.extend_from_slice(&98u32.to_ne_bytes());
        b.extend_from_slice(&[1, 1]);
        b.extend_from_slice(&3u16.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&[9u8; SNAPLEN]);
        let c = DropCopy::parse(&b).expect("parsed");
        assert_eq!(
            c,
            DropCopy {
                ktime_ns: 123,
                slave: 7,
                direction: 1,
                reason: 1,
                len: 98,
                data: vec![9, 9, 9]
            }
        );
        assert_eq!(DropCopy::parse(&b[..10]), None);
    }
}
