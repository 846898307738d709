//! Host-local IPAM: one pod CIDR per node, assignments persisted in one JSON
//! file so a pod recreated after an agent restart gets its address back (like
//! the CNI `host-local` plugin, which keeps one file per address).

use super::error::{io_ctx, RuntimeError};
use super::state::write_atomic;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

#[derive(Debug, Default, Serialize, Deserialize)]
struct IpamFile {
    cidr: String,
    /// The last address handed out: allocation goes round-robin from here, so a
    /// released address is not reused at once (host-local does the same).
    #[serde(default)]
    last: Option<Ipv4Addr>,
    #[serde(default)]
    assignments: BTreeMap<String, Ipv4Addr>,
}

pub(crate) struct Ipam {
    path: PathBuf,
    net: Ipv4Net,
    file: IpamFile,
}

impl Ipam {
    /// Load the state file (or start empty). Assignments outside `net`, on the
    /// network, gateway or broadcast address, or duplicated, are dropped.
    pub(crate) fn load(path: PathBuf, net: Ipv4Net) -> Result<Ipam, RuntimeError> {
        let mut file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<IpamFile>(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "IPAM state unreadable; starting empty");
                IpamFile::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => IpamFile::default(),
            Err(e) => return Err(io_ctx(format!("reading {}", path.display()))(e)),
        };
        let mut seen = HashSet::new();
        let before = file.assignments.len();
        file.assignments.retain(|_, ip| usable(net, *ip) && seen.insert(*ip));
        if file.assignments.len() != before {
            tracing::warn!(dropped = before - file.assignments.len(), cidr = %net, "dropped IPAM assignments outside the pod CIDR");
        }
        if file.last.is_some_and(|ip| !usable(net, ip)) {
            file.last = None;
        }
        file.cidr = net.to_string();
        let ipam = Ipam { path, net, file };
        ipam.save()?;
        Ok(ipam)
    }

    pub(crate) fn get(&self, uid: &str) -> Option<Ipv4Addr> {
        self.file.assignments.get(uid).copied()
    }

    pub(crate) fn assignments(&self) -> BTreeMap<String, Ipv4Addr> {
        self.file.assignments.clone()
    }

    /// The address of `uid`: its existing assignment, or the next free one.
    /// Returns whether the address was newly assigned.
    pub(crate) fn allocate(&mut self, uid: &str) -> Result<(Ipv4Addr, bool), RuntimeError> {
        if let Some(ip) = self.get(uid) {
            return Ok((ip, false));
        }
        let used: HashSet<Ipv4Addr> = self.file.assignments.values().copied().collect();
        let first = u32::from(self.net.network()) + 2;
        let last = u32::from(self.net.broadcast()) - 1;
        if first > last {
            return Err(RuntimeError::IpExhausted(self.net));
        }
        let count = last - first + 1;
        let start = match self.file.last {
            Some(ip) => u32::from(ip).saturating_sub(first) + 1,
            None => 0,
        };
        let ip = (0..count)
            .map(|i| Ipv4Addr::from(first + (start + i) % count))
            .find(|ip| !used.contains(ip))
            .ok_or(RuntimeError::IpExhausted(self.net))?;
        self.file.assignments.insert(uid.to_string(), ip);
        self.file.last = Some(ip);
        self.save()?;
        Ok((ip, true))
    }

    pub(crate) fn release(&mut self, uid: &str) -> Result<Option<Ipv4Addr>, RuntimeError> {
        let ip = self.file.assignments.remove(uid);
        if ip.is_some() {
            self.save()?;
        }
        Ok(ip)
    }

    fn save(&self) -> Result<(), RuntimeError> {
        let bytes = serde_json::to_vec_pretty(&self.file)
            .map_err(|e| RuntimeError::InvalidSpec(format!("serializing IPAM state: {e}")))?;
        write_atomic(&self.path, &bytes).map_err(io_ctx(format!("writing {}", self.path.display())))
    }
}

/// The gateway of a pod CIDR: its first host address (on the bridge).
pub(crate) fn gateway(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// Whether `ip` may be given to a pod: inside `net`, not network, gateway or broadcast.
fn usable(net: Ipv4Net, ip: Ipv4Addr) -> bool {
    net.contains(&ip) && ip != net.network() && ip != gateway(net) && ip != net.broadcast()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    #[test]
    fn allocates_skipping_network_gateway_broadcast_and_keeps_assignments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ipam.json");
        let n = net("10.244.7.0/29"); // .0 network, .1 gateway, .2-.6 pods, .7 broadcast
        let mut ipam = Ipam::load(path.clone(), n).expect("load");
        let mut got = Vec::new();
        for i in 0..5 {
            let (ip, new) = ipam.allocate(&format!("pod-{i}")).expect("allocate");
            assert!(new);
            got.push(ip);
        }
        let want: Vec<Ipv4Addr> = (2..=6).map(|h| Ipv4Addr::new(10, 244, 7, h)).collect();
        assert_eq!(got, want);
        assert!(matches!(ipam.allocate("pod-5"), Err(RuntimeError::IpExhausted(_))));
        // Same uid, same address; survives a reload.
        assert_eq!(ipam.allocate("pod-3").expect("again"), (Ipv4Addr::new(10, 244, 7, 5), false));
        drop(ipam);
        let mut ipam = Ipam::load(path.clone(), n).expect("reload");
        assert_eq!(ipam.get("pod-3"), Some(Ipv4Addr::new(10, 244, 7, 5)));
        // A released address is reused only after the others (round robin).
        assert_eq!(ipam.release("pod-1").expect("release"), Some(Ipv4Addr::new(10, 244, 7, 3)));
        assert_eq!(ipam.allocate("pod-new").expect("alloc").0, Ipv4Addr::new(10, 244, 7, 3));
        assert_eq!(ipam.release("nobody").expect("release"), None);
    }

    #[test]
    fn drops_assignments_outside_a_new_cidr_and_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ipam.json");
        std::fs::write(
            &path,
            r#"{"cidr":"10.244.7.0/24","last":"10.244.7.9","assignments":{"a":"10.244.7.9","b":"10.244.8.3","c":"10.244.7.1","d":"10.244.7.9"}}"#,
        )
        .expect("write");
        let ipam = Ipam::load(path, net("10.244.7.0/24")).expect("load");
        let a = ipam.assignments();
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a.get("a"), Some(&Ipv4Addr::new(10, 244, 7, 9)));
    }
}
