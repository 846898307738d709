//! Pods survive a restart of `rkube up` (issue 5), as containers survive a
//! kubelet restart: the lesson's ReplicaSet behind a NodePort, one keep-alive
//! connection from outside the cluster that serves requests before and after
//! a SIGTERM + restart, the same pods (uids, IPs, container PIDs, restartCount
//! 0), logs across the restart, exec, deletion of an adopted pod, and a pod
//! deleted while the node agent was down. Needs root (skips otherwise).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{manifest, Kubectl, Sandbox, SandboxNode};

const NODE_PORT: u16 = 31111;

/// A pod as the API reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PodInfo {
    uid: String,
    ip: String,
    /// `rkube://<pid>`: the container's PID.
    container_id: String,
    restarts: String,
}

fn pods(k: &Kubectl) -> BTreeMap<String, PodInfo> {
    let out = k.ok([
        "get",
        "pods",
        "-l",
        "app=mynapp-rs",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.status.podIP} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount} {.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\n"}{end}"#,
    ]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 6 && f[5] == "True").then(|| {
                let info =
                    PodInfo { uid: f[1].into(), ip: f[2].into(), container_id: f[3].into(), restarts: f[4].into() };
                (f[0].to_string(), info)
            })
        })
        .collect()
}

fn pid_of(p: &PodInfo) -> u32 {
    p.container_id.strip_prefix("rkube://").and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{p:?}"))
}

/// Whether `pid` runs (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with(['Z', 'X'])))
        .unwrap_or(false)
}

/// Live processes whose environment has `entry` as a prefix of one variable.
fn pids_with_env(prefix: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            env.split(|&b| b == 0).any(|e| e.starts_with(prefix.as_bytes())) && alive(pid)
        })
        .collect()
}

/// One HTTP/1.1 request on an open connection; the response body.
fn request(conn: &mut TcpStream, path: &str) -> std::io::Result<String> {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: mynapp\r\n\r\n").as_bytes())?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut len = None;
    let mut status = String::new();
    r.read_line(&mut status)?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("status line {status:?}")));
    }
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = vec![0u8; len.ok_or_else(|| std::io::Error::other("no content-length"))?];
    r.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn hostname_in(body: &str) -> String {
    body.lines().find_map(|l| l.strip_prefix("Hostname: ")).unwrap_or_default().to_string()
}

fn wait(node: &SandboxNode, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let pods = node.kubectl().run(["get", "pods", "-o", "wide"]).stdout;
    panic!(
        "timed out after {timeout:?} waiting for {what}\n--- pods ---\n{pods}\n--- rkube log ---\n{}",
        node.logs_tail(80)
    );
}

/// `ip -o link` in the node's namespace.
fn veth_count(sandbox: &Sandbox) -> usize {
    let links = sandbox.exec_ok(sandbox.node_netns(1), "ip", ["-o", "link"]).expect("ip link");
    links.lines().filter(|l| l.contains(": veth")).count()
}

#[test]
fn pods_and_connections_survive_an_rkube_restart() {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return;
    }
    let sandbox = Sandbox::new(1).expect("sandbox");
    let bin = Path::new(env!("CARGO_BIN_EXE_rkube"));
    // Without the DNS add-ons: their pods would count among the veths and shims checked below.
    let mut node = sandbox
        .start_rkube(bin, 1, &["--node-name", "node1", "--disable", "coredns,nodelocaldns"])
        .expect("rkube up in the sandbox");
    let k = node.kubectl();
    wait(&node, "node1 Ready", Duration::from_secs(30), || k.ok(["get", "nodes"]).contains(" Ready "));
    k.ok(["create", "-f", manifest("mynapp-svc-ext-nodeport.yml").to_str().unwrap()]);
    k.ok(["create", "-f", manifest("mynapp-rs.yml").to_str().unwrap()]);
    wait(&node, "3 ready pods", Duration::from_secs(60), || pods(&k).len() == 3);
    let before = pods(&k);

    // One keep-alive connection from outside the cluster, through the NodePort.
    let addr = SocketAddr::from((sandbox.node_ip(1), NODE_PORT));
    let mut conn = None;
    wait(&node, "the NodePort to answer", Duration::from_secs(30), || {
        let Ok(mut c) = sandbox.tcp_connect(sandbox.client_netns(), addr, Duration::from_secs(2)) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
        let ok = request(&mut c, "/before").is_ok_and(|b| b.contains("Hostname: "));
        if ok {
            conn = Some(c);
        }
        ok
    });
    let mut conn = conn.expect("connection");
    let local = conn.local_addr().expect("local addr");
    let served = hostname_in(&request(&mut conn, "/before-again").expect("second request before the restart"));
    assert!(before.contains_key(&served), "served by {served:?}, pods {before:?}");
    let logs_before = k.ok(["logs", &served]);
    assert!(logs_before.contains("Received Request From"), "{logs_before}");

    // A clean stop: every container outlives rkube.
    let status = node.stop().expect("stop");
    assert!(status.success(), "SIGTERM stops rkube cleanly: {status:?}\n{}", node.logs_tail(30));
    for (name, p) in &before {
        assert!(alive(pid_of(p)), "container of {name} (pid {}) died with rkube", pid_of(p));
    }
    let t = Instant::now();
    node.restart().expect("restart");
    let k = node.kubectl();
    wait(&node, "node1 Ready again", Duration::from_secs(30), || k.ok(["get", "nodes"]).contains(" Ready "));
    let restart_time = t.elapsed();

    // The same connection serves again, from the same pod.
    let body = request(&mut conn, "/after").unwrap_or_else(|e| {
        panic!("the connection from before the restart broke: {e}\n{}", node.logs_tail(60));
    });
    assert_eq!(conn.local_addr().expect("local addr"), local);
    assert_eq!(hostname_in(&body), served, "{body}");

    // The new agent's proxy adopted the nftables table it found: its first sync was not a
    // full rewrite (kube-proxy's sync histogram on the kubelet port).
    let metrics_url = format!("https://{}:10250/metrics", sandbox.node_ip(1));
    let sync_count = |kind: &str| -> Option<u64> {
        let out = sandbox.exec(sandbox.node_netns(1), "curl", ["-sk", "--max-time", "5", &metrics_url]).ok()?;
        let prefix = format!("kubeproxy_sync_proxy_rules_duration_seconds_count{{sync=\"{kind}\"}} ");
        out.stdout.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
    };
    wait(&node, "the restarted proxy's first sync", Duration::from_secs(30), || {
        sync_count("partial").is_some_and(|n| n >= 1)
    });
    assert_eq!(sync_count("full"), Some(0), "the restarted proxy rewrote its table\n{}", node.logs_tail(40));

    // Same pods: uids, IPs, container PIDs, no restarts.
    wait(&node, "3 ready pods after the restart", Duration::from_secs(30), || pods(&k).len() == 3);
    let after = pods(&k);
    assert_eq!(before, after, "pods changed across the restart");
    assert!(after.values().all(|p| p.restarts == "0" && alive(pid_of(p))), "{after:?}");
    let veths = veth_count(&sandbox);
    assert_eq!(veths, 3, "one veth per pod");

    // Logs go on in the same file; exec works on adopted containers.
    wait(&node, "the request after the restart in the log", Duration::from_secs(10), || {
        let logs = k.ok(["logs", &served]);
        logs.starts_with(&logs_before)
            && logs.matches("Received Request From").count() > logs_before.matches("Received Request From").count()
    });
    assert_eq!(k.ok(["exec", &served, "--", "hostname"]).trim(), served);
    let out = k.ok_with_stdin(["exec", "-i", &served, "--", "sh", "-c", "cat; echo done"], "in\n");
    assert_eq!(out, "in\ndone\n");

    // The exit of an adopted container is noticed: restarted, counted.
    let others: Vec<(String, PodInfo)> =
        after.iter().filter(|(n, _)| **n != served).map(|(n, p)| (n.clone(), p.clone())).collect();
    let (crashed, cinfo) = others[1].clone();
    // SAFETY: kill(2) of a container process of this test's pod.
    unsafe { libc::kill(pid_of(&cinfo) as i32, libc::SIGKILL) };
    wait(&node, "the killed container to be restarted", Duration::from_secs(40), || {
        pods(&k).get(&crashed).is_some_and(|p| p.restarts == "1" && p.container_id != cinfo.container_id)
    });
    let last =
        k.ok(["get", "pod", &crashed, "-o", "jsonpath={.status.containerStatuses[0].lastState.terminated.exitCode}"]);
    assert_eq!(last, "137", "lastState of the killed container");

    // Deleting an adopted pod kills its container.
    let (victim, vinfo) = others[0].clone();
    k.ok(["delete", "pod", &victim, "--grace-period=2"]);
    wait(&node, "the deleted pod's container to end", Duration::from_secs(30), || !alive(pid_of(&vinfo)));
    assert!(pids_with_env(&format!("RKUBE_CONTAINER_SHIM={}/", vinfo.uid)).is_empty(), "shim of {victim} left");
    wait(&node, "3 ready pods after the delete", Duration::from_secs(60), || pods(&k).len() == 3);

    // A pod deleted while the node agent is down (control plane only, same
    // data dir) is cleaned up when the agent comes back.
    let up_args = node.args().to_vec();
    let mut server_args = up_args.clone();
    server_args[0] = "server".into();
    if let Some(i) = server_args.iter().position(|a| a == "--node-name") {
        server_args.drain(i..i + 2);
    }
    let current = pods(&k);
    let (gone, ginfo) = current.iter().find(|(n, _)| **n != served).map(|(n, p)| (n.clone(), p.clone())).expect("pod");
    // And a container that dies while no agent runs is restarted, counted once.
    let (exited, einfo) = current
        .iter()
        .find(|(n, _)| **n != served && **n != gone)
        .map(|(n, p)| (n.clone(), p.clone()))
        .expect("a third pod");
    let restarts_before: u32 = einfo.restarts.parse().expect("restartCount");
    // The app closes a connection idle for 30 s (hyper's header read timeout), so the
    // connection is used at every step: now, while no agent runs, and at the end.
    let body = request(&mut conn, "/before-the-second-restart").expect("the connection before the second restart");
    assert_eq!(hostname_in(&body), served);
    node.restart_with(server_args).expect("rkube server on the same data dir");
    let k = node.kubectl();
    k.ok(["delete", "pod", &gone, "--grace-period=0", "--force"]);
    assert!(alive(pid_of(&ginfo)), "nothing kills the pod while no agent runs");
    let body = request(&mut conn, "/agent-down").expect("the kernel's rules serve while no agent runs");
    assert_eq!(hostname_in(&body), served);
    // SAFETY: kill(2) of a container process of this test's pod.
    unsafe { libc::kill(pid_of(&einfo) as i32, libc::SIGKILL) };
    node.restart_with(up_args).expect("rkube up again");
    let k = node.kubectl();
    let want = (restarts_before + 1).to_string();
    wait(&node, "the container that died while the agent was down to be restarted", Duration::from_secs(40), || {
        pods(&k).get(&exited).is_some_and(|p| p.restarts == want && p.container_id != einfo.container_id)
    });
    let last =
        k.ok(["get", "pod", &exited, "-o", "jsonpath={.status.containerStatuses[0].lastState.terminated.exitCode}"]);
    assert_eq!(last, "137", "lastState of the container killed while the agent was down");
    std::thread::sleep(Duration::from_secs(2));
    let now = pods(&k).get(&exited).map(|p| p.restarts.clone());
    assert_eq!(now.as_deref(), Some(want.as_str()), "that exit is counted once");
    wait(&node, "the pod deleted while the agent was down to be killed", Duration::from_secs(30), || {
        !alive(pid_of(&ginfo))
    });
    let ipam = node.data_dir().join("agent/runtime/ipam.json");
    wait(&node, "its IP to be released", Duration::from_secs(10), || {
        std::fs::read_to_string(&ipam).is_ok_and(|s| !s.contains(&ginfo.uid))
    });
    assert!(pids_with_env(&format!("RKUBE_CONTAINER_SHIM={}/", ginfo.uid)).is_empty(), "shim of {gone} left");
    wait(&node, "3 ready pods in the end", Duration::from_secs(60), || pods(&k).len() == 3);
    let body = request(&mut conn, "/end").unwrap_or_else(|e| {
        let all = k.run(["get", "pods", "-o", "wide"]).stdout;
        panic!(
            "the connection survives a second restart: {e}\nserved by {served}, pods now {:?}\n{all}\n{}",
            pods(&k),
            node.logs_tail(150)
        )
    });
    assert_eq!(hostname_in(&body), served);
    wait(&node, "one veth per pod", Duration::from_secs(10), || veth_count(&sandbox) == 3);

    // The sandbox teardown still finds every pod process (shims included).
    let data_dir = node.data_dir().display().to_string();
    let shims = pids_with_env("RKUBE_CONTAINER_SHIM=");
    let shims: Vec<u32> = shims
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&data_dir))
        })
        .collect();
    let described: Vec<String> = shims
        .iter()
        .map(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let env = String::from_utf8_lossy(&env).replace('\0', " ");
            let shim = env.split(' ').find(|v| v.starts_with("RKUBE_CONTAINER_SHIM=")).unwrap_or("").to_string();
            format!("{pid}: {shim}")
        })
        .collect();
    assert_eq!(shims.len(), 3, "one shim per pod: {described:?}\n{}", k.ok(["get", "pods", "-A", "-o", "wide"]));
    let containers: Vec<u32> = pods(&k).values().map(pid_of).collect();
    drop(conn);
    drop(node);
    let start = Instant::now();
    while shims.iter().chain(&containers).any(|&p| alive(p)) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!shims.iter().chain(&containers).any(|&p| alive(p)), "pod processes survived the teardown");
    eprintln!("measured: restart until the node is Ready {restart_time:?}");
}
