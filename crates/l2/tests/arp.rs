//! The ARP responder in a network-namespace sandbox: a LAN client resolves an address
//! no interface holds to the announcing node's MAC; a gratuitous ARP from another node
//! moves the client's entry; a closed fence stops the answers. Needs root.

use l2::arp::{mac_string, Announced, ArpSocket, Fence};
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::Sandbox;

const ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 200);

fn neigh(sb: &Sandbox) -> String {
    sb.exec_ok(sb.client_netns(), "ip", ["neigh", "show", &ADDR.to_string()]).unwrap_or_default()
}

/// Makes the client resolve ADDR (a UDP datagram needs its MAC).
fn poke(sb: &Sandbox) {
    let _ = sb.in_netns(sb.client_netns(), || UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"x", (ADDR, 9))));
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn answers_only_while_announcing_and_gratuitous_arp_moves_clients() {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return;
    }
    let sb = Sandbox::new(2).expect("sandbox");
    let open = |n: usize| sb.in_netns(sb.node_netns(n), || ArpSocket::open("eth0")).expect("netns").expect("socket");
    let (s1, s2) = (Arc::new(open(1)), Arc::new(open(2)));
    let mac = |n: usize| {
        sb.exec_ok(sb.node_netns(n), "cat", ["/sys/class/net/eth0/address"]).expect("mac").trim().to_string()
    };
    assert_eq!(mac_string(&s1.mac), mac(1));

    let announced: Announced = Default::default();
    let fence = Arc::new(Fence::default());
    let (s, a, f) = (s1.clone(), announced.clone(), fence.clone());
    let thread = std::thread::spawn(move || s.serve(&a, &f, &|_| {}));

    // Not announced yet: nobody answers.
    poke(&sb);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!neigh(&sb).contains(&mac(1)), "{}", neigh(&sb));

    // Announced, fence open: node1's MAC; the address is on no interface of node1.
    announced.write().expect("lock").insert(ADDR);
    fence.extend(Instant::now() + Duration::from_secs(60));
    let _ = sb.exec(sb.client_netns(), "ip", ["neigh", "flush", "dev", "eth0"]);
    wait_for("node1's answer", || {
        poke(&sb);
        neigh(&sb).contains(&mac(1))
    });
    let addrs = sb.exec_ok(sb.node_netns(1), "ip", ["-4", "addr", "show"]).expect("addrs");
    assert!(!addrs.contains(&ADDR.to_string()), "{addrs}");

    // Node2 takes over: its gratuitous ARP replaces the client's entry.
    s2.gratuitous(ADDR).expect("garp");
    wait_for("node2's MAC after gratuitous ARP", || neigh(&sb).contains(&mac(2)));

    // Fence closed: node1 no longer answers, and its thread ends when stopped.
    fence.stop();
    let _ = sb.exec(sb.client_netns(), "ip", ["neigh", "flush", "dev", "eth0"]);
    poke(&sb);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!neigh(&sb).contains(&mac(1)), "a stopped announcer answered: {}", neigh(&sb));
    thread.join().expect("thread").expect("serve ended cleanly");
}
