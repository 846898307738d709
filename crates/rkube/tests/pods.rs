//! Pods run for real (issue 4), in a network-namespace sandbox: the lesson's
//! ReplicaSet, pod networking, the built-in images, scaling, service
//! environment variables, exec, logs, crash back-off, readiness, cleanup and
//! restarts. Needs root (skips otherwise). The cluster runs without the coredns
//! add-on: its pods would count among the veths and IPs these tests check.

use std::time::{Duration, Instant};
use testkit::{manifest, Kubectl, Sandbox, SandboxNode};

struct Cluster {
    node: SandboxNode,
    sandbox: Sandbox,
}

fn cluster() -> Option<Cluster> {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return None;
    }
    let sandbox = Sandbox::new(1).expect("sandbox");
    let node = sandbox
        .start_rkube(
            std::path::Path::new(env!("CARGO_BIN_EXE_rkube")),
            1,
            &["--node-name", "node1", "--disable", "coredns"],
        )
        .expect("rkube up in the sandbox");
    Some(Cluster { node, sandbox })
}

impl Cluster {
    fn k(&self) -> Kubectl {
        self.node.kubectl()
    }
    /// Run a command in the node's network namespace.
    fn on_node(&self, cmd: &str, args: &[&str]) -> String {
        self.sandbox
            .exec_ok(self.sandbox.node_netns(1), cmd, args)
            .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e}\n{}", self.node.logs_tail(40)))
    }
    fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let pods = self.k().run(["get", "pods", "-o", "yaml"]).stdout;
        panic!(
            "timed out after {timeout:?} waiting for {what}\n--- pods ---\n{pods}\n--- rkube log ---\n{}",
            self.node.logs_tail(60)
        );
    }
    fn ready_pods(&self, selector: &str) -> Vec<(String, String)> {
        let out = self.k().ok([
            "get",
            "pods",
            "-l",
            selector,
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\n"}{end}"#,
        ]);
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3 && f[2] == "True").then(|| (f[0].to_string(), f[1].to_string()))
            })
            .collect()
    }
}

#[test]
fn lesson_replicaset_runs_reachable_pods_and_scales() {
    let Some(c) = cluster() else { return };
    let k = c.k();
    c.wait("node1 Ready", Duration::from_secs(30), || k.ok(["get", "nodes"]).contains(" Ready "));
    k.ok(["create", "-f", manifest("mynapp-svc.yml").to_str().unwrap()]);
    k.ok(["create", "-f", manifest("mynapp-rs.yml").to_str().unwrap()]);
    c.wait("3 ready pods", Duration::from_secs(60), || c.ready_pods("app=mynapp-rs").len() == 3);
    let pods = c.ready_pods("app=mynapp-rs");
    let ips: std::collections::HashSet<&str> = pods.iter().map(|(_, ip)| ip.as_str()).collect();
    assert_eq!(ips.len(), 3, "distinct pod IPs: {pods:?}");
    for (name, ip) in &pods {
        assert!(ip.starts_with("10.244."), "{ip}");
        let http = c.on_node("curl", &["-s", "--max-time", "5", &format!("http://{ip}:8080/")]);
        assert!(http.contains(&format!("Hostname: {name}")), "{http}");
        let https = c.on_node("curl", &["-sk", "--max-time", "5", &format!("https://{ip}:8443/")]);
        assert!(https.contains(&format!("Hostname: {name}")), "{https}");
    }
    let table = k.ok(["get", "pods", "-o", "wide"]);
    assert!(
        table.lines().filter(|l| l.contains("Running") && l.contains("1/1") && l.contains("node1")).count() == 3,
        "{table}"
    );

    k.ok(["scale", "rs", "mynapp-rs", "--replicas=5"]);
    c.wait("5 ready pods", Duration::from_secs(60), || c.ready_pods("app=mynapp-rs").len() == 5);
    k.ok(["scale", "rs", "mynapp-rs", "--replicas=2"]);
    c.wait("2 pods left", Duration::from_secs(60), || {
        k.ok(["get", "pods", "-l", "app=mynapp-rs", "-o", "name"]).lines().count() == 2
    });
    let rs = k.ok(["get", "rs", "mynapp-rs", "--no-headers"]);
    let f: Vec<&str> = rs.split_whitespace().collect();
    assert_eq!(&f[1..4], ["2", "2", "2"], "{rs}");

    // Service environment variables of a pod started after the Service.
    let pod = &c.ready_pods("app=mynapp-rs")[0].0;
    let env = k.ok(["exec", pod, "--", "env"]);
    let ip = k.ok(["get", "svc", "mynapp-svc", "-o", "jsonpath={.spec.clusterIP}"]);
    for want in [
        format!("MYNAPP_SVC_SERVICE_HOST={ip}"),
        "MYNAPP_SVC_SERVICE_PORT=80".to_string(),
        format!("MYNAPP_SVC_PORT_80_TCP=tcp://{ip}:80"),
        "MYNAPP_SVC_PORT_80_TCP_PROTO=tcp".to_string(),
        "KUBERNETES_SERVICE_HOST=10.96.0.1".to_string(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing in:\n{env}");
    }
    // exec with stdin, and exit codes.
    let out = k.ok_with_stdin(["exec", "-i", pod, "--", "sh", "-c", "cat; echo done"], "from stdin\n");
    assert_eq!(out, "from stdin\ndone\n");
    let failed = k.run(["exec", pod, "--", "sh", "-c", "exit 3"]);
    assert_eq!(failed.status.code(), Some(3), "{}", failed.stderr);
    assert_eq!(k.ok(["exec", pod, "--", "hostname"]).trim(), pod.as_str());
    // Logs of the web server.
    c.on_node("curl", &["-s", "--max-time", "5", &format!("http://{}:8080/", c.ready_pods("app=mynapp-rs")[0].1)]);
    let logs = k.ok(["logs", pod]);
    assert!(logs.contains("Received Request From"), "{logs}");
    // `logs -f` streams new lines as they are written.
    let mut follow = k.spawn(["logs", "-f", "--tail", "0", pod]);
    let stdout = follow.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let pod_ip = c.ready_pods("app=mynapp-rs").into_iter().find(|(n, _)| n == pod).map(|(_, ip)| ip).expect("pod ip");
    c.on_node("curl", &["-s", "--max-time", "5", &format!("http://{pod_ip}:8080/followed")]);
    let line = rx.recv_timeout(Duration::from_secs(10));
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(line.is_ok(), "logs -f printed the new request's log line");
    let ts = k.ok(["logs", pod, "--timestamps", "--tail", "1"]);
    assert_eq!(ts.lines().count(), 1, "{ts}");
    assert!(ts.starts_with("20"), "{ts}");

    // Deleting the ReplicaSet leaves nothing behind on the node: no veth, no
    // IP assignment, no cgroup, no pod network namespace process.
    let uids = k.ok(["get", "pods", "-l", "app=mynapp-rs", "-o", "jsonpath={.items[*].metadata.uid}"]);
    let cgroup_of = |uid: &str| -> Vec<std::path::PathBuf> {
        ["memory", "cpu", "pids", "unified", ""]
            .iter()
            .map(|h| std::path::Path::new("/sys/fs/cgroup").join(h).join("rkube").join(uid))
            .filter(|d| d.exists())
            .collect()
    };
    let first = uids.split_whitespace().next().expect("a pod");
    assert!(!cgroup_of(first).is_empty(), "a running pod has a cgroup");
    k.ok(["delete", "rs", "mynapp-rs"]);
    c.wait("pods gone", Duration::from_secs(60), || k.ok(["get", "pods", "-o", "name"]).trim().is_empty());
    let links = c.on_node("ip", &["-o", "link"]);
    assert!(!links.contains("veth"), "veths left behind:\n{links}");
    let ipam = std::fs::read_to_string(c.node.data_dir().join("agent/runtime/ipam.json")).expect("ipam state");
    for uid in uids.split_whitespace() {
        assert!(!ipam.contains(uid), "IP of {uid} not released: {ipam}");
        assert!(cgroup_of(uid).is_empty(), "cgroups left behind: {:?}", cgroup_of(uid));
        let infra = std::process::Command::new("pgrep")
            .args(["-f", &format!("pod-infra --uid {uid}")])
            .output()
            .expect("pgrep");
        assert!(infra.stdout.is_empty(), "infra process of {uid} left behind");
    }
}

#[test]
fn crash_loop_readiness_and_tool_images() {
    let Some(c) = cluster() else { return };
    let k = c.k();
    let crash = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: crash\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo boom; exit 1\"]\n";
    k.ok_with_stdin(["create", "-f", "-"], crash);
    c.wait("CrashLoopBackOff", Duration::from_secs(60), || {
        k.ok(["get", "pod", "crash", "--no-headers"]).contains("CrashLoopBackOff")
    });
    let prev = k.ok(["logs", "crash", "--previous"]);
    assert!(prev.contains("boom"), "{prev}");

    let unready = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: unready\n  labels: {app: u}\nspec:\n  containers:\n  - name: web\n    image: registry.k8s.io/e2e-test-images/agnhost:2.52\n    args: [\"netexec\", \"--http-port=8080\"]\n    readinessProbe:\n      tcpSocket: {port: 9999}\n      periodSeconds: 1\n";
    k.ok_with_stdin(["create", "-f", "-"], unready);
    c.wait("unready pod running", Duration::from_secs(60), || {
        k.ok(["get", "pod", "unready", "--no-headers"]).contains("Running")
    });
    std::thread::sleep(Duration::from_secs(4));
    let row = k.ok(["get", "pod", "unready", "--no-headers"]);
    assert!(row.contains("0/1"), "a failing readiness probe keeps the pod NotReady: {row}");

    let missing = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: noimage\nspec:\n  containers:\n  - name: c\n    image: example.com/does-not-exist:1\n";
    k.ok_with_stdin(["create", "-f", "-"], missing);
    c.wait("ErrImagePull", Duration::from_secs(30), || {
        let r = k.ok(["get", "pod", "noimage", "--no-headers"]);
        r.contains("ErrImagePull") || r.contains("ImagePullBackOff")
    });

    k.ok(["run", "tools", "--image=nicolaka/netshoot", "--", "sleep", "3600"]);
    c.wait("tools running", Duration::from_secs(60), || {
        k.ok(["get", "pod", "tools", "--no-headers"]).contains("Running")
    });
    let resolv = k.ok(["exec", "tools", "--", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains("nameserver 169.254.20.10")
            && resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local")
            && resolv.contains("ndots:5"),
        "{resolv}"
    );
    // The ServiceAccount token volume, as kubelet mounts it: token, CA and
    // namespace; the token authenticates the pod to the API server through
    // the `kubernetes` Service (and is refused everything until RBAC grants).
    let volume = k.ok(["get", "pod", "tools", "-o", "jsonpath={.spec.volumes[0].name} {.spec.serviceAccountName}"]);
    assert!(volume.starts_with("kube-api-access-") && volume.ends_with(" default"), "{volume}");
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(k.ok(["exec", "tools", "--", "cat", &format!("{sa}/namespace")]), "default");
    let ls = k.ok(["exec", "tools", "--", "ls", sa]);
    assert_eq!(ls.split_whitespace().collect::<Vec<_>>(), ["ca.crt", "namespace", "token"], "{ls}");
    let ro = k.run(["exec", "tools", "--", "sh", "-c", &format!("echo x > {sa}/token")]);
    assert!(!ro.status.success() && ro.stderr.contains("Read-only file system"), "{}", ro.stderr);
    let api = k.ok([
        "exec",
        "tools",
        "--",
        "sh",
        "-c",
        &format!(
            "curl -s --max-time 5 --cacert {sa}/ca.crt -H \"Authorization: Bearer $(cat {sa}/token)\" https://kubernetes.default.svc/api/v1/namespaces/default/secrets"
        ),
    ]);
    assert!(
        api.contains("User \\\"system:serviceaccount:default:default\\\" cannot list resource \\\"secrets\\\""),
        "{api}"
    );
    let opted_out = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: no-token\nspec:\n  automountServiceAccountToken: false\n  containers:\n  - name: c\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n";
    k.ok_with_stdin(["create", "-f", "-"], opted_out);
    assert_eq!(k.ok(["get", "pod", "no-token", "-o", "jsonpath={.spec.volumes}"]), "");
    let missing_sa = k.run_with_stdin(
        ["create", "-f", "-"],
        &opted_out
            .replace("no-token", "other-sa")
            .replace("  automountServiceAccountToken: false\n", "  serviceAccountName: ghost\n"),
    );
    assert!(
        missing_sa
            .stderr
            .contains("error looking up service account default/ghost: serviceaccount \"ghost\" not found"),
        "{}",
        missing_sa.stderr
    );
    k.ok(["delete", "pod", "no-token", "--grace-period=0", "--force"]);

    // A hostNetwork pod: the node's IP, network and hostname, hostPort defaulted to
    // the containerPort, served on the node's address from the LAN, the node's DNS
    // settings (ClusterFirst on the host network is Default).
    let host = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hostnet\nspec:\n  hostNetwork: true\n  containers:\n  - name: web\n    image: registry.k8s.io/e2e-test-images/agnhost:2.52\n    args: [\"netexec\", \"--http-port=18080\"]\n    ports:\n    - containerPort: 18080\n";
    k.ok_with_stdin(["create", "-f", "-"], host);
    assert_eq!(k.ok(["get", "pod", "hostnet", "-o", "jsonpath={.spec.containers[0].ports[0].hostPort}"]), "18080");
    c.wait("hostnet running", Duration::from_secs(60), || {
        k.ok(["get", "pod", "hostnet", "--no-headers"]).contains("Running")
    });
    let node_ip = c.sandbox.node_ip(1).to_string();
    let ips = k.ok(["get", "pod", "hostnet", "-o", "jsonpath={.status.podIP} {.status.hostIP}"]);
    assert_eq!(ips, format!("{node_ip} {node_ip}"), "a host-network pod's IP is the node's");
    let node_hostname = c.on_node("hostname", &[]);
    assert_eq!(k.ok(["exec", "hostnet", "--", "hostname"]).trim(), node_hostname.trim());
    let bridge = k.run(["exec", "hostnet", "--", "ip", "-o", "link", "show", "dev", "rkube0"]);
    assert!(bridge.status.success(), "the pod sees the node's interfaces (the bridge rkube0): {}", bridge.stderr);
    let resolv = k.ok(["exec", "hostnet", "--", "cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains("ndots:5"), "ClusterFirst on the host network uses the node's resolv.conf: {resolv}");
    let url = format!("http://{node_ip}:18080/hostname");
    let mut served = String::new();
    c.wait("the host-network pod on the node's address", Duration::from_secs(20), || {
        served = c
            .sandbox
            .exec(c.sandbox.client_netns(), "curl", ["-s", "--max-time", "2", &url])
            .map(|o| o.stdout)
            .unwrap_or_default();
        !served.is_empty()
    });
    assert_eq!(served.trim(), node_hostname.trim());
    // A second pod wanting the same host port does not fit the node (NodePorts).
    k.ok_with_stdin(["create", "-f", "-"], &host.replace("name: hostnet", "name: hostnet2"));
    c.wait("the port clash reported by the scheduler", Duration::from_secs(20), || {
        k.ok(["get", "pod", "hostnet2", "-o", "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}"])
            .starts_with("0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.")
    });
    k.ok(["delete", "pod", "hostnet2", "--grace-period=0", "--force"]);
    k.ok(["delete", "pod", "hostnet", "--grace-period=1"]);
    let after = c.sandbox.exec(c.sandbox.client_netns(), "curl", ["-s", "--max-time", "2", &url]).expect("curl");
    assert!(after.stdout.is_empty(), "the node's port closed with the pod: {}", after.stdout);
    assert_eq!(c.on_node("hostname", &[]), node_hostname, "the node keeps its hostname");

    // Volumes: configMap (items, mode), secret, downwardAPI labels, an emptyDir two
    // containers share, hostPath DirectoryOrCreate; mount points under the data dir
    // (pods share the node's filesystem until images have root filesystems).
    let m = c.node.data_dir().join("mnt");
    let m = m.display();
    k.ok(["create", "configmap", "app-config", "--from-literal=greeting=hello", "--from-literal=other=x"]);
    k.ok(["create", "secret", "generic", "app-secret", "--from-literal=password=s3cret"]);
    let vol = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: vols\n  labels: {{app: vols}}\nspec:\n  containers:\n  - name: writer\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo shared > {m}/scratch/note; sleep 3600\"]\n    volumeMounts:\n    - {{name: scratch, mountPath: {m}/scratch}}\n    - {{name: cfg, mountPath: {m}/cfg}}\n    - {{name: sec, mountPath: {m}/sec}}\n    - {{name: info, mountPath: {m}/info}}\n    - {{name: host, mountPath: {m}/host}}\n    - {{name: mem, mountPath: {m}/mem}}\n  - name: reader\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n    volumeMounts:\n    - {{name: scratch, mountPath: {m}/scratch}}\n    - {{name: mem, mountPath: {m}/mem}}\n  volumes:\n  - {{name: scratch, emptyDir: {{}}}}\n  - name: cfg\n    configMap:\n      name: app-config\n      items: [{{key: greeting, path: conf/greeting.txt, mode: 0600}}]\n  - {{name: sec, secret: {{secretName: app-secret}}}}\n  - name: info\n    downwardAPI:\n      items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]\n  - {{name: host, hostPath: {{path: {m}/on-node, type: DirectoryOrCreate}}}}\n  - {{name: mem, emptyDir: {{medium: Memory, sizeLimit: 8Mi}}}}\n"
    );
    k.ok_with_stdin(["create", "-f", "-"], &vol);
    c.wait("vols running", Duration::from_secs(60), || k.ok(["get", "pod", "vols", "--no-headers"]).contains("2/2"));
    let sh = |container: &str, script: &str| k.ok(["exec", "vols", "-c", container, "--", "sh", "-c", script]);
    assert_eq!(sh("writer", &format!("cat {m}/cfg/conf/greeting.txt; ls {m}/cfg")), "helloconf\n");
    assert_eq!(sh("writer", &format!("stat -c %a {m}/cfg/conf/greeting.txt")).trim(), "600");
    assert_eq!(sh("writer", &format!("cat {m}/sec/password")), "s3cret");
    assert_eq!(sh("writer", &format!("cat {m}/info/labels")), "app=\"vols\"");
    c.wait("the emptyDir note", Duration::from_secs(10), || {
        sh("reader", &format!("cat {m}/scratch/note 2>/dev/null")).contains("shared")
    });
    let df = sh("writer", &format!("grep ' {m}/mem ' /proc/mounts"));
    assert!(df.starts_with("tmpfs ") && df.contains("size=8192k"), "a Memory emptyDir is an 8Mi tmpfs: {df}");
    sh("writer", &format!("echo in-memory > {m}/mem/x"));
    assert_eq!(sh("reader", &format!("cat {m}/mem/x")), "in-memory\n", "shared by the pod's containers");
    assert!(!c.node.data_dir().join("mnt/mem/x").exists(), "the tmpfs is the pod's, not the node's");
    let ro = k.run(["exec", "vols", "-c", "writer", "--", "sh", "-c", &format!("echo x > {m}/cfg/new")]);
    assert!(
        !ro.status.success() && ro.stderr.contains("Read-only file system"),
        "configMap volumes are read-only: {}",
        ro.stderr
    );
    sh("writer", &format!("echo from-pod > {m}/host/file"));
    let on_node =
        std::fs::read_to_string(c.node.data_dir().join("mnt/on-node/file")).expect("the hostPath file on the node");
    assert_eq!(on_node, "from-pod\n");
    k.ok(["delete", "pod", "vols", "--grace-period=1"]);
    let missing_cm = vol.replace("name: vols", "name: vols2").replace("name: app-config", "name: no-such-config");
    k.ok_with_stdin(["create", "-f", "-"], &missing_cm);
    c.wait("a missing configMap keeps the pod waiting, saying why", Duration::from_secs(30), || {
        k.ok(["get", "pod", "vols2", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.message}"])
            .contains("configmap \"no-such-config\" not found")
    });
    k.ok(["delete", "pod", "vols2", "--grace-period=0", "--force"]);

    let t = Instant::now();
    k.ok(["delete", "pod", "tools", "--grace-period=1"]);
    assert!(t.elapsed() < Duration::from_secs(20));
}

#[test]
fn kill_9_and_restart_brings_pods_back_with_their_ips() {
    let Some(mut c) = cluster() else { return };
    let k = c.k();
    k.ok(["create", "-f", manifest("mynapp-rs.yml").to_str().unwrap()]);
    c.wait("3 ready pods", Duration::from_secs(60), || c.ready_pods("app=mynapp-rs").len() == 3);
    let mut before = c.ready_pods("app=mynapp-rs");
    before.sort();
    c.node.kill9().expect("kill -9");
    c.node.restart().expect("restart");
    let k = c.k();
    c.wait("pods ready again", Duration::from_secs(90), || c.ready_pods("app=mynapp-rs").len() == 3);
    let mut after = c.ready_pods("app=mynapp-rs");
    after.sort();
    assert_eq!(before, after, "same pods, same IPs");
    for (name, ip) in &after {
        // The restarted agent adopted the pods (their containers outlive it).
        c.wait("the pod to answer again", Duration::from_secs(30), || {
            let out = c.sandbox.exec(
                c.sandbox.node_netns(1),
                "curl",
                ["-s", "--max-time", "2", &format!("http://{ip}:8080/")],
            );
            out.is_ok_and(|o| o.stdout.contains(name.as_str()))
        });
    }
    // Only one web server per pod: the old processes were cleaned up.
    let n = c.on_node("sh", &["-c", "ip -o link | grep -c veth || true"]);
    assert_eq!(n.trim(), "3", "one veth per pod");
    let _ = k;
}
