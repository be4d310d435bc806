//! End-to-end harness: the workspace's shared fixture ([`ipvlan_testkit`]) with this crate's
//! `ipvlan` binary as daemon and CLI.

#![allow(dead_code, unused_imports)]

use std::ops::{Deref, DerefMut};

pub use ipvlan_testkit::{text, unsupported, wait, Background};

pub const BIN: &str = env!("CARGO_BIN_EXE_ipvlan");

/// Fails the calling test, saying why, where it cannot run. The end-to-end tests are
/// `#[ignore = "needs root, iproute2, nftables, TUN"]`: plain `cargo test` lists them as ignored,
/// and only `cargo test -- --include-ignored` asks them to run, so a missing prerequisite is an
/// error, never a silent pass.
#[macro_export]
macro_rules! require_env {
    () => {
        if let Some(why) = common::unsupported() {
            panic!("this end-to-end test needs root, iproute2, nftables and TUN, and cannot run here: {why}");
        }
    };
}

/// The fixture, running this build's daemon.
pub struct Fx(ipvlan_testkit::Fx);

impl Fx {
    pub fn new() -> Fx {
        Fx(ipvlan_testkit::Fx::new(BIN))
    }
}

impl Deref for Fx {
    type Target = ipvlan_testkit::Fx;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Fx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
