//! What the runtime persists per pod (`<data_dir>/pods/<uid>/state.json`), so a
//! restarted agent can adopt the pods a previous run left running, or clean up
//! what it cannot adopt.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A process, identified by pid plus its start time (in clock ticks since boot,
/// `/proc/<pid>/stat` field 22), so a reused pid is never mistaken for ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcRecord {
    pub pid: u32,
    pub start_time: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    pub proc: ProcRecord,
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// The container's shim; `None` in state written before shims existed
    /// (such a container cannot be adopted: its output went to the old agent).
    #[serde(default)]
    pub shim: Option<ProcRecord>,
    #[serde(default)]
    pub started_at: Option<SystemTime>,
    #[serde(default)]
    pub log_path: PathBuf,
    /// The container's environment and working directory (exec uses them).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    /// The container runs in a root filesystem of its own (an image's).
    #[serde(default)]
    pub own_root: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PodState {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub created_at: Option<SystemTime>,
    pub ip: Ipv4Addr,
    pub veth: String,
    pub infra: ProcRecord,
    /// Inode of the pod's network namespace (`/proc/<pid>/ns/net`).
    pub netns_inode: u64,
    /// A `hostNetwork` pod: `netns_inode` is the node's, `veth` is empty and the
    /// IP is the node's (no IPAM assignment).
    #[serde(default)]
    pub host_network: bool,
    #[serde(default)]
    pub containers: BTreeMap<String, ContainerRecord>,
}

pub(crate) const STATE_FILE: &str = "state.json";

pub(crate) fn load(dir: &Path) -> Option<PodState> {
    let bytes = std::fs::read(dir.join(STATE_FILE)).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "unreadable pod state");
            None
        }
    }
}

pub(crate) fn save(dir: &Path, state: &PodState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    write_atomic(&dir.join(STATE_FILE), &bytes)
}

/// Write `bytes` to `path` via a temporary file, fsync and rename, so a crash
/// leaves either the old or the new content.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
