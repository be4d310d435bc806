//! One port: a master, its data plane, its netfilter state and its slaves, owned by one
//! [`PortRuntime`]. The core [`Port`] (decisions, counters, address table) lives behind the data
//! plane's lock and only this module and its children reach it; the rest of the daemon goes
//! through the methods here. Creating and restoring a slave share one bring-up path
//! ([`bring_up`]); a step that fails undoes the earlier ones through [`Undo`] guards.
//!
//! - `events`: reactions to the kernel (master and slave link changes, namespace moves,
//!   addresses learned and forgotten);
//! - `netfilter`: keeping the master's nftables state and the l3s sink in step with the port;
//! - `view`: `link show` and the persisted form.

mod addresses;
mod events;
pub mod hostreach;
mod netfilter;
mod view;

use std::collections::BTreeMap;
use std::sync::Arc;

use ipvlan_core::{
    IfName, LinkTypeArgs, MacAddr, Master, MissingMode, Mode, NewSlave, Port, SlaveId,
};
use ipvlan_linux::host::HostStack;
use ipvlan_linux::netfilter::{Desired, Netfilter};
use ipvlan_linux::rtnl::{Link, LinkChange, Rtnl};
use ipvlan_linux::PacketSocket;
use tracing::{info, warn};

use super::error::{RequestError, TeardownErrors};
use super::persist::SlaveState;
use super::slave::{alias_for, device_alias, SlaveRuntime};
use crate::backend::{BackendKind, Backends, NewDevice, SlaveBackend, SlaveDevice};
use crate::datapath::Forwarder;
use crate::dataplane::{worker_count, DataPlane};
use crate::proto::Attachment;

/// Runs a rollback step when dropped, unless disarmed: the undo of a bring-up step that later
/// steps may still fail.
#[must_use = "an Undo runs when dropped"]
pub struct Undo<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Undo<F> {
    pub fn new(f: F) -> Undo<F> {
        Undo(Some(f))
    }

    /// The step stays: nothing to undo.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl<F: FnOnce()> Drop for Undo<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// What `link add` asks of a port.
#[derive(Debug, Clone)]
pub struct SlaveSpec {
    pub name: IfName,
    pub args: LinkTypeArgs,
    /// Bytes; `None`: the master's (R-MTU-1).
    pub mtu: Option<u32>,
    /// The source-address guard, on from the first frame.
    pub spoofchk: bool,
    /// What the device is made of; `None`: what the port's data path uses.
    pub backend: Option<BackendKind>,
    /// The container attachment the slave is made for (CNI/netavark plugin), kept with it.
    pub attachment: Option<Attachment>,
    /// ipvtap: who may open the TAP.
    pub tap_owner: Option<crate::proto::TapOwner>,
}

/// Which data path a new port gets (the daemon decides, `Daemon::plan_port`).
#[derive(Debug, Clone)]
pub enum PortPlan {
    /// The userspace workers.
    User,
    /// The eBPF programs, pinned under `pin_dir`, attached as clsact filters if `clsact`
    /// (else by tcx where the kernel has it).
    Bpf {
        pin_dir: std::path::PathBuf,
        clsact: bool,
        /// If the programs cannot be loaded or attached for this master, the port gets the
        /// userspace path (`--datapath auto`) instead of an error.
        fallback: bool,
    },
}

/// How a slave came to be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A new device: every setting must take.
    Created,
    /// A device of ours found after a restart: serve it even if a setting is refused.
    Restored,
}

/// One master's port, whose slaves are devices of backend `B`.
pub struct PortRuntime<B: SlaveBackend = Backends> {
    master: String,
    index: u32,
    dp: Forwarder<B::Device>,
    netfilter: Netfilter,
    /// The port's addresses or mode changed since the last successful netfilter sync.
    netfilter_dirty: bool,
    /// Why the last sync failed (retried at every settle until it succeeds).
    netfilter_error: Option<String>,
    /// l3s: the sink TAP's name while it exists (the data plane holds the device).
    sink: Option<String>,
    slaves: BTreeMap<SlaveId, SlaveRuntime<B::Device>>,
    /// Address claims refused so far (orders the claimants of a contested address).
    claims: u64,
    /// Who owns which address changed since the state was last written.
    owners_changed: bool,
    /// `hostreach on`: the port has a host slave (`hostreach`).
    hostreach: bool,
    /// The master's addresses given to the host slave.
    host_addrs: std::collections::BTreeSet<std::net::IpAddr>,
    /// The master's addresses a slave had first (logged once).
    host_conflicts: std::collections::BTreeSet<std::net::IpAddr>,
    /// `hostreach` routes that could not be added (e.g. another port's host device has one for
    /// the same address), warned about once until added or no longer wanted.
    host_route_failed: std::collections::BTreeSet<std::net::IpAddr>,
}

impl<B: SlaveBackend> PortRuntime<B> {
    /// Opens the master's sockets, installs its (empty) steal table and starts the data plane.
    pub fn create(link: &Link, plan: &PortPlan) -> Result<PortRuntime<B>, RequestError> {
        let mac = link
            .mac
            .ok_or_else(|| RequestError::NoMac(link.name.clone()))?;
        let mut netfilter = Netfilter::new(&link.name, link.index);
        // An earlier run may have left this master's tables and rules (killed in l3s, or the
        // port went away while the daemon was down): start from a clean namespace.
        if let Err(e) = netfilter.remove_leftovers() {
            warn!(master = %link.name, "removing an earlier run's netfilter state: {e}");
        }
        netfilter.sync(&Desired::steal([]))?;
        let undo_netfilter = Undo::new(|| {
            let _ = netfilter.teardown();
        });
        let port = Port::new(Master {
            name: IfName::new(&link.name)?,
            mac,
            mtu: link.mtu,
        });
        let dp = start_datapath(link, port, plan)?;
        undo_netfilter.disarm();
        info!(master = %link.name, datapath = %dp.kind(), workers = dp.workers(), "port created");
        Ok(PortRuntime {
            master: link.name.clone(),
            index: link.index,
            dp,
            netfilter,
            netfilter_dirty: false,
            netfilter_error: None,
            sink: None,
            slaves: BTreeMap::new(),
            claims: 0,
            owners_changed: false,
            hostreach: false,
            host_addrs: Default::default(),
            host_conflicts: Default::default(),
            host_route_failed: Default::default(),
        })
    }

    /// The l3s sink's name while there is one.
    pub fn sink_name(&self) -> Option<&str> {
        self.sink.as_deref()
    }

    /// The master's name.
    pub fn master(&self) -> &str {
        &self.master
    }

    /// Whether the addresses' owners changed since the last call (the state file keeps them).
    pub fn take_owners_changed(&mut self) -> bool {
        std::mem::take(&mut self.owners_changed)
    }

    /// No slave but the host slave (`hostreach`) is left.
    pub fn is_empty(&self) -> bool {
        let host = self.dp.port().host_slave();
        self.slaves.keys().all(|id| Some(*id) == host)
    }

    /// The slave created as `name`.
    pub fn slave_named(&self, name: &str) -> Option<SlaveId> {
        self.slaves
            .iter()
            .find(|(_, s)| s.name.as_str() == name)
            .map(|(id, _)| *id)
    }

    /// The user's slave created as `name`: not the host slave (`hostreach`), which only
    /// `hostreach on|off` makes and removes.
    pub fn user_slave_named(&self, name: &str) -> Option<SlaveId> {
        let id = self.slave_named(name)?;
        let host = self.dp.port().slave(id).is_some_and(|s| s.is_host());
        (!host).then_some(id)
    }

    /// The slave whose device has `ifindex` in the namespace with id `nsid` (`None`: ours).
    pub fn slave_at(&self, nsid: Option<i32>, ifindex: u32) -> Option<SlaveId> {
        self.slaves
            .iter()
            .find(|(_, s)| s.nsid == nsid && s.ifindex == ifindex)
            .map(|(id, _)| *id)
    }

    pub fn slave_ids(&self) -> Vec<SlaveId> {
        self.slaves.keys().copied().collect()
    }

    /// The control-plane side of a slave.
    pub fn slave(&self, id: SlaveId) -> Option<&SlaveRuntime<B::Device>> {
        self.slaves.get(&id)
    }

    /// `link add`: a new slave with a new device from `backend` (the master's MAC, the slave's
    /// MTU, our alias).
    /// Returns the notes for the user (mode kept or changed for the whole port).
    pub fn add_slave(
        &mut self,
        spec: SlaveSpec,
        backend: &B,
        instance: &str,
        carrier: bool,
    ) -> Result<Vec<String>, RequestError> {
        self.check_mode(spec.args.mode)?;
        let dp = &self.dp;
        // The user's slaves (the hostreach device is the port's, not listed as a slave).
        let others: Vec<String> = dp
            .port()
            .slaves()
            .filter(|s| !s.is_host())
            .map(|s| s.name().to_string())
            .collect();
        let (added, mac, mtu, master_mtu) = {
            let mut port = dp.port();
            let added = port.add_slave(NewSlave {
                name: spec.name.clone(),
                args: spec.args,
                mtu: spec.mtu,
                missing_mode: MissingMode::KeepPort,
            })?;
            let mtu = port.slave(added.id).map_or(port.master().mtu, |s| s.mtu());
            (added, port.master().mac, mtu, port.master().mtu)
        };
        let id = added.id;
        let undo_core = Undo::new(|| {
            let _ = dp.port().remove_slave(id);
        });
        // Guarded from its first frame: set before the device exists.
        dp.port().set_source_guard(id, spec.spoofchk)?;
        let kind = self.backend_for(spec.backend, backend)?;
        // An ipvtap guest's NIC must carry the master's MAC, which only its VMM can give it.
        dp.port().set_mac_guard(id, kind == BackendKind::Ipvtap)?;
        let device = backend
            .create(&NewDevice {
                kind,
                name: spec.name.as_str(),
                master_ifindex: self.index,
                id,
                mac,
                mtu,
                userspace: !dp.kind().is_bpf(),
                tap_owner: spec.tap_owner,
            })
            .map_err(|source| RequestError::CreateDevice {
                kind: kind.name(),
                name: spec.name.clone(),
                source,
            })?;
        let device = Arc::new(device);
        let undo_device = Undo::new(|| {
            let _ = device.destroy();
        });
        let alias = alias_for(instance, self.index, id);
        let ifindex = name_new_device(&spec.name, mtu, &self.device_alias(&alias, id))?;
        let mut rt = SlaveRuntime::new(spec.name.clone(), alias, device.clone(), carrier);
        rt.ifindex = ifindex;
        rt.attachment = spec.attachment.clone();
        bring_up(dp, &mut self.slaves, id, rt, mac, Origin::Created)?;
        undo_device.disarm();
        undo_core.disarm();

        let (mode, flag) = {
            let port = self.dp.port();
            (port.mode(), port.flag())
        };
        match &spec.attachment {
            Some(a) => info!(
                slave = %spec.name, master = %self.master, %mode, %flag,
                network = %a.network, container = %a.container_id, ifname = %a.ifname,
                "slave created for a container"
            ),
            None => info!(slave = %spec.name, master = %self.master, %mode, %flag, "slave created"),
        }
        let mut notes = Vec::new();
        if mtu > master_mtu {
            let note = mtu_above_master(mtu, &self.master, master_mtu, mode);
            warn!(slave = %spec.name, "{note}");
            notes.push(note);
        }
        if spec.args.mode.is_none() && !others.is_empty() {
            notes.push(format!(
                "no mode given: {} joins master {}'s port in its mode {mode} {flag} \
                 (the kernel would have reset every slave of {} to l3)",
                spec.name, self.master, self.master
            ));
        }
        if added.change.changed() && !others.is_empty() {
            notes.push(format!(
                "master {} changed from {} {} to {mode} {flag}: every slave of it changed too: {}",
                self.master,
                added.change.old_mode,
                added.change.old_flag,
                others.join(", ")
            ));
            self.apply_noarp();
            self.relabel();
        }
        self.netfilter_dirty = true;
        Ok(notes)
    }

    /// The backend a new slave's device is made of: the one asked for, if this port's data
    /// path can switch it, else the port's default (veth for eBPF; TAP, or veth where there
    /// is no TUN, for the userspace workers).
    fn backend_for(
        &self,
        asked: Option<BackendKind>,
        backend: &B,
    ) -> Result<BackendKind, RequestError> {
        let bpf = self.dp.kind().is_bpf();
        let kind = asked.unwrap_or(if bpf || !backend.can_make(BackendKind::Tap) {
            BackendKind::Veth
        } else {
            BackendKind::Tap
        });
        if bpf && kind == BackendKind::Tap {
            return Err(RequestError::Unsupported(format!(
                "master {}'s port runs the eBPF data path ({}), which switches veth slaves only: \
                 use backend veth, or run the daemon with --datapath user",
                self.master,
                self.dp.kind()
            )));
        }
        if !backend.can_make(kind) {
            return Err(RequestError::Unsupported(format!(
                "this machine cannot make {kind} slaves{}",
                if kind == BackendKind::Ipvtap {
                    " (no /dev/net/tun)"
                } else if kind == BackendKind::Tap {
                    " (no /dev/net/tun): use backend veth"
                } else {
                    ""
                }
            )));
        }
        Ok(kind)
    }

    /// Refuses l3s on an eBPF port: its master-namespace INPUT semantics (R-RX-L3S-1) cannot be
    /// had from TC hooks, and only the userspace data path gives them.
    fn check_mode(&self, mode: Option<Mode>) -> Result<(), RequestError> {
        if mode == Some(Mode::L3s) && self.dp.kind().is_bpf() {
            return Err(RequestError::Unsupported(format!(
                "master {}'s port runs the eBPF data path ({}), which has no l3s (the master \
                 namespace's INPUT hooks cannot be run from TC): delete its slaves and add them \
                 again with mode l3s (a new l3s port gets the userspace data path), or run the \
                 daemon with --datapath user",
                self.master,
                self.dp.kind()
            )));
        }
        Ok(())
    }

    /// The port's slaves are all restored (see `crate::fastpath::BpfPlane::restored`).
    pub fn restored(&self) {
        self.dp.restored();
    }

    /// Writes into the data path what an earlier sync could not (eBPF maps).
    pub fn resync_datapath(&self) {
        self.dp.resync();
    }

    /// Which data path switches this port's frames.
    pub fn datapath(&self) -> crate::datapath::DatapathKind {
        self.dp.kind()
    }

    /// Serves again a slave of the saved state whose device was re-attached (in its
    /// namespace).
    /// The caller then resynchronises it from that namespace.
    pub fn restore_slave(
        &mut self,
        saved: &SlaveState,
        device: B::Device,
        pinned: bool,
        carrier: bool,
    ) -> Result<SlaveId, RequestError> {
        let id = SlaveId::from_raw(saved.id);
        let name = IfName::new(&saved.name)?;
        let dp = &self.dp;
        let mac = {
            let mut port = dp.port();
            port.restore_slave(id, name.clone(), saved.mtu)?;
            port.master().mac
        };
        let undo_core = Undo::new(|| {
            let _ = dp.port().remove_slave(id);
        });
        {
            let mut port = dp.port();
            port.set_source_guard(id, saved.spoofchk)?;
            port.set_router(id, saved.router)?;
            port.set_mac_guard(id, saved.backend == BackendKind::Ipvtap)?;
            // What it owned stays its own against slaves restored before it; its resync
            // releases whatever it no longer has.
            for a in &saved.owned {
                let _ = port.add_address(id, *a);
            }
        }
        let mut rt = SlaveRuntime::new(name, saved.alias.clone(), Arc::new(device), carrier);
        rt.pinned = pinned;
        rt.attachment = saved.attachment.clone();
        rt.manual = saved.addresses.iter().copied().collect();
        bring_up(dp, &mut self.slaves, id, rt, mac, Origin::Restored)?;
        undo_core.disarm();
        self.netfilter_dirty = true;
        Ok(id)
    }

    /// Stops serving a slave; `destroy` also deletes its device (gone when this returns).
    pub fn remove_slave(&mut self, id: SlaveId, destroy: bool) {
        // The data plane lets go of its handle first, so the device can go with ours.
        drop(self.dp.remove_slave(id));
        let released = {
            let mut port = self.dp.port();
            let released = port.addresses(id).to_vec();
            let _ = port.remove_slave(id);
            released
        };
        self.netfilter_dirty = true;
        let Some(rt) = self.slaves.remove(&id) else {
            return;
        };
        let name = rt.name.clone();
        if destroy {
            if let Err(e) = rt.destroy() {
                warn!(slave = %name, "deleting the device: {e}");
            }
        }
        info!(slave = %name, "slave removed");
        crate::monitor::HUB.gone(name.as_str());
        self.pass_on(&released);
    }

    /// `link set`: the source guard and router allowance of one slave, the mode and flag of
    /// the whole port
    /// (R-OBJ-5). Returns the notes for the user.
    pub fn set_link(
        &mut self,
        id: SlaveId,
        args: LinkTypeArgs,
        spoofchk: Option<bool>,
        router: Option<bool>,
    ) -> Result<Vec<String>, RequestError> {
        self.check_mode(args.mode)?;
        let (change, names) = {
            let mut port = self.dp.port();
            if let Some(on) = spoofchk {
                port.set_source_guard(id, on)?;
            }
            if let Some(on) = router {
                port.set_router(id, on)?;
            }
            let change = port.change_link(args);
            let names: Vec<String> = port
                .slaves()
                .filter(|s| !s.is_host())
                .map(|s| s.name().to_string())
                .collect();
            (change, names)
        };
        let mut notes = Vec::new();
        if change.changed() {
            notes.push(format!(
                "master {} changed from {} {} to {} {}: every slave of it changed: {}",
                self.master,
                change.old_mode,
                change.old_flag,
                change.new_mode,
                change.new_flag,
                names.join(", ")
            ));
            info!(master = %self.master, mode = %change.new_mode, flag = %change.new_flag, "port changed");
            self.relabel();
        }
        self.apply_noarp();
        self.netfilter_dirty = true;
        Ok(notes)
    }

    /// Sets the port's mode and flag as saved (restore).
    pub fn set_mode_flag(&mut self, mode: Mode, flag: ipvlan_core::Flag) {
        self.dp.port().set_mode_flag(mode, flag);
        self.netfilter_dirty = true;
    }

    /// The `ifalias` for the slave `id` whose identity is `identity`: what it is now (the
    /// port's mode and flag, the master's name) and who it is ([`device_alias`]).
    pub(super) fn device_alias(&self, identity: &str, id: SlaveId) -> String {
        let (mode, flag) = {
            let port = self.dp.port();
            (port.mode(), port.flag())
        };
        device_alias(identity, mode, flag, &self.master, id)
    }

    /// Rewrites every slave's `ifalias` after the port's mode or flag changed or the master
    /// was renamed, in whatever namespace the slave is now. A failure is logged (the alias is
    /// only a label there; the slave's identity in it has not changed).
    pub(super) fn relabel(&self) {
        for (id, rt) in &self.slaves {
            let change = LinkChange {
                alias: Some(self.device_alias(&rt.alias, *id)),
                ..LinkChange::default()
            };
            if let Err(e) = rt.set_link(change) {
                warn!(slave = %rt.name, "updating the device's alias: {e}");
            }
        }
    }

    /// Sets every slave's NOARP flag from the port mode (R-MODE-2).
    fn apply_noarp(&self) {
        let noarp = self.dp.port().mode().is_noarp();
        for rt in self.slaves.values() {
            let change = LinkChange {
                noarp: Some(noarp),
                ..LinkChange::default()
            };
            if let Err(e) = rt.set_link(change) {
                warn!(slave = %rt.name, "setting NOARP: {e}");
            }
        }
    }

    /// Stops the data plane and leaves everything else in place: the daemon is stopping, and
    /// its next start serves the slaves again (and replaces the netfilter state).
    pub fn stop(mut self) {
        self.dp.stop();
    }

    /// Stops the data plane and removes the netfilter state (R-OBJ-1); the slaves' devices
    /// stay (they are deleted by `remove_slave` or persist across a restart). Every failure is
    /// collected.
    pub fn teardown(mut self) -> TeardownErrors {
        let mut errors = TeardownErrors::default();
        let host = self.dp.port().host_slave();
        if let Some(h) = host {
            if let Some(ifindex) = self.slaves.get(&h).map(|rt| rt.ifindex) {
                hostreach::remove_routes(Some(ifindex));
            }
            self.remove_slave(h, true);
        }
        if self.sink.take().is_some() {
            errors.note("removing the l3s sink", self.dp.set_sink(None));
        }
        errors.note("stopping the data path", self.dp.teardown());
        if let Err(e) = self.netfilter.teardown() {
            errors.0.extend(e.0.iter().map(ToString::to_string));
        }
        info!(master = %self.master, "port removed");
        crate::monitor::HUB.gone(&self.master);
        errors
    }
}

/// What a slave MTU of `mtu` bytes above its master's `master_mtu` means in `mode`, for the
/// user (a `link add` note) and the log. The kernel accepts it (R-MTU-2) and so do we; but the
/// master sends nothing larger than its own MTU: slave to slave the larger frames pass
/// (R-MTU-4 checks the receiver's MTU only), to the outside an l2 slave's larger frames are
/// lost, and an l3/l3s slave's larger packets are fragmented (IPv4 without DF) or answered
/// with ICMP "too big" by the master's namespace (R-TX-L3-3).
pub fn mtu_above_master(mtu: u32, master: &str, master_mtu: u32, mode: Mode) -> String {
    let outside = match mode {
        Mode::L2 => format!(
            "in l2 mode frames larger than {master_mtu} bytes reach the other slaves but will \
             not leave through {master} (`link show -s`: tx drops mtu_exceeded)"
        ),
        Mode::L3 | Mode::L3s => format!(
            "in {mode} mode packets larger than {master_mtu} bytes reach the other slaves, but \
             leave through {master} only fragmented (IPv4 without DF) or are answered with \
             ICMP \"too big\""
        ),
    };
    format!("mtu {mtu} is above master {master}'s {master_mtu}: {outside} (R-MTU-2)")
}

/// Whether this kernel can run the eBPF data path, with bpffs at (or mountable at) `bpffs`;
/// `Err` says why not.
pub fn probe_bpf(bpffs: &std::path::Path) -> Result<(), String> {
    ipvlan_bpf::available().map_err(|e| e.to_string())?;
    let mounted = ipvlan_bpf::ensure_bpffs(bpffs)
        .map_err(|e| format!("bpffs at {}: {e}", bpffs.display()))?;
    if mounted {
        let own_mounts = std::fs::read_link("/proc/self/ns/mnt").ok()
            != std::fs::read_link("/proc/1/ns/mnt").ok();
        if own_mounts {
            warn!(bpffs = %bpffs.display(), "mounted bpffs in this daemon's own mount namespace (as `ip netns exec` makes one): the pinned programs go with it, so forwarding stops when this daemon exits; give --bpffs a bpffs mounted outside it");
        } else {
            info!(bpffs = %bpffs.display(), "mounted bpffs");
        }
    }
    Ok(())
}

/// Starts the data path `plan` asks for, on `port`.
fn start_datapath<D: SlaveDevice + crate::dataplane::SlaveIo + 'static>(
    link: &Link,
    port: Port,
    plan: &PortPlan,
) -> Result<Forwarder<D>, RequestError> {
    match plan {
        PortPlan::User => {
            let packet = PacketSocket::open_fanout(link.index, worker_count())
                .map_err(RequestError::system("opening the master's packet sockets"))?;
            let host = HostStack::open(&link.name).map_err(RequestError::system(
                "opening raw sockets to the host stack",
            ))?;
            Ok(Forwarder::User(
                DataPlane::start(port, packet, host)
                    .map_err(RequestError::system("starting the data plane"))?,
            ))
        }
        PortPlan::Bpf {
            pin_dir,
            clsact,
            fallback,
        } => match crate::fastpath::BpfPlane::create(port.clone(), link.index, pin_dir, *clsact) {
            Ok(b) => Ok(Forwarder::Bpf(Box::new(b))),
            Err(e) if *fallback => {
                warn!(master = %link.name, "the eBPF data path cannot serve this master, the userspace workers do: {e}");
                crate::fastpath::remove_stale(pin_dir, Some(link.index));
                start_datapath(link, port, &PortPlan::User)
            }
            Err(e) => Err(RequestError::system("starting the eBPF data path")(e)),
        },
    }
}

/// Gives a device just created in the daemon's namespace its MTU and alias, with no EUI-64
/// link-local (the shared MAC would make them collide); returns its ifindex.
fn name_new_device(name: &IfName, mtu: u32, alias: &str) -> Result<u32, RequestError> {
    let what = "configuring the new slave device";
    let mut r = Rtnl::open().map_err(RequestError::system(what))?;
    let link = r
        .link_by_name(name.as_str())
        .map_err(RequestError::system(what))?
        .ok_or_else(|| RequestError::NoDevice(name.to_string()))?;
    r.set_link(
        link.index,
        &LinkChange {
            mtu: Some(mtu),
            alias: Some(alias.to_owned()),
            addrgen_none: true,
            ..LinkChange::default()
        },
    )
    .map_err(RequestError::system(what))?;
    Ok(link.index)
}

/// The bring-up every served slave goes through, new or restored: offloads, the master's MAC,
/// the carrier, then the data plane serves it and the port records it.
fn bring_up<D: SlaveDevice + crate::dataplane::SlaveIo + 'static>(
    dp: &Forwarder<D>,
    slaves: &mut BTreeMap<SlaveId, SlaveRuntime<D>>,
    id: SlaveId,
    mut rt: SlaveRuntime<D>,
    mac: MacAddr,
    origin: Origin,
) -> Result<(), RequestError> {
    let device = rt.device();
    let carrier = rt.carrier;
    let steps: [(&'static str, std::io::Result<()>); 3] = [
        ("enabling the device's offloads", device.enable_offloads()),
        ("setting the slave's MAC", device.set_mac(mac)),
        ("setting the slave's carrier", rt.set_carrier(carrier)),
    ];
    for (what, r) in steps {
        match (r, origin) {
            (Ok(()), _) => {}
            (Err(e), Origin::Created) => return Err(RequestError::system(what)(e)),
            (Err(e), Origin::Restored) => warn!(slave = %rt.name, "{what}: {e}"),
        }
    }
    dp.add_slave(id, device)
        .map_err(RequestError::system("serving the new slave"))?;
    // A new device starts in the daemon's namespace; a restored one is placed by its resync.
    // An ipvtap's guest is in a machine of its own (its TAP is delivered to without a peer
    // all the same: `mac_guard`).
    dp.set_local(
        id,
        !rt.is_ipvtap() && (origin == Origin::Created || !rt.pinned),
    );
    slaves.insert(id, rt);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{mtu_above_master, Undo};
    use ipvlan_core::Mode;
    use std::cell::Cell;

    #[test]
    fn an_mtu_above_the_masters_is_explained_by_mode() {
        let l2 = mtu_above_master(9000, "m0", 1500, Mode::L2);
        assert!(
            l2.starts_with(
                "mtu 9000 is above master m0's 1500: in l2 mode frames larger than 1500 bytes"
            ),
            "{l2}"
        );
        assert!(
            l2.contains("will not leave through m0") && l2.ends_with("(R-MTU-2)"),
            "{l2}"
        );
        let l3s = mtu_above_master(9000, "m0", 1500, Mode::L3s);
        assert!(
            l3s.contains("in l3s mode packets larger than 1500 bytes"),
            "{l3s}"
        );
        assert!(
            l3s.contains("fragmented") && l3s.contains("too big"),
            "{l3s}"
        );
    }

    #[test]
    fn an_undo_runs_when_dropped_unless_disarmed() {
        let ran = Cell::new(0);
        {
            let _undo = Undo::new(|| ran.set(ran.get() + 1));
        }
        assert_eq!(ran.get(), 1, "dropped: undone");
        Undo::new(|| ran.set(ran.get() + 1)).disarm();
        assert_eq!(ran.get(), 1, "disarmed: kept");
    }
}
