//! A 3-node sandbox cluster for LoadBalancer failover: node1 runs `rkube up` (no
//! pods, so never eligible for the Local-policy Service), node2 and node3 run
//! `rkube agent` with one web pod each. The Service `web` (LoadBalancer,
//! `externalTrafficPolicy: Local`) is answered by the pod of whichever node holds its
//! address, so an answer names the announcing node. Used by `tests/lb_failover.rs`
//! and `benches/lb_failover.rs`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Child;
use std::time::{Duration, Instant};
use testkit::{Kubectl, Sandbox, SandboxNode};

pub const POOL: &str = "192.168.122.200-192.168.122.220";

pub struct Agent {
    pub node: usize,
    child: Option<Child>,
    data_dir: std::path::PathBuf,
}

pub struct LbCluster {
    pub server: SandboxNode,
    pub agents: Vec<Agent>,
    pub sandbox: Sandbox,
    bin: std::path::PathBuf,
    /// More flags for every `rkube agent`.
    agent_args: Vec<String>,
}

impl Drop for LbCluster {
    fn drop(&mut self) {
        for a in &mut self.agents {
            testkit::sandbox::kill_pods_of(&a.data_dir);
            if let Some(mut c) = a.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// `Hostname: <pod>` of a myweb answer.
pub fn hostname(answer: &str) -> Option<String> {
    answer.lines().find_map(|l| l.strip_prefix("Hostname: ")).map(|h| h.trim().to_string())
}

pub fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).saturating_sub(1).min(v.len() - 1)]
}

impl LbCluster {
    pub fn start(bin: &std::path::Path) -> LbCluster {
        Self::start_with(bin, &[], &[])
    }

    /// [`LbCluster::start`] with more flags for `rkube up` and for the agents.
    pub fn start_with(bin: &std::path::Path, server_args: &[&str], agent_args: &[&str]) -> LbCluster {
        let sandbox = Sandbox::new(3).expect("sandbox");
        let mut args = vec!["--node-name", "node1", "--lb-pool", POOL, "--upstream-dns", "192.168.122.1"];
        args.extend_from_slice(server_args);
        let server = sandbox.start_rkube(bin, 1, &args).expect("rkube up");
        let agent_args = agent_args.iter().map(|a| a.to_string()).collect();
        let mut c = LbCluster { server, agents: Vec::new(), sandbox, bin: bin.to_path_buf(), agent_args };
        for n in [2, 3] {
            let data_dir = c.sandbox.temp_dir().join(format!("node{n}-agent"));
            let mut a = Agent { node: n, child: None, data_dir };
            c.spawn_agent(&mut a);
            c.agents.push(a);
        }
        let k = c.k();
        c.wait("3 Ready nodes", Duration::from_secs(60), || {
            k.ok(["get", "nodes", "--no-headers"]).lines().filter(|l| l.contains(" Ready ")).count() == 3
        });
        for n in [2, 3] {
            let pod = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-node{n}\n  labels:\n    app: web\nspec:\n  nodeName: node{n}\n  containers:\n  - name: web\n    image: minjulee226/myweb\n");
            k.ok_with_stdin(["create", "-f", "-"], &pod);
        }
        let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n";
        k.ok_with_stdin(["create", "-f", "-"], svc);
        c.wait("2 web endpoints", Duration::from_secs(90), || {
            k.ok(["get", "endpoints", "web", "-o", "jsonpath={.subsets[*].addresses[*].ip}"]).split_whitespace().count()
                == 2
        });
        c
    }

    fn spawn_agent(&self, a: &mut Agent) {
        // The join token alone: the agent checks the server's CA against its hash.
        let token = self.server.node_token().expect("node-token");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.sandbox.temp_dir().join(format!("node{}-agent.log", a.node)))
            .expect("log");
        let mut cmd = self.sandbox.command(self.sandbox.node_netns(a.node), &self.bin);
        cmd.args(["agent", "--server", &format!("https://{}:6443", self.sandbox.node_ip(1))])
            .arg("--data-dir")
            .arg(&a.data_dir)
            .args(["--node-ip", &self.sandbox.node_ip(a.node).to_string(), "--node-name", &format!("node{}", a.node)])
            .args(&self.agent_args)
            .env("RKUBE_TOKEN", &token)
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        a.child = Some(cmd.spawn().expect("rkube agent"));
    }

    pub fn k(&self) -> Kubectl {
        self.server.kubectl()
    }

    pub fn logs(&self, node: usize) -> String {
        std::fs::read_to_string(self.sandbox.temp_dir().join(format!("node{node}-agent.log"))).unwrap_or_default()
    }

    pub fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}\n--- node2 ---\n{}\n--- node3 ---\n{}\n--- node1 ---\n{}",
            self.logs(2),
            self.logs(3),
            self.server.logs_tail(30)
        );
    }

    pub fn ingress(&self, svc: &str) -> Option<Ipv4Addr> {
        self.k().ok(["get", "svc", svc, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]).trim().parse().ok()
    }

    /// One HTTP request from the client namespace; the answering pod's name.
    pub fn probe(&self, ip: Ipv4Addr, timeout: Duration) -> Option<String> {
        self.probe_port(ip, 80, timeout)
    }

    pub fn probe_addr(&self, ip: Ipv4Addr, port: u16) -> Option<String> {
        self.probe_port(ip, port, Duration::from_millis(50))
    }

    fn probe_port(&self, ip: Ipv4Addr, port: u16, timeout: Duration) -> Option<String> {
        let addr = SocketAddr::from((ip, port));
        let mut s = self.sandbox.tcp_connect(self.sandbox.client_netns(), addr, timeout).ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        hostname(&out)
    }

    /// The node (2 or 3) whose pod answers for `ip`.
    pub fn holder(&self, ip: Ipv4Addr) -> Option<usize> {
        let h = self.probe(ip, Duration::from_millis(300))?;
        h.strip_prefix("web-node").and_then(|n| n.parse().ok())
    }

    pub fn mac(&self, node: usize) -> String {
        self.sandbox
            .exec_ok(self.sandbox.node_netns(node), "cat", ["/sys/class/net/eth0/address"])
            .expect("mac")
            .trim()
            .to_string()
    }

    /// Kills node `n`'s agent (SIGKILL); its pods and kernel state stay.
    pub fn kill_agent(&mut self, n: usize) {
        let a = self.agents.iter_mut().find(|a| a.node == n).expect("agent");
        if let Some(mut c) = a.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Loses node `n`: its agent is killed and its LAN link goes down.
    pub fn lose(&mut self, n: usize) {
        self.kill_agent(n);
        self.sandbox.exec_ok(self.sandbox.node_netns(n), "ip", ["link", "set", "eth0", "down"]).expect("link down");
    }

    /// Brings node `n` back: link up, agent restarted (it adopts its pod).
    pub fn restore(&mut self, n: usize) {
        self.sandbox.exec_ok(self.sandbox.node_netns(n), "ip", ["link", "set", "eth0", "up"]).expect("link up");
        let idx = self.agents.iter().position(|a| a.node == n).expect("agent");
        let mut a = self.agents.remove(idx);
        self.spawn_agent(&mut a);
        self.agents.push(a);
        // Ready again once the restarted agent has reported.
        let k = self.k();
        let started = jiff_now();
        self.wait(&format!("node{n} back"), Duration::from_secs(60), || {
            let hb = k.ok([
                "get",
                "lease",
                "-n",
                "kube-node-lease",
                &format!("node{n}"),
                "-o",
                "jsonpath={.spec.renewTime}",
            ]);
            hb.trim() > started.as_str()
        });
    }

    /// Kills the node holding `ip` and measures the gap: the last answer from the old
    /// node to the first from the other, the client trying every 10 ms.
    pub fn failover(&mut self, ip: Ipv4Addr) -> (usize, Duration) {
        self.takeover(ip, |c, old| c.lose(old))
    }

    /// Does `act` to the node holding `ip` and measures the gap until another node
    /// answers: the last answer from the old node to the first from the other, the
    /// client trying every 10 ms.
    pub fn takeover(&mut self, ip: Ipv4Addr, act: impl FnOnce(&mut Self, usize)) -> (usize, Duration) {
        let old = self.holder(ip).expect("a holder answers");
        let mut last_old = Instant::now();
        // A few answers first, so the client's ARP entry is fresh.
        for _ in 0..3 {
            if self.probe(ip, Duration::from_millis(100)).is_some() {
                last_old = Instant::now();
            }
        }
        act(self, old);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "no answer from another node within 20 s");
            match self.probe(ip, Duration::from_millis(50)) {
                Some(h) if h == format!("web-node{old}") => last_old = Instant::now(),
                Some(_) => return (old, last_old.elapsed()),
                None => {}
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to node `n`'s agent: a frozen agent keeps
    /// its link, its kernel rules and its pods, but answers nothing.
    pub fn signal(&self, n: usize, signal: &str) {
        let a = self.agents.iter().find(|a| a.node == n).expect("agent");
        let pid = a.child.as_ref().expect("agent running").id();
        let st = std::process::Command::new("kill").args(["-s", signal, &pid.to_string()]).status().expect("kill");
        assert!(st.success(), "kill -s {signal} {pid}");
    }

    /// Sets node `n`'s Ready condition to `status` through the API (the agent
    /// reports Ready again at its next status update).
    pub fn set_ready(&self, n: usize, status: &str) {
        let patch = format!(
            r#"{{"status":{{"conditions":[{{"type":"Ready","status":"{status}","reason":"Test","message":"set by the test"}}]}}}}"#
        );
        self.k().ok(["patch", "node", &format!("node{n}"), "--subresource=status", "--type=strategic", "-p", &patch]);
    }
}

fn jiff_now() -> String {
    // RFC 3339 with microseconds, comparable with the Lease's renewTime as text.
    let out = std::process::Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%S.%6NZ"]).output().expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
