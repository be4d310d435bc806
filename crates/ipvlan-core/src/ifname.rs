//! Network interface names, validated as the kernel does (`dev_valid_name`).

use std::fmt;
use std::str::FromStr;

use crate::error::ConfigError;

/// Longest name the kernel accepts (`IFNAMSIZ` - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// A valid Linux interface name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfName(String);

impl IfName {
    pub fn new(name: &str) -> Result<IfName, ConfigError> {
        let bad = |why| ConfigError::InterfaceName {
            name: name.to_owned(),
            why,
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() > MAX_IFNAME_LEN {
            return Err(bad("it is longer than 15 bytes"));
        }
        if name == "." || name == ".." {
            return Err(bad("\".\" and \"..\" are reserved"));
        }
        if name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
        {
            return Err(bad("it contains '/', ':', a NUL or whitespace"));
        }
        Ok(IfName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for IfName {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<IfName, ConfigError> {
        IfName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["ipvl0", "eth0.100", "a", "abcdefghijklmno", "my-slave_1"] {
            assert_eq!(
                IfName::new(name).map(|n| n.to_string()),
                Ok(name.to_owned())
            );
        }
    }

    #[test]
    fn refuses_what_the_kernel_refuses() {
        for name in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "tab\t",
            "abcdefghijklmnop",
        ] {
            let err = IfName::new(name).unwrap_err();
            assert!(err.to_string().contains("invalid interface name"), "{err}");
        }
    }
}
