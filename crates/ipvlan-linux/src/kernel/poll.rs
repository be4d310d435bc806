//! epoll and eventfd, the two primitives the daemon's loops are built on: thin wrappers over
//! `nix::sys::epoll::Epoll` and `nix::sys::eventfd::EventFd` that keep the daemon's
//! descriptor-number interface (`RawFd` in, a `u64` token out).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::sys::epoll::{self, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{self, EfdFlags};

/// How many readiness reports one [`Epoll::wait`] returns at most.
const MAX_EVENTS: usize = 64;

/// An epoll instance (`epoll_create1(EPOLL_CLOEXEC)`). Registration is thread-safe, so the
/// control thread can add a new slave's descriptor while the data-plane thread waits.
#[derive(Debug)]
pub struct Epoll {
    inner: epoll::Epoll,
}

/// One readiness report.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// The token the descriptor was registered with ([`Epoll::add`]).
    pub token: u64,
    /// Error or hang-up on the descriptor (`EPOLLERR`, `EPOLLHUP`).
    pub error: bool,
}

/// Lends `fd` as a `BorrowedFd` for the length of one `epoll_ctl` call.
fn with_borrowed<T>(fd: RawFd, f: impl FnOnce(BorrowedFd<'_>) -> nix::Result<T>) -> io::Result<T> {
    if fd < 0 {
        return Err(Errno::EBADF.into());
    }
    // SAFETY: `fd` is non-negative (checked above; `borrow_raw` forbids -1), and the borrow
    // lives only for `f`, a single epoll_ctl(2) call that neither keeps nor closes the
    // descriptor. If the caller passed a number that is not open, the kernel answers EBADF; no
    // memory is touched through it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    Ok(f(borrowed)?)
}

impl Epoll {
    /// A new epoll instance (`epoll_create1(EPOLL_CLOEXEC)`).
    pub fn new() -> io::Result<Epoll> {
        Ok(Epoll {
            inner: epoll::Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
        })
    }

    /// Watches `fd` for readability (level-triggered `EPOLLIN`, plus `EPOLLERR | EPOLLHUP`),
    /// reporting `token`. `EEXIST` if it is already watched, `EBADF` if it is not open.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP;
        with_borrowed(fd, |fd| self.inner.add(fd, EpollEvent::new(flags, token)))
    }

    /// Stops watching `fd`. Missing registrations (and closed descriptors, which epoll forgets
    /// on its own) are fine.
    pub fn delete(&self, fd: RawFd) {
        let _ = with_borrowed(fd, |fd| self.inner.delete(fd));
    }

    /// Waits up to `timeout_ms` milliseconds (−1: forever, 0: not at all); fills `out` (cleared
    /// first) with at most 64 reports and returns how many. An interrupted wait (`EINTR`)
    /// returns 0.
    pub fn wait(&self, out: &mut Vec<Ready>, timeout_ms: i32) -> io::Result<usize> {
        out.clear();
        let timeout = EpollTimeout::try_from(timeout_ms).unwrap_or(EpollTimeout::NONE);
        let mut events = [EpollEvent::empty(); MAX_EVENTS];
        let n = match self.inner.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let broken = EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP;
        out.extend(events.iter().take(n).map(|ev| Ready {
            token: ev.data(),
            error: ev.events().intersects(broken),
        }));
        Ok(out.len())
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.0.as_fd()
    }
}

/// An eventfd used to wake a loop (`eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`): [`signal`]
/// makes it readable, [`drain`] makes it quiet again.
///
/// [`signal`]: EventFd::signal
/// [`drain`]: EventFd::drain
#[derive(Debug)]
pub struct EventFd {
    inner: eventfd::EventFd,
}

impl EventFd {
    /// A new, quiet eventfd.
    pub fn new() -> io::Result<EventFd> {
        Ok(EventFd {
            inner: eventfd::EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
        })
    }

    /// Makes the descriptor readable (adds 1 to its counter). Cannot fail short of a counter
    /// overflow, which is ignored: it is readable then too.
    pub fn signal(&self) {
        let _ = self.inner.write(1);
    }

    /// Resets the counter, so the descriptor is no longer readable; a no-op when it is not.
    pub fn drain(&self) {
        let _ = self.inner.read();
    }

    /// The descriptor, to register with an [`Epoll`].
    pub fn fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signalled_eventfd_wakes_the_epoll_until_drained() {
        let ep = Epoll::new().expect("epoll");
        let ev = EventFd::new().expect("eventfd");
        ep.add(ev.fd(), 7).expect("add");
        let mut ready = Vec::new();
        assert_eq!(ep.wait(&mut ready, 0).expect("wait"), 0);
        ev.signal();
        assert_eq!(ep.wait(&mut ready, 1000).expect("wait"), 1);
        assert_eq!(ready[0].token, 7);
        assert!(!ready[0].error);
        ev.drain();
        assert_eq!(ep.wait(&mut ready, 0).expect("wait"), 0);
        ep.delete(ev.fd());
        ev.signal();
        assert_eq!(ep.wait(&mut ready, 0).expect("wait"), 0);
    }

    #[test]
    fn bad_descriptors_are_errors_not_panics() {
        let ep = Epoll::new().expect("epoll");
        let e = ep.add(-1, 1).expect_err("-1 is no descriptor");
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        ep.delete(-1);
    }
}
