//! The workload kinds with the real kubectl (issue 11 item 5), in a two-node
//! sandbox (node1 `rkube up`, node2 `rkube agent`): a DaemonSet runs one pod per
//! node, shows upstream's `kubectl get ds` columns, rolls out (`kubectl rollout
//! status`) and rolls a template change node by node; Jobs run to Complete
//! (`kubectl wait --for=condition=complete`, `kubectl logs job/x`), fail with
//! BackoffLimitExceeded or DeadlineExceeded, are deleted after
//! `ttlSecondsAfterFinished`, take their pods with them, and `kubectl create job`
//! works. Needs root (skips otherwise).

use std::process::Child;
use std::time::{Duration, Instant};
use testkit::{Kubectl, Sandbox, SandboxNode};

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

struct Cluster {
    _agent: Agent,
    server: SandboxNode,
    sandbox: Sandbox,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        if let Some(why) = testkit::sandbox_unavailable() {
            testkit::skip(&why);
            return None;
        }
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rkube"));
        let sandbox = Sandbox::new(2).expect("sandbox");
        let server = sandbox.start_rkube(bin, 1, &["--node-name", "node1"]).expect("rkube up");
        let token = server.node_token().expect("node-token");
        let ca = server.data_dir().join("pki").join("ca.crt");
        let data_dir = sandbox.temp_dir().join("node2-agent");
        let log = std::fs::File::create(sandbox.temp_dir().join("node2-agent.log")).expect("log");
        let mut cmd = sandbox.command(sandbox.node_netns(2), bin);
        cmd.args(["agent", "--server", &format!("https://{}:6443", sandbox.node_ip(1)), "--ca-file"])
            .arg(&ca)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--node-ip", &sandbox.node_ip(2).to_string(), "--node-name", "node2"])
            .env("RKUBE_TOKEN", &token)
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let agent = Agent { child: cmd.spawn().expect("rkube agent"), data_dir };
        Some(Cluster { _agent: agent, server, sandbox })
    }

    fn k(&self) -> Kubectl {
        self.server.kubectl()
    }

    fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let pods = self.k().run(["get", "pods", "-o", "wide"]).stdout;
        let agent = std::fs::read_to_string(self.sandbox.temp_dir().join("node2-agent.log")).unwrap_or_default();
        let tail: Vec<&str> = agent.lines().rev().take(30).collect();
        panic!(
            "timed out after {timeout:?} waiting for {what}\n--- pods ---\n{pods}\n--- node2 agent ---\n{}\n--- rkube ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            self.server.logs_tail(60)
        );
    }

    /// `name node image hash phase` of the pods selected by `selector`.
    fn pods(&self, selector: &str) -> Vec<Vec<String>> {
        let out = self.k().ok([
            "get",
            "pods",
            "-l",
            selector,
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.spec.containers[0].image} {.metadata.labels.controller-revision-hash} {.status.phase} {.metadata.deletionTimestamp}{"\n"}{end}"#,
        ]);
        out.lines().map(|l| l.split_whitespace().map(String::from).collect()).collect()
    }
}

const DS: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: pause
spec:
  selector:
    matchLabels: {app: pause}
  template:
    metadata:
      labels: {app: pause}
    spec:
      containers:
      - name: pause
        image: registry.k8s.io/pause:3.10
";

fn job(name: &str, spec: &str, command: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox\n        command: [\"sh\", \"-c\", \"{command}\"]\n"
    )
}

fn columns(header: &str) -> Vec<&str> {
    header.split("  ").map(str::trim).filter(|s| !s.is_empty()).collect()
}

#[test]
fn daemonsets_and_jobs_with_kubectl() {
    let Some(c) = Cluster::start() else { return };
    let k = c.k();
    c.wait("2 Ready nodes", Duration::from_secs(60), || {
        k.ok(["get", "nodes", "--no-headers"]).lines().filter(|l| l.contains(" Ready ")).count() == 2
    });

    // ---- DaemonSet: one pod per node ----
    k.ok_with_stdin(["create", "-f", "-"], DS);
    let out = k.ok(["rollout", "status", "ds/pause", "--timeout=90s"]);
    assert!(out.contains("daemon set \"pause\" successfully rolled out"), "{out}");
    c.wait("a running pod on each node", Duration::from_secs(30), || {
        let pods = c.pods("app=pause");
        let mut nodes: Vec<&str> =
            pods.iter().filter(|p| p.get(4).map(String::as_str) == Some("Running")).map(|p| p[1].as_str()).collect();
        nodes.sort();
        nodes == ["node1", "node2"]
    });
    let table = k.ok(["get", "ds", "pause"]);
    let mut lines = table.lines();
    assert_eq!(
        columns(lines.next().unwrap_or_default()),
        ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(&row[..7], ["pause", "2", "2", "2", "2", "2", "<none>"], "{table}");
    let wide = k.ok(["get", "ds", "pause", "-o", "wide"]);
    assert!(
        wide.contains("CONTAINERS") && wide.contains("registry.k8s.io/pause:3.10") && wide.contains("app=pause"),
        "{wide}"
    );
    assert!(k.ok(["get", "all"]).contains("daemonset.apps/pause"));
    // The pods are bound by the scheduler through their node-name affinity.
    let affinity = k.ok([
        "get",
        "pods",
        "-l",
        "app=pause",
        "-o",
        "jsonpath={.items[0].spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].key}",
    ]);
    assert_eq!(affinity, "metadata.name");
    let old_hash = c.pods("app=pause")[0][3].clone();

    // A template change rolls node by node (maxUnavailable 1).
    k.ok(["set", "image", "ds/pause", "pause=registry.k8s.io/pause:3.9"]);
    let out = k.ok(["rollout", "status", "ds/pause", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    c.wait("both pods replaced", Duration::from_secs(60), || {
        let pods = c.pods("app=pause");
        pods.len() == 2
            && pods
                .iter()
                .all(|p| p.len() == 5 && p[2] == "registry.k8s.io/pause:3.9" && p[3] != old_hash && p[4] == "Running")
    });
    let events = k.ok([
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=DaemonSet",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("SuccessfulCreate") && events.contains("SuccessfulDelete"), "{events}");

    // A node selector limits the nodes.
    let only2 = DS
        .replace("name: pause\n", "name: only2\n")
        .replace("app: pause", "app: only2")
        .replace("      containers:", "      nodeSelector: {kubernetes.io/hostname: node2}\n      containers:");
    k.ok_with_stdin(["create", "-f", "-"], &only2);
    k.ok(["rollout", "status", "ds/only2", "--timeout=90s"]);
    let pods = c.pods("app=only2");
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0][1], "node2");
    let row = k.ok(["get", "ds", "only2", "--no-headers"]);
    assert!(row.contains("kubernetes.io/hostname=node2"), "{row}");
    k.ok(["delete", "ds", "pause", "only2"]);

    // ---- Jobs ----
    k.ok_with_stdin(["create", "-f", "-"], &job("hello", "  completions: 2\n", "echo hello from $HOSTNAME"));
    k.ok(["wait", "--for=condition=complete", "job/hello", "--timeout=120s"]);
    let row = k.ok(["get", "job", "hello", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..3], ["hello", "Complete", "2/2"], "{row}");
    let header = k.ok(["get", "jobs"]);
    assert_eq!(
        columns(header.lines().next().unwrap_or_default()),
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    );
    let logs = k.ok(["logs", "job/hello"]);
    assert!(logs.contains("hello from hello-"), "{logs}");
    let status = k.ok([
        "get",
        "job",
        "hello",
        "-o",
        r#"jsonpath={.status.succeeded} {.status.conditions[*].type} {.spec.selector.matchLabels.batch\.kubernetes\.io/controller-uid}"#,
    ]);
    let uid = k.ok(["get", "job", "hello", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(status, format!("2 SuccessCriteriaMet Complete {uid}"));
    let labels =
        k.ok(["get", "pods", "-l", "job-name=hello", "-o", "jsonpath={.items[*].metadata.labels.controller-uid}"]);
    assert_eq!(labels.split_whitespace().collect::<Vec<_>>(), [uid.as_str(), uid.as_str()]);
    // Counted pods keep no finalizer.
    let finalizers = k.ok(["get", "pods", "-l", "job-name=hello", "-o", "jsonpath={.items[*].metadata.finalizers}"]);
    assert_eq!(finalizers.trim(), "", "{finalizers}");
    // Deleting the Job deletes its pods.
    k.ok(["delete", "job", "hello"]);
    c.wait("the Job's pods gone", Duration::from_secs(60), || c.pods("job-name=hello").is_empty());

    // A failing Job: backoffLimit 1 -> two failed pods, then Failed.
    k.ok_with_stdin(["create", "-f", "-"], &job("fails", "  backoffLimit: 1\n", "echo failing; exit 3"));
    k.ok(["wait", "--for=condition=failed", "job/fails", "--timeout=120s"]);
    let st = k.ok([
        "get",
        "job",
        "fails",
        "-o",
        r#"jsonpath={.status.failed} {.status.conditions[?(@.type=="Failed")].reason} {.status.conditions[?(@.type=="FailureTarget")].reason}"#,
    ]);
    assert_eq!(st, "2 BackoffLimitExceeded BackoffLimitExceeded");
    let row = k.ok(["get", "job", "fails", "--no-headers"]);
    assert!(row.contains("Failed") && row.contains("0/1"), "{row}");
    assert!(k.ok(["logs", "job/fails"]).contains("failing"));

    // activeDeadlineSeconds: the running pod is deleted, the Job fails.
    k.ok_with_stdin(["create", "-f", "-"], &job("slow", "  activeDeadlineSeconds: 3\n", "sleep 600"));
    k.ok(["wait", "--for=condition=failed", "job/slow", "--timeout=90s"]);
    let reason = k.ok(["get", "job", "slow", "-o", r#"jsonpath={.status.conditions[?(@.type=="Failed")].reason}"#]);
    assert_eq!(reason, "DeadlineExceeded");
    c.wait("the deadline's pod gone", Duration::from_secs(60), || c.pods("job-name=slow").is_empty());

    // kubectl create job (a protobuf body).
    k.ok(["create", "job", "quick", "--image=busybox", "--", "echo", "hi there"]);
    k.ok(["wait", "--for=condition=complete", "job/quick", "--timeout=90s"]);
    assert_eq!(k.ok(["logs", "job/quick"]).trim(), "hi there");

    // ttlSecondsAfterFinished: the Job and its pods go away after it finished.
    k.ok_with_stdin(["create", "-f", "-"], &job("ttl", "  ttlSecondsAfterFinished: 2\n", "true"));
    c.wait("the ttl Job deleted", Duration::from_secs(90), || !k.run(["get", "job", "ttl"]).success());
    c.wait("the ttl Job's pods gone", Duration::from_secs(60), || c.pods("job-name=ttl").is_empty());

    // Bad input: upstream's 422 text.
    let bad = job("bad", "", "true").replace("restartPolicy: Never", "restartPolicy: Always");
    let out = k.run_with_stdin(["create", "-f", "-"], &bad);
    assert!(!out.success());
    assert!(
        out.stderr.contains(
            "The Job \"bad\" is invalid: spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        ),
        "{}",
        out.stderr
    );
    let bad_ds = DS.replace("app: pause}\n  template", "app: other}\n  template");
    let out = k.run_with_stdin(["create", "-f", "-"], &bad_ds);
    assert!(out.stderr.contains("`selector` does not match template `labels`"), "{}", out.stderr);
}
