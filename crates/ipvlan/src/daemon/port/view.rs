//! A port as others see it: `link show` ([`LinkView`]) and the persisted form ([`PortState`]).

use ipvlan_core::{Port, Slave, SlaveCounters};

use super::PortRuntime;
use crate::backend::{SlaveBackend, SlaveDevice};
use crate::daemon::persist::{PortState, SlaveState};
use crate::daemon::slave::SlaveRuntime;
use crate::proto::{Conflict, Drop, LinkView, PortView, Stats};

impl<B: SlaveBackend> PortRuntime<B> {
    /// Every slave (or the one created as `name`), as `link show` presents it.
    pub fn views(&self, name: Option<&str>) -> Vec<LinkView> {
        let port = self.dp.port();
        let host_device = port
            .host_slave()
            .and_then(|h| self.slaves.get(&h))
            .map(|rt| rt.name.to_string());
        port.slaves()
            .filter(|s| !s.is_host())
            .filter_map(|s| Some((s, self.slaves.get(&s.id())?)))
            .filter(|(_, rt)| name.is_none_or(|n| n == rt.name.as_str()))
            .map(|(s, rt)| {
                let mut v = link_view(&self.master, rt.kind().name(), &port, s, rt);
                v.datapath = self.dp.kind().to_string();
                v.hostreach = self.hostreach;
                v.host_device = host_device.clone();
                v.stats = stats(&self.dp.slave_counters(&port, s.id()), rt.conflict_count);
                v
            })
            .collect()
    }

    /// The port's own counters, for `link show -s`.
    pub fn port_view(&self) -> PortView {
        let port = self.dp.port();
        let counters = self.dp.port_counters(&port);
        PortView {
            master: self.master.clone(),
            dhcp_xid_taken: counters.dhcp_xid_taken,
            drops: counters
                .dropped
                .nonzero()
                .map(|(r, count)| Drop {
                    direction: "port".into(),
                    reason: r.name().into(),
                    count,
                })
                .collect(),
        }
    }

    /// The port as the state file keeps it.
    pub fn saved(&self) -> PortState {
        let port = self.dp.port();
        PortState {
            master: self.master.clone(),
            master_ifindex: self.index,
            mode: port.mode(),
            flag: port.flag(),
            bpf: self.dp.kind().is_bpf(),
            hostreach: self.hostreach,
            slaves: port
                .slaves()
                .filter_map(|s| {
                    self.slaves.get(&s.id()).map(|rt| SlaveState {
                        name: rt.name.to_string(),
                        id: s.id().get(),
                        mtu: s.mtu(),
                        alias: rt.alias.clone(),
                        spoofchk: s.source_guard(),
                        router: s.router(),
                        owned: port.addresses(s.id()).to_vec(),
                        backend: rt.kind(),
                        attachment: rt.attachment.clone(),
                        addresses: rt.manual.iter().copied().collect(),
                    })
                })
                .collect(),
        }
    }
}

fn link_view<D: SlaveDevice>(
    master: &str,
    backend: &str,
    port: &Port,
    s: &Slave,
    rt: &SlaveRuntime<D>,
) -> LinkView {
    let netns = rt.nsid.map(|id| {
        rt.netns()
            .ok()
            .and_then(|ns| ns.name())
            .unwrap_or_else(|| format!("nsid {id}"))
    });
    let mut addresses: Vec<String> = port
        .addresses(s.id())
        .iter()
        .map(ToString::to_string)
        .collect();
    addresses.sort();
    LinkView {
        name: rt.name.to_string(),
        current_name: rt.current_name().unwrap_or_else(|_| rt.name.to_string()),
        master: master.to_owned(),
        mode: port.mode(),
        flag: port.flag(),
        id: s.id().get(),
        mtu: s.mtu(),
        mac: port.master().mac.to_string(),
        netns,
        ifindex: rt.ifindex,
        up: s.is_up(),
        noarp: port.mode().is_noarp() && s.is_up(),
        carrier: rt.carrier,
        spoofchk: s.source_guard(),
        hostreach: false,
        host_device: None,
        router: s.router(),
        backend: backend.to_owned(),
        queues: u32::try_from(rt.queues()).unwrap_or(u32::MAX),
        datapath: String::new(),
        host_end: rt.host_end(),
        addresses,
        attachment: rt.attachment.clone(),
        conflicts: rt
            .conflicts
            .iter()
            .map(|(a, c)| Conflict {
                address: a.to_string(),
                owner: c.owner.clone(),
            })
            .collect(),
        stats: stats(&s.counters, rt.conflict_count),
    }
}

/// The wire form of a slave's counters, drops by reason included.
fn stats(c: &SlaveCounters, address_conflicts: u64) -> Stats {
    let rx = c.rx_dropped.nonzero().map(|(r, n)| ("rx", r, n));
    let tx = c.tx_dropped.nonzero().map(|(r, n)| ("tx", r, n));
    Stats {
        rx_packets: c.rx_packets,
        rx_bytes: c.rx_bytes,
        rx_multicast: c.rx_multicast,
        tx_packets: c.tx_packets,
        tx_bytes: c.tx_bytes,
        tx_errors: c.tx_errors,
        rx_dropped: c.rx_dropped.total(),
        tx_dropped: c.tx_dropped.total(),
        drops: rx
            .chain(tx)
            .map(|(direction, r, count)| Drop {
                direction: direction.into(),
                reason: r.name().into(),
                count,
            })
            .collect(),
        address_conflicts,
        dhcp_steered: c.rx_dhcp_steered,
    }
}
