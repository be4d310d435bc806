//! # ipvlan-bpf
//!
//! The eBPF fast path of ipvlan-rs: IPVLAN switching for slaves made of veth pairs, done by two
//! TC/tcx classifier programs in the kernel, with this crate as their loader and controller.
//!
//! - `from_slave` runs on the ingress of every slave's host end (what the slave transmits) and
//!   decides like [`ipvlan_core::decide_tx`] (with the source guard) plus the accounting of
//!   `Port::handle_tx`;
//! - `from_master` runs on the master's ingress (what the wire brings) and decides like
//!   [`ipvlan_core::decide_rx`] plus `Port::handle_rx`;
//! - multicast fan-out ([`ipvlan_core::multicast_fanout`]) is one `bpf_clone_redirect` per
//!   receiving slave, bounded by [`FANOUT_MAX`] slaves and by a per-CPU token bucket
//!   ([`MC_BURST`] frames, refilled at [`MC_RATE`] frames/s) standing in for the kernel's
//!   1000-frame backlog (R-MC-1).
//!
//! The programs are C (`bpf/ipvlan.bpf.c`), built by `scripts/build-bpf` into a checked-in
//! object that this crate embeds, so building the crate never needs clang. Everything is pinned
//! in a bpffs directory per port (see [`PortProgram`]), so forwarding survives the daemon.
//!
//! Rule IDs (`R-…`) refer to `shared/spec/ipvlan-behavior.md`.

use std::ffi::CString;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle};
use aya::programs::{ProgramError, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfError};
use ipvlan_core::{Flag, Mode, PortCounters, SlaveCounters};

pub mod maps;
pub mod monitor;
mod testrun;

pub use maps::{ADDR_MAX, FANOUT_MAX};
pub use testrun::{Hook, TestOutcome, Trace, TraceCopy, TraceSite, Verdict};

use maps::{AddrKey, PortCfg, PortCtr, SlaveCtr, SlaveV};

/// The compiled programs (`bpf/ipvlan.bpf.o`), 8-byte aligned for the ELF parser.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);
static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!("../bpf/ipvlan.bpf.o"));

/// Multicast token bucket size: frames fanned out per CPU in a burst (the kernel's backlog
/// limit, R-MC-1 / `ipvlan_core::BACKLOG_LIMIT`).
pub const MC_BURST: u32 = 1000;
/// Multicast token refill: frames per second per CPU. Beyond burst and rate, slave-originated
/// frames are dropped and wire-originated ones reach the master only, counted `backlog_full`.
pub const MC_RATE: u32 = 100_000;

/// Errors of the loader. Each names what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// This kernel or process cannot run the fast path; the text says why.
    #[error("the eBPF fast path is not available: {0}")]
    Unavailable(String),
    /// Loading the embedded object (ELF parsing, map creation, BTF).
    #[error("cannot load the BPF object: {0}")]
    Load(#[source] EbpfError),
    /// Loading (verifier), attaching or pinning one program.
    #[error("BPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    /// Reading, writing or opening one map.
    #[error("BPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    /// Pinning an object or opening a pinned one.
    #[error("pin {}: {detail}", path.display())]
    Pin { path: PathBuf, detail: String },
    /// A file-system operation on the pin directory.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No interface with this index in the calling thread's namespace.
    #[error("no interface with index {0}")]
    NoSuchInterface(u32),
    /// Slave ids are 1..=0xFFFD (`ipvlan_core::SlaveId`).
    #[error("slave id {0} is outside 1..=0xfffd")]
    BadSlaveId(u16),
    /// The slave is not in the maps.
    #[error("slave {0} is not in the BPF maps")]
    NoSuchSlave(u16),
    /// The fan-out list and the per-slave maps hold [`FANOUT_MAX`] slaves.
    #[error("the port already has {FANOUT_MAX} slaves in the BPF maps")]
    TooManySlaves,
    /// The address is not in the address map.
    #[error("{0} is not in the BPF address map")]
    NoSuchAddress(IpAddr),
    /// The address map holds [`ADDR_MAX`] addresses.
    #[error("the BPF address map is full ({ADDR_MAX} addresses)")]
    TooManyAddresses,
    /// `BPF_PROG_TEST_RUN` failed.
    #[error("BPF_PROG_TEST_RUN: {0}")]
    TestRun(#[source] io::Error),
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> BpfError {
    move |source| BpfError::Map { name, source }
}

fn prog_err(name: &'static str) -> impl FnOnce(ProgramError) -> BpfError {
    move |source| BpfError::Program { name, source }
}

/// What a program was attached with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// A tcx link (kernel >= 6.6), pinned so it outlives the process.
    Tcx,
    /// A `cls_bpf` filter on a `clsact` qdisc (kernels 5.10–6.5); it stays until removed.
    Clsact,
}

/// How `l3`/`l3s` egress (R-TX-L3-3) leaves, per address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteMethod {
    /// `pkt_type` set to `PACKET_HOST` and handed to the host end's stack: the master namespace
    /// *forwards* it (FORWARD, TTL decremented). The daemon enables forwarding on the host ends
    /// (`net.ipv4.conf.<host end>.forwarding=1`, `net.ipv6.conf.<host end>.forwarding=1` or
    /// `force_forwarding`).
    #[default]
    Stack,
    /// `bpf_fib_lookup` in the master namespace, then `bpf_redirect_neigh`: bypasses netfilter
    /// and the TTL decrement. A lookup that finds no forwarding route falls back to
    /// [`RouteMethod::Stack`] (so the stack answers with ICMP errors), counted as `fib_fallback`.
    Fib,
}

/// The port's configuration as the programs see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConfig {
    /// The master's ifindex in the master's namespace (redirect target for the wire).
    pub master_ifindex: u32,
    /// The shared MAC (R-MAC-1): slaves' frames leave with it.
    pub master_mac: [u8; 6],
    /// The master's MTU in bytes (R-MTU-4 for l2 frames to the host).
    pub master_mtu: u32,
    pub mode: Mode,
    pub flag: Flag,
    pub route_v4: RouteMethod,
    pub route_v6: RouteMethod,
}

/// One slave as the programs see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaveEntry {
    /// ifindex of the veth pair's end in the master's namespace.
    pub host_ifindex: u32,
    /// The slave's MTU in bytes (R-MTU-4: frames up to MTU + 18 are delivered).
    pub mtu: u32,
    /// Administratively up: receives, and its addresses are active (R-MC-2, R-TX-L2-2).
    pub up: bool,
    /// The source guard (`spoofchk on`).
    pub source_guard: bool,
    /// With the guard on, may still send router advertisements and redirects.
    pub router: bool,
    /// The slave end is in the master's own namespace: delivered by `bpf_redirect` to the host
    /// end, since `bpf_redirect_peer` cannot stay in one namespace (`skb_do_redirect`).
    pub same_ns: bool,
    /// The port's host slave (`hostreach on`, `ipvlan_core::Slave::is_host`): its entries
    /// match slaves' frames only and it reaches slaves only (`SLAVE_HOST`).
    pub host: bool,
    /// An ipvtap's guest (`ipvlan_core::Slave::mac_guard`): frames whose Ethernet source is
    /// not the master's MAC are dropped (`foreign_source_mac`), and frames for it are
    /// delivered by `bpf_redirect` to its TAP's egress (a TAP has no peer), as for `same_ns`,
    /// though it is not in the master's namespace for the rest (its routed l3 egress gets its
    /// hop back, and is no routing loop).
    pub mac_guard: bool,
}

/// The options of a slave's latest DHCP request, as the programs copied them (l2 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRequest {
    pub slave: u16,
    /// Changes with every request the slave sends.
    pub seq: u64,
    /// The option bytes after the magic cookie, at most [`maps::DHCP_SNAP`].
    pub options: Vec<u8>,
    /// More options followed than `options` holds.
    pub truncated: bool,
}

const PROGRAMS: [&str; 2] = ["from_slave", "from_master"];
const MAPS: [&str; 15] = [
    "config",
    "slaves",
    "host_slave",
    "addrs",
    "fanout",
    "slave_stats",
    "port_stats",
    "mc_bucket",
    "trace",
    "routed",
    "mon_on",
    "mon_ring",
    "mon_budget",
    "dhcp_xids",
    "dhcp_reqs",
];

fn prog_pin(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("prog_{name}"))
}
fn map_pin(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("map_{name}"))
}

/// Opens map `name` pinned under `dir` ([`BpfError::Pin`] when it is not there).
fn pinned_map(dir: &Path, name: &str) -> Result<Map, BpfError> {
    let path = map_pin(dir, name);
    MapData::from_pin(&path)
        .and_then(Map::from_map_data)
        .map_err(|e| BpfError::Pin {
            path,
            detail: e.to_string(),
        })
}
fn link_pin(dir: &Path, ifindex: u32) -> PathBuf {
    dir.join(format!("link_{ifindex}"))
}

fn check_id(id: u16) -> Result<u32, BpfError> {
    if (1..=0xfffd).contains(&id) {
        Ok(u32::from(id))
    } else {
        Err(BpfError::BadSlaveId(id))
    }
}

fn ifname(ifindex: u32) -> Result<String, BpfError> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, which if_indextoname writes at most.
    let r = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) };
    if r.is_null() {
        return Err(BpfError::NoSuchInterface(ifindex));
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Mounts a bpffs at `root` (created if missing) unless one is mounted there already.
///
/// Errors: [`BpfError::Io`] when the directory cannot be created or `mount(2)` fails (EPERM
/// without CAP_SYS_ADMIN; ENODEV without `CONFIG_BPF_SYSCALL`).
pub fn ensure_bpffs(root: &Path) -> Result<bool, BpfError> {
    let io_err = |what, source| BpfError::Io {
        what,
        path: root.to_path_buf(),
        source,
    };
    fs::create_dir_all(root).map_err(|e| io_err("create", e))?;
    if is_bpffs(root).map_err(|e| io_err("statfs", e))? {
        return Ok(false);
    }
    let c = |s: &str| CString::new(s).map_err(|e| io_err("path", io::Error::other(e)));
    let target = c(&root.to_string_lossy())?;
    let fstype = c("bpf")?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call; data is null.
    let r = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(io_err("mount bpffs on", io::Error::last_os_error()));
    }
    Ok(true)
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn is_bpffs(p: &Path) -> io::Result<bool> {
    let c = CString::new(p.to_string_lossy().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: an all-zero statfs is a valid value for the kernel to overwrite.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated, `st` is a valid statfs to write.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

fn kernel_version() -> Option<(u32, u32)> {
    let rel = fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut it = rel.trim().split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn tcx_capable() -> bool {
    kernel_version().is_some_and(|v| v >= (6, 6))
}

/// Probes whether this kernel and process can run the fast path: kernel >= 5.10
/// (`bpf_redirect_peer`), veth, the BPF syscall, permission, and the verifier accepting both
/// programs. Returns how programs will be attached (tcx from 6.6, clsact below).
///
/// Errors: [`BpfError::Unavailable`] with the reason in words.
pub fn available() -> Result<Attach, BpfError> {
    let un = |s: String| Err(BpfError::Unavailable(s));
    match kernel_version() {
        Some(v) if v < (5, 10) => {
            return un(format!(
                "kernel {}.{} is older than 5.10 (bpf_redirect_peer)",
                v.0, v.1
            ))
        }
        None => return un("cannot read the kernel version".into()),
        _ => {}
    }
    // veth: loaded or built in with parameters (/sys/module/veth), or a module on disk. A
    // monolithic kernel without a module tree cannot be told apart here: creating the pair says.
    let modules = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| {
            Path::new("/lib/modules")
                .join(r.trim())
                .join("kernel/drivers/net")
        })
        .ok()
        .and_then(|d| fs::read_dir(d).ok());
    if let Some(mut dir) = modules {
        let on_disk =
            dir.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("veth.ko")));
        if !on_disk && !Path::new("/sys/module/veth").exists() {
            return un("no veth driver (CONFIG_VETH)".into());
        }
    }
    let mut bpf = Ebpf::load(&OBJECT.0).map_err(|e| {
        let text = e.to_string();
        if text.contains("Operation not permitted") || text.contains("EPERM") {
            BpfError::Unavailable(format!(
                "permission denied loading BPF (needs CAP_BPF and CAP_NET_ADMIN): {text}"
            ))
        } else if text.contains("Function not implemented") {
            BpfError::Unavailable(format!("no BPF syscall (CONFIG_BPF_SYSCALL): {text}"))
        } else {
            BpfError::Unavailable(format!("cannot load the BPF object: {text}"))
        }
    })?;
    for name in PROGRAMS {
        let p: &mut SchedClassifier = bpf
            .program_mut(name)
            .ok_or_else(|| BpfError::Unavailable(format!("object has no program {name}")))?
            .try_into()
            .map_err(|e| BpfError::Unavailable(format!("{name}: {e}")))?;
        p.load()
            .map_err(|e| BpfError::Unavailable(format!("{name} refused: {e:?}")))?;
    }
    Ok(if tcx_capable() {
        Attach::Tcx
    } else {
        Attach::Clsact
    })
}

/// The maps of one instance, opened from their pins.
struct Maps {
    config: Map,
    slaves: Map,
    host_slave: Map,
    addrs: Map,
    fanout: Map,
    slave_stats: Map,
    port_stats: Map,
    trace: Map,
    dhcp_xids: Map,
    dhcp_reqs: Map,
}

/// One loaded instance of the programs and maps, for one port.
///
/// Pin layout under `pin_dir` (a bpffs directory): `prog_from_slave`, `prog_from_master`,
/// `map_<name>` for every map (`config`, `slaves`, `host_slave`, `addrs`, `fanout`,
/// `slave_stats`, `port_stats`, `mc_bucket`, `trace`, `routed`, and the drop monitor's `mon_on`,
/// `mon_ring`, `mon_budget`, and `dhcp_xids`, `dhcp_reqs`), and `link_<ifindex>` for every tcx link.
/// Dropping the value closes its descriptors only: the pins keep programs, maps and links, so
/// forwarding continues; [`PortProgram::open_pinned`] adopts them again and
/// [`PortProgram::remove`] takes everything down.
pub struct PortProgram {
    pin_dir: PathBuf,
    from_slave: SchedClassifier,
    from_master: SchedClassifier,
    maps: Maps,
    /// Attach as clsact filters even where tcx exists ([`Self::prefer_clsact`]).
    clsact: bool,
    /// The master's ifindex once attached (a clsact filter on it is removed by [`Self::remove`]).
    master: Option<u32>,
}

/// The tc priority of our clsact filters: one per device, found again by it (so attaching
/// twice replaces the program instead of adding a second filter, and removing finds it).
const TC_PRIORITY: u16 = 0x1b7a;
/// Their handle at that priority.
const TC_HANDLE: TcHandle = TcHandle::new(0, 1);

/// Removes our clsact filter from `ifindex`'s ingress, if there is one.
fn detach_clsact(ifindex: u32) {
    if let Ok(dev) = ifname(ifindex) {
        // Dropping a link made for a known filter deletes the filter.
        if let Ok(link) =
            SchedClassifierLink::attached(&dev, TcAttachType::Ingress, TC_PRIORITY, TC_HANDLE, None)
        {
            drop(link);
        }
    }
}

impl PortProgram {
    /// Loads the embedded object (the verifier runs here), pins both programs and every map
    /// under `pin_dir` (created; it must be on a bpffs, see [`ensure_bpffs`]) and opens them.
    /// The port is unconfigured (both programs pass everything) until [`Self::set_config`].
    ///
    /// Errors: [`BpfError::Load`], [`BpfError::Program`] (verifier), [`BpfError::Pin`],
    /// [`BpfError::Io`].
    pub fn load(pin_dir: &Path) -> Result<PortProgram, BpfError> {
        fs::create_dir_all(pin_dir).map_err(|source| BpfError::Io {
            what: "create",
            path: pin_dir.to_path_buf(),
            source,
        })?;
        let mut bpf = Ebpf::load(&OBJECT.0).map_err(BpfError::Load)?;
        for name in PROGRAMS {
            let p: &mut SchedClassifier = bpf
                .program_mut(name)
                .ok_or_else(|| BpfError::Pin {
                    path: prog_pin(pin_dir, name),
                    detail: "the object has no such program".into(),
                })?
                .try_into()
                .map_err(prog_err(name))?;
            p.load().map_err(prog_err(name))?;
            let path = prog_pin(pin_dir, name);
            p.pin(&path).map_err(|e| BpfError::Pin {
                path,
                detail: e.to_string(),
            })?;
        }
        for name in MAPS {
            let path = map_pin(pin_dir, name);
            let m = bpf.map(name).ok_or_else(|| BpfError::Pin {
                path: path.clone(),
                detail: "the object has no such map".into(),
            })?;
            m.pin(&path).map_err(|e| BpfError::Pin {
                path,
                detail: e.to_string(),
            })?;
        }
        drop(bpf);
        PortProgram::open_pinned(pin_dir)
    }

    /// Opens the programs and maps pinned under `pin_dir` by an earlier [`Self::load`] (for
    /// instance by a daemon before its restart). Nothing is changed: forwarding never stopped.
    ///
    /// Errors: [`BpfError::Pin`] when a pin is missing or not ours.
    pub fn open_pinned(pin_dir: &Path) -> Result<PortProgram, BpfError> {
        let prog = |name: &'static str| {
            let path = prog_pin(pin_dir, name);
            SchedClassifier::from_pin(&path).map_err(|e| BpfError::Pin {
                path,
                detail: e.to_string(),
            })
        };
        let map = |name: &'static str| pinned_map(pin_dir, name);
        Ok(PortProgram {
            pin_dir: pin_dir.to_path_buf(),
            from_slave: prog("from_slave")?,
            from_master: prog("from_master")?,
            maps: Maps {
                config: map("config")?,
                slaves: map("slaves")?,
                host_slave: map("host_slave")?,
                addrs: map("addrs")?,
                fanout: map("fanout")?,
                slave_stats: map("slave_stats")?,
                port_stats: map("port_stats")?,
                trace: map("trace")?,
                dhcp_xids: map("dhcp_xids")?,
                dhcp_reqs: map("dhcp_reqs")?,
            },
            clsact: false,
            master: None,
        })
    }

    fn attach(&mut self, master: bool, ifindex: u32) -> Result<Attach, BpfError> {
        let name = if master { "from_master" } else { "from_slave" };
        let pin = link_pin(&self.pin_dir, ifindex);
        if pin.exists() {
            // Attached by an earlier run (or an earlier call): the link is still in force.
            PinnedLink::from_pin(&pin).map_err(|e| BpfError::Pin {
                path: pin.clone(),
                detail: e.to_string(),
            })?;
            if master {
                self.master = Some(ifindex);
            }
            return Ok(Attach::Tcx);
        }
        let dev = ifname(ifindex)?;
        let prog = if master {
            &mut self.from_master
        } else {
            &mut self.from_slave
        };
        // Host ends always get a clsact filter: a tcx attachment waits for an RCU grace period
        // (tcx_entry_sync, ~10 ms here), which made adding 256 slaves take 5-8 s; nothing else
        // attaches to our own host ends, so tcx's ordering among programs buys nothing there.
        // The master gets tcx where the kernel has it (other programs may share its hook).
        if !master || self.clsact || !tcx_capable() {
            // clsact: the qdisc holds the filter; it outlives the process without a pin. One
            // filter of ours per device, at a fixed priority and handle: one left by an earlier
            // run gets this program in place (no gap, no second filter).
            let _ = aya::programs::tc::qdisc_add_clsact(&dev);
            let opts = TcAttachOptions::Netlink(NlOptions {
                priority: TC_PRIORITY,
                handle: TC_HANDLE,
                classid: None,
            });
            let id = match prog.attach_with_options(&dev, TcAttachType::Ingress, opts) {
                Ok(id) => id,
                Err(first) => {
                    // Most likely ours from an earlier run (EEXIST): replace its program.
                    let Ok(existing) = SchedClassifierLink::attached(
                        &dev,
                        TcAttachType::Ingress,
                        TC_PRIORITY,
                        TC_HANDLE,
                        None,
                    ) else {
                        return Err(prog_err(name)(first));
                    };
                    prog.attach_to_link(existing).map_err(prog_err(name))?
                }
            };
            let link = prog.take_link(id).map_err(prog_err(name))?;
            std::mem::forget(link); // dropping it would detach the filter
            if master {
                self.master = Some(ifindex);
            }
            return Ok(Attach::Clsact);
        }
        let id = prog
            .attach(&dev, TcAttachType::Ingress)
            .map_err(prog_err(name))?;
        let link = prog.take_link(id).map_err(prog_err(name))?;
        let fd: FdLink = link.try_into().map_err(|e| BpfError::Pin {
            path: pin.clone(),
            detail: format!("not a tcx link: {e}"),
        })?;
        fd.pin(&pin).map_err(|e| BpfError::Pin {
            path: pin.clone(),
            detail: e.to_string(),
        })?;
        if master {
            self.master = Some(ifindex);
        }
        Ok(Attach::Tcx)
    }

    /// Attaches with clsact filters (`cls_bpf` on the clsact qdisc) even where the kernel has
    /// tcx, as on kernels before 6.6 (`ipvlan daemon --datapath bpf-tc`; tests of that path).
    /// Applies to later attachments.
    pub fn prefer_clsact(&mut self, on: bool) {
        self.clsact = on;
    }

    /// Attaches `from_master` to the ingress of `ifindex` (in the calling thread's namespace).
    /// The tcx link is pinned as `link_<ifindex>`, so it outlives the process; an existing pin
    /// means it is attached already, and nothing is done.
    ///
    /// Errors: [`BpfError::NoSuchInterface`], [`BpfError::Program`] (attach), [`BpfError::Pin`].
    pub fn attach_master(&mut self, ifindex: u32) -> Result<Attach, BpfError> {
        self.attach(true, ifindex)
    }

    /// Attaches `from_slave` to the ingress of a slave's host end, always as a clsact filter
    /// (one per device, at a fixed priority: attaching again replaces its program in place;
    /// kept by the qdisc, so it outlives the process). A tcx attachment would cost an RCU
    /// grace period per slave.
    ///
    /// Errors: [`BpfError::NoSuchInterface`], [`BpfError::Program`] (attach).
    pub fn attach_slave(&mut self, host_ifindex: u32) -> Result<Attach, BpfError> {
        self.attach(false, host_ifindex)
    }

    /// Detaches whatever this instance attached to `host_ifindex` (tcx: removes the pinned
    /// link). Nothing attached is not an error. A clsact filter is left to the qdisc (deleted
    /// with the device).
    ///
    /// Errors: [`BpfError::Io`] when the pin cannot be removed.
    pub fn detach_slave(&mut self, host_ifindex: u32) -> Result<(), BpfError> {
        detach_clsact(host_ifindex);
        let pin = link_pin(&self.pin_dir, host_ifindex);
        match fs::remove_file(&pin) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(BpfError::Io {
                what: "unpin link",
                path: pin,
                source,
            }),
        }
    }

    fn cfg(&self) -> Result<PortCfg, BpfError> {
        let a: Array<_, PortCfg> = Array::try_from(&self.maps.config).map_err(map_err("config"))?;
        a.get(&0, 0).map_err(map_err("config"))
    }

    fn put_cfg(&mut self, c: PortCfg) -> Result<(), BpfError> {
        let mut a: Array<_, PortCfg> =
            Array::try_from(&mut self.maps.config).map_err(map_err("config"))?;
        a.set(0, c, 0).map_err(map_err("config"))
    }

    /// Writes the port configuration (takes effect for the next frame). The multicast bound is
    /// [`MC_BURST`] / [`MC_RATE`]; the trace switch is left as it is.
    ///
    /// Errors: [`BpfError::Map`].
    pub fn set_config(&mut self, cfg: &PortConfig) -> Result<(), BpfError> {
        let old = self.cfg()?;
        let route = |r: RouteMethod| match r {
            RouteMethod::Stack => 0,
            RouteMethod::Fib => 1,
        };
        self.put_cfg(PortCfg {
            master_ifindex: cfg.master_ifindex,
            master_mtu: cfg.master_mtu,
            master_mac: cfg.master_mac,
            mode: match cfg.mode {
                Mode::L2 => 0,
                Mode::L3 => 1,
                Mode::L3s => 2,
            },
            flag: match cfg.flag {
                Flag::Bridge => 0,
                Flag::Private => 1,
                Flag::Vepa => 2,
            },
            route_v4: route(cfg.route_v4),
            route_v6: route(cfg.route_v6),
            trace: old.trace,
            has_local: old.has_local,
            mc_burst: MC_BURST,
            mc_rate: MC_RATE,
        })
    }

    /// Sets the multicast bound: `burst` frames per CPU (0: unbounded), refilled at `rate`
    /// frames per second per CPU. Applies after [`Self::set_config`] (which resets it).
    ///
    /// Errors: [`BpfError::Map`].
    pub fn set_multicast_bound(&mut self, burst: u32, rate: u32) -> Result<(), BpfError> {
        let mut c = self.cfg()?;
        c.mc_burst = burst;
        c.mc_rate = rate;
        self.put_cfg(c)
    }

    /// Turns the per-CPU decision trace on or off (see [`Self::test_run`]).
    ///
    /// Errors: [`BpfError::Map`].
    pub fn set_trace(&mut self, on: bool) -> Result<(), BpfError> {
        let mut c = self.cfg()?;
        c.trace = u8::from(on);
        self.put_cfg(c)
    }

    /// Unpins the tcx links of every device but those in `keep` (ifindexes): after a restart,
    /// the links of host ends that went away while no daemon ran (a later device with the same
    /// ifindex must be attached afresh, not taken for attached).
    ///
    /// Errors: [`BpfError::Io`] listing or unpinning.
    pub fn prune_links(&mut self, keep: &[u32]) -> Result<(), BpfError> {
        let entries = fs::read_dir(&self.pin_dir).map_err(|source| BpfError::Io {
            what: "list",
            path: self.pin_dir.clone(),
            source,
        })?;
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(ifindex) = name
                .to_str()
                .and_then(|n| n.strip_prefix("link_"))
                .and_then(|i| i.parse::<u32>().ok())
            else {
                continue;
            };
            if !keep.contains(&ifindex) {
                fs::remove_file(e.path()).map_err(|source| BpfError::Io {
                    what: "unpin link",
                    path: e.path(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// The slaves in the maps, in creation order (for a restarted daemon to find those it no
    /// longer has).
    ///
    /// Errors: [`BpfError::Map`].
    pub fn slave_ids(&self) -> Result<Vec<u16>, BpfError> {
        Ok(self
            .fanout_list()?
            .into_iter()
            .filter_map(|id| u16::try_from(id).ok())
            .collect())
    }

    fn fanout_list(&self) -> Result<Vec<u32>, BpfError> {
        let a: Array<_, u32> = Array::try_from(&self.maps.fanout).map_err(map_err("fanout"))?;
        let mut out = Vec::new();
        for i in 0..FANOUT_MAX as u32 {
            let v = a.get(&i, 0).map_err(map_err("fanout"))?;
            if v == 0 {
                break;
            }
            out.push(v);
        }
        Ok(out)
    }

    fn write_fanout(&mut self, list: &[u32]) -> Result<(), BpfError> {
        let mut a: Array<_, u32> =
            Array::try_from(&mut self.maps.fanout).map_err(map_err("fanout"))?;
        // Append-only writers see the terminator last: entries first, then the zero after them.
        for (i, v) in list.iter().enumerate() {
            a.set(i as u32, *v, 0).map_err(map_err("fanout"))?;
        }
        for i in list.len()..FANOUT_MAX {
            if a.get(&(i as u32), 0).map_err(map_err("fanout"))? == 0 {
                break;
            }
            a.set(i as u32, 0, 0).map_err(map_err("fanout"))?;
        }
        Ok(())
    }

    /// Adds or updates slave `id` (1..=0xFFFD): its entry, `host_ifindex -> id`, zeroed
    /// counters and its place at the end of the fan-out list (creation order, R-MC-2) when it is
    /// new.
    ///
    /// Errors: [`BpfError::BadSlaveId`], [`BpfError::TooManySlaves`], [`BpfError::Map`].
    pub fn set_slave(&mut self, id: u16, e: &SlaveEntry) -> Result<(), BpfError> {
        let key = check_id(id)?;
        let mut list = self.fanout_list()?;
        let new = !list.contains(&key);
        if new && list.len() >= FANOUT_MAX {
            return Err(BpfError::TooManySlaves);
        }
        let flags = [
            (e.up, maps::SLAVE_UP),
            (e.source_guard, maps::SLAVE_SPOOFCHK),
            (e.router, maps::SLAVE_ROUTER),
            (e.same_ns, maps::SLAVE_SAME_NS),
            (e.host, maps::SLAVE_HOST),
            (e.mac_guard, maps::SLAVE_MAC_GUARD),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |f, (_, bit)| f | bit);
        let old = {
            let m: HashMap<_, u32, SlaveV> =
                HashMap::try_from(&self.maps.slaves).map_err(map_err("slaves"))?;
            m.get(&key, 0).ok()
        };
        if new {
            let n = aya::util::nr_cpus().map_err(|(_, e)| BpfError::Io {
                what: "count CPUs",
                path: PathBuf::from("/sys/devices/system/cpu/possible"),
                source: e,
            })?;
            let zeros =
                PerCpuValues::try_from(vec![SlaveCtr::default(); n]).map_err(|e| BpfError::Io {
                    what: "per-CPU values",
                    path: self.pin_dir.clone(),
                    source: e,
                })?;
            let mut s: PerCpuHashMap<_, u32, SlaveCtr> =
                PerCpuHashMap::try_from(&mut self.maps.slave_stats)
                    .map_err(map_err("slave_stats"))?;
            s.insert(key, zeros, 0).map_err(map_err("slave_stats"))?;
        }
        {
            // The entry `from_slave` copies the slave's DHCP requests into; one already there
            // (a restart re-adopting the maps) is kept.
            let mut d: HashMap<_, u32, maps::DhcpReq> =
                HashMap::try_from(&mut self.maps.dhcp_reqs).map_err(map_err("dhcp_reqs"))?;
            if d.get(&key, 0).is_err() {
                d.insert(key, maps::DhcpReq::default(), 0)
                    .map_err(map_err("dhcp_reqs"))?;
            }
        }
        {
            let mut m: HashMap<_, u32, SlaveV> =
                HashMap::try_from(&mut self.maps.slaves).map_err(map_err("slaves"))?;
            m.insert(
                key,
                SlaveV {
                    host_ifindex: e.host_ifindex,
                    mtu: e.mtu,
                    flags,
                },
                0,
            )
            .map_err(map_err("slaves"))?;
        }
        {
            let mut h: HashMap<_, u32, u32> =
                HashMap::try_from(&mut self.maps.host_slave).map_err(map_err("host_slave"))?;
            if let Some(o) = old.filter(|o| o.host_ifindex != e.host_ifindex) {
                let _ = h.remove(&o.host_ifindex);
            }
            h.insert(e.host_ifindex, key, 0)
                .map_err(map_err("host_slave"))?;
        }
        if new {
            list.push(key);
            self.write_fanout(&list)?;
        }
        // Only a change of this slave's SAME_NS can change whether any slave has it.
        let was_local = old.is_some_and(|o| o.flags & maps::SLAVE_SAME_NS != 0);
        if was_local != e.same_ns {
            self.update_has_local()?;
        }
        Ok(())
    }

    /// Sets the configuration's `has_local` from the slaves' `SAME_NS` flags.
    fn update_has_local(&mut self) -> Result<(), BpfError> {
        let local = {
            let m: HashMap<_, u32, SlaveV> =
                HashMap::try_from(&self.maps.slaves).map_err(map_err("slaves"))?;
            m.iter()
                .filter_map(Result::ok)
                .any(|(_, v)| v.flags & maps::SLAVE_SAME_NS != 0)
        };
        let mut c = self.cfg()?;
        if (c.has_local != 0) != local {
            c.has_local = u8::from(local);
            self.put_cfg(c)?;
        }
        Ok(())
    }

    /// Removes slave `id`: its entry, its host end's mapping, its addresses, its counters and
    /// its place in the fan-out list (the others keep their order).
    ///
    /// Errors: [`BpfError::NoSuchSlave`], [`BpfError::Map`].
    pub fn remove_slave(&mut self, id: u16) -> Result<(), BpfError> {
        let key = check_id(id)?;
        let old = {
            let mut m: HashMap<_, u32, SlaveV> =
                HashMap::try_from(&mut self.maps.slaves).map_err(map_err("slaves"))?;
            let old = m.get(&key, 0).map_err(|_| BpfError::NoSuchSlave(id))?;
            m.remove(&key).map_err(map_err("slaves"))?;
            old
        };
        let mut list = self.fanout_list()?;
        list.retain(|&v| v != key);
        self.write_fanout(&list)?;
        {
            let mut h: HashMap<_, u32, u32> =
                HashMap::try_from(&mut self.maps.host_slave).map_err(map_err("host_slave"))?;
            let _ = h.remove(&old.host_ifindex);
        }
        for (a, owner) in self.addresses()? {
            if owner == id {
                self.remove_address(a)?;
            }
        }
        {
            let mut s: PerCpuHashMap<_, u32, SlaveCtr> =
                PerCpuHashMap::try_from(&mut self.maps.slave_stats)
                    .map_err(map_err("slave_stats"))?;
            let _ = s.remove(&key);
        }
        self.forget_dhcp_xids(key)?;
        if old.flags & maps::SLAVE_SAME_NS != 0 {
            self.update_has_local()?;
        }
        Ok(())
    }

    /// Deletes the DHCP transactions (`dhcp_xids`) of slave `key`: its id may be given to a
    /// new slave, which must not get replies meant for the old one.
    fn forget_dhcp_xids(&mut self, key: u32) -> Result<(), BpfError> {
        {
            let mut d: HashMap<_, u32, maps::DhcpReq> =
                HashMap::try_from(&mut self.maps.dhcp_reqs).map_err(map_err("dhcp_reqs"))?;
            let _ = d.remove(&key);
        }
        let mut m: HashMap<_, u32, maps::DhcpXid> =
            HashMap::try_from(&mut self.maps.dhcp_xids).map_err(map_err("dhcp_xids"))?;
        let stale: Vec<u32> = m
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| v.slave == key)
            .map(|(k, _)| k)
            .collect();
        for k in stale {
            let _ = m.remove(&k);
        }
        Ok(())
    }

    /// The latest DHCP request of each slave that sent one since it was added (`dhcp_reqs`).
    /// A copy the program was writing while it was read is left out (it is read at the next
    /// call).
    ///
    /// Errors: [`BpfError::Map`].
    pub fn dhcp_requests(&self) -> Result<Vec<DhcpRequest>, BpfError> {
        let m: HashMap<_, u32, maps::DhcpReq> =
            HashMap::try_from(&self.maps.dhcp_reqs).map_err(map_err("dhcp_reqs"))?;
        let mut out = Vec::new();
        for (k, v) in m.iter().filter_map(Result::ok) {
            if v.seq == 0 || v.seq % 2 == 1 {
                continue;
            }
            // Read again: a copy made meanwhile changed the sequence number.
            if m.get(&k, 0).ok().map(|w| w.seq) != Some(v.seq) {
                continue;
            }
            let n = (v.len as usize).min(maps::DHCP_SNAP);
            out.push(DhcpRequest {
                slave: k as u16,
                seq: v.seq,
                options: v.opts[..n].to_vec(),
                truncated: v.truncated != 0,
            });
        }
        Ok(out)
    }

    /// The DHCP transactions the programs remember (`dhcp_xids`): `(xid, slave id)`, the xid
    /// as the big-endian number on the wire, in no particular order.
    ///
    /// Errors: [`BpfError::Map`].
    pub fn dhcp_xids(&self) -> Result<Vec<(u32, u16)>, BpfError> {
        let m: HashMap<_, u32, maps::DhcpXid> =
            HashMap::try_from(&self.maps.dhcp_xids).map_err(map_err("dhcp_xids"))?;
        Ok(m.iter()
            .filter_map(Result::ok)
            .map(|(k, v)| (u32::from_be(k), v.slave as u16))
            .collect())
    }

    /// Maps `addr` to slave `id` (replacing an earlier owner: the daemon's address table
    /// decides ownership, R-ADDR-…). The address is active while the slave is up.
    ///
    /// Errors: [`BpfError::BadSlaveId`], [`BpfError::TooManyAddresses`], [`BpfError::Map`].
    pub fn add_address(&mut self, addr: IpAddr, id: u16) -> Result<(), BpfError> {
        let key = check_id(id)?;
        let mut m: HashMap<_, AddrKey, u32> =
            HashMap::try_from(&mut self.maps.addrs).map_err(map_err("addrs"))?;
        m.insert(AddrKey::new(addr), key, 0).map_err(|e| match e {
            MapError::SyscallError(ref s) if s.io_error.raw_os_error() == Some(libc::E2BIG) => {
                BpfError::TooManyAddresses
            }
            e => BpfError::Map {
                name: "addrs",
                source: e,
            },
        })
    }

    /// Removes `addr` from the address map.
    ///
    /// Errors: [`BpfError::NoSuchAddress`], [`BpfError::Map`].
    pub fn remove_address(&mut self, addr: IpAddr) -> Result<(), BpfError> {
        let mut m: HashMap<_, AddrKey, u32> =
            HashMap::try_from(&mut self.maps.addrs).map_err(map_err("addrs"))?;
        m.remove(&AddrKey::new(addr)).map_err(|e| match e {
            MapError::KeyNotFound => BpfError::NoSuchAddress(addr),
            e => BpfError::Map {
                name: "addrs",
                source: e,
            },
        })
    }

    /// Every address in the map with its slave id, in no particular order (for resync after
    /// a restart).
    ///
    /// Errors: [`BpfError::Map`].
    pub fn addresses(&self) -> Result<Vec<(IpAddr, u16)>, BpfError> {
        let m: HashMap<_, AddrKey, u32> =
            HashMap::try_from(&self.maps.addrs).map_err(map_err("addrs"))?;
        let mut out = Vec::new();
        for kv in m.iter() {
            let (k, v) = kv.map_err(map_err("addrs"))?;
            if let Some(ip) = k.ip() {
                out.push((ip, v as u16));
            }
        }
        Ok(out)
    }

    /// Slave `id`'s counters, summed over CPUs, as the core keeps them (R-STAT-1..4).
    ///
    /// Errors: [`BpfError::NoSuchSlave`], [`BpfError::Map`].
    pub fn slave_counters(&self, id: u16) -> Result<SlaveCounters, BpfError> {
        let key = check_id(id)?;
        let s: PerCpuHashMap<_, u32, SlaveCtr> =
            PerCpuHashMap::try_from(&self.maps.slave_stats).map_err(map_err("slave_stats"))?;
        let v = s.get(&key, 0).map_err(|e| match e {
            MapError::KeyNotFound => BpfError::NoSuchSlave(id),
            e => BpfError::Map {
                name: "slave_stats",
                source: e,
            },
        })?;
        let mut sum = SlaveCtr::default();
        for c in v.iter() {
            sum.add(c);
        }
        Ok(sum.to_core())
    }

    fn port_ctr(&self) -> Result<PortCtr, BpfError> {
        let a: PerCpuArray<_, PortCtr> =
            PerCpuArray::try_from(&self.maps.port_stats).map_err(map_err("port_stats"))?;
        let v = a.get(&0, 0).map_err(map_err("port_stats"))?;
        let mut sum = PortCtr::default();
        for c in v.iter() {
            sum.add(c);
        }
        Ok(sum)
    }

    /// The port's counters, summed over CPUs.
    ///
    /// Errors: [`BpfError::Map`].
    pub fn port_counters(&self) -> Result<PortCounters, BpfError> {
        Ok(self.port_ctr()?.to_core())
    }

    /// Counters of the BPF path that the core does not have: `(clone_failed, fib_fallback,
    /// fanout_cut)` (fan-out copies the kernel refused, FIB lookups handed to the stack,
    /// fan-outs that reached [`FANOUT_MAX`]).
    ///
    /// Errors: [`BpfError::Map`].
    pub fn extra_counters(&self) -> Result<(u64, u64, u64), BpfError> {
        let c = self.port_ctr()?;
        Ok((c.clone_failed, c.fib_fallback, c.fanout_cut))
    }

    /// Detaches everything (every pinned link), unpins programs and maps and deletes
    /// `pin_dir`. Collects the first error but keeps cleaning.
    ///
    /// Errors: [`BpfError::Io`].
    pub fn remove(self, pin_dir: &Path) -> Result<(), BpfError> {
        // A clsact filter is not pinned: it stays on its device until deleted — on the master
        // (whichever way this run attached, an earlier one may have used clsact) and on every
        // host end still in the maps.
        if let Some(m) = self.master {
            detach_clsact(m);
        }
        let hosts: Vec<u32> = HashMap::<_, u32, u32>::try_from(&self.maps.host_slave)
            .map(|h| h.keys().filter_map(Result::ok).collect())
            .unwrap_or_default();
        for h in hosts {
            detach_clsact(h);
        }
        drop(self);
        let mut first = None;
        match fs::read_dir(pin_dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    if let Err(source) = fs::remove_file(e.path()) {
                        first.get_or_insert(BpfError::Io {
                            what: "unpin",
                            path: e.path(),
                            source,
                        });
                    }
                }
            }
            Err(source) => {
                first.get_or_insert(BpfError::Io {
                    what: "list",
                    path: pin_dir.to_path_buf(),
                    source,
                });
            }
        }
        if let Err(source) = fs::remove_dir(pin_dir) {
            first.get_or_insert(BpfError::Io {
                what: "remove",
                path: pin_dir.to_path_buf(),
                source,
            });
        }
        first.map_or(Ok(()), Err)
    }
}
