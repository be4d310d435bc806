//! Port mode and flag (spec §1.1, §8): the values, iproute2's words and the netlink encoding.

use std::fmt;
use std::str::FromStr;

use crate::error::ConfigError;

/// How a port forwards (R-OBJ-3). One mode per master, shared by all its slaves (R-OBJ-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Mode {
    /// Slaves see ARP/ND, multicast and broadcast; switching by IP.
    L2,
    /// Slaves are NOARP; egress is routed in the master's namespace. The kernel's default.
    #[default]
    L3,
    /// As `L3`, and the master namespace's netfilter/conntrack see both directions.
    L3s,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::L2, Mode::L3, Mode::L3s];

    /// iproute2's word for the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::L2 => "l2",
            Mode::L3 => "l3",
            Mode::L3s => "l3s",
        }
    }

    /// `IFLA_IPVLAN_MODE` value (R-OBJ-3).
    pub fn to_netlink(self) -> u16 {
        match self {
            Mode::L2 => 0,
            Mode::L3 => 1,
            Mode::L3s => 2,
        }
    }

    /// Values ≥ 3 are refused (R-NL-4).
    pub fn from_netlink(value: u16) -> Result<Mode, ConfigError> {
        match value {
            0 => Ok(Mode::L2),
            1 => Ok(Mode::L3),
            2 => Ok(Mode::L3s),
            other => Err(ConfigError::ModeValue(other)),
        }
    }

    /// L3 and L3S slaves carry the NOARP flag (R-MODE-2).
    pub fn is_noarp(self) -> bool {
        !matches!(self, Mode::L2)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = ConfigError;

    /// The argument of `mode` is compared exactly, as iproute2 does (`mode L2` is refused).
    fn from_str(s: &str) -> Result<Mode, ConfigError> {
        match s {
            "l2" => Ok(Mode::L2),
            "l3" => Ok(Mode::L3),
            "l3s" => Ok(Mode::L3s),
            _ => Err(ConfigError::UnknownMode(s.to_owned())),
        }
    }
}

/// The port flag (R-OBJ-4). `private` and `vepa` are mutually exclusive, so they are one enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Flag {
    /// Slaves switch unicast between each other directly. The default.
    #[default]
    Bridge,
    /// No unicast between slaves (broadcast and multicast still flow, R-TX-PRIV-1).
    Private,
    /// Unicast always leaves through the master; an external switch hairpins it back (R-TX-VEPA-1).
    Vepa,
}

/// Bit of `IFLA_IPVLAN_FLAGS` for `private`.
pub const FLAG_BIT_PRIVATE: u16 = 0x1;
/// Bit of `IFLA_IPVLAN_FLAGS` for `vepa`.
pub const FLAG_BIT_VEPA: u16 = 0x2;

impl Flag {
    pub const ALL: [Flag; 3] = [Flag::Bridge, Flag::Private, Flag::Vepa];

    /// iproute2's word for the flag.
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Bridge => "bridge",
            Flag::Private => "private",
            Flag::Vepa => "vepa",
        }
    }

    /// `IFLA_IPVLAN_FLAGS` value (R-OBJ-4).
    pub fn to_netlink(self) -> u16 {
        match self {
            Flag::Bridge => 0,
            Flag::Private => FLAG_BIT_PRIVATE,
            Flag::Vepa => FLAG_BIT_VEPA,
        }
    }

    /// Both bits, or any unknown bit, are refused (R-NL-5).
    pub fn from_netlink(bits: u16) -> Result<Flag, ConfigError> {
        match bits {
            0 => Ok(Flag::Bridge),
            FLAG_BIT_PRIVATE => Ok(Flag::Private),
            FLAG_BIT_VEPA => Ok(Flag::Vepa),
            b if b == FLAG_BIT_PRIVATE | FLAG_BIT_VEPA => Err(ConfigError::PrivateAndVepa),
            other => Err(ConfigError::FlagBits(other)),
        }
    }

    pub fn is_private(self) -> bool {
        self == Flag::Private
    }

    pub fn is_vepa(self) -> bool {
        self == Flag::Vepa
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flag {
    type Err = ConfigError;

    /// Exact word. (The iproute2 grammar's prefix matching lives in [`crate::link_args`].)
    fn from_str(s: &str) -> Result<Flag, ConfigError> {
        match s {
            "bridge" => Ok(Flag::Bridge),
            "private" => Ok(Flag::Private),
            "vepa" => Ok(Flag::Vepa),
            _ => Err(ConfigError::UnknownFlag(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_obj_3_mode_netlink_values_round_trip() {
        for mode in Mode::ALL {
            assert_eq!(Mode::from_netlink(mode.to_netlink()), Ok(mode));
        }
        assert_eq!(Mode::L2.to_netlink(), 0);
        assert_eq!(Mode::L3.to_netlink(), 1);
        assert_eq!(Mode::L3s.to_netlink(), 2);
    }

    #[test]
    fn r_nl_4_mode_value_3_or_more_is_refused() {
        for v in [3u16, 4, 255, u16::MAX] {
            let err = Mode::from_netlink(v).unwrap_err();
            assert_eq!(err, ConfigError::ModeValue(v));
            assert!(err.to_string().contains("l2, l3 or l3s"), "{err}");
        }
    }

    #[test]
    fn r_obj_6_default_mode_is_l3_bridge() {
        assert_eq!(Mode::default(), Mode::L3);
        assert_eq!(Flag::default(), Flag::Bridge);
    }

    #[test]
    fn r_obj_4_flag_bits_round_trip() {
        for flag in Flag::ALL {
            assert_eq!(Flag::from_netlink(flag.to_netlink()), Ok(flag));
        }
    }

    #[test]
    fn r_nl_5_private_and_vepa_together_is_an_error() {
        let err = Flag::from_netlink(0x3).unwrap_err();
        assert_eq!(err, ConfigError::PrivateAndVepa);
        assert_eq!(err.to_string(), "flags private and vepa cannot be combined");
    }

    #[test]
    fn r_nl_5_unknown_flag_bits_are_refused() {
        for bits in [0x4u16, 0x5, 0x8, 0xffff] {
            assert_eq!(Flag::from_netlink(bits), Err(ConfigError::FlagBits(bits)));
        }
    }

    #[test]
    fn mode_words_parse_and_print_as_iproute2() {
        for mode in Mode::ALL {
            assert_eq!(mode.to_string().parse::<Mode>(), Ok(mode));
        }
        // R-CLI-3: the mode argument is exact, `L2` is refused.
        assert!("L2".parse::<Mode>().is_err());
        assert!("l4".parse::<Mode>().is_err());
        for flag in Flag::ALL {
            assert_eq!(flag.to_string().parse::<Flag>(), Ok(flag));
        }
    }

    #[test]
    fn r_mode_2_noarp_follows_mode() {
        assert!(!Mode::L2.is_noarp());
        assert!(Mode::L3.is_noarp());
        assert!(Mode::L3s.is_noarp());
    }
}
