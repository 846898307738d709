//! The container shim (what containerd-shim or conmon is to a container): one
//! small process per container, so containers outlive the agent.
//!
//! The agent starts `<self_exe> container-shim --config F --ready-fd 3` in the
//! pod's namespaces, in a session of its own. [`shim_main`] reads the
//! [`ShimConfig`], starts the container process (joined to its cgroup, in its
//! own session), reports `R<pid> <start time>` (or `E<errno> <message>`) on the
//! ready fd, writes the container's stdout and stderr to its CRI log file,
//! waits for it, kills what it left behind (as the end of a PID namespace
//! would), and records how it ended in `exit.json` before exiting. The agent
//! watches the shim (its child, or through a pidfd once a restarted agent has
//! adopted it) and reads that file: the shim owns the pipes and is the
//! container's parent, so neither depends on the agent process.
//!
//! Files, in `<pod dir>/containers/<name>/`: `config.json`, `exit.json`,
//! `shim.log` (the shim's own errors).

use super::process::{self, Joiner};
use super::{logs, state, ExitInfo};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// Environment variable marking a shim: `RKUBE_CONTAINER_SHIM=<pod uid>/<container>`.
pub(crate) const MARKER: &str = "RKUBE_CONTAINER_SHIM";
pub(crate) const CONFIG_FILE: &str = "config.json";
pub(crate) const EXIT_FILE: &str = "exit.json";
pub(crate) const LOG_FILE: &str = "shim.log";
/// How long the output of an exited container may take to drain (its
/// background processes are killed first, so the pipes close quickly).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What the shim runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ShimConfig {
    pub pod_uid: String,
    pub name: String,
    /// The resolved executable; `argv[0]` is passed as given.
    pub exe: PathBuf,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    pub log_path: PathBuf,
    pub cgroups: Vec<PathBuf>,
    /// An image container's own root filesystem (`rootfs.rs`); `None` runs
    /// `exe` from the pod's view of the node's filesystem.
    #[serde(default)]
    pub rootfs: Option<super::rootfs::RootfsConfig>,
}

/// `exit.json`: how the container ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ExitRecord {
    exit_code: i32,
    signal: Option<i32>,
    finished_at_unix_nanos: u64,
}

/// The directory of a container's shim files.
pub(crate) fn container_dir(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join("containers").join(name)
}

/// How the container of the shim whose files are in `dir` ended, if recorded.
pub(crate) fn read_exit(dir: &Path) -> Option<ExitInfo> {
    let bytes = std::fs::read(dir.join(EXIT_FILE)).ok()?;
    let r: ExitRecord = serde_json::from_slice(&bytes)
        .map_err(|e| tracing::warn!(dir = %dir.display(), error = %e, "unreadable container exit record"))
        .ok()?;
    Some(ExitInfo {
        exit_code: r.exit_code,
        signal: r.signal,
        finished_at: UNIX_EPOCH + Duration::from_nanos(r.finished_at_unix_nanos),
    })
}

fn write_exit(dir: &Path, info: &ExitInfo) -> std::io::Result<()> {
    let nanos = info.finished_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let r = ExitRecord {
        exit_code: info.exit_code,
        signal: info.signal,
        finished_at_unix_nanos: u64::try_from(nanos).unwrap_or(u64::MAX),
    };
    let bytes = serde_json::to_vec(&r).map_err(std::io::Error::other)?;
    state::write_atomic(&dir.join(EXIT_FILE), &bytes)
}

/// What the shim reported on its ready fd.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ready {
    /// The container runs: its pid and start time (`/proc/<pid>/stat` field 22).
    Started { pid: u32, start_time: u64 },
    /// Starting it failed: errno (0 when unknown) and message.
    Failed { errno: i32, message: String },
}

pub(crate) fn parse_ready(msg: &str) -> Option<Ready> {
    if let Some(rest) = msg.strip_prefix('R') {
        let (pid, st) = rest.trim().split_once(' ')?;
        return Some(Ready::Started { pid: pid.parse().ok()?, start_time: st.parse().ok()? });
    }
    let rest = msg.strip_prefix('E')?;
    let (errno, message) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(Ready::Failed { errno: errno.parse().unwrap_or(0), message: message.to_string() })
}

#[derive(Debug, Default)]
struct Options {
    config: Option<PathBuf>,
    ready_fd: Option<i32>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "container-shim" => {}
            "--config" => o.config = Some(PathBuf::from(value()?)),
            "--ready-fd" => o.ready_fd = Some(value()?.parse().map_err(|e| format!("--ready-fd: {e}"))?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// Entry point of `rkube container-shim ...`: `args` are the arguments after
/// the subcommand (a leading `container-shim` is skipped). Returns the exit code.
pub fn shim_main(args: &[String]) -> i32 {
    let opts = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("container-shim: {e}");
            return 2;
        }
    };
    let ready = match opts.ready_fd {
        Some(fd) => {
            // The container must not inherit the ready pipe.
            // SAFETY: fcntl on the fd the agent handed us; nobody else uses it.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
                Some(File::from_raw_fd(fd))
            }
        }
        None => None,
    };
    let Some(config_path) = opts.config else {
        eprintln!("container-shim: --config is required");
        return 2;
    };
    let cfg: ShimConfig = match std::fs::read(&config_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("container-shim: reading {}: {e}", config_path.display());
            report(ready, &format!("E0 reading {}: {e}", config_path.display()));
            return 1;
        }
    };
    let dir = config_path.parent().map(Path::to_path_buf).unwrap_or_default();
    // Mounts first, while this process has one thread.
    let prepared = match &cfg.rootfs {
        Some(r) => {
            let argv0 = cfg.argv.first().map(String::as_str).unwrap_or_default();
            let path =
                cfg.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or(process::DEFAULT_PATH);
            match super::rootfs::prepare(r, &dir, argv0, path, &cfg.working_dir) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("container-shim {}/{}: {e}", cfg.pod_uid, cfg.name);
                    // ENOENT for a missing executable: the agent reports it as the runtime does.
                    report(ready, &format!("E0 {e}"));
                    return 1;
                }
            }
        }
        None => None,
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            report(ready, &format!("E0 starting the shim's async runtime: {e}"));
            return 1;
        }
    };
    rt.block_on(run(cfg, dir, ready, prepared))
}

/// Write the ready message and close the fd (the agent reads until EOF).
fn report(ready: Option<File>, msg: &str) -> bool {
    match ready {
        Some(mut f) => f.write_all(msg.as_bytes()).is_ok(),
        None => true,
    }
}

async fn run(cfg: ShimConfig, dir: PathBuf, ready: Option<File>, prepared: Option<super::rootfs::Prepared>) -> i32 {
    let fail = |ready, e: std::io::Error, what: &str| {
        eprintln!("container-shim {}/{}: {what}: {e}", cfg.pod_uid, cfg.name);
        report(ready, &format!("E{} {what}: {e}", e.raw_os_error().unwrap_or(0)));
        1
    };
    let log = match OpenOptions::new().create(true).append(true).open(&cfg.log_path) {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => return fail(ready, e, &format!("opening {}", cfg.log_path.display())),
    };
    let workdir = match process::cstring(cfg.working_dir.as_os_str()) {
        Ok(c) => c,
        Err(e) => return fail(ready, e, "working directory"),
    };
    let Some((arg0, rest)) = cfg.argv.split_first() else {
        return fail(ready, std::io::Error::other("empty command"), "starting the container");
    };
    let joiner = Joiner {
        setsid: true,
        cgroup_procs: super::cgroup::open_procs(&cfg.cgroups),
        namespaces: Vec::new(),
        // An image container changes directory inside its rootfs instead.
        workdir: if prepared.is_some() { None } else { Some(workdir) },
        controlling_tty: false,
        user: None,
    };
    let exe = prepared.as_ref().map(|p| p.exe.clone()).unwrap_or_else(|| cfg.exe.clone());
    let entry = prepared.map(|p| p.entry);
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.arg0(arg0).args(rest).env_clear().envs(cfg.env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: `joiner` and `entry` make only async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(move || {
            joiner.apply()?;
            match &entry {
                Some(e) => e.apply(),
                None => Ok(()),
            }
        });
    }
    let spawned = cmd.spawn();
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return fail(ready, e, &format!("starting container {} ({})", cfg.name, exe.display())),
    };
    let pid = child.id().unwrap_or(0);
    // Read before the first wait: the zombie keeps the pid until we reap it.
    let start_time = process::start_time(pid).unwrap_or(0);
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(logs::pump(out, "stdout", log.clone())));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(logs::pump(err, "stderr", log)));
    }
    if !report(ready, &format!("R{pid} {start_time}")) {
        // The agent gave up on this start (or died): nobody would know the container.
        eprintln!("container-shim {}/{}: the agent is gone before the start was reported", cfg.pod_uid, cfg.name);
        process::kill_group(pid, libc::SIGKILL);
    }
    let info = process::exit_info(child.wait().await);
    // Like the end of a PID namespace: what the container left running goes too.
    process::kill_group(pid, libc::SIGKILL);
    for d in &cfg.cgroups {
        super::cgroup::kill_all(d);
    }
    for p in pumps {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, p).await;
    }
    if let Err(e) = write_exit(&dir, &info) {
        eprintln!("container-shim {}/{}: recording the exit: {e}", cfg.pod_uid, cfg.name);
        return 1;
    }
    let _ = std::io::stderr().flush();
    0
}

/// Build the `container-shim` command line for a container whose files are in `dir`.
pub(crate) fn command(self_exe: &Path, dir: &Path, marker: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(self_exe);
    cmd.arg("container-shim").arg("--config").arg(dir.join(CONFIG_FILE)).args(["--ready-fd", "3"]);
    cmd.env_clear().env("PATH", process::DEFAULT_PATH).env(MARKER, marker);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arguments_and_ready_messages() {
        let args: Vec<String> =
            ["container-shim", "--config", "/x/config.json", "--ready-fd", "3"].iter().map(|s| s.to_string()).collect();
        let o = parse(&args).expect("parse");
        assert_eq!((o.config, o.ready_fd), (Some(PathBuf::from("/x/config.json")), Some(3)));
        assert!(parse(&["--bogus".to_string()]).is_err());
        assert_eq!(parse_ready("R123 456"), Some(Ready::Started { pid: 123, start_time: 456 }));
        assert_eq!(parse_ready("E2 no such file"), Some(Ready::Failed { errno: 2, message: "no such file".into() }));
        assert_eq!(parse_ready("E0"), Some(Ready::Failed { errno: 0, message: String::new() }));
        assert_eq!(parse_ready(""), None);
        assert_eq!(parse_ready("Rx"), None);
    }

    #[test]
    fn exit_records_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_exit(dir.path()), None);
        let info = ExitInfo {
            exit_code: 143,
            signal: Some(15),
            finished_at: UNIX_EPOCH + Duration::from_nanos(1_795_648_733_123_456_789),
        };
        write_exit(dir.path(), &info).expect("write");
        assert_eq!(read_exit(dir.path()), Some(info));
        std::fs::write(dir.path().join(EXIT_FILE), "garbage").expect("write garbage");
        assert_eq!(read_exit(dir.path()), None);
    }
}
