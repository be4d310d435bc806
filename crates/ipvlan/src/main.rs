//! `ipvlan`: the ipvlan-rs daemon and its iproute2-style CLI.

mod backend;
mod cli;
mod daemon;
mod datapath;
mod dataplane;
mod fastpath;
mod logging;
mod metrics;
mod monitor;
mod tools;

use std::process::ExitCode;

pub use ipvlan::{client, proto};

fn main() -> ExitCode {
    cli::main(std::env::args().skip(1).collect())
}
