//! `rkube up --nodes 4` (issue 12 item 6): the lesson's 1 + 3 nodes on one machine.
//! "This machine" is a sandbox namespace: rkube builds its bridge there and its
//! node namespaces beside it (adopted by the sandbox, so they go even if the test
//! fails). Checks: 4 nodes Ready at the LAN's .11-.14, the nodelocaldns DaemonSet
//! 4/4 and coredns 2/2, the lesson's ReplicaSet spread over the nodes, NodePort 31111 on every node
//! and the LoadBalancer address from the default pool answering this machine;
//! then `rkube down` removes the processes, namespaces and the bridge. Needs root.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{manifest, Kubectl, Sandbox};

const LAN: &str = "10.77.0";

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait(what: &str, timeout: Duration, log: &std::path::Path, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {timeout:?} waiting for {what}\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

#[test]
fn rkube_up_nodes_4_builds_the_lessons_cluster_and_down_removes_it() {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return;
    }
    let sandbox = Sandbox::new(1).expect("sandbox");
    let host = sandbox.node_netns(1).to_string();
    let name = sandbox.id().to_string();
    for i in 1..=4 {
        sandbox.adopt_netns(&format!("{name}-node{i}")).expect("adopt");
    }
    let bin = env!("CARGO_BIN_EXE_rkube");
    let dir = sandbox.temp_dir().join("local");
    let log_path = sandbox.temp_dir().join("up.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let dir_s = dir.display().to_string();
    let child = Command::new("ip")
        .args(["netns", "exec", &host, bin, "up", "--nodes", "4", "--name", &name])
        .args(["--lan", &format!("{LAN}.0/24"), "--data-dir", &dir_s])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("rkube up --nodes 4");
    let mut up = Up(child);
    wait("rkube up: ready: 4 nodes", Duration::from_secs(180), &log_path, || {
        std::fs::read_to_string(&log_path).unwrap_or_default().contains("rkube up: ready: 4 nodes")
    });
    let k = Kubectl::new(dir.join("kubeconfig.yaml")).in_netns(host.clone());

    // Four Ready nodes at the LAN's .11-.14.
    wait("4 Ready nodes", Duration::from_secs(60), &log_path, || {
        k.ok(["get", "nodes", "--no-headers"]).lines().filter(|l| l.split_whitespace().nth(1) == Some("Ready")).count()
            == 4
    });
    let ips = k.ok(["get", "nodes", "-o", "jsonpath={.items[*].status.addresses[?(@.type==\"InternalIP\")].address}"]);
    let mut ips: Vec<&str> = ips.split_whitespace().collect();
    ips.sort();
    assert_eq!(ips, [format!("{LAN}.11"), format!("{LAN}.12"), format!("{LAN}.13"), format!("{LAN}.14")]);
    // The DNS add-ons: the cache on every node.
    wait("nodelocaldns 4/4", Duration::from_secs(120), &log_path, || {
        k.ok(["-n", "kube-system", "get", "ds", "nodelocaldns", "-o", "jsonpath={.status.numberReady}"]) == "4"
    });

    wait("coredns 2/2", Duration::from_secs(120), &log_path, || {
        k.ok(["-n", "kube-system", "get", "deploy", "coredns", "-o", "jsonpath={.status.readyReplicas}"]) == "2"
    });

    // The lesson's ReplicaSet, scaled to 8, spreads over the nodes.
    k.ok(["create", "-f", manifest("mynapp-rs.yml").to_str().expect("path")]);
    k.ok(["scale", "rs", "mynapp-rs", "--replicas=8"]);
    wait("8 ready pods", Duration::from_secs(120), &log_path, || {
        k.ok(["get", "rs", "mynapp-rs", "-o", "jsonpath={.status.readyReplicas}"]) == "8"
    });
    let nodes = k.ok(["get", "pods", "-l", "app=mynapp-rs", "-o", "jsonpath={.items[*].spec.nodeName}"]);
    let mut used: Vec<&str> = nodes.split_whitespace().collect();
    used.sort();
    used.dedup();
    assert!(used.len() >= 3, "pods on {used:?}");

    // NodePort 31111 on every node, and the LoadBalancer address from the default
    // pool, both from this machine (the bridge is its LAN).
    k.ok(["create", "-f", manifest("mynapp-svc-ext-nodeport.yml").to_str().expect("path")]);
    k.ok(["create", "-f", manifest("mynapp-svc-ext-loadbalancer.yml").to_str().expect("path")]);
    let curl =
        |url: &str| sandbox.exec(&host, "curl", ["-s", "--max-time", "2", url]).map(|o| o.stdout).unwrap_or_default();
    for i in 11..=14 {
        let url = format!("http://{LAN}.{i}:31111/");
        wait(&format!("{url} answering"), Duration::from_secs(30), &log_path, || curl(&url).contains("Hostname: "));
    }
    let mut lb = String::new();
    wait("a LoadBalancer address", Duration::from_secs(30), &log_path, || {
        lb = k.ok([
            "get",
            "svc",
            "-o",
            "jsonpath={.items[?(@.spec.type==\"LoadBalancer\")].status.loadBalancer.ingress[0].ip}",
        ]);
        !lb.is_empty()
    });
    assert!(lb.starts_with(&format!("{LAN}.2")), "from the default pool .200-.250: {lb}");
    let url = format!("http://{lb}/");
    wait(&format!("{url} answering"), Duration::from_secs(30), &log_path, || curl(&url).contains("Hostname: "));

    // `rkube down` removes it all, and `rkube up` exits.
    let out = sandbox.exec(&host, bin, ["down", "--data-dir", &dir_s]).expect("rkube down");
    assert!(out.success(), "rkube down: {}\n{}", out.stderr, std::fs::read_to_string(&log_path).unwrap_or_default());
    let status = up.0.wait().expect("wait for rkube up");
    assert!(status.success(), "rkube up exit: {status:?}\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| d.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    assert!(!left.iter().any(|n| n.starts_with(&format!("{name}-node"))), "namespaces left: {left:?}");
    let bridge = sandbox.exec(&host, "ip", ["link", "show", "dev", &format!("{name}-lan")]).expect("ip link");
    assert!(!bridge.success(), "bridge left: {}", bridge.stdout);
    assert!(!dir.join("local-cluster.json").exists());
    // The pods are gone too (they live in network namespaces of their own).
    let pods_left: Vec<String> = std::fs::read_dir("/proc")
        .map(|d| d.filter_map(|e| e.ok()).collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(" pod-infra ") && c.contains(&dir_s))
        .collect();
    assert!(pods_left.is_empty(), "pods left: {pods_left:?}");
    // Down again: nothing to remove, said clearly.
    let again = sandbox.exec(&host, bin, ["down", "--data-dir", &dir_s]).expect("rkube down");
    assert!(!again.success() && again.stderr.contains("no local cluster"), "{}", again.stderr);
}
