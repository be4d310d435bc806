//! How many queues a slave's TAP gets, and keeping each flow on one of them.
//!
//! A queue per worker lets one slave's flows spread over the workers (queue `q` of slave `id`
//! is read by worker `(id + q) % workers`). That needs the flow steering program: without it
//! the kernel moves a flow to the queue its replies were last written through, and with two
//! workers writing them a flow changed queue mid-stream and its frames, read by two workers,
//! arrived out of order (measured with 3 and 4 workers on 6.18: 7–44 out-of-order segments and
//! up to 87 spurious retransmits per 32 MiB over 8 flows). If the program cannot be loaded,
//! slaves get one queue, which cannot reorder.

use std::io;

use ipvlan_linux::{FlowSteering, SlaveDevice, Tap};
use tracing::{info, warn};

/// How many queues each new slave TAP is made or attached with (one per worker, or one), and
/// the flow steering program attached to multiqueue ones.
pub struct SlaveQueues {
    count: usize,
    steering: Option<FlowSteering>,
}

impl SlaveQueues {
    /// A queue per worker if the steering program loads, else one.
    pub fn new(workers: usize) -> SlaveQueues {
        if workers < 2 {
            return SlaveQueues {
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
                SlaveQueues {
                    count: workers,
                    steering: Some(p),
                }
            }
            Err(e) => {
                warn!("slaves get one queue each (their flows stay on one worker): cannot load the flow steering program: {e}");
                SlaveQueues {
                    count: 1,
                    steering: None,
                }
            }
        }
    }

    /// Creates the persistent TAP of a new slave.
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

    fn steer(&self, tap: &Tap) -> io::Result<()> {
        match &self.steering {
            Some(p) if tap.queues() > 1 => tap
                .steer(p)
                .map_err(|e| io::Error::new(e.kind(), format!("attaching flow steering: {e}"))),
            _ => Ok(()),
        }
    }
}
