//! Real OCI images (issue 13): a registry on the sandbox LAN (Debian's
//! `docker-registry`, plain HTTP) holds images this test builds from
//! `busybox-static`; pods run them in root filesystems of their own. One
//! sandbox, one registry and one node for every check: entrypoint, rootfs,
//! image env/workdir/user, exec, events and imageID, a second pod without a
//! second pull, volumes and the ServiceAccount token inside the image's root,
//! security context, a missing tag, a hostile layer, and the built-in
//! fallback when no registry can be reached.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use testkit::oci::{tar, Entry, Layout, Registry};
use testkit::{Kubectl, Sandbox, SandboxNode};

fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A web image: busybox (static) with its applets, an /etc/passwd with user
/// `app` (1000), a web root, and httpd as the entrypoint.
fn web_layers() -> Vec<Vec<Entry>> {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let mut base = vec![
        Entry::dir("bin/"),
        Entry::file("bin/busybox", 0o755, busybox),
        Entry::dir("etc/"),
        Entry::file("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
        Entry::file("etc/group", 0o644, "root:x:0:\napp:x:1000:\n"),
        Entry::dir("var/"),
        Entry::symlink("var/run", "/run"),
        Entry::dir("run/"),
        Entry::dir("tmp/"),
    ];
    for applet in [
        "sh", "cat", "ls", "id", "env", "pwd", "httpd", "wget", "touch", "sleep", "echo", "grep", "readlink", "pidof",
        "test",
    ] {
        base.push(Entry::symlink(&format!("bin/{applet}"), "busybox"));
    }
    let site = vec![Entry::dir("www/"), Entry::file("www/index.html", 0o644, "<h1>served from a pulled image</h1>\n")];
    vec![base, site]
}

struct Node {
    node: SandboxNode,
}

impl Node {
    fn k(&self) -> Kubectl {
        self.node.kubectl()
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
            self.node.logs_tail(80)
        );
    }
    fn ready(&self, pod: &str) -> bool {
        self.k().run(["get", "pod", pod, "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#]).stdout
            == "True"
    }
    fn exec(&self, pod: &str, cmd: &[&str]) -> String {
        let mut args = vec!["exec", pod, "--"];
        args.extend_from_slice(cmd);
        self.k().ok(args).trim().to_string()
    }
    fn events(&self, pod: &str) -> String {
        self.k().ok([
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod}"),
            "-o",
            r#"jsonpath={range .items[*]}{.reason}: {.message}{"\n"}{end}"#,
        ])
    }
    fn waiting(&self, pod: &str) -> String {
        self.k().ok([
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason} {.status.containerStatuses[0].state.waiting.message}",
        ])
    }
}

#[test]
fn pods_run_pulled_images() {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return;
    }
    for tool in ["docker-registry", "skopeo", "busybox", "gzip", "sha256sum"] {
        if !have(tool) {
            testkit::skip(&format!("{tool} is not installed (scripts/install-prereqs.sh installs it)"));
            return;
        }
    }
    let sb = Sandbox::new(1).expect("sandbox");
    let addr = SocketAddr::new(sb.lan_ip().into(), 5000);
    let reg = Registry::start(&sb, sb.lan_netns(), addr, &sb.temp_dir().join("registry")).expect("registry");
    let layout_dir = sb.temp_dir().join("layout-web");
    let mut layout = Layout::new(&layout_dir).expect("layout");
    for l in web_layers() {
        layout.layer(&tar(&l)).expect("layer");
    }
    let run_config = r#"{"Env":["PATH=/bin","GREETING=hello-from-the-image"],"Entrypoint":["/bin/httpd","-f","-p","8080"],"Cmd":["-h","/www"],"WorkingDir":"/www","User":"app"}"#;
    let digest = layout.finish("v1", run_config).expect("finish");
    reg.push(&sb, &layout_dir, "v1", "web").expect("push web:v1");
    let evil_dir = sb.temp_dir().join("layout-evil");
    let mut evil = Layout::new(&evil_dir).expect("layout");
    evil.layer(&tar(&[Entry::file("../../../../etc/rkube-pwned", 0o644, "x")])).expect("layer");
    evil.finish("v1", r#"{"Cmd":["/bin/sh"]}"#).expect("finish");
    reg.push(&sb, &evil_dir, "v1", "evil").expect("push evil:v1");

    // Docker Hub's only mirror is a closed port, and no default endpoint:
    // the lesson's image cannot be pulled, so its built-in runs.
    let registries = sb.temp_dir().join("registries.yaml");
    std::fs::write(
        &registries,
        format!("mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{}:5999\"\n", sb.lan_ip()),
    )
    .expect("registries.yaml");
    let reg_arg = registries.to_string_lossy().into_owned();
    let host = addr.to_string();
    let node = sb
        .start_rkube(
            std::path::Path::new(env!("CARGO_BIN_EXE_rkube")),
            1,
            &[
                "--node-name",
                "node1",
                "--disable",
                "coredns,nodelocaldns",
                "--builtin-images",
                "fallback",
                "--insecure-registry",
                &host,
                "--registry-config",
                &reg_arg,
                "--disable-default-registry-endpoint",
            ],
        )
        .expect("rkube up");
    let mut n = Node { node };
    let k = n.k();
    n.wait("node1 Ready", Duration::from_secs(30), || k.ok(["get", "nodes"]).contains(" Ready "));
    k.ok_with_stdin(
        ["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: site}\ndata: {motd: hello-from-a-configmap}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {password: s3cret}\n",
    );
    let image = format!("{host}/web:v1");
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  containers:\n  - name: web\n    image: {image}\n    volumeMounts:\n    - {{name: site, mountPath: /etc/site}}\n    - {{name: creds, mountPath: /var/run/creds}}\n    - {{name: scratch, mountPath: /scratch}}\n  volumes:\n  - {{name: site, configMap: {{name: site}}}}\n  - {{name: creds, secret: {{secretName: creds}}}}\n  - {{name: scratch, emptyDir: {{}}}}\n"
    );
    k.ok_with_stdin(["apply", "-f", "-"], &pod);
    // A crashing container of the image: each restart starts from the image
    // again (checked at the end; the first restart waits out a 10 s back-off).
    let fresh = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: fresh}}\nspec:\n  containers:\n  - name: c\n    image: {image}\n    command: [\"sh\", \"-c\", \"test -e /marker && echo STALE; touch /marker; echo started; sleep 1; exit 1\"]\n"
    );
    k.ok_with_stdin(["apply", "-f", "-"], &fresh);
    // An emptyDir filled past its sizeLimit gets the pod evicted (checked at the end).
    let hog = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: hog}}\nspec:\n  containers:\n  - name: c\n    image: {image}\n    command: [\"sh\", \"-c\", \"dd if=/dev/zero of=/scratch/big bs=1024 count=3072; sleep 3600\"]\n    volumeMounts: [{{name: scratch, mountPath: /scratch}}]\n  volumes:\n  - {{name: scratch, emptyDir: {{sizeLimit: 1Mi}}}}\n"
    );
    k.ok_with_stdin(["apply", "-f", "-"], &hog);
    n.wait("pod web Ready", Duration::from_secs(60), || n.ready("web"));

    // The entrypoint serves the image's web root, in the image's workdir, as its user.
    let page = n.exec("web", &["wget", "-qO-", "http://127.0.0.1:8080/"]);
    assert_eq!(page, "<h1>served from a pulled image</h1>");
    assert_eq!(n.exec("web", &["pwd"]), "/www");
    assert_eq!(n.exec("web", &["id", "-u"]), "1000", "the image's User");
    let env = n.exec("web", &["env"]);
    assert!(env.contains("GREETING=hello-from-the-image"), "{env}");
    // Its own root: the image's files, not the node's.
    let root = n.exec("web", &["ls", "/"]);
    for want in ["bin", "www", "proc", "dev", "etc"] {
        assert!(root.split_whitespace().any(|e| e == want), "{want} in {root}");
    }
    assert!(!root.contains("usr") && !root.contains("home"), "the node's root is not visible: {root}");
    assert_eq!(n.exec("web", &["cat", "/etc/hostname"]), "web");
    // containerd's default capability set bounds the container and its execs;
    // the pod has an IPC namespace of its own.
    const DEFAULT_CAPS: &str = "CapBnd:\t00000000a80425fb";
    assert_eq!(n.exec("web", &["sh", "-c", "grep CapBnd /proc/$(pidof httpd)/status"]), DEFAULT_CAPS);
    assert_eq!(n.exec("web", &["grep", "CapBnd", "/proc/self/status"]), DEFAULT_CAPS);
    let node_ipc = std::fs::read_link("/proc/self/ns/ipc").expect("own ipc namespace");
    let pod_ipc = n.exec("web", &["readlink", "/proc/self/ns/ipc"]);
    assert_ne!(pod_ipc, node_ipc.to_string_lossy(), "the pod's IPC namespace is its own");
    // Volumes inside the rootfs; /var/run is the image's symlink to /run.
    assert_eq!(n.exec("web", &["cat", "/etc/site/motd"]), "hello-from-a-configmap");
    assert_eq!(n.exec("web", &["cat", "/var/run/creds/password"]), "s3cret");
    assert_eq!(n.exec("web", &["cat", "/run/creds/password"]), "s3cret");
    assert!(
        k.run(["exec", "web", "--", "touch", "/etc/site/x"]).stderr.contains("Read-only"),
        "configMaps are read-only"
    );
    n.exec("web", &["sh", "-c", "echo kept > /scratch/note"]);
    assert_eq!(n.exec("web", &["cat", "/scratch/note"]), "kept");
    // The ServiceAccount token is mounted and the API accepts it.
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(n.exec("web", &["cat", &format!("{sa}/namespace")]), "default");
    let token = n.exec("web", &["cat", &format!("{sa}/token")]);
    let who = k.ok(["--token", &token, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert_eq!(who, "system:serviceaccount:default:default");

    // Events and imageID, as kubelet reports them.
    let events = n.events("web");
    assert!(events.contains(&format!("Pulling: Pulling image \"{image}\"")), "{events}");
    assert!(events.contains(&format!("Pulled: Successfully pulled image \"{image}\" in ")), "{events}");
    assert!(events.contains("Image size: "), "{events}");
    let status = k.ok([
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.status.containerStatuses[0].image} {.status.containerStatuses[0].imageID}",
    ]);
    assert_eq!(status, format!("{image} {host}/web@{digest}"));

    // A second pod of the same image: no second pull; runAsUser and a read-only
    // root; its ServiceAccount's pull secret lands on the pod and is read.
    k.ok([
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={host}"),
        "--docker-username=puller",
        "--docker-password=pw",
    ]);
    k.ok_with_stdin(
        ["apply", "-f", "-"],
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: puller}\nimagePullSecrets: [{name: regcred}]\n",
    );
    let second = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web2}}\nspec:\n  serviceAccountName: puller\n  securityContext: {{runAsUser: 4242, runAsGroup: 4343}}\n  containers:\n  - name: web\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n    securityContext: {{readOnlyRootFilesystem: true, capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}}}\n    readinessProbe:\n      exec: {{command: [\"cat\", \"/www/index.html\"]}}\n      periodSeconds: 1\n"
    );
    k.ok_with_stdin(["apply", "-f", "-"], &second);
    n.wait("pod web2 Ready", Duration::from_secs(60), || n.ready("web2"));
    let events = n.events("web2");
    assert!(events.contains(&format!("Container image \"{image}\" already present on machine")), "{events}");
    assert!(!events.contains("Pulling"), "{events}");
    assert_eq!(k.ok(["get", "pod", "web2", "-o", "jsonpath={.spec.imagePullSecrets[*].name}"]), "regcred");
    assert_eq!(n.exec("web2", &["id", "-u"]), "4242");
    assert_eq!(n.exec("web2", &["id", "-g"]), "4343");
    // capabilities drop ALL, add NET_BIND_SERVICE (bit 10); the exec probe ran in
    // the image's root (the node has no /www), or web2 would not be Ready.
    assert_eq!(n.exec("web2", &["grep", "CapBnd", "/proc/self/status"]), "CapBnd:\t0000000000000400");
    let touch = k.run(["exec", "web2", "--", "touch", "/www/new"]);
    assert!(!touch.success() && touch.stderr.contains("Read-only file system"), "{touch:?}");

    // A missing tag: ErrImagePull naming the reference, then ImagePullBackOff.
    k.ok(["run", "missing", &format!("--image={host}/web:nope")]);
    n.wait("ErrImagePull for a missing tag", Duration::from_secs(30), || {
        let w = n.waiting("missing");
        (w.starts_with("ErrImagePull ") || w.starts_with("ImagePullBackOff "))
            && w.contains(&format!("{host}/web:nope: not found"))
    });
    n.wait("ImagePullBackOff", Duration::from_secs(30), || n.waiting("missing").starts_with("ImagePullBackOff "));
    let events = n.events("missing");
    assert!(events.contains("Failed: Failed to pull image"), "{events}");

    // A layer escaping its root is refused; nothing lands on the node.
    k.ok(["run", "evil", &format!("--image={host}/evil:v1")]);
    n.wait("the hostile image refused", Duration::from_secs(30), || {
        let w = n.waiting("evil");
        w.contains("refused") && w.contains("rkube-pwned")
    });
    assert!(!std::path::Path::new("/etc/rkube-pwned").exists());

    // No registry reachable for the lesson's image: the built-in runs, and an Event says so.
    k.ok(["run", "lesson", "--image=minjulee226/myweb"]);
    n.wait("the built-in myweb Ready", Duration::from_secs(60), || n.ready("lesson"));
    let events = n.events("lesson");
    assert!(
        events.contains("No registry could be reached") && events.contains("running rkube's built-in image"),
        "{events}"
    );
    // resourceFieldRef in env and in a downwardAPI volume.
    let downward = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: downward}}\nspec:\n  containers:\n  - name: c\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n    resources:\n      limits: {{cpu: 250m, memory: 64Mi}}\n    env:\n    - name: MEM_MI\n      valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}\n    volumeMounts: [{{name: info, mountPath: /etc/info}}]\n  volumes:\n  - name: info\n    downwardAPI:\n      items: [{{path: cpu_millis, resourceFieldRef: {{containerName: c, resource: limits.cpu, divisor: 1m}}}}]\n"
    );
    k.ok_with_stdin(["apply", "-f", "-"], &downward);
    n.wait("pod downward Ready", Duration::from_secs(60), || n.ready("downward"));
    assert!(n.exec("downward", &["env"]).contains("MEM_MI=64"));
    assert_eq!(n.exec("downward", &["cat", "/etc/info/cpu_millis"]), "250");

    n.wait("pod hog evicted", Duration::from_secs(40), || {
        k.ok(["get", "pod", "hog", "-o", "jsonpath={.status.phase} {.status.reason}"]) == "Failed Evicted"
    });
    let message = k.ok(["get", "pod", "hog", "-o", "jsonpath={.status.message}"]);
    assert_eq!(message, "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ");
    assert!(n.events("hog").contains("Evicted: Usage of EmptyDir volume"));

    // The crashing container restarted from the image: its marker was gone.
    // (The restart count goes up at each exit: 2 means the restarted run ended.)
    n.wait("pod fresh restarted and ended again", Duration::from_secs(60), || {
        k.ok(["get", "pod", "fresh", "-o", "jsonpath={.status.containerStatuses[0].restartCount}"])
            .parse::<u32>()
            .is_ok_and(|c| c >= 2)
    });
    let logs = k.ok(["logs", "fresh", "--previous"]);
    assert!(logs.contains("started") && !logs.contains("STALE"), "a restart gets a fresh root filesystem: {logs}");

    // rkube restarted: the image container is adopted, keeps its imageID, and
    // exec still enters its root as its user.
    let id_before = k.ok(["get", "pod", "web", "-o", "jsonpath={.status.containerStatuses[0].containerID}"]);
    n.node.restart().expect("restart rkube");
    let k = n.k();
    n.wait("node1 Ready again", Duration::from_secs(60), || k.run(["get", "nodes"]).stdout.contains(" Ready "));
    n.wait("web reported by the new agent", Duration::from_secs(30), || {
        let s = k.run(["get", "pod", "web", "-o", "jsonpath={.status.containerStatuses[0].imageID}"]).stdout;
        s == format!("{host}/web@{digest}")
    });
    let id_after = k.ok(["get", "pod", "web", "-o", "jsonpath={.status.containerStatuses[0].containerID}"]);
    assert_eq!(id_before, id_after, "the container was adopted, not restarted");
    assert_eq!(n.exec("web", &["id", "-u"]), "1000");
    assert_eq!(n.exec("web", &["cat", "/www/index.html"]), "<h1>served from a pulled image</h1>");
    drop(reg);
}
