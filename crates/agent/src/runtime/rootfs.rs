//! A container's own root filesystem from an OCI image (what runc does with
//! an OCI bundle, after containerd's overlayfs snapshotter made the rootfs).
//!
//! The shim, still single-threaded, calls [`prepare`]: it unshares a mount
//! namespace of its own (a slave of the pod's), mounts an overlay of the
//! image's layers with a fresh upper directory per start at
//! `<container dir>/rootfs`, and mounts into it `/proc`, `/sys` (read-only),
//! a minimal `/dev` (tmpfs with null/zero/full/random/urandom/tty bound from
//! the node, devpts, `/dev/shm`), the pod's `/etc/hosts` and
//! `/etc/resolv.conf`, an `/etc/hostname`, and the container's volume mounts
//! (each bound from where the pod infra mounted it). Targets are resolved
//! inside the rootfs ([`secure_join`]), so an image's symlinks (`/var/run ->
//! /run`) never lead a mount outside it. It resolves the image's `User`
//! against the rootfs's `/etc/passwd` and `/etc/group`, and `argv[0]` against
//! `PATH` inside the rootfs.
//!
//! The container process then, between fork and exec ([`Entry::apply`]),
//! unshares once more (so the shim keeps the node's view), `pivot_root`s into
//! the rootfs and detaches the old root, changes to its working directory,
//! drops capabilities from the bounding set, and takes its user and groups.
//! Anchors: runc `libcontainer/rootfs_linux.go` (pivot_root, default
//! devices), containerd `oci/spec.go` (default mounts and capabilities),
//! kubelet's `securityContext` handling.

use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What the shim needs to build a container's root filesystem.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RootfsConfig {
    /// The image's unpacked layer directories, bottom first.
    pub layers: Vec<PathBuf>,
    /// The container's volume mounts: (path in the pod's mount namespace,
    /// target in the container, read-only).
    pub binds: Vec<(PathBuf, String, bool)>,
    pub hostname: String,
    /// `securityContext.readOnlyRootFilesystem`.
    pub read_only: bool,
    /// The image's `User` (`name`, `uid`, `uid:gid`, `name:group`), possibly empty.
    pub image_user: String,
    /// `securityContext.runAsUser` / `runAsGroup` (win over the image's).
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub supplemental_groups: Vec<u32>,
    /// Capabilities kept in the bounding set (and effective for root); see [`capabilities`].
    pub capabilities: u64,
    /// `runAsNonRoot`: refuse to start as uid 0.
    pub run_as_non_root: bool,
}

/// The user a container runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// A user with its groups, and the capabilities it keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub identity: Identity,
    /// The bounding set (and, for root, the effective and permitted sets).
    pub capabilities: u64,
}

/// What the container process does between fork and exec, prepared (all
/// allocation done) before the fork.
pub struct Entry {
    rootfs: CString,
    workdir: CString,
    run_as: RunAs,
}

/// A prepared rootfs: the executable (a path inside the container) and the
/// pre-exec [`Entry`] (which holds the user it runs as).
pub struct Prepared {
    pub exe: PathBuf,
    pub entry: Entry,
}

fn err(what: impl std::fmt::Display, e: io::Error) -> String {
    format!("{what}: {e}")
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("{}: NUL byte in path", p.display()))
}

fn mount(
    src: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), String> {
    let c_src = CString::new(src).map_err(|_| "NUL in mount source".to_string())?;
    let c_target = cstr(target)?;
    let c_type = fstype.map(CString::new).transpose().map_err(|_| "NUL in fstype".to_string())?;
    let c_data = data.map(CString::new).transpose().map_err(|_| "NUL in mount data".to_string())?;
    // SAFETY: valid C strings (or null) for mount(2).
    let rc = unsafe {
        libc::mount(
            c_src.as_ptr(),
            c_target.as_ptr(),
            c_type.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            c_data.as_ref().map_or(std::ptr::null(), |c| c.as_ptr().cast()),
        )
    };
    if rc < 0 {
        return Err(err(format!("mounting {src} on {}", target.display()), io::Error::last_os_error()));
    }
    Ok(())
}

/// `root` joined with `path` as the container will see it: symlinks are
/// followed inside `root` (an absolute target restarts at `root`, `..` stops
/// at it), never out of it. Components that do not exist are appended as
/// they are. (The `filepath-securejoin` rule runc uses.)
pub fn secure_join(root: &Path, path: &str) -> PathBuf {
    let mut pending: Vec<String> = path.split('/').filter(|c| !c.is_empty()).map(str::to_string).collect();
    pending.reverse();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = root.join(resolved.join("/")).join(&c);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && links < 40 => {
                links += 1;
                let Ok(target) = std::fs::read_link(&candidate) else {
                    resolved.push(c);
                    continue;
                };
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    resolved.clear();
                }
                for part in t.split('/').filter(|p| !p.is_empty()).rev() {
                    pending.push(part.to_string());
                }
            }
            _ => resolved.push(c),
        }
    }
    let mut out = root.to_path_buf();
    for c in resolved {
        out.push(c);
    }
    out
}

/// Make `target` (already resolved inside the rootfs) a mount point of the
/// right kind for `src`: a directory for a directory, an empty file otherwise.
fn mount_point(target: &Path, is_dir: bool) -> Result<(), String> {
    if is_dir {
        return std::fs::create_dir_all(target).map_err(|e| err(format!("creating {}", target.display()), e));
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| err(format!("creating {}", parent.display()), e))?;
    }
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) if m.is_dir() => Err(format!("{} is a directory; a file cannot be mounted on it", target.display())),
        _ => {
            let _ = std::fs::remove_file(target);
            std::fs::File::create(target).map(|_| ()).map_err(|e| err(format!("creating {}", target.display()), e))
        }
    }
}

fn bind(src: &Path, target: &Path, read_only: bool) -> Result<(), String> {
    let src_s = src.to_string_lossy().into_owned();
    mount(&src_s, target, None, libc::MS_BIND | libc::MS_REC, None)?;
    if read_only {
        mount("none", target, None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC, None)?;
    }
    Ok(())
}

/// Build the rootfs in `dir` (see the module docs) and resolve what the
/// container runs. Called by the shim before it starts any thread.
pub fn prepare(
    cfg: &RootfsConfig,
    dir: &Path,
    argv0: &str,
    path_env: &str,
    working_dir: &Path,
) -> Result<Prepared, String> {
    // SAFETY: unshare/mount on this (single-threaded) process.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } < 0 {
        return Err(err("unsharing the mount namespace", io::Error::last_os_error()));
    }
    mount("none", Path::new("/"), None, libc::MS_REC | libc::MS_SLAVE, None)?;
    let rootfs = dir.join("rootfs");
    let upper = dir.join("upper");
    let work = dir.join("work");
    let empty = dir.join("empty-layer");
    // A restarted container starts from the image again.
    for d in [&upper, &work] {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(|e| err(format!("removing {}", d.display()), e))?;
        }
    }
    for d in [&rootfs, &upper, &work, &empty] {
        std::fs::create_dir_all(d).map_err(|e| err(format!("creating {}", d.display()), e))?;
    }
    let mut lower: Vec<String> = cfg.layers.iter().rev().map(|p| escape_overlay(p)).collect();
    if lower.is_empty() {
        lower.push(escape_overlay(&empty));
    }
    let data =
        format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), escape_overlay(&upper), escape_overlay(&work));
    if data.len() >= 4000 {
        return Err(format!("the image has too many layers for one overlay mount ({} layers)", cfg.layers.len()));
    }
    mount("overlay", &rootfs, Some("overlay"), 0, Some(&data))?;

    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let proc_dir = secure_join(&rootfs, "/proc");
    mount_point(&proc_dir, true)?;
    mount("proc", &proc_dir, Some("proc"), nosuid_nodev_noexec, None)?;
    let sys_dir = secure_join(&rootfs, "/sys");
    mount_point(&sys_dir, true)?;
    if mount("sysfs", &sys_dir, Some("sysfs"), nosuid_nodev_noexec | libc::MS_RDONLY, None).is_err() {
        bind(Path::new("/sys"), &sys_dir, true)?;
    }
    dev(&rootfs)?;
    // The pod's name files: the infra bound the pod's own over the node's.
    let hostname_file = dir.join("hostname");
    std::fs::write(&hostname_file, format!("{}\n", cfg.hostname))
        .map_err(|e| err(format!("writing {}", hostname_file.display()), e))?;
    for (src, target) in [
        (PathBuf::from("/etc/hosts"), "/etc/hosts"),
        (PathBuf::from("/etc/resolv.conf"), "/etc/resolv.conf"),
        (hostname_file, "/etc/hostname"),
    ] {
        if !src.exists() {
            continue;
        }
        let t = secure_join(&rootfs, target);
        mount_point(&t, false)?;
        bind(&src, &t, false)?;
    }
    for (src, target, read_only) in &cfg.binds {
        let t = secure_join(&rootfs, target);
        let is_dir = std::fs::metadata(src)
            .map(|m| m.is_dir())
            .map_err(|e| err(format!("volume source {}", src.display()), e))?;
        mount_point(&t, is_dir)?;
        bind(src, &t, *read_only)?;
    }
    let identity = resolve_identity(&rootfs, cfg)?;
    if cfg.run_as_non_root && identity.uid == 0 {
        return Err("container has runAsNonRoot and image will run as root".into());
    }
    // runc creates a missing working directory.
    let wd = secure_join(&rootfs, &working_dir.to_string_lossy());
    if !wd.is_dir() {
        std::fs::create_dir_all(&wd)
            .map_err(|e| err(format!("creating the working directory {}", working_dir.display()), e))?;
        let _ = std::os::unix::fs::chown(&wd, Some(identity.uid), Some(identity.gid));
    }
    if cfg.read_only {
        mount("none", &rootfs, None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY, None)?;
    }
    let exe = find_executable(&rootfs, argv0, path_env)
        .ok_or_else(|| format!("exec: \"{argv0}\": executable file not found in $PATH"))?;
    let entry = Entry {
        rootfs: cstr(&rootfs)?,
        workdir: cstr(working_dir)?,
        run_as: RunAs { identity, capabilities: cfg.capabilities },
    };
    Ok(Prepared { exe, entry })
}

/// A path in overlayfs mount options: `\`, `:` and `,` escaped.
fn escape_overlay(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '\\' | ':' | ',') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// runc's default `/dev`: a tmpfs with the default devices (bound from the
/// node's), `pts`, `shm`, and the usual symlinks.
fn dev(rootfs: &Path) -> Result<(), String> {
    let dev = secure_join(rootfs, "/dev");
    mount_point(&dev, true)?;
    mount("tmpfs", &dev, Some("tmpfs"), libc::MS_NOSUID | libc::MS_STRICTATIME, Some("mode=755,size=65536k"))?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let node = Path::new("/dev").join(name);
        if !node.exists() {
            continue;
        }
        let t = dev.join(name);
        mount_point(&t, false)?;
        bind(&node, &t, false)?;
    }
    let pts = dev.join("pts");
    mount_point(&pts, true)?;
    mount(
        "devpts",
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    let shm = dev.join("shm");
    mount_point(&shm, true)?;
    mount(
        "shm",
        &shm,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link)).map_err(|e| err(format!("/dev/{link}"), e))?;
    }
    Ok(())
}

/// `argv0` inside the rootfs: as given when it has a `/`, else the first
/// executable file of that name on `PATH`. Returns the in-container path.
pub(crate) fn find_executable(rootfs: &Path, argv0: &str, path_env: &str) -> Option<PathBuf> {
    let is_exec = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if argv0.contains('/') {
        let inside = if argv0.starts_with('/') { argv0.to_string() } else { format!("/{argv0}") };
        return is_exec(&secure_join(rootfs, &inside)).then(|| PathBuf::from(argv0));
    }
    path_env.split(':').filter(|d| !d.is_empty()).find_map(|d| {
        let candidate = format!("{}/{argv0}", d.trim_end_matches('/'));
        is_exec(&secure_join(rootfs, &candidate)).then(|| PathBuf::from(candidate))
    })
}

/// The container's uid, gid and groups: `runAsUser`/`runAsGroup`, else the
/// image's `User`, names looked up in the rootfs's `/etc/passwd` and
/// `/etc/group` (runc's `user.GetExecUser`); the user's groups from
/// `/etc/group` plus `supplementalGroups`.
pub fn resolve_identity(rootfs: &Path, cfg: &RootfsConfig) -> Result<Identity, String> {
    let passwd = std::fs::read_to_string(secure_join(rootfs, "/etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(secure_join(rootfs, "/etc/group")).unwrap_or_default();
    let (user_part, group_part) = match cfg.image_user.split_once(':') {
        Some((u, g)) => (u.trim(), Some(g.trim())),
        None => (cfg.image_user.trim(), None),
    };
    let entries: Vec<Vec<&str>> =
        passwd.lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 4).collect();
    let (uid, mut gid, name) = match cfg.run_as_user {
        Some(uid) => {
            let e = entries.iter().find(|f| f[2].parse::<u32>().ok() == Some(uid));
            (uid, e.and_then(|f| f[3].parse().ok()).unwrap_or(0), e.map(|f| f[0].to_string()))
        }
        None if user_part.is_empty() => (0, 0, Some("root".to_string())),
        None => match user_part.parse::<u32>() {
            Ok(uid) => {
                let e = entries.iter().find(|f| f[2].parse::<u32>().ok() == Some(uid));
                (uid, e.and_then(|f| f[3].parse().ok()).unwrap_or(0), e.map(|f| f[0].to_string()))
            }
            Err(_) => {
                let e = entries
                    .iter()
                    .find(|f| f[0] == user_part)
                    .ok_or_else(|| format!("unable to find user {user_part}: no matching entries in passwd file"))?;
                let uid = e[2].parse().map_err(|_| format!("/etc/passwd: bad uid for {user_part}"))?;
                (uid, e[3].parse().unwrap_or(0), Some(user_part.to_string()))
            }
        },
    };
    let groups_file: Vec<Vec<&str>> =
        group.lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 3).collect();
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups_file
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?,
        };
    }
    if let Some(g) = cfg.run_as_group {
        gid = g;
    }
    let mut groups = vec![gid];
    if let Some(name) = name {
        for f in &groups_file {
            let members = f.get(3).copied().unwrap_or_default();
            if members.split(',').any(|m| m == name) {
                if let Ok(n) = f[2].parse::<u32>() {
                    if !groups.contains(&n) {
                        groups.push(n);
                    }
                }
            }
        }
    }
    for g in &cfg.supplemental_groups {
        if !groups.contains(g) {
            groups.push(*g);
        }
    }
    Ok(Identity { uid, gid, groups })
}

/// Capability numbers by name (`linux/capability.h`).
const CAPABILITIES: &[(&str, u32)] = &[
    ("CHOWN", 0),
    ("DAC_OVERRIDE", 1),
    ("DAC_READ_SEARCH", 2),
    ("FOWNER", 3),
    ("FSETID", 4),
    ("KILL", 5),
    ("SETGID", 6),
    ("SETUID", 7),
    ("SETPCAP", 8),
    ("LINUX_IMMUTABLE", 9),
    ("NET_BIND_SERVICE", 10),
    ("NET_BROADCAST", 11),
    ("NET_ADMIN", 12),
    ("NET_RAW", 13),
    ("IPC_LOCK", 14),
    ("IPC_OWNER", 15),
    ("SYS_MODULE", 16),
    ("SYS_RAWIO", 17),
    ("SYS_CHROOT", 18),
    ("SYS_PTRACE", 19),
    ("SYS_PACCT", 20),
    ("SYS_ADMIN", 21),
    ("SYS_BOOT", 22),
    ("SYS_NICE", 23),
    ("SYS_RESOURCE", 24),
    ("SYS_TIME", 25),
    ("SYS_TTY_CONFIG", 26),
    ("MKNOD", 27),
    ("LEASE", 28),
    ("AUDIT_WRITE", 29),
    ("AUDIT_CONTROL", 30),
    ("SETFCAP", 31),
    ("MAC_OVERRIDE", 32),
    ("MAC_ADMIN", 33),
    ("SYSLOG", 34),
    ("WAKE_ALARM", 35),
    ("BLOCK_SUSPEND", 36),
    ("AUDIT_READ", 37),
    ("PERFMON", 38),
    ("BPF", 39),
    ("CHECKPOINT_RESTORE", 40),
];

/// containerd's default set (`oci.DefaultCapabilities`, the same as Docker's).
const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// The capability mask for a container: every capability when privileged,
/// else the default set, then as containerd's CRI applies `add`/`drop`
/// (`WithCapabilities`): `ALL` in `add` gives every one, `ALL` in `drop` none,
/// then the named adds, then the named drops. Unknown names are an error.
pub fn capabilities(privileged: bool, add: &[String], drop: &[String]) -> Result<u64, String> {
    let all: u64 = CAPABILITIES.iter().fold(0, |m, (_, n)| m | (1 << n));
    if privileged {
        return Ok(all);
    }
    let norm = |name: &str| {
        let n = name.trim().to_ascii_uppercase();
        n.strip_prefix("CAP_").map(str::to_string).unwrap_or(n)
    };
    let bit = |name: &str| -> Result<u64, String> {
        let n = norm(name);
        CAPABILITIES
            .iter()
            .find(|(c, _)| *c == n)
            .map(|(_, b)| 1u64 << b)
            .ok_or_else(|| format!("unknown capability {name:?}"))
    };
    let mut mask = 0u64;
    for c in DEFAULT_CAPABILITIES {
        mask |= bit(c)?;
    }
    if add.iter().any(|c| norm(c) == "ALL") {
        mask = all;
    }
    if drop.iter().any(|c| norm(c) == "ALL") {
        mask = 0;
    }
    for c in add.iter().filter(|c| norm(c) != "ALL") {
        mask |= bit(c)?;
    }
    for c in drop.iter().filter(|c| norm(c) != "ALL") {
        mask &= !bit(c)?;
    }
    Ok(mask)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

impl Entry {
    /// Between fork and exec: only system calls on data prepared before the fork.
    pub fn apply(&self) -> io::Result<()> {
        let last = || io::Error::last_os_error();
        // SAFETY: system calls on pre-allocated, valid arguments; this is the
        // forked child, about to exec.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) < 0 {
                return Err(last());
            }
            if libc::chdir(self.rootfs.as_ptr()) < 0 {
                return Err(last());
            }
            let dot = c".".as_ptr();
            if libc::syscall(libc::SYS_pivot_root, dot, dot) < 0 {
                return Err(last());
            }
            // The old root is stacked under the new one: detach it.
            if libc::umount2(dot, libc::MNT_DETACH) < 0 {
                return Err(last());
            }
            if libc::chdir(self.workdir.as_ptr()) < 0 {
                return Err(last());
            }
        }
        self.run_as.apply()
    }
}

impl RunAs {
    /// Drop capabilities from the bounding set, take the groups and user and,
    /// as root, keep only the capabilities of the set (a non-root user has
    /// none once `setuid` ran). Only system calls: safe between fork and exec.
    pub fn apply(&self) -> io::Result<()> {
        let last = || io::Error::last_os_error();
        // SAFETY: system calls on pre-allocated, valid arguments.
        unsafe {
            for cap in 0..64u32 {
                if self.capabilities & (1u64 << cap) == 0 {
                    // EINVAL past the kernel's last capability: nothing to drop.
                    libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0);
                }
            }
            let groups: &[u32] = &self.identity.groups;
            if libc::setgroups(groups.len(), groups.as_ptr()) < 0 {
                return Err(last());
            }
            if libc::setgid(self.identity.gid) < 0 || libc::setuid(self.identity.uid) < 0 {
                return Err(last());
            }
            if self.identity.uid == 0 {
                let lo = self.capabilities as u32;
                let hi = (self.capabilities >> 32) as u32;
                let header = CapHeader { version: 0x2008_0522, pid: 0 };
                let data = [
                    CapData { effective: lo, permitted: lo, inheritable: 0 },
                    CapData { effective: hi, permitted: hi, inheritable: 0 },
                ];
                if libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) < 0 {
                    return Err(last());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_join_stays_inside() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        std::fs::create_dir_all(r.join("run")).expect("mkdir");
        std::os::unix::fs::symlink("/run", r.join("var-run")).expect("symlink");
        std::os::unix::fs::symlink("../../../../etc", r.join("up")).expect("symlink");
        assert_eq!(secure_join(r, "/var-run/secrets"), r.join("run/secrets"));
        assert_eq!(secure_join(r, "/up/passwd"), r.join("etc/passwd"));
        assert_eq!(secure_join(r, "/../../x"), r.join("x"));
        assert_eq!(secure_join(r, "a/./b/"), r.join("a/b"));
        std::os::unix::fs::symlink("loop", r.join("loop")).expect("symlink");
        assert!(secure_join(r, "/loop/x").starts_with(r));
    }

    #[test]
    fn identities_from_the_image() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        std::fs::create_dir_all(r.join("etc")).expect("mkdir");
        std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nweb:x:101:102::/:/bin/false\n")
            .expect("write");
        std::fs::write(r.join("etc/group"), "root:x:0:\nweb:x:102:\nwww:x:33:web,other\n").expect("write");
        let id = |user: &str, run_as: Option<u32>, group: Option<u32>| {
            let cfg = RootfsConfig {
                image_user: user.into(),
                run_as_user: run_as,
                run_as_group: group,
                ..Default::default()
            };
            resolve_identity(r, &cfg)
        };
        assert_eq!(id("", None, None), Ok(Identity { uid: 0, gid: 0, groups: vec![0] }));
        assert_eq!(id("web", None, None), Ok(Identity { uid: 101, gid: 102, groups: vec![102, 33] }));
        assert_eq!(id("101:33", None, None), Ok(Identity { uid: 101, gid: 33, groups: vec![33] }));
        assert_eq!(id("web:www", None, None), Ok(Identity { uid: 101, gid: 33, groups: vec![33] }));
        assert_eq!(id("web", Some(5000), Some(6000)), Ok(Identity { uid: 5000, gid: 6000, groups: vec![6000] }));
        assert_eq!(id("1234", None, None), Ok(Identity { uid: 1234, gid: 0, groups: vec![0] }));
        assert_eq!(
            id("nobody", None, None),
            Err("unable to find user nobody: no matching entries in passwd file".to_string())
        );
    }

    #[test]
    fn capability_sets() {
        let default = capabilities(false, &[], &[]).expect("valid");
        assert_eq!(default.count_ones(), 14);
        assert!(default & (1 << 12) == 0, "NET_ADMIN is not a default");
        let with = capabilities(false, &["NET_ADMIN".into()], &["CAP_NET_RAW".into()]).expect("valid");
        assert!(with & (1 << 12) != 0 && with & (1 << 13) == 0);
        assert_eq!(capabilities(false, &[], &["ALL".into()]), Ok(0));
        assert_eq!(capabilities(false, &["NET_BIND_SERVICE".into()], &["ALL".into()]), Ok(1 << 10));
        assert_eq!(capabilities(false, &["ALL".into()], &["CHOWN".into()]).map(u64::count_ones), Ok(40));
        assert_eq!(capabilities(true, &[], &[]).map(u64::count_ones), Ok(41));
        assert!(capabilities(false, &["FLY".into()], &[]).is_err());
    }

    #[test]
    fn overlay_options_escape() {
        assert_eq!(escape_overlay(Path::new("/a:b,c\\d")), "/a\\:b\\,c\\\\d");
    }
}
