//! Flow steering for multiqueue TAPs: a small BPF program (`TUNSETSTEERINGEBPF`) that picks the
//! queue a frame the slave transmits goes to from its flow (addresses and TCP/UDP/SCTP ports).
//!
//! Without it the kernel learns a flow's queue from the queue the reverse direction was last
//! written through, so a flow moves between queues mid-stream whenever two workers write its
//! replies, and two workers then deliver its frames out of order. With a steering program the
//! kernel learns nothing: a flow keeps its queue for its whole life, hence its worker.
//!
//! The program is written here as eBPF instructions: it is 53 of them, and a compiler
//! toolchain for BPF would be a heavier dependency than the program itself.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// <linux/bpf.h>
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

// Instruction classes, sizes, modes, operations (<linux/bpf_common.h>, <linux/bpf.h>).
const LD: u8 = 0x00;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const ABS: u8 = 0x20;
const IND: u8 = 0x40;
const K: u8 = 0x00;
const X: u8 = 0x08;
const MUL: u8 = 0x20;
const AND: u8 = 0x50;
const LSH: u8 = 0x60;
const RSH: u8 = 0x70;
const XOR: u8 = 0xa0;
const MOV: u8 = 0xb0;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JNE: u8 = 0x50;
const EXIT: u8 = 0x90;

/// Packet loads relative to the Ethernet header (`SKF_LL_OFF`): the queue is chosen with
/// `skb->data` at the Ethernet header, but the kernel's test runs start it at the IP header.
const LL: i32 = libc::SKF_LL_OFF;

const R0: u8 = 0;
const R1: u8 = 1;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;

/// 2^32 / φ, as the instruction's 32-bit immediate (sign-extended; the bits used stay equal).
const GOLDEN: i32 = 0x9e37_79b1_u32 as i32;

const IPPROTO_TCP: i32 = libc::IPPROTO_TCP;
const IPPROTO_UDP: i32 = libc::IPPROTO_UDP;
const IPPROTO_SCTP: i32 = libc::IPPROTO_SCTP;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Insn {
    code: u8,
    /// Destination register in the low nibble, source in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

/// An instruction, or a jump to a label resolved when the program is assembled.
enum Step {
    Insn(Insn),
    Jump { op: u8, imm: i32, to: &'static str },
    Label(&'static str),
}

fn op(code: u8, dst: u8, src: u8, imm: i32) -> Step {
    Step::Insn(Insn {
        code,
        regs: (src << 4) | dst,
        off: 0,
        imm,
    })
}

/// `r7 ^= packet[LL + offset]` (big-endian word), the loads `LD_ABS` makes with `r6` = context.
fn mix_word(offset: i32) -> [Step; 2] {
    [
        op(LD | ABS | W, 0, 0, LL + offset),
        op(ALU64 | XOR | X, R7, R0, 0),
    ]
}

fn jump(op: u8, imm: i32, to: &'static str) -> Step {
    Step::Jump { op, imm, to }
}

/// Goes on at label `ports` (defined right after these steps) when the protocol byte at
/// `proto_at` is TCP, UDP or SCTP, else to `fold`.
fn if_ported(proto_at: i32, ports: &'static str) -> [Step; 6] {
    [
        op(LD | ABS | B, 0, 0, LL + proto_at),
        jump(JEQ, IPPROTO_TCP, ports),
        jump(JEQ, IPPROTO_UDP, ports),
        jump(JEQ, IPPROTO_SCTP, ports),
        jump(JA, 0, "fold"),
        Step::Label(ports),
    ]
}

/// The steering program: returns a 16-bit hash of the frame's flow (the kernel takes it modulo
/// the number of queues). Addresses for IPv4 and IPv6; ports too for TCP, UDP and SCTP, unless
/// the IPv4 packet is a fragment (later fragments have none). Other frames (ARP, ...) give 0.
fn program() -> Vec<Step> {
    let mut p = vec![
        op(ALU64 | MOV | X, R6, R1, 0),
        op(ALU64 | MOV | K, R7, 0, 0),
        op(LD | ABS | H, 0, 0, LL + 12),
        jump(JEQ, 0x0800, "ipv4"),
        jump(JEQ, 0x86dd, "ipv6"),
        jump(JA, 0, "fold"),
        Step::Label("ipv4"),
    ];
    p.extend(mix_word(14 + 12));
    p.extend(mix_word(14 + 16));
    p.extend([
        // More-fragments flag or a fragment offset: the ports may be absent.
        op(LD | ABS | H, 0, 0, LL + 14 + 6),
        op(ALU64 | AND | K, R0, 0, 0x3fff),
        jump(JNE, 0, "fold"),
    ]);
    p.extend(if_ported(14 + 9, "ipv4-ports"));
    p.extend([
        // r8 = IHL * 4, then both ports as one word right after the IPv4 header.
        op(LD | ABS | B, 0, 0, LL + 14),
        op(ALU64 | AND | K, R0, 0, 0x0f),
        op(ALU64 | LSH | K, R0, 0, 2),
        op(ALU64 | MOV | X, R8, R0, 0),
        op(LD | IND | W, 0, R8, LL + 14),
        op(ALU64 | XOR | X, R7, R0, 0),
        jump(JA, 0, "fold"),
        Step::Label("ipv6"),
    ]);
    for word in 0..8 {
        p.extend(mix_word(14 + 8 + 4 * word));
    }
    // The next header right after the fixed header; extension headers are not walked (such
    // packets are steered by their addresses alone).
    p.extend(if_ported(14 + 6, "ipv6-ports"));
    p.extend(mix_word(14 + 40));
    p.extend([
        Step::Label("fold"),
        // r0 = bits 16..32 of r7 * 0x9e3779b1 (Fibonacci hashing): they depend on every bit
        // of the 32-bit XOR, so small differences (one port) reach the low bits the modulo
        // uses, whatever the number of queues.
        op(ALU64 | MOV | X, R0, R7, 0),
        op(ALU64 | MUL | K, R0, 0, GOLDEN),
        op(ALU64 | RSH | K, R0, 0, 16),
        op(ALU64 | AND | K, R0, 0, 0xffff),
        op(JMP | EXIT, 0, 0, 0),
    ]);
    p
}

/// Resolves the labels into relative jump offsets.
fn assemble(steps: &[Step]) -> Vec<Insn> {
    let mut at = std::collections::HashMap::new();
    let mut pc = 0i32;
    for s in steps {
        match s {
            Step::Label(l) => {
                at.insert(*l, pc);
            }
            _ => pc += 1,
        }
    }
    let mut out = Vec::new();
    for s in steps {
        match s {
            Step::Insn(i) => out.push(*i),
            Step::Jump { op, imm, to } => {
                let here = out.len() as i32;
                // Labels are ours and all defined: a missing one is a bug caught by the tests.
                let target = at.get(to).copied().unwrap_or(here + 1);
                out.push(Insn {
                    code: JMP | op | K,
                    regs: if *op == JA { 0 } else { R0 },
                    off: (target - here - 1) as i16,
                    imm: *imm,
                });
            }
            Step::Label(_) => {}
        }
    }
    out
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to the fields we set.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `union bpf_attr` for `BPF_PROG_TEST_RUN`, up to the fields we set.
#[repr(C)]
#[derive(Default)]
struct TestRun {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<usize> {
    // SAFETY: `attr` is the `repr(C)` prefix of `union bpf_attr` this command reads (the kernel
    // zero-fills the rest), its pointers point at memory that outlives the call, and the size
    // passed is its own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    // `long` and `ssize_t` have the same width on every Linux target.
    crate::sys::cvt_size(r as libc::ssize_t)
}

/// A failure to load the steering program (`bpf(BPF_PROG_LOAD)`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SteerError {
    /// The kernel would not load it (`EPERM` without `CAP_BPF`, `ENOSYS` without the bpf
    /// syscall, `EMFILE`…).
    #[error("loading the flow steering program: {source}")]
    Load {
        #[source]
        source: io::Error,
    },
    /// The verifier refused it (`EACCES`, `EINVAL`); `log` is the verifier's log, trimmed.
    #[error("the flow steering program was refused ({source}): {log}")]
    Refused {
        log: String,
        #[source]
        source: io::Error,
    },
}

impl SteerError {
    pub(crate) fn io_source(&self) -> Option<&io::Error> {
        match self {
            SteerError::Load { source } | SteerError::Refused { source, .. } => Some(source),
        }
    }

    fn own_kind(&self) -> Option<io::ErrorKind> {
        None
    }
}

crate::error::io_like_error!(SteerError);

/// The loaded steering program. A TAP keeps its own reference once attached
/// ([`crate::Tap::steer`]), so this may be dropped afterwards.
#[derive(Debug)]
pub struct FlowSteering {
    fd: OwnedFd,
}

impl FlowSteering {
    /// Loads the program (`BPF_PROG_TYPE_SOCKET_FILTER`; needs `CAP_BPF` or root, and a kernel
    /// with the bpf syscall). A refusal by the verifier comes back with its log
    /// ([`SteerError::Refused`]).
    pub fn load() -> Result<FlowSteering, SteerError> {
        let insns = assemble(&program());
        let license = c"MIT OR Apache-2.0";
        let mut attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            ..ProgLoad::default()
        };
        attr.prog_name[..11].copy_from_slice(b"ipvlan_flow");
        let fd = match bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => fd,
            Err(source)
                if source.raw_os_error() == Some(libc::EACCES)
                    || source.kind() == io::ErrorKind::InvalidInput =>
            {
                // Load again with the verifier's log, to say why.
                let mut log = vec![0u8; 64 * 1024];
                attr.log_level = 1;
                attr.log_size = log.len() as u32;
                attr.log_buf = log.as_mut_ptr() as u64;
                let _ = bpf(BPF_PROG_LOAD, &mut attr);
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let log = String::from_utf8_lossy(&log[..end]).trim().to_owned();
                return Err(SteerError::Refused { log, source });
            }
            Err(source) => return Err(SteerError::Load { source }),
        };
        let fd = libc::c_int::try_from(fd).map_err(|_| SteerError::Load {
            source: io::Error::from_raw_os_error(libc::EBADF),
        })?;
        // SAFETY: BPF_PROG_LOAD just returned this descriptor of the new program (non-negative,
        // checked by `cvt_size`); nothing else owns it, so the `OwnedFd` may close it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(FlowSteering { fd })
    }

    /// Runs the program on `frame` (Ethernet onwards) in the kernel (`BPF_PROG_TEST_RUN`) and
    /// returns its value: the queue a TAP with `n` queues picks is this modulo `n`.
    pub fn run(&self, frame: &[u8]) -> io::Result<u32> {
        let mut attr = TestRun {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ..TestRun::default()
        };
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        Ok(attr.retval)
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_inside_the_program() {
        let steps = program();
        let labels: Vec<_> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Label(l) => Some(*l),
                _ => None,
            })
            .collect();
        for s in &steps {
            if let Step::Jump { to, .. } = s {
                assert!(labels.contains(to), "undefined label {to}");
            }
        }
        let insns = assemble(&steps);
        for (pc, i) in insns.iter().enumerate() {
            if i.code & 0x07 == JMP && i.code != JMP | EXIT {
                let target = pc as i64 + 1 + i64::from(i.off);
                assert!((0..insns.len() as i64).contains(&target), "jump at {pc}");
            }
        }
        assert_eq!(insns.last().map(|i| i.code), Some(JMP | EXIT));
    }
}
