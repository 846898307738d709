//! Node lifecycle on a 2-node sandbox cluster (server node1 + `rkube agent`
//! node2), with short timings so it runs in seconds: `kubectl cordon`,
//! `drain` (the eviction API) and `uncordon` on node1; then node2's agent is
//! killed: node2 goes NotReady (Unknown, "Kubelet stopped posting node
//! status."), gets the `node.kubernetes.io/unreachable` taints, its pods are
//! marked not ready so their endpoints leave the Service, a pod tolerating
//! the taint for a while is evicted after `tolerationSeconds` while one
//! tolerating it forever stays; the agent comes back and the node is clean
//! again. One cluster for every check. Needs root.

use std::process::Child;
use std::time::{Duration, Instant};
use testkit::Sandbox;

/// The node monitor's timings given to the server (and the lease the agents renew).
const GRACE_SECS: u64 = 4;
const PERIOD_SECS: u64 = 1;
const UNREACHABLE_TOLERATION_SECS: u64 = 8;

struct Agent {
    child: Child,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills node2's pods when the test ends (the agent is killed and restarted
/// on purpose, its pods outlive it).
struct PodsOf(std::path::PathBuf);

impl Drop for PodsOf {
    fn drop(&mut self) {
        testkit::sandbox::kill_pods_of(&self.0);
    }
}

fn start_agent(
    sandbox: &Sandbox,
    bin: &std::path::Path,
    token: &str,
    ca: &std::path::Path,
    data_dir: &std::path::Path,
) -> Agent {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(sandbox.temp_dir().join("node2-agent.log"))
        .expect("log");
    let mut cmd = sandbox.command(sandbox.node_netns(2), bin);
    cmd.args(["agent", "--server", &format!("https://{}:6443", sandbox.node_ip(1)), "--ca-file"])
        .arg(ca)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--node-ip", &sandbox.node_ip(2).to_string(), "--node-name", "node2"])
        .args(["--node-lease-duration-seconds", "2"])
        .env("RKUBE_TOKEN", token)
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    Agent { child: cmd.spawn().expect("rkube agent") }
}

fn pod(name: &str, node: &str, labels: &str, tolerations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  nodeSelector:\n    kubernetes.io/hostname: {node}\n{tolerations}  containers:\n  - name: web\n    image: minjulee226/myweb\n"
    )
}

#[test]
fn cordon_drain_and_a_lost_node() {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return;
    }
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rkube"));
    let sandbox = Sandbox::new(2).expect("sandbox");
    let grace = format!("{GRACE_SECS}s");
    let period = format!("{PERIOD_SECS}s");
    let toleration = UNREACHABLE_TOLERATION_SECS.to_string();
    let node1 = sandbox
        .start_rkube(
            bin,
            1,
            &[
                "--node-name",
                "node1",
                "--node-lease-duration-seconds",
                "2",
                "--node-monitor-period",
                &period,
                "--node-monitor-grace-period",
                &grace,
                "--default-unreachable-toleration-seconds",
                &toleration,
            ],
        )
        .expect("rkube up");
    let k = node1.kubectl();
    let token = node1.node_token().expect("node-token");
    let ca = node1.data_dir().join("pki").join("ca.crt");
    let data_dir = sandbox.temp_dir().join("node2-agent");
    let _pods = PodsOf(data_dir.clone());
    let mut agent = Some(start_agent(&sandbox, bin, &token, &ca, &data_dir));
    let logs = || std::fs::read_to_string(sandbox.temp_dir().join("node2-agent.log")).unwrap_or_default();
    let wait = |what: &str, limit: Duration, f: &mut dyn FnMut() -> bool| -> Duration {
        let start = Instant::now();
        while start.elapsed() < limit {
            if f() {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}\n--- node2 agent ---\n{}\n--- node1 ---\n{}", logs(), node1.logs_tail(40));
    };
    let long = Duration::from_secs(60);
    let node_row = |name: &str| -> String {
        k.ok(["get", "nodes", "--no-headers"])
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_default()
            .to_string()
    };
    let taints =
        |name: &str| k.ok(["get", "node", name, "-o", "jsonpath={range .spec.taints[*]}{.key}:{.effect} {end}"]);
    wait("node2 Ready", long, &mut || node_row("node2").contains(" Ready "));

    // Pods get the default tolerations of the lifecycle taints (admission).
    k.ok_with_stdin(["create", "-f", "-"], &pod("lost-web", "node2", "app: lost", ""));
    let tol = k.ok([
        "get",
        "pod",
        "lost-web",
        "-o",
        "jsonpath={range .spec.tolerations[*]}{.key}={.tolerationSeconds} {end}",
    ]);
    assert_eq!(
        tol.trim(),
        format!("node.kubernetes.io/not-ready=300 node.kubernetes.io/unreachable={UNREACHABLE_TOLERATION_SECS}")
    );
    let forever = "  tolerations:\n  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}\n";
    k.ok_with_stdin(["create", "-f", "-"], &pod("tolerant", "node2", "app: lost", forever));
    k.ok(["create", "service", "clusterip", "lost", "--tcp=80:8080"]);

    // --- cordon, drain, uncordon on node1 ---
    k.ok(["create", "deployment", "drainme", "--image=minjulee226/myweb"]);
    k.ok([
        "patch",
        "deployment",
        "drainme",
        "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"kubernetes.io/hostname":"node1"}}}}}"#,
    ]);
    k.ok(["rollout", "status", "deployment/drainme", "--timeout=60s"]);
    let out = k.ok(["cordon", "node1"]);
    assert!(out.contains("node/node1 cordoned"), "{out}");
    assert!(node_row("node1").contains(" Ready,SchedulingDisabled "), "{}", node_row("node1"));
    wait("the unschedulable taint", long, &mut || {
        taints("node1").contains("node.kubernetes.io/unschedulable:NoSchedule")
    });
    let before = k.ok(["get", "pods", "-l", "app=drainme", "-o", "jsonpath={.items[*].metadata.name}"]);
    let out = k.ok(["drain", "node1", "--ignore-daemonsets", "--grace-period=1", "--timeout=60s"]);
    assert!(out.contains(&format!("evicting pod default/{}", before.trim())), "{out}");
    assert!(out.contains("node/node1 drained"), "{out}");
    // The replacement waits: node1 is cordoned and node2 does not match.
    wait("a pending replacement", long, &mut || {
        let p = k.ok(["get", "pods", "-l", "app=drainme", "-o", "jsonpath={.items[*].status.phase}"]);
        p.trim() == "Pending"
    });
    k.ok(["uncordon", "node1"]);
    wait("the unschedulable taint removed", long, &mut || !taints("node1").contains("unschedulable"));
    k.ok(["rollout", "status", "deployment/drainme", "--timeout=60s"]);
    // The eviction API checks its body.
    let name = k.ok(["get", "pods", "-l", "app=drainme", "-o", "jsonpath={.items[0].metadata.name}"]);
    let out = k.run_with_stdin(
        ["create", "--raw", &format!("/api/v1/namespaces/default/pods/{}/eviction", name.trim()), "-f", "-"],
        r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"other"}}"#,
    );
    assert!(out.stderr.contains("name in URL does not match name in Eviction object"), "{}", out.stderr);

    // --- node2 is lost ---
    wait("both node2 pods ready behind the Service", long, &mut || {
        k.ok(["get", "endpoints", "lost", "-o", "jsonpath={.subsets[*].addresses[*].ip}"]).split_whitespace().count()
            == 2
    });
    let killed = Instant::now();
    drop(agent.take());
    let not_ready = wait("node2 NotReady", long, &mut || node_row("node2").contains(" NotReady "));
    let ready = k.ok([
        "get",
        "node",
        "node2",
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].reason}/{.status.conditions[?(@.type=="Ready")].message}"#,
    ]);
    assert_eq!(ready, "Unknown/NodeStatusUnknown/Kubelet stopped posting node status.");
    wait("the unreachable taints", long, &mut || {
        let t = taints("node2");
        t.contains("node.kubernetes.io/unreachable:NoExecute")
            && t.contains("node.kubernetes.io/unreachable:NoSchedule")
    });
    wait("node2's endpoints out of the Service", long, &mut || {
        k.ok(["get", "endpoints", "lost", "-o", "jsonpath={.subsets[*].addresses[*].ip}"]).trim().is_empty()
    });
    let endpoints_out = killed.elapsed();
    eprintln!("node2 NotReady {:?} and its endpoints out {endpoints_out:?} after its agent was killed", not_ready);
    assert!(
        endpoints_out < Duration::from_secs(GRACE_SECS + PERIOD_SECS + 2),
        "endpoints left after {endpoints_out:?} (grace {GRACE_SECS}s)"
    );
    let r = k.ok(["get", "pod", "lost-web", "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#]);
    assert_eq!(r, "False");
    let events =
        k.ok(["get", "events", "--field-selector", "reason=NodeNotReady", "-o", "jsonpath={.items[*].message}"]);
    assert!(
        events.contains("Node is not ready") && events.contains("Node node2 status is now: NodeNotReady"),
        "{events}"
    );

    // After its toleration ran out the pod is evicted; the one tolerating the
    // taint forever stays.
    wait("lost-web evicted", long, &mut || {
        !k.ok(["get", "pod", "lost-web", "-o", "jsonpath={.metadata.deletionTimestamp}"]).trim().is_empty()
    });
    let evicted_after = killed.elapsed();
    // Grace runs from the node's last heartbeat (before the kill) and the taint's
    // timeAdded is a second-precision metav1.Time (as upstream): up to a second early.
    assert!(
        evicted_after >= Duration::from_secs(GRACE_SECS + UNREACHABLE_TOLERATION_SECS - 1),
        "evicted after {evicted_after:?}: before grace + tolerationSeconds"
    );
    let events = k.ok([
        "get",
        "events",
        "--field-selector",
        "reason=TaintManagerEviction",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(events.contains("Marking for deletion Pod default/lost-web"), "{events}");
    let reason = k.ok([
        "get",
        "pod",
        "lost-web",
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="DisruptionTarget")].reason}"#,
    ]);
    assert_eq!(reason, "DeletionByTaintManager");
    assert!(k.ok(["get", "pod", "tolerant", "-o", "jsonpath={.metadata.deletionTimestamp}"]).trim().is_empty());

    // The agent comes back: the node is Ready and untainted, the evicted pod's
    // deletion completes, the other pod is ready again.
    agent = Some(start_agent(&sandbox, bin, &token, &ca, &data_dir));
    wait("node2 Ready again", long, &mut || node_row("node2").contains(" Ready "));
    wait("node2's taints removed", long, &mut || !taints("node2").contains("node.kubernetes.io/"));
    wait("lost-web gone", long, &mut || !k.run(["get", "pod", "lost-web"]).success());
    wait("tolerant ready again", long, &mut || {
        k.ok(["get", "pod", "tolerant", "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#]) == "True"
    });
    wait("tolerant back behind the Service", long, &mut || {
        k.ok(["get", "endpoints", "lost", "-o", "jsonpath={.subsets[*].addresses[*].ip}"]).split_whitespace().count()
            == 1
    });
    drop(agent);
}
