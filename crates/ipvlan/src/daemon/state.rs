//! The daemon's persisted configuration: which slaves exist on which master, in which mode.
//! Written atomically (temporary file, fsync, rename), so a crash leaves either the old or the
//! new file, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "state.json";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// This daemon's identity, part of every slave's alias, so that a daemon only ever
    /// re-attaches its own slaves (several daemons may run in different namespaces).
    #[serde(default)]
    pub instance: String,
    pub ports: Vec<PortState>,
}

/// A fresh random instance id.
pub fn new_instance() -> String {
    let mut b = [0u8; 8];
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    if b == [0u8; 8] {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = ((t as u64) ^ u64::from(std::process::id())).to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortState {
    pub master: String,
    pub master_ifindex: u32,
    pub mode: String,
    pub flag: String,
    pub slaves: Vec<SlaveState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaveState {
    pub name: String,
    pub id: u16,
    pub mtu: u32,
    /// The `ifalias` that identifies the TAP wherever it lives now.
    pub alias: String,
    #[serde(default)]
    pub spoofchk: bool,
}

/// What loading found.
pub enum Loaded {
    Fresh,
    State(State),
    /// Unreadable: kept aside under this name, the daemon starts empty.
    Corrupt {
        kept_as: PathBuf,
        why: String,
    },
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

pub fn load(dir: &Path) -> Result<Loaded> {
    let p = path(dir);
    let bytes = match fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Fresh),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    match serde_json::from_slice::<State>(&bytes) {
        Ok(s) if s.version == VERSION => Ok(Loaded::State(s)),
        Ok(s) => keep_aside(&p, format!("unsupported state version {}", s.version)),
        Err(e) => keep_aside(&p, e.to_string()),
    }
}

fn keep_aside(p: &Path, why: String) -> Result<Loaded> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let kept = p.with_extension(format!("json.corrupt-{stamp}"));
    fs::rename(p, &kept).with_context(|| format!("moving {} aside", p.display()))?;
    Ok(Loaded::Corrupt { kept_as: kept, why })
}

pub fn save(dir: &Path, state: &State) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let p = path(dir);
    let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
    let mut s = state.clone();
    s.version = VERSION;
    let body = serde_json::to_vec_pretty(&s)?;
    {
        let mut f: File = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &p).with_context(|| format!("replacing {}", p.display()))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ipvlan-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_trip_and_fresh() {
        let d = tmpdir("rt");
        assert!(matches!(load(&d).unwrap(), Loaded::Fresh));
        let s = State {
            version: 1,
            instance: "0123456789abcdef".into(),
            ports: vec![PortState {
                master: "m0".into(),
                master_ifindex: 4,
                mode: "l2".into(),
                flag: "bridge".into(),
                slaves: vec![SlaveState {
                    name: "ipvl0".into(),
                    id: 1,
                    mtu: 1500,
                    alias: "ipvlan-rs:4:1".into(),
                    spoofchk: true,
                }],
            }],
        };
        save(&d, &s).unwrap();
        match load(&d).unwrap() {
            Loaded::State(got) => assert_eq!(got, s),
            _ => panic!("expected state"),
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_file_is_kept_aside() {
        let d = tmpdir("corrupt");
        fs::create_dir_all(&d).unwrap();
        fs::write(path(&d), b"{\"version\": 1, \"ports\": [").unwrap();
        match load(&d).unwrap() {
            Loaded::Corrupt { kept_as, why } => {
                assert!(kept_as.exists());
                assert!(!path(&d).exists());
                assert!(why.contains("EOF"), "{why}");
            }
            _ => panic!("expected corrupt"),
        }
        let _ = fs::remove_dir_all(&d);
    }
}
