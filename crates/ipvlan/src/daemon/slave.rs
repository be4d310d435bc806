//! One slave's device as the control plane sees it: where it lives (namespace, ifindex), its
//! carrier, its address conflicts, and the operations on the device itself (settings applied
//! inside whatever namespace it is in now).
//!
//! The [`SlaveRuntime`] owns the device (whatever the backend, `crate::backend`). The data
//! plane holds a clone of the handle for I/O only; deleting the device
//! ([`SlaveRuntime::destroy`]) needs no unique ownership (the kernel deletes a non-persistent
//! TAP when its last descriptor closes) and waits until the workers have let go, so the device
//! is gone when `link del` answers.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipvlan_core::slave_id::is_shared_identity;
use ipvlan_core::{Flag, IfName, MacAddr, Mode, SlaveId};
use ipvlan_linux::rtnl::{AddrGenMode, LinkAddr, LinkChange, Rtnl};
use ipvlan_linux::{NetNs, Tap};
use tracing::{info, warn};

use crate::backend::SlaveDevice;
use crate::proto::Attachment;

/// A slave's identity, `ipvlan-rs:<instance>:<master ifindex>:<slave id>`: unique per daemon
/// instance, master and slave id, so that a restarted daemon finds its slaves (and only its
/// own) in any namespace. Kept in the state file (`SlaveState::alias`) and, inside
/// [`device_alias`], in the device's `ifalias`, which goes wherever the device goes.
pub fn alias_for(instance: &str, master_index: u32, id: SlaveId) -> String {
    format!("ipvlan-rs:{instance}:{master_index}:{}", id.get())
}

/// The kernel's limit on an `ifalias`, terminating NUL included (`IFALIASZ`,
/// `include/uapi/linux/if.h`): `dev_set_alias` refuses 256 bytes or more.
const IFALIASZ: usize = 256;

/// The `ifalias` a slave's device carries: what it is, for whoever looks with `ip -d link`,
/// then its identity ([`alias_for`]) in parentheses, e.g. `ipvlan-rs l2 bridge on m0 id 1
/// (ipvlan-rs:0123456789abcdef:4:1)`. Rewritten when the port's mode or flag changes or the
/// master is renamed. Just the identity if the whole would not fit [`IFALIASZ`].
pub fn device_alias(identity: &str, mode: Mode, flag: Flag, master: &str, id: SlaveId) -> String {
    let alias = format!(
        "ipvlan-rs {mode} {flag} on {master} id {} ({identity})",
        id.get()
    );
    if alias.len() < IFALIASZ {
        alias
    } else {
        identity.to_owned()
    }
}

/// The identity in a device's `ifalias`: the part in the last parentheses of a
/// [`device_alias`], or the whole alias as versions before labelled aliases set it (so their
/// slaves are found after an upgrade). `None`: not an ipvlan-rs slave's alias.
pub fn alias_identity(alias: &str) -> Option<&str> {
    const PREFIX: &str = "ipvlan-rs:";
    if alias.starts_with(PREFIX) {
        return Some(alias);
    }
    let (_, inner) = alias.strip_suffix(')')?.rsplit_once('(')?;
    inner.starts_with(PREFIX).then_some(inner)
}

/// Whether the device alias `alias` (either form) names the slave `identity`.
pub fn alias_names(alias: Option<&str>, identity: &str) -> bool {
    alias.and_then(alias_identity) == Some(identity)
}

/// Whether IPv6 is off on the device `name` of the calling thread's namespace: its
/// `disable_ipv6` is set, or it has no IPv6 state at all (no `conf` entry: an MTU below 1280).
fn ipv6_off(name: &str) -> io::Result<bool> {
    match std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6")) {
        Ok(v) => Ok(v.trim() != "0"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// Whether the kernel made `a` from the shared MAC (R-DEVID-2): the master's own identity
/// under any prefix — the EUI-64 link-local (whoever added it), or a global one the kernel
/// made itself ([`LinkAddr::kernel_made`]: SLAAC). A global one the user configured stays
/// (the kernel lets a slave hold any address, T-25).
pub fn kernel_made_shared_identity(a: &LinkAddr, mac: MacAddr) -> bool {
    match a.addr {
        IpAddr::V6(v6) => {
            is_shared_identity(v6, mac) && (v6.is_unicast_link_local() || a.kernel_made())
        }
        IpAddr::V4(_) => false,
    }
}

/// Logs that slave `name`'s device is gone without a `link del` (R-LIFE-5: the device, or
/// its namespace, was deleted). For a slave made for a container (`attachment`) that is how a
/// container ends — its runtime deletes the namespace, or the plugin deleted the device while
/// the daemon was down — so it is `INFO` `container_msg`, with the network, container id and
/// interface name; for any other slave it is `WARN` `warning` (the user may not have meant it).
pub fn log_gone(name: &str, attachment: Option<&Attachment>, container_msg: &str, warning: &str) {
    match attachment {
        Some(a) => info!(
            slave = %name,
            network = %a.network,
            container = %a.container_id,
            ifname = %a.ifname,
            "{container_msg}"
        ),
        None => warn!(slave = %name, "{warning}"),
    }
}

/// An address a slave configured while another slave of the port owned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrConflict {
    /// The owner's name.
    pub owner: String,
    /// When it was claimed, in the port's order of claims: the earliest claimant gets the
    /// address when the owner lets go of it.
    pub since: u64,
}

/// A slave's device and what the control plane knows of it.
#[derive(Debug)]
pub struct SlaveRuntime<D = Tap> {
    /// The name the slave was created with (the user may rename the device later).
    pub name: IfName,
    /// Its identity ([`alias_for`]); the device's alias is [`device_alias`] of it.
    pub alias: String,
    device: Arc<D>,
    /// Id of the slave's namespace in the daemon's (`None`: the daemon's own).
    pub nsid: Option<i32>,
    /// Index of the device in its namespace (0 until known).
    pub ifindex: u32,
    pub carrier: bool,
    /// The TAP was re-attached from inside the slave's namespace (after a restart), so our
    /// descriptor keeps that namespace alive; the sweep notices when nobody else does.
    pub pinned: bool,
    /// Addresses configured on the slave that another slave owns: not served to it until the
    /// owner lets go of them (R-ADDR-3).
    pub conflicts: BTreeMap<IpAddr, AddrConflict>,
    /// Address claims refused so far.
    pub conflict_count: u64,
    /// The (address, prefix length) pairs configured on the device: the same IP may be there
    /// twice, and the slave holds it until the last one goes.
    pub configured: BTreeSet<(IpAddr, u8)>,
    /// IPv6 was turned off on the up device (its link-local went with it): the sweep gives it
    /// its identity back once IPv6 is on again.
    pub ipv6_pending: bool,
    /// The container attachment the slave was made for (`LinkAdd.attachment`, from the CNI or
    /// netavark plugin); `None` for a slave the user made. Persisted and shown by `link show`.
    pub attachment: Option<Attachment>,
    /// An ipvtap slave's addresses, as `ipvlan address add` gave them (its guest's, which the
    /// daemon cannot see). Persisted; empty for other slaves, whose addresses are learnt.
    pub manual: BTreeSet<IpAddr>,
    /// The `foreign_source_mac` drops when they were last looked at (an ipvtap guest with
    /// another MAC than the master's is warned about once, when they start).
    pub foreign_mac_drops: u64,
}

impl<D: SlaveDevice> SlaveRuntime<D> {
    pub fn new(name: IfName, alias: String, device: Arc<D>, carrier: bool) -> SlaveRuntime<D> {
        SlaveRuntime {
            name,
            alias,
            device,
            nsid: None,
            ifindex: 0,
            carrier,
            pinned: false,
            conflicts: BTreeMap::new(),
            conflict_count: 0,
            configured: BTreeSet::new(),
            ipv6_pending: false,
            attachment: None,
            manual: BTreeSet::new(),
            foreign_mac_drops: 0,
        }
    }

    /// The device handle, for the data plane's I/O.
    pub fn device(&self) -> Arc<D> {
        self.device.clone()
    }

    /// The namespace the device lives in now; an error once it is gone.
    pub fn netns(&self) -> io::Result<NetNs> {
        self.device.netns()
    }

    /// The device's current name (the user may have renamed it).
    pub fn current_name(&self) -> io::Result<String> {
        self.device.current_name()
    }

    /// What the device is made of.
    pub fn kind(&self) -> crate::backend::BackendKind {
        self.device.kind()
    }

    /// A veth slave's host end's name (`None` for TAP slaves, and for ipvtap slaves, whose
    /// TAP is its own host end).
    pub fn host_end(&self) -> Option<String> {
        if self.is_ipvtap() {
            return None;
        }
        self.device.host_end().map(|(name, _)| name)
    }

    /// Whether the slave is a VM's NIC behind an ipvtap: its addresses are given by `ipvlan
    /// address add`, never learnt from the device.
    pub fn is_ipvtap(&self) -> bool {
        self.device.kind() == crate::backend::BackendKind::Ipvtap
    }

    /// Queues the data plane reads.
    pub fn queues(&self) -> usize {
        self.device.queues()
    }

    /// Runs `f` with a request socket inside the namespace the device lives in now.
    pub fn in_dev_ns<T: Send, E: Into<io::Error>>(
        &self,
        f: impl FnOnce(&mut Rtnl) -> Result<T, E> + Send,
    ) -> io::Result<T> {
        let ns = self.device.netns()?;
        ns.run(|| {
            let mut r = Rtnl::open()?;
            f(&mut r).map_err(Into::into)
        })?
    }

    /// Applies `change` to the device in its namespace.
    pub fn set_link(&self, change: LinkChange) -> io::Result<()> {
        let index = self.ifindex;
        self.in_dev_ns(move |r| r.set_link(index, &change))
    }

    /// Sets the device's MAC (always the master's, R-MAC-1).
    pub fn set_mac(&self, mac: MacAddr) -> io::Result<()> {
        self.device.set_mac(mac)
    }

    /// Sets the carrier (it follows the master's, R-LINK-1), remembering it.
    pub fn set_carrier(&mut self, on: bool) -> io::Result<()> {
        self.device.set_carrier(on)?;
        self.carrier = on;
        Ok(())
    }

    /// Gives an up slave its own IPv6 identity (R-DEVID-2), as the kernel derives it from
    /// `dev_id`, which a TAP or veth cannot have, unless the user chose RFC 7217 identifiers
    /// (`addrgenmode stable_secret|random`): address generation off (`addrgenmode none`),
    /// the per-slave interface identifier as the IPv6 token (SLAAC builds its addresses from it,
    /// RFC 4862; temporary addresses, RFC 8981, stay random), the per-slave link-local `ll`; and
    /// removes what the kernel made from the shared MAC meanwhile (the master's identity: its
    /// EUI-64 link-local, and SLAAC addresses made before the token was there).
    ///
    /// Called when the slave comes up or arrives in a namespace, and whenever the kernel resets
    /// the slave's IPv6 settings or regenerates its addresses (IPv6 re-enabled, MTU back above
    /// 1280, `addr_gen_mode` changed): each of these starts a fresh `inet6_dev` with the
    /// namespace's defaults. Errors are logged; the kernel refuses a token on NOARP (l3)
    /// slaves, which take no router advertisements anyway, and where RAs are not accepted.
    pub fn ensure_ipv6_identity(&self, ll: Ipv6Addr, mac: MacAddr) {
        if self.is_ipvtap() {
            // The slave is the guest, whose addresses are its own; the TAP has none.
            return;
        }
        let index = self.ifindex;
        let iid = u128::from(ll) & u128::from(u64::MAX);
        let token = Ipv6Addr::from(iid);
        let r = self.in_dev_ns(move |r| {
            let link = r.link_by_index(index)?;
            let mode = link.as_ref().and_then(|l| l.addrgen);
            let own = match mode {
                // The user chose RFC 7217 identifiers: the kernel makes them from a secret,
                // never from the MAC, on a slave as on any device.
                Some(AddrGenMode::StablePrivacy | AddrGenMode::Random) => false,
                Some(AddrGenMode::None) => true,
                _ => {
                    let _ = r.set_link(
                        index,
                        &LinkChange {
                            addrgen_none: true,
                            ..LinkChange::default()
                        },
                    );
                    true
                }
            };
            // Setting a token expires the addresses made from the old one and solicits a
            // router advertisement (`inet6_set_iftoken`): only when it differs.
            // RFC 7217 modes: no token (the kernel would build SLAAC addresses from it).
            let want = if own { token } else { Ipv6Addr::UNSPECIFIED };
            let have = link.as_ref().and_then(|l| l.ipv6_token);
            if have.is_some_and(|t| t != want) || (own && have.is_none()) {
                let _ = r.set_link(
                    index,
                    &LinkChange {
                        token: Some(want),
                        ..LinkChange::default()
                    },
                );
            }
            let have = r.addresses(Some(index))?;
            for a in have.iter().filter(|a| kernel_made_shared_identity(a, mac)) {
                let _ = r.del_address(index, a.addr, a.prefix_len);
            }
            if own && !have.iter().any(|a| a.addr == IpAddr::V6(ll)) {
                match r.add_address(index, IpAddr::V6(ll), 64, false) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            warn!(slave = %self.name, "giving the slave its IPv6 identity: {e}");
        }
    }

    /// Whether the slave's link-local went because its IPv6 was turned off — it is off now
    /// ([`SlaveRuntime::ipv6_disabled`]), or the device has no IPv6 address left at all (it was
    /// off and on again before this was asked: `disable_ipv6` removes every address) — rather
    /// than by a user's `ip addr del` (which the kernel does not undo, nor do we).
    pub fn ipv6_restarting(&self) -> bool {
        let Ok(name) = self.current_name() else {
            return false;
        };
        let index = self.ifindex;
        self.in_dev_ns(move |r| -> io::Result<bool> {
            if ipv6_off(&name)? {
                return Ok(true);
            }
            Ok(!r.addresses(Some(index))?.iter().any(|a| a.addr.is_ipv6()))
        })
        .unwrap_or(false)
    }

    /// Whether IPv6 is off on the device (`disable_ipv6`, or no IPv6 state at all: an MTU
    /// below 1280). Then the kernel has removed its addresses and makes none until it is on
    /// again, which no rtnetlink event reports.
    pub fn ipv6_disabled(&self) -> io::Result<bool> {
        let name = self.current_name()?;
        self.in_dev_ns(move |_| ipv6_off(&name))
    }

    /// Deletes the device. Call after the data plane dropped its handle: waits (at most a
    /// second) until workers finishing a burst let go of theirs, so the device is gone when
    /// this returns.
    pub fn destroy(self) -> io::Result<()> {
        self.device.destroy()?;
        let mut device = self.device;
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match Arc::try_unwrap(device) {
                Ok(d) => {
                    drop(d); // the last handle: the device goes now
                    return Ok(());
                }
                Err(shared) if Instant::now() < deadline => {
                    device = shared;
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Still held: the device goes when the holder drops it.
                Err(_) => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: &str = "ipvlan-rs:0123456789abcdef:4:1";

    #[test]
    fn a_device_alias_says_what_the_slave_is_and_keeps_its_identity() {
        let id = SlaveId::from_raw(1);
        let a = device_alias(IDENTITY, Mode::L2, Flag::Bridge, "m0", id);
        assert_eq!(
            a,
            "ipvlan-rs l2 bridge on m0 id 1 (ipvlan-rs:0123456789abcdef:4:1)"
        );
        assert_eq!(alias_identity(&a), Some(IDENTITY));
        let a = device_alias(IDENTITY, Mode::L3s, Flag::Private, "master-name-15b", id);
        assert_eq!(alias_identity(&a), Some(IDENTITY));
        assert!(a.starts_with("ipvlan-rs l3s private on master-name-15b id 1 ("));
    }

    #[test]
    fn the_identity_alone_is_the_alias_of_older_versions() {
        assert_eq!(alias_identity(IDENTITY), Some(IDENTITY));
        assert!(alias_names(Some(IDENTITY), IDENTITY));
        let new = device_alias(IDENTITY, Mode::L3, Flag::Vepa, "m0", SlaveId::from_raw(1));
        assert!(alias_names(Some(&new), IDENTITY));
        assert!(!alias_names(Some(&new), "ipvlan-rs:0123456789abcdef:4:2"));
        assert!(!alias_names(None, IDENTITY));
    }

    #[test]
    fn other_aliases_name_no_slave() {
        for a in [
            "",
            "hello alias",
            "ipvlan-rs host end of slave s1 (id 1) on master ifindex 4",
            "something (else)",
            "ipvlan-rs l2 bridge on m0 id 1 (ipvlan-rs:x:4:1",
        ] {
            assert_eq!(alias_identity(a), None, "{a:?}");
        }
    }

    #[test]
    fn an_alias_too_long_for_the_kernel_is_the_identity_alone() {
        let long = format!("ipvlan-rs:{}:4:1", "f".repeat(240));
        let a = device_alias(&long, Mode::L2, Flag::Bridge, "m0", SlaveId::from_raw(1));
        assert_eq!(a, long);
        // The longest real one fits: 16-hex instance, 10-digit ifindex, 15-byte master.
        let real = alias_for("0123456789abcdef", u32::MAX, SlaveId::from_raw(u16::MAX));
        let a = device_alias(
            &real,
            Mode::L3s,
            Flag::Private,
            "abcdefghijklmno",
            SlaveId::from_raw(u16::MAX),
        );
        assert!(a.len() < IFALIASZ && a != real, "{a}");
    }
}
