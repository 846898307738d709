//! LoadBalancer failover across nodes (issue 10): in a 3-node sandbox the address of a
//! Local-policy LoadBalancer Service is announced by exactly one of the two nodes with
//! an endpoint (its Lease names it, the client's ARP entry has its MAC); when that
//! node is lost (agent killed, LAN link down) the other takes the address over and the
//! client is answered again within a few seconds without touching its ARP cache; the
//! address then stays where it is when the old node returns (sticky). A frozen agent
//! (SIGSTOP) loses it the same way and stays quiet once thawed; a node set NotReady
//! (agent alive) hands it over too. Needs root.
//! The 20-failover measurement is `cargo bench -p rkube --bench lb_failover`.

#[path = "support/lb_cluster.rs"]
mod lb_cluster;

use lb_cluster::LbCluster;
use std::time::Duration;

#[test]
fn the_address_moves_when_its_node_is_lost() {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return;
    }
    let mut c = LbCluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_rkube")));
    let k = c.k();
    c.wait("an ingress address", Duration::from_secs(30), || c.ingress("web").is_some());
    let ip = c.ingress("web").expect("ingress");
    c.wait("the address answering", Duration::from_secs(30), || c.holder(ip).is_some());
    let first = c.holder(ip).expect("holder");
    // Exactly one node answers: every answer comes from the same pod.
    for _ in 0..20 {
        assert_eq!(c.holder(ip), Some(first), "one announcer");
    }
    let lease_name = format!("rkube-lb-{}", ip.to_string().replace('.', "-"));
    let holder = k.ok(["get", "lease", "-n", "kube-system", &lease_name, "-o", "jsonpath={.spec.holderIdentity}"]);
    assert_eq!(holder, format!("node{first}"));
    let neigh = c.sandbox.exec_ok(c.sandbox.client_netns(), "ip", ["neigh", "show", &ip.to_string()]).expect("neigh");
    assert!(neigh.contains(&c.mac(first)), "client's ARP entry is node{first}'s MAC: {neigh}");

    // Lose the announcer: the other node takes over.
    let (old, gap) = c.failover(ip);
    assert_eq!(old, first);
    let second = 5 - first;
    eprintln!("failover node{old} -> node{second}: {gap:?}");
    assert!(gap < Duration::from_secs(3), "failover took {gap:?}");
    assert_eq!(c.holder(ip), Some(second));
    let neigh = c.sandbox.exec_ok(c.sandbox.client_netns(), "ip", ["neigh", "show", &ip.to_string()]).expect("neigh");
    assert!(neigh.contains(&c.mac(second)), "gratuitous ARP moved the client's entry: {neigh}");
    let holder = k.ok(["get", "lease", "-n", "kube-system", &lease_name, "-o", "jsonpath={.spec.holderIdentity}"]);
    assert_eq!(holder, format!("node{second}"));

    // The Service's events say who announces (MetalLB's nodeAssigned).
    c.wait("a nodeAssigned event for the new holder", Duration::from_secs(10), || {
        k.ok([
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web,reason=nodeAssigned",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .contains(&format!("announcing from node \"node{second}\" with protocol \"layer2\""))
    });

    // The old node returns: the address stays (no second interruption).
    c.restore(old);
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..10 {
        assert_eq!(c.holder(ip), Some(second), "sticky");
    }
    // And back again when the new holder is lost.
    let (old2, gap2) = c.failover(ip);
    eprintln!("failover node{old2} -> node{old}: {gap2:?}");
    assert_eq!(old2, second);
    assert!(gap2 < Duration::from_secs(3), "failover took {gap2:?}");
    assert_eq!(c.holder(ip), Some(old));

    // A frozen agent (SIGSTOP: link, kernel rules and pod still there) loses the
    // address as a dead one does, and once it runs again it does not answer for it:
    // it was fenced, and the Lease names the other node.
    c.restore(second);
    let (frozen, gap3) = c.takeover(ip, |c, n| c.signal(n, "STOP"));
    eprintln!("failover from frozen node{frozen}: {gap3:?}");
    assert_eq!(frozen, old);
    assert!(gap3 < Duration::from_secs(3), "failover took {gap3:?}");
    c.signal(frozen, "CONT");
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..30 {
        assert_eq!(c.holder(ip), Some(second), "the thawed node stays quiet");
        std::thread::sleep(Duration::from_millis(20));
    }
    let holder = k.ok(["get", "lease", "-n", "kube-system", &lease_name, "-o", "jsonpath={.spec.holderIdentity}"]);
    assert_eq!(holder, format!("node{second}"));

    // A NotReady node (its agent alive) stops announcing; the other node takes over.
    let (not_ready, gap4) = c.takeover(ip, |c, n| c.set_ready(n, "False"));
    eprintln!("failover from NotReady node{not_ready}: {gap4:?}");
    assert_eq!(not_ready, second);
    assert!(gap4 < Duration::from_secs(3), "failover took {gap4:?}");
    assert_eq!(c.holder(ip), Some(old));
    c.wait("the Lease naming the Ready node", Duration::from_secs(10), || {
        k.ok(["get", "lease", "-n", "kube-system", &lease_name, "-o", "jsonpath={.spec.holderIdentity}"])
            == format!("node{old}")
    });
}
