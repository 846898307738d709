//! A second node joins with `rkube agent --server URL --token T` (issue 4):
//! it registers and becomes Ready, runs the pods scheduled to it, and the API
//! server reaches its agent for `kubectl logs` and `kubectl exec` through the
//! pinned self-signed serving certificate. Needs root.

use std::process::Child;
use std::time::{Duration, Instant};
use testkit::Sandbox;

struct Agent {
    child: Child,
    data_dir: std::path::PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        testkit::sandbox::kill_pods_of(&self.data_dir);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn second_node_joins_runs_pods_and_serves_logs_and_exec() {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return;
    }
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rkube"));
    let sandbox = Sandbox::new(2).expect("sandbox");
    let node1 = sandbox.start_rkube(bin, 1, &["--node-name", "node1"]).expect("rkube up");
    let k = node1.kubectl();
    let token = node1.token().expect("token");
    let ca = node1.data_dir().join("pki").join("ca.crt");
    let data_dir = sandbox.temp_dir().join("node2-agent");
    let log = std::fs::File::create(sandbox.temp_dir().join("node2-agent.log")).expect("log");
    let mut cmd = sandbox.command(sandbox.node_netns(2), bin);
    cmd.args(["agent", "--server", &format!("https://{}:6443", sandbox.node_ip(1)), "--ca-file"])
        .arg(&ca)
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--node-ip", &sandbox.node_ip(2).to_string(), "--node-name", "node2", "--upstream-dns", "192.168.122.1"])
        .env("RKUBE_TOKEN", &token)
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    let agent = Agent { child: cmd.spawn().expect("rkube agent"), data_dir };
    let logs = || std::fs::read_to_string(sandbox.temp_dir().join("node2-agent.log")).unwrap_or_default();
    let wait = |what: &str, f: &mut dyn FnMut() -> bool| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("timed out waiting for {what}\n--- node2 agent ---\n{}\n--- node1 ---\n{}", logs(), node1.logs_tail(30));
    };
    wait("node2 Ready", &mut || {
        k.ok(["get", "nodes", "--no-headers"]).lines().any(|l| l.starts_with("node2 ") && l.contains(" Ready "))
    });
    let cidrs = k.ok(["get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}"]);
    let cidrs: Vec<&str> = cidrs.split_whitespace().collect();
    assert_eq!(cidrs.len(), 2);
    assert_ne!(cidrs[0], cidrs[1], "each node has its own pod CIDR");

    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: on-node2\nspec:\n  nodeSelector:\n    kubernetes.io/hostname: node2\n  containers:\n  - name: web\n    image: minjulee226/myweb\n";
    k.ok_with_stdin(["create", "-f", "-"], pod);
    wait("the pod running on node2", &mut || {
        k.ok(["get", "pod", "on-node2", "-o", "jsonpath={.spec.nodeName} {.status.phase}"]) == "node2 Running"
    });
    let ip = k.ok(["get", "pod", "on-node2", "-o", "jsonpath={.status.podIP}"]);
    let cidr2 = k.ok(["get", "node", "node2", "-o", "jsonpath={.spec.podCIDR}"]);
    assert!(ip.starts_with(cidr2.trim_end_matches("0/24")), "{ip} in {cidr2}");
    let answer = sandbox
        .exec_ok(sandbox.node_netns(2), "curl", ["-s", "--max-time", "5", &format!("http://{ip}:8080/")])
        .expect("curl");
    assert!(answer.contains("Hostname: on-node2"), "{answer}");

    // The API server reaches node2's agent (pinned certificate) for exec and logs.
    assert_eq!(k.ok(["exec", "on-node2", "--", "hostname"]).trim(), "on-node2");
    let logs_out = k.ok(["logs", "on-node2"]);
    assert!(logs_out.contains("Received Request From"), "{logs_out}");
    k.ok(["delete", "pod", "on-node2"]);
    drop(agent);
}
