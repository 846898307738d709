//! The whole lesson (`WALKTHROUGH.md` of the project's notes; `docs/lesson.md` in this
//! repository) as one end-to-end test: every step in order, with the lesson's own
//! manifest files, the real kubectl, `rkube up --lb-pool 192.168.122.200-192.168.122.250`
//! in a network-namespace sandbox, and "outside" traffic from the sandbox's client
//! namespace. Then the LoadBalancer checks of issue 10 on the same cluster: ARP from
//! the node, loadBalancerSourceRanges, a pool added at run time.
//!
//! The commands and what they printed are recorded; with `RKUBE_WRITE_LESSON_DOC=1`
//! the test writes them to `docs/lesson.md` (so the guide shows what rkube really
//! prints). Needs root.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use testkit::{manifest, Kubectl, Sandbox, SandboxNode};

const POOL: &str = "192.168.122.200-192.168.122.250";

/// What the learner types and sees, in order.
#[derive(Default)]
struct Transcript {
    doc: String,
}

impl Transcript {
    fn section(&mut self, title: &str) {
        let _ = write!(self.doc, "\n## {title}\n");
    }
    fn step(&mut self, title: &str, prose: &str) {
        let _ = write!(self.doc, "\n### {title}\n\n{}\n", prose.trim());
    }
    fn shell(&mut self, prompt: &str, command: &str, output: &str) {
        let out = output.trim_end();
        let _ = write!(self.doc, "\n```\n{prompt}$ {command}\n{out}{}```\n", if out.is_empty() { "" } else { "\n" });
    }
    fn note(&mut self, text: &str) {
        let _ = write!(self.doc, "\n{}\n", text.trim());
    }
}

struct Lesson {
    t: Transcript,
    node: SandboxNode,
    /// The sandbox's upstream DNS server (dnsmasq in the `lan` namespace).
    upstream: std::process::Child,
    sandbox: Sandbox,
}

impl Drop for Lesson {
    fn drop(&mut self) {
        let _ = self.upstream.kill();
        let _ = self.upstream.wait();
    }
}

/// `Hostname: <pod>` of a myweb answer.
fn hostname(answer: &str) -> Option<String> {
    answer.lines().find_map(|l| l.strip_prefix("Hostname: ")).map(|h| h.trim().to_string())
}

impl Lesson {
    fn k(&self) -> Kubectl {
        self.node.kubectl()
    }

    /// Runs `kubectl args` (must succeed), recorded.
    fn kubectl(&mut self, args: &[&str]) -> String {
        let out = self.k().ok(args.iter().copied());
        self.t.shell("", &format!("kubectl {}", args.join(" ")), &out);
        out
    }

    /// Runs `kubectl args` that must fail, recorded with its error.
    fn kubectl_fails(&mut self, args: &[&str], stdin: Option<&str>) -> String {
        let out = match stdin {
            Some(s) => self.k().run_with_stdin(args.iter().copied(), s),
            None => self.k().run(args.iter().copied()),
        };
        assert!(!out.success(), "kubectl {args:?} should fail: {}", out.stdout);
        self.t.shell("", &format!("kubectl {}", args.join(" ")), &out.stderr);
        out.stderr
    }

    /// `kubectl create -f <lesson manifest>`, recorded with the file's name as the learner types it.
    fn create(&mut self, file: &str) -> String {
        let out = self.k().ok(["create", "-f", manifest(file).to_str().unwrap_or_default()]);
        self.t.shell("", &format!("kubectl create -f {file}"), &out);
        out
    }

    fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out after {timeout:?} waiting for {what}\n{}", self.node.logs_tail(60));
    }

    fn ready_pods(&self, n: usize) {
        let k = self.k();
        self.wait(&format!("{n} ready mynapp pods"), Duration::from_secs(90), || {
            let out = k.ok([
                "get",
                "pods",
                "-l",
                "app=mynapp-rs",
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.deletionTimestamp}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
            ]);
            out.lines().filter(|l| *l == "True").count() == n && out.lines().count() == n
        });
    }

    fn endpoint_count(&self, svc: &str) -> usize {
        let out = self.k().ok(["get", "endpoints", svc, "-o", "jsonpath={.subsets[*].addresses[*].ip}"]);
        out.split_whitespace().count()
    }

    fn pod_names(&self) -> HashSet<String> {
        self.k()
            .ok(["get", "pods", "-l", "app=mynapp-rs", "-o", "jsonpath={.items[*].metadata.name}"])
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    /// `n` requests from the tools pod, one curl each; the hostnames that answered.
    fn requests_from_pod(&mut self, url: &str, n: usize, record: bool) -> Vec<String> {
        let script = format!("for i in $(seq {n}); do curl -sk --max-time 2 {url}; echo; done");
        let out = self.k().ok(["exec", "tools", "--", "sh", "-c", &script]);
        if record {
            let shown: String = out.lines().filter(|l| !l.trim().is_empty()).take(8).collect::<Vec<_>>().join("\n");
            self.t.shell("", &format!("kubectl exec tools -- sh -c '{script}'"), &format!("{shown}\n..."));
        }
        out.lines().filter_map(hostname).collect()
    }

    /// `n` requests from the client namespace ("outside the cluster").
    fn requests_from_outside(&mut self, url: &str, n: usize, record: bool) -> Vec<String> {
        let mut names = Vec::new();
        let mut shown = Vec::new();
        for _ in 0..n {
            let out =
                self.sandbox.exec(self.sandbox.client_netns(), "curl", ["-s", "--max-time", "3", url]).expect("curl");
            if let Some(h) = hostname(&out.stdout) {
                names.push(h);
            }
            if shown.len() < 4 {
                shown.push(out.stdout.trim().to_string());
            }
        }
        if record {
            self.t.shell(
                "client",
                &format!("for i in $(seq {n}); do curl -s {url}; done"),
                &format!("{}\n...", shown.join("\n")),
            );
        }
        names
    }

    fn outside_fails(&self, url: &str) -> bool {
        let out = self.sandbox.exec(self.sandbox.client_netns(), "curl", ["-s", "--max-time", "2", url]).expect("curl");
        !out.success()
    }
}

#[test]
fn the_lesson_end_to_end() {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return;
    }
    let have = |c: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("dnsmasq") || !have("curl") {
        testkit::skip("dnsmasq and curl are needed (scripts/install-prereqs.sh installs them)");
        return;
    }
    let sandbox = Sandbox::new(1).expect("sandbox");
    // The sandbox's "internet": the name the ExternalName Service points at.
    let upstream = sandbox.spawn_lan_dns(&["--address=/www.google.com/142.250.0.99"]).expect("dnsmasq");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rkube"));
    let node = sandbox
        .start_rkube(bin, 1, &["--node-name", "node1", "--upstream-dns", "192.168.122.1", "--lb-pool", POOL])
        .expect("rkube up");
    node.wait_dns_ready().expect("DNS add-ons ready");
    let mut l = Lesson { t: Transcript::default(), node, upstream, sandbox };
    let node_ip = l.sandbox.node_ip(1).to_string();

    l.t.note(&format!(
        "The cluster: `rkube up --lb-pool {POOL}` on one Linux machine whose LAN address is {node_ip} \
         (the lesson used a master and three nodes; rkube's nodes join with `rkube agent`). \
         `client$` marks commands run on another machine of the same LAN, outside the cluster."
    ));

    // ---------------------------------------------------------------- 1. inside the cluster
    l.t.section("1. Services inside the cluster");
    l.t.step(
        "1.1 The `kubernetes` Service",
        "A fresh cluster already has the `kubernetes` Service: the first address of the \
         service range, port 443, with the API server as its endpoint.",
    );
    let out = l.kubectl(&["get", "svc", "kubernetes"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(&row[..5], ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"], "{out}");
    let out = l.kubectl(&["get", "endpoints", "kubernetes"]);
    assert!(out.contains(&format!("{node_ip}:6443")), "{out}");

    l.t.step(
        "1.2 A ClusterIP Service",
        "`mynapp-svc.yml` asks for port 80 forwarded to port 8080 of the pods labelled \
         `app=mynapp-rs`. The Service gets a virtual IP that stays the same as long as it lives.",
    );
    l.create("mynapp-svc.yml");
    let cluster_ip = l.k().ok(["get", "svc", "mynapp-svc", "-o", "jsonpath={.spec.clusterIP}"]);
    let out = l.kubectl(&["get", "svc", "mynapp-svc"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(&row[..5], ["mynapp-svc", "ClusterIP", cluster_ip.as_str(), "<none>", "80/TCP"], "{out}");

    l.t.step(
        "1.3 No pods yet: no endpoints",
        "No pod matches the selector yet, so the Service has no endpoints, and a connection \
         to its IP is refused at once (the node's nftables rules answer with a reset).",
    );
    let out = l.kubectl(&["get", "endpoints", "mynapp-svc"]);
    assert_eq!(out.lines().nth(1).unwrap_or_default().split_whitespace().nth(1), Some("<none>"), "{out}");
    let refused = l
        .sandbox
        .exec(l.sandbox.node_netns(1), "curl", ["-sS", "--max-time", "3", &format!("http://{cluster_ip}")])
        .expect("curl");
    assert!(
        refused.stderr.contains("Connection refused") || refused.stderr.contains("Couldn't connect"),
        "{refused:?}"
    );
    l.t.shell("node1", &format!("curl http://{cluster_ip}"), &refused.stderr);

    l.t.step(
        "1.4 The ReplicaSet fills the endpoints",
        "`mynapp-rs.yml` starts three pods of `minjulee226/myweb`, a web server on 8080 that \
         answers with its pod's name. The endpoints follow the pods by themselves, also when \
         the ReplicaSet is scaled.",
    );
    l.create("mynapp-rs.yml");
    l.ready_pods(3);
    l.wait("3 endpoints", Duration::from_secs(30), || l.endpoint_count("mynapp-svc") == 3);
    l.kubectl(&["get", "pods", "-l", "app=mynapp-rs", "-o", "wide"]);
    let out = l.kubectl(&["get", "endpoints", "mynapp-svc"]);
    assert_eq!(out.matches(":8080").count(), 3, "{out}");
    l.kubectl(&["scale", "rs", "mynapp-rs", "--replicas=5"]);
    l.ready_pods(5);
    l.wait("5 endpoints", Duration::from_secs(30), || l.endpoint_count("mynapp-svc") == 5);
    l.kubectl(&["get", "endpoints", "mynapp-svc"]);
    l.kubectl(&["scale", "rs", "mynapp-rs", "--replicas=3"]);
    l.ready_pods(3);
    l.wait("3 endpoints again", Duration::from_secs(30), || l.endpoint_count("mynapp-svc") == 3);
    l.kubectl(&["get", "endpoints", "mynapp-svc"]);

    l.t.step(
        "1.2b `kubectl expose` makes the same Service",
        "`kubectl expose` builds the Service from the ReplicaSet's selector.",
    );
    l.kubectl(&["expose", "rs", "mynapp-rs", "--name", "mynapp-svc-exposed", "--port", "80", "--target-port", "8080"]);
    let spec = |name: &str| {
        l.k().ok([
            "get",
            "svc",
            name,
            "-o",
            "jsonpath={.spec.selector} {.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.type}",
        ])
    };
    assert_eq!(spec("mynapp-svc-exposed"), spec("mynapp-svc"));
    l.kubectl(&["delete", "svc", "mynapp-svc-exposed"]);

    l.t.step(
        "1.5 Load balancing",
        "From a pod (a tools pod with curl), repeated requests to the ClusterIP reach \
         different pods.",
    );
    l.kubectl(&["run", "tools", "--image=nicolaka/netshoot", "--", "sleep", "86400"]);
    l.wait("tools running", Duration::from_secs(60), || {
        l.k().ok(["get", "pod", "tools", "--no-headers"]).contains("Running")
    });
    let pods = l.pod_names();
    let seen: HashSet<String> = l.requests_from_pod(&format!("http://{cluster_ip}"), 30, true).into_iter().collect();
    assert_eq!(seen, pods, "30 requests reach all 3 pods");

    l.t.step("1.6 Session affinity", "`sessionAffinity: ClientIP` sends every request of one client to the same pod.");
    l.create("mynapp-svc-session-affinity.yml");
    let aff_ip = l.k().ok(["get", "svc", "mynapp-svc-ses-aff", "-o", "jsonpath={.spec.clusterIP}"]);
    l.wait("affinity endpoints", Duration::from_secs(30), || l.endpoint_count("mynapp-svc-ses-aff") == 3);
    let seen: HashSet<String> = l.requests_from_pod(&format!("http://{aff_ip}"), 20, true).into_iter().collect();
    assert_eq!(seen.len(), 1, "one pod for one client: {seen:?}");

    l.t.step(
        "1.7 Several ports",
        "A Service with several ports must name each of them; `mynapp-svc-multiport.yml` \
         serves 80 -> 8080 and 443 -> 8443. Without names the API server refuses it.",
    );
    l.create("mynapp-svc-multiport.yml");
    let mp_ip = l.k().ok(["get", "svc", "mynapp-svc-mp", "-o", "jsonpath={.spec.clusterIP}"]);
    l.wait("multiport endpoints", Duration::from_secs(30), || l.endpoint_count("mynapp-svc-mp") == 3);
    assert!(!l.requests_from_pod(&format!("http://{mp_ip}"), 3, true).is_empty());
    assert!(!l.requests_from_pod(&format!("https://{mp_ip}"), 3, true).is_empty());
    let unnamed = "apiVersion: v1\nkind: Service\nmetadata:\n  name: unnamed-mp\nspec:\n  ports:\n  - port: 80\n    targetPort: 8080\n  - port: 443\n    targetPort: 8443\n  selector:\n    app: mynapp-rs\n";
    let err = l.kubectl_fails(&["create", "-f", "-"], Some(unnamed));
    assert!(err.contains("spec.ports[0].name: Required value"), "{err}");

    // ---------------------------------------------------------------- 2. discovery
    l.t.section("2. Service discovery");
    l.t.step(
        "2.1 Environment variables",
        "A pod started after a Service exists gets its address in environment variables \
         (and the docker-links family).",
    );
    let env = l.k().ok(["exec", "tools", "--", "env"]);
    let mut shown: Vec<&str> =
        env.lines().filter(|e| e.starts_with("MYNAPP_SVC_") || e.starts_with("KUBERNETES_SERVICE")).collect();
    shown.sort();
    l.t.shell("", "kubectl exec tools -- env | grep -e MYNAPP_SVC_ -e KUBERNETES_SERVICE | sort", &shown.join("\n"));
    for want in [
        format!("MYNAPP_SVC_SERVICE_HOST={cluster_ip}"),
        "MYNAPP_SVC_SERVICE_PORT=80".to_string(),
        format!("MYNAPP_SVC_PORT=tcp://{cluster_ip}:80"),
        format!("MYNAPP_SVC_PORT_80_TCP_ADDR={cluster_ip}"),
        "KUBERNETES_SERVICE_HOST=10.96.0.1".to_string(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} in\n{env}");
    }

    l.t.step(
        "2.2 DNS",
        "Every node runs a node-local DNS cache on a link-local address (169.254.20.10, \
         upstream's default; the lesson's cluster used 169.254.25.10), the pods' first \
         nameserver. Pods resolve the Service by its short name, `name.namespace` and the \
         full name. The cache is the `nodelocaldns` DaemonSet in kube-system (one \
         hostNetwork pod per node, its args name the address), the cluster DNS the \
         `coredns` Deployment behind the `kube-dns` Service.",
    );
    let ds = l.k().ok(["-n", "kube-system", "get", "ds", "nodelocaldns"]);
    l.t.shell("", "kubectl -n kube-system get ds nodelocaldns", &ds);
    let row: Vec<String> = ds.lines().nth(1).unwrap_or_default().split_whitespace().map(String::from).collect();
    assert_eq!(row.get(1..6).map(|r| r.join(" ")), Some("1 1 1 1 1".to_string()), "{ds}");
    let args = l.k().ok([
        "-n",
        "kube-system",
        "get",
        "ds",
        "nodelocaldns",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].args}",
    ]);
    l.t.shell(
        "",
        "kubectl -n kube-system get ds nodelocaldns -o jsonpath='{.spec.template.spec.containers[0].args}'",
        &args,
    );
    assert!(args.contains("169.254.20.10"), "{args}");
    let resolv = l.k().ok(["exec", "tools", "--", "cat", "/etc/resolv.conf"]);
    l.t.shell("", "kubectl exec tools -- cat /etc/resolv.conf", &resolv);
    assert!(resolv.contains("nameserver 169.254.20.10"), "{resolv}");
    for name in ["mynapp-svc", "mynapp-svc.default", "mynapp-svc.default.svc.cluster.local"] {
        let out = l.k().ok(["exec", "tools", "--", "nslookup", name]);
        assert!(out.contains(&format!("Address: {cluster_ip}")), "{name}: {out}");
        if name == "mynapp-svc" {
            l.t.shell("", &format!("kubectl exec tools -- nslookup {name}"), &out);
        }
    }
    let seen = l.requests_from_pod("http://mynapp-svc.default.svc.cluster.local", 3, true);
    assert_eq!(seen.len(), 3);

    // ---------------------------------------------------------------- 3. outside
    l.t.section("3. Services outside the cluster");
    l.t.step(
        "3.1 NodePort",
        "`mynapp-svc-ext-nodeport.yml` opens port 31111 on every node; a machine outside \
         the cluster reaches the pods through any node's address.",
    );
    l.create("mynapp-svc-ext-nodeport.yml");
    let out = l.kubectl(&["get", "svc", "mynapp-svc-ext-np"]);
    assert!(out.contains("80:31111/TCP"), "{out}");
    l.wait("nodeport endpoints", Duration::from_secs(30), || l.endpoint_count("mynapp-svc-ext-np") == 3);
    l.kubectl(&["get", "endpoints", "mynapp-svc-ext-np"]);
    let seen: HashSet<String> =
        l.requests_from_outside(&format!("http://{node_ip}:31111"), 30, true).into_iter().collect();
    assert_eq!(seen, pods, "NodePort from outside reaches all pods");

    l.t.step(
        "3.2 LoadBalancer",
        "`mynapp-svc-ext-loadbalancer.yml` gets an EXTERNAL-IP from the address pool on the \
         nodes' LAN (`--lb-pool`; MetalLB's `IPAddressPool` objects work too). One node \
         answers ARP for it, so a client on the LAN reaches it like any other machine, and \
         the requests are balanced over the pods.",
    );
    l.create("mynapp-svc-ext-loadbalancer.yml");
    let k = l.k();
    l.wait("an external IP", Duration::from_secs(30), || {
        !k.ok(["get", "svc", "mynapp-svc-ext-lb", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]).is_empty()
    });
    let lb_ip = k.ok(["get", "svc", "mynapp-svc-ext-lb", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]);
    assert_eq!(lb_ip, "192.168.122.200", "the first address of the pool");
    let out = l.kubectl(&["get", "svc", "mynapp-svc-ext-lb"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row[1], "LoadBalancer", "{out}");
    assert!(row[2].starts_with("10."), "{out}");
    assert_eq!(row[3], lb_ip, "{out}");
    assert!(row[4].starts_with("80:3") && row[4].ends_with("/TCP"), "{out}");
    l.kubectl(&["get", "ipaddresspools", "-A"]);
    l.wait("lb endpoints", Duration::from_secs(30), || l.endpoint_count("mynapp-svc-ext-lb") == 3);
    let lb_url = format!("http://{lb_ip}");
    l.wait("the LoadBalancer address answering from outside", Duration::from_secs(30), || !l.outside_fails(&lb_url));
    let seen: HashSet<String> = l.requests_from_outside(&lb_url, 40, true).into_iter().collect();
    assert_eq!(seen, pods, "40 requests from outside reach all 3 pods");
    // The client learnt the address from the node's ARP answer.
    let mac = l.sandbox.exec_ok(l.sandbox.node_netns(1), "cat", ["/sys/class/net/eth0/address"]).expect("node MAC");
    let neigh = l.sandbox.exec_ok(l.sandbox.client_netns(), "ip", ["neigh", "show", &lb_ip]).expect("ip neigh");
    l.t.shell("client", &format!("ip neigh show {lb_ip}"), &neigh);
    assert!(neigh.contains(mac.trim()), "client's ARP entry for {lb_ip} is node1's MAC {mac}: {neigh}");
    l.t.note(&format!("`{}` is node1's MAC address: node1 answered ARP for {lb_ip}.", mac.trim()));

    l.t.step(
        "3.3 ExternalName",
        "An ExternalName Service is only a DNS name: the cluster DNS answers \
         `mynapp-svc-extname-gl` with a CNAME to `www.google.com`, and nothing is proxied.",
    );
    l.create("mynapp-svc-ext-extname.yml");
    let out = l.kubectl(&["get", "svc", "mynapp-svc-extname-gl"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(&row[..5], ["mynapp-svc-extname-gl", "ExternalName", "<none>", "www.google.com", "<none>"], "{out}");
    // nslookup exits 1 here: its AAAA query for the CNAME target gets SERVFAIL (the
    // sandbox's dnsmasq has only an A record; a known gap of the DNS cache). The A
    // answer is what the lesson shows.
    let out = l.k().run(["exec", "tools", "--", "nslookup", "mynapp-svc-extname-gl"]).stdout;
    l.t.shell("", "kubectl exec tools -- nslookup mynapp-svc-extname-gl", &out);
    assert!(out.contains("canonical name = www.google.com"), "{out}");
    assert!(out.contains("142.250.0.99"), "the external name's address: {out}");

    // ---------------------------------------------------------------- beyond the lesson
    l.t.section("4. More LoadBalancer features");
    l.t.step(
        "4.1 loadBalancerSourceRanges",
        "Only the listed source ranges may use the external IP; others are dropped. The \
         change is live.",
    );
    l.kubectl(&["patch", "svc", "mynapp-svc-ext-lb", "-p", r#"{"spec":{"loadBalancerSourceRanges":["10.0.0.0/8"]}}"#]);
    l.wait("the client blocked", Duration::from_secs(10), || l.outside_fails(&lb_url));
    let blocked = l.sandbox.exec(l.sandbox.client_netns(), "curl", ["-sS", "--max-time", "2", &lb_url]).expect("curl");
    l.t.shell("client", &format!("curl --max-time 2 {lb_url}"), &blocked.stderr);
    l.kubectl(&[
        "patch",
        "svc",
        "mynapp-svc-ext-lb",
        "-p",
        r#"{"spec":{"loadBalancerSourceRanges":["192.168.122.0/24"]}}"#,
    ]);
    l.wait("the client let in", Duration::from_secs(10), || !l.outside_fails(&lb_url));
    assert!(!l.requests_from_outside(&lb_url, 3, true).is_empty());

    l.t.step(
        "4.2 A pool added at run time",
        "MetalLB's own kinds work unchanged: a new `IPAddressPool` (here one that is only \
         used when asked for) and a Service that asks for it.",
    );
    let pool = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: reserved\n  namespace: default\nspec:\n  addresses:\n  - 192.168.122.180-192.168.122.181\n  autoAssign: false\n";
    let out = l.k().ok_with_stdin(["apply", "-f", "-"], pool);
    l.t.shell("", "kubectl apply -f reserved-pool.yaml", &out);
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: mynapp-svc-reserved\n  annotations:\n    metallb.io/address-pool: reserved\nspec:\n  type: LoadBalancer\n  ports:\n  - port: 80\n    targetPort: 8080\n  selector:\n    app: mynapp-rs\n";
    let out = l.k().ok_with_stdin(["apply", "-f", "-"], svc);
    l.t.shell("", "kubectl apply -f mynapp-svc-reserved.yaml", &out);
    l.wait("the reserved address", Duration::from_secs(30), || {
        l.k().ok(["get", "svc", "mynapp-svc-reserved", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"])
            == "192.168.122.180"
    });
    l.kubectl(&["get", "svc", "mynapp-svc-reserved"]);
    l.wait("the reserved address answering", Duration::from_secs(30), || !l.outside_fails("http://192.168.122.180"));
    assert!(!l.requests_from_outside("http://192.168.122.180", 3, true).is_empty());

    if std::env::var_os("RKUBE_WRITE_LESSON_DOC").is_some() {
        let path = testkit::repo_root().join("docs").join("lesson.md");
        std::fs::write(&path, render_doc(&l.t.doc)).expect("write docs/lesson.md");
        eprintln!("wrote {}", path.display());
    }
}

fn render_doc(body: &str) -> String {
    format!(
        "# The Services lesson on rkube\n\n\
         This is the Kubernetes Services lesson (a Korean tutorial done on a 1-master + 3-node \
         cluster) redone step by step on rkube, with the lesson's own manifest files \
         (`tests/manifests/`) and the real kubectl v1.33. Every command and every output below \
         was captured by the end-to-end test `crates/rkube/tests/lesson.rs` \
         (`RKUBE_WRITE_LESSON_DOC=1 cargo test -p rkube --test lesson` rewrites this file), so \
         names, addresses and ages are those of that run: yours will differ.\n\n\
         To follow along on your own machine: `sudo ./scripts/up.sh --lb-pool <a free range on your LAN>`, \
         then `export KUBECONFIG=/var/lib/rkube/kubeconfig.yaml`.\n{body}"
    )
}
