//! `rkube server` as a child process, in a temporary data dir, on a free port.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{io, Error, Result};
use crate::Kubectl;

/// How long [`TestServer::start`] waits for `kubeconfig.yaml` to appear.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is polled.
pub const READY_POLL: Duration = Duration::from_millis(20);
/// How long [`TestServer::stop`] waits after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

const KUBECONFIG: &str = "kubeconfig.yaml";
const STDOUT_LOG: &str = "rkube.stdout.log";
const STDERR_LOG: &str = "rkube.stderr.log";

/// A running `rkube server`:
/// `rkube server --data-dir <dir> --bind-address 127.0.0.1 --port <port> --advertise-address 127.0.0.1`.
///
/// Ready once the server has written `<data-dir>/kubeconfig.yaml` (it does so only
/// when the API answers). Its stdout and stderr go to files (see [`TestServer::logs`]).
/// Dropping it kills the process and removes its temporary directory, unless
/// `RKUBE_KEEP_TEST_DIRS` is set (then the path is printed to stderr).
/// The process also dies with the test process (`PR_SET_PDEATHSIG`), so a crashed or
/// aborted test run leaves no server behind.
#[derive(Debug)]
pub struct TestServer {
    bin: PathBuf,
    data_dir: PathBuf,
    /// Holds the logs (and the data dir, for [`TestServer::start`]).
    work_dir: PathBuf,
    port: u16,
    child: Option<Child>,
    temp: Option<tempfile::TempDir>,
    starts: u32,
    /// Flags added after the standard ones (e.g. `--compaction-interval 1s`).
    extra_args: Vec<String>,
    /// Bound and advertised (a loopback address: `127.0.0.1`, or `127.0.0.2`
    /// for a second API server of one cluster).
    address: std::net::Ipv4Addr,
}

impl TestServer {
    /// Starts `bin` (the test's `env!("CARGO_BIN_EXE_rkube")`) in a fresh temporary
    /// data dir on a free loopback port, and waits until it is ready.
    pub fn start(bin: impl AsRef<Path>) -> Result<TestServer> {
        Self::start_with_args(bin, &[])
    }

    /// [`TestServer::start`] with extra `rkube server` flags.
    pub fn start_with_args(bin: impl AsRef<Path>, extra_args: &[&str]) -> Result<TestServer> {
        Self::start_at(bin, std::net::Ipv4Addr::LOCALHOST, None, extra_args)
    }

    /// [`TestServer::start_with_args`] bound to and advertising `address` (any
    /// 127.x.y.z), on `port` if given (else a free one).
    pub fn start_at(
        bin: impl AsRef<Path>,
        address: std::net::Ipv4Addr,
        port: Option<u16>,
        extra_args: &[&str],
    ) -> Result<TestServer> {
        let temp =
            tempfile::Builder::new().prefix("rkube-test-").tempdir().map_err(io("create a temporary directory"))?;
        let work_dir = temp.path().to_path_buf();
        let data_dir = work_dir.join("data");
        std::fs::create_dir_all(&data_dir).map_err(io(format!("create {}", data_dir.display())))?;
        let mut server = TestServer {
            bin: bin.as_ref().to_path_buf(),
            data_dir,
            work_dir,
            port: match port {
                Some(p) => p,
                None => free_port()?,
            },
            child: None,
            temp: Some(temp),
            starts: 0,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            address,
        };
        // The free port may be taken by someone else before the server binds it:
        // retry on another port in that case.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match server.launch() {
                Err(Error::Exited { logs, .. }) if attempts < 5 && port.is_none() && logs.contains("in use") => {
                    server.port = free_port()?;
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(server),
            }
        }
    }

    /// Starts `bin` on an existing `data_dir` and `port` (e.g. a restart after
    /// [`TestServer::kill9`] of another instance). The data dir is not removed on
    /// drop; the logs go to a temporary directory of their own. A stale
    /// `kubeconfig.yaml` is removed first, so readiness means this server wrote it.
    pub fn start_in(bin: impl AsRef<Path>, data_dir: PathBuf, port: u16) -> Result<TestServer> {
        let temp = tempfile::Builder::new()
            .prefix("rkube-test-logs-")
            .tempdir()
            .map_err(io("create a temporary directory"))?;
        std::fs::create_dir_all(&data_dir).map_err(io(format!("create {}", data_dir.display())))?;
        let mut server = TestServer {
            bin: bin.as_ref().to_path_buf(),
            data_dir,
            work_dir: temp.path().to_path_buf(),
            port,
            child: None,
            temp: Some(temp),
            starts: 0,
            extra_args: Vec::new(),
            address: std::net::Ipv4Addr::LOCALHOST,
        };
        server.launch()?;
        Ok(server)
    }

    /// Stops the server if it runs (SIGTERM, then SIGKILL after 10 s) and starts it
    /// again on the same data dir and port; waits until it is ready.
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            self.stop()?;
        }
        self.launch()
    }

    /// Starts the process and waits until it is ready.
    fn launch(&mut self) -> Result<()> {
        let kubeconfig = self.kubeconfig_path();
        match std::fs::remove_file(&kubeconfig) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("remove {}", kubeconfig.display()))(e)),
        }
        self.starts += 1;
        let stdout = self.open_log(STDOUT_LOG)?;
        let stderr = self.open_log(STDERR_LOG)?;
        let port = self.port.to_string();
        let address = self.address.to_string();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--bind-address", &address, "--port", &port])
            .args(["--advertise-address", &address])
            // API tests run no node: no DNS add-ons (their pods would stay Pending).
            .args(["--disable", "coredns,nodelocaldns"])
            .args(&self.extra_args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if let Some(level) = std::env::var_os("RUST_LOG") {
            cmd.env("RUST_LOG", level);
        }
        let child = spawn_tied(cmd).map_err(io(format!("start {}", self.bin.display())))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn open_log(&self, name: &str) -> Result<File> {
        let path = self.work_dir.join(name);
        let mut f =
            OpenOptions::new().create(true).append(true).open(&path).map_err(io(format!("open {}", path.display())))?;
        let _ = writeln!(f, "=== testkit: start #{} on port {} ===", self.starts, self.port);
        Ok(f)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let path = self.kubeconfig_path();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().ok_or(Error::NotRunning)?;
            if let Some(status) = child.try_wait().map_err(io("wait for rkube"))? {
                self.child = None;
                return Err(Error::Exited { status, logs: self.logs_tail(200) });
            }
            // A partly written file does not parse yet: keep polling.
            if let Ok(text) = std::fs::read_to_string(&path) {
                if kubeconfig_complete(&text) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let logs = self.logs_tail(200);
                self.kill_now();
                return Err(Error::NotReady { timeout: READY_TIMEOUT, path, logs });
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// `<data-dir>/kubeconfig.yaml`, the admin kubeconfig the server wrote.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.data_dir.join(KUBECONFIG)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.address, self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The admin bearer token (`users[0].user.token` of the kubeconfig).
    pub fn token(&self) -> Result<String> {
        let path = self.kubeconfig_path();
        let text = std::fs::read_to_string(&path).map_err(io(format!("read {}", path.display())))?;
        token_from_kubeconfig(&text).ok_or_else(|| Error::Kubeconfig { path, reason: "no users[0].user.token".into() })
    }

    /// The real kubectl against this server (with a discovery cache of its own).
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(self.kubeconfig_path()).with_cache_dir(self.work_dir.join("kubectl-cache"))
    }

    /// Whether the process is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Graceful stop: SIGTERM, wait up to 10 s, then SIGKILL. Keeps the data dir.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().ok_or(Error::NotRunning)?;
        if let Some(status) = child.try_wait().map_err(io("wait for rkube"))? {
            return Ok(status);
        }
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().map_err(io("wait for rkube"))? {
                return Ok(status);
            }
            std::thread::sleep(READY_POLL);
        }
        let _ = child.kill();
        child.wait().map_err(io("wait for rkube"))
    }

    /// SIGKILL, as in a crash. Keeps the data dir (for restart tests).
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().ok_or(Error::NotRunning)?;
        let _ = child.kill();
        child.wait().map_err(io("wait for rkube"))
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the server printed so far (stdout, then stderr), for assertion
    /// messages.
    pub fn logs(&self) -> String {
        self.logs_tail(usize::MAX)
    }

    /// The last `lines` lines of stdout and of stderr.
    pub fn logs_tail(&self, lines: usize) -> String {
        crate::server::tail_logs(&self.work_dir, lines)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill_now();
        if let Some(temp) = self.temp.take() {
            if std::env::var_os("RKUBE_KEEP_TEST_DIRS").is_some() {
                let kept = temp.keep();
                eprintln!("testkit: kept {} (data dir {})", kept.display(), self.data_dir.display());
            }
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("bind 127.0.0.1:0"))?;
    Ok(l.local_addr().map_err(io("local_addr"))?.port())
}

/// A complete kubeconfig: parses as YAML with `clusters` and `users`.
pub(crate) fn kubeconfig_complete(text: &str) -> bool {
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(v) => v.get("clusters").is_some() && v.get("users").is_some(),
        Err(_) => false,
    }
}

/// The bearer token of a kubeconfig's first user (`users[0].user.token`).
pub fn token_from_kubeconfig(yaml: &str) -> Option<String> {
    let v: serde_yaml::Value = serde_yaml::from_str(yaml).ok()?;
    let token = v.get("users")?.get(0)?.get("user")?.get("token")?.as_str()?;
    Some(token.to_string())
}

/// Spawns `cmd` so that it is SIGKILLed when the test process exits.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, and test
/// threads end before the process does (a server in a `static` outlives its test), so
/// children are forked from one helper thread that lives as long as the process.
pub(crate) fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();

    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }

    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the testkit spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("testkit spawner thread is gone"))?;
    reply_rx.recv().map_err(|_| io::Error::other("testkit spawner thread is gone"))?
}

/// The last `lines` lines of the stdout and stderr logs kept in `work_dir`.
pub(crate) fn tail_logs(work_dir: &Path, lines: usize) -> String {
    let mut out = String::new();
    for name in [STDOUT_LOG, STDERR_LOG] {
        let path = work_dir.join(name);
        let text = std::fs::read(&path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let skip = all.len().saturating_sub(lines);
        out.push_str(&format!("--- {} ---\n", path.display()));
        if skip > 0 {
            out.push_str(&format!("[... {skip} lines omitted ...]\n"));
        }
        for l in &all[skip..] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const KUBECONFIG_YAML: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: rkube
  cluster:
    certificate-authority-data: LS0tLS1CRUdJTg==
    server: https://127.0.0.1:6443
contexts:
- name: rkube
  context:
    cluster: rkube
    user: admin
current-context: rkube
users:
- name: admin
  user:
    token: "abc.def-123"
"#;

    #[test]
    fn parses_token() {
        assert_eq!(token_from_kubeconfig(KUBECONFIG_YAML).as_deref(), Some("abc.def-123"));
        assert!(kubeconfig_complete(KUBECONFIG_YAML));
        assert_eq!(token_from_kubeconfig("users: []\n"), None);
        assert_eq!(token_from_kubeconfig("users:\n- name: a\n  user:\n    client-certificate-data: x\n"), None);
        assert_eq!(token_from_kubeconfig("not: [valid"), None);
        assert!(!kubeconfig_complete("apiVersion: v1\nclusters:\n- name: x\n  cluster:\n    server: \"ht"));
    }

    /// A stand-in for `rkube` that follows the contract: parses the flags, writes
    /// the kubeconfig once "ready", exits 0 on SIGTERM.
    const FAKE_RKUBE: &str = r#"#!/usr/bin/env bash
set -u
[ "$1" = server ] || { echo "usage: server ..." >&2; exit 2; }
shift
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) dir=$2; shift 2;;
    --port) port=$2; shift 2;;
    --bind-address|--advertise-address|--disable) shift 2;;
    *) echo "unknown flag $1" >&2; exit 2;;
  esac
done
[ -n "${FAKE_FAIL:-}" ] && { echo "fatal: cannot open store" >&2; exit 3; }
trap 'echo "got SIGTERM"; exit 0' TERM
echo "listening on 127.0.0.1:$port (RUST_LOG=${RUST_LOG:-})"
echo "a line on stderr" >&2
n=$(( $(cat "$dir/starts" 2>/dev/null || echo 0) + 1 )); echo $n > "$dir/starts"
sleep 0.2
printf 'clusters:\n- cluster:\n    server: https://127.0.0.1:%s\n  name: c\nusers:\n- name: u\n  user:\n    token: tok-%s\n' "$port" "$n" > "$dir/kubeconfig.yaml.tmp"
mv "$dir/kubeconfig.yaml.tmp" "$dir/kubeconfig.yaml"
# Short sleeps: a SIGKILLed fake leaves no long-lived orphan behind.
while :; do sleep 0.1; done
"#;

    fn fake_rkube(dir: &Path) -> PathBuf {
        let path = dir.join("rkube");
        std::fs::write(&path, FAKE_RKUBE).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn lifecycle_with_a_fake_server() {
        let bin_dir = tempfile::tempdir().unwrap();
        let bin = fake_rkube(bin_dir.path());

        let mut s = TestServer::start(&bin).expect("start");
        assert!(s.is_running());
        assert!(s.kubeconfig_path().is_file());
        assert_eq!(s.url(), format!("https://127.0.0.1:{}", s.port()));
        assert_eq!(s.token().unwrap(), "tok-1");
        assert_eq!(s.kubectl().kubeconfig(), s.kubeconfig_path());
        let logs = s.logs();
        assert!(logs.contains(&format!("listening on 127.0.0.1:{}", s.port())), "{logs}");
        assert!(logs.contains("a line on stderr"), "{logs}");

        // Graceful stop, then restart on the same data dir and port.
        let status = s.stop().unwrap();
        assert!(status.success(), "{status:?}");
        assert!(s.logs().contains("got SIGTERM"));
        assert!(!s.is_running());
        assert!(matches!(s.stop(), Err(Error::NotRunning)));
        let port = s.port();
        s.restart().unwrap();
        assert_eq!(s.port(), port);
        assert_eq!(s.token().unwrap(), "tok-2");

        // Crash, then a second server on the same data dir.
        let status = s.kill9().unwrap();
        assert!(!status.success());
        let data_dir = s.data_dir().to_path_buf();
        let t = TestServer::start_in(&bin, data_dir.clone(), port).unwrap();
        assert_eq!(t.token().unwrap(), "tok-3");
        let pid = t.pid().unwrap();
        drop(t);
        assert!(data_dir.is_dir(), "start_in must not remove the data dir");
        // The process is gone (reaped): kill(pid, 0) fails.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, 0) }, -1);

        let work_dir = s.work_dir.clone();
        drop(s);
        if std::env::var_os("RKUBE_KEEP_TEST_DIRS").is_none() {
            assert!(!work_dir.exists(), "temp dir not removed");
        }
    }

    #[test]
    fn exit_before_ready_is_an_error_with_logs() {
        let bin_dir = tempfile::tempdir().unwrap();
        let bin = fake_rkube(bin_dir.path());
        // FAKE_FAIL is read by the fake from the environment it inherits; set it
        // through a wrapper so the test does not touch this process's environment.
        let wrapper = bin_dir.path().join("failing-rkube");
        std::fs::write(&wrapper, format!("#!/bin/sh\nFAKE_FAIL=1 exec '{}' \"$@\"\n", bin.display())).unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        match TestServer::start(&wrapper) {
            Err(Error::Exited { status, logs }) => {
                assert_eq!(status.code(), Some(3));
                assert!(logs.contains("fatal: cannot open store"), "{logs}");
            }
            other => panic!("expected Exited, got {other:?}"),
        }
    }

    #[test]
    fn missing_binary_is_an_error() {
        let err = TestServer::start("/nonexistent/rkube").unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
