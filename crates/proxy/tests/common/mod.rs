//! A throw-away network for the data-plane tests, built from network namespaces this test
//! process creates and deletes (also on panic, via Drop):
//!
//! ```text
//!   <id>-lan:  br0 192.168.122.1/24 ──┬── <id>-node eth0 192.168.122.11 (default via .1)
//!                                     └── <id>-cl   eth0 192.168.122.100 (the LAN client)
//!   <id>-node: rkube0 10.244.0.1/24 ──┬── <id>-p1 eth0 10.244.0.2 (default via .1)
//!                                     ├── <id>-p2 eth0 10.244.0.3
//!                                     └── <id>-p3 eth0 10.244.0.4
//! ```
//! Pod ports have hairpin mode on (kubelet's `hairpin-veth`).
//! No interface is created in the root namespace (veth pairs are created inside a sandbox
//! namespace with the peer placed directly in another) and no namespace has a route to it.
//! The lan namespace does not forward, so packets to unknown addresses die there.
//! Each pod runs a python3 responder bound to its IP: HTTP :8080 and UDP :5300 answer
//! "<pod name> <client ip>", TCP :9000 echoes lines as "<pod name>:<line>".

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proxy::{Endpoint, ProxyConfig};

pub const PREFIX: &str = "rkpx";
pub const LAN_GW: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 1);
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 11);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 100);
pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
pub const NODE_NAME: &str = "node-a";

const RESPONDER: &str = r#"
import sys, socket, threading, http.server, socketserver
name, ip = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{name} {self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn): no DNS in a sandbox.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "pod", self.server_address[1]
srv = S((ip, 8080), H)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((ip, 5300))
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((ip, 9000))
t.listen(16)
def udp():
    while True:
        d, a = u.recvfrom(2048)
        u.sendto(f"{name} {a[0]}".encode(), a)
def conn(c):
    f = c.makefile("rwb")
    for line in f:
        f.write(f"{name}:{line.decode().strip()}\n".encode())
        f.flush()
def tcp():
    while True:
        c, _ = t.accept()
        threading.Thread(target=conn, args=(c,), daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
threading.Thread(target=tcp, daemon=True).start()
print("ready", flush=True)
srv.serve_forever()
"#;

const HTTP_CLIENT: &str = r#"
import sys, http.client, socket, time
host, port, n, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
for i in range(n):
    t0 = time.monotonic()
    try:
        c = http.client.HTTPConnection(host, port, timeout=timeout)
        c.request("GET", "/")
        r = c.getresponse()
        print("OK", r.read().decode().strip(), flush=True)
        c.close()
    except ConnectionRefusedError:
        print("REFUSED", round(time.monotonic() - t0, 3), flush=True)
    except TimeoutError:
        print("TIMEOUT", flush=True)
    except OSError as e:
        print("ERR", e.errno, flush=True)
"#;

const UDP_CLIENT: &str = r#"
import sys, socket
host, port, n, timeout, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", sport))
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        s.send(b"q")
        print("OK", s.recv(2048).decode(), flush=True)
    except ConnectionRefusedError:
        print("REFUSED", flush=True)
    except TimeoutError:
        print("TIMEOUT", flush=True)
    except OSError as e:
        print("ERR", e.errno, flush=True)
    s.close()
"#;

const TCP_CLIENT: &str = r#"
import sys, socket
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
f = s.makefile("rwb")
print("connected", flush=True)
for line in sys.stdin:
    try:
        f.write(line.encode())
        f.flush()
        print("OK", f.readline().decode().strip(), flush=True)
    except OSError as e:
        print("ERR", e, flush=True)
"#;

/// One GET: "<status> <Content-Type> <X-Content-Type-Options> <JSON body, keys sorted>",
/// or "REFUSED", "TIMEOUT", "ERR <errno>".
const STATUS_CLIENT: &str = r#"
import sys, http.client, json
host, port = sys.argv[1], int(sys.argv[2])
try:
    c = http.client.HTTPConnection(host, port, timeout=2)
    c.request("GET", "/any/path?x=1")
    r = c.getresponse()
    body = json.loads(r.read().decode())
    print(r.status, r.getheader("Content-Type"), r.getheader("X-Content-Type-Options"), json.dumps(body, sort_keys=True))
except ConnectionRefusedError:
    print("REFUSED")
except TimeoutError:
    print("TIMEOUT")
except OSError as e:
    print("ERR", e.errno)
"#;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// True when the test can run: root (CAP_NET_ADMIN) with `nft` and `ip` installed. Otherwise
/// it prints why the test is skipped, and fails instead when `CI=true` (a skipped test must
/// not pass silently in CI).
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let missing: Vec<&str> =
        ["nft", "ip"].into_iter().filter(|t| Command::new(t).arg("-V").output().is_err()).collect();
    let why = if !root {
        "needs root (network namespaces, nftables)".to_string()
    } else if !missing.is_empty() {
        format!("needs {} (scripts/install-prereqs.sh)", missing.join(", "))
    } else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}, and CI=true forbids skipping");
    }
    eprintln!("skipping {test}: {why}");
    false
}

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn run(program: &str, args: &[&str]) -> Result<Output, String> {
    Command::new(program).args(args).output().map_err(|e| format!("{program} {args:?}: {e}"))
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = run("ip", args)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Deletes namespaces left by test processes that no longer exist (names carry the pid).
fn cleanup_stale() {
    let Ok(out) = run("ip", &["netns", "list"]) else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let Some((pid, _)) = rest.split_once('x') else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_netns_processes(name);
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn kill_netns_processes(ns: &str) {
    if let Ok(out) = run("ip", &["netns", "pids", ns]) {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: plain kill(2) of a process inside a namespace this test created.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

pub struct Pod {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
}

pub struct Sandbox {
    pub id: String,
    pub lan: String,
    pub node: String,
    pub client: String,
    pub pods: Vec<Pod>,
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            kill_netns_processes(ns);
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

impl Sandbox {
    /// Builds the topology with `pods` pods (at most 3) and starts their responders.
    pub fn new(pods: usize) -> Sandbox {
        cleanup_stale();
        let id = format!("{PREFIX}{}x{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let mut sb = Sandbox {
            lan: format!("{id}-lan"),
            node: format!("{id}-node"),
            client: format!("{id}-cl"),
            id,
            pods: Vec::new(),
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        if let Err(e) = sb.build(pods) {
            panic!("building sandbox {}: {e}", sb.id);
        }
        sb
    }

    fn add_ns(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.namespaces.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"])
    }

    fn build(&mut self, pods: usize) -> Result<(), String> {
        let (lan, node, client) = (self.lan.clone(), self.node.clone(), self.client.clone());
        for ns in [&lan, &node, &client] {
            self.add_ns(ns)?;
        }
        ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &lan, "addr", "add", "192.168.122.1/24", "dev", "br0"])?;
        ip(&["-n", &lan, "link", "set", "br0", "up"])?;
        for (ns, port, addr) in [(&node, "vnode", "192.168.122.11/24"), (&client, "vcl", "192.168.122.100/24")] {
            ip(&["-n", &lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
            ip(&["-n", &lan, "link", "set", port, "master", "br0", "up"])?;
            ip(&["-n", ns, "addr", "add", addr, "dev", "eth0"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        ip(&["-n", &node, "route", "add", "default", "via", "192.168.122.1"])?;
        ip(&["-n", &node, "link", "add", "rkube0", "type", "bridge"])?;
        ip(&["-n", &node, "addr", "add", "10.244.0.1/24", "dev", "rkube0"])?;
        ip(&["-n", &node, "link", "set", "rkube0", "up"])?;
        for i in 0..pods.min(3) {
            let name = format!("p{}", i + 1);
            let ns = format!("{}-{name}", self.id);
            let pod_ip = Ipv4Addr::new(10, 244, 0, 2 + i as u8);
            self.add_ns(&ns)?;
            let port = format!("v{name}");
            ip(&["-n", &node, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            ip(&["-n", &node, "link", "set", &port, "master", "rkube0", "up"])?;
            // As kubelet's hairpin-veth mode: with br_netfilter a pod DNATed to itself is
            // bridged back out of the port it came in on.
            ip(&["-n", &node, "link", "set", &port, "type", "bridge_slave", "hairpin", "on"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{pod_ip}/24"), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "route", "add", "default", "via", "10.244.0.1"])?;
            self.pods.push(Pod { name, ns, ip: pod_ip });
        }
        for i in 0..self.pods.len() {
            let (ns, name, pod_ip) = (self.pods[i].ns.clone(), self.pods[i].name.clone(), self.pods[i].ip.to_string());
            let mut child = Command::new("ip")
                .args(["netns", "exec", &ns, python(), "-c", RESPONDER, &name, &pod_ip])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("starting responder: {e}"))?;
            let stdout = child.stdout.take();
            self.children.push(child);
            let mut line = String::new();
            if let Some(out) = stdout {
                let _ = BufReader::new(out).read_line(&mut line);
            }
            if line.trim() != "ready" {
                return Err(format!("responder {name} did not start"));
            }
        }
        Ok(())
    }

    pub fn netns_path(&self, ns: &str) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{ns}"))
    }

    /// A proxy configuration programming the node namespace.
    pub fn proxy_config(&self) -> ProxyConfig {
        ProxyConfig {
            node_name: NODE_NAME.into(),
            node_ips: vec![NODE_IP],
            netns: Some(self.netns_path(&self.node)),
            ..ProxyConfig::default()
        }
    }

    /// A ready endpoint on pod `i` (0-based), local to this node, port `port`.
    pub fn endpoint(&self, i: usize, port: u16) -> Endpoint {
        Endpoint::ready(self.pods[i].ip, port, Some(NODE_NAME), true)
    }

    /// Runs a command in `ns`.
    pub fn exec(&self, ns: &str, program: &str, args: &[&str]) -> Output {
        let mut a = vec!["netns", "exec", ns, program];
        a.extend_from_slice(args);
        match run("ip", &a) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        }
    }

    fn lines(out: Output) -> Vec<String> {
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    /// `n` HTTP GETs from `ns` to `ip:port`, one connection each: "OK <pod> <client ip>",
    /// "REFUSED <seconds>", "TIMEOUT" or "ERR <errno>".
    pub fn http_get(&self, ns: &str, ip: Ipv4Addr, port: u16, n: usize, timeout: f64) -> Vec<String> {
        let (ip, port, n, timeout) = (ip.to_string(), port.to_string(), n.to_string(), timeout.to_string());
        Self::lines(self.exec(ns, python(), &["-c", HTTP_CLIENT, &ip, &port, &n, &timeout]))
    }

    /// `n` UDP queries from `ns` to `ip:port` (source port `sport`, 0 = any): "OK <pod> <client ip>", ...
    pub fn udp_query(&self, ns: &str, ip: Ipv4Addr, port: u16, n: usize, timeout: f64, sport: u16) -> Vec<String> {
        let (ip, port, n, timeout, sport) =
            (ip.to_string(), port.to_string(), n.to_string(), timeout.to_string(), sport.to_string());
        Self::lines(self.exec(ns, python(), &["-c", UDP_CLIENT, &ip, &port, &n, &timeout, &sport]))
    }

    /// One GET of a JSON resource from `ns` (a health check node port): see `STATUS_CLIENT`.
    pub fn http_status(&self, ns: &str, ip: Ipv4Addr, port: u16) -> String {
        let out = self.exec(ns, python(), &["-c", STATUS_CLIENT, &ip.to_string(), &port.to_string()]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A long-lived TCP connection from `ns` to `ip:port`.
    pub fn tcp_session(&self, ns: &str, ip: Ipv4Addr, port: u16) -> TcpSession {
        let mut child = match Command::new("ip")
            .args(["netns", "exec", ns, python(), "-c", TCP_CLIENT, &ip.to_string(), &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("starting tcp client: {e}"),
        };
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        let mut s = TcpSession { child, stdin, stdout };
        let first = s.read_line();
        assert_eq!(first, "connected", "tcp client could not connect");
        s
    }
}

/// See [`Sandbox::tcp_session`].
pub struct TcpSession {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
}

impl TcpSession {
    fn read_line(&mut self) -> String {
        let mut line = String::new();
        if let Some(out) = self.stdout.as_mut() {
            let _ = out.read_line(&mut line);
        }
        line.trim().to_string()
    }

    /// Sends `line` on the connection and returns the client's report ("OK <pod>:<line>").
    pub fn send(&mut self, line: &str) -> String {
        if let Some(inp) = self.stdin.as_mut() {
            let _ = writeln!(inp, "{line}");
            let _ = inp.flush();
        }
        self.read_line()
    }
}

impl Drop for TcpSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pod names in "OK <pod> ..." lines.
pub fn pods_in(lines: &[String]) -> std::collections::BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("OK "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// The client IPs the pods saw in "OK <pod> <client>" lines.
pub fn clients_in(lines: &[String]) -> std::collections::BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("OK "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(String::from)
        .collect()
}

pub fn wait(d: Duration) {
    std::thread::sleep(d);
}

/// Node setup (ip_forward, bridge-nf-call-iptables) and a proxier for the sandbox's node.
pub fn proxier_for(sb: &Sandbox) -> proxy::Proxier {
    let cfg = sb.proxy_config();
    if let Err(e) = proxy::setup_node(&cfg, &proxy::NodeSetup::default()) {
        panic!("setup_node: {e}");
    }
    proxy::Proxier::new(cfg)
}

/// Syncs, showing the failed transaction on error.
pub fn sync(p: &mut proxy::Proxier, desired: &[(proxy::ServicePortInfo, Vec<Endpoint>)]) -> proxy::SyncStats {
    match p.sync(desired) {
        Ok(s) => s,
        Err(e) => panic!("sync: {e}\n{}", p.last_transaction()),
    }
}

/// Every request of an `http_get` / `udp_query` run succeeded.
pub fn all_ok(lines: &[String]) -> bool {
    !lines.is_empty() && lines.iter().all(|l| l.starts_with("OK "))
}

/// One request, refused (reset or port unreachable) within half a second.
pub fn refused_fast(lines: &[String]) -> bool {
    lines.len() == 1
        && lines[0].starts_with("REFUSED ")
        && lines[0].split_whitespace().nth(1).and_then(|s| s.parse::<f64>().ok()).is_some_and(|t| t < 0.5)
}
