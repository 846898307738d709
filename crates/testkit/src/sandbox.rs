//! A throw-away network of Linux network namespaces for end-to-end tests (DESIGN.md,
//! "The sandbox"). Needs root (`CAP_NET_ADMIN` and `CAP_SYS_ADMIN`) and `ip` from
//! iproute2.
//!
//! # Topology
//!
//! ```text
//!                      namespace <id>-lan
//!            +-------------------------------------+
//!            |  br0  192.168.122.1/24  (the "LAN") |
//!            +--+--------+-----------------+-------+
//!     <id>n1    |  <id>n2|            <id>c|          (veths, LAN side)
//!    +----------+-+ +----+-------+ +------+-----------+
//!    | eth0 .11   | | eth0 .12   | | eth0 .100        |
//!    | <id>-n1    | | <id>-n2    | | <id>-cl (client) |
//!    +------------+ +------------+ +------------------+
//! ```
//!
//! - `<id>` is `rkt` plus six hex digits, unique among all live sandboxes of all
//!   processes (a state file `/run/rkube-testkit/<id>.state` is created with
//!   `O_EXCL` before any namespace exists). Namespace names are at most 13 bytes,
//!   interface names at most 12.
//! - Every namespace has `lo` up. Node `i` (1-based) is `192.168.122.(10+i)` on its
//!   `eth0`, the client `192.168.122.100`; the bridge holds `192.168.122.1`, the
//!   address of test servers on the LAN (e.g. an upstream DNS server bound with
//!   [`Sandbox::udp_socket`] in [`Sandbox::lan_netns`]).
//! - Nodes and the client have a default route via `192.168.122.1`, so a lookup
//!   for any address (Service CIDR, unknown hosts, ...) succeeds and the packet goes
//!   to the `lan` namespace, which does not forward (forwarding is off in a new
//!   namespace) and drops it: nothing ever leaves the sandbox. No namespace has an
//!   interface into, or a route to, the root namespace, and no interface is ever
//!   created in the root namespace (veth pairs are created inside `lan` with their
//!   peer placed directly into the node's namespace).
//!
//! # Cleanup
//!
//! Dropping the [`Sandbox`] (also while unwinding from a panic) kills every process
//! left in its namespaces, deletes the namespaces it created (never others), removes
//! its temporary directory (kept if `RKUBE_KEEP_TEST_DIRS` is set) and its state file.
//! A [`SandboxNode`] (a running `rkube`) keeps the namespaces alive until it is dropped
//! too; dropping it SIGKILLs rkube's whole process group. If the test process exits
//! without unwinding (`std::process::exit`), an `atexit` hook does the same for all
//! live sandboxes; if it is killed, [`cleanup_stale`] (run by every
//! [`Sandbox::new`]) removes what it left once its pid is gone.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{io, Error, Result};
use crate::server::{kubeconfig_complete, spawn_tied, token_from_kubeconfig};
use crate::{Kubectl, Output};

/// The LAN, `192.168.122.0/24`.
pub const LAN_CIDR: &str = "192.168.122.0/24";
/// The LAN's prefix length.
pub const LAN_PREFIX_LEN: u8 = 24;
/// The bridge's address in the `lan` namespace (LAN test servers listen here).
pub const LAN_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 1);
/// The client namespace's address.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 100);
/// Node `i` is `192.168.122.(NODE_IP_BASE + i)`.
pub const NODE_IP_BASE: u8 = 10;
/// At most this many nodes (`.11` to `.99`, below the client).
pub const MAX_NODES: usize = 89;
/// The API server port of [`Sandbox::start_rkube`].
pub const RKUBE_PORT: u16 = 6443;
/// How long [`Sandbox::start_rkube`] waits for `kubeconfig.yaml`.
pub const RKUBE_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`SandboxNode::stop`] waits after SIGTERM before SIGKILL.
pub const RKUBE_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Sandbox::exec`] lets a command run before killing it.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(120);
/// Where the state files (`<id>.state`: owner pid, its start time, namespaces,
/// temporary directory) live.
pub const STATE_DIR: &str = "/run/rkube-testkit";
/// Every sandbox id starts with this; namespaces are `<id>-lan`, `<id>-n<i>`, `<id>-cl`.
pub const NAME_PREFIX: &str = "rkt";

const NETNS_DIR: &str = "/run/netns";
const ID_HEX_DIGITS: usize = 6;
const TEMP_PREFIX: &str = "rkube-sandbox-";
const KUBECONFIG: &str = "kubeconfig.yaml";
const STDOUT_LOG: &str = "rkube.stdout.log";
const STDERR_LOG: &str = "rkube.stderr.log";
const POLL: Duration = Duration::from_millis(20);
const IP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `ip` binary (iproute2): the first `ip` on `$PATH`, else `/usr/sbin/ip`,
/// `/sbin/ip`, `/usr/bin/ip`, `/bin/ip`.
pub fn ip_path() -> PathBuf {
    static IP: OnceLock<PathBuf> = OnceLock::new();
    IP.get_or_init(|| {
        let from_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join("ip")).collect::<Vec<_>>())
            .unwrap_or_default();
        let fixed = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].map(PathBuf::from);
        from_path.into_iter().chain(fixed).find(|p| p.is_file()).unwrap_or_else(|| PathBuf::from("ip"))
    })
    .clone()
}

/// Why a sandbox cannot be built here (not root, no `ip`), or `None` if it can.
/// Tests skip with this message.
pub fn sandbox_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the network sandbox needs root (run the tests as root)".into());
    }
    match Command::new(ip_path()).arg("-V").stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("`ip -V` failed: {}", String::from_utf8_lossy(&out.stderr))),
        Err(e) => Some(format!("cannot run `{}` (install iproute2): {e}", ip_path().display())),
    }
}

/// A network-namespace sandbox; see the [module docs](self).
#[derive(Debug)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    id: String,
    lan: String,
    client: String,
    /// `nodes[i - 1]` is node `i`'s namespace.
    nodes: Vec<String>,
    /// The namespaces that were actually created (deleted on drop).
    created: Mutex<Vec<String>>,
    temp: Mutex<Option<tempfile::TempDir>>,
    temp_path: PathBuf,
    state_file: PathBuf,
    /// Numbers the work dirs of [`Sandbox::start_rkube`].
    starts: AtomicU32,
}

impl Sandbox {
    /// Builds a LAN with `nodes` node namespaces and a client (see the module docs).
    /// Removes the leftovers of dead test processes first ([`cleanup_stale`]).
    pub fn new(nodes: usize) -> Result<Sandbox> {
        if let Some(reason) = sandbox_unavailable() {
            return Err(Error::Sandbox(reason));
        }
        if nodes > MAX_NODES {
            return Err(Error::Sandbox(format!("at most {MAX_NODES} nodes, not {nodes}")));
        }
        if let Err(e) = cleanup_stale() {
            eprintln!("testkit: cleaning up stale sandboxes: {e}");
        }
        std::fs::create_dir_all(STATE_DIR).map_err(io(format!("create {STATE_DIR}")))?;
        let temp =
            tempfile::Builder::new().prefix(TEMP_PREFIX).tempdir().map_err(io("create a temporary directory"))?;
        let temp_path = temp.path().to_path_buf();

        let (id, state_file) = reserve_id(nodes, &temp_path)?;
        let inner = Inner {
            lan: format!("{id}-lan"),
            client: format!("{id}-cl"),
            nodes: (1..=nodes).map(|i| format!("{id}-n{i}")).collect(),
            id,
            created: Mutex::new(Vec::new()),
            temp: Mutex::new(Some(temp)),
            temp_path,
            state_file,
            starts: AtomicU32::new(0),
        };
        registry_add(&inner);
        // From here on, dropping `sandbox` on an error removes what was built.
        let sandbox = Sandbox { inner: Arc::new(inner) };
        sandbox.build()?;
        Ok(sandbox)
    }

    fn build(&self) -> Result<()> {
        let s = &self.inner;
        let lan = s.lan.as_str();
        self.add_netns(lan)?;
        ip(&["-n", lan, "link", "set", "lo", "up"])?;
        ip(&["-n", lan, "link", "add", "br0", "address", "02:00:c0:a8:7a:01", "type", "bridge"])?;
        ip(&["-n", lan, "addr", "add", &format!("{LAN_IP}/{LAN_PREFIX_LEN}"), "dev", "br0"])?;
        ip(&["-n", lan, "link", "set", "br0", "up"])?;
        for (i, ns) in s.nodes.iter().enumerate() {
            let index = i + 1;
            self.add_host(ns, &format!("{}n{index}", s.id), self.node_ip(index))?;
        }
        self.add_host(&s.client, &format!("{}c", s.id), CLIENT_IP)?;
        Ok(())
    }

    fn add_netns(&self, ns: &str) -> Result<()> {
        ip(&["netns", "add", ns])?;
        lock(&self.inner.created).push(ns.to_string());
        registry_created(&self.inner.id, ns);
        Ok(())
    }

    /// A namespace `ns` on the LAN: veth `lan_end` (in `lan`, on `br0`) to `eth0`
    /// (in `ns`) with `addr`, and a default route via the bridge.
    fn add_host(&self, ns: &str, lan_end: &str, addr: Ipv4Addr) -> Result<()> {
        let lan = self.inner.lan.as_str();
        self.add_netns(ns)?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        // Created inside `lan`, the peer placed straight into `ns`: no interface
        // ever exists in the root namespace.
        ip(&["-n", lan, "link", "add", lan_end, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
        ip(&["-n", lan, "link", "set", lan_end, "master", "br0"])?;
        ip(&["-n", lan, "link", "set", lan_end, "up"])?;
        ip(&["-n", ns, "addr", "add", &format!("{addr}/{LAN_PREFIX_LEN}"), "dev", "eth0"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "route", "add", "default", "via", &LAN_IP.to_string(), "dev", "eth0"])?;
        Ok(())
    }

    /// Takes a namespace that the program under test creates itself (`rkube up
    /// --nodes`) into this sandbox's cleanup, whether or not it exists yet: its
    /// processes are killed and it is deleted with the sandbox (or by a later
    /// [`cleanup_stale`]). Only names that start with this sandbox's id.
    pub fn adopt_netns(&self, ns: &str) -> Result<()> {
        if !ns.starts_with(&format!("{}-", self.inner.id)) {
            return Err(Error::Sandbox(format!("{ns}: an adopted namespace must start with {}-", self.inner.id)));
        }
        lock(&self.inner.created).push(ns.to_string());
        registry_created(&self.inner.id, ns);
        Ok(())
    }

    /// The sandbox id (`rkt` + 6 hex digits), the prefix of all its names.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// How many nodes the sandbox has.
    pub fn nodes(&self) -> usize {
        self.inner.nodes.len()
    }

    /// Node `i`'s namespace (`i` is 1-based: node 1 is `node1`). Panics if out of range.
    #[track_caller]
    pub fn node_netns(&self, i: usize) -> &str {
        self.check_node(i);
        &self.inner.nodes[i - 1]
    }

    /// Node `i`'s address, `192.168.122.(10 + i)`. Panics if out of range.
    #[track_caller]
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        self.check_node(i);
        Ipv4Addr::new(192, 168, 122, NODE_IP_BASE + i as u8)
    }

    /// `node<i>`, the node name to pass as `--node-name`.
    pub fn node_name(i: usize) -> String {
        format!("node{i}")
    }

    #[track_caller]
    fn check_node(&self, i: usize) {
        let n = self.inner.nodes.len();
        if i == 0 || i > n {
            panic!("testkit: node {i} out of range (nodes are 1..={n})");
        }
    }

    /// The client namespace ("outside the cluster", on the LAN).
    pub fn client_netns(&self) -> &str {
        &self.inner.client
    }

    /// The client's address, `192.168.122.100`.
    pub fn client_ip(&self) -> Ipv4Addr {
        CLIENT_IP
    }

    /// The `lan` namespace, holding the bridge `br0`.
    pub fn lan_netns(&self) -> &str {
        &self.inner.lan
    }

    /// The bridge's address, `192.168.122.1`.
    pub fn lan_ip(&self) -> Ipv4Addr {
        LAN_IP
    }

    /// All namespace names of this sandbox (lan, nodes, client).
    pub fn namespaces(&self) -> Vec<String> {
        let s = &self.inner;
        std::iter::once(s.lan.clone()).chain(s.nodes.iter().cloned()).chain([s.client.clone()]).collect()
    }

    /// The sandbox's temporary directory (rkube data dirs and logs).
    pub fn temp_dir(&self) -> &Path {
        &self.inner.temp_path
    }

    /// `ip netns exec <netns> <cmd>`, to be completed by the caller.
    pub fn command(&self, netns: &str, cmd: impl AsRef<OsStr>) -> Command {
        netns_command(netns, cmd)
    }

    /// Runs `cmd args` in `netns` (stdin closed), killed after [`EXEC_TIMEOUT`].
    /// Errors only if it cannot be started.
    pub fn exec<I, S>(&self, netns: &str, cmd: impl AsRef<OsStr>, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.exec_with(netns, cmd, args, None, EXEC_TIMEOUT)
    }

    /// [`Sandbox::exec`] with input on stdin (e.g. `nft -f -`) and a timeout.
    pub fn exec_with<I, S>(
        &self,
        netns: &str,
        cmd: impl AsRef<OsStr>,
        args: I,
        stdin: Option<&str>,
        timeout: Duration,
    ) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = netns_command(netns, cmd);
        command.args(args);
        run(command, stdin.map(|s| s.as_bytes().to_vec()), timeout)
    }

    /// Runs `cmd args` in `netns`; its stdout if it exits 0, else [`Error::Command`]
    /// (with stderr).
    pub fn exec_ok<I, S>(&self, netns: &str, cmd: impl AsRef<OsStr>, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = netns_command(netns, cmd);
        command.args(args);
        run_ok(command, None, EXEC_TIMEOUT)
    }

    /// Starts `cmd args` in `netns` in the background: stdin closed, stdout and stderr
    /// piped. The caller reads from and kills the child; it is SIGKILLed when the test
    /// process exits, and when the sandbox is dropped (as is every process left in
    /// its namespaces).
    pub fn spawn<I, S>(&self, netns: &str, cmd: impl AsRef<OsStr>, args: I) -> Result<Child>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = netns_command(netns, &cmd);
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        spawn_tied(command).map_err(io(format!("start {} in {netns}", cmd.as_ref().to_string_lossy())))
    }

    /// A DNS server for the sandbox's "internet": dnsmasq on [`LAN_IP`]:53 in the `lan`
    /// namespace, answering only what `args` give it (e.g.
    /// `--address=/www.google.com/142.250.0.99`), with a TTL of 300 s for its own
    /// records (dnsmasq's default 0 would make them uncacheable). Needs `dnsmasq`.
    pub fn spawn_lan_dns(&self, args: &[&str]) -> Result<Child> {
        let mut all = vec![
            "--keep-in-foreground".to_string(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--bind-interfaces".into(),
            format!("--listen-address={LAN_IP}"),
            "--local-ttl=300".into(),
            "--pid-file=".into(),
            "--user=root".into(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        self.spawn(self.lan_netns(), "dnsmasq", all)
    }

    /// Runs `f` on a thread that has entered `netns`: sockets it creates belong to
    /// `netns` for good, wherever they are used afterwards. A panic in `f` is
    /// propagated.
    pub fn in_netns<T, F>(&self, netns: &str, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        in_netns(netns, f)
    }

    /// A TCP listener bound to `addr` inside `netns`.
    pub fn tcp_listener(&self, netns: &str, addr: SocketAddr) -> Result<TcpListener> {
        self.in_netns(netns, || TcpListener::bind(addr))?.map_err(io(format!("bind {addr} in {netns}")))
    }

    /// A UDP socket bound to `addr` inside `netns` (e.g. a test DNS server on
    /// `LAN_IP:53` in [`Sandbox::lan_netns`]).
    pub fn udp_socket(&self, netns: &str, addr: SocketAddr) -> Result<UdpSocket> {
        self.in_netns(netns, || UdpSocket::bind(addr))?.map_err(io(format!("bind udp {addr} in {netns}")))
    }

    /// A TCP connection from `netns` to `addr`.
    pub fn tcp_connect(&self, netns: &str, addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
        self.in_netns(netns, || TcpStream::connect_timeout(&addr, timeout))?
            .map_err(io(format!("connect to {addr} from {netns}")))
    }

    /// Starts `ip netns exec <node ns> <bin> up --data-dir <dir> --advertise-address
    /// <node ip> --bind-address 0.0.0.0 --port 6443 <extra_args>` in its own process
    /// group, with stdout and stderr in log files, and waits (up to
    /// [`RKUBE_READY_TIMEOUT`]) until it has written `<dir>/kubeconfig.yaml`. The data
    /// dir is fresh, in the sandbox's temporary directory. Pass `--node-name node<i>`
    /// in `extra_args` if the binary knows it.
    pub fn start_rkube(&self, bin: &Path, node: usize, extra_args: &[&str]) -> Result<SandboxNode> {
        let n = self.inner.nodes.len();
        if node == 0 || node > n {
            return Err(Error::Sandbox(format!("node {node} out of range (nodes are 1..={n})")));
        }
        let k = self.inner.starts.fetch_add(1, Ordering::Relaxed) + 1;
        let work_dir = self.inner.temp_path.join(format!("node{node}-{k}"));
        let data_dir = work_dir.join("data");
        std::fs::create_dir_all(&data_dir).map_err(io(format!("create {}", data_dir.display())))?;
        let ip = self.node_ip(node);
        let mut args: Vec<String> = vec!["up".into(), "--data-dir".into(), data_dir.to_string_lossy().into_owned()];
        args.extend(["--advertise-address".into(), ip.to_string()]);
        args.extend(["--bind-address".into(), "0.0.0.0".into(), "--port".into(), RKUBE_PORT.to_string()]);
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let mut sn = SandboxNode {
            _sandbox: Arc::clone(&self.inner),
            node,
            netns: self.inner.nodes[node - 1].clone(),
            ip,
            bin: bin.to_path_buf(),
            args,
            work_dir,
            data_dir,
            child: None,
            exited: Vec::new(),
            starts: 0,
        };
        sn.launch()?;
        Ok(sn)
    }
}

/// `rkube up` running in a sandbox node; see [`Sandbox::start_rkube`].
///
/// rkube runs in a process group of its own. Its exited processes are not reaped
/// until this is dropped, so their pids (the group ids) cannot be reused meanwhile.
/// Dropping it SIGKILLs every group it started (rkube and its children, e.g. pod
/// processes) and keeps the sandbox's namespaces alive until then.
#[derive(Debug)]
pub struct SandboxNode {
    _sandbox: Arc<Inner>,
    node: usize,
    netns: String,
    ip: Ipv4Addr,
    bin: PathBuf,
    /// Everything after the binary.
    args: Vec<String>,
    work_dir: PathBuf,
    data_dir: PathBuf,
    /// The running (or exited, not yet noticed) rkube.
    child: Option<Child>,
    /// Exited rkube processes, not reaped yet (see the type docs).
    exited: Vec<Child>,
    starts: u32,
}

impl SandboxNode {
    fn launch(&mut self) -> Result<()> {
        let kubeconfig = self.kubeconfig_path();
        match std::fs::remove_file(&kubeconfig) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("remove {}", kubeconfig.display()))(e)),
        }
        self.starts += 1;
        let stdout = self.open_log(STDOUT_LOG)?;
        let stderr = self.open_log(STDERR_LOG)?;
        let mut cmd = netns_command(&self.netns, &self.bin);
        cmd.args(&self.args)
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let child = spawn_tied(cmd).map_err(io(format!("start {} in {}", self.bin.display(), self.netns)))?;
        registry_group(child.id(), true);
        self.child = Some(child);
        self.wait_ready()
    }

    fn open_log(&self, name: &str) -> Result<File> {
        let path = self.work_dir.join(name);
        let mut f =
            OpenOptions::new().create(true).append(true).open(&path).map_err(io(format!("open {}", path.display())))?;
        let _ = writeln!(f, "=== testkit: start #{} in {} ===", self.starts, self.netns);
        Ok(f)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let path = self.kubeconfig_path();
        let deadline = Instant::now() + RKUBE_READY_TIMEOUT;
        loop {
            let pid = self.child.as_ref().map(|c| c.id()).ok_or(Error::NotRunning)?;
            if let Some(status) = peek_exit(pid, false).map_err(io("wait for rkube"))? {
                self.bury();
                return Err(Error::Exited { status, logs: self.logs_tail(200) });
            }
            if let Ok(text) = std::fs::read_to_string(&path) {
                if kubeconfig_complete(&text) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let logs = self.logs_tail(200);
                let _ = self.kill_group();
                return Err(Error::NotReady { timeout: RKUBE_READY_TIMEOUT, path, logs });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Moves the current process to `exited` (it has exited, unreaped).
    fn bury(&mut self) {
        if let Some(child) = self.child.take() {
            self.exited.push(child);
        }
    }

    /// The node index (1-based).
    pub fn node(&self) -> usize {
        self.node
    }

    /// The node's namespace.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The node's address (`--advertise-address`).
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// `https://<node ip>:6443`, reachable from the sandbox's namespaces only.
    pub fn url(&self) -> String {
        format!("https://{}:{RKUBE_PORT}", self.ip)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Holds the data dir, the logs and kubectl's cache.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// `<data-dir>/kubeconfig.yaml`.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.data_dir.join(KUBECONFIG)
    }

    /// The admin bearer token of the kubeconfig.
    pub fn token(&self) -> Result<String> {
        let path = self.kubeconfig_path();
        let text = std::fs::read_to_string(&path).map_err(io(format!("read {}", path.display())))?;
        token_from_kubeconfig(&text).ok_or_else(|| Error::Kubeconfig { path, reason: "no users[0].user.token".into() })
    }

    /// The join token the server wrote to `<data-dir>/node-token`.
    pub fn node_token(&self) -> Result<String> {
        let path = self.data_dir.join("node-token");
        let text = std::fs::read_to_string(&path).map_err(io(format!("read {}", path.display())))?;
        Ok(text.trim().to_string())
    }

    /// The real kubectl against this node, run inside the node's namespace.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(self.kubeconfig_path()).with_cache_dir(self.work_dir.join("kubectl-cache")).in_netns(&self.netns)
    }

    /// rkube's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether rkube still runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_ref().map(|c| peek_exit(c.id(), false)) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.bury();
                false
            }
            None => false,
        }
    }

    /// Graceful stop: SIGTERM to rkube, wait up to [`RKUBE_STOP_TIMEOUT`], then
    /// SIGKILL. Keeps the data dir. Its children are left alone (see
    /// [`SandboxNode::kill_group`]).
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let pid = self.child.as_ref().map(|c| c.id()).ok_or(Error::NotRunning)?;
        let result = stop_pid(pid);
        self.bury();
        result.map_err(io("stop rkube"))
    }

    /// SIGKILL to rkube alone, as in a crash. Keeps the data dir; its children live on.
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        let pid = self.child.as_ref().map(|c| c.id()).ok_or(Error::NotRunning)?;
        // SAFETY: kill(2) on our unreaped child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        let result = wait_exit(pid);
        self.bury();
        result.map_err(io("wait for rkube"))
    }

    /// SIGKILL to every process group this node started (rkube and all its
    /// children), as when the machine dies. Returns rkube's exit status if it ran.
    pub fn kill_group(&mut self) -> Result<Option<ExitStatus>> {
        kill_pods_of(&self.data_dir);
        for c in self.child.iter().chain(&self.exited) {
            // SAFETY: the group leader is our unreaped child, so the id is still ours.
            unsafe { libc::killpg(c.id() as libc::pid_t, libc::SIGKILL) };
        }
        let status = match self.child.as_ref() {
            Some(c) => Some(wait_exit(c.id()).map_err(io("wait for rkube"))?),
            None => None,
        };
        self.bury();
        Ok(status)
    }

    /// Stops rkube if it runs ([`SandboxNode::stop`]) and starts it again with the
    /// same data dir and flags; waits until it is ready.
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            self.stop()?;
        }
        self.launch()
    }

    /// rkube's arguments (everything after the binary: `up --data-dir ...`).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Stops rkube if it runs and starts it again with other arguments (e.g.
    /// `server` instead of `up` on the same data dir, to run the control plane
    /// without the node agent); later restarts keep them.
    pub fn restart_with(&mut self, args: Vec<String>) -> Result<()> {
        if self.is_running() {
            self.stop()?;
        }
        self.args = args;
        self.launch()
    }

    /// Waits until this start of rkube has printed a line containing `needle`
    /// (stdout or stderr); fails early if rkube exits.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        let marker = format!("=== testkit: start #{} ", self.starts);
        let deadline = Instant::now() + timeout;
        loop {
            for log in [STDOUT_LOG, STDERR_LOG] {
                let text = std::fs::read_to_string(self.work_dir.join(log)).unwrap_or_default();
                let current = text.rfind(&marker).map(|i| &text[i..]).unwrap_or("");
                if current.contains(needle) {
                    return Ok(());
                }
            }
            let running = matches!(self.child.as_ref().map(|c| peek_exit(c.id(), false)), Some(Ok(None)));
            if !running || Instant::now() >= deadline {
                return Err(Error::LogTimeout { needle: needle.to_string(), timeout, logs: self.logs_tail(60) });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `rkube up` says its DNS add-ons (coredns, nodelocaldns) are ready.
    pub fn wait_dns_ready(&self) -> Result<()> {
        self.wait_for_log(": DNS add-ons ready", Duration::from_secs(120))
    }

    /// Everything rkube printed so far (stdout, then stderr).
    pub fn logs(&self) -> String {
        self.logs_tail(usize::MAX)
    }

    /// The last `lines` lines of stdout and of stderr.
    pub fn logs_tail(&self, lines: usize) -> String {
        crate::server::tail_logs(&self.work_dir, lines)
    }
}

/// Kill the pods an rkube node started: its pod infra processes (their command
/// line names the node's data dir) and every process in their network
/// namespaces, which includes the container shims (found by their command line
/// too, should a pod's infra be gone). Pod processes start their own sessions,
/// so killing rkube's process group does not reach them.
pub fn kill_pods_of(data_dir: &Path) {
    let dir = data_dir.to_string_lossy().into_owned();
    let procs: Vec<(u32, String, Option<PathBuf>)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (pid, cmdline, std::fs::read_link(format!("/proc/{pid}/ns/net")).ok())
        })
        .collect();
    let pod_nets: Vec<PathBuf> = procs
        .iter()
        .filter(|(_, cmd, _)| (cmd.contains(" pod-infra ") || cmd.contains(" container-shim ")) && cmd.contains(&dir))
        .filter_map(|(_, _, net)| net.clone())
        .collect();
    for (pid, _, net) in &procs {
        if net.as_ref().is_some_and(|n| pod_nets.contains(n)) {
            // SAFETY: plain kill(2) of a pid we just read; a vanished pid is harmless.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

impl Drop for SandboxNode {
    fn drop(&mut self) {
        kill_pods_of(&self.data_dir);
        let children: Vec<Child> = self.child.take().into_iter().chain(self.exited.drain(..)).collect();
        for c in &children {
            // SAFETY: the leader is our unreaped child, so the group id is still ours.
            unsafe { libc::killpg(c.id() as libc::pid_t, libc::SIGKILL) };
        }
        for mut c in children {
            // Forget the group before reaping the leader frees its id.
            registry_group(c.id(), false);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let created = std::mem::take(&mut *lock(&self.created));
        for ns in &created {
            kill_netns_pids(ns);
        }
        let mut all_gone = true;
        for ns in created.iter().rev() {
            all_gone &= delete_netns(ns);
        }
        if let Some(temp) = lock(&self.temp).take() {
            if std::env::var_os("RKUBE_KEEP_TEST_DIRS").is_some() {
                eprintln!("testkit: kept {} (sandbox {})", temp.keep().display(), self.id);
            }
        }
        // A failed deletion leaves the state file for a later cleanup_stale.
        if all_gone {
            let _ = std::fs::remove_file(&self.state_file);
        }
        registry_remove(&self.id);
    }
}

/// Deletes the namespaces (and kills their processes), state files and temporary
/// directories of sandboxes whose creating process is gone (pid no longer running,
/// or reused by another process), and namespaces named like a sandbox's
/// (`rkt<6 hex>-lan|-cl|-n<i>`) that have no state file. Never touches anything else.
/// Returns the namespaces deleted.
pub fn cleanup_stale() -> Result<Vec<String>> {
    let mut deleted = Vec::new();
    let state_dir = Path::new(STATE_DIR);
    let entries = match std::fs::read_dir(state_dir) {
        Ok(e) => e.filter_map(|e| e.ok()).map(|e| e.path()).collect::<Vec<_>>(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(format!("read {STATE_DIR}"))(e)),
    };
    for path in entries {
        let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".state")) else {
            continue;
        };
        if !is_sandbox_id(id) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let state = State::parse(&text);
        let stale = match &state {
            Some(s) => !process_alive(s.pid, s.start),
            // Unreadable: stale only if it has not been written for a minute.
            None => std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > Duration::from_secs(60)),
        };
        if !stale {
            continue;
        }
        let mut names: Vec<String> = state.as_ref().map(|s| s.netns.clone()).unwrap_or_default();
        for ns in list_netns() {
            if netns_id(&ns) == Some(id) && !names.contains(&ns) {
                names.push(ns);
            }
        }
        names.retain(|ns| netns_id(ns) == Some(id));
        let mut all_gone = true;
        for ns in &names {
            if Path::new(NETNS_DIR).join(ns).exists() {
                kill_netns_pids(ns);
                if delete_netns(ns) {
                    deleted.push(ns.clone());
                } else {
                    all_gone = false;
                }
            }
        }
        if let Some(dir) = state.as_ref().and_then(|s| s.dir.as_ref()) {
            let ours = dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(TEMP_PREFIX));
            if ours && std::env::var_os("RKUBE_KEEP_TEST_DIRS").is_none() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        if all_gone {
            let _ = std::fs::remove_file(&path);
        }
    }
    // Orphans: a sandbox's namespace without a state file. The state file is created
    // before the first namespace and removed after the last, and it is checked here
    // after the namespace was listed, so a sandbox being built is never taken.
    for ns in list_netns() {
        let Some(id) = netns_id(&ns) else { continue };
        if state_dir.join(format!("{id}.state")).exists() {
            continue;
        }
        kill_netns_pids(&ns);
        if delete_netns(&ns) {
            deleted.push(ns);
        }
    }
    Ok(deleted)
}

/// Runs `f` on a new thread that has entered the network namespace `/run/netns/<netns>`.
pub fn in_netns<T, F>(netns: &str, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let path = Path::new(NETNS_DIR).join(netns);
    let file = File::open(&path).map_err(io(format!("open {}", path.display())))?;
    let joined = std::thread::scope(|scope| {
        scope
            .spawn(move || {
                // SAFETY: setns on a valid namespace fd; it changes this thread only,
                // which ends when `f` returns.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
    });
    match joined {
        Ok(result) => result.map_err(io(format!("enter network namespace {netns}"))),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The contents of a state file.
#[derive(Debug, PartialEq)]
struct State {
    pid: u32,
    start: u64,
    dir: Option<PathBuf>,
    netns: Vec<String>,
}

impl State {
    fn render(&self) -> String {
        let mut s = format!("pid {}\nstart {}\n", self.pid, self.start);
        if let Some(dir) = &self.dir {
            s.push_str(&format!("dir {}\n", dir.display()));
        }
        s.push_str(&format!("netns {}\n", self.netns.join(" ")));
        s
    }

    fn parse(text: &str) -> Option<State> {
        let (mut pid, mut start, mut dir, mut netns) = (None, None, None, None);
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "pid" => pid = value.trim().parse().ok(),
                "start" => start = value.trim().parse().ok(),
                "dir" => dir = Some(PathBuf::from(value)),
                "netns" => netns = Some(value.split_whitespace().map(String::from).collect()),
                _ => {}
            }
        }
        Some(State { pid: pid?, start: start?, dir, netns: netns? })
    }
}

/// Picks a fresh id and creates its state file (`O_EXCL`): unique among live
/// sandboxes, and not the name of any existing namespace.
fn reserve_id(nodes: usize, temp: &Path) -> Result<(String, PathBuf)> {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    let start = process_start_time(pid).unwrap_or(0);
    let existing = list_netns();
    for _ in 0..1000 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(pid);
        h.write_u32(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
        let id = format!("{NAME_PREFIX}{:0width$x}", h.finish() & 0xff_ffff, width = ID_HEX_DIGITS);
        if existing.iter().any(|ns| netns_id(ns) == Some(id.as_str())) {
            continue;
        }
        let path = Path::new(STATE_DIR).join(format!("{id}.state"));
        let mut netns = vec![format!("{id}-lan")];
        netns.extend((1..=nodes).map(|i| format!("{id}-n{i}")));
        netns.push(format!("{id}-cl"));
        let state = State { pid, start, dir: Some(temp.to_path_buf()), netns };
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                let written = f.write_all(state.render().as_bytes());
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&path);
                    return Err(io(format!("write {}", path.display()))(e));
                }
                return Ok((id, path));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(format!("create {}", path.display()))(e)),
        }
    }
    Err(Error::Sandbox("no free sandbox id after 1000 attempts".into()))
}

fn is_sandbox_id(id: &str) -> bool {
    id.strip_prefix(NAME_PREFIX)
        .is_some_and(|hex| hex.len() == ID_HEX_DIGITS && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// The sandbox id of a namespace named `rkt<6 hex>-lan`, `-cl` or `-n<digits>`.
fn netns_id(ns: &str) -> Option<&str> {
    let (id, role) = ns.split_once('-')?;
    let role_ok = role == "lan"
        || role == "cl"
        || role.strip_prefix('n').is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        // Adopted namespaces of `rkube up --nodes` (`Sandbox::adopt_netns`).
        || role.strip_prefix("node").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    (is_sandbox_id(id) && role_ok).then_some(id)
}

/// Names in `/run/netns` (what `ip netns list` shows).
fn list_netns() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|d| d.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

/// The start time of `pid` (field 22 of `/proc/<pid>/stat`, in clock ticks).
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn process_alive(pid: u32, start: u64) -> bool {
    process_start_time(pid) == Some(start)
}

/// SIGKILLs every process in `ns` (`ip netns pids`), never this process.
fn kill_netns_pids(ns: &str) {
    let mut cmd = Command::new(ip_path());
    cmd.args(["netns", "pids", ns]);
    let Ok(out) = run(cmd, None, IP_TIMEOUT) else { return };
    let me = std::process::id();
    for pid in out.stdout.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
        if pid != me && pid > 1 {
            // SAFETY: kill(2); the process is in one of our namespaces.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// `ip netns del ns`; true once the name is gone.
fn delete_netns(ns: &str) -> bool {
    let path = Path::new(NETNS_DIR).join(ns);
    for attempt in 0..5 {
        let mut cmd = Command::new(ip_path());
        cmd.args(["netns", "del", ns]);
        let result = run(cmd, None, IP_TIMEOUT);
        if !path.exists() {
            return true;
        }
        if attempt == 4 {
            eprintln!("testkit: cannot delete network namespace {ns}: {result:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub(crate) fn netns_command(netns: &str, cmd: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(ip_path());
    command.args(["netns", "exec"]).arg(netns).arg(cmd);
    // Sandboxes have no way out: an rkube node there runs its built-in images
    // without asking Docker Hub (whose name would not even resolve). Tests of
    // pulls pass `--builtin-images fallback`, which wins over the variable.
    command.env(BUILTIN_IMAGES_ENV, "prefer");
    command
}

/// The variable behind `rkube up|agent --builtin-images`.
pub const BUILTIN_IMAGES_ENV: &str = "RKUBE_BUILTIN_IMAGES";

/// `ip args...`, an error if it fails.
fn ip(args: &[&str]) -> Result<()> {
    let mut cmd = Command::new(ip_path());
    cmd.args(args);
    run_ok(cmd, None, IP_TIMEOUT).map(|_| ())
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn run_ok(cmd: Command, stdin: Option<Vec<u8>>, timeout: Duration) -> Result<String> {
    let command = describe(&cmd);
    let out = run(cmd, stdin, timeout)?;
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(Error::Command { command, status: out.status, stdout: out.stdout, stderr: out.stderr })
    }
}

/// Runs `cmd` to completion (killed after `timeout`), capturing its output.
fn run(mut cmd: Command, stdin: Option<Vec<u8>>, timeout: Duration) -> Result<Output> {
    let what = describe(&cmd);
    let mut child = cmd
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(format!("start `{what}`")))?;
    let writer = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => Some(std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })),
        _ => None,
    };
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().map_err(io(format!("wait for `{what}`")))?;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(io(format!("wait for `{what}`"))(e)),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = stdout.join().unwrap_or_default();
    let mut stderr = stderr.join().unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(format!("\n[testkit: killed after {timeout:?}]\n").as_bytes());
    }
    Ok(Output {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// The exit status of our child `pid` if it has exited, without reaping it
/// (`waitid(WNOWAIT)`); waits for the exit if `block`.
fn peek_exit(pid: u32, block: bool) -> io::Result<Option<ExitStatus>> {
    // SAFETY: an all-zero siginfo_t is valid; waitid fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOWAIT | if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: waitid on our own child with a valid siginfo_t pointer.
        let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
        if rc == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    // SAFETY: waitid succeeded, so si_pid and si_status are set (si_pid 0: no change).
    let (si_pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if si_pid == 0 {
        return Ok(None);
    }
    let raw = match info.si_code {
        libc::CLD_KILLED => status & 0x7f,
        libc::CLD_DUMPED => (status & 0x7f) | 0x80,
        _ => (status & 0xff) << 8,
    };
    Ok(Some(ExitStatus::from_raw(raw)))
}

fn wait_exit(pid: u32) -> io::Result<ExitStatus> {
    peek_exit(pid, true)?.ok_or_else(|| io::Error::other("waitid returned no status"))
}

/// SIGTERM, wait up to [`RKUBE_STOP_TIMEOUT`], then SIGKILL; the process stays unreaped.
fn stop_pid(pid: u32) -> io::Result<ExitStatus> {
    if let Some(status) = peek_exit(pid, false)? {
        return Ok(status);
    }
    // SAFETY: kill(2) on our unreaped child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + RKUBE_STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = peek_exit(pid, false)? {
            return Ok(status);
        }
        std::thread::sleep(POLL);
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    wait_exit(pid)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Live sandboxes and rkube process groups of this process, for the `atexit` hook
/// (a test process that exits without unwinding).
#[derive(Default)]
struct Registry {
    /// (id, created namespaces, state file)
    sandboxes: Vec<(String, Vec<String>, PathBuf)>,
    groups: Vec<u32>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        extern "C" fn at_exit() {
            cleanup_registry();
        }
        // SAFETY: registering a plain function without captured state.
        unsafe { libc::atexit(at_exit) };
        Mutex::new(Registry::default())
    })
}

fn registry_add(inner: &Inner) {
    lock(registry()).sandboxes.push((inner.id.clone(), Vec::new(), inner.state_file.clone()));
}

fn registry_created(id: &str, ns: &str) {
    if let Some(entry) = lock(registry()).sandboxes.iter_mut().find(|e| e.0 == id) {
        entry.1.push(ns.to_string());
    }
}

fn registry_remove(id: &str) {
    lock(registry()).sandboxes.retain(|e| e.0 != id);
}

fn registry_group(pgid: u32, add: bool) {
    let mut r = lock(registry());
    if add {
        r.groups.push(pgid);
    } else {
        r.groups.retain(|g| *g != pgid);
    }
}

/// At exit: kill the process groups still registered (their leaders are unreaped,
/// so the ids are ours) and delete the namespaces of live sandboxes.
fn cleanup_registry() {
    // Never block at exit: a thread that holds the lock now is mid-update.
    let Ok(reg) = registry().try_lock() else { return };
    let Registry { sandboxes, groups } = &*reg;
    for g in groups {
        // SAFETY: killpg(2) on a group whose leader is our unreaped child.
        unsafe { libc::killpg(*g as libc::pid_t, libc::SIGKILL) };
    }
    for (_, namespaces, state_file) in sandboxes {
        for ns in namespaces {
            kill_netns_pids(ns);
        }
        let mut all_gone = true;
        for ns in namespaces.iter().rev() {
            all_gone &= delete_netns(ns);
        }
        if all_gone {
            let _ = std::fs::remove_file(state_file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_sandbox_id("rkt0a1b2c"));
        assert!(!is_sandbox_id("rkt0a1b2"));
        assert!(!is_sandbox_id("rkt0A1B2C"));
        assert!(!is_sandbox_id("xyz0a1b2c"));
        assert_eq!(netns_id("rkt0a1b2c-lan"), Some("rkt0a1b2c"));
        assert_eq!(netns_id("rkt0a1b2c-cl"), Some("rkt0a1b2c"));
        assert_eq!(netns_id("rkt0a1b2c-n12"), Some("rkt0a1b2c"));
        assert_eq!(netns_id("rkt0a1b2c-n"), None);
        assert_eq!(netns_id("rkt0a1b2c-x1"), None);
        assert_eq!(netns_id("rkt0a1b2c"), None);
        assert_eq!(netns_id("cni-1234"), None);
        // Interface and namespace names fit in IFNAMSIZ - 1 = 15 bytes.
        assert!(format!("rkt0a1b2c-n{MAX_NODES}").len() <= 15);
        assert!(format!("rkt0a1b2cn{MAX_NODES}").len() <= 15);
        assert!(u8::try_from(NODE_IP_BASE as usize + MAX_NODES).is_ok_and(|last| last < 100));
    }

    #[test]
    fn state_round_trip() {
        let s = State {
            pid: 42,
            start: 123456,
            dir: Some(PathBuf::from("/tmp/rkube-sandbox-x y")),
            netns: vec!["rkt000000-lan".into(), "rkt000000-n1".into(), "rkt000000-cl".into()],
        };
        assert_eq!(State::parse(&s.render()), Some(s));
        assert_eq!(State::parse("pid 1\n"), None);
        assert_eq!(State::parse(""), None);
    }

    #[test]
    fn own_start_time_is_known() {
        let me = std::process::id();
        let start = process_start_time(me).expect("start time of this process");
        assert!(process_alive(me, start));
        assert!(!process_alive(me, start + 1));
        assert!(!process_alive(u32::MAX, start));
    }

    #[test]
    fn peek_exit_does_not_reap() {
        let mut child = Command::new("sh").args(["-c", "exit 7"]).spawn().expect("spawn sh");
        let status = wait_exit(child.id()).expect("waitid");
        assert_eq!(status.code(), Some(7));
        // Still unreaped: peeking again gives the same status, and std can reap it.
        assert_eq!(peek_exit(child.id(), false).expect("waitid").and_then(|s| s.code()), Some(7));
        assert_eq!(child.wait().expect("wait").code(), Some(7));

        let child = Command::new("sleep").arg("100").spawn().expect("spawn sleep");
        assert!(peek_exit(child.id(), false).expect("waitid").is_none());
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        let status = wait_exit(child.id()).expect("waitid");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        let mut child = child;
        let _ = child.wait();
    }
}
