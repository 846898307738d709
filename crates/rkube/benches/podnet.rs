//! Pod network benchmark (issue 12), in a 3-node network-namespace sandbox
//! (`tests/support/lb_cluster.rs`): a server pod on node2, one client pod on
//! the same node and one on node3, so the same server is measured over the
//! node's bridge (the baseline) and across the VXLAN overlay in one run.
//! - TCP throughput: the bench's own sender and sink, run inside the pods'
//!   network namespaces, move 256 MB per run; best of 3 runs each way.
//! - Request rate: HTTP/1.1 keep-alive GETs of agnhost netexec's `/hostname`
//!   on 4 connections for 3 s.
//!
//! Prints both figures and the ratio overlay / same node (issue 12's target for
//! the request rate: >= 0.9).
//!
//! Run: `cargo bench -p rkube --bench podnet` (as root).

#[path = "../tests/support/lb_cluster.rs"]
mod lb_cluster;

use lb_cluster::LbCluster;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const BYTES: usize = 256 << 20;
const RUNS: usize = 3;
const RATE_FOR: Duration = Duration::from_secs(3);
const CONNS: usize = 4;
const SINK_PORT: u16 = 9000;

fn pod(name: &str, node: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: node{node}\n  containers:\n  - name: netexec\n    image: registry.k8s.io/e2e-test-images/agnhost:2.52\n    args: [\"netexec\", \"--http-port=8080\"]\n"
    )
}

/// The network namespace of a running pod: the one its container's process
/// is in (pods share the host's PID namespace), kept open.
fn pod_netns(k: &testkit::Kubectl, name: &str) -> File {
    let link = k.ok(["exec", name, "--", "readlink", "/proc/self/ns/net"]).trim().to_string();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let path = entry.path().join("ns/net");
        if std::fs::read_link(&path).is_ok_and(|l| l.to_string_lossy() == link) {
            if let Ok(f) = File::open(&path) {
                return f;
            }
        }
    }
    panic!("no process in pod {name}'s network namespace {link}");
}

/// Runs `f` on a thread inside `ns`.
fn in_ns<T: Send + 'static>(ns: &File, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    let fd = ns.try_clone().expect("dup netns fd");
    std::thread::spawn(move || {
        // SAFETY: setns on an open namespace fd; it changes this thread only.
        let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
}

/// Sends [`BYTES`] to the sink; seconds from connect to the sink's answer.
fn throughput(from: &File, to: SocketAddr) -> Duration {
    in_ns(from, move || {
        let chunk = vec![0x5au8; 1 << 20];
        let t = Instant::now();
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).expect("connect to the sink");
        for _ in 0..BYTES / chunk.len() {
            s.write_all(&chunk).expect("send");
        }
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut ack = [0u8; 8];
        s.read_exact(&mut ack).expect("the sink's count");
        assert_eq!(u64::from_be_bytes(ack), BYTES as u64);
        t.elapsed()
    })
    .join()
    .expect("sender")
}

/// Reads one HTTP/1.1 response (Content-Length framed) from `s`.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) {
    buf.clear();
    let mut tmp = [0u8; 4096];
    loop {
        let n = s.read(&mut tmp).expect("read");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&tmp[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            while buf.len() < end + 4 + len {
                let n = s.read(&mut tmp).expect("read body");
                assert!(n > 0, "connection closed in the body");
                buf.extend_from_slice(&tmp[..n]);
            }
            return;
        }
    }
}

/// Requests per second of keep-alive GETs from `from` to `to`.
fn request_rate(from: &File, to: SocketAddr) -> f64 {
    let workers: Vec<_> = (0..CONNS)
        .map(|_| {
            in_ns(from, move || {
                let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).expect("connect");
                s.set_nodelay(true).expect("nodelay");
                let mut buf = Vec::new();
                let (t, mut n) = (Instant::now(), 0u64);
                while t.elapsed() < RATE_FOR {
                    s.write_all(b"GET /hostname HTTP/1.1\r\nHost: srv\r\n\r\n").expect("request");
                    read_response(&mut s, &mut buf);
                    n += 1;
                }
                n as f64 / t.elapsed().as_secs_f64()
            })
        })
        .collect();
    workers.into_iter().map(|w| w.join().expect("worker")).sum()
}

fn main() {
    if let Some(why) = testkit::sandbox_unavailable() {
        println!("skipping the pod network benchmark: {why}");
        return;
    }
    let c = LbCluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_rkube")));
    let k = c.k();
    for (name, node) in [("srv", 2), ("cli-local", 2), ("cli-remote", 3)] {
        k.ok_with_stdin(["create", "-f", "-"], &pod(name, node));
    }
    c.wait("3 pods running", Duration::from_secs(90), || {
        ["srv", "cli-local", "cli-remote"]
            .iter()
            .all(|p| k.ok(["get", "pod", p, "-o", "jsonpath={.status.phase}/{.status.podIP}"]).starts_with("Running/1"))
    });
    let srv_ip: std::net::Ipv4Addr =
        k.ok(["get", "pod", "srv", "-o", "jsonpath={.status.podIP}"]).trim().parse().expect("pod IP");
    let (srv, local, remote) = (pod_netns(&k, "srv"), pod_netns(&k, "cli-local"), pod_netns(&k, "cli-remote"));

    // The sink: counts what each connection sends and answers with the count.
    let listener =
        in_ns(&srv, || TcpListener::bind(("0.0.0.0", SINK_PORT)).expect("bind the sink")).join().expect("sink");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                let mut total = 0u64;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = s.write_all(&total.to_be_bytes());
            });
        }
    });
    let sink = SocketAddr::from((srv_ip, SINK_PORT));
    let web = SocketAddr::from((srv_ip, 8080));
    let mbps = |d: Duration| BYTES as f64 / d.as_secs_f64() / 1e6;

    let (mut best_local, mut best_remote) = (Duration::MAX, Duration::MAX);
    for run in 1..=RUNS {
        let l = throughput(&local, sink);
        let r = throughput(&remote, sink);
        println!("throughput run {run}: same node {:.0} MB/s, across nodes {:.0} MB/s", mbps(l), mbps(r));
        best_local = best_local.min(l);
        best_remote = best_remote.min(r);
    }
    println!(
        "TCP throughput (best of {RUNS}, 256 MB): same node {:.0} MB/s, across nodes (VXLAN) {:.0} MB/s; across / same {:.2}",
        mbps(best_local),
        mbps(best_remote),
        mbps(best_remote) / mbps(best_local)
    );

    let l = request_rate(&local, web);
    let r = request_rate(&remote, web);
    println!(
        "request rate ({CONNS} keep-alive connections, {:?}): same node {l:.0}/s, across nodes {r:.0}/s; across / same {:.2}",
        RATE_FOR,
        r / l
    );
}
