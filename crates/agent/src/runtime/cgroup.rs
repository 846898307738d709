//! Container cgroups: `rkube/<pod-uid>/<container>` under each relevant
//! hierarchy, with memory and CPU limits.
//!
//! Layouts: pure cgroup v2 (one `cgroup2` mount whose `cgroup.controllers`
//! lists the controllers: most current distributions) and the v1 hybrid
//! (memory, cpu, pids on v1 hierarchies, e.g. `/sys/fs/cgroup/memory`).
//! Limits as upstream sets them (`pkg/kubelet/cm/cgroup_manager_linux.go`,
//! runc's `libcontainer/cgroups/fs{,2}`): v2 `memory.max` and `cpu.max`
//! "quota period"; v1 `memory.limit_in_bytes` and `cpu.cfs_quota_us` /
//! `cpu.cfs_period_us`, with a 100 ms period and a 1 ms minimum quota.
//!
//! When nothing is mounted at all (the agent runs under `ip netns exec`, which
//! remounts `/sys` for the network namespace and so hides `/sys/fs/cgroup`),
//! the hierarchies are mounted again at `/sys/fs/cgroup` in the agent's own
//! mount namespace. When cgroups are not usable, containers run without limits.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Directory under each hierarchy root holding the pods' cgroups.
pub(crate) const BASE: &str = "rkube";
const CPU_PERIOD_US: u64 = 100_000;
const MIN_QUOTA_US: u64 = 1_000;
const MOUNT_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone)]
pub(crate) enum Layout {
    V2 { root: PathBuf },
    V1 { memory: Option<PathBuf>, cpu: Option<PathBuf>, pids: Option<PathBuf> },
    Unavailable,
}

#[derive(Debug)]
pub(crate) struct Cgroups {
    layout: Layout,
}

#[derive(Debug)]
struct Mount {
    point: PathBuf,
    fstype: String,
    superopts: Vec<String>,
}

/// Undo the octal escapes of `/proc/self/mountinfo` (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let point = pre.split(' ').nth(4)?;
            let mut post = post.split(' ');
            let fstype = post.next()?.to_string();
            let _source = post.next()?;
            let superopts = post.next().unwrap_or_default().split(',').map(str::to_string).collect();
            Some(Mount { point: PathBuf::from(unescape(point)), fstype, superopts })
        })
        .collect()
}

fn mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo").map(|t| parse_mountinfo(&t)).unwrap_or_default()
}

fn layout_from(mounts: &[Mount]) -> Layout {
    let v1 = |ctrl: &str| {
        mounts.iter().find(|m| m.fstype == "cgroup" && m.superopts.iter().any(|o| o == ctrl)).map(|m| m.point.clone())
    };
    let (memory, cpu, pids) = (v1("memory"), v1("cpu"), v1("pids"));
    if memory.is_some() || cpu.is_some() {
        return Layout::V1 { memory, cpu, pids };
    }
    let v2 = mounts.iter().filter(|m| m.fstype == "cgroup2").find(|m| {
        std::fs::read_to_string(m.point.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory" || x == "cpu"))
    });
    match v2 {
        Some(m) => Layout::V2 { root: m.point.clone() },
        None => Layout::Unavailable,
    }
}

fn sys_mount(source: &str, target: &Path, fstype: &str, data: &str) -> io::Result<()> {
    let c = |s: &str| CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"));
    let (source, fstype, data) = (c(source)?, c(fstype)?, c(data)?);
    let target = c(&target.to_string_lossy())?;
    // SAFETY: mount(2) with valid C strings.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            data.as_ptr().cast(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mount the cgroup hierarchies at `/sys/fs/cgroup` when nothing is mounted
/// there (see the module docs). v1 controllers are mounted in the groups the
/// kernel has them in (`/proc/cgroups` hierarchy ids), e.g. `cpu,cpuacct`.
fn mount_hierarchies() -> io::Result<()> {
    let root = Path::new(MOUNT_ROOT);
    if std::fs::read_dir(root)?.next().is_some() {
        return Err(io::Error::other(format!("{MOUNT_ROOT} is not empty")));
    }
    let mut hierarchy: BTreeMap<String, u32> = BTreeMap::new();
    for line in std::fs::read_to_string("/proc/cgroups")?.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let (Some(name), Some(Ok(id)), Some(&"1")) = (f.first(), f.get(1).map(|s| s.parse::<u32>()), f.get(3)) {
            hierarchy.insert(name.to_string(), id);
        }
    }
    let v1_ids: Vec<u32> =
        ["memory", "cpu", "pids"].iter().filter_map(|c| hierarchy.get(*c).copied()).filter(|&id| id != 0).collect();
    if v1_ids.is_empty() {
        sys_mount("cgroup2", root, "cgroup2", "")?;
        tracing::info!("mounted cgroup2 at {MOUNT_ROOT} (it was empty in this mount namespace)");
        return Ok(());
    }
    sys_mount("cgroup", root, "tmpfs", "mode=755")?;
    let mut done = Vec::new();
    for id in v1_ids {
        if done.contains(&id) {
            continue;
        }
        done.push(id);
        let group: Vec<&str> = hierarchy.iter().filter(|(_, &h)| h == id).map(|(n, _)| n.as_str()).collect();
        let opts = group.join(",");
        let dir = root.join(&opts);
        std::fs::create_dir_all(&dir)?;
        sys_mount("cgroup", &dir, "cgroup", &opts)?;
    }
    tracing::info!("mounted the v1 cgroup hierarchies at {MOUNT_ROOT} (it was empty in this mount namespace)");
    Ok(())
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value)
        .map_err(|e| io::Error::new(e.kind(), format!("writing {value:?} to {}: {e}", path.display())))
}

impl Cgroups {
    /// Find (or mount) the hierarchies and make sure `rkube/` can be created.
    pub(crate) fn detect() -> Cgroups {
        let mut found = mounts();
        if !found.iter().any(|m| m.fstype.starts_with("cgroup")) {
            match mount_hierarchies() {
                Ok(()) => found = mounts(),
                Err(e) => tracing::warn!(error = %e, "no cgroup hierarchy mounted and mounting one failed"),
            }
        }
        let mut cg = Cgroups { layout: layout_from(&found) };
        if let Err(e) = cg.prepare() {
            tracing::warn!(error = %e, layout = ?cg.layout, "cgroups are not usable; containers run without resource limits");
            cg.layout = Layout::Unavailable;
        }
        tracing::debug!(layout = ?cg.layout, "cgroup layout");
        cg
    }

    fn prepare(&self) -> io::Result<()> {
        match &self.layout {
            Layout::Unavailable => {
                Err(io::Error::other("no cgroup v2 with controllers and no v1 memory/cpu hierarchy"))
            }
            Layout::V2 { root } => {
                enable_controllers(root)?;
                let base = root.join(BASE);
                std::fs::create_dir_all(&base)?;
                enable_controllers(&base)
            }
            Layout::V1 { .. } => {
                for root in self.roots() {
                    std::fs::create_dir_all(root.join(BASE))?;
                }
                Ok(())
            }
        }
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The hierarchy roots (mount points) in use.
    fn roots(&self) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V2 { root } => vec![root.clone()],
            Layout::V1 { memory, cpu, pids } => {
                let mut v: Vec<PathBuf> = [memory, cpu, pids].into_iter().flatten().cloned().collect();
                v.dedup();
                v
            }
            Layout::Unavailable => Vec::new(),
        }
    }

    /// The pod's directories, one per hierarchy.
    pub(crate) fn pod_dirs(&self, pod: &str) -> Vec<PathBuf> {
        self.roots().into_iter().map(|r| r.join(BASE).join(pod)).collect()
    }

    /// Create the container's cgroup in every hierarchy and set its limits.
    /// Returns the directories created (empty when cgroups are unavailable).
    /// Failures are logged: a pod never fails for want of limits.
    pub(crate) async fn create(
        &self,
        pod: &str,
        container: &str,
        memory: Option<u64>,
        cpu_millis: Option<u64>,
    ) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for root in self.roots() {
            let pod_dir = root.join(BASE).join(pod);
            let dir = pod_dir.join(container);
            if dir.exists() {
                // Left over from an earlier run of this container: empty and remove it.
                remove_dir(&dir).await;
            }
            let made = std::fs::create_dir_all(&pod_dir).and_then(|()| {
                if matches!(self.layout, Layout::V2 { .. }) {
                    enable_controllers(&root.join(BASE))?;
                    enable_controllers(&pod_dir)?;
                }
                std::fs::create_dir(&dir)
            });
            if let Err(e) = made {
                tracing::warn!(dir = %dir.display(), error = %e, "creating container cgroup failed; running without it");
                continue;
            }
            if let Err(e) = self.set_limits(&root, &dir, memory, cpu_millis) {
                tracing::warn!(dir = %dir.display(), error = %e, "setting container resource limits failed");
            }
            dirs.push(dir);
        }
        dirs
    }

    fn set_limits(&self, root: &Path, dir: &Path, memory: Option<u64>, cpu_millis: Option<u64>) -> io::Result<()> {
        let quota = cpu_millis.map(|m| (m * CPU_PERIOD_US / 1000).max(MIN_QUOTA_US));
        match &self.layout {
            Layout::V2 { .. } => {
                if let Some(bytes) = memory {
                    write(&dir.join("memory.max"), &bytes.to_string())?;
                    // No swap for limited containers (kubelet's default, NoSwap).
                    let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                }
                if let Some(q) = quota {
                    write(&dir.join("cpu.max"), &format!("{q} {CPU_PERIOD_US}"))?;
                }
            }
            Layout::V1 { memory: mem_root, cpu: cpu_root, .. } => {
                if let (Some(bytes), true) = (memory, mem_root.as_deref() == Some(root)) {
                    write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                    let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                }
                if let (Some(q), true) = (quota, cpu_root.as_deref() == Some(root)) {
                    write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write(&dir.join("cpu.cfs_quota_us"), &q.to_string())?;
                }
            }
            Layout::Unavailable => {}
        }
        Ok(())
    }

    /// Kill every process in the pod's cgroups and remove them.
    pub(crate) async fn remove_pod(&self, pod: &str) {
        for pod_dir in self.pod_dirs(pod) {
            let Ok(entries) = std::fs::read_dir(&pod_dir) else { continue };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_dir(&e.path()).await;
                }
            }
            remove_dir(&pod_dir).await;
        }
    }
}

/// Enable the memory, cpu and pids controllers for the children of `dir` (v2).
fn enable_controllers(dir: &Path) -> io::Result<()> {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers"))?;
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control"))?;
    for ctrl in ["memory", "cpu", "pids"] {
        if available.split_whitespace().any(|c| c == ctrl) && !enabled.split_whitespace().any(|c| c == ctrl) {
            write(&dir.join("cgroup.subtree_control"), &format!("+{ctrl}"))?;
        }
    }
    Ok(())
}

/// Open `cgroup.procs` of each directory for writing (joined from a forked child).
pub(crate) fn open_procs(dirs: &[PathBuf]) -> Vec<OwnedFd> {
    dirs.iter()
        .filter_map(|d| {
            let path = CString::new(d.join("cgroup.procs").to_string_lossy().into_owned()).ok()?;
            // SAFETY: open(2) with a valid C string; the fd is ours on success.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                tracing::warn!(dir = %d.display(), error = %io::Error::last_os_error(), "opening cgroup.procs failed");
                return None;
            }
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .collect()
}

/// The processes in a cgroup directory.
pub(crate) fn procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// SIGKILL every process in a cgroup (`cgroup.kill` on v2, one by one on v1).
pub(crate) fn kill_all(dir: &Path) {
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() && std::fs::write(&kill_file, "1").is_ok() {
        return;
    }
    for pid in procs(dir) {
        super::process::kill(pid, libc::SIGKILL);
    }
}

/// Kill what runs in a cgroup and remove it (waiting up to 5 s for the
/// processes to die). Returns whether it is gone.
pub(crate) async fn remove_dir(dir: &Path) -> bool {
    for attempt in 0..250 {
        if attempt % 10 == 0 {
            kill_all(dir);
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    tracing::warn!(dir = %dir.display(), "could not remove cgroup");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v2 code path on a fake hierarchy (plain files stand in for the
    /// kernel's): this machine's controllers are all on v1.
    #[tokio::test]
    async fn v2_limits_on_a_fake_hierarchy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        for d in [root.clone(), root.join(BASE), root.join(BASE).join("pod1")] {
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("cgroup.controllers"), "cpuset cpu io memory pids\n").expect("controllers");
            std::fs::write(d.join("cgroup.subtree_control"), "").expect("subtree_control");
        }
        let cg = Cgroups { layout: Layout::V2 { root: root.clone() } };
        cg.prepare().expect("prepare");
        let dirs = cg.create("pod1", "app", Some(128 << 20), Some(1500)).await;
        assert_eq!(dirs, vec![root.join("rkube/pod1/app")]);
        let read = |f: &str| std::fs::read_to_string(dirs[0].join(f)).expect(f);
        assert_eq!(read("memory.max"), (128u64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("cpu.max"), "150000 100000");
        // Tiny CPU limits get the kernel's 1 ms minimum quota.
        let dirs = cg.create("pod1", "tiny", None, Some(1)).await;
        assert_eq!(std::fs::read_to_string(dirs[0].join("cpu.max")).expect("cpu.max"), "1000 100000");
        assert!(!dirs[0].join("memory.max").exists());
        assert_eq!(cg.pod_dirs("pod1"), vec![root.join("rkube/pod1")]);
    }

    #[test]
    fn parses_mountinfo_of_both_layouts() {
        let hybrid = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/memory rw shared:15 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw shared:16 - cgroup cgroup rw,cpu,cpuacct
37 30 0:33 / /sys/fs/cgroup/cpuset rw shared:17 - cgroup cgroup rw,cpuset
38 30 0:34 / /sys/fs/cgroup/pids rw shared:18 - cgroup cgroup rw,pids
39 30 0:35 / /mnt/with\\040space rw - ext4 /dev/sda rw";
        let m = parse_mountinfo(hybrid);
        assert_eq!(m.len(), 7);
        assert_eq!(m[6].point, PathBuf::from("/mnt/with space"));
        match layout_from(&m) {
            Layout::V1 { memory, cpu, pids } => {
                assert_eq!(memory, Some(PathBuf::from("/sys/fs/cgroup/memory")));
                assert_eq!(cpu, Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")));
                assert_eq!(pids, Some(PathBuf::from("/sys/fs/cgroup/pids")));
            }
            other => panic!("{other:?}"),
        }
        // A cgroup2 mount without controllers (here: a path that does not exist) is not usable.
        let v2 = parse_mountinfo("31 23 0:27 / /nonexistent/cgroup rw - cgroup2 cgroup2 rw");
        assert!(matches!(layout_from(&v2), Layout::Unavailable));
    }
}
