//! Tests of `agent::runtime` against the real kernel: namespaces, veths, a
//! bridge, cgroups, ptys. They need root; without it they pass after saying
//! they skipped.
//!
//! Network safety: each test re-runs itself (`<this binary> --exact <test>`)
//! under `ip netns exec` in a network namespace of its own (`rkrt-<pid>-<n>`),
//! so the bridge, veths, addresses and sysctls the runtime makes live there
//! only; the namespace (and anything left running in it) is removed when the
//! test ends, also on failure. The runtime's infra process is this binary too:
//! a wrapper script runs the `infra_entry` test with the `pod-infra` arguments.

use agent::runtime::{
    ContainerSpec, ExecSpec, Runtime, RuntimeConfig, RuntimeError, Sandbox, SandboxSpec, POD_IP_PLACEHOLDER,
};
use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Set (to the test name) in the process that runs inside the test's netns.
const INNER: &str = "RKRT_INNER";
/// Set in the infra processes (see `infra_entry`).
const INFRA: &str = "RKRT_INFRA";
/// Identifies one test run: in every process the run starts (inner test, infra,
/// containers) and in its pod uids, so the cleanup can find them all.
const RUN: &str = "RKRT_RUN";
const CIDR: &str = "10.244.7.0/24";
/// The pod network's MTU (a VXLAN overlay on a 1500-byte LAN).
const POD_MTU: u32 = 1450;
const RESOLV: &str =
    "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n";

/// The tests share the host's cgroup hierarchies and CPU: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Not a test: the pod infra process or a container shim, when run through
/// the wrapper script.
#[test]
fn infra_entry() {
    if std::env::var_os(INFRA).is_none() {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(p) = args.iter().position(|a| a == "container-shim") {
        std::process::exit(agent::runtime::shim_main(&args[p + 1..]));
    }
    let start = args.iter().position(|a| a == "pod-infra").map_or(args.len(), |p| p + 1);
    std::process::exit(agent::runtime::infra_main(&args[start..]));
}

fn run_id() -> String {
    std::env::var(RUN).unwrap_or_else(|_| std::process::id().to_string())
}

/// A pod uid unique to this run (cgroups are shared by all network namespaces).
fn uid(base: &str) -> String {
    format!("{base}-{}", run_id())
}

fn skip_reason() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root");
    }
    if !Command::new("ip").arg("-V").stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
        return Some("needs iproute2 (`ip`)");
    }
    None
}

/// A network namespace that is deleted (after killing what runs in it) on drop.
struct Netns(String);

impl Netns {
    fn create(test: &str) -> Netns {
        let n = test.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 100_000;
        let name = format!("rkrt-{}-{n}", std::process::id());
        let ok = Command::new("ip").args(["netns", "add", &name]).status().is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name} failed");
        Netns(name)
    }
}

impl Drop for Netns {
    /// Kill what runs in the namespace and every process of this run (pods
    /// live in namespaces of their own), remove the run's cgroups, delete the
    /// namespace.
    fn drop(&mut self) {
        let mut pids: Vec<i32> = Vec::new();
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            pids.extend(String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
        let marker = format!("{RUN}={}", run_id());
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for pid in dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
                let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                if pid != std::process::id() as i32 && env.split(|&b| b == 0).any(|e| e == marker.as_bytes()) {
                    pids.push(pid);
                }
            }
        }
        for &pid in &pids {
            // SAFETY: kill(2).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
        let suffix = format!("-{}", run_id());
        for h in ["memory", "cpu", "pids", ""] {
            let base = Path::new("/sys/fs/cgroup").join(h).join("rkube");
            let Ok(pods) = std::fs::read_dir(&base) else { continue };
            for pod in pods.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(&suffix)) {
                if let Ok(cs) = std::fs::read_dir(pod.path()) {
                    for c in cs.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
                        let _ = std::fs::remove_dir(c.path());
                    }
                }
                let _ = std::fs::remove_dir(pod.path());
            }
        }
        let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
    }
}

fn root_link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run `body` inside a fresh network namespace (see the module docs).
fn in_netns<F, Fut>(test: &str, body: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    if std::env::var(INNER).as_deref() == Ok(test) {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
        rt.block_on(body());
        return;
    }
    if std::env::var_os(INNER).is_some() || std::env::var_os(INFRA).is_some() {
        return;
    }
    if let Some(why) = skip_reason() {
        eprintln!("skipping {test}: {why}");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bridge_in_root_before = root_link_exists("rkube0");
    // The runtime creates `rkube/` in the host's cgroup hierarchies; remove what we created.
    let cgroup_bases: Vec<PathBuf> = ["memory", "cpu", "pids", ""]
        .iter()
        .map(|h| Path::new("/sys/fs/cgroup").join(h).join("rkube"))
        .filter(|p| !p.exists())
        .collect();
    let ns = Netns::create(test);
    let out_path = std::env::temp_dir().join(format!("{}.out", ns.0));
    let out = std::fs::File::create(&out_path).expect("output file");
    let err = out.try_clone().expect("dup");
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(INNER, test)
        .env(RUN, run_id())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawning the inner test");
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    println!("---- inner run of {test} in netns {} ----\n{output}", ns.0);
    drop(ns);
    for base in cgroup_bases {
        let _ = std::fs::remove_dir(base);
    }
    assert!(status.is_some_and(|s| s.success()), "inner test {test} failed or timed out (output above)");
    assert!(bridge_in_root_before || !root_link_exists("rkube0"), "rkube0 appeared in the root network namespace");
}

struct TestEnv {
    dir: tempfile::TempDir,
    cfg: RuntimeConfig,
}

/// A data dir and an infra wrapper script in a fresh temporary directory.
fn test_env() -> TestEnv {
    let dir = tempfile::Builder::new().prefix("rkrt").tempdir().expect("tempdir");
    let cfg = write_config(dir.path());
    TestEnv { dir, cfg }
}

/// Write the infra wrapper script into `dir`; the config using it and `dir/data`.
fn write_config(dir: &Path) -> RuntimeConfig {
    let exe = std::env::current_exe().expect("current_exe");
    let script = dir.join("infra.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{INFRA}=1 {RUN}={} exec '{}' --exact infra_entry --nocapture --test-threads=1 -q -- \"$@\"\n",
            run_id(),
            exe.display()
        ),
    )
    .expect("writing infra.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    RuntimeConfig {
        data_dir: dir.join("data"),
        bridge: "rkube0".into(),
        pod_cidr: CIDR.parse().expect("cidr"),
        self_exe: script,
        mtu: Some(POD_MTU),
    }
}

fn sandbox_spec(uid: &str, name: &str) -> SandboxSpec {
    SandboxSpec {
        uid: uid.into(),
        namespace: "default".into(),
        name: name.into(),
        hostname: name.into(),
        resolv_conf: RESOLV.into(),
        hosts: format!("127.0.0.1\tlocalhost\n{POD_IP_PLACEHOLDER}\t{name}\n"),
        mounts: Vec::new(),
        host_network: None,
        host_ipc: false,
    }
}

fn container_spec(data_dir: &Path, uid: &str, name: &str, argv: &[&str]) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![("GREETING".into(), "hello".into()), (RUN.into(), run_id())],
        working_dir: None,
        memory_limit: None,
        cpu_limit_millis: None,
        log_path: data_dir.join("logs").join(uid).join(name).join("0.log"),
        rootfs: None,
    }
}

/// The messages of a CRI log file, checking the format of every line.
fn log_messages(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut p = line.splitn(4, ' ');
            let (ts, stream, tag, msg) = (p.next(), p.next(), p.next(), p.next());
            let ts = ts.unwrap_or_default();
            assert!(
                ts.len() == 30 && ts.ends_with('Z') && &ts[10..11] == "T" && &ts[19..20] == ".",
                "timestamp in {line:?}"
            );
            assert!(ts.starts_with("20"), "{line:?}");
            assert_eq!(tag, Some("F"), "{line:?}");
            (stream.unwrap_or_default().to_string(), msg.unwrap_or_default().to_string())
        })
        .collect()
}

async fn wait_for_log(path: &Path, lines: usize) -> Vec<(String, String)> {
    for _ in 0..500 {
        let msgs = log_messages(path);
        if msgs.len() >= lines {
            return msgs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("log {} has fewer than {lines} lines: {:?}", path.display(), log_messages(path));
}

/// Run a command through exec with piped stdio; (exit code, stdout, stderr).
async fn exec(rt: &Runtime, sb: &Sandbox, argv: &[&str], input: &[u8]) -> (i32, String, String) {
    let spec = ExecSpec { argv: argv.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    let mut p = rt.exec(sb, &spec).await.expect("exec");
    let mut stdin = p.stdin.take().expect("stdin");
    stdin.write_all(input).await.expect("stdin write");
    drop(stdin);
    let (mut out, mut err) = (p.stdout.take().expect("stdout"), p.stderr.take().expect("stderr"));
    let read_out = tokio::spawn(async move {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s).await;
        s
    });
    let mut e = String::new();
    let _ = err.read_to_string(&mut e).await;
    let code = tokio::time::timeout(Duration::from_secs(30), p.wait()).await.expect("exec timed out").expect("wait");
    (code, read_out.await.expect("stdout task"), e)
}

fn ip_links() -> String {
    let out = Command::new("ip").args(["-o", "link"]).output().expect("ip link");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn proc_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn http_get(ip: Ipv4Addr, port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

fn python3() -> Option<PathBuf> {
    ["/usr/bin/python3", "/usr/local/bin/python3"].iter().map(PathBuf::from).find(|p| p.exists())
}

#[test]
fn sandbox_logs_network_and_exec() {
    in_netns("sandbox_logs_network_and_exec", || async {
        let env = test_env();
        let (uid_a, uid_b) = (uid("uid-a"), uid("uid-b"));
        let rt = Runtime::new(env.cfg.clone()).await.expect("runtime");
        rt.recover().await.expect("recover on an empty data dir");
        let bridge = Command::new("ip").args(["-o", "-4", "addr", "show", "dev", "rkube0"]).output().expect("ip addr");
        assert!(String::from_utf8_lossy(&bridge.stdout).contains("10.244.7.1/24"), "bridge address");
        assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("ip_forward").trim(), "1");
        let node_resolv = std::fs::read("/etc/resolv.conf").expect("node resolv.conf");
        let node_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");

        let t = Instant::now();
        let a = rt.create_sandbox(&sandbox_spec(&uid_a, "pod-a")).await.expect("sandbox a");
        let sandbox_time = t.elapsed();
        let net: ipnet::Ipv4Net = CIDR.parse().expect("cidr");
        assert!(
            net.contains(&a.ip)
                && a.ip != Ipv4Addr::new(10, 244, 7, 1)
                && a.ip != net.network()
                && a.ip != net.broadcast()
        );
        assert_eq!(rt.sandbox(&uid_a), Some(a.clone()));
        assert_eq!(rt.create_sandbox(&sandbox_spec(&uid_a, "pod-a")).await.expect("again"), a, "idempotent");
        assert!(ip_links().contains(&format!("{}@", a.veth)), "veth {} missing", a.veth);
        let port = Command::new("ip").args(["-d", "link", "show", "dev", &a.veth]).output().expect("ip -d link");
        let port = String::from_utf8_lossy(&port.stdout);
        assert!(port.contains("master rkube0") && port.contains("hairpin on"), "{port}");

        let t = Instant::now();
        let spec = container_spec(
            &env.cfg.data_dir,
            &uid_a,
            "main",
            &["sh", "-c", "echo hi; hostname; cat /etc/resolv.conf; echo oops >&2; sleep 30"],
        );
        let main = rt.start_container(&a, &spec).await.expect("start main");
        let start_time = t.elapsed();
        let msgs = wait_for_log(&spec.log_path, 6).await;
        let stdout: Vec<&str> = msgs.iter().filter(|(s, _)| s == "stdout").map(|(_, m)| m.as_str()).collect();
        let mut want = vec!["hi", "pod-a"];
        want.extend(RESOLV.lines());
        assert_eq!(stdout, want);
        assert!(msgs.contains(&("stderr".to_string(), "oops".to_string())), "{msgs:?}");
        assert_eq!(
            std::fs::read("/etc/resolv.conf").expect("node resolv.conf"),
            node_resolv,
            "node resolv.conf changed"
        );
        assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname"), node_hostname);

        // Exec: piped stdio, exit code, the container's env, the pod's files.
        let (code, out, err) = exec(&rt, &a, &["sh", "-c", "echo out; echo err >&2; cat; exit 3"], b"from stdin").await;
        assert_eq!((code, out.as_str(), err.as_str()), (3, "out\nfrom stdin", "err\n"));
        let (code, out, _) =
            exec(&rt, &a, &["sh", "-c", "echo $GREETING $HOSTNAME $(hostname); cat /etc/hosts"], b"").await;
        assert_eq!(code, 0);
        assert_eq!(out, format!("hello pod-a pod-a\n127.0.0.1\tlocalhost\n{}\tpod-a\n", a.ip));
        let (code, out, _) = exec(&rt, &a, &["cat", "/etc/resolv.conf"], b"").await;
        assert_eq!((code, out.as_str()), (0, RESOLV));
        let (code, out, _) =
            exec(&rt, &a, &["sh", "-c", "ip -o -4 addr show dev eth0; ip route; ip -o link show dev eth0"], b"").await;
        assert_eq!(code, 0);
        assert!(out.contains(&format!("inet {}/24", a.ip)) && out.contains("default via 10.244.7.1 dev eth0"), "{out}");
        assert!(out.contains(&format!(" mtu {POD_MTU} ")), "the pod network's MTU: {out}");
        match rt.exec(&a, &ExecSpec { argv: vec!["no-such-command".into()], ..Default::default() }).await {
            Err(RuntimeError::ExecutableNotFound(c)) => assert_eq!(c, "no-such-command"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("exec of a missing command succeeded"),
        }

        // Exec on a pty, with a resize.
        let spec_tty = ExecSpec {
            argv: vec!["sh".into(), "-c".into(), "read x; stty size; tty".into()],
            tty: true,
            ..Default::default()
        };
        let mut p = rt.exec(&a, &spec_tty).await.expect("exec tty");
        assert!(p.stderr.is_none());
        p.resizer().expect("resizer").resize(100, 30);
        let mut w = p.stdin.take().expect("pty stdin");
        w.write_all(b"go\n").await.expect("pty write");
        let mut r = p.stdout.take().expect("pty stdout");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut out))
            .await
            .expect("pty output timed out")
            .expect("pty read");
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains("30 100") && out.contains("/dev/pts/"), "{out:?}");
        assert_eq!(p.wait().await.expect("wait"), 0);

        // The pod IP from the node, and from another pod.
        let b = rt.create_sandbox(&sandbox_spec(&uid_b, "pod-b")).await.expect("sandbox b");
        assert_ne!(a.ip, b.ip);
        assert_ne!(a.veth, b.veth);
        let spec_b = container_spec(&env.cfg.data_dir, &uid_b, "sleeper", &["sleep", "300"]);
        rt.start_container(&b, &spec_b).await.expect("start in b");
        if let Some(py) = python3() {
            let www = env.dir.path().join("www");
            std::fs::create_dir_all(&www).expect("www");
            std::fs::write(www.join("index.txt"), "hello from pod-a\n").expect("index");
            let mut web = container_spec(&env.cfg.data_dir, &uid_a, "web", &[]);
            web.argv = vec![py.display().to_string(), "-m".into(), "http.server".into(), "8080".into()];
            web.working_dir = Some(www);
            rt.start_container(&a, &web).await.expect("start web");
            let mut body = String::new();
            for _ in 0..200 {
                match http_get(a.ip, 8080, "/index.txt") {
                    Ok(b) => {
                        body = b;
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            assert!(
                body.starts_with("HTTP/1.0 200") && body.ends_with("hello from pod-a\n"),
                "from the node: {body:?}"
            );
            let script =
                format!("exec 3<>/dev/tcp/{}/8080; printf 'GET /index.txt HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3", a.ip);
            let (code, out, err) = exec(&rt, &b, &["bash", "-c", &script], b"").await;
            assert_eq!(code, 0, "{err}");
            assert!(out.ends_with("hello from pod-a\n"), "from pod b: {out:?}");
            let served = wait_for_log(&web.log_path, 2).await;
            assert!(served.iter().any(|(s, m)| s == "stderr" && m.contains(&b.ip.to_string())), "{served:?}");
        } else {
            eprintln!("no python3: skipping the HTTP part");
        }
        let ping = format!("command -v ping >/dev/null || exit 127; ping -c 1 -W 2 {}", a.ip);
        let (code, out, _) = exec(&rt, &b, &["sh", "-c", &ping], b"").await;
        if code != 127 {
            assert_eq!(code, 0, "ping a from b: {out}");
        }

        // Removal leaves nothing.
        let infra_a = a.infra_pid;
        rt.remove_sandbox(&uid_a).await.expect("remove a");
        rt.remove_sandbox(&uid_b).await.expect("remove b");
        rt.remove_sandbox(&uid_b).await.expect("removing twice is fine");
        let links = ip_links();
        assert!(!links.contains(&a.veth) && !links.contains(&b.veth), "{links}");
        assert!(!proc_alive(main.pid) && !proc_alive(infra_a) && !proc_alive(b.infra_pid));
        for d in &main.cgroups {
            assert!(!d.exists(), "{} still exists", d.display());
            assert!(!d.parent().is_some_and(Path::exists), "pod cgroup of {} still exists", d.display());
        }
        assert!(rt.sandbox(&uid_a).is_none() && rt.ip_assignments().is_empty());
        assert!(!env.cfg.data_dir.join("pods").join(&uid_a).exists());
        eprintln!("measured: sandbox create {sandbox_time:?}, container start {start_time:?}");
    });
}

#[test]
fn limits_stop_and_exit() {
    in_netns("limits_stop_and_exit", || async {
        let env = test_env();
        let uid_l = uid("uid-l");
        let rt = Runtime::new(env.cfg.clone()).await.expect("runtime");
        let sb = rt.create_sandbox(&sandbox_spec(&uid_l, "limited")).await.expect("sandbox");

        let mut spec = container_spec(&env.cfg.data_dir, &uid_l, "limited", &["sleep", "300"]);
        spec.memory_limit = Some(64 << 20);
        spec.cpu_limit_millis = Some(250);
        let c = rt.start_container(&sb, &spec).await.expect("start");
        let cgroups_enabled =
            std::fs::read_to_string("/proc/cgroups").is_ok_and(|s| s.lines().any(|l| l.starts_with("memory")));
        assert!(!c.cgroups.is_empty() || !cgroups_enabled, "no cgroup although the kernel has the memory controller");
        let (mut memory_checked, mut cpu_checked) = (false, false);
        for d in &c.cgroups {
            let read = |f: &str| std::fs::read_to_string(d.join(f)).ok().map(|s| s.trim().to_string());
            if let Some(v) = read("memory.limit_in_bytes").or_else(|| read("memory.max")) {
                assert_eq!(v, (64u64 << 20).to_string(), "{}", d.display());
                memory_checked = true;
            }
            if let Some(v) = read("cpu.cfs_quota_us") {
                assert_eq!(v, "25000");
                assert_eq!(read("cpu.cfs_period_us").as_deref(), Some("100000"));
                cpu_checked = true;
            }
            if let Some(v) = read("cpu.max") {
                assert_eq!(v, "25000 100000");
                cpu_checked = true;
            }
        }
        assert_eq!((memory_checked, cpu_checked), (cgroups_enabled, cgroups_enabled));
        let own = std::fs::read_to_string(format!("/proc/{}/cgroup", c.pid)).expect("/proc/pid/cgroup");
        if cgroups_enabled {
            assert!(own.contains(&format!("/rkube/{uid_l}/limited")), "{own}");
        }
        let hostname = std::fs::read_link(format!("/proc/{}/ns/uts", c.pid)).expect("uts ns");
        assert_eq!(hostname, std::fs::read_link(format!("/proc/{}/ns/uts", sb.infra_pid)).expect("infra uts"));

        // SIGTERM is enough for sleep.
        let t = Instant::now();
        let exit = rt.stop_container(&c, Duration::from_secs(5)).await.expect("stop");
        let term_time = t.elapsed();
        assert_eq!((exit.signal, exit.exit_code), (Some(libc::SIGTERM), 143));
        assert!(term_time < Duration::from_secs(2), "{term_time:?}");
        assert!(c.cgroups.iter().all(|d| !d.exists()), "cgroup left after stop");
        assert!(!proc_alive(c.pid));
        assert_eq!(rt.stop_container(&c, Duration::from_secs(5)).await.expect("stop again"), exit);

        // Ignoring SIGTERM gets SIGKILL after the grace period.
        let spec = container_spec(
            &env.cfg.data_dir,
            &uid_l,
            "stubborn",
            &["sh", "-c", "trap '' TERM; echo ready; exec sleep 300"],
        );
        let c = rt.start_container(&sb, &spec).await.expect("start stubborn");
        wait_for_log(&spec.log_path, 1).await;
        let t = Instant::now();
        let exit = rt.stop_container(&c, Duration::from_secs(1)).await.expect("stop stubborn");
        let kill_time = t.elapsed();
        assert_eq!((exit.signal, exit.exit_code), (Some(libc::SIGKILL), 137));
        assert!(kill_time >= Duration::from_secs(1) && kill_time < Duration::from_secs(3), "{kill_time:?}");

        // A natural exit: its code, and what it left in the background is killed.
        let spec = container_spec(&env.cfg.data_dir, &uid_l, "quick", &["sh", "-c", "sleep 300 & echo $!; exit 7"]);
        let c = rt.start_container(&sb, &spec).await.expect("start quick");
        let exit = tokio::time::timeout(Duration::from_secs(10), c.wait()).await.expect("exit");
        assert_eq!((exit.exit_code, exit.signal), (7, None));
        let bg: u32 = wait_for_log(&spec.log_path, 1).await[0].1.parse().expect("background pid");
        assert!(!proc_alive(bg), "background process {bg} survived its container");
        // The same name can start again once it has exited; a running one cannot.
        let again = rt
            .start_container(&sb, &container_spec(&env.cfg.data_dir, &uid_l, "quick", &["sleep", "300"]))
            .await
            .expect("restart");
        assert!(matches!(
            rt.start_container(&sb, &container_spec(&env.cfg.data_dir, &uid_l, "quick", &["sleep", "1"])).await,
            Err(RuntimeError::AlreadyRunning(_))
        ));
        assert!(matches!(
            rt.start_container(&sb, &container_spec(&env.cfg.data_dir, &uid_l, "x", &["/no/such/binary-rkube"])).await,
            Err(RuntimeError::Io { .. })
        ));

        let pod_cgroups: Vec<PathBuf> =
            again.cgroups.iter().filter_map(|d| d.parent().map(Path::to_path_buf)).collect();
        rt.remove_sandbox(&uid_l).await.expect("remove");
        assert!(!proc_alive(again.pid) && !proc_alive(sb.infra_pid));
        assert!(pod_cgroups.iter().all(|d| !d.exists()), "pod cgroup left: {pod_cgroups:?}");
        assert!(!ip_links().contains(&sb.veth));
        eprintln!("measured: SIGTERM stop {term_time:?}, SIGKILL stop with 1s grace {kill_time:?}");
    });
}

/// Kills (SIGKILL) and reaps the child when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP echo server for a pod: prints `listening`, then echoes every
/// connection's data until it closes.
const ECHO_SERVER: &str = "import socket,threading\n\
s=socket.socket()\n\
s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
s.bind(('',7000))\n\
s.listen()\n\
print('listening',flush=True)\n\
def serve(c):\n    \
    while True:\n        \
        d=c.recv(1024)\n        \
        if not d: break\n        \
        print('echo',d.decode().strip(),flush=True)\n        \
        c.sendall(d)\n\
while True:\n    \
    c,_=s.accept()\n    \
    threading.Thread(target=serve,args=(c,)).start()\n";

/// The first half of `recover_after_crash`: a runtime that is SIGKILLed. It
/// uses the test's directory (`dir`), which the test removes.
async fn crashing_agent(dir: PathBuf) {
    let cfg = write_config(&dir);
    let (uid_keep, uid_broken) = (uid("uid-keep"), uid("uid-broken"));
    let rt = Runtime::new(cfg.clone()).await.expect("runtime");
    let sb = rt.create_sandbox(&sandbox_spec(&uid_keep, "keep")).await.expect("sandbox");
    let mut main = container_spec(&cfg.data_dir, &uid_keep, "main", &[]);
    let py = python3().map(|p| p.display().to_string()).unwrap_or_default();
    main.argv = if py.is_empty() {
        ["sh", "-c", "echo listening; exec sleep 300"].iter().map(|s| s.to_string()).collect()
    } else {
        vec![py, "-c".into(), ECHO_SERVER.into()]
    };
    let c = rt.start_container(&sb, &main).await.expect("start main");
    wait_for_log(&main.log_path, 1).await;
    // Ends (exit 7) while no agent runs.
    let short = container_spec(&cfg.data_dir, &uid_keep, "short", &["sh", "-c", "sleep 2; exit 7"]);
    rt.start_container(&sb, &short).await.expect("start short");
    let broken = rt.create_sandbox(&sandbox_spec(&uid_broken, "broken")).await.expect("broken sandbox");
    let b = rt
        .start_container(
            &broken,
            &container_spec(&cfg.data_dir, &uid_broken, "main", &["sh", "-c", "sleep 300 & exec sleep 300"]),
        )
        .await
        .expect("start in broken");
    let cgroups: Vec<String> = b.cgroups.iter().map(|p| p.display().to_string()).collect();
    println!(
        "READY {} {} {} {} {} {} {} {}",
        sb.ip,
        sb.infra_pid,
        c.pid,
        sb.veth,
        broken.infra_pid,
        b.pid,
        broken.veth,
        cgroups.join(",")
    );
    let _ = std::io::stdout().flush();
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

/// Pids of the container shims of this test run.
fn shim_pids(uid: &str) -> Vec<u32> {
    let marker = format!("RKUBE_CONTAINER_SHIM={uid}/");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            env.split(|&b| b == 0).any(|e| e.starts_with(marker.as_bytes())) && proc_alive(*pid)
        })
        .collect()
}

#[test]
fn recover_after_crash() {
    if std::env::var(INNER).as_deref() == Ok("recover_after_crash") {
        if let Some(dir) = std::env::var_os("RKRT_CRASH_DIR") {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
            rt.block_on(crashing_agent(PathBuf::from(dir)));
            return;
        }
    }
    in_netns("recover_after_crash", || async {
        let env = test_env();
        let (uid_keep, uid_broken, uid_other) = (uid("uid-keep"), uid("uid-broken"), uid("uid-other"));
        let exe = std::env::current_exe().expect("current_exe");
        let mut agent = KillOnDrop(
            Command::new(exe)
                .args(["--exact", "recover_after_crash", "--nocapture", "--test-threads=1"])
                .env("RKRT_CRASH_DIR", env.dir.path())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawning the crashing agent"),
        );
        let mut stdout = agent.0.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut all = String::new();
            let mut buf = [0u8; 1024];
            loop {
                if let Some(line) = all.lines().find_map(|l| l.find("READY ").map(|i| l[i..].to_string())) {
                    let _ = tx.send(Some(line));
                    return;
                }
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                    Ok(n) => all.push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        let line =
            rx.recv_timeout(Duration::from_secs(60)).ok().flatten().expect("the crashing agent did not get ready");
        let f: Vec<&str> = line.split(' ').collect();
        let ip: Ipv4Addr = f[1].parse().expect("ip");
        let (infra, main): (u32, u32) = (f[2].parse().expect("infra"), f[3].parse().expect("pid"));
        let veth = f[4].to_string();
        let (broken_infra, broken_main): (u32, u32) = (f[5].parse().expect("infra"), f[6].parse().expect("pid"));
        let broken_veth = f[7].to_string();
        let broken_cgroups: Vec<PathBuf> =
            f.get(8).map(|s| s.split(',').filter(|s| !s.is_empty()).map(PathBuf::from).collect()).unwrap_or_default();
        let with_tcp = python3().is_some();
        // One connection, opened before the crash and used after the restart.
        let mut conn = with_tcp.then(|| {
            let mut c = TcpStream::connect_timeout(&(ip, 7000).into(), Duration::from_secs(5)).expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            c.write_all(b"one\n").expect("send");
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).expect("echo before the crash");
            assert_eq!(&buf, b"one\n");
            c
        });

        // SIGKILL: no cleanup at all. Pods and their shims live on.
        agent.0.kill().expect("kill agent");
        agent.0.wait().expect("wait agent");
        assert!(proc_alive(infra) && proc_alive(main), "pod processes should outlive the agent");
        assert_eq!(shim_pids(&uid_keep).len(), 2, "both shims of the kept pod outlive the agent");
        // While no agent runs: `short` ends (exit 7), and the broken pod loses its infra.
        std::thread::sleep(Duration::from_secs(3));
        // SAFETY: kill(2) of a process of this test run.
        unsafe { libc::kill(broken_infra as i32, libc::SIGKILL) };
        assert!(ip_links().contains(&veth));

        let rt = Runtime::new(env.cfg.clone()).await.expect("runtime after crash");
        let t = Instant::now();
        rt.recover().await.expect("recover");
        let recover_time = t.elapsed();

        // The broken pod is cleaned up: processes, shim, veth, cgroups.
        assert!(!proc_alive(broken_main), "the broken pod's container survived recover");
        assert!(shim_pids(&uid_broken).is_empty(), "the broken pod's shim survived recover");
        assert!(!ip_links().contains(&broken_veth), "leftover veth survived recover");
        for d in &broken_cgroups {
            assert!(!d.exists() && !d.parent().is_some_and(Path::exists), "leftover cgroup {}", d.display());
        }
        assert!(rt.sandbox(&uid_broken).is_none());
        let broken_ip = *rt.ip_assignments().get(&uid_broken).expect("IP assignment kept for a recreated pod");

        // The kept pod is adopted as it was: same infra, IP, veth, container pid.
        let sb = rt.sandbox(&uid_keep).expect("adopted sandbox");
        assert_eq!((sb.ip, sb.infra_pid, sb.veth.as_str(), sb.name.as_str()), (ip, infra, veth.as_str(), "keep"));
        assert_eq!(sb.hostname, "keep");
        assert!(rt.infra_alive(&uid_keep));
        let c = rt.container(&uid_keep, "main").expect("adopted container");
        assert_eq!(c.pid, main);
        assert!(c.is_running() && proc_alive(main));
        let short = rt.container(&uid_keep, "short").expect("adopted exited container");
        let exit = short.exit_info().expect("the exit recorded while no agent ran");
        assert_eq!((exit.exit_code, exit.signal), (7, None));
        assert!(exit.finished_at > short.started_at, "{exit:?}");

        // The connection from before the crash still works, and the log goes on.
        if let Some(conn) = conn.as_mut() {
            conn.write_all(b"two\n").expect("send after recover");
            let mut buf = [0u8; 4];
            conn.read_exact(&mut buf).expect("echo after recover");
            assert_eq!(&buf, b"two\n");
            let msgs = wait_for_log(&c.log_path, 3).await;
            let out: Vec<&str> = msgs.iter().map(|(_, m)| m.as_str()).collect();
            assert_eq!(out, ["listening", "echo one", "echo two"]);
        }
        // Exec into the adopted container: its namespaces and environment.
        let (code, out, _) = exec(&rt, &sb, &["sh", "-c", "echo $GREETING $(hostname)"], b"").await;
        assert_eq!((code, out.as_str()), (0, "hello keep\n"));

        // The exit of an adopted container is noticed (its shim is not our child).
        let exit = rt.stop_container(&c, Duration::from_secs(5)).await.expect("stop adopted");
        assert_eq!((exit.signal, exit.exit_code), (Some(libc::SIGTERM), 143));
        assert!(!proc_alive(main));
        assert!(c.cgroups.iter().all(|d| !d.exists()), "cgroup left after stop");
        // And the pod runs new containers.
        let again = container_spec(&env.cfg.data_dir, &uid_keep, "main", &["sh", "-c", "echo again; sleep 300"]);
        let again = rt.start_container(&sb, &again).await.expect("start in the adopted sandbox");
        assert!(again.is_running() && again.pid != main);

        let other = rt.create_sandbox(&sandbox_spec(&uid_other, "other")).await.expect("other sandbox");
        assert!(other.ip != ip && other.ip != broken_ip);
        let recreated = rt.create_sandbox(&sandbox_spec(&uid_broken, "broken")).await.expect("recreated sandbox");
        assert_eq!(recreated.ip, broken_ip, "same uid, same IP");
        rt.remove_sandbox(&uid_keep).await.expect("remove the adopted pod");
        assert!(!proc_alive(infra) && !proc_alive(again.pid) && shim_pids(&uid_keep).is_empty());
        assert!(!ip_links().contains(&veth));
        rt.remove_all().await.expect("remove the rest");
        assert!(rt.sandboxes().is_empty() && !ip_links().contains(&other.veth));
        assert!(rt.ip_assignments().is_empty());
        eprintln!("measured: recover {recover_time:?}");
    });
}

#[test]
fn second_runtime_on_one_data_dir_is_refused() {
    in_netns("second_runtime_on_one_data_dir_is_refused", || async {
        let env = test_env();
        let _rt = Runtime::new(env.cfg.clone()).await.expect("runtime");
        assert!(matches!(Runtime::new(env.cfg.clone()).await, Err(RuntimeError::Locked(_))));
    });
}

/// A `hostNetwork: true` sandbox: the node's network and UTS namespaces (no veth,
/// no IPAM address, the node's IP and hostname), its own mount namespace (its
/// /etc/hosts), adopted by the next runtime, and removing it kills only its processes.
#[test]
fn host_network_sandbox_shares_the_node_network() {
    in_netns("host_network_sandbox_shares_the_node_network", || async {
        let env = test_env();
        let uid_h = uid("uid-host");
        let node_ip = Ipv4Addr::new(192, 0, 2, 10);
        // A fresh netns (this test's "node") starts with lo down; a real node's is up.
        let lo = Command::new("ip").args(["link", "set", "lo", "up"]).status().expect("ip link set lo up");
        assert!(lo.success());
        let rt = Runtime::new(env.cfg.clone()).await.expect("runtime");
        rt.recover().await.expect("recover");
        let links_before = ip_links().lines().count();
        let node_netns = std::fs::read_link("/proc/self/ns/net").expect("netns").display().to_string();
        let node_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
        let mut spec = sandbox_spec(&uid_h, "hostpod");
        spec.hosts = "# host network\n127.0.0.1\tlocalhost\n".into();
        spec.host_network = Some(node_ip);
        let sb = rt.create_sandbox(&spec).await.expect("host-network sandbox");
        assert_eq!((sb.ip, sb.veth.as_str(), sb.host_network), (node_ip, "", true), "{sb:?}");
        assert_eq!(sb.hostname, node_hostname.trim(), "the node's hostname");
        assert!(!rt.ip_assignments().contains_key(&uid_h), "no IPAM address for a host-network pod");
        assert_eq!(ip_links().lines().count(), links_before, "no veth for a host-network pod:\n{}", ip_links());

        let main = container_spec(&env.cfg.data_dir, &uid_h, "main", &["sleep", "300"]);
        let c = rt.start_container(&sb, &main).await.expect("start main");
        let (code, out, _) =
            exec(&rt, &sb, &["sh", "-c", "readlink /proc/self/ns/net; hostname; cat /etc/hosts"], b"").await;
        assert_eq!(code, 0);
        assert_eq!(out, format!("{node_netns}\n{}\n# host network\n127.0.0.1\tlocalhost\n", node_hostname.trim()));
        assert_ne!(
            std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
            "# host network\n127.0.0.1\tlocalhost\n",
            "the pod's /etc/hosts stays in its mount namespace"
        );
        assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname"), node_hostname);
        // A server in the pod listens on the node's own addresses.
        if let Some(py) = python3() {
            let www = env.dir.path().join("www-host");
            std::fs::create_dir_all(&www).expect("www");
            std::fs::write(www.join("index.txt"), "hello from the host network\n").expect("index");
            let mut web = container_spec(&env.cfg.data_dir, &uid_h, "web", &[]);
            web.argv = vec![
                py.display().to_string(),
                "-m".into(),
                "http.server".into(),
                "18089".into(),
                "-b".into(),
                "127.0.0.1".into(),
            ];
            web.working_dir = Some(www);
            rt.start_container(&sb, &web).await.expect("start web");
            let mut got = None;
            for _ in 0..100 {
                if let Ok(body) = http_get(Ipv4Addr::LOCALHOST, 18089, "/index.txt") {
                    got = Some(body);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let got = got.expect("the pod's server on the node's loopback");
            assert!(got.ends_with("hello from the host network\n"), "{got}");
        } else if std::env::var_os("CI").is_some() {
            panic!("python3 is missing (CI installs it)");
        }

        // The next runtime adopts it as it is.
        let infra_pid = sb.infra_pid;
        drop(rt);
        let rt = Runtime::new(env.cfg.clone()).await.expect("runtime after restart");
        rt.recover().await.expect("recover");
        let adopted = rt.sandbox(&uid_h).expect("the host-network sandbox was adopted");
        assert_eq!((adopted.ip, adopted.host_network, adopted.infra_pid), (node_ip, true, infra_pid));
        assert!(rt.container(&uid_h, "main").is_some_and(|c| c.is_running()), "main adopted running");

        // Removing it kills its processes, not the node's (this test runs in that netns).
        rt.remove_sandbox(&uid_h).await.expect("remove");
        let start = Instant::now();
        while (proc_alive(c.pid) || proc_alive(infra_pid)) && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!proc_alive(c.pid) && !proc_alive(infra_pid), "the pod's processes are gone");
        assert!(http_get(Ipv4Addr::LOCALHOST, 18089, "/index.txt").is_err(), "its server is gone");
    });
}
