//! Running the `nft`, `conntrack` and `ip` binaries, optionally inside a network namespace
//! (`ProxyConfig::netns`): they are spawned from a thread that joined the namespace with
//! `setns(2)`, which costs nothing compared to `ip netns exec` (no mount namespace, no
//! sysfs remount).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `program args...` (in `netns` if given), feeding `stdin`, and collects its output.
///
/// With a namespace, the child is spawned from a short-lived thread that joined it
/// (children inherit the spawning thread's namespaces). That keeps `posix_spawn` (vfork)
/// usable: a `pre_exec` setns would force a full fork, whose cost grows with this
/// process's memory (~tens of ms with 10,000 services in memory).
pub(crate) fn run(program: &Path, args: &[&str], stdin: Option<&[u8]>, netns: Option<&Path>) -> io::Result<Output> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = in_netns(netns, move || cmd.spawn())?;
    match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => std::thread::scope(|s| {
            let writer = s.spawn(move || {
                // A broken pipe means the child exited early; its status tells why.
                let _ = pipe.write_all(data);
            });
            let out = child.wait_with_output();
            let _ = writer.join();
            out
        }),
        _ => child.wait_with_output(),
    }
}

/// Runs `f` on a thread that joined `netns` (the calling thread when `netns` is None), for
/// in-process work that depends on the network namespace (e.g. `/proc/sys/net`).
pub(crate) fn in_netns<T: Send>(netns: Option<&Path>, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let Some(ns) = netns else { return f() };
    let file = File::open(ns)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: plain syscall on a valid fd; it only changes this (scoped) thread's netns.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns worker thread panicked")))
    })
}
