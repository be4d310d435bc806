//! The daemon's persisted configuration: which slaves exist on which master, in which mode.
//! Written atomically (temporary file, fsync, rename), so a crash leaves either the old or the
//! new file, never half of one. A corrupt file is kept aside and the daemon starts empty.
//!
//! [`Daemon::save`] writes what the ports hold; [`Daemon::restore`] serves again, after a
//! restart, every saved slave that still exists, in whatever namespace it now lives (found by
//! its alias).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ipvlan_core::SlaveId;
use ipvlan_core::{Flag, Mode};
use ipvlan_linux::netns::all_namespaces;
use ipvlan_linux::rtnl::Rtnl;
use ipvlan_linux::NetNs;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::error::RequestError;
use super::port::PortRuntime;
use super::slave::{alias_identity, alias_names, log_gone};
use super::Daemon;
use crate::backend::{BackendKind, FoundDevice, SlaveBackend, SlaveDevice};
use crate::proto::Attachment;

pub const STATE_FILE: &str = "state.json";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// This daemon's identity, part of every slave's alias, so that a daemon only ever
    /// re-attaches its own slaves (several daemons may run in different namespaces).
    #[serde(default)]
    pub instance: String,
    pub ports: Vec<PortState>,
}

/// A fresh random instance id.
pub fn new_instance() -> String {
    let mut b = [0u8; 8];
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    if b == [0u8; 8] {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = ((t as u64) ^ u64::from(std::process::id())).to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortState {
    pub master: String,
    pub master_ifindex: u32,
    pub mode: Mode,
    pub flag: Flag,
    /// The port ran the eBPF data path (its programs are pinned and still forward).
    #[serde(default)]
    pub bpf: bool,
    /// `hostreach on`: its host slave is among `slaves` (by its name, `ipvlh<ifindex>`).
    #[serde(default)]
    pub hostreach: bool,
    pub slaves: Vec<SlaveState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaveState {
    pub name: String,
    pub id: u16,
    pub mtu: u32,
    /// The slave's identity (`slave::alias_for`), which the device's `ifalias` carries
    /// (`slave::device_alias`; older versions: the identity alone), so it is found wherever it
    /// lives now.
    pub alias: String,
    #[serde(default)]
    pub spoofchk: bool,
    /// With the guard on, may send router advertisements and redirects.
    #[serde(default)]
    pub router: bool,
    /// The addresses it owned: after a restart it keeps them against claimants that learn
    /// theirs first (while it still has them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owned: Vec<std::net::IpAddr>,
    /// What its device is made of (`tap` in state files from before backends).
    #[serde(default)]
    pub backend: BackendKind,
    /// The container attachment it was made for (`LinkAdd.attachment`); absent for slaves
    /// the user made, and in state files from before attachments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// An ipvtap slave's addresses, as `ipvlan address add` gave them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<std::net::IpAddr>,
}

/// What loading found.
pub enum Loaded {
    Fresh,
    State(State),
    /// Unreadable: kept aside under this name, the daemon starts empty.
    Corrupt {
        kept_as: PathBuf,
        why: String,
    },
}

/// Holds the state directory for one daemon: an exclusive `flock` on `DIR/lock`, released when
/// dropped (or when the process dies, however it dies).
pub struct StateLock(#[allow(dead_code)] nix::fcntl::Flock<File>);

/// Takes the state directory `dir` (created if missing) for this daemon. Errors: another
/// daemon holds it (two daemons serving the same slaves would duplicate every packet and
/// overwrite each other's state), or the lock file cannot be opened.
pub fn lock(dir: &Path) -> Result<StateLock> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let p = dir.join("lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(StateLock(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => anyhow::bail!(
            "another ipvlan daemon is using the state directory {} (it holds {})",
            dir.display(),
            p.display()
        ),
        Err((_, e)) => Err(e).with_context(|| format!("locking {}", p.display())),
    }
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

pub fn load(dir: &Path) -> Result<Loaded> {
    let p = path(dir);
    let bytes = match fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Fresh),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    match serde_json::from_slice::<State>(&bytes) {
        Ok(s) if s.version == VERSION => Ok(Loaded::State(s)),
        Ok(s) => keep_aside(&p, format!("unsupported state version {}", s.version)),
        Err(e) => keep_aside(&p, e.to_string()),
    }
}

fn keep_aside(p: &Path, why: String) -> Result<Loaded> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let kept = p.with_extension(format!("json.corrupt-{stamp}"));
    fs::rename(p, &kept).with_context(|| format!("moving {} aside", p.display()))?;
    Ok(Loaded::Corrupt { kept_as: kept, why })
}

pub fn save(dir: &Path, state: &State) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let p = path(dir);
    let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
    let mut s = state.clone();
    s.version = VERSION;
    let body = serde_json::to_vec_pretty(&s)?;
    if let Err(e) = write_synced(&tmp, &body) {
        // Nothing half-written stays behind (a full disk, say).
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, &p) {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("replacing {}", p.display()));
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `body` to a new file `p` (mode 0600; whatever was there, a symlink included, is
/// removed first and never followed) and waits until it is on disk.
fn write_synced(p: &Path, body: &[u8]) -> Result<()> {
    let _ = fs::remove_file(p);
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(p)
        .with_context(|| format!("writing {}", p.display()))?;
    f.write_all(body)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", p.display()))
}

/// The file that keeps the daemon's instance id apart from the state, so that the slaves'
/// aliases can still be recognised when the state file is lost or corrupt.
fn instance_path(dir: &Path) -> PathBuf {
    dir.join("instance")
}

/// The instance id kept in `dir`, if there is a valid one.
fn read_instance(dir: &Path) -> Option<String> {
    let id = fs::read_to_string(instance_path(dir)).ok()?;
    let id = id.trim();
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

/// `ipvlan-rs:<instance>:<master ifindex>:<slave id>` → (master ifindex, slave id).
fn parse_alias(alias: &str, prefix: &str) -> Option<(u32, u16)> {
    let (master, id) = alias.strip_prefix(prefix)?.split_once(':')?;
    Some((master.parse().ok()?, id.parse().ok()?))
}

impl Daemon {
    /// Writes the configuration of every port. A failure is logged and returned (the running
    /// daemon keeps serving; the next settle tries again).
    pub(super) fn save(&mut self) -> std::result::Result<(), String> {
        let st = State {
            version: VERSION,
            instance: self.instance.clone(),
            ports: self.ports.values().map(PortRuntime::saved).collect(),
        };
        match save(&self.cfg.state_dir, &st) {
            Ok(()) => {
                if self.save_error.take().is_some() {
                    info!("state saved again");
                }
                Ok(())
            }
            Err(e) => {
                let e = format!("{e:#}");
                if self.save_error.as_ref() != Some(&e) {
                    warn!("saving state (retried at every change and every second): {e}");
                    self.save_error = Some(e.clone());
                }
                Err(format!(
                    "the configuration could not be saved, so it will not survive a daemon restart (the daemon retries): {e}"
                ))
            }
        }
    }

    /// Serves again every slave of the saved state that still exists, wherever it now lives.
    /// Then serves the devices of this instance that the file does not list (it was stale,
    /// unwritable or corrupt), found by their alias: every slave that exists is served.
    pub(super) fn restore(&mut self) {
        let st = match load(&self.cfg.state_dir) {
            Ok(Loaded::Fresh) => State::default(),
            Ok(Loaded::State(s)) => s,
            Ok(Loaded::Corrupt { kept_as, why }) => {
                warn!(
                    "state file is corrupt ({why}); kept aside as {}; serving the slaves found by their aliases",
                    kept_as.display()
                );
                State::default()
            }
            Err(e) => {
                warn!("cannot read state: {e:#}; serving the slaves found by their aliases");
                State::default()
            }
        };
        let dir = self.cfg.state_dir.clone();
        match (st.instance.is_empty(), read_instance(&dir)) {
            (false, _) => self.instance = st.instance.clone(),
            (true, Some(kept)) => self.instance = kept,
            (true, None) => {}
        }
        if read_instance(&dir).as_deref() != Some(self.instance.as_str()) {
            if let Err(e) = fs::write(instance_path(&dir), format!("{}\n", self.instance)) {
                warn!("keeping the instance id in {}: {e}", dir.display());
            }
        }
        let namespaces = all_namespaces();
        for ps in st.ports {
            if let Err(e) = self.restore_port(&ps, &namespaces) {
                warn!(master = %ps.master, "cannot restore port: {e}");
            }
        }
        self.adopt_unsaved(&namespaces);
        self.state_dirty = true;
        self.settle();
    }

    /// Serves every device whose alias says it is a slave of this instance and that no port
    /// serves yet (the state file did not list it). A port created for it starts in the
    /// default mode (l3 bridge, the kernel's), which the warning says.
    fn adopt_unsaved(&mut self, namespaces: &[NetNs]) {
        let prefix = format!("ipvlan-rs:{}:", self.instance);
        for ns in namespaces {
            let links = match ns.run(|| Rtnl::open().and_then(|mut r| r.links())) {
                Ok(Ok(l)) => l,
                _ => continue,
            };
            for link in links {
                let Some(alias) = link.alias.as_deref().and_then(alias_identity) else {
                    continue;
                };
                let alias = alias.to_owned();
                let Some((master, raw_id)) = parse_alias(&alias, &prefix) else {
                    continue;
                };
                let id = SlaveId::from_raw(raw_id);
                if self
                    .ports
                    .get(&master)
                    .is_some_and(|p| p.slave(id).is_some())
                {
                    continue;
                }
                if let Err(e) = self.adopt(ns, &link, master, raw_id, alias) {
                    warn!(slave = %link.name, "cannot serve a slave missing from the state file: {e}");
                }
            }
        }
    }

    fn adopt(
        &mut self,
        ns: &NetNs,
        link: &ipvlan_linux::rtnl::Link,
        master: u32,
        id: u16,
        alias: String,
    ) -> Result<(), RequestError> {
        let master_link = self
            .rtnl
            .link_by_index(master)
            .map_err(RequestError::system("looking up the master"))?
            .ok_or_else(|| RequestError::NoDevice(format!("ifindex {master}")))?;
        let kind = if link.kind.as_deref() == Some("veth") {
            BackendKind::Veth
        } else if ns.id() == self.ns.id() && !multiqueue_tap(&link.name) {
            // A TAP slave is multiqueue-capable; an ipvtap's TAP (the VMM's) is not.
            BackendKind::Ipvtap
        } else {
            BackendKind::Tap
        };
        if !self.ports.contains_key(&master) {
            // Planned only for a new port: planning the userspace path clears stale pins.
            let plan = self.plan_port(None, Some(kind), master);
            let created = PortRuntime::create(&master_link, &plan)?;
            self.ports.insert(master, created);
            warn!(master = %master_link.name, "port re-created for a slave missing from the state file: it is in the default mode (l3 bridge) until `ipvlan link set` changes it");
        }
        let saved = SlaveState {
            name: link.name.clone(),
            id,
            mtu: link.mtu,
            alias,
            spoofchk: false,
            router: false,
            owned: Vec::new(),
            backend: kind,
            // Not kept on the device: a slave missing from the state file loses it (and an
            // ipvtap its addresses).
            attachment: None,
            addresses: Vec::new(),
        };
        let userspace = !self
            .ports
            .get(&master)
            .is_some_and(|p| p.datapath().is_bpf());
        let device = self
            .backend
            .attach(&FoundDevice {
                kind,
                ns,
                name: &link.name,
                master_ifindex: master,
                id: SlaveId::from_raw(id),
                userspace,
            })
            .map_err(RequestError::system("re-attaching the slave's device"))?;
        let carrier = master_link.up && master_link.carrier.unwrap_or(true);
        // Only a TAP's descriptor, opened inside the namespace, keeps it alive.
        let pinned = kind == BackendKind::Tap && ns.id() != self.ns.id();
        let port = self
            .ports
            .get_mut(&master)
            .ok_or_else(|| RequestError::NoDevice(master_link.name.clone()))?;
        let id = port.restore_slave(&saved, device, pinned, carrier)?;
        let ns = ns
            .try_clone()
            .map_err(RequestError::system("opening the slave's namespace"))?;
        if let Err(e) = self.resync((master, id), &ns) {
            warn!(slave = %saved.name, "resynchronising: {e}");
        }
        // `hostreach`'s device (`ipvlh<master ifindex>`, in our namespace): the option was on.
        // Made the port's host slave again, not left as a user slave (whose stale `proto 73`
        // routes `hostreach off` would never remove).
        if ns.id() == self.ns.id() && saved.name == super::port::hostreach::host_name(master) {
            let (backend, instance) = (&self.backend, &self.instance);
            if let Some(p) = self.ports.get_mut(&master) {
                p.set_hostreach(true, backend, instance, carrier)?;
            }
            warn!(master = %master_link.name, device = %saved.name, "hostreach device missing from the state file found by its alias: hostreach is on again");
            return Ok(());
        }
        warn!(slave = %saved.name, master = %master_link.name, "slave missing from the state file found by its alias: served again (spoofchk off; the container attachment it may have been made for is not known)");
        if kind == BackendKind::Ipvtap {
            // Its guest's addresses were kept in the state file only.
            warn!(slave = %saved.name, "its guest's addresses were in the state file only: give them again with `ipvlan address add ADDR dev {}`", saved.name);
        }
        Ok(())
    }

    fn restore_port(&mut self, ps: &PortState, namespaces: &[NetNs]) -> Result<(), RequestError> {
        let link = self
            .rtnl
            .link_by_index(ps.master_ifindex)
            .ok()
            .flatten()
            .filter(|l| l.name == ps.master)
            .or_else(|| self.rtnl.link_by_name(&ps.master).ok().flatten());
        let Some(link) = link else {
            warn!(master = %ps.master, "master is gone: its slaves are deleted (R-LIFE-1)");
            crate::fastpath::remove_stale(&self.pin_dir(ps.master_ifindex), None);
            for s in &ps.slaves {
                if let Some((ns, name)) = locate(namespaces, &s.alias) {
                    let found = FoundDevice {
                        kind: s.backend,
                        ns: &ns,
                        name: &name,
                        master_ifindex: ps.master_ifindex,
                        id: SlaveId::from_raw(s.id),
                        userspace: true,
                    };
                    let _ = self
                        .backend
                        .attach(&found)
                        .and_then(|d| SlaveDevice::destroy(&d));
                }
            }
            return Ok(());
        };
        if link.index != ps.master_ifindex {
            // The master came back under another ifindex: the old one's pins are stale.
            crate::fastpath::remove_stale(&self.pin_dir(ps.master_ifindex), None);
        }
        // As for a new port: TAP slaves keep the userspace path, veth slaves get the eBPF one
        // where the daemon may use it (re-adopting what an earlier run pinned).
        let kind = ps.slaves.first().map(|s| s.backend);
        let plan = self.plan_port(Some(ps.mode), kind, link.index);
        let mut port = PortRuntime::create(&link, &plan)?;
        port.set_mode_flag(ps.mode, ps.flag);
        let userspace = !port.datapath().is_bpf();
        let carrier = link.up && link.carrier.unwrap_or(true);
        let mut restored = Vec::new();
        for s in &ps.slaves {
            let located =
                locate(namespaces, &s.alias).or_else(|| self.locate_by_host_end(link.index, s));
            let Some((ns, name)) = located else {
                // Nothing of it is restored: no address claim, no device made again.
                log_gone(
                    &s.name,
                    s.attachment.as_ref(),
                    "container gone while the daemon was down: slave dropped",
                    "slave no longer exists (its namespace was deleted?): dropped",
                );
                continue;
            };
            let found = FoundDevice {
                kind: s.backend,
                ns: &ns,
                name: &name,
                master_ifindex: link.index,
                id: SlaveId::from_raw(s.id),
                userspace,
            };
            let device = match self.backend.attach(&found) {
                Ok(d) => d,
                Err(e) => {
                    warn!(slave = %s.name, "cannot re-attach: {e}");
                    continue;
                }
            };
            let pinned = s.backend == BackendKind::Tap && ns.id() != self.ns.id();
            match port.restore_slave(s, device, pinned, carrier) {
                Ok(id) => restored.push((id, ns, s)),
                Err(e) => warn!(slave = %s.name, "cannot restore: {e}"),
            }
        }
        let index = link.index;
        self.ports.insert(index, port);
        for (id, ns, s) in restored {
            if let Err(e) = self.resync((index, id), &ns) {
                warn!(slave = %s.name, "resynchronising: {e}");
            }
            match &s.attachment {
                Some(a) => info!(
                    slave = %s.name, network = %a.network, container = %a.container_id,
                    ifname = %a.ifname, "slave restored"
                ),
                None => info!(slave = %s.name, "slave restored"),
            }
        }
        if ps.hostreach {
            // Its host slave was restored with the others: adopted by its name, or made again.
            let (backend, instance) = (&self.backend, &self.instance);
            if let Some(p) = self.ports.get_mut(&index) {
                if let Err(e) = p.set_hostreach(true, backend, instance, carrier) {
                    warn!(master = %link.name, "restoring hostreach: {e}");
                }
            }
        }
        if let Some(p) = self.ports.get(&index) {
            p.restored();
        }
        Ok(())
    }
}

impl Daemon {
    /// A veth slave whose alias no longer names it (changed while the daemon was down), found
    /// by its host end (`ipvh<master ifindex>-<id>`, in the daemon's namespace), whose peer it
    /// is: (its namespace, its current name). `None` for a TAP slave, or without the host end.
    fn locate_by_host_end(&self, master_ifindex: u32, s: &SlaveState) -> Option<(NetNs, String)> {
        if s.backend != BackendKind::Veth {
            return None;
        }
        let found = FoundDevice {
            kind: s.backend,
            ns: &self.ns,
            name: &s.name,
            master_ifindex,
            id: SlaveId::from_raw(s.id),
            userspace: false,
        };
        let device = self.backend.attach(&found).ok()?;
        let place = (device.netns().ok()?, device.current_name().ok()?);
        warn!(slave = %s.name, now = %place.1, "slave's alias was changed while the daemon was down: found by its host end, alias restored");
        Some(place)
    }
}

/// Whether the TUN device `name` of the daemon's namespace was made with `IFF_MULTI_QUEUE`
/// (`/sys/class/net/NAME/tun_flags`, hex); `true` when that cannot be read.
fn multiqueue_tap(name: &str) -> bool {
    fs::read_to_string(format!("/sys/class/net/{name}/tun_flags"))
        .ok()
        .and_then(|v| u32::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok())
        .is_none_or(|f| f & 0x0100 != 0) // IFF_MULTI_QUEUE, <linux/if_tun.h>
}

/// Finds the device whose alias names the slave `alias` (its identity, in either form of
/// alias, `slave::alias_identity`) in any namespace: (namespace, current name).
fn locate(namespaces: &[NetNs], alias: &str) -> Option<(NetNs, String)> {
    namespaces.iter().find_map(|ns| {
        let links = ns
            .run(|| Rtnl::open().and_then(|mut r| r.links()))
            .ok()?
            .ok()?;
        let l = links
            .into_iter()
            .find(|l| alias_names(l.alias.as_deref(), alias))?;
        Some((ns.try_clone().ok()?, l.name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ipvlan-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_trip_and_fresh() {
        let d = tmpdir("rt");
        assert!(matches!(load(&d).unwrap(), Loaded::Fresh));
        let s = State {
            version: 1,
            instance: "0123456789abcdef".into(),
            ports: vec![PortState {
                master: "m0".into(),
                master_ifindex: 4,
                mode: Mode::L2,
                flag: Flag::Bridge,
                bpf: true,
                hostreach: true,
                slaves: vec![SlaveState {
                    name: "ipvl0".into(),
                    id: 1,
                    mtu: 1500,
                    alias: "ipvlan-rs:4:1".into(),
                    spoofchk: true,
                    router: false,
                    owned: vec!["192.0.2.11".parse().unwrap()],
                    backend: crate::backend::BackendKind::Veth,
                    attachment: Some(Attachment {
                        network: "net1".into(),
                        container_id: "c0ffee".into(),
                        ifname: "eth0".into(),
                    }),
                    addresses: vec!["2001:db8::7".parse().unwrap()],
                }],
            }],
        };
        save(&d, &s).unwrap();
        match load(&d).unwrap() {
            Loaded::State(got) => assert_eq!(got, s),
            _ => panic!("expected state"),
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_state_file_from_before_attachments_loads_without_one() {
        // As a daemon before attachments (and before backends) wrote it.
        let d = tmpdir("old");
        fs::create_dir_all(&d).unwrap();
        let old = r#"{
          "version": 1,
          "instance": "0123456789abcdef",
          "ports": [{
            "master": "m0", "master_ifindex": 4, "mode": "l2", "flag": "bridge",
            "slaves": [{
              "name": "ipvl0", "id": 1, "mtu": 1500,
              "alias": "ipvlan-rs:0123456789abcdef:4:1", "spoofchk": false
            }]
          }]
        }"#;
        fs::write(path(&d), old).unwrap();
        let Loaded::State(st) = load(&d).unwrap() else {
            panic!("an old state file must load");
        };
        let s = &st.ports[0].slaves[0];
        assert_eq!(s.name, "ipvl0");
        assert_eq!(s.attachment, None);
        assert_eq!(s.backend, crate::backend::BackendKind::Tap);
        // Written again, a slave without an attachment names none.
        save(&d, &st).unwrap();
        let body = fs::read_to_string(path(&d)).unwrap();
        assert!(!body.contains("attachment"), "{body}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn an_attachment_is_saved_as_the_protocol_spells_it() {
        let d = tmpdir("att");
        let mut st = State {
            version: 1,
            instance: "0123456789abcdef".into(),
            ports: Vec::new(),
        };
        st.ports.push(PortState {
            master: "m0".into(),
            master_ifindex: 4,
            mode: Mode::L2,
            flag: Flag::Bridge,
            bpf: false,
            hostreach: false,
            slaves: vec![SlaveState {
                name: "ipvl0".into(),
                id: 1,
                mtu: 1500,
                alias: "ipvlan-rs:0123456789abcdef:4:1".into(),
                spoofchk: false,
                router: false,
                owned: Vec::new(),
                backend: crate::backend::BackendKind::Veth,
                attachment: Some(Attachment {
                    network: "net1".into(),
                    container_id: "c0ffee".into(),
                    ifname: "eth0".into(),
                }),
                addresses: Vec::new(),
            }],
        });
        save(&d, &st).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fs::read(path(&d)).unwrap()).unwrap();
        assert_eq!(
            v["ports"][0]["slaves"][0]["attachment"],
            serde_json::json!({"network": "net1", "containerID": "c0ffee", "ifname": "eth0"})
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_second_daemon_cannot_take_the_state_directory() {
        let d = tmpdir("lock");
        let first = lock(&d).expect("first lock");
        let e = lock(&d).err().expect("second lock refused"); // StateLock is not Debug
        assert!(e.to_string().contains("another ipvlan daemon"), "{e}");
        drop(first);
        lock(&d).expect("free again once the first is gone");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_file_is_kept_aside() {
        let d = tmpdir("corrupt");
        fs::create_dir_all(&d).unwrap();
        fs::write(path(&d), b"{\"version\": 1, \"ports\": [").unwrap();
        match load(&d).unwrap() {
            Loaded::Corrupt { kept_as, why } => {
                assert!(kept_as.exists());
                assert!(!path(&d).exists());
                assert!(why.contains("EOF"), "{why}");
            }
            _ => panic!("expected corrupt"),
        }
        let _ = fs::remove_dir_all(&d);
    }
}
