//! What the runtime persists per pod (`<data_dir>/pods/<uid>/state.json`), so a
//! restarted agent can find and clean up what a previous run left behind.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

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
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PodState {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
    pub veth: String,
    pub infra: ProcRecord,
    /// Inode of the pod's network namespace (`/proc/<pid>/ns/net`).
    pub netns_inode: u64,
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
