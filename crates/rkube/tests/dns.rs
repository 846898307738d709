//! Cluster DNS and the node-local cache (issue 6), in a network-namespace
//! sandbox: pods resolve Services through the node-local cache on
//! 169.254.20.10 with the search path kubelet writes; ExternalName is a CNAME;
//! outside names go to an upstream DNS server on the LAN (dnsmasq, a test
//! server that knows www.google.com) and are cached. Needs root and dnsmasq.

use std::process::Child;
use std::time::{Duration, Instant};
use testkit::{manifest, Kubectl, Sandbox, SandboxNode};

struct Cluster {
    node: SandboxNode,
    upstream: Child,
    log: std::path::PathBuf,
    sandbox: Sandbox,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.upstream.kill();
        let _ = self.upstream.wait();
    }
}

fn cluster() -> Option<Cluster> {
    cluster_of(1)
}

/// A sandbox of `nodes` nodes with rkube up on the first.
fn cluster_of(nodes: usize) -> Option<Cluster> {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return None;
    }
    if std::process::Command::new("sh")
        .args(["-c", "command -v dnsmasq && command -v dig"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        testkit::skip("dnsmasq and dig are needed (scripts/install-prereqs.sh installs them)");
        return None;
    }
    let sandbox = Sandbox::new(nodes).expect("sandbox");
    let log = sandbox.temp_dir().join("upstream.log");
    // The "internet" of the sandbox: one name, and a log of every query.
    let upstream = sandbox
        .spawn_lan_dns(&[
            "--address=/www.google.com/142.250.0.99",
            "--log-queries",
            &format!("--log-facility={}", log.display()),
        ])
        .expect("dnsmasq");
    let node = sandbox
        .start_rkube(
            std::path::Path::new(env!("CARGO_BIN_EXE_rkube")),
            1,
            &["--node-name", "node1", "--upstream-dns", "192.168.122.1"],
        )
        .expect("rkube up");
    node.wait_dns_ready().expect("DNS add-ons ready");
    Some(Cluster { node, upstream, log, sandbox })
}

impl Cluster {
    fn k(&self) -> Kubectl {
        self.node.kubectl()
    }
    fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f() {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out after {timeout:?} waiting for {what}\n{}", self.node.logs_tail(40));
    }
    fn upstream_queries(&self, name: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("query[") && l.contains(name))
            .count()
    }
    fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["exec", "tools", "--"];
        full.extend_from_slice(args);
        self.k().run(full).stdout
    }
}

#[test]
fn pods_resolve_services_externalname_and_outside_names() {
    let Some(c) = cluster() else { return };
    let k = c.k();
    k.ok(["create", "-f", manifest("mynapp-svc.yml").to_str().unwrap()]);
    k.ok(["create", "-f", manifest("mynapp-svc-ext-extname.yml").to_str().unwrap()]);
    k.ok(["run", "tools", "--image=nicolaka/netshoot", "--", "sleep", "3600"]);
    c.wait("tools running", Duration::from_secs(60), || {
        k.ok(["get", "pod", "tools", "--no-headers"]).contains("Running")
    });
    let ip = k.ok(["get", "svc", "mynapp-svc", "-o", "jsonpath={.spec.clusterIP}"]);

    // FQDN, `name.ns` and the short name through the search path.
    for name in ["mynapp-svc.default.svc.cluster.local", "mynapp-svc.default", "mynapp-svc"] {
        let out = c.exec(&["dig", "+short", "+search", name]);
        assert_eq!(out.trim(), ip, "{name}: {out}");
    }
    let out = c.exec(&["nslookup", "mynapp-svc"]);
    assert!(out.contains(&format!("Address: {ip}")), "{out}");
    // TCP too, and the version record.
    assert_eq!(c.exec(&["dig", "+short", "+tcp", "mynapp-svc.default.svc.cluster.local"]).trim(), ip);
    assert_eq!(c.exec(&["dig", "+short", "TXT", "dns-version.cluster.local"]).trim(), "\"1.1.0\"");
    // The kube-dns Service exists where kubelet's resolv.conf expects it.
    assert_eq!(k.ok(["get", "svc", "kube-dns", "-n", "kube-system", "-o", "jsonpath={.spec.clusterIP}"]), "10.96.0.10");

    // ExternalName: a CNAME, and the target's address from upstream.
    let out = c.exec(&["nslookup", "mynapp-svc-extname-gl"]);
    assert!(out.contains("canonical name = www.google.com"), "{out}");
    assert!(out.contains("142.250.0.99"), "{out}");

    // Outside names are forwarded once, then served from the cache.
    let before = c.upstream_queries("www.google.com");
    assert_eq!(c.exec(&["dig", "+short", "www.google.com"]).trim(), "142.250.0.99");
    let after_first = c.upstream_queries("www.google.com");
    assert_eq!(c.exec(&["dig", "+short", "www.google.com"]).trim(), "142.250.0.99");
    assert_eq!(c.upstream_queries("www.google.com"), after_first, "a cache hit does not reach the upstream");
    assert!(after_first <= before + 2, "upstream asked {} times", after_first - before);

    // A new Service resolves within a second; a deleted one is NXDOMAIN within a second.
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: fresh\nspec:\n  ports:\n  - port: 80\n";
    k.ok_with_stdin(["create", "-f", "-"], svc);
    let took = c.wait("fresh resolves", Duration::from_secs(5), || {
        !c.exec(&["dig", "+short", "fresh.default.svc.cluster.local"]).trim().is_empty()
    });
    assert!(took < Duration::from_secs(1) + Duration::from_millis(500), "took {took:?} (includes kubectl exec)");
    k.ok(["delete", "svc", "fresh"]);
    let took = c.wait("fresh is NXDOMAIN", Duration::from_secs(5), || {
        c.exec(&["dig", "fresh.default.svc.cluster.local"]).contains("status: NXDOMAIN")
    });
    assert!(took < Duration::from_secs(1) + Duration::from_millis(500), "took {took:?}");
    let _ = &c.sandbox;
}

#[test]
fn headless_srv_ptr_and_pod_records_from_a_pod() {
    let Some(c) = cluster() else { return };
    let k = c.k();
    k.ok(["create", "-f", manifest("mynapp-svc.yml").to_str().unwrap()]);
    k.ok(["create", "-f", manifest("mynapp-rs.yml").to_str().unwrap()]);
    let headless = "apiVersion: v1\nkind: Service\nmetadata:\n  name: hl\nspec:\n  clusterIP: None\n  selector: {app: mynapp-rs}\n  ports:\n  - {name: http, port: 80, targetPort: 8080}\n";
    k.ok_with_stdin(["create", "-f", "-"], headless);
    let empty = "apiVersion: v1\nkind: Service\nmetadata:\n  name: hl-empty\nspec:\n  clusterIP: None\n  selector: {app: nothing}\n  ports:\n  - {name: http, port: 80}\n";
    k.ok_with_stdin(["create", "-f", "-"], empty);
    k.ok(["run", "tools", "--image=nicolaka/netshoot", "--", "sleep", "3600"]);
    c.wait("tools running", Duration::from_secs(60), || {
        k.ok(["get", "pod", "tools", "--no-headers"]).contains("Running")
    });
    c.wait("3 endpoints", Duration::from_secs(60), || {
        k.ok(["get", "endpoints", "hl", "-o", "jsonpath={.subsets[*].addresses[*].ip}"]).split_whitespace().count() == 3
    });
    let mut pod_ips: Vec<String> = k
        .ok(["get", "pods", "-l", "app=mynapp-rs", "-o", "jsonpath={.items[*].status.podIP}"])
        .split_whitespace()
        .map(String::from)
        .collect();
    pod_ips.sort();

    // Headless: one A record per ready endpoint; none ready -> NXDOMAIN.
    let mut a: Vec<String> =
        c.exec(&["dig", "+short", "hl.default.svc.cluster.local"]).lines().map(String::from).collect();
    a.sort();
    assert_eq!(a, pod_ips);
    assert!(c.exec(&["dig", "hl-empty.default.svc.cluster.local"]).contains("status: NXDOMAIN"));
    // SRV for the named port: one per endpoint.
    let srv = c.exec(&["dig", "+short", "SRV", "_http._tcp.hl.default.svc.cluster.local"]);
    assert_eq!(srv.lines().count(), 3, "{srv}");
    // Headless SRV records carry the endpoint port (the spec; CoreDNS does the same).
    assert!(srv.lines().all(|l| l.contains(" 8080 ") && l.ends_with(".hl.default.svc.cluster.local.")), "{srv}");
    // PTR of the ClusterIP.
    let ip = k.ok(["get", "svc", "mynapp-svc", "-o", "jsonpath={.spec.clusterIP}"]);
    // The pods' second nameserver, the kube-dns Service (through the proxy),
    // answers too: pods still resolve when the node-local cache is down.
    assert_eq!(c.exec(&["dig", "+short", "@10.96.0.10", "mynapp-svc.default.svc.cluster.local"]).trim(), ip);
    assert_eq!(c.exec(&["dig", "+short", "+tcp", "@10.96.0.10", "mynapp-svc.default.svc.cluster.local"]).trim(), ip);
    assert_eq!(c.exec(&["dig", "+short", "-x", &ip]).trim(), "mynapp-svc.default.svc.cluster.local.");
    // Pod records, only for pods that exist.
    let dashed = pod_ips[0].replace('.', "-");
    assert_eq!(c.exec(&["dig", "+short", &format!("{dashed}.default.pod.cluster.local")]).trim(), pod_ips[0]);
    assert!(c.exec(&["dig", "10-244-99-99.default.pod.cluster.local"]).contains("status: NXDOMAIN"));
    // Negative answers carry the SOA.
    let neg = c.exec(&["dig", "nope.default.svc.cluster.local"]);
    assert!(neg.contains("status: NXDOMAIN") && neg.contains("SOA"), "{neg}");
}

/// The DNS add-ons are workloads (issue 12 item 5): a `coredns` Deployment behind
/// `kube-dns` and a hostNetwork `nodelocaldns` DaemonSet in kube-system, whose
/// processes are rkube's DNS server and node-local cache: logs, a deleted pod
/// comes back, the cache's address answers on the node; `--disable nodelocaldns`
/// leaves the DaemonSet out and pods use the kube-dns Service alone.
#[test]
fn dns_addons_are_workloads_and_can_be_disabled() {
    let Some(c) = cluster_of(2) else { return };
    let k = c.k();
    let sys = |args: &[&str]| {
        let mut a = vec!["-n", "kube-system"];
        a.extend_from_slice(args);
        k.ok(a)
    };
    c.wait("coredns 2/2 ready", Duration::from_secs(60), || {
        sys(&["get", "deploy", "coredns", "-o", "jsonpath={.status.readyReplicas}"]) == "2"
    });
    c.wait("nodelocaldns 1/1 ready", Duration::from_secs(60), || {
        sys(&["get", "ds", "nodelocaldns", "-o", "jsonpath={.status.numberReady}/{.status.desiredNumberScheduled}"])
            == "1/1"
    });
    let ds = sys(&["get", "ds", "nodelocaldns", "-o", "jsonpath={.spec.template.spec.containers[0].args}"]);
    assert!(ds.contains(r#""-localip","169.254.20.10""#), "{ds}");
    assert_eq!(sys(&["get", "ds", "nodelocaldns", "-o", "jsonpath={.spec.template.spec.hostNetwork}"]), "true");
    // kube-dns selects the coredns pods: its endpoints are their IPs.
    let pod_ips = sys(&["get", "pods", "-l", "k8s-app=kube-dns", "-o", "jsonpath={.items[*].status.podIP}"]);
    let mut want: Vec<&str> = pod_ips.split_whitespace().collect();
    want.sort();
    c.wait("kube-dns endpoints = the coredns pods", Duration::from_secs(10), || {
        let eps = sys(&["get", "endpoints", "kube-dns", "-o", "jsonpath={.subsets[*].addresses[*].ip}"]);
        let mut got: Vec<&str> = eps.split_whitespace().collect();
        got.sort();
        got == want
    });
    // The cache pod runs in the node's network: its pod IP is the node's.
    let cache_ip = sys(&["get", "pods", "-l", "k8s-app=nodelocaldns", "-o", "jsonpath={.items[0].status.podIP}"]);
    assert_eq!(cache_ip, "192.168.122.11");
    // Their logs are the programs' own.
    let logs = sys(&["logs", "deploy/coredns"]);
    assert!(logs.contains("CoreDNS-") && logs.contains("zone cluster.local"), "{logs}");
    let logs = sys(&["logs", "ds/nodelocaldns"]);
    assert!(logs.contains("node-cache") && logs.contains("169.254.20.10"), "{logs}");
    // Both answer on the node: the cache on the link-local address, coredns behind the ClusterIP.
    let node = c.sandbox.node_netns(1);
    let dig = |server: &str| {
        c.sandbox
            .exec_ok(
                node,
                "dig",
                ["+short", "+time=2", "+tries=1", &format!("@{server}"), "kubernetes.default.svc.cluster.local"],
            )
            .unwrap_or_default()
    };
    assert_eq!(dig("169.254.20.10").trim(), "10.96.0.1");
    assert_eq!(dig("10.96.0.10").trim(), "10.96.0.1");
    let metrics = c.sandbox.exec_ok(node, "curl", ["-sf", "http://192.168.122.11:9253/metrics"]).unwrap_or_default();
    assert!(metrics.contains("node-local-dns"), "{metrics}");

    // A deleted pod comes back (its controller makes a new one), and answers.
    let old = sys(&["get", "pods", "-l", "k8s-app=nodelocaldns", "-o", "jsonpath={.items[0].metadata.name}"]);
    sys(&["delete", "pod", &old, "--wait=true"]);
    c.wait("a new nodelocaldns pod ready", Duration::from_secs(60), || {
        let now = sys(&[
            "get",
            "pods",
            "-l",
            "k8s-app=nodelocaldns",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ]);
        now.lines().any(|l| !l.starts_with(&old) && l.ends_with(" True"))
    });
    c.wait("the cache answering again", Duration::from_secs(10), || dig("169.254.20.10").trim() == "10.96.0.1");
    let old = sys(&["get", "pods", "-l", "k8s-app=kube-dns", "-o", "jsonpath={.items[0].metadata.name}"]);
    sys(&["delete", "pod", &old, "--wait=true"]);
    c.wait("coredns 2/2 ready again", Duration::from_secs(60), || {
        sys(&["get", "deploy", "coredns", "-o", "jsonpath={.status.readyReplicas}"]) == "2"
            && !sys(&["get", "pods", "-l", "k8s-app=kube-dns", "-o", "jsonpath={.items[*].metadata.name}"])
                .contains(&old)
    });

    // Without the cache: no DaemonSet, and pods use the kube-dns Service alone.
    let plain = c
        .sandbox
        .start_rkube(
            std::path::Path::new(env!("CARGO_BIN_EXE_rkube")),
            2,
            &["--node-name", "solo", "--upstream-dns", "192.168.122.1", "--disable", "nodelocaldns"],
        )
        .expect("rkube up --disable nodelocaldns");
    let k2 = plain.kubectl();
    assert!(k2.run(["-n", "kube-system", "get", "ds", "nodelocaldns"]).stderr.contains("NotFound"));
    k2.ok(["run", "tools", "--image=nicolaka/netshoot", "--", "sleep", "3600"]);
    c.wait("tools running on the second cluster", Duration::from_secs(60), || {
        k2.ok(["get", "pod", "tools", "--no-headers"]).contains("Running")
    });
    let resolv = k2.ok(["exec", "tools", "--", "cat", "/etc/resolv.conf"]);
    let servers: Vec<&str> = resolv.lines().filter(|l| l.starts_with("nameserver")).collect();
    assert_eq!(servers, ["nameserver 10.96.0.10"], "{resolv}");
    c.wait("DNS through kube-dns alone", Duration::from_secs(30), || {
        k2.run(["exec", "tools", "--", "dig", "+short", "+search", "kubernetes.default"]).stdout.trim() == "10.96.0.1"
    });
}
