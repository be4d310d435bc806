//! The eBPF ports' side of the drop monitor: a thread per port that keeps the programs'
//! switch (`mon_on`) in step with [`HUB`]'s flag, and while someone watches, takes the copies
//! from the port's ring buffer every [`POLL`] and publishes them (the programs have applied
//! their own budget, [`ipvlan_bpf::monitor::RATE`] a second per CPU).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ipvlan_bpf::monitor::{DropCopy, DropRing};
use ipvlan_core::DropReason;
use tracing::debug;

use super::{Direction, DropEvent, HUB};

/// How often the thread looks at the flag and the ring.
pub const POLL: Duration = Duration::from_millis(100);

/// Names a drop's devices: `(master, dev)` for a slave id (0: the port, dev = master).
pub type Namer = dyn Fn(u16) -> Option<(String, String)> + Send;

/// The reading thread of one port; dropping it stops the thread and turns copying off.
pub struct Reader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    /// Starts reading `ring`, naming devices with `names`. Errors: the thread cannot start.
    pub fn start(ring: DropRing, names: Box<Namer>) -> io::Result<Reader> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ipvlan-bpfmon".into())
            .spawn(move || run(ring, &*names, &s))?;
        Ok(Reader {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC, nanoseconds: turns `bpf_ktime_get_ns` into wall time.
fn realtime_offset() -> i128 {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    };
    read(libc::CLOCK_REALTIME) - read(libc::CLOCK_MONOTONIC)
}

fn event(c: &DropCopy, names: &Namer, offset: i128) -> Option<DropEvent> {
    let (master, dev) = names(c.slave)?;
    let direction = match c.direction {
        0 => Direction::Rx,
        1 => Direction::Tx,
        _ => Direction::Port,
    };
    let reason = *DropReason::ALL.get(usize::from(c.reason))?;
    let time = i128::from(c.ktime_ns) + offset;
    Some(DropEvent {
        time_ns: u64::try_from(time).unwrap_or(0),
        master,
        dev,
        direction,
        reason,
        len: c.len,
        data: c.data.clone(),
    })
}

fn run(mut ring: DropRing, names: &Namer, stop: &AtomicBool) {
    HUB.reader(true);
    let mut on = false;
    let mut known = false;
    let mut seen = 0;
    let mut generation = 0;
    while !stop.load(Ordering::SeqCst) {
        let want = HUB.active();
        if !known || on != want {
            match ring.set_on(want) {
                Ok(()) => {
                    if known && on {
                        HUB.armed(false);
                    }
                    if want {
                        HUB.armed(true);
                    }
                    (on, known) = (want, true);
                }
                Err(e) => debug!("drop monitor switch: {e}"),
            }
            seen = ring.suppressed().unwrap_or(seen);
        }
        if on {
            let offset = realtime_offset();
            ring.drain(|c| {
                if let Some(e) = event(&c, names, offset) {
                    HUB.publish(e);
                }
            });
            if let Ok(n) = ring.suppressed() {
                HUB.add_rate_limited(n.saturating_sub(seen));
                seen = n;
            }
            std::thread::sleep(POLL);
        } else {
            // Nobody watches: woken at once when somebody starts.
            HUB.wait_change(&mut generation, POLL);
        }
    }
    let _ = ring.set_on(false);
    if on {
        HUB.armed(false);
    }
    HUB.reader(false);
}
