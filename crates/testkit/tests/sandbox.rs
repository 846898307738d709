//! The network-namespace sandbox. Needs root; every test skips (with a message)
//! otherwise.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::sandbox::{self, LAN_IP, STATE_DIR};
use testkit::{cleanup_stale, repo_root, sandbox_unavailable, Sandbox};

fn skip() -> bool {
    match sandbox_unavailable() {
        Some(reason) => {
            testkit::skip(&reason);
            true
        }
        None => false,
    }
}

/// Namespaces currently listed by `ip netns list`.
fn netns_list() -> Vec<String> {
    let out = std::process::Command::new(sandbox::ip_path()).args(["netns", "list"]).output().expect("ip netns list");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().next().map(String::from)).collect()
}

/// Links of the root namespace, one line each.
fn root_links() -> String {
    let out = std::process::Command::new(sandbox::ip_path()).args(["-o", "link"]).output().expect("ip -o link");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_gone(id: &str, namespaces: &[String]) {
    let list = netns_list();
    for ns in namespaces {
        assert!(!list.contains(ns), "{ns} still exists: {list:?}");
    }
    assert!(!list.iter().any(|ns| ns.starts_with(id)), "namespaces of {id} left: {list:?}");
    assert!(!Path::new(STATE_DIR).join(format!("{id}.state")).exists(), "state file of {id} left");
    assert!(!root_links().contains(id), "an interface of {id} in the root namespace");
}

/// Echo server on `ns` `addr`: answers each connection with "pong <what it read>".
fn echo_server(sb: &Sandbox, ns: &str, addr: SocketAddr) -> std::thread::JoinHandle<()> {
    let listener = sb.tcp_listener(ns, addr).expect("listen");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 64];
            let n = conn.read(&mut buf).unwrap_or(0);
            if &buf[..n] == b"quit" {
                return;
            }
            let _ = conn.write_all(format!("pong {}", String::from_utf8_lossy(&buf[..n])).as_bytes());
        }
    })
}

fn ping_pong(sb: &Sandbox, from: &str, to: SocketAddr, msg: &str) -> String {
    let mut conn = sb.tcp_connect(from, to, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
    conn.write_all(msg.as_bytes()).unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    reply
}

fn stop_server(sb: &Sandbox, from: &str, to: SocketAddr, server: std::thread::JoinHandle<()>) {
    let mut conn: TcpStream = sb.tcp_connect(from, to, Duration::from_secs(5)).unwrap();
    conn.write_all(b"quit").unwrap();
    drop(conn);
    server.join().unwrap();
}

#[test]
fn topology_and_connectivity() {
    if skip() {
        return;
    }
    let sb = Sandbox::new(2).expect("sandbox");
    let id = sb.id().to_string();
    let namespaces = sb.namespaces();
    assert_eq!(namespaces.len(), 4);
    assert!(id.starts_with("rkt") && id.len() == 9, "{id}");
    for ns in &namespaces {
        assert!(ns.len() <= 15, "{ns}");
    }
    assert_eq!(sb.node_ip(1), Ipv4Addr::new(192, 168, 122, 11));
    assert_eq!(sb.node_ip(2), Ipv4Addr::new(192, 168, 122, 12));
    assert_eq!(sb.client_ip(), Ipv4Addr::new(192, 168, 122, 100));
    assert_eq!(sb.lan_ip(), LAN_IP);
    let list = netns_list();
    for ns in &namespaces {
        assert!(list.contains(ns), "{ns} missing from {list:?}");
    }

    // Addresses, lo up everywhere, and the default route via the LAN bridge.
    let addrs = sb.exec_ok(sb.node_netns(1), "ip", ["-o", "-4", "addr"]).unwrap();
    assert!(addrs.contains("lo ") && addrs.contains("127.0.0.1/8"), "{addrs}");
    assert!(addrs.contains("eth0") && addrs.contains("192.168.122.11/24"), "{addrs}");
    for ns in &namespaces {
        let lo = sb.exec_ok(ns, "ip", ["-o", "link", "show", "lo"]).unwrap();
        assert!(lo.contains("UP"), "lo not up in {ns}: {lo}");
    }
    let client = sb.exec_ok(sb.client_netns(), "ip", ["-o", "-4", "addr", "show", "eth0"]).unwrap();
    assert!(client.contains("192.168.122.100/24"), "{client}");
    let lan = sb.exec_ok(sb.lan_netns(), "ip", ["-o", "-4", "addr", "show", "br0"]).unwrap();
    assert!(lan.contains("192.168.122.1/24"), "{lan}");
    let route = sb.exec_ok(sb.node_netns(2), "ip", ["route", "get", "10.96.0.10"]).unwrap();
    assert!(route.contains("via 192.168.122.1 dev eth0"), "{route}");
    let lan_routes = sb.exec_ok(sb.lan_netns(), "ip", ["route"]).unwrap();
    assert!(!lan_routes.contains("default"), "the lan namespace must have no default route: {lan_routes}");
    let forwarding = sb.exec_ok(sb.lan_netns(), "cat", ["/proc/sys/net/ipv4/ip_forward"]).unwrap();
    assert_eq!(forwarding.trim(), "0", "the lan namespace must not forward");

    // exec: failures are reported with stderr.
    let out = sb.exec(sb.node_netns(1), "sh", ["-c", "echo out; echo err >&2; exit 3"]).unwrap();
    assert_eq!((out.status.code(), out.stdout.as_str(), out.stderr.as_str()), (Some(3), "out\n", "err\n"));
    let err = sb.exec_ok(sb.node_netns(1), "false", Vec::<&str>::new()).unwrap_err();
    assert!(matches!(err, testkit::Error::Command { .. }), "{err}");
    let out = sb
        .exec_with(sb.node_netns(1), "cat", Vec::<&str>::new(), Some("fed on stdin"), Duration::from_secs(5))
        .unwrap();
    assert_eq!(out.stdout, "fed on stdin");
    let started = Instant::now();
    let out = sb.exec_with(sb.node_netns(1), "sleep", ["30"], None, Duration::from_millis(300)).unwrap();
    assert!(!out.success() && out.stderr.contains("killed after"), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // TCP: node2 -> node1, client -> node1, node1 -> node2, node -> LAN server.
    let n1: SocketAddr = (sb.node_ip(1), 8080).into();
    let server = echo_server(&sb, sb.node_netns(1), n1);
    assert_eq!(ping_pong(&sb, sb.node_netns(2), n1, "from node2"), "pong from node2");
    assert_eq!(ping_pong(&sb, sb.client_netns(), n1, "from client"), "pong from client");
    stop_server(&sb, sb.node_netns(1), n1, server);

    let n2: SocketAddr = (sb.node_ip(2), 9090).into();
    let server = echo_server(&sb, sb.node_netns(2), n2);
    assert_eq!(ping_pong(&sb, sb.node_netns(1), n2, "from node1"), "pong from node1");
    stop_server(&sb, sb.node_netns(2), n2, server);

    let lan_addr: SocketAddr = (LAN_IP, 5353).into();
    let udp = sb.udp_socket(sb.lan_netns(), lan_addr).unwrap();
    let reply = sb
        .in_netns(sb.node_netns(1), || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.send_to(b"query", lan_addr).unwrap();
            let mut buf = [0u8; 32];
            let (n, from) = udp.recv_from(&mut buf).unwrap();
            assert_eq!(from.ip(), std::net::IpAddr::V4(sb.node_ip(1)));
            udp.send_to(&buf[..n], from).unwrap();
            let (n, _) = s.recv_from(&mut buf).unwrap();
            buf[..n].to_vec()
        })
        .unwrap();
    assert_eq!(reply, b"query");

    // A spawned process (python3 listener if available, else a shell loop) in node1,
    // reached from the client with bash's /dev/tcp.
    if std::process::Command::new("python3").arg("-V").output().is_ok_and(|o| o.status.success()) {
        let py = "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                  s.bind(('0.0.0.0',7070))\ns.listen()\nc,a=s.accept()\nc.sendall(('hi '+a[0]).encode())\nc.close()";
        let mut child = sb.spawn(sb.node_netns(1), "python3", ["-c", py]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let got = loop {
            let out =
                sb.exec(sb.client_netns(), "bash", ["-c", "exec 3<>/dev/tcp/192.168.122.11/7070 && cat <&3"]).unwrap();
            if out.success() || Instant::now() > deadline {
                break out;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(got.stdout, "hi 192.168.122.100", "{got:?}");
        assert!(child.wait().unwrap().success());
    }

    // Traffic to anything else dies inside the sandbox.
    let out =
        sb.exec(sb.client_netns(), "bash", ["-c", "timeout 2 bash -c 'exec 3<>/dev/tcp/192.168.122.200/80'"]).unwrap();
    assert!(!out.success(), "{out:?}");

    // Nothing of the sandbox in the root namespace.
    assert!(!root_links().contains(&id), "{}", root_links());
    let route = std::process::Command::new(sandbox::ip_path())
        .args(["route", "get", "192.168.122.11"])
        .output()
        .expect("ip route get");
    assert!(!String::from_utf8_lossy(&route.stdout).contains(&id));

    drop(sb);
    assert_gone(&id, &namespaces);
}

#[test]
fn two_sandboxes_at_once_and_drop_on_panic() {
    if skip() {
        return;
    }
    let a = Sandbox::new(1).expect("sandbox a");
    let b = Sandbox::new(1).expect("sandbox b");
    assert_ne!(a.id(), b.id());
    // The same addresses in both, isolated from each other.
    let addr: SocketAddr = (a.node_ip(1), 8081).into();
    let _la = a.tcp_listener(a.node_netns(1), addr).unwrap();
    let _lb = b.tcp_listener(b.node_netns(1), addr).unwrap();

    // A thread panics while holding a sandbox (with a process running in it).
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let sb = Sandbox::new(2).expect("sandbox");
        let child = sb.spawn(sb.node_netns(1), "sleep", ["1000"]).unwrap();
        tx.send((sb.id().to_string(), sb.namespaces(), child)).unwrap();
        let list = netns_list();
        assert!(list.contains(&sb.namespaces()[0]));
        panic!("a failing test");
    })
    .join();
    assert!(result.is_err());
    let (id, namespaces, mut child) = rx.recv().unwrap();
    assert_gone(&id, &namespaces);
    // The process left in the namespace was killed.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));

    // catch_unwind on this thread too.
    let mut names = None;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let sb = Sandbox::new(1).expect("sandbox");
        names = Some((sb.id().to_string(), sb.namespaces()));
        assert_eq!(sb.nodes(), 2, "a failed assertion");
    }));
    assert!(r.is_err());
    let (id, namespaces) = names.unwrap();
    assert_gone(&id, &namespaces);

    let (ida, nsa) = (a.id().to_string(), a.namespaces());
    let (idb, nsb) = (b.id().to_string(), b.namespaces());
    drop(a);
    assert_gone(&ida, &nsa);
    assert!(netns_list().contains(&nsb[0]), "dropping a must not touch b");
    drop(b);
    assert_gone(&idb, &nsb);
}

#[test]
fn cleanup_stale_removes_leftovers_of_dead_processes() {
    if skip() {
        return;
    }
    // A "killed test run": a child process builds namespaces and a state file with
    // its own pid, then dies without cleaning up. Simulated with a shell that mimics
    // the layout (the state file format is pid, start time, netns).
    let id = format!("rkt{:06x}", (std::process::id() as u64 * 2654435761) & 0xff_ffff);
    let lan = format!("{id}-lan");
    let node = format!("{id}-n1");
    std::fs::create_dir_all(STATE_DIR).unwrap();
    let state = Path::new(STATE_DIR).join(format!("{id}.state"));
    let ip = sandbox::ip_path();
    let script = format!(
        "printf 'pid %s\\nstart %s\\nnetns {lan} {node}\\n' $$ \"$(cut -d' ' -f22 /proc/$$/stat)\" > {state} && \
         {ip} netns add {lan} && {ip} netns add {node}",
        ip = ip.display(),
        state = state.display()
    );
    let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    // An orphan: named like a sandbox namespace, no state file.
    let orphan_id = format!("rkt{:06x}", (std::process::id() as u64 * 40503 + 7) & 0xff_ffff);
    let orphan = format!("{orphan_id}-n3");
    let out = std::process::Command::new(&ip).args(["netns", "add", &orphan]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    // A namespace that is not ours is never touched.
    let foreign = format!("rktx{}-lan", std::process::id());
    let out = std::process::Command::new(&ip).args(["netns", "add", &foreign]).output().unwrap();
    assert!(out.status.success(), "{out:?}");

    // A live sandbox is never taken.
    let live = Sandbox::new(1).unwrap();
    // (Sandbox::new in tests running in parallel may have cleaned up already.)
    let deleted = cleanup_stale().unwrap();
    let list = netns_list();
    let _ = std::process::Command::new(&ip).args(["netns", "del", &foreign]).output();
    assert!(!deleted.contains(&foreign), "{deleted:?}");
    assert!(!list.contains(&lan) && !list.contains(&node) && !list.contains(&orphan), "{list:?}");
    assert!(list.contains(&foreign), "{list:?}");
    assert!(!state.exists());
    for ns in live.namespaces() {
        assert!(list.contains(&ns), "live {ns} deleted");
    }
    drop(live);
    assert!(!netns_list().contains(&foreign));
}

/// `<repo>/target/debug/rkube` (or `$CARGO_TARGET_DIR/debug/rkube`), if built.
fn rkube_bin() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    let bin = target.join("debug").join("rkube");
    bin.is_file().then_some(bin)
}

#[test]
fn rkube_up_in_a_node() {
    if skip() {
        return;
    }
    let Some(bin) = rkube_bin() else {
        testkit::skip("target/debug/rkube not built (cargo build -p rkube)");
        return;
    };
    let sb = Sandbox::new(1).expect("sandbox");
    let (id, namespaces) = (sb.id().to_string(), sb.namespaces());
    let mut node = sb.start_rkube(&bin, 1, &[]).unwrap_or_else(|e| panic!("start rkube: {e}"));
    assert!(node.kubeconfig_path().is_file());
    assert!(node.is_running());
    assert_eq!(node.url(), "https://192.168.122.11:6443");

    let k = node.kubectl();
    assert_eq!(k.netns(), Some(sb.node_netns(1)));
    let out = k.ok(["get", "ns", "-o", "name"]);
    assert!(out.contains("namespace/default") && out.contains("namespace/kube-system"), "{out}");
    // The API server is listening inside the node namespace only.
    let ss = sb.exec_ok(sb.node_netns(1), "cat", ["/proc/net/tcp"]).unwrap();
    assert!(ss.contains(":192B"), "port 6443 (0x192B) not listening in the node: {ss}");
    // ... and answers on the node address from the client namespace too (the
    // kubeconfig may name 127.0.0.1, so the server is given explicitly).
    let kc = node.kubectl().in_netns(sb.client_netns());
    let url = node.url();
    assert!(kc.ok(["--server", url.as_str(), "get", "ns", "default", "-o", "name"]).contains("namespace/default"));

    // A process in rkube's group (as a pod would be) dies with the node.
    let pid = node.pid().unwrap();
    let status = node.stop().unwrap();
    assert!(!node.is_running());
    assert!(node.logs().contains("=== testkit: start #1"), "{}", node.logs());
    eprintln!("rkube stopped: {status:?}");
    node.restart().unwrap();
    assert_ne!(node.pid(), Some(pid));
    assert!(node.kubectl().ok(["get", "ns", "default", "-o", "name"]).contains("namespace/default"));
    node.kill9().unwrap();
    node.restart().unwrap();
    let data_dir = node.data_dir().to_path_buf();
    let pid = node.pid().unwrap();
    drop(node);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty(), "rkube {pid} not reaped: {stat}");
    drop(sb);
    assert_gone(&id, &namespaces);
    if std::env::var_os("RKUBE_KEEP_TEST_DIRS").is_none() {
        assert!(!data_dir.exists(), "temp dir left: {}", data_dir.display());
    }
}

#[test]
fn node_keeps_the_sandbox_alive_and_kills_its_group() {
    if skip() {
        return;
    }
    // A fake rkube: writes the kubeconfig, starts a child ("pod") in its group.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("rkube");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = up ] || exit 2\nshift\nwhile [ $# -gt 0 ]; do case $1 in --data-dir) d=$2; shift 2;; \
         --node-name) echo \"node $2\"; shift 2;; *) shift;; esac; done\n\
         sleep 1000 &\necho \"pod $!\"\nprintf 'clusters: []\\nusers: []\\n' > \"$d/kubeconfig.yaml\"\nwait\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let sb = Sandbox::new(2).unwrap();
    let (id, namespaces) = (sb.id().to_string(), sb.namespaces());
    let node1 = sb.start_rkube(&fake, 1, &[]).unwrap();
    let node2 = sb.start_rkube(&fake, 2, &["--node-name", "node2"]).unwrap();
    assert!(sb.start_rkube(&fake, 3, &[]).is_err());
    assert!(sb.start_rkube(&fake, 0, &[]).is_err());
    let pod1 = pod_pid(&node1);
    let pod2 = pod_pid(&node2);
    assert!(node2.logs().contains("node node2"));
    // The sandbox handle goes first; the nodes keep the namespaces.
    drop(sb);
    assert!(netns_list().contains(&namespaces[0]));
    // Dropping node1 kills its group while the namespaces still exist.
    drop(node1);
    assert!(netns_list().contains(&namespaces[0]));
    assert!(dead(pod1), "pod {pod1} of node1 survived");
    assert!(!dead(pod2), "pod {pod2} of node2 died with node1");
    drop(node2);
    assert!(dead(pod2), "pod {pod2} of node2 survived");
    assert_gone(&id, &namespaces);
}

/// The pid of the fake rkube's "pod" (printed as `pod <pid>`).
fn pod_pid(node: &testkit::SandboxNode) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = node.logs();
        if let Some(pid) = logs.lines().find_map(|l| l.strip_prefix("pod ")).and_then(|p| p.trim().parse().ok()) {
            return pid;
        }
        assert!(Instant::now() < deadline, "{logs}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Gone or a zombie (SIGKILL is delivered at once, reaping may lag a little).
fn dead(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const HELPER_ENV: &str = "RKUBE_SANDBOX_TEST_HELPER";

/// Not a test of its own: run by the two tests below as a separate process
/// (`RKUBE_SANDBOX_TEST_HELPER=exit|hang`). Builds a sandbox with a process in it,
/// prints its id and namespaces, then exits without unwinding or hangs (to be killed).
#[test]
fn helper_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else { return };
    let sb = Sandbox::new(1).expect("sandbox");
    let child = sb.spawn(sb.node_netns(1), "sleep", ["1000"]).unwrap();
    println!("SANDBOX {} {}", sb.id(), sb.namespaces().join(" "));
    std::io::stdout().flush().unwrap();
    if mode == "exit" {
        std::process::exit(0);
    }
    std::thread::sleep(Duration::from_secs(120));
    drop(child.wait_with_output());
}

/// Starts `helper_process` in `mode`; returns it and the sandbox it printed.
fn start_helper(mode: &str) -> (std::process::Child, String, Vec<String>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_process", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, mode)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            // libtest prints `test helper_process ... ` on the same line first.
            if let Some(at) = line.find("SANDBOX ") {
                let _ = tx.send(line[at + "SANDBOX ".len()..].to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(rest) => {
            let mut words = rest.split_whitespace().map(String::from);
            let id = words.next().unwrap();
            (child, id, words.collect())
        }
        Err(_) => {
            let _ = child.kill();
            panic!("the helper printed no sandbox: {:?}", child.wait());
        }
    }
}

#[test]
fn process_exit_without_unwinding_cleans_up() {
    if skip() {
        return;
    }
    let (mut child, id, namespaces) = start_helper("exit");
    assert!(child.wait().unwrap().success());
    assert_gone(&id, &namespaces);
}

#[test]
fn killed_test_process_is_cleaned_up_by_the_next_run() {
    if skip() {
        return;
    }
    let (mut child, id, namespaces) = start_helper("hang");
    let list = netns_list();
    assert!(namespaces.iter().all(|ns| list.contains(ns)), "{list:?}");
    // A live owner's sandbox is left alone.
    cleanup_stale().unwrap();
    let list = netns_list();
    assert!(namespaces.iter().all(|ns| list.contains(ns)), "{list:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    // SIGKILL leaves the namespaces behind; the next cleanup_stale (or a
    // Sandbox::new in a test running in parallel) removes them.
    cleanup_stale().unwrap();
    assert_gone(&id, &namespaces);
}
