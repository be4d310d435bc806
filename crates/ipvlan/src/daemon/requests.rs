//! The CLI's verbs: `link add`, `link del`, `link set`, `link show`. Each takes its typed
//! request, checks what the kernel would check (R-CRT-*), and hands the work to the port it
//! concerns.

use std::collections::btree_map::Entry;

use ipvlan_core::{IfName, LinkTypeArgs};
use ipvlan_linux::rtnl::{Link, LINK_TYPE_ETHER};

use super::error::RequestError;
use super::port::{PortPlan, PortRuntime, SlaveSpec};
use super::DatapathChoice;
use super::{Daemon, SlaveKey};
use crate::backend::{BackendKind, HOST_END_ALIAS};
use crate::proto::{
    AddressChange, LinkAdd, LinkDel, LinkSet, LinkShow, MonitorDrops, Request, Response,
};

fn ok(notes: Vec<String>) -> Response {
    Response::Ok {
        notes,
        links: Vec::new(),
        ports: Vec::new(),
    }
}

impl Daemon {
    /// Carries out one request; an error has been rolled back.
    pub(super) fn request(&mut self, req: Request) -> Result<Response, RequestError> {
        match req {
            Request::LinkAdd(r) => self.link_add(r),
            Request::LinkDel(r) => self.link_del(&r),
            Request::LinkSet(r) => self.link_set(r),
            Request::LinkShow(r) => self.link_show(&r),
            Request::MonitorDrops(r) => self.monitor_drops(&r),
            Request::AddressAdd(r) => self.address_change(&r, true),
            Request::AddressDel(r) => self.address_change(&r, false),
        }
    }

    /// `address add|del ADDR dev NAME`: an ipvtap slave's guest's address.
    fn address_change(&mut self, req: &AddressChange, add: bool) -> Result<Response, RequestError> {
        let (master, id) = self.find_by_name(&req.dev)?;
        let port = self
            .ports
            .get_mut(&master)
            .ok_or_else(|| RequestError::NoDevice(req.dev.clone()))?;
        if add {
            port.address_add(id, req.address)?;
        } else {
            port.address_del(id, req.address)?;
        }
        self.state_dirty = true;
        Ok(ok(Vec::new()))
    }

    /// `monitor drops`: accepted when its `dev` is a slave or a master of a port; the
    /// connection's thread then streams (`crate::monitor::stream`). The note names the
    /// ports' data paths.
    fn monitor_drops(&self, req: &MonitorDrops) -> Result<Response, RequestError> {
        if let Some(d) = &req.dev {
            let known =
                self.find_by_name(d).is_ok() || self.ports.values().any(|p| p.master() == d);
            if !known {
                return Err(RequestError::NoDevice(d.clone()));
            }
        }
        let paths: Vec<String> = self
            .ports
            .values()
            .map(|p| format!("{} {}", p.master(), p.datapath()))
            .collect();
        Ok(ok(if paths.is_empty() {
            vec!["no port yet: drops show once slaves exist".into()]
        } else {
            vec![format!("data paths: {}", paths.join(", "))]
        }))
    }

    /// The slave created as `name`.
    fn find_by_name(&self, name: &str) -> Result<SlaveKey, RequestError> {
        self.ports
            .iter()
            .find_map(|(m, p)| p.user_slave_named(name).map(|id| (*m, id)))
            .ok_or_else(|| RequestError::NoDevice(name.to_owned()))
    }

    fn link_add(&mut self, req: LinkAdd) -> Result<Response, RequestError> {
        let name = IfName::new(&req.name)?;
        if super::port::hostreach::is_host_name(name.as_str()) {
            return Err(RequestError::Unsupported(format!(
                "{name}: names ipvlh<number> are the hostreach devices' (see hostreach on|off)"
            )));
        }
        if self.find_by_name(name.as_str()).is_ok() {
            return Err(RequestError::SlaveExists(name));
        }
        let lookup = RequestError::system("looking up the master");
        let master = self
            .rtnl
            .link_by_name(&req.master)
            .map_err(lookup)?
            .ok_or_else(|| RequestError::NoDevice(req.master.clone()))?;
        if self
            .rtnl
            .link_by_name(name.as_str())
            .map_err(RequestError::system("looking up the name"))?
            .is_some()
        {
            return Err(RequestError::NameTaken(name));
        }
        // R-CRT-2: a slave given as the link means its master.
        let master = match self.find_slave_at(None, master.index) {
            Some((index, _)) => self
                .rtnl
                .link_by_index(index)
                .map_err(RequestError::system("looking up the master"))?
                .ok_or_else(|| RequestError::NoDevice(req.master.clone()))?,
            None => master,
        };
        if req.tap_owner.is_some() && req.backend != Some(BackendKind::Ipvtap) {
            return Err(RequestError::Unsupported(
                "\"user\" and \"group\" are settings of type ipvtap (who may open its TAP)".into(),
            ));
        }
        let carrier = master.up && master.carrier.unwrap_or(true);
        let spec = SlaveSpec {
            name,
            args: LinkTypeArgs {
                mode: req.mode,
                flag: req.flag,
            },
            mtu: req.mtu,
            spoofchk: req.spoofchk.unwrap_or(false),
            backend: req.backend,
            attachment: req.attachment,
            tap_owner: req.tap_owner,
        };
        let mut fell_back = false;
        let port = match self.ports.entry(master.index) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(_) => {
                check_master(&master)?;
                self.check_not_ours(&master)?;
                // Planned only for a new port: planning the userspace path clears stale pins.
                let plan = self.plan_port(req.mode, req.backend, master.index);
                let created = PortRuntime::create(&master, &plan)?;
                fell_back = matches!(plan, PortPlan::Bpf { .. }) && !created.datapath().is_bpf();
                self.ports.entry(master.index).or_insert(created)
            }
        };
        // A port created for this slave and left empty by a failure goes at the next settle.
        let mut notes = port.add_slave(spec, &self.backend, &self.instance, carrier)?;
        if let Some(on) = req.hostreach {
            port.set_hostreach(on, &self.backend, &self.instance, carrier)?;
        }
        if fell_back {
            notes.push(format!(
                "the eBPF data path cannot serve master {} (the daemon's log says why): its \
                 port runs the userspace workers",
                master.name
            ));
        }
        self.state_dirty = true;
        Ok(ok(notes))
    }

    fn link_del(&mut self, req: &LinkDel) -> Result<Response, RequestError> {
        let (master, id) = self.find_by_name(&req.name)?;
        if let Some(p) = self.ports.get_mut(&master) {
            p.remove_slave(id, true);
        }
        self.state_dirty = true;
        Ok(ok(Vec::new()))
    }

    fn link_set(&mut self, req: LinkSet) -> Result<Response, RequestError> {
        let by_master = self
            .ports
            .iter()
            .find(|(_, p)| p.master() == req.name)
            .map(|(m, _)| *m);
        if let (Some(master), None) = (by_master, self.find_by_name(&req.name).ok()) {
            // `link set dev MASTER hostreach on|off`: the master's port, nothing else.
            let Some(on) = req.hostreach else {
                return Err(RequestError::Unsupported(format!(
                    "{}: a master takes hostreach on|off only; mode, flag and spoofchk are \
                     set on a slave",
                    req.name
                )));
            };
            if req.mode.is_some()
                || req.flag.is_some()
                || req.spoofchk.is_some()
                || req.router.is_some()
            {
                return Err(RequestError::Unsupported(format!(
                    "{}: a master takes hostreach on|off only",
                    req.name
                )));
            }
            let carrier = self.master_carrier(master);
            if let Some(port) = self.ports.get_mut(&master) {
                port.set_hostreach(on, &self.backend, &self.instance, carrier)?;
            }
            self.state_dirty = true;
            return Ok(ok(Vec::new()));
        }
        let (master, id) = self.find_by_name(&req.name)?;
        let port = self
            .ports
            .get_mut(&master)
            .ok_or_else(|| RequestError::NoDevice(req.name.clone()))?;
        let args = LinkTypeArgs {
            mode: req.mode,
            flag: req.flag,
        };
        let notes = port.set_link(id, args, req.spoofchk, req.router)?;
        if let Some(on) = req.hostreach {
            let carrier = self.master_carrier(master);
            if let Some(port) = self.ports.get_mut(&master) {
                port.set_hostreach(on, &self.backend, &self.instance, carrier)?;
            }
        }
        self.state_dirty = true;
        Ok(ok(notes))
    }

    /// Whether the master with `index` is up with a carrier (what a new slave's carrier is).
    pub(super) fn master_carrier(&mut self, index: u32) -> bool {
        match self.rtnl.link_by_index(index) {
            Ok(Some(l)) => l.up && l.carrier.unwrap_or(true),
            _ => true,
        }
    }

    fn link_show(&self, req: &LinkShow) -> Result<Response, RequestError> {
        let name = req.name.as_deref();
        let links: Vec<_> = self.ports.values().flat_map(|p| p.views(name)).collect();
        if let (Some(n), true) = (name, links.is_empty()) {
            return Err(RequestError::NoDevice(n.to_owned()));
        }
        let ports = match name {
            Some(_) => Vec::new(),
            None => self.ports.values().map(|p| p.port_view()).collect(),
        };
        Ok(Response::Ok {
            notes: Vec::new(),
            links,
            ports,
        })
    }
}

impl Daemon {
    /// Refuses a device ipvlan-rs made as a master: a veth slave's host end (this daemon's or
    /// another instance's, known by its ifalias) or an l3s sink. A port on one would switch the
    /// slave's own frames a second time, and deleting it would detach the slave's program.
    fn check_not_ours(&self, link: &Link) -> Result<(), RequestError> {
        if let Some(alias) = link
            .alias
            .as_deref()
            .filter(|a| a.starts_with(HOST_END_ALIAS))
        {
            return Err(RequestError::Unsupported(format!(
                "{} is an ipvlan-rs slave's host end ({alias}): it cannot be a master; give \
                 the master the slave is on",
                link.name
            )));
        }
        if self
            .ports
            .values()
            .any(|p| p.sink_name() == Some(link.name.as_str()))
        {
            return Err(RequestError::Unsupported(format!(
                "{} is an ipvlan-rs l3s sink: it cannot be a master",
                link.name
            )));
        }
        Ok(())
    }

    /// Where this daemon pins the eBPF programs of master `master_ifindex`'s port.
    pub(super) fn pin_dir(&self, master_ifindex: u32) -> std::path::PathBuf {
        crate::datapath::pin_dir(&self.cfg.bpffs, &self.instance, master_ifindex)
    }

    /// The data path a new port for master `master_ifindex` gets: eBPF unless the daemon runs
    /// `--datapath user`, the kernel cannot, the port starts in l3s (whose master-namespace
    /// INPUT hooks only the userspace path gives) or its first slave asks for a TAP.
    pub(super) fn plan_port(
        &self,
        mode: Option<ipvlan_core::Mode>,
        backend: Option<BackendKind>,
        master_ifindex: u32,
    ) -> PortPlan {
        let pin_dir = self.pin_dir(master_ifindex);
        let bpf = self.cfg.datapath != DatapathChoice::User
            && mode != Some(ipvlan_core::Mode::L3s)
            && backend != Some(BackendKind::Tap)
            // Programs pinned by an earlier run are re-adopted without probing again.
            && (pin_dir.exists() || self.bpf_available().is_ok());
        if bpf {
            PortPlan::Bpf {
                pin_dir,
                clsact: self.cfg.datapath == DatapathChoice::BpfTc,
                fallback: self.cfg.datapath == DatapathChoice::Auto,
            }
        } else {
            // An earlier run's programs for this master must not switch beside the workers.
            crate::fastpath::remove_stale(&pin_dir, Some(master_ifindex));
            PortPlan::User
        }
    }
}

/// What makes a device unusable as a master (R-CRT-3, R-CRT-4).
fn check_master(link: &Link) -> Result<(), RequestError> {
    if link.loopback || link.link_type != LINK_TYPE_ETHER {
        return Err(RequestError::NotEthernet(link.name.clone()));
    }
    if let Some(controller) = link.controller {
        return Err(RequestError::MasterBusy {
            master: link.name.clone(),
            controller,
        });
    }
    Ok(())
}
