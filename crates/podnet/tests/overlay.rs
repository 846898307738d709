//! The overlay between two sandbox nodes, without an API server: each sets up
//! its device, [`PodNet::sync`] installs the other's entries, and traffic
//! crosses the tunnel; a second setup adopts the device, a deleted device is
//! recreated, a peer that left is removed while foreign entries stay. Needs
//! root (the testkit sandbox).

use podnet::{PodNet, PodNetConfig, PodNetError, DEVICE};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use testkit::Sandbox;

fn config(sb: &Sandbox, n: usize) -> PodNetConfig {
    PodNetConfig {
        node_name: format!("node{n}"),
        node_ip: sb.node_ip(n),
        pod_cidr: format!("10.244.{n}.0/24").parse().expect("cidr"),
        cluster_cidr: "10.244.0.0/16".parse().expect("cidr"),
        iface: None,
    }
}

/// Runs `f` to completion on a runtime inside node `n`'s namespace (the
/// commands it spawns inherit the namespace).
fn on_node<T: Send, F: std::future::Future<Output = T>>(sb: &Sandbox, n: usize, f: impl FnOnce() -> F + Send) -> T {
    sb.in_netns(sb.node_netns(n), || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f())
    })
    .expect("enter the node's namespace")
}

/// A request from node 1's namespace to node 2's device address, answered
/// there; the source address node 2 saw.
fn cross(sb: &Sandbox) -> SocketAddr {
    let listener = sb.tcp_listener(sb.node_netns(2), SocketAddr::from(([10, 244, 2, 0], 7000))).expect("listen");
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        let mut got = vec![0u8; 2_000_000];
        s.read_exact(&mut got).expect("read");
        s.write_all(b"done").expect("write");
        peer
    });
    let mut s = sb
        .tcp_connect(sb.node_netns(1), SocketAddr::from(([10, 244, 2, 0], 7000)), Duration::from_secs(5))
        .expect("connect across the overlay");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    // 2 MB: far more than one MTU, so the device's MTU must be right.
    s.write_all(&vec![7u8; 2_000_000]).expect("write");
    let mut done = [0u8; 4];
    s.read_exact(&mut done).expect("answer");
    assert_eq!(&done, b"done");
    server.join().expect("server")
}

#[test]
fn two_nodes_tunnel_pod_traffic_and_keep_their_entries_in_step() {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return;
    }
    let sb = Sandbox::new(2).expect("sandbox");
    let (c1, c2) = (config(&sb, 1), config(&sb, 2));
    let n1 = on_node(&sb, 1, || PodNet::setup(c1.clone(), None)).expect("setup node1");
    let n2 = on_node(&sb, 2, || PodNet::setup(c2.clone(), None)).expect("setup node2");
    assert_eq!((n1.mtu(), n2.mtu()), (1450, 1450), "50 below the LAN's 1500");
    assert_ne!(n1.mac(), n2.mac());
    let both = vec![n1.as_peer(), n2.as_peer()];
    let (p1, p2) = (both.clone(), both.clone());
    assert_eq!(on_node(&sb, 1, || async { n1.sync(&p1).await }).expect("sync"), 3, "neighbour, FDB, route");
    assert_eq!(on_node(&sb, 2, || async { n2.sync(&p2).await }).expect("sync"), 3);
    let p1 = both.clone();
    assert_eq!(on_node(&sb, 1, || async { n1.sync(&p1).await }).expect("sync"), 0, "in step: nothing to do");

    let peer = cross(&sb);
    assert_eq!(peer.ip(), std::net::IpAddr::V4(Ipv4Addr::new(10, 244, 1, 0)), "from node1's device address");
    let nft = sb.exec_ok(sb.node_netns(1), "nft", ["list", "table", "ip", "rkube-podnet"]).expect("nft");
    assert!(nft.contains("ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random"), "{nft}");

    // A restart adopts the device, MAC and all (no stored MAC given).
    let again = on_node(&sb, 1, || PodNet::setup(c1.clone(), None)).expect("setup again");
    assert_eq!(again.mac(), n1.mac());
    // A deleted device is recreated with its MAC, and its entries come back.
    sb.exec_ok(sb.node_netns(1), "ip", ["link", "del", "dev", DEVICE]).expect("delete the device");
    let p1 = both.clone();
    assert_eq!(on_node(&sb, 1, || async { n1.sync(&p1).await }).expect("sync"), 3);
    let mac = sb.exec_ok(sb.node_netns(1), "cat", [format!("/sys/class/net/{DEVICE}/address")]).expect("mac");
    assert_eq!(mac.trim(), n1.mac().to_string());
    cross(&sb);

    // node2 leaves: its entries go, a route someone else put on the device stays.
    sb.exec_ok(
        sb.node_netns(1),
        "ip",
        ["route", "add", "192.168.9.0/24", "via", "10.244.2.0", "dev", DEVICE, "onlink"],
    )
    .expect("foreign route");
    let only_me = vec![n1.as_peer()];
    assert_eq!(on_node(&sb, 1, || async { n1.sync(&only_me).await }).expect("sync"), 3);
    let routes = sb.exec_ok(sb.node_netns(1), "ip", ["route", "show", "dev", DEVICE]).expect("routes");
    assert_eq!(routes.trim(), "192.168.9.0/24 via 10.244.2.0 onlink", "{routes}");
    let fdb = sb.exec_ok(sb.node_netns(1), "bridge", ["fdb", "show", "dev", DEVICE]).expect("fdb");
    assert!(!fdb.contains(&n2.mac().to_string()), "{fdb}");

    // A node IP no interface holds: a clear error.
    let lost = PodNetConfig { node_ip: Ipv4Addr::new(192, 168, 122, 77), ..c2 };
    match on_node(&sb, 2, || PodNet::setup(lost, None)) {
        Err(PodNetError::NoInterface(ip)) => assert_eq!(ip, Ipv4Addr::new(192, 168, 122, 77)),
        other => panic!("expected NoInterface, got {other:?}"),
    }
}
