//! A second node joins with `rkube agent --server URL --token T` (issues 4 and
//! 12): the token alone (the server's `<data-dir>/node-token`) lets it check the
//! server's CA and trade the token for its own `system:node:node2` certificate
//! through a CertificateSigningRequest; it never holds the admin token. It
//! registers and becomes Ready, runs the pods scheduled to it, and the API
//! server reaches its agent for `kubectl logs` and `kubectl exec` through the
//! pinned self-signed serving certificate. Wrong, revoked and foreign tokens
//! are refused with a clear error and no node appears, as is a second machine
//! under a live node's name; `rkube token
//! create|list|delete` manage tokens. Needs root.

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
    let token = node1.node_token().expect("node-token");
    assert!(token.starts_with("K10") && token.contains("::"), "{token}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(node1.data_dir().join("node-token")).expect("node-token").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "node-token is root's only");
    let server = format!("https://{}:6443", sandbox.node_ip(1));
    let data_dir = sandbox.temp_dir().join("node2-agent");
    let agent_args = |dir: &std::path::Path, name: &str| -> Vec<String> {
        vec![
            "agent".into(),
            "--server".into(),
            server.clone(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--node-ip".into(),
            sandbox.node_ip(2).to_string(),
            "--node-name".into(),
            name.into(),
        ]
    };
    let rkube_token = |args: &[&str]| -> testkit::Output {
        let mut a = vec!["token", "--data-dir"];
        let dir = node1.data_dir().display().to_string();
        a.push(&dir);
        a.extend_from_slice(args);
        sandbox.exec(sandbox.node_netns(1), bin, &a).expect("rkube token")
    };
    let text = |o: &testkit::Output| format!("{}{}", o.stdout, o.stderr);

    // Tokens: create one with a TTL, see it listed, revoke it.
    let created = rkube_token(&["create", "--ttl", "1h", "--description", "for the test"]);
    assert!(created.status.success(), "{}", text(&created));
    let extra = created.stdout.trim().to_string();
    let (hash, _) = token.split_once("::").expect("hash");
    assert!(extra.starts_with(&format!("{hash}::")), "same CA hash: {extra} vs {token}");
    let id = extra.split("::").nth(1).and_then(|t| t.split('.').next()).expect("id").to_string();
    let list = text(&rkube_token(&["list"]));
    let row = list.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{id} listed: {list}"));
    assert!(row.contains("authentication,signing") && row.contains("for the test"), "{row}");
    assert!(row.contains("59m") || row.contains("60m"), "{row}");
    assert!(list.lines().next().unwrap_or_default().starts_with("TOKEN ID"), "{list}");
    assert!(list.contains("<forever>"), "the default token never expires: {list}");
    let deleted = rkube_token(&["delete", &extra]);
    assert!(deleted.status.success(), "{}", text(&deleted));
    assert!(!text(&rkube_token(&["list"])).contains(&id));
    let missing = rkube_token(&["delete", "zzzzzz"]);
    assert!(!missing.status.success() && text(&missing).contains("no join token with ID \"zzzzzz\""));

    // Bad joins: revoked, unknown secret, another cluster's CA, garbage. Each
    // fails fast with a clear error and leaves no node behind.
    let bad_dir = sandbox.temp_dir().join("bad-agent");
    let (_, bootstrap) = token.split_once("::").expect("token");
    let tid = bootstrap.split('.').next().expect("id");
    let cases = [
        (extra.clone(), "refused the join token (401 Unauthorized)"),
        (format!("{hash}::{tid}.0000000000000000"), "refused the join token (401 Unauthorized)"),
        (format!("K10{}::{bootstrap}", "ab".repeat(32)), "presents a CA with hash"),
        ("not-a-token".to_string(), "the token is not a join token"),
    ];
    for (bad, want) in cases {
        let mut cmd = sandbox.command(sandbox.node_netns(2), bin);
        cmd.args(agent_args(&bad_dir, "intruder")).env("RKUBE_TOKEN", &bad);
        let out = cmd.output().expect("rkube agent");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "joined with {bad}");
        assert!(said.contains(want), "{bad}: wanted {want:?} in {said}");
    }
    assert!(!k.ok(["get", "nodes"]).contains("intruder"));
    // The bootstrap token may ask for certificates and do nothing else.
    let as_bootstrap = k.run(["--token", bootstrap, "get", "secrets", "-n", "kube-system"]);
    let err = as_bootstrap.stderr.clone();
    assert!(
        err.contains(&format!("secrets is forbidden: User \"system:bootstrap:{tid}\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\"")),
        "{err}"
    );
    k.ok(["--token", bootstrap, "get", "csr"]);

    let log = std::fs::File::create(sandbox.temp_dir().join("node2-agent.log")).expect("log");
    let mut cmd = sandbox.command(sandbox.node_netns(2), bin);
    cmd.args(agent_args(&data_dir, "node2"))
        .env("RKUBE_TOKEN", &token)
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    let mut agent = Agent { child: cmd.spawn().expect("rkube agent"), data_dir: data_dir.clone() };
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
    // node2 got its own certificate through an approved, issued CSR.
    let csr = k.ok(["get", "csr", "--no-headers"]);
    let row = csr.lines().find(|l| l.contains(&format!("system:bootstrap:{tid}"))).unwrap_or_else(|| panic!("{csr}"));
    assert!(row.contains("kubernetes.io/kube-apiserver-client-kubelet") && row.ends_with("Approved,Issued"), "{row}");
    let node_kubeconfig = std::fs::read_to_string(data_dir.join("kubeconfig.yaml")).expect("node kubeconfig");
    assert!(node_kubeconfig.contains("client-certificate-data") && node_kubeconfig.contains("\"system:node:node2\""));
    // The agent holds no admin credential anywhere in its data dir.
    let admin = node1.token().expect("admin token");
    assert!(!contains_anywhere(&data_dir, &admin), "the admin token leaked into the agent's data dir");
    // With its own credentials node2 changes its own Node, not another's (NodeRestriction).
    let as_node2 = testkit::Kubectl::new(data_dir.join("kubeconfig.yaml")).in_netns(sandbox.node_netns(2));
    as_node2.ok(["label", "node", "node2", "rkube.test/own=yes"]);
    let other = as_node2.run(["label", "node", "node1", "rkube.test/other=yes"]);
    assert!(
        !other.success()
            && other
                .stderr
                .contains("nodes \"node1\" is forbidden: User \"system:node:node2\" cannot patch resource \"nodes\"")
            && other.stderr.contains("node \"node2\" is not allowed to modify node \"node1\""),
        "{}",
        other.stderr
    );
    let fake = as_node2.run_with_stdin(["create", "-f", "-"], "apiVersion: v1\nkind: Node\nmetadata:\n  name: node9\n");
    assert!(fake.stderr.contains("node \"node2\" is not allowed to modify node \"node9\""), "{}", fake.stderr);
    let lease = as_node2.run(["-n", "kube-node-lease", "annotate", "lease", "node1", "rkube.test/x=y"]);
    assert!(
        !lease.success() && lease.stderr.contains("can only access node lease with the same name"),
        "{}",
        lease.stderr
    );
    // node2 reads a Secret only once a pod bound to it uses it (the Node authorizer's graph).
    k.ok(["create", "secret", "generic", "db", "--from-literal=password=s3cret"]);
    let early = as_node2.run(["get", "secret", "db"]);
    assert!(
        !early.success() && early.stderr.contains("no relationship found between node 'node2' and this object"),
        "{}",
        early.stderr
    );
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: uses-db\nspec:\n  nodeName: node2\n  containers:\n  - name: c\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n    envFrom:\n    - secretRef:\n        name: db\n";
    k.ok_with_stdin(["create", "-f", "-"], pod);
    wait("uses-db running", &mut || k.ok(["get", "pod", "uses-db", "--no-headers"]).contains("Running"));
    assert_eq!(k.ok(["exec", "uses-db", "--", "printenv", "password"]).trim(), "s3cret");
    assert!(as_node2.ok(["get", "secret", "db", "-o", "name"]).contains("secret/db"));
    assert!(!as_node2.run(["get", "secrets"]).success(), "nodes list no Secrets");
    k.ok(["delete", "pod", "uses-db", "--grace-period=1"]);
    // Another machine joining under node2's name is refused; node2 stays as it was.
    let clash_dir = sandbox.temp_dir().join("clash-agent");
    let mut cmd = sandbox.command(sandbox.node_netns(2), bin);
    cmd.args(agent_args(&clash_dir, "node2")).env("RKUBE_TOKEN", &token);
    let out = cmd.output().expect("rkube agent");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "a second node2 joined: {said}");
    assert!(said.contains("was denied: node \"node2\" already exists and is Ready"), "{said}");
    assert!(k.ok(["get", "nodes", "--no-headers"]).lines().any(|l| l.starts_with("node2 ") && l.contains(" Ready ")));
    let csr = k.ok(["get", "csr", "--no-headers"]);
    // A restart needs no token: the node's certificate is kept.
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    let log = std::fs::OpenOptions::new().append(true).open(sandbox.temp_dir().join("node2-agent.log")).expect("log");
    let mut cmd = sandbox.command(sandbox.node_netns(2), bin);
    cmd.args(agent_args(&data_dir, "node2")).stdout(log.try_clone().expect("log")).stderr(log);
    agent.child = cmd.spawn().expect("rkube agent");
    let started = Instant::now();
    wait("node2's agent back", &mut || logs().matches("is Ready in the cluster").count() == 2);
    eprintln!("restart without a token: Ready after {:?}", started.elapsed());
    assert_eq!(k.ok(["get", "csr", "--no-headers"]).lines().count(), csr.lines().count(), "no new CSR");
    assert!(csr.lines().any(|l| l.ends_with("Denied")), "{csr}");

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

    // The scheduler's default profile: replicas of a ReplicaSet spread over the
    // nodes (PodTopologySpread's system defaults) even where node1 runs more
    // pods (fewest-pods alone would put both on node2); a preferred node
    // affinity wins even where a tie would go to node1 by name.
    for i in 0..3 {
        let filler = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: filler{i}\nspec:\n  nodeSelector:\n    kubernetes.io/hostname: node1\n  containers:\n  - name: web\n    image: minjulee226/myweb\n");
        k.ok_with_stdin(["create", "-f", "-"], &filler);
    }
    wait("fillers on node1", &mut || {
        k.ok(["get", "pods", "-o", "jsonpath={.items[*].spec.nodeName}"]).matches("node1").count() >= 3
    });
    let rs = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: spread\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: spread\n  template:\n    metadata:\n      labels:\n        app: spread\n    spec:\n      containers:\n      - name: web\n        image: minjulee226/myweb\n";
    k.ok_with_stdin(["create", "-f", "-"], rs);
    wait("2 spread replicas scheduled", &mut || {
        k.ok(["get", "pods", "-l", "app=spread", "-o", "jsonpath={.items[*].spec.nodeName}"]).split_whitespace().count()
            == 2
    });
    let placed = k.ok(["get", "pods", "-l", "app=spread", "-o", "jsonpath={.items[*].spec.nodeName}"]);
    let mut placed: Vec<&str> = placed.split_whitespace().collect();
    placed.sort();
    assert_eq!(placed, ["node1", "node2"], "one replica per node");
    let preferred = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: prefers-node2\n  labels:\n    app: alone\nspec:\n  affinity:\n    nodeAffinity:\n      preferredDuringSchedulingIgnoredDuringExecution:\n      - weight: 100\n        preference:\n          matchExpressions:\n          - key: kubernetes.io/hostname\n            operator: In\n            values: [node2]\n  containers:\n  - name: web\n    image: minjulee226/myweb\n";
    k.ok_with_stdin(["create", "-f", "-"], preferred);
    wait("the preferring pod scheduled", &mut || {
        !k.ok(["get", "pod", "prefers-node2", "-o", "jsonpath={.spec.nodeName}"]).is_empty()
    });
    assert_eq!(k.ok(["get", "pod", "prefers-node2", "-o", "jsonpath={.spec.nodeName}"]), "node2");
    k.ok(["delete", "rs", "spread"]);
    // DoNotSchedule topology spread: maxSkew 1 per hostname keeps 4 replicas at
    // 2 + 2 although node1 runs the fillers; a key no node has leaves the pod
    // Pending with upstream's reason.
    let hard = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: hard\nspec:\n  replicas: 4\n  selector:\n    matchLabels:\n      app: hard\n  template:\n    metadata:\n      labels:\n        app: hard\n    spec:\n      topologySpreadConstraints:\n      - maxSkew: 1\n        topologyKey: kubernetes.io/hostname\n        whenUnsatisfiable: DoNotSchedule\n        labelSelector:\n          matchLabels:\n            app: hard\n      containers:\n      - name: web\n        image: minjulee226/myweb\n";
    k.ok_with_stdin(["create", "-f", "-"], hard);
    wait("4 hard-spread replicas scheduled", &mut || {
        k.ok(["get", "pods", "-l", "app=hard", "-o", "jsonpath={.items[*].spec.nodeName}"]).split_whitespace().count()
            == 4
    });
    let placed = k.ok(["get", "pods", "-l", "app=hard", "-o", "jsonpath={.items[*].spec.nodeName}"]);
    assert_eq!(placed.matches("node1").count(), 2, "{placed}");
    let zoned = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: zoned\n  labels:\n    app: zoned\nspec:\n  topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: topology.kubernetes.io/zone\n    whenUnsatisfiable: DoNotSchedule\n    labelSelector:\n      matchLabels:\n        app: zoned\n  containers:\n  - name: web\n    image: minjulee226/myweb\n";
    k.ok_with_stdin(["create", "-f", "-"], zoned);
    wait("the zoned pod unschedulable", &mut || {
        k.ok(["get", "pod", "zoned", "-o", r#"jsonpath={.status.conditions[?(@.type=="PodScheduled")].message}"#])
            .contains(
            "0/2 nodes are available: 2 node(s) didn't match pod topology spread constraints (missing required label).",
        )
    });
    // InterPodAffinity: a pod that must share a node with prefers-node2 goes to
    // node2; one that may not share a node with the `hard` replicas (on both
    // nodes) stays Pending.
    let with = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: with-alone\nspec:\n  affinity:\n    podAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector:\n          matchLabels:\n            app: alone\n        topologyKey: kubernetes.io/hostname\n  containers:\n  - name: web\n    image: minjulee226/myweb\n";
    k.ok_with_stdin(["create", "-f", "-"], with);
    wait("with-alone scheduled", &mut || {
        !k.ok(["get", "pod", "with-alone", "-o", "jsonpath={.spec.nodeName}"]).is_empty()
    });
    assert_eq!(k.ok(["get", "pod", "with-alone", "-o", "jsonpath={.spec.nodeName}"]), "node2");
    let apart = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: apart\nspec:\n  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector:\n          matchLabels:\n            app: hard\n        topologyKey: kubernetes.io/hostname\n  containers:\n  - name: web\n    image: minjulee226/myweb\n";
    k.ok_with_stdin(["create", "-f", "-"], apart);
    wait("apart unschedulable", &mut || {
        k.ok(["get", "pod", "apart", "-o", r#"jsonpath={.status.conditions[?(@.type=="PodScheduled")].message}"#])
            .contains("0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules.")
    });
    k.ok(["delete", "pod", "with-alone", "apart"]);
    k.ok(["delete", "rs", "hard"]);
    k.ok(["delete", "pod", "zoned"]);
    k.ok(["delete", "pod", "prefers-node2", "filler0", "filler1", "filler2"]);
    drop(agent);
}

/// Whether any file under `dir` contains `needle`.
fn contains_anywhere(dir: &std::path::Path, needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| match e.file_type() {
        Ok(t) if t.is_dir() => contains_anywhere(&e.path(), needle),
        // Regular files only: a FIFO or socket would block the read.
        Ok(t) if t.is_file() => std::fs::read(e.path()).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle)),
        _ => false,
    })
}
