//! `rkube up --nodes N`: a multi-node cluster on one machine for learners, with no
//! container engine. Like the lesson's KVM host, this machine gets a bridge
//! (`<name>-lan`, the LAN's first address, e.g. 192.168.122.1) and every node a
//! network namespace (`<name>-node<i>`) with `eth0` on that bridge
//! (192.168.122.11, .12, ...) and a default route via the bridge. node1 runs
//! `rkube up` (server + agent), the others `rkube agent` joined with node1's
//! `node-token`; each keeps its data in `<data-dir>/node<i>` and logs to
//! `<data-dir>/node<i>.log`. `rkube down` (or SIGTERM/Ctrl-C here) stops them and
//! removes the namespaces, the bridge and the pods' processes.

use crate::cli::{DownArgs, UpArgs};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The file in the data dir that says what `rkube down` must remove.
const STATE_FILE: &str = "local-cluster.json";
const JOIN_WAIT: Duration = Duration::from_secs(90);

/// The names and addresses of a local cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub lan: Ipv4Net,
    pub nodes: usize,
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

impl Plan {
    /// Checks the name (interface names have at most 15 bytes) and that the LAN
    /// has room for the host, the nodes and the default LoadBalancer pool.
    pub fn new(name: &str, lan: Ipv4Net, nodes: usize) -> Result<Plan, String> {
        if !(2..=20).contains(&nodes) {
            return Err(format!("--nodes {nodes}: a local cluster has 2 to 20 nodes (1 is plain `rkube up`)"));
        }
        let valid = !name.is_empty()
            && name.len() <= 9
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-');
        if !valid {
            return Err(format!(
                "--name {name:?}: use 1 to 9 characters of a-z, 0-9 and '-' (it prefixes interface names)"
            ));
        }
        // Room for the host (.1), the nodes (.11-.30) and the pool (.200-.250).
        if lan.prefix_len() > 24 {
            return Err(format!("--lan {lan}: too small; use a /24 or larger, e.g. 192.168.122.0/24"));
        }
        Ok(Plan { name: name.to_string(), lan: lan.trunc(), nodes })
    }

    fn offset(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.lan.network()).wrapping_add(n))
    }

    /// This machine's address on the bridge (`.1`).
    pub fn host_ip(&self) -> Ipv4Addr {
        self.offset(1)
    }

    /// Node `i`'s address (1-based: node1 is `.11`).
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        self.offset(10 + u32::try_from(i).unwrap_or(0))
    }

    pub fn bridge(&self) -> String {
        format!("{}-lan", self.name)
    }

    pub fn netns(&self, i: usize) -> String {
        format!("{}-node{i}", self.name)
    }

    fn host_veth(&self, i: usize) -> String {
        format!("{}-n{i}", self.name)
    }

    /// The LoadBalancer pool given when none is: `.200-.250` (the lesson's).
    pub fn default_lb_pool(&self) -> String {
        format!("{}-{}", self.offset(200), self.offset(250))
    }

    /// The `ip` commands that build the LAN, in order.
    pub fn setup_commands(&self) -> Vec<Vec<String>> {
        let br = self.bridge();
        let prefix = self.lan.prefix_len();
        let mut cmds = vec![
            argv(&["ip", "link", "add", &br, "type", "bridge"]),
            argv(&["ip", "addr", "add", &format!("{}/{prefix}", self.host_ip()), "dev", &br]),
            argv(&["ip", "link", "set", &br, "up"]),
        ];
        for i in 1..=self.nodes {
            let (ns, veth) = (self.netns(i), self.host_veth(i));
            cmds.extend([
                argv(&["ip", "netns", "add", &ns]),
                argv(&["ip", "-n", &ns, "link", "set", "lo", "up"]),
                argv(&["ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns]),
                argv(&["ip", "link", "set", &veth, "master", &br]),
                argv(&["ip", "link", "set", &veth, "up"]),
                argv(&["ip", "-n", &ns, "addr", "add", &format!("{}/{prefix}", self.node_ip(i)), "dev", "eth0"]),
                argv(&["ip", "-n", &ns, "link", "set", "eth0", "up"]),
                argv(&["ip", "-n", &ns, "route", "add", "default", "via", &self.host_ip().to_string()]),
            ]);
        }
        cmds
    }

    /// The commands that remove the LAN (the veths go with their namespaces).
    pub fn teardown_commands(&self) -> Vec<Vec<String>> {
        let mut cmds: Vec<Vec<String>> =
            (1..=self.nodes).map(|i| argv(&["ip", "netns", "del", &self.netns(i)])).collect();
        cmds.push(argv(&["ip", "link", "del", &self.bridge()]));
        cmds
    }
}

fn run(cmd: &[String]) -> Result<(), String> {
    let (prog, args) = cmd.split_first().ok_or("empty command")?;
    let out = Command::new(prog).args(args).output().map_err(|e| format!("{prog}: {e} (is iproute2 installed?)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", cmd.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn netns_exists(ns: &str) -> bool {
    Path::new("/run/netns").join(ns).exists()
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Kills every process in node `i`'s namespace (its rkube, pods and shims).
fn kill_netns_processes(ns: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else { return };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        // SAFETY: kill(2) of a pid just listed; a vanished pid is harmless.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Kills the pods of the nodes whose data dirs are under `data_dir`: their pod
/// infra processes and shims (named by their command line, which holds the node's
/// data dir) and everything in the pods' own network namespaces. Pods outlive their
/// agent by design, and they sit in network namespaces of their own, not the node's.
fn kill_pods(data_dir: &Path) {
    let dir = data_dir.display().to_string();
    let procs: Vec<(i32, String, Option<PathBuf>)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (pid, cmdline, std::fs::read_link(format!("/proc/{pid}/ns/net")).ok())
        })
        .collect();
    let ours = |cmd: &str| (cmd.contains(" pod-infra ") || cmd.contains(" container-shim ")) && cmd.contains(&dir);
    let nets: Vec<&PathBuf> = procs.iter().filter(|(_, c, _)| ours(c)).filter_map(|(_, _, n)| n.as_ref()).collect();
    // SAFETY: our own pid has no preconditions.
    let me = unsafe { libc::getpid() };
    let host_net = std::fs::read_link("/proc/self/ns/net").ok();
    for (pid, cmd, net) in &procs {
        let in_pod = net.as_ref().is_some_and(|n| nets.contains(&n) && Some(n) != host_net.as_ref());
        if *pid != me && (ours(cmd) || in_pod) {
            // SAFETY: kill(2) of a pid just read; a vanished pid is harmless.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
    }
}

/// Removes everything of `plan` that exists: processes, pods, namespaces, bridge.
fn tear_down(plan: &Plan, data_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for i in 1..=plan.nodes {
        kill_netns_processes(&plan.netns(i));
    }
    kill_pods(data_dir);
    // Killed processes leave their namespace once reaped; give them a moment.
    std::thread::sleep(Duration::from_millis(200));
    for cmd in plan.teardown_commands() {
        let exists = match cmd.get(1).map(String::as_str) {
            Some("netns") => cmd.get(3).is_some_and(|ns| netns_exists(ns)),
            _ => cmd.get(3).is_some_and(|l| link_exists(l)),
        };
        if exists {
            if let Err(e) = run(&cmd) {
                problems.push(e);
            }
        }
    }
    problems
}

#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    name: String,
    lan: String,
    nodes: usize,
    /// The `rkube up --nodes` process.
    pid: u32,
}

impl State {
    fn of(plan: &Plan) -> State {
        State { name: plan.name.clone(), lan: plan.lan.to_string(), nodes: plan.nodes, pid: std::process::id() }
    }

    fn plan(&self) -> Result<Plan, String> {
        let lan = self.lan.parse().map_err(|e| format!("{}: {e}", self.lan))?;
        Plan::new(&self.name, lan, self.nodes)
    }
}

fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_FILE)
}

fn write_state(data_dir: &Path, state: &State) -> Result<(), String> {
    let text = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
    std::fs::write(state_path(data_dir), text).map_err(|e| format!("writing {}: {e}", state_path(data_dir).display()))
}

/// The arguments of `rkube up` after `up`, without those this module sets itself.
fn forwarded(raw: &[String]) -> Vec<String> {
    const OWN: &[&str] = &["--nodes", "--lan", "--name", "--data-dir", "--advertise-address", "--node-name"];
    let mut out = Vec::new();
    let mut it = raw.iter().skip_while(|a| a.as_str() != "up").skip(1);
    while let Some(a) = it.next() {
        let flag = a.split('=').next().unwrap_or_default();
        if OWN.contains(&flag) {
            if !a.contains('=') {
                it.next();
            }
            continue;
        }
        out.push(a.clone());
    }
    out
}

struct Node {
    index: usize,
    child: Child,
}

fn spawn(plan: &Plan, i: usize, log: &Path, args: &[String], env: &[(&str, String)]) -> Result<Node, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding the rkube binary: {e}"))?;
    let file = std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &plan.netns(i)]).arg(exe).args(args);
    cmd.env_remove("KUBECONFIG").stdin(Stdio::null()).stdout(file).stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().map_err(|e| format!("starting node{i}: {e}"))?;
    Ok(Node { index: i, child })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until `ready` says so, failing when node `n`'s process exits first.
fn wait_for(node: &mut Node, log: &Path, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        if terminating() {
            return Err(format!("interrupted while node{} was starting", node.index));
        }
        if let Ok(Some(status)) = node.child.try_wait() {
            return Err(format!(
                "node{} stopped ({status}) before {what}; its log {}:\n{}",
                node.index,
                log.display(),
                tail(log, 30)
            ));
        }
        if start.elapsed() > JOIN_WAIT {
            return Err(format!(
                "node{}: no {what} after {JOIN_WAIT:?}; its log {}:\n{}",
                node.index,
                log.display(),
                tail(log, 30)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stop_all(nodes: &mut [Node]) {
    for n in nodes.iter() {
        // SAFETY: kill(2) of our own child (`ip netns exec` execs rkube in place).
        unsafe { libc::kill(n.child.id() as i32, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for n in nodes.iter_mut() {
        while n.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = n.child.kill();
        let _ = n.child.wait();
    }
}

/// Until SIGTERM or SIGINT, or one node's process exits (which is reported).
fn wait_for_signal_or_exit(nodes: &mut [Node], data_dir: &Path) {
    let mut reported = vec![false; nodes.len()];
    while !terminating() {
        for (k, n) in nodes.iter_mut().enumerate() {
            if !reported[k] {
                if let Ok(Some(status)) = n.child.try_wait() {
                    reported[k] = true;
                    let log = data_dir.join(format!("node{}.log", n.index));
                    eprintln!(
                        "rkube up: node{} stopped ({status}); its log {}:\n{}",
                        n.index,
                        log.display(),
                        tail(&log, 20)
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Set by SIGTERM or SIGINT.
static TERMINATING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    TERMINATING.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn terminating() -> bool {
    TERMINATING.load(std::sync::atomic::Ordering::SeqCst)
}

/// SIGTERM and SIGINT set [`TERMINATING`] (an atomic store is async-signal-safe).
fn install_signal_flag() -> Result<(), String> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only does an atomic store.
        let prev = unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
        if prev == libc::SIG_ERR {
            return Err(format!("cannot handle signal {sig}"));
        }
    }
    Ok(())
}

/// Whether a process runs (kill with signal 0).
fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    i32::try_from(pid).is_ok_and(|p| unsafe { libc::kill(p, 0) } == 0)
}

/// `rkube up --nodes N`.
pub fn up(args: &UpArgs, raw: &[String]) -> Result<(), String> {
    let plan = Plan::new(&args.local.name, args.local.lan, args.local.nodes)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("rkube up --nodes creates network namespaces and a bridge: run it as root".into());
    }
    let data_dir = &args.server.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
    if state_path(data_dir).exists() {
        return Err(format!(
            "{} exists: a local cluster from this data dir is running or was not removed; run `rkube down --data-dir {}` first",
            state_path(data_dir).display(),
            data_dir.display()
        ));
    }
    if link_exists(&plan.bridge()) || (1..=plan.nodes).any(|i| netns_exists(&plan.netns(i))) {
        return Err(format!(
            "the bridge {} or a namespace {}<i> exists already: another local cluster uses the name {:?} (choose another with --name)",
            plan.bridge(),
            plan.netns(0).trim_end_matches('0'),
            plan.name
        ));
    }
    // Ctrl-C or SIGTERM from here on (also while the nodes start) ends in the
    // same clean-up.
    install_signal_flag()?;
    write_state(data_dir, &State::of(&plan))?;
    let result = run_cluster(&plan, args, raw, data_dir);
    let problems = tear_down(&plan, data_dir);
    let _ = std::fs::remove_file(state_path(data_dir));
    for p in &problems {
        eprintln!("rkube up: cleaning up: {p}");
    }
    match result {
        Ok(()) => {
            eprintln!("rkube up: stopped; removed the {} nodes and the bridge {}", plan.nodes, plan.bridge());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn run_cluster(plan: &Plan, args: &UpArgs, raw: &[String], data_dir: &Path) -> Result<(), String> {
    eprintln!(
        "rkube up: creating {} nodes on the bridge {} ({}, this machine {}): namespaces {}..{}",
        plan.nodes,
        plan.bridge(),
        plan.lan,
        plan.host_ip(),
        plan.netns(1),
        plan.netns(plan.nodes)
    );
    for cmd in plan.setup_commands() {
        run(&cmd).map_err(|e| format!("building the nodes' network: {e}"))?;
    }
    let mut nodes: Vec<Node> = Vec::new();
    let result = start_nodes(plan, args, raw, data_dir, &mut nodes);
    if result.is_ok() {
        wait_for_signal_or_exit(&mut nodes, data_dir);
        eprintln!("rkube up: shutting down {} nodes", nodes.len());
    }
    stop_all(&mut nodes);
    result
}

fn start_nodes(
    plan: &Plan,
    args: &UpArgs,
    raw: &[String],
    data_dir: &Path,
    nodes: &mut Vec<Node>,
) -> Result<(), String> {
    let server_ip = plan.node_ip(1);
    let dir1 = data_dir.join("node1");
    let log1 = data_dir.join("node1.log");
    let mut up_args = argv(&["up", "--data-dir"]);
    up_args.push(dir1.display().to_string());
    up_args.extend(["--advertise-address".into(), server_ip.to_string(), "--node-name".into(), "node1".into()]);
    let mut rest = forwarded(raw);
    if args.server.lb_pools.is_empty() {
        rest.extend(["--lb-pool".into(), plan.default_lb_pool()]);
    }
    up_args.extend(rest);
    // Left by an earlier run of this data dir: not a sign that this one is up.
    let _ = std::fs::remove_file(dir1.join("kubeconfig.yaml"));
    eprintln!("rkube up: starting node1 (control plane and node) at {server_ip}; log {}", log1.display());
    nodes.push(spawn(plan, 1, &log1, &up_args, &[])?);
    let kubeconfig = dir1.join("kubeconfig.yaml");
    let token_file = dir1.join("node-token");
    let server_ready =
        || std::fs::read_to_string(&kubeconfig).is_ok_and(|k| k.contains("users:")) && token_file.exists();
    wait_for(&mut nodes[0], &log1, "the API server", server_ready)?;
    let token = std::fs::read_to_string(&token_file).map_err(|e| format!("reading {}: {e}", token_file.display()))?;
    let token = token.trim().to_string();
    let server = format!("https://{server_ip}:{}", args.server.port);
    for i in 2..=plan.nodes {
        let dir = data_dir.join(format!("node{i}"));
        let log = data_dir.join(format!("node{i}.log"));
        let mut a = argv(&["agent", "--server", &server, "--data-dir"]);
        a.push(dir.display().to_string());
        a.extend(["--node-ip".into(), plan.node_ip(i).to_string(), "--node-name".into(), format!("node{i}")]);
        a.extend(["--service-cidr".into(), args.server.service_cidr.to_string()]);
        a.extend(["--cluster-cidr".into(), args.server.cluster_cidr.to_string()]);
        a.extend(["--cluster-domain".into(), args.server.cluster_domain.clone()]);
        if args.server.disable.contains(&crate::addons::Addon::Nodelocaldns) {
            a.push("--no-node-local-dns".into());
        }
        eprintln!("rkube up: starting node{i} (agent) at {}; log {}", plan.node_ip(i), log.display());
        nodes.push(spawn(plan, i, &log, &a, &[("RKUBE_TOKEN", token.clone())])?);
    }
    for node in nodes.iter_mut().skip(1) {
        let log = data_dir.join(format!("node{}.log", node.index));
        let joined = || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("is Ready in the cluster"));
        wait_for(node, &log, "joining", joined)?;
        eprintln!("rkube up: node{} joined", node.index);
    }
    // node1's kubeconfig names its loopback; this machine reaches it over the bridge.
    let admin = data_dir.join("kubeconfig.yaml");
    let text = std::fs::read_to_string(&kubeconfig).map_err(|e| format!("reading {}: {e}", kubeconfig.display()))?;
    let text: String = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("server: ") {
            Some(_) => format!("{}server: {server}\n", &l[..l.len() - l.trim_start().len()]),
            None => format!("{l}\n"),
        })
        .collect();
    write_private(&admin, &text)?;
    println!(
        "rkube up: ready: {} nodes (node1 runs the control plane at {server}); LoadBalancer pool {}. \
         Use it with: export KUBECONFIG={}; kubectl get nodes -o wide. Stop with Ctrl-C or `rkube down --data-dir {}`",
        plan.nodes,
        if args.server.lb_pools.is_empty() { plan.default_lb_pool() } else { args.server.lb_pools.join(",") },
        admin.display(),
        data_dir.display()
    );
    Ok(())
}

/// Writes a file only root may read (it holds the admin credentials).
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// `rkube down`: stops a local cluster's `rkube up --nodes` (or, if it is gone,
/// removes what it left).
pub fn down(args: &DownArgs) -> Result<(), String> {
    let path = state_path(&args.data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "no local cluster in {} ({} is missing); `rkube down` removes what `rkube up --nodes N --data-dir DIR` made",
                args.data_dir.display(),
                path.display()
            ))
        }
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let state: State = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if alive(state.pid) {
        eprintln!("rkube down: stopping rkube up (pid {})", state.pid);
        // SAFETY: kill(2) of the pid the state file names.
        unsafe { libc::kill(state.pid as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(40);
        while path.exists() && alive(state.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let plan = state.plan().map_err(|e| format!("{}: {e}", path.display()))?;
    let problems = tear_down(&plan, &args.data_dir);
    let _ = std::fs::remove_file(&path);
    if !problems.is_empty() {
        return Err(format!("removing the local cluster: {}", problems.join("; ")));
    }
    eprintln!("rkube down: removed {} nodes and the bridge {}", plan.nodes, plan.bridge());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan::new("rkube", "192.168.122.0/24".parse().expect("cidr"), 4).expect("plan")
    }

    #[test]
    fn names_and_addresses_follow_the_lesson() {
        let p = plan();
        assert_eq!(p.host_ip(), Ipv4Addr::new(192, 168, 122, 1));
        assert_eq!(p.node_ip(1), Ipv4Addr::new(192, 168, 122, 11));
        assert_eq!(p.node_ip(4), Ipv4Addr::new(192, 168, 122, 14));
        assert_eq!(p.netns(2), "rkube-node2");
        assert_eq!(p.bridge(), "rkube-lan");
        assert_eq!(p.default_lb_pool(), "192.168.122.200-192.168.122.250");
        let big = Plan::new("t", "10.1.0.0/16".parse().expect("cidr"), 3).expect("plan");
        assert_eq!(big.default_lb_pool(), "10.1.0.200-10.1.0.250");
        let cmds: Vec<String> = p.setup_commands().iter().map(|c| c.join(" ")).collect();
        assert_eq!(cmds[0], "ip link add rkube-lan type bridge");
        assert!(
            cmds.contains(&"ip link add rkube-n3 type veth peer name eth0 netns rkube-node3".to_string()),
            "{cmds:?}"
        );
        assert!(cmds.contains(&"ip -n rkube-node4 addr add 192.168.122.14/24 dev eth0".to_string()));
        assert!(cmds.contains(&"ip -n rkube-node1 route add default via 192.168.122.1".to_string()));
        let down: Vec<String> = p.teardown_commands().iter().map(|c| c.join(" ")).collect();
        assert_eq!(down.last().map(String::as_str), Some("ip link del rkube-lan"));
        assert_eq!(down.len(), 5);
    }

    #[test]
    fn bad_plans_say_why() {
        let lan: Ipv4Net = "192.168.122.0/24".parse().expect("cidr");
        assert!(Plan::new("rkube", lan, 1).expect_err("one").contains("2 to 20"));
        assert!(Plan::new("much-too-long", lan, 3).expect_err("long").contains("9 characters"));
        assert!(Plan::new("Bad", lan, 3).expect_err("case").contains("a-z"));
        assert!(Plan::new("x", "10.0.0.0/25".parse().expect("cidr"), 3).expect_err("small").contains("/24"));
    }

    #[test]
    fn forwarded_flags_leave_out_what_the_plan_sets() {
        let raw = argv(&[
            "rkube",
            "--log-format",
            "text",
            "up",
            "--nodes",
            "4",
            "--data-dir=/x",
            "--lb-pool",
            "10.0.0.1-10.0.0.9",
            "--name",
            "lab",
            "--upstream-dns",
            "1.1.1.1",
            "--lan=10.9.0.0/24",
        ]);
        assert_eq!(forwarded(&raw), argv(&["--lb-pool", "10.0.0.1-10.0.0.9", "--upstream-dns", "1.1.1.1"]));
    }
}
