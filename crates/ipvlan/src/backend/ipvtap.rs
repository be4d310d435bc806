//! The ipvtap backend: the slave is a virtual machine's NIC behind a persistent single-queue
//! TAP in the master's namespace ([`ipvlan_linux::vmtap`]), whose descriptor the VMM holds.
//! It is a veth slave whose host end is the TAP itself: the eBPF programs attach to the TAP's
//! ingress (what the guest sends) and deliver with `bpf_redirect(tap, 0)` (the TAP's egress,
//! read by the VMM; a TAP has no peer for `bpf_redirect_peer`, which the programs know from
//! the slave's `SLAVE_MAC_GUARD`); the userspace data plane reads and writes it through a
//! packet socket ([`VethIo`]).
//!
//! Its addresses live in the guest, out of the daemon's sight: the user gives them
//! (`ipvlan address add`), see the daemon's port.

use std::io;
use std::os::fd::RawFd;

use ipvlan_core::MacAddr;
use ipvlan_linux::{NetNs, VethIo, VmTap};

use super::{host_io, open_host_io, BackendKind, FoundDevice, NewDevice, SlaveDevice};
use crate::dataplane::SlaveIo;

/// An ipvtap slave: its TAP, and the packet socket on it when the userspace data path serves
/// it.
#[derive(Debug)]
pub struct IpvtapDevice {
    tap: VmTap,
    io: Option<VethIo>,
}

impl IpvtapDevice {
    /// Creates the TAP of a new slave in the calling thread's namespace (the master's).
    /// Without `user` or `group` the TAP is root's (`TUNSETOWNER` 0): a TAP with neither lets
    /// anyone who can open `/dev/net/tun` (mode 0666 on most systems) attach to it
    /// (`tun_not_capable`), while the VMM does not hold it.
    pub fn create(req: &NewDevice<'_>) -> io::Result<IpvtapDevice> {
        let owner = req.tap_owner.unwrap_or_default();
        let user = match (owner.user, owner.group) {
            (None, None) => Some(0),
            (user, _) => user,
        };
        let tap = VmTap::create(req.name, req.mac, req.mtu, user, owner.group, req.userspace)?;
        IpvtapDevice::serve(tap, req.userspace)
    }

    /// Finds an existing slave's TAP by name in `found.ns` (the master's).
    pub fn attach(found: &FoundDevice<'_>) -> io::Result<IpvtapDevice> {
        let name = found.name.to_owned();
        let tap = found.ns.run(move || VmTap::attach(&name))??;
        IpvtapDevice::serve(tap, found.userspace)
    }

    fn serve(tap: VmTap, userspace: bool) -> io::Result<IpvtapDevice> {
        let io = open_host_io(
            userspace,
            || tap.open_io(),
            || {
                let _ = tap.destroy();
            },
        )?;
        Ok(IpvtapDevice { tap, io })
    }

    fn io(&self) -> io::Result<&VethIo> {
        host_io(&self.io, "ipvtap")
    }
}

impl SlaveDevice for IpvtapDevice {
    fn kind(&self) -> BackendKind {
        BackendKind::Ipvtap
    }
    fn queues(&self) -> usize {
        1
    }
    fn current_name(&self) -> io::Result<String> {
        Ok(self.tap.current_name()?)
    }
    /// The guest's MAC is the VMM's setting (it must be the master's, see the docs); the
    /// TAP's own is never the master's. Nothing to do.
    fn set_mac(&self, _mac: MacAddr) -> io::Result<()> {
        Ok(())
    }
    /// The TAP goes up or down.
    fn set_carrier(&self, on: bool) -> io::Result<()> {
        Ok(self.tap.set_carrier(on)?)
    }
    /// Offloads are the VMM's to negotiate with the guest (`TUNSETOFFLOAD` on its descriptor).
    fn enable_offloads(&self) -> io::Result<()> {
        Ok(())
    }
    fn netns(&self) -> io::Result<NetNs> {
        Ok(self.tap.netns()?)
    }
    fn destroy(&self) -> io::Result<()> {
        Ok(self.tap.destroy()?)
    }
    /// The TAP is the host end: the eBPF programs attach to it.
    fn host_end(&self) -> Option<(String, u32)> {
        Some((self.tap.name().to_owned(), self.tap.ifindex()))
    }
}

/// The userspace data path's I/O, through the packet socket on the TAP.
impl SlaveIo for IpvtapDevice {
    fn queues(&self) -> usize {
        1
    }
    fn recv(&self, _queue: usize, buf: &mut [u8]) -> io::Result<usize> {
        self.io()?.recv(buf)
    }
    fn send(&self, _queue: usize, frame: &[u8]) -> io::Result<usize> {
        self.io()?.send(frame)
    }
    fn poll_fd(&self, _queue: usize) -> RawFd {
        self.io.as_ref().map_or(-1, VethIo::poll_fd)
    }
}
