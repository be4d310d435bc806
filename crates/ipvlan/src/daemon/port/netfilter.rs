//! A port's netfilter state follows the port: the active addresses in the steal table, or in
//! l3s in the l3s hooks with their sink device (`ipvlan_linux::netfilter` does the nftables and
//! policy routing; this decides what is wanted and when).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use ipvlan_core::Mode;
use ipvlan_linux::netfilter::{Desired, Hook};
use ipvlan_linux::rtnl::{LinkChange, Rtnl};
use tracing::{info, warn};

use super::PortRuntime;
use crate::backend::SlaveBackend;

impl<B: SlaveBackend> PortRuntime<B> {
    /// Makes the installed netfilter state match the port, if anything changed since the last
    /// successful sync: the active addresses (of up slaves) in the steal table, or in l3s in the
    /// l3s hooks, whose sink this creates and removes with the mode. Called once per batch of
    /// changes, so 1,000 addresses removed cost one sync, not 1,000. A failure keeps the port
    /// out of sync and is retried at the next call (the daemon settles at least once a second);
    /// the error says what is not applied, logged once per distinct error.
    pub fn sync_netfilter(&mut self, backend: &B) -> Result<(), String> {
        if !self.netfilter_dirty {
            return Ok(());
        }
        let result = self.try_sync_netfilter(backend);
        match &result {
            Ok(()) => {
                self.netfilter_dirty = false;
                if self.netfilter_error.take().is_some() {
                    info!(master = %self.master, "netfilter in sync again");
                }
            }
            Err(e) => {
                if self.netfilter_error.as_ref() != Some(e) {
                    warn!(master = %self.master, "netfilter not in sync (retried every second): {e}");
                    self.netfilter_error = Some(e.clone());
                }
            }
        }
        result.map_err(|e| {
            format!(
                "master {}: netfilter not in sync, retried every second: {e}",
                self.master
            )
        })
    }

    fn try_sync_netfilter(&mut self, backend: &B) -> Result<(), String> {
        // The eBPF programs take a slave's frames before the master's stack sees them: there
        // is nothing to steal from it.
        let bpf = self.dp.kind().is_bpf();
        let (l3s, addresses): (bool, BTreeSet<IpAddr>) = {
            let port = self.dp.port();
            let active = port
                .slaves()
                .filter(|s| s.is_up() && !s.is_host() && !bpf)
                .flat_map(|s| port.addresses(s.id()).to_vec())
                .collect();
            (port.mode() == Mode::L3s, active)
        };
        let hook = if l3s {
            let sink = self
                .ensure_sink(backend)
                .map_err(|e| format!("creating the l3s sink: {e}"))?;
            Hook::L3s { sink }
        } else {
            Hook::Steal
        };
        self.netfilter
            .sync(&Desired { hook, addresses })
            .map_err(|e| e.to_string())?;
        // The sink goes only once no l3s rule duplicates packets to it.
        if !l3s && self.netfilter.installed().l3s.is_none() && self.sink.take().is_some() {
            self.dp
                .set_sink(None)
                .map_err(|e| format!("removing the l3s sink: {e}"))?;
        }
        Ok(())
    }

    /// The l3s sink (`ipvls<ifindex>`, up, NOARP, MTU [`SINK_MTU`]), created and handed to the data plane if
    /// it does not exist yet.
    fn ensure_sink(&mut self, backend: &B) -> std::io::Result<String> {
        if let Some(s) = &self.sink {
            return Ok(s.clone());
        }
        let name = format!("ipvls{}", self.index);
        let sink = Arc::new(backend.create_sink(&name)?);
        let mut r = Rtnl::open()?;
        let link = r
            .link_by_name(&name)?
            .ok_or_else(|| std::io::Error::other("the sink TAP is not visible"))?;
        r.set_link(
            link.index,
            &LinkChange {
                up: Some(true),
                noarp: Some(true),
                addrgen_none: true,
                // Conntrack hands INPUT reassembled packets (a slave's MTU may be above the
                // master's): the copy must reach the sink whole, as the kernel's l3s hands
                // the reassembled packet to the slave.
                mtu: Some(SINK_MTU),
                ..LinkChange::default()
            },
        )?;
        self.dp.set_sink(Some(sink))?;
        self.sink = Some(name.clone());
        Ok(name)
    }
}

/// The l3s sink's MTU: the largest a TAP takes (`MAX_MTU` less the Ethernet header), which
/// holds any IP packet conntrack reassembles from Ethernet-sized fragments.
const SINK_MTU: u32 = 65521;
