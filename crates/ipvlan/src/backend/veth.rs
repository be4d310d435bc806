//! The veth backend: each slave is a veth pair. The slave end (the name the user asked for,
//! with the master's MAC) is what the user moves into a namespace; the host end stays in the
//! master's namespace as `ipvh<master ifindex>-<slave id>` (`ipvlan_linux::veth::host_name`).
//!
//! On the eBPF data path the programs on the host end's ingress switch what the slave sends,
//! and frames reach the slave through the host end (`bpf_redirect_peer`); nothing here reads
//! frames. On the userspace data path (no BPF in the kernel, `--datapath user`, or an l3s
//! port) the workers read and write the host end through a packet socket ([`VethIo`]), which
//! works where there is no TUN (microVM guests with veth and packet sockets only).

use std::io;
use std::os::fd::RawFd;

use ipvlan_core::MacAddr;
use ipvlan_linux::rtnl::{LinkChange, Rtnl};
use ipvlan_linux::veth::{self, Veth, VethIo};
use ipvlan_linux::NetNs;

use super::{host_io, open_host_io, BackendKind, FoundDevice, NewDevice, SlaveDevice};
use crate::dataplane::SlaveIo;

/// How every host end's ifalias starts (the daemon refuses such a device as a master).
pub const HOST_END_ALIAS: &str = "ipvlan-rs host end of";

/// A veth slave: the pair, and the packet socket on its host end when the userspace data
/// path serves it.
#[derive(Debug)]
pub struct VethDevice {
    veth: Veth,
    io: Option<VethIo>,
}

fn host_name(master_ifindex: u32, id: ipvlan_core::SlaveId) -> io::Result<String> {
    Ok(veth::host_name(master_ifindex, u32::from(id.get()))?)
}

impl VethDevice {
    /// Creates the pair of a new slave in the calling thread's namespace (the master's).
    pub fn create(req: &NewDevice<'_>) -> io::Result<VethDevice> {
        let host = host_name(req.master_ifindex, req.id)?;
        let veth = Veth::create(req.name, &host, req.mac, req.mtu)?;
        // What it is, for whoever lists the master's namespace (`ip -d link`).
        let alias = format!(
            "{HOST_END_ALIAS} slave {} (id {}) on master ifindex {}",
            req.name,
            req.id.get(),
            req.master_ifindex
        );
        let labelled = Rtnl::open().and_then(|mut r| {
            r.set_link(
                veth.host_ifindex(),
                &LinkChange {
                    alias: Some(alias),
                    ..LinkChange::default()
                },
            )
        });
        if let Err(e) = labelled {
            let _ = veth.destroy();
            return Err(e.into());
        }
        VethDevice::serve(veth, req.userspace)
    }

    /// Finds an existing slave's pair by its host end (in the calling thread's namespace,
    /// the master's), wherever the slave end lives now.
    pub fn attach(found: &FoundDevice<'_>) -> io::Result<VethDevice> {
        let host = host_name(found.master_ifindex, found.id)?;
        let veth = Veth::attach(&host)?;
        VethDevice::serve(veth, found.userspace)
    }

    fn serve(veth: Veth, userspace: bool) -> io::Result<VethDevice> {
        let io = open_host_io(
            userspace,
            || veth.open_io(),
            || {
                let _ = veth.destroy();
            },
        )?;
        Ok(VethDevice { veth, io })
    }

    fn io(&self) -> io::Result<&VethIo> {
        host_io(&self.io, "veth")
    }
}

impl SlaveDevice for VethDevice {
    fn kind(&self) -> BackendKind {
        BackendKind::Veth
    }
    fn queues(&self) -> usize {
        1
    }
    fn current_name(&self) -> io::Result<String> {
        Ok(self.veth.current_name()?)
    }
    fn set_mac(&self, mac: MacAddr) -> io::Result<()> {
        Ok(self.veth.set_mac(mac)?)
    }
    /// A veth end has carrier while its peer is up: the host end goes up and down.
    fn set_carrier(&self, on: bool) -> io::Result<()> {
        Ok(self.veth.set_carrier(on)?)
    }
    /// A veth pair passes GSO super-frames and partial checksums already.
    fn enable_offloads(&self) -> io::Result<()> {
        Ok(())
    }
    fn netns(&self) -> io::Result<NetNs> {
        self.veth.netns()
    }
    fn destroy(&self) -> io::Result<()> {
        Ok(self.veth.destroy()?)
    }
    fn host_end(&self) -> Option<(String, u32)> {
        Some((self.veth.host_name().to_owned(), self.veth.host_ifindex()))
    }
}

/// The userspace data path's I/O, through the packet socket on the host end: what the slave
/// sent is read there, and what is written there reaches the slave.
impl SlaveIo for VethDevice {
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
