//! The pod network across nodes (issue 12): on a sandbox cluster of a server
//! and two joined agents, every node has the flannel-compatible VXLAN device
//! (`rkube.1`, VNI 1, UDP 8472, MTU 50 below the LAN's) published in flannel's
//! Node annotations, and routes, neighbour and FDB entries for every other
//! node. Pods reach pods on other nodes directly and through ClusterIPs with
//! their own source address, large transfers cross, NodePorts answer on every
//! node and LoadBalancer addresses from the LAN whichever node the endpoint is
//! on, `externalTrafficPolicy: Local` keeps the client's address, traffic
//! leaving the cluster is masqueraded to the node's address, DNS works from a
//! joined node, an agent restart changes nothing, and a node that leaves is
//! removed from the others. One cluster for the whole file. Needs root.

#[path = "support/lb_cluster.rs"]
mod lb_cluster;

use lb_cluster::LbCluster;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

fn echo_pod(n: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: echo-node{n}\n  labels:\n    app: echo\n    node: node{n}\nspec:\n  nodeName: node{n}\n  containers:\n  - name: netexec\n    image: registry.k8s.io/e2e-test-images/agnhost:2.52\n    args: [\"netexec\", \"--http-port=8080\"]\n"
    )
}

const SERVICES: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: echo3\nspec:\n  type: NodePort\n  selector: {node: node3}\n  ports:\n  - {port: 80, targetPort: 8080, nodePort: 31113}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: echo3-local\nspec:\n  type: NodePort\n  externalTrafficPolicy: Local\n  selector: {node: node3}\n  ports:\n  - {port: 80, targetPort: 8080, nodePort: 31114}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: echo3-lb\nspec:\n  type: LoadBalancer\n  selector: {node: node3}\n  ports:\n  - {port: 80, targetPort: 8080}\n";

#[test]
fn pods_reach_pods_services_and_the_outside_across_nodes() {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return;
    }
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rkube"));
    let mut c = LbCluster::start(bin);
    let k = c.k();
    let sb = &c.sandbox;
    let cidr = |n: usize| k.ok(["get", "node", &format!("node{n}"), "-o", "jsonpath={.spec.podCIDR}"]);
    let annotation = |n: usize, key: &str| {
        let path = format!("jsonpath={{.metadata.annotations.flannel\\.alpha\\.coreos\\.com/{key}}}");
        k.ok(["get", "node", &format!("node{n}"), "-o", &path])
    };
    let cidrs: Vec<String> = (1..=3).map(cidr).collect();
    let gateway = |n: usize| cidrs[n - 1].trim_end_matches("/24").to_string();

    // Every node: the device as flannel makes it, and published as flannel does.
    let mut macs = Vec::new();
    for n in 1..=3 {
        let link = in_node(&c, n, "ip", &["-d", "-o", "link", "show", "dev", "rkube.1"]);
        for want in
            ["mtu 1450 ", "vxlan id 1 ", &format!("local {} dev eth0 ", sb.node_ip(n)), "dstport 8472 ", "nolearning"]
        {
            assert!(link.contains(want), "node{n}: {want:?} in {link}");
        }
        let mac = in_node(&c, n, "cat", &["/sys/class/net/rkube.1/address"]).trim().to_string();
        assert_eq!(annotation(n, "backend-type"), "vxlan");
        assert_eq!(annotation(n, "public-ip"), sb.node_ip(n).to_string());
        assert_eq!(annotation(n, "backend-data"), format!("{{\"VNI\":1,\"VtepMAC\":\"{mac}\"}}"));
        let addr = in_node(&c, n, "ip", &["-o", "-4", "addr", "show", "dev", "rkube.1"]);
        assert!(addr.contains(&format!("inet {}/32 ", gateway(n))), "node{n}: {addr}");
        macs.push(mac);
    }
    // ... and an entry set for each other node, none for itself.
    for n in 1..=3 {
        let (routes, neigh, fdb) = entries(&c, n);
        for m in (1..=3).filter(|m| *m != n) {
            assert!(routes.contains(&format!("{} via {} onlink", cidrs[m - 1], gateway(m))), "node{n}: {routes}");
            assert!(neigh.contains(&format!("{} lladdr {} PERMANENT", gateway(m), macs[m - 1])), "node{n}: {neigh}");
            assert!(fdb.contains(&format!("{} dst {} self permanent", macs[m - 1], sb.node_ip(m))), "node{n}: {fdb}");
        }
        assert!(!routes.contains(&cidrs[n - 1]), "node{n} has no overlay route to itself: {routes}");
    }

    for n in 1..=3 {
        k.ok_with_stdin(["create", "-f", "-"], &echo_pod(n));
    }
    k.ok_with_stdin(["create", "-f", "-"], SERVICES);
    c.wait("3 echo pods ready", Duration::from_secs(90), || {
        k.ok([
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=echo3",
            "-o",
            "jsonpath={.items[*].endpoints[*].addresses[*]}",
        ])
        .split_whitespace()
        .count()
            == 1
            && k.ok(["get", "pods", "-l", "app=echo", "-o", "jsonpath={.items[*].status.podIP}"])
                .split_whitespace()
                .count()
                == 3
    });
    let pod_ip = |n: usize| k.ok(["get", "pod", &format!("echo-node{n}"), "-o", "jsonpath={.status.podIP}"]);
    let ips: Vec<String> = (1..=3).map(pod_ip).collect();
    let exec = |n: usize, script: &str| k.ok(["exec", &format!("echo-node{n}"), "--", "sh", "-c", script]);
    let curl = |url: &str| format!("curl -s --max-time 5 {url}");

    eprintln!("pod IPs {ips:?}, CIDRs {cidrs:?}, MACs {macs:?}");
    // Pods get the pod network's MTU.
    let eth0 = exec(2, "ip -o link show dev eth0");
    assert!(eth0.contains(" mtu 1450 "), "{eth0}");

    // Pod to pod across nodes, with the pod's own address as the source.
    for (from, to) in [(1, 3), (3, 2), (2, 1)] {
        let seen = exec(from, &curl(&format!("http://{}:8080/clientip", ips[to - 1])));
        assert!(seen.starts_with(&format!("{}:", ips[from - 1])), "echo-node{from} -> echo-node{to}: {seen}");
    }
    // Pod to a ClusterIP whose only endpoint is on another node.
    let cluster_ip = k.ok(["get", "svc", "echo3", "-o", "jsonpath={.spec.clusterIP}"]);
    let seen = exec(1, &curl(&format!("http://{cluster_ip}/clientip")));
    assert!(seen.starts_with(&format!("{}:", ips[0])), "through the ClusterIP: {seen}");
    // The node itself reaches remote pods from its device's address.
    let seen = in_node(&c, 1, "curl", &["-s", "--max-time", "5", &format!("http://{}:8080/clientip", ips[1])]);
    assert!(seen.starts_with(&format!("{}:", gateway(1))), "node1 -> echo-node2: {seen}");
    // A large transfer across the overlay, 4 MB each way.
    let echoed = exec(
        1,
        &format!(
            "(printf msg=; head -c 4000000 /dev/zero | tr '\\0' a) | curl -s --max-time 30 --data-binary @- http://{}:8080/echo | wc -c",
            ips[2]
        ),
    );
    assert_eq!(echoed.trim(), "4000000");

    // From the LAN: the NodePort on every node, the endpoint on node3 only.
    let client = |url: &str| sb.exec_ok(sb.client_netns(), "curl", ["-s", "--max-time", "5", url]).unwrap_or_default();
    for n in 1..=3 {
        assert_eq!(client(&format!("http://{}:31113/hostname", sb.node_ip(n))), "echo-node3", "NodePort on node{n}");
    }
    let seen = client(&format!("http://{}:31114/clientip", sb.node_ip(3)));
    assert!(seen.starts_with("192.168.122.100:"), "Local policy keeps the client's address: {seen}");
    c.wait("echo3-lb's address", Duration::from_secs(30), || c.ingress("echo3-lb").is_some());
    let lb = c.ingress("echo3-lb").expect("ingress");
    assert_eq!(client(&format!("http://{lb}/hostname")), "echo-node3", "LoadBalancer {lb}");

    // Leaving the cluster network: masqueraded to the node's address.
    let listener = sb.tcp_listener(sb.client_netns(), SocketAddr::from((sb.client_ip(), 9000))).expect("listen");
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        peer
    });
    assert_eq!(exec(2, &curl(&format!("http://{}:9000/", sb.client_ip()))), "hello");
    let peer = server.join().expect("server");
    assert_eq!(peer.ip(), std::net::IpAddr::V4(sb.node_ip(2)), "pod egress is masqueraded");

    // DNS from a pod on a joined node (its node-local cache).
    assert_eq!(exec(3, "dig +short +time=2 kubernetes.default.svc.cluster.local").trim(), "10.96.0.1");
    assert_eq!(exec(3, "dig +short +time=2 echo3.default.svc.cluster.local").trim(), cluster_ip);

    // An agent restart keeps its device and MAC: the entries never change,
    // and traffic flows while it is down.
    let before = entries(&c, 1);
    c.kill_agent(2);
    let seen = exec(1, &curl(&format!("http://{}:8080/clientip", ips[1])));
    assert!(seen.starts_with(&format!("{}:", ips[0])), "with node2's agent down: {seen}");
    c.restore(2);
    assert_eq!(in_node(&c, 2, "cat", &["/sys/class/net/rkube.1/address"]).trim(), macs[1]);
    assert_eq!(annotation(2, "backend-data"), format!("{{\"VNI\":1,\"VtepMAC\":\"{}\"}}", macs[1]));
    assert_eq!(entries(&c, 1), before);

    // A node that leaves the cluster leaves every other node's entries.
    c.lose(3);
    k.ok(["delete", "node", "node3"]);
    for n in [1, 2] {
        c.wait(&format!("node3's entries gone from node{n}"), Duration::from_secs(10), || {
            let (routes, neigh, fdb) = entries(&c, n);
            !routes.contains(&cidrs[2]) && !neigh.contains(&macs[2]) && !fdb.contains(&macs[2])
        });
        let (routes, _, _) = entries(&c, n);
        let other = if n == 1 { 2 } else { 1 };
        assert!(routes.contains(&cidrs[other - 1]), "node{n} keeps node{other}: {routes}");
    }
}

fn in_node(c: &LbCluster, n: usize, cmd: &str, args: &[&str]) -> String {
    c.sandbox.exec_ok(c.sandbox.node_netns(n), cmd, args).expect(cmd)
}

/// Node `n`'s overlay routes, neighbours and FDB entries, as iproute2 prints them.
fn entries(c: &LbCluster, n: usize) -> (String, String, String) {
    (
        in_node(c, n, "ip", &["route", "show", "dev", "rkube.1"]),
        in_node(c, n, "ip", &["neigh", "show", "dev", "rkube.1"]),
        in_node(c, n, "bridge", &["fdb", "show", "dev", "rkube.1"]),
    )
}
