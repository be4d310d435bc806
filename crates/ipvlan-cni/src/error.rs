//! CNI error objects (CNI spec, section 5 "Error"; codes as libcni `pkg/types` names them).

use serde_json::{json, Value};

/// Well-known CNI error codes, plus libcni's code for any other failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 1.
    IncompatibleVersion,
    /// 2: a field this plugin cannot honour; the message names the key and value.
    UnsupportedField,
    /// 4.
    InvalidEnv,
    /// 6.
    Decoding,
    /// 7.
    InvalidConfig,
    /// 8: `CNI_NETNS` is the plugin's own namespace.
    InvalidNetNs,
    /// 11.
    TryAgainLater,
    /// 50, STATUS: ADD cannot be served (the daemon is down, the master is missing).
    NotAvailable,
    /// 51, STATUS: as 50, and existing containers may have limited connectivity.
    LimitedConnectivity,
    /// 999, libcni's `ErrInternal`.
    Plugin,
    /// A delegated (IPAM) plugin's own code, passed on.
    Delegated(u32),
}

impl Code {
    /// The number the error object carries.
    pub fn value(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::InvalidEnv => 4,
            Code::Decoding => 6,
            Code::InvalidConfig => 7,
            Code::InvalidNetNs => 8,
            Code::TryAgainLater => 11,
            Code::NotAvailable => 50,
            Code::LimitedConnectivity => 51,
            Code::Plugin => 999,
            Code::Delegated(c) => c,
        }
    }
}

/// An error result: `code`, `msg`, `details`.
#[derive(Debug)]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The error object in the caller's CNI `version`.
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({ "cniVersion": version, "code": self.code.value(), "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = json!(self.details);
        }
        v
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}
