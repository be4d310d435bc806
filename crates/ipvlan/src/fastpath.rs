//! The eBPF data path of one port: the programs of `ipvlan_bpf` switch the frames in the
//! kernel (on the master's ingress and on every veth host end's ingress), and the daemon only
//! keeps their maps equal to the core [`Port`] — the model every control-plane change goes
//! through, as on the userspace path.
//!
//! Keeping the maps in step: a [`BpfGuard`] (the locked port) that was used to change the port
//! marks it dirty when released, so no change can be forgotten, and [`BpfPlane::resync`] — the
//! daemon's settle, once per batch of requests and kernel events and at least once a second —
//! writes what differs into the maps, so 1,000 addresses removed at once cost one pass, not
//! 1,000. Adding, removing and moving a slave write at once. A write that fails is logged and
//! retried at the next resync. The programs, maps and tcx links are pinned under the port's directory in bpffs:
//! when the daemon stops or dies, forwarding goes on; when it starts again it re-adopts them
//! ([`BpfPlane::create`] finds them) without a gap.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ipvlan_bpf::{Attach, PortConfig, PortProgram, RouteMethod, SlaveEntry};
use ipvlan_core::{Port, PortCounters, SlaveCounters, SlaveId};
use tracing::{info, warn};

use crate::datapath::DatapathKind;

/// How the l3/l3s egress of each family reaches the master namespace's routing: through its
/// forwarding path from the host end (`Stack`: netfilter's FORWARD and POSTROUTING apply, so
/// masquerade works) when the host end can forward that family, else by a FIB lookup in the
/// program (`Fib`: no netfilter). IPv4 forwarding is per device; IPv6 needs the per-device
/// `force_forwarding` sysctl (Linux ≥ 6.17), without which only the namespace-wide switch
/// would do — which would turn the whole host into an IPv6 router.
pub fn route_methods() -> (RouteMethod, RouteMethod) {
    let v6 = if Path::new("/proc/sys/net/ipv6/conf/default/force_forwarding").exists() {
        RouteMethod::Stack
    } else {
        RouteMethod::Fib
    };
    (RouteMethod::Stack, v6)
}

/// Removes what an earlier run pinned under `pin_dir` for a master: one whose port now gets
/// the userspace path, which must not run beside the programs (`Some(its ifindex)`: detached
/// from it), or one that is gone (`None`: its attachments went with it). Errors are logged;
/// nothing there is not an error.
pub fn remove_stale(pin_dir: &Path, master: Option<u32>) {
    if !pin_dir.exists() {
        return;
    }
    let removed = PortProgram::open_pinned(pin_dir).and_then(|mut p| {
        // Recorded as the master (attached already: nothing changes), so that removing
        // detaches it whatever attached it. A master that is gone took its attachments along.
        if let Some(m) = master {
            if let Err(e) = p.attach_master(m) {
                tracing::debug!("re-attaching to the master before removing: {e}");
            }
        }
        p.remove(pin_dir)
    });
    match removed {
        Ok(()) => {
            info!(pins = %pin_dir.display(), "an earlier run's BPF programs removed: this port now runs the userspace data path")
        }
        Err(e) => warn!(pins = %pin_dir.display(), "removing an earlier run's BPF programs: {e}"),
    }
}

/// What the maps hold, as last written.
#[derive(Default)]
struct Mirror {
    config: Option<PortConfig>,
    slaves: BTreeMap<u16, SlaveEntry>,
    addresses: BTreeMap<IpAddr, u16>,
}

/// The maps and programs. Locked after [`Shared`] when both are needed; counters are read
/// with this lock alone, so `link show` can hold the port while it reads them.
type Prog = Arc<Mutex<PortProgram>>;

fn lock_prog(p: &Mutex<PortProgram>) -> MutexGuard<'_, PortProgram> {
    p.lock().unwrap_or_else(|p| p.into_inner())
}

struct Shared {
    port: Port,
    prog: Prog,
    master_ifindex: u32,
    /// Host-end ifindex of each slave whose frames the programs switch.
    hosts: HashMap<SlaveId, u32>,
    /// Slaves whose device is in the master's own namespace (no `bpf_redirect_peer`).
    local: HashSet<SlaveId>,
    mirror: Mirror,
    /// While the port's slaves are being restored, the maps keep what the previous run left
    /// (forwarding goes on); the first sync after [`BpfPlane::restored`] removes the rest.
    restoring: bool,
    /// The port changed since the maps were last written.
    dirty: bool,
    /// The last failed write (logged once), retried at every sync.
    error: Option<String>,
    /// How l3 egress reaches the master namespace's routing, per family (fixed per kernel).
    routes: (RouteMethod, RouteMethod),
    /// The client identifiers of the slaves' DHCP requests (map `dhcp_reqs`), for the
    /// shared-lease warning, and the sequence number of each slave's copy last looked at.
    client_ids: ipvlan_core::dhcp::ClientIdWatch,
    dhcp_seen: HashMap<u16, u64>,
}

impl Shared {
    fn desired_config(&self) -> PortConfig {
        let (route_v4, route_v6) = self.routes;
        let m = self.port.master();
        PortConfig {
            master_ifindex: self.master_ifindex,
            master_mac: m.mac.0,
            master_mtu: m.mtu,
            mode: self.port.mode(),
            flag: self.port.flag(),
            route_v4,
            route_v6,
        }
    }

    /// Writes into the maps what differs from the port.
    fn sync(&mut self) -> Result<(), ipvlan_bpf::BpfError> {
        let prog = self.prog.clone();
        let mut prog = lock_prog(&prog);
        let config = self.desired_config();
        if self.mirror.config.as_ref() != Some(&config) {
            prog.set_config(&config)?;
            self.mirror.config = Some(config);
        }
        let mut slaves = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        for s in self.port.slaves() {
            let Some(&host_ifindex) = self.hosts.get(&s.id()) else {
                continue;
            };
            slaves.insert(
                s.id().get(),
                SlaveEntry {
                    host_ifindex,
                    mtu: s.mtu(),
                    up: s.is_up(),
                    source_guard: s.source_guard(),
                    router: s.router(),
                    same_ns: self.local.contains(&s.id()),
                    host: s.is_host(),
                    mac_guard: s.mac_guard(),
                },
            );
            for a in self.port.addresses(s.id()) {
                addresses.insert(*a, s.id().get());
            }
        }
        // Addresses that moved or went are taken out before the slaves change; new ones go in
        // once their slave is there.
        let stale: Vec<IpAddr> = self
            .mirror
            .addresses
            .iter()
            .filter(|(a, id)| addresses.get(a) != Some(id))
            .map(|(a, _)| *a)
            .collect();
        for a in stale {
            if !self.restoring || addresses.contains_key(&a) {
                prog.remove_address(a)?;
                self.mirror.addresses.remove(&a);
            }
        }
        for (id, e) in &slaves {
            if self.mirror.slaves.get(id) != Some(e) {
                prog.set_slave(*id, e)?;
                self.mirror.slaves.insert(*id, *e);
            }
        }
        for (a, id) in &addresses {
            if self.mirror.addresses.get(a) != Some(id) {
                prog.add_address(*a, *id)?;
                self.mirror.addresses.insert(*a, *id);
            }
        }
        if !self.restoring {
            let gone: Vec<u16> = self
                .mirror
                .slaves
                .keys()
                .filter(|id| !slaves.contains_key(id))
                .copied()
                .collect();
            for id in gone {
                prog.remove_slave(id)?;
                self.mirror.slaves.remove(&id);
            }
        }
        Ok(())
    }

    /// Looks at the DHCP requests the programs copied since the last call (map `dhcp_reqs`,
    /// l2 only) and warns about a slave whose client would share a lease, as the userspace
    /// path does (`crate::dataplane::client_id_warning`). Requests a slave sent within one
    /// call's interval count as one (the latest).
    fn check_dhcp_requests(&mut self) {
        let Ok(requests) = lock_prog(&self.prog).dhcp_requests() else {
            return;
        };
        let now = CLOCK.elapsed().as_nanos() as u64;
        for r in requests {
            if self.dhcp_seen.insert(r.slave, r.seq) == Some(r.seq) {
                continue;
            }
            let id = SlaveId::from_raw(r.slave);
            if self.port.slave(id).is_none() {
                continue;
            }
            if let Some(p) = self
                .client_ids
                .check_options(id, &r.options, r.truncated, now)
            {
                warn!(
                    "{}",
                    crate::dataplane::client_id_warning(&self.port, id, &p)
                );
            }
        }
    }

    fn sync_logged(&mut self) {
        match self.sync() {
            Ok(()) => {
                self.dirty = false;
                if self.error.take().is_some() {
                    info!(
                        master_ifindex = self.master_ifindex,
                        "BPF maps in sync again"
                    );
                }
            }
            Err(e) => {
                self.dirty = true;
                let e = e.to_string();
                if self.error.as_ref() != Some(&e) {
                    warn!(
                        master_ifindex = self.master_ifindex,
                        "BPF maps not in sync (retried every second): {e}"
                    );
                    self.error = Some(e);
                }
            }
        }
    }
}

/// A port switched by the eBPF programs.
pub struct BpfPlane {
    shared: Arc<Mutex<Shared>>,
    /// Copies dropped frames for `ipvlan monitor drops` (`None`: programs pinned by a build
    /// without the monitor's maps).
    monitor: Option<crate::monitor::bpf::Reader>,
    prog: Prog,
    kind: DatapathKind,
    pin_dir: PathBuf,
}

/// The core port, locked; released after a change, it marks the maps out of date.
pub struct BpfGuard<'a> {
    shared: MutexGuard<'a, Shared>,
    changed: bool,
}

impl Deref for BpfGuard<'_> {
    type Target = Port;
    fn deref(&self) -> &Port {
        &self.shared.port
    }
}

impl DerefMut for BpfGuard<'_> {
    fn deref_mut(&mut self) -> &mut Port {
        self.changed = true;
        &mut self.shared.port
    }
}

impl Drop for BpfGuard<'_> {
    fn drop(&mut self) {
        if self.changed {
            self.shared.dirty = true;
        }
    }
}

/// The monotonic origin of the times given to [`ipvlan_core::dhcp::ClientIdWatch`].
static CLOCK: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

fn bpf_io(what: &str) -> impl FnOnce(ipvlan_bpf::BpfError) -> io::Error + '_ {
    move |e| io::Error::other(format!("{what}: {e}"))
}

impl BpfPlane {
    /// Loads the programs for the master `master_ifindex` (in the calling thread's namespace)
    /// and attaches them to its ingress, or re-adopts the ones an earlier run pinned under
    /// `pin_dir` (then forwarding never stopped, and the maps keep their contents until
    /// [`BpfPlane::restored`]). Errors: bpffs cannot be mounted, the object does not load or
    /// attach (the message says why: no BPF, EPERM, verifier).
    ///
    /// `clsact`: attach as clsact filters even where the kernel has tcx.
    pub fn create(
        port: Port,
        master_ifindex: u32,
        pin_dir: &Path,
        clsact: bool,
    ) -> io::Result<BpfPlane> {
        if let Some(root) = pin_dir.ancestors().nth(3) {
            ipvlan_bpf::ensure_bpffs(root).map_err(bpf_io("mounting bpffs"))?;
        }
        let (mut prog, restoring) = match PortProgram::open_pinned(pin_dir) {
            Ok(p) => {
                info!(pins = %pin_dir.display(), "BPF programs of an earlier run re-adopted: forwarding never stopped");
                (p, true)
            }
            Err(_) => (
                PortProgram::load(pin_dir).map_err(bpf_io("loading the BPF programs"))?,
                false,
            ),
        };
        prog.prefer_clsact(clsact);
        let attach = prog
            .attach_master(master_ifindex)
            .map_err(bpf_io("attaching to the master"))?;
        let mut mirror = Mirror::default();
        if restoring {
            // What the earlier run left: removed at the first sync after the restore if no
            // restored slave has it.
            if let Ok(a) = prog.addresses() {
                mirror.addresses = a.into_iter().collect();
            }
            // Entries no restored slave matches (host_ifindex 0 never does): rewritten for
            // the restored slaves, removed for the others.
            if let Ok(ids) = prog.slave_ids() {
                mirror.slaves = ids
                    .into_iter()
                    .map(|id| {
                        let stale = SlaveEntry {
                            host_ifindex: 0,
                            mtu: 0,
                            up: false,
                            source_guard: false,
                            router: false,
                            same_ns: false,
                            host: false,
                            mac_guard: false,
                        };
                        (id, stale)
                    })
                    .collect();
            }
        }
        if std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter")
            .is_ok_and(|v| v.trim() == "1")
        {
            warn!(
                master_ifindex,
                "net.ipv4.conf.all.rp_filter is 1 (strict) in the master's namespace: l3/l3s \
                 egress of this port's slaves, forwarded from their host ends, will be dropped \
                 by reverse-path filtering (set it to 2, loose, or 0)"
            );
        }
        let kind = match attach {
            Attach::Tcx => DatapathKind::BpfTcx,
            Attach::Clsact => DatapathKind::BpfTc,
        };
        let prog = Arc::new(Mutex::new(prog));
        let mut shared = Shared {
            port,
            prog: prog.clone(),
            master_ifindex,
            hosts: HashMap::new(),
            local: HashSet::new(),
            mirror,
            restoring,
            dirty: false,
            error: None,
            routes: route_methods(),
            client_ids: ipvlan_core::dhcp::ClientIdWatch::default(),
            dhcp_seen: HashMap::new(),
        };
        shared
            .sync()
            .map_err(bpf_io("writing the port's configuration"))?;
        let shared = Arc::new(Mutex::new(shared));
        let monitor = match ipvlan_bpf::monitor::DropRing::open(pin_dir) {
            Ok(ring) => {
                let sh = Arc::downgrade(&shared);
                let names = move |id: u16| {
                    let sh = sh.upgrade()?;
                    let sh = sh.lock().unwrap_or_else(|p| p.into_inner());
                    let master = sh.port.master().name.to_string();
                    let dev = match id {
                        0 => master.clone(),
                        id => sh.port.slave(SlaveId::from_raw(id))?.name().to_string(),
                    };
                    Some((master, dev))
                };
                crate::monitor::bpf::Reader::start(ring, Box::new(names))
                    .map_err(|e| warn!(master_ifindex, "drop monitor: {e}"))
                    .ok()
            }
            Err(e) => {
                info!(master_ifindex, "drop monitor not available on this port (programs pinned by an older build): {e}");
                None
            }
        };
        Ok(BpfPlane {
            shared,
            monitor,
            prog,
            kind,
            pin_dir: pin_dir.to_owned(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn kind(&self) -> DatapathKind {
        self.kind
    }

    /// The core port, locked.
    pub fn port(&self) -> BpfGuard<'_> {
        BpfGuard {
            shared: self.lock(),
            changed: false,
        }
    }

    /// Attaches the program to a slave's host end (ifindex in the master's namespace) and
    /// puts the slave in the maps.
    pub fn add_slave(&self, id: SlaveId, host_ifindex: u32) -> io::Result<()> {
        let mut sh = self.lock();
        lock_prog(&self.prog)
            .attach_slave(host_ifindex)
            .map_err(bpf_io("attaching to the slave's host end"))?;
        sh.hosts.insert(id, host_ifindex);
        sh.sync_logged();
        Ok(())
    }

    /// Takes a slave out of the maps and detaches from its host end (which may be gone).
    pub fn remove_slave(&self, id: SlaveId) {
        let mut sh = self.lock();
        sh.local.remove(&id);
        sh.client_ids.forget_slave(id);
        sh.dhcp_seen.remove(&id.get());
        if let Some(host) = sh.hosts.remove(&id) {
            sh.sync_logged();
            if let Err(e) = lock_prog(&self.prog).detach_slave(host) {
                tracing::debug!(%id, "detaching from the host end: {e}");
            }
        }
    }

    /// Whether a slave's device is in the master's own namespace.
    pub fn set_local(&self, id: SlaveId, local: bool) {
        let mut sh = self.lock();
        if local {
            sh.local.insert(id);
        } else {
            sh.local.remove(&id);
        }
        sh.sync_logged();
    }

    /// The port's slaves are all restored: what the earlier run left in the maps and no
    /// restored slave has is removed now, and so are the pinned links to host ends no restored
    /// slave has (their devices are gone; a new device may get their ifindex).
    pub fn restored(&self) {
        let mut sh = self.lock();
        sh.restoring = false;
        sh.sync_logged();
        let mut keep: Vec<u32> = sh.hosts.values().copied().collect();
        keep.push(sh.master_ifindex);
        if let Err(e) = lock_prog(&self.prog).prune_links(&keep) {
            warn!(
                master_ifindex = sh.master_ifindex,
                "removing stale BPF links: {e}"
            );
        }
    }

    /// Writes what changed into the maps (the daemon's settle), and looks at the slaves'
    /// latest DHCP requests.
    pub fn resync(&self) {
        let mut sh = self.lock();
        if sh.dirty {
            sh.sync_logged();
        }
        sh.check_dhcp_requests();
    }

    /// A slave's counters, summed over CPUs.
    pub fn slave_counters(&self, id: SlaveId) -> SlaveCounters {
        lock_prog(&self.prog)
            .slave_counters(id.get())
            .unwrap_or_default()
    }

    /// The port's counters, summed over CPUs.
    pub fn port_counters(&self) -> PortCounters {
        lock_prog(&self.prog).port_counters().unwrap_or_default()
    }

    /// Detaches everything and removes the pins: the port is deleted (R-OBJ-1).
    pub fn teardown(self) -> io::Result<()> {
        drop(self.monitor);
        drop(self.shared);
        let prog = Arc::try_unwrap(self.prog)
            .map_err(|_| io::Error::other("the BPF programs are still in use"))?
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        prog.remove(&self.pin_dir)
            .map_err(bpf_io("removing the BPF programs"))
    }
}
