//! `ipvlan bench-forward A B`: the benchmark's floor — a naive forwarder that copies every frame
//! between two devices with one read and one write per frame, no decisions, no offloads.
//! `A`/`B` are `tap:NAME` (created here, in this namespace) or `packet:IFACE` (an existing
//! device, through AF_PACKET). Runs until killed.

use std::io;
use std::process::ExitCode;

use ipvlan_linux::{Epoll, PacketSocket, Tap};

enum End {
    Tap(Tap),
    Packet(PacketSocket),
}

impl End {
    fn open(spec: &str) -> io::Result<End> {
        match spec.split_once(':') {
            Some(("tap", name)) => Ok(End::Tap(Tap::create_transient(name)?)),
            Some(("packet", dev)) => {
                let index = std::fs::read_to_string(format!("/sys/class/net/{dev}/ifindex"))?;
                let index = index
                    .trim()
                    .parse()
                    .map_err(|_| io::Error::other("bad ifindex"))?;
                Ok(End::Packet(PacketSocket::open(index)?))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{spec}: expected tap:NAME or packet:IFACE"),
            )),
        }
    }

    fn fd(&self) -> i32 {
        match self {
            End::Tap(t) => t.poll_fd(0),
            End::Packet(p) => p.poll_fd(),
        }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            End::Tap(t) => t.recv(0, buf),
            End::Packet(p) => p.recv(buf).map(|(n, _)| n),
        }
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        match self {
            End::Tap(t) => t.send(0, frame),
            End::Packet(p) => p.send(frame),
        }
    }
}

pub fn main(args: &[String]) -> ExitCode {
    let [a, b] = args else {
        eprintln!(
            "Usage: ipvlan bench-forward {{tap:NAME|packet:IFACE}} {{tap:NAME|packet:IFACE}}"
        );
        return ExitCode::from(255);
    };
    match run(a, b) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipvlan bench-forward: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(a: &str, b: &str) -> io::Result<()> {
    let ends = [End::open(a)?, End::open(b)?];
    for e in &ends {
        if let End::Tap(t) = e {
            t.set_carrier(true)?;
        }
    }
    let epoll = Epoll::new()?;
    epoll.add(ends[0].fd(), 0)?;
    epoll.add(ends[1].fd(), 1)?;
    let mut ready = Vec::new();
    let mut buf = vec![0u8; 65536 + 128];
    loop {
        epoll.wait(&mut ready, -1)?;
        for r in &ready {
            let (from, to) = if r.token == 0 {
                (&ends[0], &ends[1])
            } else {
                (&ends[1], &ends[0])
            };
            while let Ok(n) = from.recv(&mut buf) {
                let _ = to.send(&buf[..n]);
            }
        }
    }
}
