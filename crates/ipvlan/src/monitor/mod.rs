//! `ipvlan monitor drops`: copies of dropped frames, live, with their reason.
//!
//! - this file: the daemon's [`Hub`], which the data paths offer drops to and the watchers
//!   (clients of `monitor drops`) take them from, and the stream's wire format ([`Item`]);
//! - `bpf`: the eBPF ports' reader (their programs copy into a ring buffer);
//! - `stream`: the daemon's side of one watcher's connection;
//! - `client`: the CLI's side (human lines, JSON lines, pcap-ng);
//! - `summary`: a one-line description of a frame, as tcpdump prints it.
//!
//! Cost when nobody watches: the data paths read one flag ([`Hub::active`], a relaxed atomic
//! load; in eBPF a one-entry array map) on their drop paths only. While someone watches, the
//! copies are bounded by a budget of [`RATE`] a second (the rest are counted as rate
//! limited), each watcher has a queue of [`QUEUE`] copies (what a slow watcher cannot take is
//! counted as lost for it, never waited for), and at most [`MAX_WATCHERS`] watch at once.

pub mod bpf;
pub mod client;
pub mod stream;
pub mod summary;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipvlan_core::DropReason;
use serde::{Deserialize, Serialize};

/// Bytes of each dropped frame copied (from its Ethernet header on).
pub const SNAPLEN: usize = 128;
/// Copies made per second, for all watchers together (the userspace workers; each eBPF port
/// has the same budget per CPU).
pub const RATE: u32 = 200;
/// Copies queued for one watcher; past that, its copies are lost (and counted).
pub const QUEUE: usize = 1024;
/// Watchers at once; one more is refused.
pub const MAX_WATCHERS: usize = 8;

/// Which way the dropped frame was going, as counted (`link show -s`): `tx` a frame the slave
/// sent, `rx` one for the slave, `port` one charged to the master (no slave).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Rx,
    Tx,
    Port,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Rx => "rx",
            Direction::Tx => "tx",
            Direction::Port => "port",
        }
    }
}

/// One dropped frame, as the data path copied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropEvent {
    /// Wall-clock time of the drop, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The port's master.
    pub master: String,
    /// The slave charged with the drop (its name at creation), or the master for `port`.
    pub dev: String,
    pub direction: Direction,
    pub reason: DropReason,
    /// The frame's whole length, bytes (Ethernet header on, no FCS).
    pub len: u32,
    /// Its first [`SNAPLEN`] bytes at most.
    pub data: Vec<u8>,
}

impl DropEvent {
    /// An event for `frame` (Ethernet header on) dropped now.
    pub fn now(
        master: &str,
        dev: &str,
        direction: Direction,
        reason: DropReason,
        frame: &[u8],
    ) -> DropEvent {
        DropEvent {
            time_ns: now_ns(),
            master: master.to_owned(),
            dev: dev.to_owned(),
            direction,
            reason,
            len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
            data: frame[..frame.len().min(SNAPLEN)].to_vec(),
        }
    }
}

/// Wall-clock nanoseconds since the Unix epoch (0 before it).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One line of the `monitor drops` stream after the daemon's first answer (a
/// [`crate::proto::Response`]): JSON, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    /// A dropped frame.
    Drop {
        /// Nanoseconds since the Unix epoch.
        time_ns: u64,
        master: String,
        dev: String,
        direction: Direction,
        /// [`DropReason::name`].
        reason: String,
        /// Whole length of the frame, bytes.
        len: u32,
        /// Its first bytes, in hex.
        data: String,
    },
    /// Copies this watcher's queue could not take since the last report (it read too slowly).
    Lost { count: u64 },
    /// Drops not copied since the last report: past the data paths' budget of copies a second.
    RateLimited { count: u64 },
    /// The device this watcher watches (`dev NAME`) is gone: the last line of the stream.
    Gone { dev: String },
}

impl Item {
    pub fn from_event(e: &DropEvent) -> Item {
        Item::Drop {
            time_ns: e.time_ns,
            master: e.master.clone(),
            dev: e.dev.clone(),
            direction: e.direction,
            reason: e.reason.name().to_owned(),
            len: e.len,
            data: hex(&e.data),
        }
    }
}

/// Lowercase hex of `b`.
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// The bytes of lowercase or uppercase hex `s`; `None` if it is not hex of whole bytes.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

/// One watcher's end in the hub.
struct Watcher {
    id: u64,
    /// `dev NAME`: only drops charged to NAME, or to any device of the port whose master is
    /// NAME.
    filter: Option<String>,
    queue: SyncSender<Arc<DropEvent>>,
    lost: Arc<AtomicU64>,
    /// Set when the device it watches went ([`Hub::gone`]).
    gone: Arc<AtomicBool>,
}

/// A watcher's receiving end: the copies for it, what it lost, and (dropped) its leaving.
pub struct Watch {
    hub: &'static Hub,
    id: u64,
    pub events: Receiver<Arc<DropEvent>>,
    lost: Arc<AtomicU64>,
    gone: Arc<AtomicBool>,
    /// The hub's rate-limited count when this watcher last reported it.
    rate_seen: u64,
}

impl Watch {
    /// Whether the device it watches is gone: its events then end (disconnected).
    pub fn gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// Copies lost since the last call.
    pub fn take_lost(&self) -> u64 {
        self.lost.swap(0, Ordering::Relaxed)
    }

    /// Drops not copied for the budget since the last call.
    pub fn take_rate_limited(&mut self) -> u64 {
        let now = self.hub.suppressed.load(Ordering::Relaxed);
        let d = now.saturating_sub(self.rate_seen);
        self.rate_seen = now;
        d
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.leave(self.id);
    }
}

/// The daemon's drop hub: the flag the data paths check, the budget, the watchers.
pub struct Hub {
    active: AtomicBool,
    /// The second (since [`Hub::epoch`]) the budget counts, and copies made in it.
    window: AtomicU64,
    used: AtomicU32,
    /// Drops not copied for the budget, ever.
    suppressed: AtomicU64,
    watchers: Mutex<Vec<Watcher>>,
    next_id: AtomicU64,
    epoch: Instant,
    /// Bumped when the flag may have changed; the eBPF readers wait on it.
    generation: Mutex<u64>,
    changed: Condvar,
    /// eBPF readers running, and how many of them have their programs copying.
    readers: AtomicUsize,
    armed: AtomicUsize,
}

/// The daemon's one hub.
pub static HUB: LazyLock<Hub> = LazyLock::new(Hub::new);

/// Why a watcher was refused.
#[derive(Debug, thiserror::Error)]
#[error("{MAX_WATCHERS} drop monitors are running already")]
pub struct TooManyWatchers;

impl Hub {
    fn new() -> Hub {
        Hub {
            active: AtomicBool::new(false),
            window: AtomicU64::new(0),
            used: AtomicU32::new(0),
            suppressed: AtomicU64::new(0),
            watchers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            epoch: Instant::now(),
            generation: Mutex::new(0),
            changed: Condvar::new(),
            readers: AtomicUsize::new(0),
            armed: AtomicUsize::new(0),
        }
    }

    fn bump(&self) {
        let mut g = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        *g += 1;
        self.changed.notify_all();
    }

    /// Waits at most `limit` for a change of the flag after generation `seen` (updated).
    pub fn wait_change(&self, seen: &mut u64, limit: Duration) {
        let g = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        let (g, _) = self
            .changed
            .wait_timeout_while(g, limit, |g| *g == *seen)
            .unwrap_or_else(|p| p.into_inner());
        *seen = *g;
    }

    /// An eBPF reader started (`true`) or ended (`false`).
    pub fn reader(&self, running: bool) {
        if running {
            self.readers.fetch_add(1, Ordering::SeqCst);
        } else {
            self.readers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// An eBPF reader's programs started (`true`) or stopped copying.
    pub fn armed(&self, on: bool) {
        if on {
            self.armed.fetch_add(1, Ordering::SeqCst);
        } else {
            self.armed.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Waits at most `limit` until every eBPF reader has its programs copying, so a watcher
    /// that is told it watches misses nothing.
    pub fn wait_armed(&self, limit: Duration) {
        let t = Instant::now();
        while self.armed.load(Ordering::SeqCst) < self.readers.load(Ordering::SeqCst)
            && t.elapsed() < limit
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Watcher>> {
        self.watchers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether anybody watches: the data paths copy drops only then.
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Adds a watcher of the drops charged to `filter` (see `Watcher::filter`), or all.
    /// Errors: [`TooManyWatchers`].
    pub fn join(&'static self, filter: Option<String>) -> Result<Watch, TooManyWatchers> {
        let mut w = self.lock();
        if w.len() >= MAX_WATCHERS {
            return Err(TooManyWatchers);
        }
        let (queue, events) = mpsc::sync_channel(QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let lost = Arc::new(AtomicU64::new(0));
        let gone = Arc::new(AtomicBool::new(false));
        w.push(Watcher {
            id,
            filter,
            queue,
            lost: lost.clone(),
            gone: gone.clone(),
        });
        self.active.store(true, Ordering::SeqCst);
        drop(w);
        self.bump();
        Ok(Watch {
            hub: self,
            id,
            events,
            lost,
            gone,
            rate_seen: self.suppressed.load(Ordering::Relaxed),
        })
    }

    fn leave(&self, id: u64) {
        let mut w = self.lock();
        w.retain(|x| x.id != id);
        if w.is_empty() {
            self.active.store(false, Ordering::SeqCst);
            drop(w);
            self.bump();
        }
    }

    /// The device `name` (a slave, or a port's master) is gone: its watchers are let go (their
    /// events end, [`Watch::gone`] says why), as tcpdump ends when its interface goes. A
    /// device made later under the same name is another one.
    pub fn gone(&self, name: &str) {
        let mut w = self.lock();
        let before = w.len();
        w.retain(|x| {
            let watched = x.filter.as_deref() == Some(name);
            if watched {
                x.gone.store(true, Ordering::SeqCst);
            }
            !watched
        });
        if before > 0 && w.is_empty() {
            self.active.store(false, Ordering::SeqCst);
            drop(w);
            self.bump();
        }
    }

    /// How many watch now.
    pub fn watchers(&self) -> usize {
        self.lock().len()
    }

    /// Takes one copy out of this second's budget; `false` (counted) when it is spent.
    fn admit(&self) -> bool {
        let second = self.epoch.elapsed().as_secs();
        if self.window.load(Ordering::Relaxed) != second {
            // Racy between workers at the turn of a second: at worst a few copies more.
            self.window.store(second, Ordering::Relaxed);
            self.used.store(0, Ordering::Relaxed);
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < RATE {
            true
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Counts `n` drops a data path did not copy for its own budget (the eBPF ports').
    pub fn add_rate_limited(&self, n: u64) {
        self.suppressed.fetch_add(n, Ordering::Relaxed);
    }

    /// Offers a drop: `make` builds the copy, called only if somebody watches and the budget
    /// allows. Never blocks on a watcher.
    #[inline]
    pub fn offer(&self, make: impl FnOnce() -> DropEvent) {
        if !self.active() || !self.admit() {
            return;
        }
        self.publish(make());
    }

    /// Hands a copy to every watcher whose filter it passes (the eBPF ports' copies, already
    /// within their budget, come in here directly).
    pub fn publish(&self, event: DropEvent) {
        let event = Arc::new(event);
        for w in self.lock().iter() {
            if let Some(f) = &w.filter {
                if *f != event.dev && *f != event.master {
                    continue;
                }
            }
            match w.queue.try_send(event.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    w.lost.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(dev: &str) -> DropEvent {
        DropEvent::now(
            "m0",
            dev,
            Direction::Tx,
            DropReason::PrivateUnicast,
            &[0u8; 200],
        )
    }

    /// On a hub of its own: the data-plane tests, running in parallel, offer to the global one.
    #[test]
    fn hub_flags_filters_bounds_and_budget() {
        let hub: &'static Hub = Box::leak(Box::new(Hub::new()));
        assert!(!hub.active(), "nobody watches at first");
        let mut offered = false;
        hub.offer(|| {
            offered = true;
            ev("s1")
        });
        assert!(!offered, "no copy is made while nobody watches");

        let all = hub.join(None).expect("join");
        let s2 = hub.join(Some("s2".into())).expect("join");
        assert!(hub.active());
        hub.publish(ev("s1"));
        hub.publish(ev("s2"));
        let got: Vec<_> = all.events.try_iter().map(|e| e.dev.clone()).collect();
        assert_eq!(got, ["s1", "s2"]);
        let got: Vec<_> = s2.events.try_iter().map(|e| e.dev.clone()).collect();
        assert_eq!(got, ["s2"]);
        assert_eq!(all.events.try_iter().count(), 0);
        let e = ev("s1");
        assert_eq!(e.data.len(), SNAPLEN);
        assert_eq!(e.len, 200);

        // A watcher that does not read loses what its queue cannot take; nobody waits.
        for _ in 0..QUEUE + 10 {
            hub.publish(ev("s1"));
        }
        assert_eq!(all.take_lost(), 10);
        assert_eq!(all.take_lost(), 0);
        drop(all);

        // The budget: at most RATE copies in a second (two at the turn of one).
        let mut w = s2;
        let mut made = 0;
        for _ in 0..3 * RATE {
            hub.offer(|| {
                made += 1;
                ev("x")
            });
        }
        assert!(made <= 2 * RATE, "{made} copies");
        assert!(w.take_rate_limited() >= u64::from(RATE), "counted");

        let mut more = Vec::new();
        for _ in 1..MAX_WATCHERS {
            more.push(hub.join(None).expect("join"));
        }
        assert!(hub.join(None).is_err(), "one more than the cap is refused");
        drop(more);
        drop(w);
        assert_eq!(hub.watchers(), 0);

        // The watched device goes: its watcher's events end and it says why; others stay.
        let s1 = hub.join(Some("s1".into())).expect("join");
        let all = hub.join(None).expect("join");
        hub.gone("s1");
        assert!(s1.gone() && !all.gone());
        assert!(matches!(
            s1.events.try_recv(),
            Err(mpsc::TryRecvError::Disconnected)
        ));
        assert_eq!(hub.watchers(), 1);
        drop((s1, all));
        assert!(
            !hub.active(),
            "the last watcher's leaving turns the flag off"
        );
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(unhex("00ab10"), Some(vec![0, 0xab, 0x10]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
