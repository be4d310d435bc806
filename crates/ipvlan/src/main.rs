//! `ipvlan`: the ipvlan-rs daemon and its iproute2-style CLI.

mod bench_forward;
mod cli;
mod client;
mod daemon;
mod demo;
mod logging;
mod matrix;
mod proto;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main(std::env::args().skip(1).collect())
}
