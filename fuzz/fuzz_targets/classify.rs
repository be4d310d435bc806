//! Classification must never panic and must be consistent with itself on any bytes.
#![no_main]

use ipvlan_core::classify;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = classify(data) {
        assert_eq!(c.len, data.len());
        // A tagged frame never has transmit keys (R-CLS-4).
        if c.vlan.is_some() {
            assert_eq!(c.keys_tx(), ipvlan_core::Keys::NONE);
        }
    } else {
        assert!(data.len() < 14);
    }
});
