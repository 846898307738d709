//! What a (re)starting agent does with the pods a previous run left: adopt
//! the sandboxes and containers that are still alive, as kubelet does after a
//! restart (the CRI runtime keeps running them and kubelet lists them), and
//! clean up what cannot be adopted.

use super::error::io_ctx;
use super::state::{ContainerRecord, PodState, ProcRecord};
use super::{
    container_finished, infra, lock, net, pod_hostname, process, shim, state, validate_name, veth_name, watch_adopted,
    Container, ContainerShared, Pod, Runtime, RuntimeError, Sandbox, KILL_TIMEOUT,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::watch;

/// Whether the process recorded in `p` still runs (same pid, same start time).
fn alive(p: &ProcRecord) -> bool {
    process::start_time(p.pid) == Some(p.start_time) && !process::is_gone(p.pid)
}

impl Runtime {
    /// After a restart or crash: adopt every sandbox a previous run left that
    /// is still whole (infra process alive and verified by start time and
    /// marker, same network namespace, veth and IP), with its containers:
    /// running ones keep running under their shims, ended ones are reported
    /// with the exit their shim recorded. Sandboxes that cannot be adopted
    /// are killed and removed (IP assignments stay, so a recreated pod gets
    /// its address back), and bridge ports that belong to no sandbox are
    /// removed. Whether an adopted pod is still wanted is the caller's call
    /// ([`Runtime::remove_sandbox`]). Call it before creating sandboxes.
    pub async fn recover(&self) -> Result<(), RuntimeError> {
        let live: HashSet<String> = lock(&self.inner.pods).keys().cloned().collect();
        let pods_dir = self.pods_dir();
        let entries: Vec<String> = match std::fs::read_dir(&pods_dir) {
            Ok(e) => e.flatten().filter_map(|e| e.file_name().to_str().map(str::to_string)).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_ctx(format!("reading {}", pods_dir.display()))(e)),
        };
        let (mut adopted, mut cleaned) = (0, 0);
        for uid in entries {
            if validate_name("pod uid", &uid).is_err()
                || live.contains(&uid)
                || lock(&self.inner.creating).contains(&uid)
            {
                continue;
            }
            match self.adopt(&uid).await {
                Ok(pod) => {
                    tracing::info!(
                        pod = %uid,
                        ip = %pod.sandbox.ip,
                        containers = pod.containers().iter().filter(|c| c.is_running()).count(),
                        "adopted the sandbox of a previous run"
                    );
                    lock(&self.inner.pods).insert(uid, pod);
                    adopted += 1;
                }
                Err(why) => {
                    tracing::info!(pod = %uid, reason = %why, "cleaning up the sandbox of a previous run");
                    self.cleanup_leftovers(&uid).await;
                    let dir = pods_dir.join(&uid);
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!(dir = %dir.display(), error = %e, "removing pod state failed");
                    }
                    cleaned += 1;
                }
            }
        }
        let owned: HashSet<String> = lock(&self.inner.pods).values().map(|p| p.sandbox.veth.clone()).collect();
        for port in net::bridge_ports(&self.inner.cfg.bridge).await? {
            if port.starts_with("veth") && !owned.contains(&port) {
                tracing::info!(veth = %port, "removing leftover veth");
                net::delete_link(&port).await?;
            }
        }
        tracing::info!(adopted, cleaned, "recovered the pod sandboxes of a previous run");
        Ok(())
    }

    /// Take over a sandbox of a previous run; `Err` says why it cannot be.
    async fn adopt(&self, uid: &str) -> Result<Arc<Pod>, String> {
        let dir = self.pods_dir().join(uid);
        let st = state::load(&dir).ok_or("no readable state.json")?;
        if st.uid != uid {
            return Err(format!("state.json is about pod {}", st.uid));
        }
        let infra = st.infra;
        if !alive(&infra) || !process::environ_has(infra.pid, &format!("{}={uid}", infra::MARKER)) {
            return Err(format!("the infra process (pid {}) is gone", infra.pid));
        }
        let open = |kind: &str| {
            process::open_ns(infra.pid, kind).map_err(|e| format!("opening /proc/{}/ns/{kind}: {e}", infra.pid))
        };
        let (netns, utsns, mntns, ipcns) = (open("net")?, open("uts")?, open("mnt")?, open("ipc")?);
        let infra_pidfd = process::pidfd_open(infra.pid);
        // Checked after opening: the namespaces and pidfd are the infra's, not a reused pid's.
        if !alive(&infra) {
            return Err("the infra process ended during adoption".into());
        }
        let netns_inode = process::fd_inode(&netns).map_err(|e| format!("stat of the pod netns: {e}"))?;
        if netns_inode != st.netns_inode {
            return Err(format!("the infra process is in netns {netns_inode}, not {}", st.netns_inode));
        }
        let mntns_inode = process::fd_inode(&mntns).map_err(|e| format!("stat of the pod mount namespace: {e}"))?;
        // A host-network pod has no address of its own and no veth to check.
        if !st.host_network {
            match lock(&self.inner.ipam).assignments().get(uid) {
                Some(ip) if *ip == st.ip => {}
                other => return Err(format!("IPAM assigns {other:?}, the sandbox has {}", st.ip)),
            }
            if !net::link_exists(&st.veth).await {
                return Err(format!("its veth {} is gone", st.veth));
            }
        }
        let mut containers = Vec::new();
        for (name, rec) in &st.containers {
            containers.push(adopt_container(uid, &dir, name, rec)?);
        }
        let watch_fd = infra_pidfd.as_ref().and_then(|f| f.try_clone().ok());
        Ok(Arc::new(Pod {
            sandbox: self.adopted_sandbox(&st),
            dir,
            netns,
            utsns,
            mntns,
            ipcns,
            netns_inode,
            mntns_inode,
            infra,
            infra_pidfd,
            infra_exit: watch_adopted(watch_fd, infra),
            containers: Mutex::new(containers),
        }))
    }

    fn adopted_sandbox(&self, st: &PodState) -> Sandbox {
        let hostname = if st.hostname.is_empty() { pod_hostname("", &st.name) } else { st.hostname.clone() };
        Sandbox {
            uid: st.uid.clone(),
            namespace: st.namespace.clone(),
            name: st.name.clone(),
            hostname,
            ip: st.ip,
            gateway: self.inner.gateway,
            prefix_len: self.inner.net.prefix_len(),
            infra_pid: st.infra.pid,
            veth: st.veth.clone(),
            host_network: st.host_network,
            created_at: st.created_at.unwrap_or_else(SystemTime::now),
        }
    }

    /// Kill and remove what a previous sandbox of `uid` left, going by its state file.
    pub(super) async fn cleanup_leftovers(&self, uid: &str) {
        let dir = self.pods_dir().join(uid);
        let st = state::load(&dir);
        let mut victims = Vec::new();
        if let Some(st) = &st {
            // The namespace whose processes are the pod's: its network namespace, or
            // for a host-network pod (whose network namespace is the node's) its mount namespace.
            let kind = if st.host_network { "mnt" } else { "net" };
            let mut pod_ns = None;
            if alive(&st.infra) && process::environ_has(st.infra.pid, &format!("{}={uid}", infra::MARKER)) {
                victims.push(st.infra.pid);
                pod_ns = process::ns_inode(st.infra.pid, kind);
            }
            for (name, c) in &st.containers {
                if alive(&c.proc) && process::netns_inode(c.proc.pid) == Some(st.netns_inode) {
                    victims.push(c.proc.pid);
                    if !st.host_network {
                        pod_ns.get_or_insert(st.netns_inode);
                    }
                }
                let shim_marker = format!("{}={uid}/{name}", shim::MARKER);
                if let Some(s) = c.shim.filter(|s| alive(s) && process::environ_has(s.pid, &shim_marker)) {
                    victims.push(s.pid);
                }
                for d in &c.cgroups {
                    super::cgroup::kill_all(d);
                }
            }
            if let Some(ino) = pod_ns {
                victims.extend(process::pids_in_ns(kind, ino));
            }
            for &pid in &victims {
                process::kill(pid, libc::SIGKILL);
            }
            if !victims.is_empty() {
                tracing::info!(pod = %uid, pids = ?victims, "killed processes of a previous run");
            }
        }
        if !process::wait_gone(&victims, KILL_TIMEOUT).await {
            tracing::warn!(pod = %uid, "processes of a previous run did not die");
        }
        let veth = st.as_ref().map(|s| s.veth.clone()).unwrap_or_else(|| veth_name(uid, 0));
        let owned = lock(&self.inner.pods).values().any(|p| p.sandbox.veth == veth);
        if !owned && !veth.is_empty() {
            if let Err(e) = net::delete_link(&veth).await {
                tracing::warn!(veth = %veth, error = %e, "removing leftover veth failed");
            }
        }
        self.inner.cgroups.remove_pod(uid).await;
    }
}

/// Take over a container of an adopted sandbox: watch its shim (not our
/// child) through a pidfd; a shim that already ended left the exit record.
fn adopt_container(uid: &str, pod_dir: &Path, name: &str, rec: &ContainerRecord) -> Result<Container, String> {
    validate_name("container name", name).map_err(|e| e.to_string())?;
    let shim_rec = rec.shim.ok_or_else(|| format!("container {name} has no shim (started by an older rkube)"))?;
    let dir = shim::container_dir(pod_dir, name);
    let marker = format!("{}={uid}/{name}", shim::MARKER);
    let shim_fd = (alive(&shim_rec) && process::environ_has(shim_rec.pid, &marker))
        .then(|| process::pidfd_open(shim_rec.pid))
        .flatten();
    let shim_alive = shim_fd.is_some() && alive(&shim_rec);
    let pidfd = process::pidfd_open(rec.proc.pid).filter(|_| alive(&rec.proc));
    let watch_fd = pidfd.as_ref().and_then(|f| f.try_clone().ok());
    // Ended while no agent watched: known right away, so the pod worker sees
    // an exited container rather than a running one that ends a moment later.
    let recorded = if shim_alive { None } else { shim::read_exit(&dir) };
    let (tx, rx) = watch::channel(recorded.clone());
    let (proc, cgroups) = (rec.proc, rec.cgroups.clone());
    tokio::spawn(async move {
        if recorded.is_some() {
            for d in &cgroups {
                super::cgroup::remove_dir(d).await;
            }
            return;
        }
        if shim_alive {
            process::wait_exit(shim_fd, shim_rec.pid, shim_rec.start_time).await;
        }
        let _ = tx.send(Some(container_finished(&dir, proc, watch_fd, &cgroups).await));
    });
    Ok(Container {
        name: name.to_string(),
        pod_uid: uid.to_string(),
        pid: rec.proc.pid,
        started_at: rec.started_at.unwrap_or_else(SystemTime::now),
        log_path: rec.log_path.clone(),
        cgroups: rec.cgroups.clone(),
        shared: Arc::new(ContainerShared {
            exit: rx,
            pidfd,
            start_time: rec.proc.start_time,
            shim: shim_rec,
            env: rec.env.clone(),
            working_dir: rec.working_dir.clone().unwrap_or_else(|| PathBuf::from("/")),
            own_root: rec.own_root,
        }),
    })
}
