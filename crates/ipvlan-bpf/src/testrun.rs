//! Running a program on one frame with `BPF_PROG_TEST_RUN`, and reading back its decision from
//! the trace map (the run itself cannot show where a redirect would have gone).

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use aya::maps::PerCpuArray;
use ipvlan_core::DropReason;

use crate::maps::TraceV;
use crate::{map_err, BpfError, PortProgram};

/// Which program to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    FromSlave,
    FromMaster,
}

/// The decision kind a program recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// To one slave (`target`).
    Deliver,
    /// Out of the master (l2 unicast).
    Transmit,
    /// Into the master's stack as if received on the master (l2 local miss).
    ToHost,
    /// l3/l3s egress through the master namespace (`family` 4 or 6).
    Route,
    /// Slave-originated multicast: copies fanned out, then out of the master.
    Multicast,
    Drop,
    /// To the master's stack (TCX_NEXT).
    Pass,
    /// To the master's stack, copies fanned out to the slaves.
    PassAndMulticast,
    /// A unicast DHCPv4 reply to the slave of its xid (`target`).
    Steer,
}

/// Whose counters a drop was charged to (`ipvlan_core::DropSite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceSite {
    Sender,
    /// The receiving slave (`Trace::target`).
    Receiver,
    Master,
}

/// One fan-out copy: delivered to, or refused for (too long), a slave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceCopy {
    Deliver(u16),
    Drop(u16, DropReason),
}

/// The decision a program recorded for its last frame (trace switch on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub verdict: Verdict,
    /// Slave id for `Deliver` and receiver drops, else 0.
    pub target: u16,
    pub drop: Option<(DropReason, TraceSite)>,
    /// 4 or 6 for `Route`, else 0.
    pub family: u8,
    pub copies: Vec<TraceCopy>,
}

/// What one test run gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// The program's return value (`TC_ACT_*`; -1 = TCX_NEXT, 2 = SHOT, 7 = REDIRECT).
    pub retval: i32,
    /// The frame as the program left it (source MAC rewrites and the like).
    pub frame: Vec<u8>,
    /// `None`: the program recorded nothing (unknown sender, unconfigured port, trace off).
    pub trace: Option<Trace>,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// `union bpf_attr`'s `test` member.
#[repr(C)]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

/// `struct __sk_buff` up to and including `gso_size` (offsets from the UAPI header).
const SKB_CTX_LEN: usize = 184;
const OFF_INGRESS_IFINDEX: usize = 36;
const OFF_GSO_SEGS: usize = 164;
const OFF_GSO_SIZE: usize = 176;

fn monotonic_ns() -> u64 {
    // SAFETY: an all-zero timespec is valid; clock_gettime writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn reason(i: u32) -> Option<DropReason> {
    DropReason::ALL.get(i as usize).copied()
}

impl PortProgram {
    /// Runs `hook` once on `frame` with `BPF_PROG_TEST_RUN` (14 bytes to about 3.5 KiB: the
    /// kernel refuses runts and frames over a page). `ingress_ifindex` is what the program sees
    /// as `skb->ingress_ifindex` (for `from_slave`, a slave's host end as given to
    /// [`PortProgram::set_slave`]; it needs no real device). `gso_size` > 0 marks a GSO frame.
    /// The trace switch must be on ([`PortProgram::set_trace`]) for [`TestOutcome::trace`].
    /// Counters move as for a real frame; redirects go nowhere.
    ///
    /// Errors: [`BpfError::TestRun`] (EINVAL for a frame out of range), [`BpfError::Map`].
    pub fn test_run(
        &self,
        hook: Hook,
        frame: &[u8],
        ingress_ifindex: u32,
        gso_size: u32,
    ) -> Result<TestOutcome, BpfError> {
        let start = monotonic_ns();
        let (retval, out, _) = self.run_raw(hook, frame, ingress_ifindex, gso_size, 1)?;
        Ok(TestOutcome {
            retval,
            frame: out,
            trace: self.last_trace(start)?,
        })
    }

    /// The time one run of `hook` on `frame` takes, in nanoseconds, averaged by the kernel
    /// over `repeat` runs (`BPF_PROG_TEST_RUN`'s `duration`; the program only, without the
    /// redirect it asks for). For `examples/cost.rs`; counters move `repeat` times.
    ///
    /// Errors: as [`Self::test_run`].
    pub fn time_run(
        &self,
        hook: Hook,
        frame: &[u8],
        ingress_ifindex: u32,
        repeat: u32,
    ) -> Result<u32, BpfError> {
        Ok(self
            .run_raw(hook, frame, ingress_ifindex, 0, repeat.max(1))?
            .2)
    }

    /// One `BPF_PROG_TEST_RUN`: (return value, frame out, average duration in ns).
    fn run_raw(
        &self,
        hook: Hook,
        frame: &[u8],
        ingress_ifindex: u32,
        gso_size: u32,
        repeat: u32,
    ) -> Result<(i32, Vec<u8>, u32), BpfError> {
        let prog = match hook {
            Hook::FromSlave => &self.from_slave,
            Hook::FromMaster => &self.from_master,
        };
        let fd = prog.fd().map_err(crate::prog_err("test_run"))?;
        let mut ctx = [0u8; SKB_CTX_LEN];
        ctx[OFF_INGRESS_IFINDEX..OFF_INGRESS_IFINDEX + 4]
            .copy_from_slice(&ingress_ifindex.to_ne_bytes());
        if gso_size > 0 {
            ctx[OFF_GSO_SEGS..OFF_GSO_SEGS + 4].copy_from_slice(&2u32.to_ne_bytes());
            ctx[OFF_GSO_SIZE..OFF_GSO_SIZE + 4].copy_from_slice(&gso_size.to_ne_bytes());
        }
        let mut out = vec![0u8; frame.len() + 256];
        let mut attr = TestAttr {
            prog_fd: fd.as_fd().as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_size_out: out.len() as u32,
            data_in: frame.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat,
            ctx_size_in: SKB_CTX_LEN as u32,
            ctx_in: ctx.as_ptr() as u64,
            ..TestAttr::default()
        };
        // SAFETY: `attr` is a valid bpf_attr prefix of the size passed; the buffers it points
        // to (`frame`, `out`, `ctx`) live across the call and have the sizes given.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &mut attr as *mut TestAttr,
                std::mem::size_of::<TestAttr>(),
            )
        };
        if r != 0 {
            return Err(BpfError::TestRun(io::Error::last_os_error()));
        }
        out.truncate(attr.data_size_out as usize);
        Ok((attr.retval as i32, out, attr.duration))
    }

    /// The newest trace over all CPUs, if written at or after `since` (CLOCK_MONOTONIC ns).
    fn last_trace(&self, since: u64) -> Result<Option<Trace>, BpfError> {
        let a: PerCpuArray<_, TraceV> =
            PerCpuArray::try_from(&self.maps.trace).map_err(map_err("trace"))?;
        let v = a.get(&0, 0).map_err(map_err("trace"))?;
        let Some(t) = v.iter().filter(|t| t.ts >= since).max_by_key(|t| t.ts) else {
            return Ok(None);
        };
        let verdict = match t.verdict {
            1 => Verdict::Deliver,
            2 => Verdict::Transmit,
            3 => Verdict::ToHost,
            4 => Verdict::Route,
            5 => Verdict::Multicast,
            6 => Verdict::Drop,
            7 => Verdict::Pass,
            8 => Verdict::PassAndMulticast,
            9 => Verdict::Steer,
            _ => return Ok(None),
        };
        let site = match t.site {
            1 => Some(TraceSite::Sender),
            2 => Some(TraceSite::Receiver),
            3 => Some(TraceSite::Master),
            _ => None,
        };
        let drop = if verdict == Verdict::Drop {
            reason(t.reason).zip(site)
        } else {
            None
        };
        let n = (t.ncopies as usize).min(t.copies.len());
        let copies = t.copies[..n]
            .iter()
            .map(|&c| {
                let id = (c & 0xffff) as u16;
                if c & (1 << 16) != 0 {
                    TraceCopy::Drop(id, DropReason::MtuExceeded)
                } else {
                    TraceCopy::Deliver(id)
                }
            })
            .collect();
        Ok(Some(Trace {
            verdict,
            target: t.target as u16,
            drop,
            family: t.family as u8,
            copies,
        }))
    }
}
