//! A port's netfilter state: the steal table in modes that claim frames (l2, l3), the l3s hooks
//! in l3s (where the master namespace's stack must see everything first, R-RX-L3S-1). The port
//! says what it wants ([`Desired`]); this type owns what is installed and converges on it.
//! It never sees the port: the port runtime computes the desired state and creates the l3s
//! sink device itself.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipvlan_linux::l3s::L3sHooks;
use ipvlan_linux::steal::Steal;
use tracing::{info, warn};

use super::error::TeardownErrors;

/// Which hook carries the active addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// l2/l3: the netdev ingress table drops host-bound unicast for slave addresses.
    Steal,
    /// l3s: marked in PREROUTING, copied to the TAP `sink` at the end of INPUT.
    L3s { sink: String },
}

/// What a port wants installed: the addresses of its up slaves, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub hook: Hook,
    pub addresses: BTreeSet<IpAddr>,
}

/// The netfilter state installed for one master.
#[derive(Debug)]
pub struct PortNetfilter {
    master: String,
    index: u32,
    steal: Option<Steal>,
    stolen: BTreeSet<IpAddr>,
    l3s: Option<L3sHooks>,
    l3s_set: BTreeSet<IpAddr>,
}

impl PortNetfilter {
    /// Nothing installed yet.
    pub fn new(master: &str, index: u32) -> PortNetfilter {
        PortNetfilter {
            master: master.to_owned(),
            index,
            steal: None,
            stolen: BTreeSet::new(),
            l3s: None,
            l3s_set: BTreeSet::new(),
        }
    }

    /// The master was renamed.
    pub fn set_master(&mut self, name: &str) {
        self.master = name.to_owned();
    }

    /// Converges on `want`. The error is the first step that failed; the rest is retried by
    /// the next sync.
    pub fn sync(&mut self, want: &Desired) -> Result<(), String> {
        let steal = match &self.steal {
            Some(s) => s,
            None => {
                let s = Steal::install(&self.master, self.index)
                    .map_err(|e| format!("installing the steal table: {e}"))?;
                self.steal.insert(s)
            }
        };
        let mut first_error = None;
        let stolen_want: BTreeSet<IpAddr> = match want.hook {
            Hook::Steal => want.addresses.clone(),
            Hook::L3s { .. } => BTreeSet::new(),
        };
        for a in self
            .stolen
            .difference(&stolen_want)
            .copied()
            .collect::<Vec<_>>()
        {
            match steal.remove(a) {
                Ok(()) => {
                    self.stolen.remove(&a);
                }
                Err(e) => {
                    first_error.get_or_insert(format!("steal table: removing {a}: {e}"));
                }
            }
        }
        for a in stolen_want
            .difference(&self.stolen)
            .copied()
            .collect::<Vec<_>>()
        {
            match steal.add(a) {
                Ok(()) => {
                    self.stolen.insert(a);
                }
                Err(e) => {
                    first_error.get_or_insert(format!("steal table: adding {a}: {e}"));
                }
            }
        }
        match &want.hook {
            Hook::Steal => {
                if let Some(hooks) = self.l3s.take() {
                    self.l3s_set.clear();
                    hooks
                        .uninstall()
                        .map_err(|e| format!("removing the l3s hooks: {e}"))?;
                    info!(master = %self.master, "l3s hooks removed");
                }
            }
            Hook::L3s { sink } => {
                let hooks = match &self.l3s {
                    Some(h) => h,
                    None => {
                        let h = L3sHooks::install(&self.master, self.index, sink)
                            .map_err(|e| format!("installing the l3s hooks: {e}"))?;
                        info!(master = %self.master, %sink, "l3s hooks installed: the master namespace's netfilter sees slave traffic");
                        self.l3s_set.clear();
                        self.l3s.insert(h)
                    }
                };
                for a in self
                    .l3s_set
                    .difference(&want.addresses)
                    .copied()
                    .collect::<Vec<_>>()
                {
                    match hooks.remove(a) {
                        Ok(()) => {
                            self.l3s_set.remove(&a);
                        }
                        Err(e) => {
                            first_error.get_or_insert(format!("l3s set: removing {a}: {e}"));
                        }
                    }
                }
                for a in want
                    .addresses
                    .difference(&self.l3s_set)
                    .copied()
                    .collect::<Vec<_>>()
                {
                    match hooks.add(a) {
                        Ok(()) => {
                            self.l3s_set.insert(a);
                        }
                        Err(e) => {
                            first_error.get_or_insert(format!("l3s set: adding {a}: {e}"));
                        }
                    }
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Removes everything installed, going on after failures.
    pub fn teardown(&mut self) -> TeardownErrors {
        let mut errors = TeardownErrors::default();
        if let Some(hooks) = self.l3s.take() {
            errors.note("removing the l3s hooks", hooks.uninstall());
        }
        if let Some(steal) = self.steal.take() {
            errors.note("removing the steal table", steal.uninstall());
        }
        self.stolen.clear();
        self.l3s_set.clear();
        if !errors.is_empty() {
            warn!(master = %self.master, "netfilter teardown: {errors}");
        }
        errors
    }
}
