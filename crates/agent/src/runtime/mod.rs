//! The node-level pod mechanics that kubelet gets from a CRI runtime and CNI:
//! pod sandboxes (network, UTS and mount namespaces held by an infra process,
//! a veth on the node bridge, host-local IPAM), containers as plain processes
//! joined to those namespaces and to a cgroup with limits, CRI-format log
//! files, exec (piped or on a pty), and recovery from state files under
//! `data_dir`. No container engine, no images: `argv` runs from the node's
//! filesystem.
//!
//! Pods outlive the agent, as containers outlive kubelet and containerd: each
//! container runs under a shim of its own (`shim.rs`) that owns its output and
//! records its exit, and a restarted agent adopts the sandboxes and containers
//! it finds alive ([`Runtime::recover`]).
//!
//! Layout under `data_dir`: `ipam.json` (pod uid -> IP), `runtime.lock`, and
//! `pods/<uid>/` with `state.json`, `resolv.conf`, `hosts`, `infra.log` and
//! `containers/<name>/` (the shim's files).
//!
//! Everything network-related happens in the network namespace the agent runs
//! in (the "node"): the bridge, the veths, `ip_forward`.

mod cgroup;
mod dial;
mod error;
mod infra;
mod ipam;
mod logs;
mod net;
mod process;
mod pty;
mod recover;
mod rootfs;
mod shim;
mod state;

pub use error::RuntimeError;
pub use infra::infra_main;
pub use pty::{PtyMaster, Resizer};
pub use rootfs::{capabilities as capability_mask, RootfsConfig};
pub use shim::shim_main;

use error::io_ctx;
use ipnet::Ipv4Net;
use process::{Joiner, DEFAULT_PATH};
use state::{ContainerRecord, PodState, ProcRecord};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Written by the caller into `SandboxSpec::hosts` (or `resolv_conf`) where the
/// pod's IP belongs; replaced once the IP is allocated.
pub const POD_IP_PLACEHOLDER: &str = "__RKUBE_POD_IP__";

/// How long the infra process may take to report ready.
const INFRA_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a container shim may take to report the container started.
const SHIM_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for killed processes to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    pub data_dir: PathBuf,
    /// The node bridge, e.g. `rkube0`.
    pub bridge: String,
    /// This node's pod CIDR, e.g. 10.244.0.0/24; the gateway (`.1`) goes on the bridge.
    pub pod_cidr: Ipv4Net,
    /// The rkube binary: `<self_exe> pod-infra ...` is each pod's infra
    /// process, `<self_exe> container-shim ...` each container's shim.
    pub self_exe: PathBuf,
    /// MTU of the bridge and the pods' interfaces (the pod network's, below the
    /// node interface's by the overlay's overhead); `None` keeps the kernel's.
    pub mtu: Option<u32>,
}

#[derive(Clone, Debug, Default)]
pub struct SandboxSpec {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The pod's hostname (truncated to 63 characters as kubelet does; the pod name when empty).
    pub hostname: String,
    /// Contents of the pod's `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// Contents of the pod's `/etc/hosts` ([`POD_IP_PLACEHOLDER`] becomes the pod IP).
    pub hosts: String,
    /// Node paths bind-mounted into the pod's mount namespace (its volumes).
    pub mounts: Vec<Mount>,
    /// `Some(node IP)` for a `hostNetwork: true` pod: it shares the node's network
    /// and UTS namespaces (only its mount namespace is its own, as containerd does
    /// for a sandbox with network `NODE`), has no veth and no IPAM address, and its
    /// IP is the node's.
    pub host_network: Option<Ipv4Addr>,
    /// `hostIPC: true`: the pod shares the node's IPC namespace (otherwise its
    /// containers share one of their own: System V IPC and POSIX queues).
    pub host_ipc: bool,
}

/// One volume mount of a pod, at `target` in the pod's mount namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
}

/// What a [`Mount`] shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountSource {
    /// A directory or file of the node, bound.
    Path(PathBuf),
    /// A tmpfs made in the pod's mount namespace (`emptyDir.medium: Memory`),
    /// shared by the pod's containers, gone with the pod; `None`: the kernel's size.
    Tmpfs { size_bytes: Option<u64> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub hostname: String,
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
    pub infra_pid: u32,
    /// Host side of the pod's veth pair (a port of the bridge); empty for a
    /// host-network pod.
    pub veth: String,
    /// Whether the pod shares the node's network namespace ([`SandboxSpec::host_network`]).
    pub host_network: bool,
    pub created_at: SystemTime,
}

#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    pub name: String,
    /// The command line; `argv[0]` is looked up in the env's `PATH` unless it contains a `/`.
    pub argv: Vec<String>,
    /// The whole environment (nothing is inherited from the agent), plus `PATH`
    /// and `HOSTNAME` when not given (what an image and containerd would add).
    pub env: Vec<(String, String)>,
    /// Working directory (default `/`).
    pub working_dir: Option<PathBuf>,
    /// Memory limit in bytes.
    pub memory_limit: Option<u64>,
    /// CPU limit in millicores.
    pub cpu_limit_millis: Option<u64>,
    /// The CRI-format log file stdout and stderr are appended to.
    pub log_path: PathBuf,
    /// An image container's root filesystem; `None`: `argv` runs from the
    /// pod's view of the node's filesystem (built-in and tool images).
    pub rootfs: Option<RootfsConfig>,
}

/// How a process ended. A signal also sets `exit_code` to 128 + signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitInfo {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub finished_at: SystemTime,
}

#[derive(Clone, Debug, Default)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    /// Added to (and overriding) the target container's environment.
    pub env: Vec<(String, String)>,
    /// Run on a pty: `stdout` and `stdin` of the [`ExecProcess`] are its master side.
    pub tty: bool,
    /// Default: the container's working directory.
    pub working_dir: Option<PathBuf>,
}

/// A running (or finished) container. Cheap to clone.
#[derive(Clone)]
pub struct Container {
    pub name: String,
    pub pod_uid: String,
    pub pid: u32,
    pub started_at: SystemTime,
    pub log_path: PathBuf,
    /// The container's cgroup directories (one per hierarchy; empty without cgroups).
    pub cgroups: Vec<PathBuf>,
    shared: Arc<ContainerShared>,
}

struct ContainerShared {
    exit: watch::Receiver<Option<ExitInfo>>,
    pidfd: Option<OwnedFd>,
    start_time: u64,
    /// The container's shim (its parent, which records its exit).
    shim: ProcRecord,
    env: Vec<(String, String)>,
    working_dir: PathBuf,
    /// Runs in a root filesystem of its own (exec joins its mount namespace).
    own_root: bool,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("name", &self.name)
            .field("pod_uid", &self.pod_uid)
            .field("pid", &self.pid)
            .field("exit", &self.exit_info())
            .finish()
    }
}

impl Container {
    /// Wait until the container has exited and its processes and cgroups are
    /// gone (its remaining processes are killed when the main one exits, as at
    /// the end of a PID namespace), and its output is in the log.
    pub async fn wait(&self) -> ExitInfo {
        let mut rx = self.shared.exit.clone();
        let result = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        // The sender only goes away without a value when the tokio runtime shuts down.
        result.unwrap_or(ExitInfo { exit_code: 255, signal: None, finished_at: SystemTime::now() })
    }

    /// How it ended, if it has.
    pub fn exit_info(&self) -> Option<ExitInfo> {
        self.shared.exit.borrow().clone()
    }

    /// Whether it runs in a root filesystem of its own (a pulled image's).
    pub fn own_root(&self) -> bool {
        self.shared.own_root
    }

    pub fn is_running(&self) -> bool {
        self.exit_info().is_none()
    }

    fn signal(&self, sig: libc::c_int) {
        if self.is_running() {
            process::signal(self.shared.pidfd.as_ref(), self.pid, sig);
        }
    }

    fn kill_all(&self) {
        self.signal(libc::SIGKILL);
        if self.is_running() {
            process::kill_group(self.pid, libc::SIGKILL);
        }
        for d in &self.cgroups {
            cgroup::kill_all(d);
        }
    }
}

/// A reader of an exec's output (a pipe, or the pty master).
pub type ExecReader = Box<dyn AsyncRead + Send + Unpin>;
/// A writer to an exec's input (a pipe, or the pty master).
pub type ExecWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// A process started by [`Runtime::exec`]. With a tty, `stdout` reads and
/// `stdin` writes the pty master, and `stderr` is `None` (merged, as with
/// `kubectl exec -t`).
pub struct ExecProcess {
    pub pid: u32,
    pub stdin: Option<ExecWriter>,
    pub stdout: Option<ExecReader>,
    pub stderr: Option<ExecReader>,
    /// The pty master, when `tty` was asked for.
    pub pty: Option<PtyMaster>,
    child: Child,
}

impl ExecProcess {
    /// Resizes the terminal (`None` without a tty).
    pub fn resizer(&self) -> Option<Resizer> {
        self.pty.as_ref().map(PtyMaster::resizer)
    }

    /// Wait for the exit code (128 + signal when killed by one). Output not
    /// taken by the caller is read and discarded so the process cannot block
    /// on a full pipe; stdin not taken is closed.
    pub async fn wait(self) -> Result<i32, RuntimeError> {
        Ok(self.wait_info().await?.exit_code)
    }

    pub async fn wait_info(mut self) -> Result<ExitInfo, RuntimeError> {
        self.stdin = None;
        for mut r in [self.stdout.take(), self.stderr.take()].into_iter().flatten() {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
            });
        }
        let status = self.child.wait().await.map_err(io_ctx("waiting for exec process"))?;
        Ok(process::exit_info(Ok(status)))
    }

    /// SIGKILL the process.
    pub fn kill(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The pod runtime of one node. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RuntimeConfig,
    net: Ipv4Net,
    gateway: Ipv4Addr,
    ipam: Mutex<ipam::Ipam>,
    pods: Mutex<HashMap<String, Arc<Pod>>>,
    /// Pods whose sandbox is being created right now.
    creating: Mutex<HashSet<String>>,
    cgroups: cgroup::Cgroups,
    /// Held (flock) for the runtime's lifetime: one runtime per data dir.
    _lock: File,
}

struct Pod {
    sandbox: Sandbox,
    dir: PathBuf,
    netns: OwnedFd,
    utsns: OwnedFd,
    mntns: OwnedFd,
    ipcns: OwnedFd,
    netns_inode: u64,
    /// Inode of the pod's own mount namespace: what finds a host-network pod's
    /// processes (its network namespace is the node's).
    mntns_inode: u64,
    infra: ProcRecord,
    infra_pidfd: Option<OwnedFd>,
    infra_exit: watch::Receiver<Option<ExitInfo>>,
    /// In start order; a restarted container replaces its predecessor.
    containers: Mutex<Vec<Container>>,
}

impl Pod {
    fn containers(&self) -> Vec<Container> {
        lock(&self.containers).clone()
    }

    fn container(&self, name: &str) -> Option<Container> {
        lock(&self.containers).iter().find(|c| c.name == name).cloned()
    }

    fn namespaces(&self) -> Vec<(std::os::fd::RawFd, libc::c_int)> {
        vec![
            (self.netns.as_raw_fd(), libc::CLONE_NEWNET),
            (self.utsns.as_raw_fd(), libc::CLONE_NEWUTS),
            (self.ipcns.as_raw_fd(), libc::CLONE_NEWIPC),
            (self.mntns.as_raw_fd(), libc::CLONE_NEWNS),
        ]
    }

    fn state(&self) -> PodState {
        PodState {
            uid: self.sandbox.uid.clone(),
            namespace: self.sandbox.namespace.clone(),
            name: self.sandbox.name.clone(),
            hostname: self.sandbox.hostname.clone(),
            created_at: Some(self.sandbox.created_at),
            ip: self.sandbox.ip,
            veth: self.sandbox.veth.clone(),
            infra: self.infra,
            netns_inode: self.netns_inode,
            host_network: self.sandbox.host_network,
            containers: self
                .containers()
                .into_iter()
                .map(|c| {
                    let record = ContainerRecord {
                        proc: ProcRecord { pid: c.pid, start_time: c.shared.start_time },
                        cgroups: c.cgroups.clone(),
                        shim: Some(c.shared.shim),
                        started_at: Some(c.started_at),
                        log_path: c.log_path.clone(),
                        env: c.shared.env.clone(),
                        working_dir: Some(c.shared.working_dir.clone()),
                        own_root: c.shared.own_root,
                    };
                    (c.name.clone(), record)
                })
                .collect(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pod uids and container names become file and cgroup names: keep them tame.
fn validate_name(what: &str, s: &str) -> Result<(), RuntimeError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::InvalidSpec(format!("{what} {s:?} is not a valid name")))
    }
}

/// The pod's hostname: as kubelet, at most 63 characters, no trailing `-`/`.`.
fn pod_hostname(hostname: &str, name: &str) -> String {
    let h = if hostname.is_empty() { name } else { hostname };
    let h: String = h.chars().take(63).collect();
    h.trim_end_matches(['-', '.']).to_string()
}

/// The node's hostname (what a host-network pod sees: it shares the node's UTS namespace).
fn node_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// `veth` + 8 hex digits of a hash of the uid (salted on a collision).
fn veth_name(uid: &str, salt: u32) -> String {
    let mut data = uid.as_bytes().to_vec();
    if salt > 0 {
        data.extend_from_slice(format!("#{salt}").as_bytes());
    }
    format!("veth{:08x}", fnv1a(&data))
}

fn env_value<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Start a tokio task that reaps `child` and publishes how it ended.
fn watch_exit(mut child: Child) -> watch::Receiver<Option<ExitInfo>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let status = child.wait().await;
        let _ = tx.send(Some(process::exit_info(status)));
    });
    rx
}

/// Watch a process that is not our child (adopted from a previous agent run):
/// its exit code is unknown, so it is reported as 255.
fn watch_adopted(pidfd: Option<OwnedFd>, proc: ProcRecord) -> watch::Receiver<Option<ExitInfo>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        process::wait_exit(pidfd, proc.pid, proc.start_time).await;
        let _ = tx.send(Some(ExitInfo { exit_code: 255, signal: None, finished_at: SystemTime::now() }));
    });
    rx
}

/// After a container's shim has ended: how the container ended (as the shim
/// recorded it), with its cgroups removed. A shim that died without a record
/// (killed) may have left the container running: that is killed, and the exit
/// is unknown (255, what containerd reports when it lost a task's status).
async fn container_finished(dir: &Path, proc: ProcRecord, pidfd: Option<OwnedFd>, cgroups: &[PathBuf]) -> ExitInfo {
    let info = match shim::read_exit(dir) {
        Some(info) => info,
        None => {
            tracing::warn!(dir = %dir.display(), pid = proc.pid, "container shim ended without recording the exit");
            if pidfd.is_some() || process::start_time(proc.pid) == Some(proc.start_time) {
                process::signal(pidfd.as_ref(), proc.pid, libc::SIGKILL);
            }
            for d in cgroups {
                cgroup::kill_all(d);
            }
            ExitInfo { exit_code: 255, signal: None, finished_at: SystemTime::now() }
        }
    };
    for d in cgroups {
        cgroup::remove_dir(d).await;
    }
    info
}

/// Removes the uid from `creating` when dropped.
struct Creating<'a> {
    inner: &'a Inner,
    uid: String,
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        lock(&self.inner.creating).remove(&self.uid);
    }
}

impl Runtime {
    /// Set up the node: the bridge with the gateway address, `ip_forward`,
    /// `bridge-nf-call-iptables`, the cgroup hierarchies, and the IPAM state.
    /// Call [`Runtime::recover`] next, before creating sandboxes.
    pub async fn new(cfg: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let net = cfg.pod_cidr.trunc();
        if net.prefix_len() > 30 {
            return Err(RuntimeError::InvalidSpec(format!("pod CIDR {net} has no room for pods")));
        }
        if cfg.bridge.is_empty() || cfg.bridge.len() > 15 || cfg.bridge.contains(['/', ' ']) {
            return Err(RuntimeError::InvalidSpec(format!("bad bridge name {:?}", cfg.bridge)));
        }
        let pods_dir = cfg.data_dir.join("pods");
        std::fs::create_dir_all(&pods_dir).map_err(io_ctx(format!("creating {}", pods_dir.display())))?;
        let lock_path = cfg.data_dir.join("runtime.lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_ctx(format!("opening {}", lock_path.display())))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(lock_file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } < 0 {
            return Err(RuntimeError::Locked(cfg.data_dir.display().to_string()));
        }
        let ipam = ipam::Ipam::load(cfg.data_dir.join("ipam.json"), net)?;
        let gateway = ipam::gateway(net);
        net::setup_node(&cfg.bridge, gateway, net.prefix_len(), cfg.mtu).await?;
        let cgroups = tokio::task::spawn_blocking(cgroup::Cgroups::detect)
            .await
            .map_err(|e| RuntimeError::Io { context: "detecting cgroups".into(), source: std::io::Error::other(e) })?;
        tracing::info!(bridge = %cfg.bridge, gateway = %gateway, cidr = %net, cgroups = ?cgroups.layout(), "pod runtime ready");
        Ok(Runtime {
            inner: Arc::new(Inner {
                cfg,
                net,
                gateway,
                ipam: Mutex::new(ipam),
                pods: Mutex::new(HashMap::new()),
                creating: Mutex::new(HashSet::new()),
                cgroups,
                _lock: lock_file,
            }),
        })
    }

    fn pods_dir(&self) -> PathBuf {
        self.inner.cfg.data_dir.join("pods")
    }

    fn pod(&self, uid: &str) -> Result<Arc<Pod>, RuntimeError> {
        lock(&self.inner.pods).get(uid).cloned().ok_or_else(|| RuntimeError::SandboxNotFound(uid.to_string()))
    }

    /// The sandbox of a pod, if it exists.
    pub fn sandbox(&self, uid: &str) -> Option<Sandbox> {
        lock(&self.inner.pods).get(uid).map(|p| p.sandbox.clone())
    }

    /// All sandboxes on this node.
    pub fn sandboxes(&self) -> Vec<Sandbox> {
        lock(&self.inner.pods).values().map(|p| p.sandbox.clone()).collect()
    }

    /// The latest container of this name in a pod (running or exited).
    pub fn container(&self, uid: &str, name: &str) -> Option<Container> {
        self.pod(uid).ok()?.container(name)
    }

    /// The latest container of each name in a pod, in start order.
    pub fn containers(&self, uid: &str) -> Vec<Container> {
        self.pod(uid).map(|p| p.containers()).unwrap_or_default()
    }

    /// Whether the pod's infra process still runs (a dead one means a broken
    /// sandbox: remove and recreate it).
    pub fn infra_alive(&self, uid: &str) -> bool {
        self.pod(uid).is_ok_and(|p| p.infra_exit.borrow().is_none())
    }

    /// The persistent IP assignments (pod uid -> IP), including pods without a
    /// sandbox right now.
    pub fn ip_assignments(&self) -> BTreeMap<String, Ipv4Addr> {
        lock(&self.inner.ipam).assignments()
    }

    /// The bridge's address (the pods' default gateway).
    pub fn gateway(&self) -> Ipv4Addr {
        self.inner.gateway
    }

    /// Create a pod sandbox (see the module docs). Idempotent: an existing
    /// sandbox of the uid is returned as it is.
    pub async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<Sandbox, RuntimeError> {
        validate_name("pod uid", &spec.uid)?;
        if let Some(sb) = self.sandbox(&spec.uid) {
            return Ok(sb);
        }
        if !lock(&self.inner.creating).insert(spec.uid.clone()) {
            return Err(RuntimeError::InvalidSpec(format!("the sandbox of pod {} is being created already", spec.uid)));
        }
        let _creating = Creating { inner: &self.inner, uid: spec.uid.clone() };
        let started = std::time::Instant::now();
        let (ip, fresh) = match spec.host_network {
            Some(node_ip) => (node_ip, false),
            None => lock(&self.inner.ipam).allocate(&spec.uid)?,
        };
        match self.build_sandbox(spec, ip).await {
            Ok(pod) => {
                let sb = pod.sandbox.clone();
                lock(&self.inner.pods).insert(spec.uid.clone(), pod);
                tracing::debug!(pod = %spec.uid, ip = %ip, elapsed = ?started.elapsed(), "sandbox created");
                Ok(sb)
            }
            Err(e) => {
                if fresh {
                    let _ = lock(&self.inner.ipam).release(&spec.uid);
                }
                Err(e)
            }
        }
    }

    async fn build_sandbox(&self, spec: &SandboxSpec, ip: Ipv4Addr) -> Result<Arc<Pod>, RuntimeError> {
        let uid = spec.uid.as_str();
        let dir = self.pods_dir().join(uid);
        if dir.exists() {
            // Left by a previous run that crashed before recover() ran.
            self.cleanup_leftovers(uid).await;
        }
        std::fs::create_dir_all(&dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
        let ip_s = ip.to_string();
        for (file, content) in [("resolv.conf", &spec.resolv_conf), ("hosts", &spec.hosts)] {
            let path = dir.join(file);
            std::fs::write(&path, content.replace(POD_IP_PLACEHOLDER, &ip_s))
                .map_err(io_ctx(format!("writing {}", path.display())))?;
        }
        let host_network = spec.host_network.is_some();
        // A host-network pod keeps the node's hostname (its UTS namespace is the node's).
        let hostname = if host_network { node_hostname() } else { pod_hostname(&spec.hostname, &spec.name) };
        let veth = if host_network {
            String::new()
        } else {
            let taken: HashSet<String> = lock(&self.inner.pods).values().map(|p| p.sandbox.veth.clone()).collect();
            let veth = (0u32..64)
                .map(|salt| veth_name(uid, salt))
                .find(|n| !taken.contains(n))
                .unwrap_or_else(|| veth_name(uid, 0));
            if net::link_exists(&veth).await {
                // Not a live pod's (checked above): a leftover.
                net::delete_link(&veth).await?;
            }
            veth
        };

        let mut child = self.spawn_infra(uid, &hostname, &dir, &spec.mounts, host_network, spec.host_ipc).await?;
        let pid = child.id().unwrap_or(0);
        let setup = async {
            let open =
                |kind: &str| process::open_ns(pid, kind).map_err(io_ctx(format!("opening /proc/{pid}/ns/{kind}")));
            let (netns, utsns, mntns, ipcns) = (open("net")?, open("uts")?, open("mnt")?, open("ipc")?);
            let netns_inode = process::fd_inode(&netns).map_err(io_ctx("stat of the pod netns"))?;
            let mntns_inode = process::fd_inode(&mntns).map_err(io_ctx("stat of the pod mount namespace"))?;
            let start_time =
                process::start_time(pid).ok_or_else(|| RuntimeError::Infra("exited during setup".into()))?;
            if !host_network {
                net::add_veth(&self.inner.cfg.bridge, &veth, pid, self.inner.cfg.mtu).await?;
                net::configure_pod(netns.as_raw_fd(), ip, self.inner.net.prefix_len(), self.inner.gateway).await?;
            }
            Ok::<_, RuntimeError>((netns, utsns, mntns, ipcns, netns_inode, mntns_inode, start_time))
        };
        let (netns, utsns, mntns, ipcns, netns_inode, mntns_inode, start_time) = match setup.await {
            Ok(v) => v,
            Err(e) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                if !host_network {
                    let _ = net::delete_link(&veth).await;
                }
                return Err(e);
            }
        };
        let infra_pidfd = process::pidfd_open(pid);
        let pod = Arc::new(Pod {
            sandbox: Sandbox {
                uid: uid.to_string(),
                namespace: spec.namespace.clone(),
                name: spec.name.clone(),
                hostname,
                ip,
                gateway: self.inner.gateway,
                prefix_len: self.inner.net.prefix_len(),
                infra_pid: pid,
                veth,
                host_network,
                created_at: SystemTime::now(),
            },
            dir,
            netns,
            utsns,
            mntns,
            ipcns,
            netns_inode,
            mntns_inode,
            infra: ProcRecord { pid, start_time },
            infra_pidfd,
            infra_exit: watch_exit(child),
            containers: Mutex::new(Vec::new()),
        });
        if let Err(e) = state::save(&pod.dir, &pod.state()) {
            let _ = self.teardown(&pod).await;
            return Err(io_ctx(format!("writing {}", pod.dir.join(state::STATE_FILE).display()))(e));
        }
        Ok(pod)
    }

    /// Start `<self_exe> pod-infra ...` in new net, UTS and mount namespaces
    /// (only a mount namespace for a host-network pod) and wait until it reports ready.
    async fn spawn_infra(
        &self,
        uid: &str,
        hostname: &str,
        dir: &Path,
        mounts: &[Mount],
        host_network: bool,
        host_ipc: bool,
    ) -> Result<Child, RuntimeError> {
        let (ready_r, ready_w) = process::pipe().map_err(io_ctx("creating a pipe"))?;
        let log_path = dir.join("infra.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_ctx(format!("opening {}", log_path.display())))?;
        let exe = &self.inner.cfg.self_exe;
        let mut cmd = Command::new(exe);
        cmd.args(["pod-infra", "--uid", uid]);
        if host_network {
            cmd.arg("--host-network");
        } else {
            cmd.args(["--hostname", hostname]);
        }
        let mut namespaces =
            if host_network { libc::CLONE_NEWNS } else { libc::CLONE_NEWNET | libc::CLONE_NEWUTS | libc::CLONE_NEWNS };
        if host_ipc {
            cmd.arg("--host-ipc");
        } else {
            namespaces |= libc::CLONE_NEWIPC;
        }
        cmd.arg("--resolv-conf").arg(dir.join("resolv.conf")).arg("--hosts").arg(dir.join("hosts"));
        for m in mounts {
            match &m.source {
                MountSource::Path(src) => {
                    let flag = if m.read_only { "--mount" } else { "--mount-rw" };
                    cmd.arg(flag).arg(format!("{}:{}", src.display(), m.target));
                }
                MountSource::Tmpfs { size_bytes } => {
                    let size = size_bytes.map(|s| s.to_string()).unwrap_or_default();
                    cmd.arg("--tmpfs").arg(format!("{size}:{}", m.target));
                }
            }
        }
        cmd.args(["--ready-fd", "3"]);
        cmd.env_clear().env("PATH", DEFAULT_PATH).env(infra::MARKER, uid);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(log));
        let wfd = ready_w.as_raw_fd();
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if wfd == 3 {
                    let flags = libc::fcntl(3, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(wfd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::unshare(namespaces) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(io_ctx(format!("starting {} pod-infra", exe.display())))?;
        drop(cmd);
        drop(ready_w);
        let reader = tokio::task::spawn_blocking(move || {
            let mut f = File::from(ready_r);
            let mut first = [0u8; 1];
            match f.read(&mut first) {
                Ok(1) if first[0] == b'R' => Ok(()),
                Ok(1) => {
                    let mut msg = String::new();
                    let _ = f.read_to_string(&mut msg);
                    Err(msg)
                }
                _ => Err(String::new()),
            }
        });
        let failure = match tokio::time::timeout(INFRA_READY_TIMEOUT, reader).await {
            Ok(Ok(Ok(()))) => return Ok(child),
            Ok(Ok(Err(msg))) if !msg.is_empty() => msg,
            Ok(_) => {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                format!("exited before it was ready: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | "))
            }
            Err(_) => format!("not ready after {INFRA_READY_TIMEOUT:?}"),
        };
        let _ = child.start_kill();
        let _ = child.wait().await;
        Err(RuntimeError::Infra(failure))
    }

    /// Start a container in the sandbox (see the module docs). A container of
    /// the same name must have exited; the new one replaces it.
    pub async fn start_container(&self, sandbox: &Sandbox, spec: &ContainerSpec) -> Result<Container, RuntimeError> {
        validate_name("container name", &spec.name)?;
        let pod = self.pod(&sandbox.uid)?;
        let argv0 = spec.argv.first().ok_or_else(|| RuntimeError::InvalidSpec("empty command".into()))?;
        if pod.container(&spec.name).is_some_and(|c| c.is_running()) {
            return Err(RuntimeError::AlreadyRunning(spec.name.clone()));
        }
        let mut env = spec.env.clone();
        if env_value(&env, "PATH").is_none() {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        if env_value(&env, "HOSTNAME").is_none() {
            env.push(("HOSTNAME".into(), pod.sandbox.hostname.clone()));
        }
        let working_dir = spec.working_dir.clone().unwrap_or_else(|| PathBuf::from("/"));
        // An image container's command and directory are looked up in its own
        // rootfs, by the shim (see rootfs.rs).
        let exe = match &spec.rootfs {
            Some(_) => PathBuf::from(argv0),
            None => process::resolve_executable(argv0, env_value(&env, "PATH").unwrap_or(DEFAULT_PATH))
                .ok_or_else(|| RuntimeError::ExecutableNotFound(argv0.clone()))?,
        };
        if spec.rootfs.is_none() && !working_dir.is_dir() {
            return Err(RuntimeError::InvalidSpec(format!(
                "working directory {} does not exist",
                working_dir.display()
            )));
        }
        if let Some(parent) = spec.log_path.parent() {
            std::fs::create_dir_all(parent).map_err(io_ctx(format!("creating {}", parent.display())))?;
        }
        let cgroups =
            self.inner.cgroups.create(&sandbox.uid, &spec.name, spec.memory_limit, spec.cpu_limit_millis).await;
        let dir = shim::container_dir(&pod.dir, &spec.name);
        let config = shim::ShimConfig {
            pod_uid: sandbox.uid.clone(),
            name: spec.name.clone(),
            exe: exe.clone(),
            argv: spec.argv.clone(),
            env: env.clone(),
            working_dir: working_dir.clone(),
            log_path: spec.log_path.clone(),
            cgroups: cgroups.clone(),
            rootfs: spec.rootfs.clone(),
        };
        let (mut child, pid, start_time) = match self.spawn_shim(&pod, &dir, &config).await {
            Ok(v) => v,
            Err(e) => {
                for d in &cgroups {
                    cgroup::remove_dir(d).await;
                }
                return Err(e);
            }
        };
        let started_at = SystemTime::now();
        let shim_pid = child.id().unwrap_or(0);
        let shim_rec = ProcRecord { pid: shim_pid, start_time: process::start_time(shim_pid).unwrap_or(0) };
        // A pidfd only if the pid is still the container (it may have ended already).
        let pidfd = process::pidfd_open(pid).filter(|_| process::start_time(pid) == Some(start_time));
        let proc = ProcRecord { pid, start_time };
        let watch_fd = pidfd.as_ref().and_then(|f| f.try_clone().ok());
        let (tx, rx) = watch::channel(None);
        let dirs = cgroups.clone();
        let shim_dir = dir.clone();
        tokio::spawn(async move {
            // The shim ends right after its container, having recorded the exit.
            if let Err(e) = child.wait().await {
                tracing::warn!(pid = shim_pid, error = %e, "waiting for a container shim failed");
            }
            let _ = tx.send(Some(container_finished(&shim_dir, proc, watch_fd, &dirs).await));
        });
        let container = Container {
            name: spec.name.clone(),
            pod_uid: sandbox.uid.clone(),
            pid,
            started_at,
            log_path: spec.log_path.clone(),
            cgroups,
            shared: Arc::new(ContainerShared {
                exit: rx,
                pidfd,
                start_time,
                shim: shim_rec,
                env,
                working_dir,
                own_root: spec.rootfs.is_some(),
            }),
        };
        {
            let mut list = lock(&pod.containers);
            list.retain(|c| c.name != spec.name);
            list.push(container.clone());
        }
        if let Err(e) = state::save(&pod.dir, &pod.state()) {
            tracing::warn!(pod = %sandbox.uid, error = %e, "saving pod state failed");
        }
        Ok(container)
    }

    /// Start the shim of a container (see `shim.rs`) in the pod's namespaces
    /// and a session of its own, and wait until it reports the container
    /// started: (the shim, the container's pid and start time).
    async fn spawn_shim(
        &self,
        pod: &Pod,
        dir: &Path,
        config: &shim::ShimConfig,
    ) -> Result<(Child, u32, u64), RuntimeError> {
        std::fs::create_dir_all(dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
        let exit_file = dir.join(shim::EXIT_FILE);
        match std::fs::remove_file(&exit_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_ctx(format!("removing {}", exit_file.display()))(e)),
        }
        let config_path = dir.join(shim::CONFIG_FILE);
        let bytes = serde_json::to_vec_pretty(config).map_err(|e| io_ctx("encoding the shim config")(e.into()))?;
        state::write_atomic(&config_path, &bytes).map_err(io_ctx(format!("writing {}", config_path.display())))?;
        let log_path = dir.join(shim::LOG_FILE);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_ctx(format!("opening {}", log_path.display())))?;
        let (ready_r, ready_w) = process::pipe().map_err(io_ctx("creating a pipe"))?;
        let marker = format!("{}/{}", config.pod_uid, config.name);
        let mut cmd = shim::command(&self.inner.cfg.self_exe, dir, &marker);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(log));
        let joiner = Joiner {
            setsid: true,
            cgroup_procs: Vec::new(),
            namespaces: pod.namespaces(),
            workdir: Some(c"/".to_owned()),
            controlling_tty: false,
            user: None,
        };
        let wfd = ready_w.as_raw_fd();
        // SAFETY: only async-signal-safe system calls between fork and exec;
        // the namespace fds stay open (`pod` is alive) until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                joiner.apply()?;
                process::inherit_as_fd3(wfd)
            });
        }
        let spawned = cmd.spawn();
        drop(cmd);
        drop(ready_w);
        let exe = &self.inner.cfg.self_exe;
        let mut child = spawned.map_err(io_ctx(format!("starting {} container-shim", exe.display())))?;
        let reader = tokio::task::spawn_blocking(move || {
            let mut msg = String::new();
            let _ = File::from(ready_r).read_to_string(&mut msg);
            msg
        });
        let msg = match tokio::time::timeout(SHIM_READY_TIMEOUT, reader).await {
            Ok(Ok(msg)) => msg,
            Ok(Err(_)) => String::new(),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(RuntimeError::Shim(format!("no report after {SHIM_READY_TIMEOUT:?}")));
            }
        };
        match shim::parse_ready(&msg) {
            Some(shim::Ready::Started { pid, start_time }) => Ok((child, pid, start_time)),
            Some(shim::Ready::Failed { errno, message }) => {
                let _ = child.wait().await;
                let context = format!("starting container {} ({})", config.name, config.exe.display());
                let source =
                    if errno > 0 { std::io::Error::from_raw_os_error(errno) } else { std::io::Error::other(message) };
                Err(RuntimeError::Io { context, source })
            }
            None => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail = tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
                Err(RuntimeError::Shim(format!("exited before reporting: {tail}")))
            }
        }
    }

    /// SIGTERM the container's main process, SIGKILL everything in the
    /// container after `grace`; returns how it ended.
    pub async fn stop_container(&self, c: &Container, grace: Duration) -> Result<ExitInfo, RuntimeError> {
        if let Some(e) = c.exit_info() {
            return Ok(e);
        }
        c.signal(libc::SIGTERM);
        if let Ok(e) = tokio::time::timeout(grace, c.wait()).await {
            return Ok(e);
        }
        c.kill_all();
        tokio::time::timeout(Duration::from_secs(10), c.wait()).await.map_err(|_| {
            RuntimeError::Timeout(format!("container {} (pid {}) did not die after SIGKILL", c.name, c.pid))
        })
    }

    /// Run a command in the pod, in the first container's cgroup and
    /// environment (see [`Runtime::exec_in`]).
    /// Connect to `localhost:port` inside the pod's network namespace (what
    /// `kubectl port-forward` reaches). The error is containerd's text.
    pub async fn connect_in_pod(&self, uid: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
        let pod = self.pod(uid).map_err(|e| e.to_string())?;
        let netns = pod.netns.try_clone().map_err(|e| format!("duplicating the pod's netns handle: {e}"))?;
        dial::connect_localhost(netns, uid.to_string(), port).await
    }

    pub async fn exec(&self, sandbox: &Sandbox, spec: &ExecSpec) -> Result<ExecProcess, RuntimeError> {
        self.exec_in(sandbox, None, spec).await
    }

    /// Run a command in the pod's namespaces, joined to the cgroup of
    /// `container` (default: the first started) while it runs, with its
    /// environment plus `spec.env` and its working directory unless
    /// `spec.working_dir` says otherwise.
    pub async fn exec_in(
        &self,
        sandbox: &Sandbox,
        container: Option<&str>,
        spec: &ExecSpec,
    ) -> Result<ExecProcess, RuntimeError> {
        let pod = self.pod(&sandbox.uid)?;
        let argv0 = spec.argv.first().ok_or_else(|| RuntimeError::InvalidSpec("empty command".into()))?;
        let target = match container {
            Some(name) => Some(pod.container(name).ok_or_else(|| {
                RuntimeError::InvalidSpec(format!("container {name} not found in pod {}", sandbox.uid))
            })?),
            None => pod.containers().into_iter().find(Container::is_running),
        };
        let mut env: Vec<(String, String)> = target.as_ref().map(|c| c.shared.env.clone()).unwrap_or_default();
        env.extend(spec.env.iter().cloned());
        if env_value(&env, "PATH").is_none() {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        let path_env = env_value(&env, "PATH").unwrap_or(DEFAULT_PATH).to_string();
        // An image container: its mount namespace, its user, its PATH inside its rootfs.
        let own_root = target.as_ref().filter(|c| c.shared.own_root && c.is_running());
        let (exe, mntns, user) = match own_root {
            Some(c) => {
                let root = PathBuf::from(format!("/proc/{}/root", c.pid));
                let exe = rootfs::find_executable(&root, argv0, &path_env)
                    .ok_or_else(|| RuntimeError::ExecutableNotFound(argv0.clone()))?;
                let ns = process::open_ns(c.pid, "mnt").map_err(io_ctx(format!("opening /proc/{}/ns/mnt", c.pid)))?;
                (exe, Some(ns), process::identity(c.pid))
            }
            None => (
                process::resolve_executable(argv0, &path_env)
                    .ok_or_else(|| RuntimeError::ExecutableNotFound(argv0.clone()))?,
                None,
                None,
            ),
        };
        let working_dir = spec
            .working_dir
            .clone()
            .or_else(|| target.as_ref().map(|c| c.shared.working_dir.clone()))
            .unwrap_or_else(|| PathBuf::from("/"));
        let workdir_c = process::cstring(working_dir.as_os_str()).map_err(io_ctx("working directory"))?;
        let cgroups = target.as_ref().filter(|c| c.is_running()).map(|c| c.cgroups.clone()).unwrap_or_default();
        let mut namespaces = pod.namespaces();
        if let Some(ns) = &mntns {
            namespaces.retain(|(_, kind)| *kind != libc::CLONE_NEWNS);
            namespaces.push((ns.as_raw_fd(), libc::CLONE_NEWNS));
        }
        let joiner = Joiner {
            setsid: true,
            cgroup_procs: cgroup::open_procs(&cgroups),
            namespaces,
            workdir: Some(workdir_c),
            controlling_tty: spec.tty,
            user,
        };
        let mut cmd = Command::new(&exe);
        cmd.arg0(argv0).args(&spec.argv[1..]).env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        let pty = if spec.tty {
            let (master, slave) = PtyMaster::open().map_err(io_ctx("opening a pty"))?;
            let dup = |fd: &OwnedFd| fd.try_clone().map_err(io_ctx("duplicating the pty slave"));
            cmd.stdin(Stdio::from(dup(&slave)?)).stdout(Stdio::from(dup(&slave)?)).stderr(Stdio::from(slave));
            Some(master)
        } else {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
            None
        };
        // SAFETY: as in start_container.
        unsafe {
            cmd.pre_exec(move || joiner.apply());
        }
        let spawned = cmd.spawn();
        // Closes our copies of the pty slave, so the master sees EOF when the process ends.
        drop(cmd);
        let mut child = spawned.map_err(io_ctx(format!("exec of {} in pod {}", exe.display(), sandbox.uid)))?;
        let pid = child.id().unwrap_or(0);
        let (stdin, stdout, stderr): (Option<ExecWriter>, Option<ExecReader>, Option<ExecReader>) = match &pty {
            Some(m) => (Some(Box::new(m.clone())), Some(Box::new(m.clone())), None),
            None => (
                child.stdin.take().map(|w| Box::new(w) as ExecWriter),
                child.stdout.take().map(|r| Box::new(r) as ExecReader),
                child.stderr.take().map(|r| Box::new(r) as ExecReader),
            ),
        };
        Ok(ExecProcess { pid, stdin, stdout, stderr, pty, child })
    }

    /// Kill everything in the pod, delete its veth, release its IP, remove its
    /// cgroups and state. Removing an unknown pod is not an error (its IP
    /// assignment and any leftovers of a previous run are cleaned up).
    pub async fn remove_sandbox(&self, uid: &str) -> Result<(), RuntimeError> {
        validate_name("pod uid", uid)?;
        // Let a concurrent create finish first, so it cannot re-add what we remove.
        for _ in 0..3000 {
            if !lock(&self.inner.creating).contains(uid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pod = lock(&self.inner.pods).remove(uid);
        let veth_result = match pod {
            Some(pod) => self.teardown(&pod).await,
            None => {
                self.cleanup_leftovers(uid).await;
                Ok(())
            }
        };
        lock(&self.inner.ipam).release(uid)?;
        let dir = self.pods_dir().join(uid);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_ctx(format!("removing {}", dir.display()))(e)),
        }
        veth_result
    }

    /// Remove every sandbox of this runtime (for a node that shuts down for
    /// good, and for tests: pods otherwise outlive the agent, as with kubelet).
    pub async fn remove_all(&self) -> Result<(), RuntimeError> {
        let uids: Vec<String> = lock(&self.inner.pods).keys().cloned().collect();
        let results = futures::future::join_all(uids.iter().map(|uid| self.remove_sandbox(uid))).await;
        results.into_iter().collect()
    }

    /// Kill every process of a pod, wait for them, delete the veth and cgroups.
    async fn teardown(&self, pod: &Pod) -> Result<(), RuntimeError> {
        let containers = pod.containers();
        for c in &containers {
            c.kill_all();
        }
        // Containers first, so their shims can record how they ended; then
        // whatever else runs in the pod's network namespace, and the infra.
        for c in &containers {
            if tokio::time::timeout(KILL_TIMEOUT, c.wait()).await.is_err() {
                tracing::warn!(pod = %pod.sandbox.uid, container = %c.name, "container did not end after SIGKILL");
            }
        }
        let victims = if pod.sandbox.host_network {
            process::pids_in_ns("mnt", pod.mntns_inode)
        } else {
            process::pids_in_ns("net", pod.netns_inode)
        };
        for &pid in &victims {
            process::kill(pid, libc::SIGKILL);
        }
        if pod.infra_exit.borrow().is_none() {
            process::signal(pod.infra_pidfd.as_ref(), pod.infra.pid, libc::SIGKILL);
        }
        let mut infra = pod.infra_exit.clone();
        let _ = tokio::time::timeout(KILL_TIMEOUT, infra.wait_for(Option::is_some)).await;
        if !process::wait_gone(&victims, KILL_TIMEOUT).await {
            tracing::warn!(pod = %pod.sandbox.uid, "some pod processes did not die");
        }
        let veth = if pod.sandbox.host_network { Ok(()) } else { net::delete_link(&pod.sandbox.veth).await };
        self.inner.cgroups.remove_pod(&pod.sandbox.uid).await;
        veth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hostnames() {
        assert!(validate_name("uid", "0b1c6f9e-2f4e-4a55-9a57-3d1f0c0f6a11").is_ok());
        for bad in ["", "..", "a/b", ".hidden", "a b"] {
            assert!(validate_name("uid", bad).is_err(), "{bad}");
        }
        assert_eq!(pod_hostname("", "web-0"), "web-0");
        assert_eq!(pod_hostname("h", "web-0"), "h");
        let long = format!("{}-x", "a".repeat(62));
        assert_eq!(pod_hostname(&long, ""), "a".repeat(62));
    }

    #[test]
    fn veth_names_fit_ifnamsiz() {
        let a = veth_name("0b1c6f9e-2f4e-4a55-9a57-3d1f0c0f6a11", 0);
        assert_eq!(a.len(), 12);
        assert!(a.starts_with("veth"));
        assert_eq!(a, veth_name("0b1c6f9e-2f4e-4a55-9a57-3d1f0c0f6a11", 0));
        assert_ne!(a, veth_name("0b1c6f9e-2f4e-4a55-9a57-3d1f0c0f6a11", 1));
    }
}
