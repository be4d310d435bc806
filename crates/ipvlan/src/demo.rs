//! `ipvlan demo`: the HOWTO's example on real devices (filled in below).

use std::process::ExitCode;

pub fn main() -> ExitCode {
    eprintln!("ipvlan demo: not built yet");
    ExitCode::from(1)
}
