//! Commands of the `ipvlan` binary that are not the daemon or its CLI: the README's demo
//! (`ipvlan demo`), the core's mode × flag table (`ipvlan matrix`, which uses the core's frame
//! fixtures), and the naive TAP forwarder the benchmark compares against (`ipvlan
//! bench-forward`). Nothing here runs inside the daemon.

pub mod bench_forward;
pub mod demo;
pub mod matrix;
