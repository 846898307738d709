//! Process helpers: `/proc` inspection, pidfds, signals, the code that runs in
//! a forked child before `exec` (joining the pod's namespaces and cgroup), and
//! executable lookup.

use super::ExitInfo;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, SystemTime};

/// `PATH` for processes whose env does not set one (what container images set).
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Fields of `/proc/<pid>/stat` after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 1..)?;
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// Start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether `pid` no longer runs (gone, or a zombie waiting to be reaped).
pub(crate) fn is_gone(pid: u32) -> bool {
    match stat_fields(pid) {
        None => true,
        Some(f) => matches!(f.first().map(String::as_str), Some("Z" | "X" | "x")),
    }
}

/// Inode of the `kind` namespace (`net`, `mnt`, ...) of `pid`.
pub(crate) fn ns_inode(pid: u32, kind: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
    link.to_str()?.strip_prefix(kind)?.strip_prefix(":[")?.strip_suffix(']')?.parse().ok()
}

/// The user, groups and capability bounding set `pid` runs with
/// (`/proc/<pid>/status`), for an exec that must run as the container does.
pub(crate) fn identity(pid: u32) -> Option<super::rootfs::RunAs> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let first = |name: &str| field(name)?.split_whitespace().next()?.parse::<u32>().ok();
    let groups = field("Groups:").unwrap_or_default().split_whitespace().filter_map(|g| g.parse().ok()).collect();
    let capabilities = u64::from_str_radix(field("CapBnd:")?, 16).ok()?;
    let identity = super::rootfs::Identity { uid: first("Uid:")?, gid: first("Gid:")?, groups };
    Some(super::rootfs::RunAs { identity, capabilities })
}

/// Inode of the network namespace of `pid`.
pub(crate) fn netns_inode(pid: u32) -> Option<u64> {
    ns_inode(pid, "net")
}

/// Inode of the namespace an fd (from `/proc/<pid>/ns/*`) refers to.
pub(crate) fn fd_inode(fd: &OwnedFd) -> io::Result<u64> {
    // SAFETY: fstat writes into a zeroed stat buffer we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_ino)
}

/// Every process (but this one) whose `kind` namespace has inode `ino`.
pub(crate) fn pids_in_ns(kind: &str, ino: u64) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && ns_inode(pid, kind) == Some(ino))
        .collect()
}

/// Whether the environment of `pid` contains exactly `entry` (`KEY=VALUE`).
pub(crate) fn environ_has(pid: u32, entry: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
        .unwrap_or(false)
}

/// A pidfd for `pid` (race-free signalling), if the kernel has `pidfd_open`.
pub(crate) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: plain syscall; on success the returned fd is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Signal a process through its pidfd when there is one, else by pid.
pub(crate) fn signal(pidfd: Option<&OwnedFd>, pid: u32, sig: libc::c_int) {
    if let Some(fd) = pidfd {
        // SAFETY: plain syscall on an fd we own.
        let r = unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0)
        };
        if r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return;
        }
    }
    kill(pid, sig);
}

pub(crate) fn kill(pid: u32, sig: libc::c_int) {
    if pid > 1 {
        // SAFETY: kill(2) has no memory effects.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
}

/// Signal the process group `pgid` (a container's session leader pid).
pub(crate) fn kill_group(pgid: u32, sig: libc::c_int) {
    if pgid > 1 {
        // SAFETY: as above.
        unsafe { libc::kill(-(pgid as libc::pid_t), sig) };
    }
}

/// Wait until every pid in `pids` is gone; false on timeout.
pub(crate) async fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if pids.iter().all(|&p| is_gone(p)) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait until `pid` (started at `start_time`) has ended, whether or not it is
/// our child: through its pidfd (readable once the process exits) when there
/// is one, else by polling `/proc`. Reaping is up to its parent.
pub(crate) async fn wait_exit(pidfd: Option<OwnedFd>, pid: u32, start_time: u64) {
    if let Some(fd) = pidfd {
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open and the
        // same for the AsyncFd's lifetime.
        match unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) } {
            Ok(afd) => {
                if afd.readable().await.is_ok() {
                    return;
                }
            }
            Err(e) => tracing::debug!(pid, error = %e, "polling a pidfd failed; polling /proc instead"),
        }
    }
    while self::start_time(pid) == Some(start_time) && !is_gone(pid) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// In a forked child before `exec`: make `fd` the child's fd 3, inherited
/// across `exec` (the ready pipe of the pod infra process and of a shim).
///
/// # Safety
/// Only async-signal-safe system calls; call between fork and exec only.
pub(crate) unsafe fn inherit_as_fd3(fd: RawFd) -> io::Result<()> {
    if fd == 3 {
        let flags = libc::fcntl(3, libc::F_GETFD);
        if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    } else if libc::dup2(fd, 3) < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How an exit status maps to [`ExitInfo`]: killed by a signal gives
/// `128 + signal` as the exit code (the shell's and Kubernetes' convention).
pub(crate) fn exit_info(status: io::Result<ExitStatus>) -> ExitInfo {
    let finished_at = SystemTime::now();
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => ExitInfo { exit_code: code, signal: None, finished_at },
            (None, Some(sig)) => ExitInfo { exit_code: 128 + sig, signal: Some(sig), finished_at },
            (None, None) => ExitInfo { exit_code: 255, signal: None, finished_at },
        },
        Err(e) => {
            tracing::warn!(error = %e, "waiting for a process failed");
            ExitInfo { exit_code: 255, signal: None, finished_at }
        }
    }
}

/// Find `argv0` like `execvp` does: as given when it contains a `/`, else in
/// each directory of `path`; only executable regular files count.
pub(crate) fn resolve_executable(argv0: &str, path: &str) -> Option<PathBuf> {
    if argv0.is_empty() {
        return None;
    }
    if argv0.contains('/') {
        return Some(PathBuf::from(argv0));
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(argv0))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

pub(crate) fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))
}

/// What a forked child does before `exec`: everything here is a plain system
/// call on data prepared before the fork (no allocation, no locks), as
/// required between `fork` and `exec` in a multi-threaded program.
pub(crate) struct Joiner {
    /// `setsid()`: a new session and process group, detached from the agent's terminal.
    pub setsid: bool,
    /// Open `cgroup.procs` files to write "0" (= this process) into.
    pub cgroup_procs: Vec<OwnedFd>,
    /// Namespaces to enter: (fd of `/proc/<infra>/ns/...`, `CLONE_NEW*`). The
    /// fds must stay open until `spawn` returns.
    pub namespaces: Vec<(RawFd, libc::c_int)>,
    /// Directory to change into after entering the mount namespace (which
    /// resets the working directory).
    pub workdir: Option<CString>,
    /// Make stdin (a pty slave) the controlling terminal.
    pub controlling_tty: bool,
    /// User, groups and capabilities to take last (an exec in an image
    /// container runs as the container does).
    pub user: Option<super::rootfs::RunAs>,
}

impl Joiner {
    pub(crate) fn apply(&self) -> io::Result<()> {
        // SAFETY: async-signal-safe system calls on valid, pre-allocated arguments.
        unsafe {
            if self.setsid && libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            for fd in &self.cgroup_procs {
                if libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for &(fd, kind) in &self.namespaces {
                if libc::setns(fd, kind) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(dir) = &self.workdir {
                if libc::chdir(dir.as_ptr()) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if self.controlling_tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(run_as) = &self.user {
                run_as.apply()?;
            }
        }
        Ok(())
    }
}

/// Open a namespace file of `pid` (`net`, `uts`, `mnt`).
pub(crate) fn open_ns(pid: u32, kind: &str) -> io::Result<OwnedFd> {
    let path = cstring(OsStr::new(&format!("/proc/{pid}/ns/{kind}")))?;
    // SAFETY: open(2) with a valid C string; the fd is ours on success.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_execvp() {
        assert_eq!(resolve_executable("sh", "/nonexistent:/bin:/usr/bin").map(|p| p.is_absolute()), Some(true));
        assert_eq!(resolve_executable("./x", "/bin"), Some(PathBuf::from("./x")));
        assert_eq!(resolve_executable("no-such-binary-rkube", DEFAULT_PATH), None);
        assert_eq!(resolve_executable("", DEFAULT_PATH), None);
    }

    /// Both ways of waiting for a process that ends (left unreaped, as a
    /// process of a previous agent run is for us): its pidfd, and /proc.
    #[tokio::test]
    async fn waits_for_a_process_to_end() {
        for use_pidfd in [true, false] {
            let mut child = std::process::Command::new("sleep").arg("0.3").spawn().expect("spawn sleep");
            let pid = child.id();
            let start = start_time(pid).expect("start time");
            let pidfd = if use_pidfd { pidfd_open(pid) } else { None };
            let t = std::time::Instant::now();
            tokio::time::timeout(Duration::from_secs(10), wait_exit(pidfd, pid, start)).await.expect("wait_exit");
            assert!(t.elapsed() >= Duration::from_millis(200), "returned before the process ended");
            assert!(is_gone(pid));
            // A recorded start time that does not match means "gone" (a reused pid).
            tokio::time::timeout(Duration::from_secs(1), wait_exit(None, std::process::id(), start + 1))
                .await
                .expect("a mismatched start time counts as ended");
            let _ = child.wait();
        }
    }

    #[test]
    fn reads_own_proc_entries() {
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert!(!is_gone(me));
        assert!(netns_inode(me).is_some());
        assert!(is_gone(u32::MAX - 1));
    }
}
