//! StatefulSets and CronJobs with the real kubectl (issue 11 item 5), in a
//! one-node sandbox: a StatefulSet `web` under a headless Service `web` gets
//! `web-0`, then `web-1` once `web-0` is ready, with hostnames the cluster DNS
//! answers (`web-0.web.default.svc.cluster.local`); it scales up in order and
//! down from the highest ordinal (`kubectl scale`), rolls a new image from the
//! highest ordinal down (`kubectl rollout status`), and refuses changes to
//! immutable fields with upstream's text. A CronJob (`kubectl create cronjob`,
//! `*/1 * * * *`) creates a Job at the next minute that completes, `kubectl
//! create job --from=cronjob/...` works, finished Jobs beyond the history limit
//! are deleted, a suspended CronJob creates nothing, and a bad schedule gets
//! upstream's 422 text. Needs root (skips otherwise).

use std::time::{Duration, Instant};
use testkit::{Kubectl, Sandbox, SandboxNode};

struct Cluster {
    server: SandboxNode,
    _sandbox: Sandbox,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        if let Some(why) = testkit::sandbox_unavailable() {
            testkit::skip(&why);
            return None;
        }
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rkube"));
        let sandbox = Sandbox::new(1).expect("sandbox");
        let server = sandbox.start_rkube(bin, 1, &["--node-name", "node1"]).expect("rkube up");
        Some(Cluster { server, _sandbox: sandbox })
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
            std::thread::sleep(Duration::from_millis(200));
        }
        let pods = self.k().run(["get", "pods,sts,jobs,cronjobs", "-o", "wide"]).stdout;
        panic!(
            "timed out after {timeout:?} waiting for {what}\n--- objects ---\n{pods}\n--- rkube ---\n{}",
            self.server.logs_tail(60)
        );
    }

    /// `name image revision deleting` of the pods with `app=web`, by name.
    fn web_pods(&self) -> Vec<(String, String, String, bool)> {
        let out = self.k().ok([
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image} {.metadata.labels.controller-revision-hash} {.metadata.deletionTimestamp}{"\n"}{end}"#,
        ]);
        let mut pods: Vec<(String, String, String, bool)> = out
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 3).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string(), f.len() > 3))
            })
            .collect();
        pods.sort();
        pods
    }

    fn sts(&self, jsonpath: &str) -> String {
        self.k().ok(["get", "sts", "web", "-o", &format!("jsonpath={jsonpath}")])
    }
}

const WEB: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: pause
        image: registry.k8s.io/pause:3.10
";

fn columns(header: &str) -> Vec<&str> {
    header.split("  ").map(str::trim).filter(|s| !s.is_empty()).collect()
}

/// The ordinal of `web-<n>`.
fn ord(name: &str) -> usize {
    name.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(usize::MAX)
}

#[test]
fn statefulsets_and_cronjobs_with_kubectl() {
    let Some(c) = Cluster::start() else { return };
    let k = c.k();
    c.wait("a Ready node", Duration::from_secs(60), || {
        k.ok(["get", "nodes", "--no-headers"]).lines().any(|l| l.contains(" Ready "))
    });

    // ---- CronJobs first: their minute boundary passes while the StatefulSet runs ----
    k.ok(["create", "cronjob", "hello", "--image=busybox", "--schedule=*/1 * * * *", "--", "sh", "-c", "echo hi"]);
    k.ok(["patch", "cronjob", "hello", "-p", r#"{"spec":{"successfulJobsHistoryLimit":1}}"#]);
    k.ok(["create", "cronjob", "sleepy", "--image=busybox", "--schedule=*/1 * * * *", "--", "true"]);
    k.ok(["patch", "cronjob", "sleepy", "-p", r#"{"spec":{"suspend":true}}"#]);
    let defaults = k.ok([
        "get",
        "cronjob",
        "hello",
        "-o",
        "jsonpath={.spec.concurrencyPolicy} {.spec.suspend} {.spec.successfulJobsHistoryLimit} {.spec.failedJobsHistoryLimit}",
    ]);
    assert_eq!(defaults, "Allow false 1 1");
    let table = k.ok(["get", "cronjobs"]);
    assert_eq!(
        columns(table.lines().next().unwrap_or_default()),
        ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"],
        "{table}"
    );
    let sleepy = k.ok(["get", "cj", "sleepy", "--no-headers"]);
    let cells: Vec<&str> = sleepy.split_whitespace().collect();
    assert_eq!(&cells[..4], ["sleepy", "*/1", "*", "*"], "{sleepy}");
    assert_eq!(&cells[6..10], ["<none>", "True", "0", "<none>"], "{sleepy}");
    let out = k.run(["create", "cronjob", "bad", "--image=busybox", "--schedule=bogus"]);
    assert!(
        out.stderr.contains(
            "CronJob.batch \"bad\" is invalid: spec.schedule: Invalid value: \"bogus\": expected exactly 5 fields, found 1: [bogus]"
        ),
        "{}",
        out.stderr
    );
    let out = k.run(["create", "cronjob", "tz", "--image=busybox", "--schedule=TZ=Europe/Berlin 0 9 * * *"]);
    assert!(
        out.stderr.contains("spec.schedule: Invalid value: \"TZ=Europe/Berlin 0 9 * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
        "{}",
        out.stderr
    );

    // ---- StatefulSet: ordered creation, stable identities ----
    k.ok_with_stdin(["create", "-f", "-"], WEB);
    let out = k.ok(["rollout", "status", "sts/web", "--timeout=120s"]);
    assert!(out.contains("partitioned roll out complete: 2 new pods have been updated"), "{out}");
    let pods = c.web_pods();
    assert_eq!(pods.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), ["web-0", "web-1"], "{pods:?}");
    // OrderedReady: web-1 was created only once web-0 was ready.
    let ready0 =
        k.ok(["get", "pod", "web-0", "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].lastTransitionTime}"#]);
    let created1 = k.ok(["get", "pod", "web-1", "-o", "jsonpath={.metadata.creationTimestamp}"]);
    assert!(created1 >= ready0, "web-1 created at {created1}, web-0 ready at {ready0}");
    let identity = k.ok([
        "get",
        "pod",
        "web-1",
        "-o",
        r#"jsonpath={.spec.hostname} {.spec.subdomain} {.metadata.labels.statefulset\.kubernetes\.io/pod-name} {.metadata.labels.apps\.kubernetes\.io/pod-index} {.metadata.ownerReferences[0].kind}"#,
    ]);
    assert_eq!(identity, "web-1 web web-1 1 StatefulSet");
    let rev1 = c.sts("{.status.updateRevision}");
    assert!(rev1.starts_with("web-"), "{rev1}");
    assert_eq!(c.sts("{.status.currentRevision}"), rev1);
    assert!(pods.iter().all(|p| p.2 == rev1), "{pods:?}");
    let defaults = c.sts("{.spec.podManagementPolicy} {.spec.updateStrategy.type} {.spec.updateStrategy.rollingUpdate.partition} {.spec.revisionHistoryLimit} {.spec.persistentVolumeClaimRetentionPolicy.whenDeleted}");
    assert_eq!(defaults, "OrderedReady RollingUpdate 0 10 Retain");
    let revisions = k.run(["get", "controllerrevisions", "-o", "jsonpath={.items[*].metadata.name}"]);
    if revisions.success() {
        assert!(revisions.stdout.contains(&rev1), "{}", revisions.stdout);
    }

    // kubectl get sts: upstream's columns.
    let table = k.ok(["get", "sts", "web"]);
    let mut lines = table.lines();
    assert_eq!(columns(lines.next().unwrap_or_default()), ["NAME", "READY", "AGE"], "{table}");
    let row: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(&row[..2], ["web", "2/2"], "{table}");
    let wide = k.ok(["get", "sts", "web", "-o", "wide"]);
    assert!(wide.contains("CONTAINERS") && wide.contains("registry.k8s.io/pause:3.10"), "{wide}");
    assert!(k.ok(["get", "all"]).contains("statefulset.apps/web"));

    // The cluster DNS answers for the pods under the headless Service.
    k.ok(["run", "tools", "--image=nicolaka/netshoot", "--", "sleep", "3600"]);
    c.wait("tools running", Duration::from_secs(60), || {
        k.ok(["get", "pod", "tools", "--no-headers"]).contains("Running")
    });
    let ip0 = k.ok(["get", "pod", "web-0", "-o", "jsonpath={.status.podIP}"]);
    let mut answer = String::new();
    c.wait("web-0.web.default.svc.cluster.local to resolve", Duration::from_secs(30), || {
        answer = k.run(["exec", "tools", "--", "nslookup", "web-0.web.default.svc.cluster.local"]).stdout;
        answer.contains(&ip0)
    });
    let short = k.run(["exec", "tools", "--", "nslookup", "web-1.web"]).stdout;
    let ip1 = k.ok(["get", "pod", "web-1", "-o", "jsonpath={.status.podIP}"]);
    assert!(short.contains(&ip1), "{short}");

    // ---- Scale up in order ----
    k.ok(["scale", "sts", "web", "--replicas=3"]);
    k.ok(["rollout", "status", "sts/web", "--timeout=120s"]);
    let names: Vec<String> = c.web_pods().into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["web-0", "web-1", "web-2"]);
    assert_eq!(k.ok(["get", "sts", "web", "-o", "jsonpath={.status.replicas} {.status.readyReplicas}"]), "3 3");

    // ---- Rolling update: from the highest ordinal down ----
    // The order pods are replaced in, from a watch (a poll can miss a fast rollout's steps).
    let mut watch = k.spawn([
        "get",
        "pods",
        "-l",
        "app=web",
        "--watch-only",
        "-o",
        r#"jsonpath={.metadata.name} {.spec.containers[0].image}{"\n"}"#,
    ]);
    std::thread::sleep(Duration::from_millis(700));
    k.ok(["set", "image", "sts/web", "pause=registry.k8s.io/pause:3.9"]);
    let mut seen_new: Vec<usize> = Vec::new();
    c.wait("every pod at the new image", Duration::from_secs(120), || {
        let pods = c.web_pods();
        let new: Vec<usize> = pods.iter().filter(|p| p.1.ends_with(":3.9")).map(|p| ord(&p.0)).collect();
        // A pod is only new when every higher ordinal already is.
        if let Some(lowest) = new.iter().min() {
            for p in pods.iter().filter(|p| ord(&p.0) > *lowest) {
                assert!(p.1.ends_with(":3.9"), "{} updated before {}: {pods:?}", lowest, p.0);
            }
        }
        for n in &new {
            if !seen_new.contains(n) {
                seen_new.push(*n);
            }
        }
        pods.len() == 3 && new.len() == 3
    });
    let _ = watch.kill();
    let watched = watch.wait_with_output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let first_new = watched.lines().find(|l| l.ends_with(":3.9")).and_then(|l| l.split_whitespace().next());
    assert_eq!(first_new, Some("web-2"), "the first pod replaced is web-2 (polled {seen_new:?}):\n{watched}");
    let out = k.ok(["rollout", "status", "sts/web", "--timeout=120s"]);
    assert!(out.contains("partitioned roll out complete: 3 new pods have been updated"), "{out}");
    c.wait("currentRevision = updateRevision", Duration::from_secs(30), || {
        let revs = c.sts("{.status.currentRevision} {.status.updateRevision} {.status.updatedReplicas}");
        let r: Vec<&str> = revs.split_whitespace().collect();
        r.len() == 3 && r[0] == r[1] && r[0] != rev1 && r[2] == "3"
    });

    // ---- Scale down from the highest ordinal ----
    k.ok(["scale", "sts", "web", "--replicas=1"]);
    c.wait("only web-0 left", Duration::from_secs(90), || {
        let pods = c.web_pods();
        // web-1 goes only after web-2 is gone.
        if pods.iter().any(|p| p.0 == "web-1" && p.3) {
            assert!(!pods.iter().any(|p| p.0 == "web-2"), "web-1 deleted before web-2 was gone: {pods:?}");
        }
        pods.len() == 1 && pods[0].0 == "web-0"
    });
    c.wait("status.replicas 1", Duration::from_secs(30), || c.sts("{.status.replicas}") == "1");
    let events = k.ok([
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=StatefulSet",
        "-o",
        "jsonpath={range .items[*]}{.reason} {.message}{\"\\n\"}{end}",
    ]);
    assert!(events.contains("SuccessfulCreate create Pod web-0 in StatefulSet web successful"), "{events}");
    assert!(events.contains("SuccessfulDelete delete Pod web-2 in StatefulSet web successful"), "{events}");

    // Immutable fields: upstream's 422 text.
    let out = k.run(["patch", "sts", "web", "-p", r#"{"spec":{"serviceName":"other"}}"#]);
    assert!(
        out.stderr.contains("spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"),
        "{}",
        out.stderr
    );
    let bad = WEB
        .split("---\n")
        .nth(1)
        .unwrap_or_default()
        .replace("name: web\nspec:", "name: bad\nspec:")
        .replace("matchLabels: {app: web}", "matchLabels: {app: other}");
    let out = k.run_with_stdin(["create", "-f", "-"], &bad);
    assert!(
        out.stderr.contains("The StatefulSet \"bad\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`")
            || out.stderr.contains("`selector` does not match template `labels`"),
        "{}",
        out.stderr
    );

    // ---- Back to the CronJob: its Job ran at the minute boundary ----
    let job_of_hello = || {
        k.ok([
            "get",
            "jobs",
            "-o",
            r#"jsonpath={range .items[?(@.metadata.ownerReferences[0].name=="hello")]}{.metadata.name} {.status.conditions[?(@.type=="Complete")].status} {.metadata.annotations.batch\.kubernetes\.io/cronjob-scheduled-timestamp}{"\n"}{end}"#,
        ])
    };
    let mut first = String::new();
    c.wait("a completed Job of hello", Duration::from_secs(90), || {
        first = job_of_hello().lines().find(|l| l.contains(" True ")).unwrap_or_default().to_string();
        !first.is_empty()
    });
    let f: Vec<&str> = first.split_whitespace().collect();
    let scheduled = f.get(2).copied().unwrap_or_default();
    let minutes: i64 = f[0].trim_start_matches("hello-").parse().expect("minutes since the epoch");
    let ts: k8s_openapi::jiff::Timestamp = scheduled.parse().expect("an RFC 3339 timestamp");
    assert_eq!(ts.as_second(), minutes * 60, "{first}");
    assert!(scheduled.ends_with(":00Z"), "{first}");
    assert_eq!(k.ok(["logs", &format!("job/{}", f[0])]).trim(), "hi");
    c.wait("lastScheduleTime and lastSuccessfulTime", Duration::from_secs(30), || {
        let st =
            k.ok(["get", "cronjob", "hello", "-o", "jsonpath={.status.lastScheduleTime} {.status.lastSuccessfulTime}"]);
        st.split_whitespace().count() == 2
    });
    let owner = k.ok([
        "get",
        "job",
        f[0],
        "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].controller}",
    ]);
    assert_eq!(owner, "CronJob/true");
    // The suspended one scheduled nothing.
    let st = k.ok(["get", "cronjob", "sleepy", "-o", "jsonpath={.status.lastScheduleTime}"]);
    assert_eq!(st, "");
    let sleepy_jobs = k.ok([
        "get",
        "jobs",
        "-o",
        r#"jsonpath={.items[?(@.metadata.ownerReferences[0].name=="sleepy")].metadata.name}"#,
    ]);
    assert_eq!(sleepy_jobs, "");

    // kubectl create job --from=cronjob: copies the template, owned by the CronJob.
    k.ok(["create", "job", "--from=cronjob/hello", "manual"]);
    let manual = k.ok([
        "get",
        "job",
        "manual",
        "-o",
        r#"jsonpath={.metadata.annotations.cronjob\.kubernetes\.io/instantiate} {.metadata.ownerReferences[0].name}"#,
    ]);
    assert_eq!(manual, "manual hello");
    k.ok(["wait", "--for=condition=complete", "job/manual", "--timeout=90s"]);
    assert_eq!(k.ok(["logs", "job/manual"]).trim(), "hi");
    // successfulJobsHistoryLimit 1: the older finished Job is deleted.
    c.wait("the older Job trimmed", Duration::from_secs(60), || !k.run(["get", "job", f[0]]).success());
    let events = k.ok([
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=CronJob",
        "-o",
        "jsonpath={range .items[*]}{.reason} {.message}{\"\\n\"}{end}",
    ]);
    assert!(events.contains(&format!("SuccessfulCreate Created job {}", f[0])), "{events}");
    assert!(events.contains(&format!("SuccessfulDelete Deleted job {}", f[0])), "{events}");
    let row = k.ok(["get", "cronjob", "hello", "--no-headers"]);
    assert!(row.contains("False"), "{row}");
}
