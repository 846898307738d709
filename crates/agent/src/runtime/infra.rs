//! The pod infra process (what the `pause` container is to Kubernetes): it
//! holds the pod's network, UTS and mount namespaces for the pod's lifetime.
//!
//! The agent starts `<self_exe> pod-infra --uid U --hostname H --resolv-conf F
//! --hosts F --ready-fd 3` in new namespaces (`unshare` between fork and exec).
//! [`infra_main`] then sets the hostname, turns the mount namespace into a
//! slave of the node's (so nothing mounted here leaks to the node), bind-mounts
//! the pod's `resolv.conf` and `hosts` over `/etc/resolv.conf` and
//! `/etc/hosts` and each `--mount SRC:TARGET` (read-only) or `--mount-rw SRC:TARGET` on TARGET (made if
//! missing: pods share the node's filesystem), brings `lo` up, reports `R` (ready) or `E<message>` on the
//! ready fd, and waits for SIGTERM/SIGINT. With `--host-network` (a
//! `hostNetwork: true` pod) only the mount namespace is new: the hostname and
//! `lo` are the node's and are left alone.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::Path;

/// Environment variable marking an infra process: `RKUBE_POD_INFRA=<pod uid>`.
pub(crate) const MARKER: &str = "RKUBE_POD_INFRA";

#[derive(Debug, Default)]
struct Options {
    uid: String,
    hostname: String,
    /// The pod shares the node's network and UTS namespaces (`hostNetwork: true`):
    /// only the mount namespace is its own; no hostname, no loopback set-up.
    host_network: bool,
    /// The pod shares the node's IPC namespace (`hostIPC: true`).
    host_ipc: bool,
    resolv_conf: Option<String>,
    hosts: Option<String>,
    /// (source, target, read-only) paths to bind.
    mounts: Vec<(String, String, bool)>,
    /// (size in bytes, target) of tmpfs mounts; no size: the kernel's default.
    tmpfs: Vec<(Option<u64>, String)>,
    ready_fd: Option<i32>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "pod-infra" => {}
            "--uid" => o.uid = value()?,
            "--hostname" => o.hostname = value()?,
            "--resolv-conf" => o.resolv_conf = Some(value()?),
            "--hosts" => o.hosts = Some(value()?),
            "--host-network" => o.host_network = true,
            "--host-ipc" => o.host_ipc = true,
            "--mount" | "--mount-rw" => {
                let v = value()?;
                let (src, target) = v.split_once(':').ok_or_else(|| format!("{flag} {v:?}: expected SRC:TARGET"))?;
                o.mounts.push((src.to_string(), target.to_string(), flag == "--mount"));
            }
            "--tmpfs" => {
                let v = value()?;
                let (size, target) =
                    v.split_once(':').ok_or_else(|| format!("--tmpfs {v:?}: expected [SIZE]:TARGET"))?;
                let size = if size.is_empty() {
                    None
                } else {
                    Some(size.parse::<u64>().map_err(|e| format!("--tmpfs {v:?}: size: {e}"))?)
                };
                o.tmpfs.push((size, target.to_string()));
            }
            "--ready-fd" => o.ready_fd = Some(value()?.parse().map_err(|e| format!("--ready-fd: {e}"))?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// Entry point of `rkube pod-infra ...`: `args` are the arguments after the
/// subcommand (a leading `pod-infra` is skipped). Returns the exit code.
pub fn infra_main(args: &[String]) -> i32 {
    let opts = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pod-infra: {e}");
            return 2;
        }
    };
    // SAFETY: the agent hands this fd (a pipe's write end) to us and nobody else uses it.
    let mut ready = opts.ready_fd.map(|fd| unsafe { File::from_raw_fd(fd) });
    if let Err(e) = setup(&opts) {
        eprintln!("pod-infra {}: {e}", opts.uid);
        if let Some(r) = ready.as_mut() {
            let _ = r.write_all(format!("E{e}").as_bytes());
        }
        return 1;
    }
    if let Some(mut r) = ready.take() {
        if r.write_all(b"R").is_err() {
            return 1;
        }
    }
    wait_for_termination();
    0
}

fn ns_link(pid: &str, kind: &str) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()
}

fn setup(o: &Options) -> Result<(), String> {
    // Refuse to touch the node: we must be in namespaces of our own.
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() }.to_string();
    let mut own: Vec<&str> = if o.host_network { vec!["mnt"] } else { vec!["net", "uts", "mnt"] };
    if !o.host_ipc {
        own.push("ipc");
    }
    for kind in own {
        let mine = ns_link("self", kind);
        if mine.is_none() || mine == ns_link(&ppid, kind) {
            return Err(format!("not in a {kind} namespace of its own (pod-infra is started by the rkube agent)"));
        }
    }
    if !o.hostname.is_empty() && !o.host_network {
        // SAFETY: sethostname reads `len` bytes of the string.
        if unsafe { libc::sethostname(o.hostname.as_ptr().cast(), o.hostname.len()) } < 0 {
            return Err(format!("sethostname {:?}: {}", o.hostname, std::io::Error::last_os_error()));
        }
    }
    mount(None, "/", None, libc::MS_REC | libc::MS_SLAVE).map_err(|e| format!("making / a slave mount: {e}"))?;
    for (src, target) in [(&o.resolv_conf, "/etc/resolv.conf"), (&o.hosts, "/etc/hosts")] {
        let Some(src) = src else { continue };
        if !Path::new(target).exists() {
            eprintln!("pod-infra {}: {target} does not exist on this node; not replacing it", o.uid);
            continue;
        }
        mount(Some(src), target, None, libc::MS_BIND).map_err(|e| format!("bind-mounting {src} on {target}: {e}"))?;
    }
    for (size, target) in &o.tmpfs {
        std::fs::create_dir_all(target).map_err(|e| format!("creating the mount point {target}: {e}"))?;
        // kubelet's emptyDir is world-writable (0777).
        let data = match size {
            Some(s) => format!("mode=0777,size={s}"),
            None => "mode=0777".to_string(),
        };
        mount_with_data(Some("tmpfs"), target, Some("tmpfs"), libc::MS_NOSUID | libc::MS_NODEV, Some(&data))
            .map_err(|e| format!("mounting a tmpfs on {target}: {e}"))?;
    }
    for (src, target, read_only) in &o.mounts {
        mount_point(src, target)?;
        mount(Some(src), target, None, libc::MS_BIND).map_err(|e| format!("bind-mounting {src} on {target}: {e}"))?;
        if *read_only {
            // A bind mount takes read-only only on a remount.
            mount(None, target, None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY)
                .map_err(|e| format!("making {target} read-only: {e}"))?;
        }
    }
    if o.host_network {
        return Ok(());
    }
    loopback_up().map_err(|e| format!("bringing lo up: {e}"))
}

/// Makes `target` a place `src` can be bound on: a directory for a directory,
/// an (empty) file for a file.
fn mount_point(src: &str, target: &str) -> Result<(), String> {
    if Path::new(src).is_dir() {
        return std::fs::create_dir_all(target).map_err(|e| format!("creating the mount point {target}: {e}"));
    }
    if let Some(parent) = Path::new(target).parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    if !Path::new(target).exists() {
        File::create(target).map_err(|e| format!("creating the mount point {target}: {e}"))?;
    }
    Ok(())
}

fn mount(src: Option<&str>, target: &str, fstype: Option<&str>, flags: libc::c_ulong) -> std::io::Result<()> {
    mount_with_data(src, target, fstype, flags, None)
}

fn mount_with_data(
    src: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> std::io::Result<()> {
    let c = |s: &str| CString::new(s).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL byte"));
    let src = src.map(c).transpose()?;
    let fstype = fstype.map(c).transpose()?;
    let data = data.map(c).transpose()?;
    let target = c(target)?;
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: mount(2) with valid C strings or NULL.
    if unsafe { libc::mount(ptr(&src), target.as_ptr(), ptr(&fstype), flags, ptr(&data).cast()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn loopback_up() -> std::io::Result<()> {
    // SAFETY: socket/ioctl on a zeroed ifreq naming "lo"; the socket is closed below.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let sock = std::os::fd::OwnedFd::from_raw_fd(sock);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Block until SIGTERM or SIGINT arrives.
fn wait_for_termination() {
    // SAFETY: signal-set manipulation on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut sig = 0;
        while libc::sigwait(&set, &mut sig) != 0 {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arguments() {
        let args: Vec<String> = [
            "pod-infra",
            "--uid",
            "u1",
            "--hostname",
            "web-0",
            "--hosts",
            "/x/hosts",
            "--mount",
            "/a/v:/run/t",
            "--mount-rw",
            "/a/e:/data",
            "--tmpfs",
            "1048576:/mem",
            "--tmpfs",
            ":/mem2",
            "--ready-fd",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = parse(&args).expect("parse");
        assert_eq!((o.uid.as_str(), o.hostname.as_str(), o.ready_fd), ("u1", "web-0", Some(3)));
        assert_eq!(o.hosts.as_deref(), Some("/x/hosts"));
        assert!(o.resolv_conf.is_none());
        assert_eq!(
            o.mounts,
            [("/a/v".to_string(), "/run/t".to_string(), true), ("/a/e".to_string(), "/data".to_string(), false)]
        );
        assert_eq!(o.tmpfs, [(Some(1 << 20), "/mem".to_string()), (None, "/mem2".to_string())]);
        assert!(parse(&["--tmpfs".to_string(), "x:/m".to_string()]).is_err());
        assert!(!o.host_network);
        let host = parse(&["--uid".to_string(), "u2".to_string(), "--host-network".to_string()]).expect("parse");
        assert!(host.host_network && host.hostname.is_empty());
        assert!(parse(&["--mount".to_string(), "nocolon".to_string()]).is_err());
        assert!(parse(&["--bogus".to_string()]).is_err());
        assert!(parse(&["--uid".to_string()]).is_err());
    }
}
