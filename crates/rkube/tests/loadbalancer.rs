//! LoadBalancer address allocation with the real kubectl (issue 10): `--lb-pool`,
//! MetalLB's `IPAddressPool` / `L2Advertisement` kinds, requested addresses, pool
//! exhaustion with `AllocationFailed` events, freeing, sharing, pools added at run
//! time, bad input, and no address handed out twice across a restart. One
//! `rkube server` (API server + controllers, no node) runs every check; the data
//! plane and ARP announcement are checked in the sandbox tests (`lesson.rs`).

use std::time::{Duration, Instant};
use testkit::{manifest, Kubectl, TestServer};

const POOL: &str = "192.168.122.200-192.168.122.202";

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<String>) -> String {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ingress(k: &Kubectl, name: &str) -> String {
    let out = k.run(["get", "svc", name, "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"]);
    out.stdout.trim().to_string()
}

fn wait_ingress(k: &Kubectl, name: &str) -> String {
    wait_for(&format!("an ingress address on {name}"), Duration::from_secs(20), || {
        Some(ingress(k, name)).filter(|s| !s.is_empty())
    })
}

/// Waits for a Warning event `reason` on Service `name` and returns its message.
fn wait_event(k: &Kubectl, name: &str, reason: &str, containing: &str) -> String {
    wait_for(&format!("event {reason} on {name} containing {containing:?}"), Duration::from_secs(20), || {
        let sel = format!("involvedObject.name={name},reason={reason}");
        let out = k.run([
            "get",
            "events",
            "--field-selector",
            &sel,
            "-o",
            "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
        ]);
        out.stdout.lines().find(|l| l.contains(containing)).map(str::to_string)
    })
}

fn lb_service(name: &str, port: u16, extra_meta: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n{extra_meta}spec:\n  type: LoadBalancer\n{extra_spec}  selector:\n    app: mynapp-rs\n  ports:\n  - port: {port}\n    targetPort: 8080\n"
    )
}

#[test]
fn pools_allocate_release_share_and_survive_a_restart() {
    let mut s = TestServer::start_with_args(env!("CARGO_BIN_EXE_rkube"), &["--lb-pool", POOL]).expect("rkube server");
    let k = s.kubectl();

    // The flag's pool is an IPAddressPool like any other, printed as MetalLB's CRD does.
    let pools = k.ok(["get", "ipaddresspools", "-A"]);
    let mut lines = pools.lines();
    let header: Vec<&str> =
        lines.next().unwrap_or_default().split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["NAMESPACE", "NAME", "AUTO ASSIGN", "AVOID BUGGY IPS", "ADDRESSES"], "{pools}");
    let row: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(row, ["kube-system", "rkube-lb-pool", "true", "false", &format!("[\"{POOL}\"]")], "{pools}");

    // The lesson's Service gets the first address; its row looks like upstream's.
    k.ok(["create", "-f", manifest("mynapp-svc-ext-loadbalancer.yml").to_str().unwrap()]);
    assert_eq!(wait_ingress(&k, "mynapp-svc-ext-lb"), "192.168.122.200");
    let row = k.ok(["get", "svc", "mynapp-svc-ext-lb", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "LoadBalancer", "{row}");
    assert!(cols[2].starts_with("10."), "{row}");
    assert_eq!(cols[3], "192.168.122.200", "{row}");
    assert!(cols[4].starts_with("80:3") && cols[4].ends_with("/TCP"), "{row}");
    assert_eq!(
        k.ok(["get", "svc", "mynapp-svc-ext-lb", "-o", "jsonpath={.status.loadBalancer.ingress[0].ipMode} {.metadata.annotations.metallb\\.io/ip-allocated-from-pool}"]),
        "VIP rkube-lb-pool"
    );
    wait_event(&k, "mynapp-svc-ext-lb", "IPAllocated", "Assigned IP [\"192.168.122.200\"]");

    // A requested address is honoured (spec.loadBalancerIP and MetalLB's annotation).
    k.ok_with_stdin(["create", "-f", "-"], &lb_service("wants-202", 80, "", "  loadBalancerIP: 192.168.122.202\n"));
    assert_eq!(wait_ingress(&k, "wants-202"), "192.168.122.202");
    // Taken, and outside every pool: pending with the reason.
    k.ok_with_stdin(
        ["create", "-f", "-"],
        &lb_service("wants-taken", 80, "  annotations:\n    metallb.io/loadBalancerIPs: 192.168.122.202\n", ""),
    );
    wait_event(&k, "wants-taken", "AllocationFailed", "192.168.122.202 is already in use by Service default/wants-202");
    k.ok_with_stdin(["create", "-f", "-"], &lb_service("wants-outside", 80, "", "  loadBalancerIP: 192.168.50.1\n"));
    wait_event(&k, "wants-outside", "AllocationFailed", "192.168.50.1 is not in any IPAddressPool");
    assert_eq!(ingress(&k, "wants-taken"), "");

    // The last address, then an exhausted pool.
    k.ok_with_stdin(["create", "-f", "-"], &lb_service("third", 80, "", ""));
    assert_eq!(wait_ingress(&k, "third"), "192.168.122.201");
    k.ok_with_stdin(["create", "-f", "-"], &lb_service("fourth", 80, "", ""));
    let msg = wait_event(&k, "fourth", "AllocationFailed", "no available IPs");
    assert_eq!(msg, "Failed to allocate IP for \"default/fourth\": no available IPs in pool(s) rkube-lb-pool");
    let row = k.ok(["get", "svc", "fourth", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(3), Some("<pending>"), "{row}");
    let described = k.ok(["describe", "svc", "fourth"]);
    assert!(described.contains("AllocationFailed"), "{described}");

    // Deleting a Service frees its address for a pending one.
    k.ok(["delete", "svc", "third"]);
    assert_eq!(wait_ingress(&k, "fourth"), "192.168.122.201");

    // Sharing: same key, other ports.
    k.ok(["delete", "svc", "wants-taken", "wants-outside"]);
    let shared = "  annotations:\n    metallb.io/allow-shared-ip: web\n";
    k.ok(["annotate", "svc", "wants-202", "metallb.io/allow-shared-ip=web"]);
    k.ok_with_stdin(
        ["create", "-f", "-"],
        &lb_service("shares-443", 443, shared, "  loadBalancerIP: 192.168.122.202\n"),
    );
    assert_eq!(wait_ingress(&k, "shares-443"), "192.168.122.202");
    k.ok_with_stdin(["create", "-f", "-"], &lb_service("shares-80", 80, shared, "  loadBalancerIP: 192.168.122.202\n"));
    wait_event(&k, "shares-80", "AllocationFailed", "port 80/TCP is already in use on 192.168.122.202");
    k.ok(["delete", "svc", "shares-80"]);

    // A pool added at run time, chosen by annotation; MetalLB's own manifests apply.
    k.ok(["create", "namespace", "metallb-system"]);
    let pool = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: extra\n  namespace: metallb-system\nspec:\n  addresses:\n  - 192.168.122.240/30\n  autoAssign: false\n  avoidBuggyIPs: true\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: extra\n  namespace: metallb-system\nspec:\n  ipAddressPools:\n  - extra\n";
    k.ok_with_stdin(["apply", "-f", "-"], pool);
    let ads = k.ok(["get", "l2advertisements", "-n", "metallb-system"]);
    assert!(ads.lines().next().is_some_and(|h| h.contains("IPADDRESSPOOLS") && h.contains("INTERFACES")), "{ads}");
    assert!(ads.contains("[\"extra\"]"), "{ads}");
    k.ok_with_stdin(
        ["create", "-f", "-"],
        &lb_service("from-extra", 80, "  annotations:\n    metallb.io/address-pool: extra\n", ""),
    );
    assert_eq!(wait_ingress(&k, "from-extra"), "192.168.122.240");
    // autoAssign: false: a Service without a pool annotation is not given its addresses.
    k.ok_with_stdin(["create", "-f", "-"], &lb_service("fifth", 80, "", ""));
    wait_event(&k, "fifth", "AllocationFailed", "no available IPs");
    // Switching autoAssign on re-evaluates pending Services ("extra" sorts first).
    k.ok([
        "patch",
        "ipaddresspool",
        "extra",
        "-n",
        "metallb-system",
        "--type=merge",
        "-p",
        "{\"spec\":{\"autoAssign\":true}}",
    ]);
    assert_eq!(wait_ingress(&k, "fifth"), "192.168.122.241");

    // Bad pools are refused whole, with the field.
    let bad = |addr: &str| {
        format!("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: bad\n  namespace: metallb-system\nspec:\n  addresses:\n  - {addr}\n")
    };
    let out = k.run_with_stdin(["apply", "-f", "-"], &bad("10.96.0.100-10.96.0.120"));
    assert!(
        out.stderr.contains(
            "spec.addresses[0]: Invalid value: \"10.96.0.100-10.96.0.120\": overlaps the service CIDR 10.96.0.0/12"
        ),
        "{}",
        out.stderr
    );
    let out = k.run_with_stdin(["apply", "-f", "-"], &bad("192.168.122.9-192.168.122.1"));
    assert!(out.stderr.contains("start IP 192.168.122.9 is after the end IP 192.168.122.1"), "{}", out.stderr);
    let out = k.run_with_stdin(["apply", "-f", "-"], &bad("10.244.1.0/24"));
    assert!(out.stderr.contains("overlaps the pod CIDR 10.244.0.0/16"), "{}", out.stderr);
    assert!(!k.ok(["get", "ipaddresspools", "-A"]).contains("bad"));

    // A type change releases the address and clears the status.
    k.ok(["patch", "svc", "fourth", "--type=merge", "-p", "{\"spec\":{\"type\":\"ClusterIP\"}}"]);
    wait_for("fourth's ingress cleared", Duration::from_secs(20), || {
        ingress(&k, "fourth").is_empty().then(String::new)
    });
    let from_flag_pool = "  annotations:\n    metallb.io/address-pool: rkube-lb-pool\n";
    k.ok_with_stdin(["create", "-f", "-"], &lb_service("sixth", 80, from_flag_pool, ""));
    assert_eq!(wait_ingress(&k, "sixth"), "192.168.122.201");

    // Across a restart every Service keeps its address and none is handed out twice.
    let before: Vec<(String, String)> =
        ["mynapp-svc-ext-lb", "wants-202", "shares-443", "from-extra", "fifth", "sixth"]
            .iter()
            .map(|n| (n.to_string(), ingress(&k, n)))
            .collect();
    s.restart().expect("restart");
    let k = s.kubectl();
    k.ok_with_stdin(["create", "-f", "-"], &lb_service("after-restart", 80, "", "  loadBalancerIP: 192.168.122.200\n"));
    wait_event(
        &k,
        "after-restart",
        "AllocationFailed",
        "192.168.122.200 is already in use by Service default/mynapp-svc-ext-lb",
    );
    for (name, ip) in &before {
        assert_eq!(&ingress(&k, name), ip, "{name} kept its address");
    }
    // Deleting the pool takes its addresses away: those Services become pending.
    k.ok(["delete", "ipaddresspool", "extra", "-n", "metallb-system"]);
    wait_for("from-extra pending", Duration::from_secs(20), || ingress(&k, "from-extra").is_empty().then(String::new));
}

#[test]
fn bad_pool_flags_refuse_to_start() {
    let bin = env!("CARGO_BIN_EXE_rkube");
    for (flag, expect) in [
        ("10.96.0.100-10.96.0.120", "--lb-pool 10.96.0.100-10.96.0.120: overlaps the service CIDR 10.96.0.0/12"),
        ("10.244.0.0/24", "overlaps the pod CIDR (--cluster-cidr) 10.244.0.0/16"),
        ("192.168.1.9-192.168.1.1", "start IP 192.168.1.9 is after the end IP 192.168.1.1"),
        ("pool", "--lb-pool pool: invalid CIDR \"pool\""),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new(bin)
            .args(["server", "--data-dir"])
            .arg(dir.path())
            .args(["--port", "0", "--lb-pool", flag])
            .output()
            .expect("run rkube");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag}: started");
        assert!(stderr.contains(expect), "{flag}: {stderr}");
        assert!(!dir.path().join("state.db").exists(), "{flag}: nothing written");
    }
}

fn node(name: &str, internal: &str, external: Option<&str>) -> (String, String) {
    let obj = format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n");
    let mut addresses = vec![format!("{{\"type\":\"InternalIP\",\"address\":\"{internal}\"}}")];
    addresses.extend(external.map(|e| format!("{{\"type\":\"ExternalIP\",\"address\":\"{e}\"}}")));
    let status = format!(
        "{{\"status\":{{\"conditions\":[{{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"KubeletReady\"}}],\"addresses\":[{}]}}}}",
        addresses.join(",")
    );
    (obj, status)
}

/// Without any pool: k3s ServiceLB behaviour, the addresses of the Nodes that can serve.
#[test]
fn without_pools_node_addresses_are_the_ingress() {
    let s = TestServer::start(env!("CARGO_BIN_EXE_rkube")).expect("rkube server");
    let k = s.kubectl();
    for (name, internal, external) in [("n1", "192.168.122.11", None), ("n2", "192.168.122.12", Some("192.168.123.12"))]
    {
        let (obj, status) = node(name, internal, external);
        k.ok_with_stdin(["create", "-f", "-"], &obj);
        k.ok(["patch", "node", name, "--subresource=status", "--type=merge", "-p", &status]);
    }
    k.ok(["create", "-f", manifest("mynapp-svc-ext-loadbalancer.yml").to_str().unwrap()]);
    // ExternalIP before InternalIP, sorted.
    let want = "192.168.122.11 192.168.123.12";
    wait_for("node addresses", Duration::from_secs(20), || {
        (ingress(&k, "mynapp-svc-ext-lb") == want).then(String::new)
    });
    let row = k.ok(["get", "svc", "mynapp-svc-ext-lb", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(3), Some("192.168.122.11,192.168.123.12"), "{row}");

    // Port 80 is taken on the node addresses: a second Service on it stays pending.
    k.ok_with_stdin(["create", "-f", "-"], &lb_service("second", 80, "", ""));
    wait_event(
        &k,
        "second",
        "AllocationFailed",
        "port 80/TCP is already used by LoadBalancer Service default/mynapp-svc-ext-lb",
    );
    k.ok_with_stdin(["create", "-f", "-"], &lb_service("other-port", 8081, "", ""));
    assert_eq!(wait_ingress(&k, "other-port"), want);

    // A Node that cannot serve drops out.
    k.ok(["label", "node", "n2", "node.kubernetes.io/exclude-from-external-load-balancers="]);
    wait_for("n2 excluded", Duration::from_secs(20), || {
        (ingress(&k, "mynapp-svc-ext-lb") == "192.168.122.11").then(String::new)
    });
    k.ok(["label", "node", "n2", "node.kubernetes.io/exclude-from-external-load-balancers-"]);
    let not_ready =
        "{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":\"KubeletNotReady\"}]}}";
    k.ok(["patch", "node", "n1", "--subresource=status", "--type=merge", "-p", not_ready]);
    wait_for("n1 not ready", Duration::from_secs(20), || {
        (ingress(&k, "mynapp-svc-ext-lb") == "192.168.123.12").then(String::new)
    });

    // externalTrafficPolicy: Local: only Nodes with a ready local endpoint.
    k.ok_with_stdin(["create", "-f", "-"], &lb_service("local", 9000, "", "  externalTrafficPolicy: Local\n"));
    // Allocated before validation, as upstream does.
    let hc: u16 =
        k.ok(["get", "svc", "local", "-o", "jsonpath={.spec.healthCheckNodePort}"]).trim().parse().expect("port");
    assert!((30000..=32767).contains(&hc), "healthCheckNodePort {hc}");
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: local-manual\n  labels:\n    kubernetes.io/service-name: local\naddressType: IPv4\nports:\n- port: 8080\n  protocol: TCP\n  name: \"\"\nendpoints:\n- addresses: [\"10.244.1.5\"]\n  nodeName: n2\n  conditions:\n    ready: true\n";
    k.ok_with_stdin(["create", "-f", "-"], slice);
    wait_for("local ingress", Duration::from_secs(20), || (ingress(&k, "local") == "192.168.123.12").then(String::new));

    // The first pool switches every LoadBalancer Service to pool addresses.
    let pool = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: lan\n  namespace: default\nspec:\n  addresses:\n  - 192.168.122.200-192.168.122.210\n";
    k.ok_with_stdin(["create", "-f", "-"], pool);
    wait_for("pool address", Duration::from_secs(20), || {
        ingress(&k, "mynapp-svc-ext-lb").starts_with("192.168.122.20").then(String::new)
    });
    assert!(ingress(&k, "second").starts_with("192.168.122.20"), "the pending one is served too");
}
