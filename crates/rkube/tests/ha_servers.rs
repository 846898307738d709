//! Two `rkube server`s on one 3-member etcd (issue 14): they share the
//! cluster's secrets through `--pki-dir` (a copy of the first server's), a
//! write through one is seen by a watch on the other, 200 concurrent
//! NodePort Service creates spread over both get 200 distinct ClusterIPs and
//! NodePorts (claims in the store), the `kubernetes` Endpoints list both
//! servers, exactly one server runs the controllers (Lease
//! `kube-system/kube-controller-manager`), and when that server is killed the
//! other takes the Lease, runs the controllers, and drops the dead server
//! from the `kubernetes` Endpoints.
//!
//! Both servers run in the test's own network namespace on loopback
//! (127.0.0.1 and 127.0.0.2, one port), with no nodes.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::etcd::{EtcdCluster, Placement};
use testkit::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_rkube");
/// Short leases, so the failover below takes seconds (defaults: 15 s / 10 s / 2 s).
const ELECTION: [&str; 6] =
    ["--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "1s"];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read pki") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

fn endpoints_ips(k: &testkit::Kubectl) -> String {
    k.ok(["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[*].ip}"])
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn lease_holder(k: &testkit::Kubectl) -> String {
    k.run(["-n", "kube-system", "get", "lease", "kube-controller-manager", "-o", "jsonpath={.spec.holderIdentity}"])
        .stdout
}

#[test]
fn two_servers_on_one_etcd() {
    if testkit::etcd::etcd_binary().is_none() {
        testkit::skip("etcd is not installed (scripts/install-prereqs.sh installs etcd-server)");
        return;
    }
    let etcd =
        EtcdCluster::start(&[Placement::Loopback, Placement::Loopback, Placement::Loopback]).expect("3-member etcd");
    let datastore = etcd.datastore();
    // A small service range, so two servers picking at random would collide.
    let mut args: Vec<&str> = vec!["--datastore", &datastore, "--service-cidr", "10.96.0.0/23"];
    args.extend(ELECTION);
    let a_ip = Ipv4Addr::new(127, 0, 0, 1);
    let b_ip = Ipv4Addr::new(127, 0, 0, 2);
    let mut a = TestServer::start_at(BIN, a_ip, None, &args).expect("server a");
    let port = a.port();

    // The second server gets a copy of the first one's secrets.
    let shared = tempfile::tempdir().expect("tempdir");
    copy_dir(&a.data_dir().join("pki"), shared.path());
    std::fs::copy(a.data_dir().join("admin.token"), shared.path().join("admin.token")).expect("admin token");
    let pki = shared.path().display().to_string();
    let mut b_args = args.clone();
    b_args.extend(["--pki-dir", &pki]);
    let b = TestServer::start_at(BIN, b_ip, Some(port), &b_args).expect("server b");
    let (ka, kb) = (a.kubectl(), b.kubectl());
    assert_eq!(a.token().expect("token a"), b.token().expect("token b"), "one admin token for the cluster");

    // The kubernetes Endpoints list both servers.
    let both = format!("{a_ip} {b_ip}");
    wait_for("both servers in the kubernetes Endpoints", Duration::from_secs(30), || {
        let ips = endpoints_ips(&ka);
        (ips == both).then_some(ips)
    });
    assert_eq!(endpoints_ips(&kb), both);

    // One leader: the first server (it started first).
    let leader = wait_for("a controller leader", Duration::from_secs(20), || {
        let h = lease_holder(&ka);
        (!h.is_empty()).then_some(h)
    });
    assert!(leader.ends_with(&format!("_{a_ip}:{port}")), "{leader}");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (ca, cb) = rt.block_on(async {
        let ca = controllers::client_from_kubeconfig(&a.kubeconfig_path()).await.expect("client a");
        let cb = controllers::client_from_kubeconfig(&b.kubeconfig_path()).await.expect("client b");
        (ca, cb)
    });

    // A write through one server is seen by a watch on the other.
    rt.block_on(async {
        let on_b: Api<ConfigMap> = Api::namespaced(cb.clone(), "default");
        let on_a: Api<ConfigMap> = Api::namespaced(ca.clone(), "default");
        let w = on_b.watch(&WatchParams::default().fields("metadata.name=from-a"), "0").await.expect("watch");
        let mut w = w.boxed();
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta { name: Some("from-a".into()), ..Default::default() },
            ..Default::default()
        };
        on_a.create(&PostParams::default(), &cm).await.expect("create on a");
        let ev = tokio::time::timeout(Duration::from_secs(10), w.try_next()).await.expect("event in time");
        match ev.expect("watch ok") {
            Some(WatchEvent::Added(c)) => assert_eq!(c.metadata.name.as_deref(), Some("from-a")),
            other => panic!("unexpected {other:?}"),
        }
    });

    // 200 concurrent creates over both servers: 200 distinct ClusterIPs and NodePorts.
    let (ips, ports) = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..200 {
            let client = if i % 2 == 0 { ca.clone() } else { cb.clone() };
            tasks.push(tokio::spawn(async move {
                let api: Api<Service> = Api::namespaced(client, "default");
                let svc: Service = serde_json::from_value(serde_json::json!({
                    "metadata": { "name": format!("s{i}") },
                    "spec": { "type": "NodePort", "ports": [{ "port": 80 }] },
                }))
                .expect("service");
                api.create(&PostParams::default(), &svc).await
            }));
        }
        let mut ips = BTreeSet::new();
        let mut ports = BTreeSet::new();
        for t in tasks {
            let svc = t.await.expect("task").expect("create");
            let spec = svc.spec.expect("spec");
            ips.insert(spec.cluster_ip.expect("clusterIP"));
            ports.insert(spec.ports.expect("ports")[0].node_port.expect("nodePort"));
        }
        (ips, ports)
    });
    assert_eq!((ips.len(), ports.len()), (200, 200), "every Service got its own ClusterIP and NodePort");

    // Exactly one server runs the ReplicaSet controller: 3 pods, not 6.
    let rs = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: c\n        image: nginx\n";
    kb.ok_with_stdin(["create", "-f", "-"], rs);
    let count = |k: &testkit::Kubectl| k.ok(["get", "pods", "-l", "app=web", "-o", "name"]).lines().count();
    wait_for("3 pods of the ReplicaSet", Duration::from_secs(20), || (count(&ka) == 3).then(String::new));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&kb), 3, "one controller made the pods");

    // The leader dies: the other server takes the Lease and runs the controllers,
    // and the dead server leaves the kubernetes Endpoints.
    a.kill9().expect("kill -9 server a");
    let leader = wait_for("server b leads", Duration::from_secs(30), || {
        let h = lease_holder(&kb);
        h.ends_with(&format!("_{b_ip}:{port}")).then_some(h)
    });
    assert!(!leader.is_empty());
    kb.ok(["scale", "rs", "web", "--replicas", "5"]);
    wait_for("5 pods after scaling through server b", Duration::from_secs(20), || (count(&kb) == 5).then(String::new));
    wait_for("server a gone from the kubernetes Endpoints", Duration::from_secs(45), || {
        let ips = endpoints_ips(&kb);
        (ips == b_ip.to_string()).then_some(ips)
    });
    drop(etcd);
}

/// Kills an `rkube agent` and its pods when the test ends.
struct Agent {
    child: std::process::Child,
    data_dir: std::path::PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        testkit::sandbox::kill_pods_of(&self.data_dir);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pinned_pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  containers:\n  - name: web\n    image: minjulee226/myweb\n"
    )
}

fn pod_phase(k: &testkit::Kubectl, name: &str) -> String {
    k.run(["get", "pod", name, "-o", "jsonpath={.status.phase}"]).stdout
}

/// In a sandbox: etcd members on three nodes, `rkube up` (server + node) on
/// node1 and node2 sharing one `--pki-dir`, and an `rkube agent` on node3
/// given both servers. When node1's server dies the agent carries on through
/// node2's: its node stays Ready, its pod keeps running, and a new pod for
/// it, created through node2, starts.
#[test]
fn agents_fail_over_between_servers() {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return;
    }
    if testkit::etcd::etcd_binary().is_none() {
        testkit::skip("etcd is not installed (scripts/install-prereqs.sh installs etcd-server)");
        return;
    }
    let bin = Path::new(BIN);
    let sandbox = testkit::Sandbox::new(3).expect("sandbox");
    let placements: Vec<Placement> = (1..=3)
        .map(|i| Placement::Netns { netns: sandbox.node_netns(i).to_string(), ip: sandbox.node_ip(i).into() })
        .collect();
    let etcd = EtcdCluster::start(&placements).expect("etcd on the three nodes");
    let datastore = etcd.datastore();
    // A node whose Lease stops for 8 s goes NotReady: node3 would, without failover.
    let mut common: Vec<&str> = vec![
        "--datastore",
        &datastore,
        "--node-lease-duration-seconds",
        "4",
        "--node-monitor-period",
        "1s",
        "--node-monitor-grace-period",
        "8s",
    ];
    common.extend(ELECTION);

    let mut a_args = common.clone();
    a_args.extend(["--node-name", "node1"]);
    let mut node1 = sandbox.start_rkube(bin, 1, &a_args).expect("rkube up on node1");
    let shared = sandbox.temp_dir().join("shared-pki");
    copy_dir(&node1.data_dir().join("pki"), &shared);
    std::fs::copy(node1.data_dir().join("admin.token"), shared.join("admin.token")).expect("admin token");
    let pki = shared.display().to_string();
    let mut b_args = common.clone();
    b_args.extend(["--node-name", "node2", "--pki-dir", &pki]);
    let node2 = sandbox.start_rkube(bin, 2, &b_args).expect("rkube up on node2");
    let k2 = node2.kubectl();

    let servers = format!("https://{}:6443,https://{}:6443", sandbox.node_ip(1), sandbox.node_ip(2));
    let data_dir = sandbox.temp_dir().join("node3-agent");
    let log = std::fs::File::create(sandbox.temp_dir().join("node3-agent.log")).expect("log");
    let mut cmd = sandbox.command(sandbox.node_netns(3), bin);
    cmd.args(["agent", "--server", &servers, "--data-dir"])
        .arg(&data_dir)
        .args(["--node-ip", &sandbox.node_ip(3).to_string(), "--node-name", "node3"])
        .args(["--node-lease-duration-seconds", "4"])
        .env("RKUBE_TOKEN", node1.node_token().expect("node token"))
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    let _agent = Agent { child: cmd.spawn().expect("rkube agent"), data_dir };
    let ready = |k: &testkit::Kubectl, node: &str| {
        k.run(["get", "node", node, "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#]).stdout
            == "True"
    };
    wait_for("node3 Ready", Duration::from_secs(60), || ready(&k2, "node3").then(String::new));
    k2.ok_with_stdin(["create", "-f", "-"], &pinned_pod("before", "node3"));
    wait_for("the pod on node3 runs", Duration::from_secs(60), || {
        (pod_phase(&k2, "before") == "Running").then(String::new)
    });

    // node1's server (and its node) dies.
    node1.kill_group().expect("kill node1");
    // node3 goes on through node2's server: still Ready well past its lease,
    // its pod runs, and a new pod created through node2 starts on it.
    std::thread::sleep(Duration::from_secs(15));
    assert!(ready(&k2, "node3"), "node3 stayed Ready after node1's server died");
    wait_for("node1 NotReady (its node died with its server)", Duration::from_secs(30), || {
        (!ready(&k2, "node1")).then(String::new)
    });
    assert_eq!(pod_phase(&k2, "before"), "Running");
    k2.ok_with_stdin(["create", "-f", "-"], &pinned_pod("after", "node3"));
    wait_for("a new pod on node3 runs after the failover", Duration::from_secs(60), || {
        (pod_phase(&k2, "after") == "Running").then(String::new)
    });
    wait_for("node1 gone from the kubernetes Endpoints", Duration::from_secs(45), || {
        let ips = endpoints_ips(&k2);
        (ips == sandbox.node_ip(2).to_string()).then_some(ips)
    });
    drop(etcd);
}
