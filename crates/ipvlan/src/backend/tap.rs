//! The TAP backend: each slave is a persistent TAP (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`,
//! multiqueue-capable) with the master's MAC, read and written by the userspace data plane.
//!
//! How many queues a slave's TAP gets, and keeping each flow on one of them:
//! A queue per worker lets one slave's flows spread over the workers (queue `q` of slave `id`
//! is read by worker `(id + q) % workers`). That needs the flow steering program: without it
//! the kernel moves a flow to the queue its replies were last written through, and with two
//! workers writing them a flow changed queue mid-stream and its frames, read by two workers,
//! arrived out of order (measured with 3 and 4 workers on 6.18: 7–44 out-of-order segments and
//! up to 87 spurious retransmits per 32 MiB over 8 flows). If the program cannot be loaded,
//! slaves get one queue, which cannot reorder.

use std::io;

use ipvlan_core::MacAddr;
use ipvlan_linux::{FlowSteering, NetNs, Tap};
use tracing::{info, warn};

use super::{BackendKind, SlaveDevice};

/// How many queues each new slave TAP is made or attached with (one per worker, or one), and
/// the flow steering program attached to multiqueue ones.
pub struct TapBackend {
    count: usize,
    steering: Option<FlowSteering>,
}

impl TapBackend {
    /// A queue per worker if the steering program loads, else one.
    pub fn new(workers: usize) -> TapBackend {
        if workers < 2 {
            return TapBackend {
                count: 1,
                steering: None,
            };
        }
        match FlowSteering::load() {
            Ok(p) => {
                info!(
                    queues = workers,
                    "slaves get a queue per worker, flows steered by BPF"
                );
                TapBackend {
                    count: workers,
                    steering: Some(p),
                }
            }
            Err(e) => {
                warn!("slaves get one queue each (their flows stay on one worker): cannot load the flow steering program: {e}");
                TapBackend {
                    count: 1,
                    steering: None,
                }
            }
        }
    }

    fn steer(&self, tap: &Tap) -> io::Result<()> {
        match &self.steering {
            Some(p) if tap.queues() > 1 => tap
                .steer(p)
                .map_err(|e| io::Error::new(e.kind(), format!("attaching flow steering: {e}"))),
            _ => Ok(()),
        }
    }
}

impl TapBackend {
    /// A new persistent TAP with this backend's queue count and flow steering.
    pub fn create(&self, name: &str) -> io::Result<Tap> {
        let tap = Tap::create(name, self.count)?;
        match self.steer(&tap) {
            Ok(()) => Ok(tap),
            Err(e) => {
                let _ = tap.destroy();
                Err(e)
            }
        }
    }

    /// Attaches to a slave's TAP after a restart (in the device's namespace).
    pub fn attach(&self, name: &str) -> io::Result<Tap> {
        let tap = Tap::attach(name, self.count)?;
        self.steer(&tap)?;
        Ok(tap)
    }

    /// A single-queue TAP that disappears with its descriptor.
    pub fn create_sink(&self, name: &str) -> io::Result<Tap> {
        Ok(Tap::create_transient(name)?)
    }
}

/// The TUN ioctls behind each setting (`TUNGETIFF`, `SIOCSIFHWADDR`, `TUNSETCARRIER`,
/// `TUNSETOFFLOAD`, `TUNGETDEVNETNS`, `TUNSETPERSIST`); their `TapError`s travel inside the
/// `io::Error`.
impl SlaveDevice for Tap {
    fn kind(&self) -> BackendKind {
        BackendKind::Tap
    }
    fn queues(&self) -> usize {
        Tap::queues(self)
    }
    fn current_name(&self) -> io::Result<String> {
        Ok(Tap::current_name(self)?)
    }
    fn set_mac(&self, mac: MacAddr) -> io::Result<()> {
        Ok(Tap::set_mac(self, mac)?)
    }
    fn set_carrier(&self, on: bool) -> io::Result<()> {
        Tap::set_carrier(self, on)
    }
    fn enable_offloads(&self) -> io::Result<()> {
        Ok(Tap::enable_offloads(self)?)
    }
    fn netns(&self) -> io::Result<NetNs> {
        Tap::netns(self)
    }
    fn destroy(&self) -> io::Result<()> {
        Ok(Tap::destroy(self)?)
    }
}
