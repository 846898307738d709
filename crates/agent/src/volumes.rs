//! A pod's volumes as kubelet's volume plugins make them (`pkg/volume/*`):
//! `configMap`, `secret`, `downwardAPI` and `projected` (with the
//! ServiceAccount token of kubelet's token manager,
//! `pkg/kubelet/token/token_manager.go`) are files written under
//! `<data-dir>/volumes/<pod uid>/<volume>/` and bound read-only; `emptyDir` is
//! an empty directory there, `hostPath` the node's path, both bound read-write
//! unless the mount says `readOnly`. The pod's infra process binds them at each
//! `mountPath` (one mount namespace per pod: the containers share it, so a path
//! mounts one volume for the whole pod). Object-backed volumes are rewritten
//! every [`RESYNC`] (kubelet's periodic sync shows changes in place); a token is
//! replaced once 80 % of its lifetime has passed. `emptyDir.medium: Memory` is
//! a tmpfs of `sizeLimit` (the kernel's default size without one) made in the
//! pod's mount namespace. Not supported yet: `sizeLimit` of a disk emptyDir
//! (no eviction), and every volume type backed by storage (PVCs, CSI, ...),
//! which refuse the pod.

use crate::runtime::{Mount, MountSource};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, ProjectedVolumeSource, Secret, Volume,
};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// When a token is replaced: this share of its lifetime (kubelet's 80 %).
const REFRESH_AT: f64 = 0.8;
/// How often object-backed files (configMap, secret, downward API) are rewritten.
pub const RESYNC: Duration = Duration::from_secs(30);

/// The projected volumes of one pod and when their tokens go stale.
#[derive(Debug, Default)]
pub struct PodVolumes {
    /// Volume name -> when its files must be written again.
    due: BTreeMap<String, Instant>,
}

/// The eviction message when a disk emptyDir of `pod` uses more than its
/// `sizeLimit` (kubelet `pkg/kubelet/eviction/helpers.go` emptyDirMessageFmt).
pub fn empty_dir_over_limit(data_dir: &Path, pod: &Pod) -> Option<String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    for v in pod.spec.as_ref()?.volumes.iter().flatten() {
        let Some(e) = &v.empty_dir else { continue };
        if e.medium.as_deref() == Some("Memory") {
            continue; // its tmpfs is sized to the limit
        }
        let Some(limit) = &e.size_limit else { continue };
        let Some(bytes) = apimachinery::quantity::value(limit) else { continue };
        if disk_usage(&volume_dir(data_dir, &uid, &v.name)) as f64 > bytes {
            return Some(format!("Usage of EmptyDir volume {:?} exceeds the limit {:?}. ", v.name, limit.0));
        }
    }
    None
}

/// Bytes of disk under `dir`, as `du` counts them (allocated blocks; no
/// symlinks followed, hard links counted once).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            }
            if m.nlink() > 1 && !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            total += m.blocks() * 512;
        }
    }
    total
}

/// Where a pod's volume lives on the node.
pub fn volume_dir(data_dir: &Path, pod_uid: &str, volume: &str) -> PathBuf {
    data_dir.join("volumes").join(pod_uid).join(volume)
}

/// The pod's volume mounts the pod infra makes (one per mount path; the first
/// container asking wins), or why the pod cannot run: a mount of an undeclared
/// volume, a volume type without support, a `subPath` leaving its volume.
///
/// Containers named in `own_root` run in a root filesystem of their own and
/// bind their volumes themselves ([`container_binds`]): nothing of theirs is
/// mounted on the node's paths, but a Memory emptyDir they use is a tmpfs the
/// infra makes at the volume's directory (in the pod's mount namespace only).
pub fn mounts(data_dir: &Path, pod: &Pod, own_root: &[String]) -> Result<Vec<Mount>, String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let Some(spec) = &pod.spec else { return Ok(Vec::new()) };
    let volumes: BTreeMap<&str, &Volume> = spec.volumes.iter().flatten().map(|v| (v.name.as_str(), v)).collect();
    let mut out: Vec<Mount> = Vec::new();
    let containers = spec.init_containers.iter().flatten().chain(&spec.containers);
    for c in containers {
        let own = own_root.contains(&c.name);
        for m in c.volume_mounts.iter().flatten() {
            let (source, read_only) = mount_source(data_dir, &uid, &volumes, m)?;
            let (source, target) = match (own, source) {
                (false, source) => (source, m.mount_path.clone()),
                (true, MountSource::Tmpfs { size_bytes }) => {
                    let dir = volume_dir(data_dir, &uid, &m.name);
                    (MountSource::Tmpfs { size_bytes }, dir.to_string_lossy().into_owned())
                }
                (true, MountSource::Path(_)) => continue,
            };
            if out.iter().any(|o| o.target == target) {
                continue;
            }
            out.push(Mount { source, target, read_only });
        }
    }
    Ok(out)
}

/// The volume mounts of a container with a root filesystem of its own:
/// (path in the pod's mount namespace, target in the container, read-only).
pub fn container_binds(
    data_dir: &Path,
    pod: &Pod,
    c: &k8s_openapi::api::core::v1::Container,
) -> Result<Vec<(PathBuf, String, bool)>, String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let Some(spec) = &pod.spec else { return Ok(Vec::new()) };
    let volumes: BTreeMap<&str, &Volume> = spec.volumes.iter().flatten().map(|v| (v.name.as_str(), v)).collect();
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let (source, read_only) = mount_source(data_dir, &uid, &volumes, m)?;
        let path = match source {
            MountSource::Path(p) => p,
            // The infra's tmpfs, at the volume's directory (see `mounts`).
            MountSource::Tmpfs { .. } => volume_dir(data_dir, &uid, &m.name),
        };
        out.push((path, m.mount_path.clone(), read_only));
    }
    Ok(out)
}

/// Where one volume mount's contents come from, and whether it is read-only.
fn mount_source(
    data_dir: &Path,
    uid: &str,
    volumes: &BTreeMap<&str, &Volume>,
    m: &k8s_openapi::api::core::v1::VolumeMount,
) -> Result<(MountSource, bool), String> {
    let v = volumes.get(m.name.as_str()).ok_or_else(|| format!("volume {:?} is mounted but not declared", m.name))?;
    let read_only = m.read_only.unwrap_or(false);
    let (mut source, read_only) =
        if v.projected.is_some() || v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some() {
            // Upstream mounts these read-only whatever the mount says.
            (MountSource::Path(volume_dir(data_dir, uid, &v.name)), true)
        } else if let Some(e) = &v.empty_dir {
            if e.medium.as_deref() == Some("Memory") {
                if m.sub_path.as_deref().is_some_and(|s| !s.is_empty()) {
                    return Err(format!("volume {:?}: subPath of a Memory emptyDir is not supported", v.name));
                }
                let size_bytes = e.size_limit.as_ref().and_then(apimachinery::quantity::value).map(|b| b as u64);
                return Ok((MountSource::Tmpfs { size_bytes }, read_only));
            }
            (MountSource::Path(volume_dir(data_dir, uid, &v.name)), read_only)
        } else if let Some(h) = &v.host_path {
            (MountSource::Path(PathBuf::from(&h.path)), read_only)
        } else {
            return Err(format!(
            "volume {:?}: only configMap, secret, downwardAPI, projected, emptyDir and hostPath volumes are supported",
            v.name
        ));
        };
    if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
        check_relative(sub).map_err(|e| format!("volume {:?} subPath: {e}", m.name))?;
        if let MountSource::Path(p) = &mut source {
            *p = p.join(sub);
        }
    }
    Ok((source, read_only))
}

impl PodVolumes {
    /// Writes the files of every projected volume not written yet or whose
    /// token is due. Errors name the volume and source (the pod waits).
    pub async fn ensure(&mut self, client: &kube::Client, data_dir: &Path, pod: &Pod) -> Result<(), String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let Some(spec) = &pod.spec else { return Ok(()) };
        for v in spec.volumes.iter().flatten() {
            if self.due.get(&v.name).is_some_and(|t| *t > Instant::now()) {
                continue;
            }
            let dir = volume_dir(data_dir, &uid, &v.name);
            let next = set_up(client, pod, v, &dir)
                .await
                .map_err(|e| format!("MountVolume.SetUp failed for volume {:?}: {e}", v.name))?;
            self.due.insert(v.name.clone(), Instant::now() + next);
        }
        Ok(())
    }
}

/// Makes one volume's files or directory; when to do it again.
async fn set_up(client: &kube::Client, pod: &Pod, v: &Volume, dir: &Path) -> Result<Duration, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    /// Made once and left alone for the pod's life.
    const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);
    if let Some(p) = &v.projected {
        let lifetime = write_projected(client, pod, p, dir).await?;
        return Ok(lifetime.map(|l| l.mul_f64(REFRESH_AT)).unwrap_or(RESYNC));
    }
    if let Some(c) = &v.config_map {
        let files = payload(client, &ns, &c.name, c.optional, c.items.as_deref(), config_map_files).await?;
        write_all(dir, &files.unwrap_or_default(), c.default_mode.unwrap_or(0o644))?;
        return Ok(RESYNC);
    }
    if let Some(sv) = &v.secret {
        let name = sv.secret_name.as_deref().unwrap_or_default();
        let files = payload(client, &ns, name, sv.optional, sv.items.as_deref(), secret_files).await?;
        write_all(dir, &files.unwrap_or_default(), sv.default_mode.unwrap_or(0o644))?;
        return Ok(RESYNC);
    }
    if let Some(d) = &v.downward_api {
        let mut files = BTreeMap::new();
        for item in d.items.iter().flatten() {
            files.insert(item.path.clone(), (downward_value(pod, item)?.into_bytes(), item.mode));
        }
        write_all(dir, &files, d.default_mode.unwrap_or(0o644))?;
        return Ok(RESYNC);
    }
    if let Some(e) = &v.empty_dir {
        // A Memory emptyDir is a tmpfs the infra makes: nothing on the node.
        if e.medium.as_deref() == Some("Memory") {
            return Ok(NEVER);
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        // World-writable, as kubelet makes it (`pkg/volume/emptydir/empty_dir.go`
        // setupDir), so containers running as any user can write.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
        return Ok(NEVER);
    }
    if let Some(h) = &v.host_path {
        host_path(&h.path, h.type_.as_deref().unwrap_or(""))?;
        return Ok(NEVER);
    }
    // Not mounted anywhere (mounts() refuses the pod if it is): nothing to make.
    Ok(NEVER)
}

/// A file of a volume: contents and its own mode, if any.
type Files = BTreeMap<String, (Vec<u8>, Option<i32>)>;

/// The files of a configMap or secret source (`files_of` reads the object):
/// every key, or its `items`; `None` when the object is missing and `optional`.
async fn payload<K>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    optional: Option<bool>,
    items: Option<&[KeyToPath]>,
    files_of: fn(&K) -> Files,
) -> Result<Option<Files>, String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let optional = optional == Some(true);
    let what = format!("{} {name:?}", K::kind(&()).to_lowercase());
    let obj = Api::<K>::namespaced(client.clone(), ns).get_opt(name).await.map_err(|e| e.to_string())?;
    match obj {
        Some(obj) => select(&files_of(&obj), items, optional, &what).map(Some),
        None if optional => Ok(None),
        None => Err(format!("{what} not found")),
    }
}

fn config_map_files(cm: &ConfigMap) -> Files {
    let mut out: Files = BTreeMap::new();
    for (k, v) in cm.data.clone().unwrap_or_default() {
        out.insert(k, (v.into_bytes(), None));
    }
    for (k, v) in cm.binary_data.clone().unwrap_or_default() {
        out.insert(k, (v.0, None));
    }
    out
}

fn secret_files(s: &Secret) -> Files {
    let mut out: Files = BTreeMap::new();
    for (k, v) in s.data.clone().unwrap_or_default() {
        out.insert(k, (v.0, None));
    }
    for (k, v) in s.string_data.clone().unwrap_or_default() {
        out.insert(k, (v.into_bytes(), None));
    }
    out
}

/// The `items` of a configMap/secret volume (key -> path, mode), or every key
/// under its own name (upstream `MakePayload`).
fn select(all: &Files, items: Option<&[KeyToPath]>, optional: bool, what: &str) -> Result<Files, String> {
    let Some(items) = items.filter(|i| !i.is_empty()) else { return Ok(all.clone()) };
    let mut out: Files = BTreeMap::new();
    for item in items {
        match all.get(&item.key) {
            Some((data, _)) => {
                out.insert(item.path.clone(), (data.clone(), item.mode));
            }
            None if optional => {}
            None => return Err(format!("{what} has no key {:?}", item.key)),
        }
    }
    Ok(out)
}

/// A downward API file's contents (upstream `fieldpath.ExtractFieldPathAsString`;
/// labels and annotations as `key="value"` lines, sorted).
fn downward_value(pod: &Pod, item: &DownwardAPIVolumeFile) -> Result<String, String> {
    if let Some(r) = &item.resource_field_ref {
        // In a volume the container must be named (upstream validation).
        let name = r.container_name.as_deref().filter(|n| !n.is_empty()).ok_or_else(|| {
            format!("downward API resourceFieldRef {:?}: containerName is required in volumes", r.resource)
        })?;
        let c = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .find(|c| c.name == name)
            .ok_or_else(|| format!("downward API resourceFieldRef: no container {name:?} in the pod"))?;
        let node = crate::resource_fields::Allocatable::of_node();
        return crate::resource_fields::value(c, &r.resource, r.divisor.as_ref(), &node);
    }
    let path =
        item.field_ref.as_ref().map(|f| f.field_path.as_str()).ok_or("downward API volume items need a fieldRef")?;
    let pairs = |m: Option<&BTreeMap<String, String>>| -> String {
        m.into_iter().flatten().map(|(k, v)| format!("{k}={v:?}\n")).collect::<String>().trim_end().to_string()
    };
    Ok(match path {
        "metadata.namespace" => pod.metadata.namespace.clone().unwrap_or_default(),
        "metadata.name" => pod.metadata.name.clone().unwrap_or_default(),
        "metadata.uid" => pod.metadata.uid.clone().unwrap_or_default(),
        "metadata.labels" => pairs(pod.metadata.labels.as_ref()),
        "metadata.annotations" => pairs(pod.metadata.annotations.as_ref()),
        p => {
            let key = |prefix: &str| {
                p.strip_prefix(prefix)
                    .and_then(|r| r.strip_prefix('[')?.strip_suffix(']'))
                    .map(|k| k.trim_matches('\'').to_string())
            };
            if let Some(k) = key("metadata.labels") {
                pod.metadata.labels.as_ref().and_then(|l| l.get(&k)).cloned().unwrap_or_default()
            } else if let Some(k) = key("metadata.annotations") {
                pod.metadata.annotations.as_ref().and_then(|a| a.get(&k)).cloned().unwrap_or_default()
            } else {
                return Err(format!("downward API field {p:?} is not supported in volumes"));
            }
        }
    })
}

/// Upstream's hostPath `type` checks (`pkg/volume/hostpath`): the `OrCreate`
/// kinds make what is missing, the others must find it.
fn host_path(path: &str, kind: &str) -> Result<(), String> {
    let p = Path::new(path);
    let meta = std::fs::metadata(p);
    let is = |want: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(format!("hostPath type check failed: {path} is not a {want}"))
        }
    };
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_err() => std::fs::create_dir_all(p).map_err(|e| format!("creating {path}: {e}")),
        "FileOrCreate" if meta.is_err() => {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            std::fs::File::create(p).map(|_| ()).map_err(|e| format!("creating {path}: {e}"))
        }
        "Directory" | "DirectoryOrCreate" => is("directory", meta.as_ref().is_ok_and(|m| m.is_dir())),
        "File" | "FileOrCreate" => is("file", meta.as_ref().is_ok_and(|m| m.is_file())),
        "Socket" | "CharDevice" | "BlockDevice" => {
            use std::os::unix::fs::FileTypeExt;
            let t = meta.as_ref().map(|m| m.file_type());
            let ok = match kind {
                "Socket" => t.is_ok_and(|t| t.is_socket()),
                "CharDevice" => t.is_ok_and(|t| t.is_char_device()),
                _ => t.is_ok_and(|t| t.is_block_device()),
            };
            is(&kind.to_lowercase(), ok)
        }
        other => Err(format!("unknown hostPath type {other:?}")),
    }
}

/// Writes `files` into `dir` and removes what a previous write left that is no
/// longer there (a key deleted from the object).
fn write_all(dir: &Path, files: &Files, default_mode: i32) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for (name, (data, mode)) in files {
        write_file(dir, name, data, mode.unwrap_or(default_mode))?;
    }
    let keep: std::collections::BTreeSet<&str> = files.keys().filter_map(|k| k.split('/').next()).collect();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(name.as_str()) {
            let path = entry.path();
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
    }
    Ok(())
}

/// Refuses absolute paths and `..` components (a file must stay in its volume).
fn check_relative(name: &str) -> Result<(), String> {
    if name.is_empty() || name.starts_with('/') || name.split('/').any(|p| p == "..") {
        return Err(format!("invalid path {name:?}: must be relative and must not contain '..'"));
    }
    Ok(())
}

/// Writes the sources of one projected volume into `dir`; the lifetime of
/// its token, if it has one.
async fn write_projected(
    client: &kube::Client,
    pod: &Pod,
    p: &ProjectedVolumeSource,
    dir: &Path,
) -> Result<Option<Duration>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mode = p.default_mode.unwrap_or(0o644);
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut lifetime = None;
    for s in p.sources.iter().flatten() {
        if let Some(t) = &s.service_account_token {
            let (token, ttl) = request_token(client, pod, t.audience.as_deref(), t.expiration_seconds).await?;
            write_file(dir, &t.path, token.as_bytes(), mode)?;
            lifetime = Some(ttl);
        }
        let mut files = Files::new();
        if let Some(c) = &s.config_map {
            let got = payload(client, &ns, &c.name, c.optional, c.items.as_deref(), config_map_files).await?;
            files.extend(got.unwrap_or_default());
        }
        if let Some(sp) = &s.secret {
            let got = payload(client, &ns, &sp.name, sp.optional, sp.items.as_deref(), secret_files).await?;
            files.extend(got.unwrap_or_default());
        }
        for (name, (data, m)) in files {
            write_file(dir, &name, &data, m.unwrap_or(mode))?;
        }
        if let Some(d) = &s.downward_api {
            for item in d.items.iter().flatten() {
                write_file(dir, &item.path, downward_value(pod, item)?.as_bytes(), item.mode.unwrap_or(mode))?;
            }
        }
    }
    Ok(lifetime)
}

/// A token for the pod's ServiceAccount bound to the pod (kubelet's
/// TokenRequest), and its lifetime.
async fn request_token(
    client: &kube::Client,
    pod: &Pod,
    audience: Option<&str>,
    expiration: Option<i64>,
) -> Result<(String, Duration), String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let account = spec.service_account_name.unwrap_or_else(|| "default".into());
    let mut req_spec = json!({
        "expirationSeconds": expiration.unwrap_or(3607),
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.metadata.name, "uid": pod.metadata.uid},
    });
    if let Some(a) = audience.filter(|a| !a.is_empty()) {
        req_spec["audiences"] = json!([a]);
    }
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": req_spec});
    let api = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &ns);
    let out: Value = api
        .create_subresource("token", &account, &PostParams::default(), &body)
        .await
        .map_err(|e| format!("requesting a token for service account {ns}/{account}: {e}"))?;
    let token = out.pointer("/status/token").and_then(Value::as_str).ok_or("the TokenRequest returned no token")?;
    let ttl = out
        .pointer("/status/expirationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .and_then(|t| Duration::try_from(t.duration_since(jiff::Timestamp::now())).ok())
        .unwrap_or(Duration::from_secs(600));
    Ok((token.to_string(), ttl))
}

/// Writes `name` in `dir` atomically (a rename), so a reader never sees half a token.
fn write_file(dir: &Path, name: &str, data: &[u8], mode: i32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    check_relative(name)?;
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    let tmp = path.with_extension("rkube-tmp");
    std::fs::write(&tmp, data).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    let perms = std::fs::Permissions::from_mode(u32::try_from(mode).unwrap_or(0o644) & 0o777);
    std::fs::set_permissions(&tmp, perms).map_err(|e| format!("chmod {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("renaming {} to {}: {e}", tmp.display(), path.display()))
}

/// Removes a pod's volumes once it is gone.
pub fn remove(data_dir: &Path, pod_uid: &str) {
    let dir = data_dir.join("volumes").join(pod_uid);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "removing a pod's volumes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projected_volumes_mount_where_containers_ask_once_per_path() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {
                "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": []}}, {"name": "data", "emptyDir": {}}],
                "containers": [
                    {"name": "a", "volumeMounts": [{"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}, {"name": "data", "mountPath": "/data"}]},
                    {"name": "b", "volumeMounts": [{"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]},
                ],
            },
        }))
        .expect("pod");
        let m = mounts(Path::new("/var/lib/agent"), &pod, &[]).expect("mounts");
        assert_eq!(
            m,
            [
                Mount {
                    source: MountSource::Path(PathBuf::from("/var/lib/agent/volumes/u1/kube-api-access-abcde")),
                    target: "/var/run/secrets/kubernetes.io/serviceaccount".to_string(),
                    read_only: true,
                },
                Mount {
                    source: MountSource::Path(PathBuf::from("/var/lib/agent/volumes/u1/data")),
                    target: "/data".into(),
                    read_only: false
                },
            ]
        );
    }

    #[test]
    fn mounts_of_each_kind_and_what_is_refused() {
        let pod = |volumes: Value, mounts: Value| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
                "spec": {"volumes": volumes, "containers": [{"name": "a", "volumeMounts": mounts}]},
            }))
            .expect("pod")
        };
        let p = pod(
            json!([{"name": "cfg", "configMap": {"name": "c"}}, {"name": "host", "hostPath": {"path": "/srv/www"}}]),
            json!([{"name": "cfg", "mountPath": "/etc/app", "readOnly": false}, {"name": "host", "mountPath": "/www", "readOnly": true, "subPath": "site"}]),
        );
        let m = mounts(Path::new("/d"), &p, &[]).expect("mounts");
        assert_eq!(
            m[0],
            Mount { source: MountSource::Path("/d/volumes/u1/cfg".into()), target: "/etc/app".into(), read_only: true },
            "configMaps are read-only"
        );
        assert_eq!(
            m[1],
            Mount { source: MountSource::Path("/srv/www/site".into()), target: "/www".into(), read_only: true }
        );
        let mem = pod(
            json!([{"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]),
            json!([{"name": "m", "mountPath": "/cache"}]),
        );
        assert_eq!(
            mounts(Path::new("/d"), &mem, &[]).expect("mounts"),
            [Mount {
                source: MountSource::Tmpfs { size_bytes: Some(64 << 20) },
                target: "/cache".into(),
                read_only: false
            }]
        );
        // A container with its own rootfs: nothing on the node's paths, its
        // Memory emptyDir at the volume's directory, bound by the container.
        assert_eq!(
            mounts(Path::new("/d"), &mem, &["a".to_string()]).expect("mounts"),
            [Mount {
                source: MountSource::Tmpfs { size_bytes: Some(64 << 20) },
                target: "/d/volumes/u1/m".into(),
                read_only: false
            }]
        );
        assert_eq!(mounts(Path::new("/d"), &p, &["a".to_string()]).expect("mounts"), []);
        let c = &mem.spec.as_ref().expect("spec").containers[0];
        assert_eq!(
            container_binds(Path::new("/d"), &mem, c).expect("binds"),
            [(PathBuf::from("/d/volumes/u1/m"), "/cache".to_string(), false)]
        );
        let c = &p.spec.as_ref().expect("spec").containers[0];
        assert_eq!(
            container_binds(Path::new("/d"), &p, c).expect("binds"),
            [
                (PathBuf::from("/d/volumes/u1/cfg"), "/etc/app".to_string(), true),
                (PathBuf::from("/srv/www/site"), "/www".to_string(), true)
            ]
        );
        let undeclared = pod(json!([]), json!([{"name": "ghost", "mountPath": "/x"}]));
        assert!(mounts(Path::new("/d"), &undeclared, &[]).is_err_and(|e| e.contains("not declared")));
        let pvc = pod(
            json!([{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]),
            json!([{"name": "v", "mountPath": "/x"}]),
        );
        assert!(mounts(Path::new("/d"), &pvc, &[]).is_err_and(|e| e.contains("only configMap")));
        let escape = pod(
            json!([{"name": "e", "emptyDir": {}}]),
            json!([{"name": "e", "mountPath": "/x", "subPath": "../../etc"}]),
        );
        assert!(mounts(Path::new("/d"), &escape, &[]).is_err());
    }

    #[test]
    fn empty_dir_usage_against_its_limit() {
        let data = tempfile::tempdir().expect("tempdir");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u9"},
            "spec": {"volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "64Ki"}}], "containers": []},
        }))
        .expect("pod");
        let dir = volume_dir(data.path(), "u9", "scratch");
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        std::fs::write(dir.join("sub/small"), vec![1u8; 10 << 10]).expect("write");
        assert_eq!(empty_dir_over_limit(data.path(), &pod), None);
        std::fs::write(dir.join("big"), vec![1u8; 100 << 10]).expect("write");
        assert_eq!(
            empty_dir_over_limit(data.path(), &pod).as_deref(),
            Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"64Ki\". ")
        );
    }

    #[test]
    fn config_map_items_downward_files_and_stale_keys() {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"bin": "AAE="}}),
        )
        .expect("cm");
        let all = config_map_files(&cm);
        assert_eq!(all.get("bin").map(|f| f.0.clone()), Some(vec![0u8, 1]));
        let items: Vec<KeyToPath> =
            serde_json::from_value(json!([{"key": "a", "path": "sub/a.txt", "mode": 0o600}])).expect("items");
        let picked = select(&all, Some(&items), false, "configmap").expect("select");
        assert_eq!(picked.keys().collect::<Vec<_>>(), ["sub/a.txt"]);
        let missing: Vec<KeyToPath> = serde_json::from_value(json!([{"key": "zz", "path": "z"}])).expect("items");
        assert!(select(&all, Some(&missing), false, "configmap \"c\"").is_err_and(|e| e.contains("no key \"zz\"")));
        assert!(select(&all, Some(&missing), true, "configmap").is_ok_and(|f| f.is_empty()));

        let dir = std::env::temp_dir().join(format!("rkube-volumes-all-{}", std::process::id()));
        write_all(&dir, &all, 0o644).expect("write all");
        write_all(&dir, &picked, 0o644).expect("write picked");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["sub"], "keys no longer projected are removed");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("sub/a.txt")).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let _ = std::fs::remove_dir_all(&dir);

        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "tier": "a b"}}}),
        )
        .expect("pod");
        let item = |path: &str| -> DownwardAPIVolumeFile {
            serde_json::from_value(json!({"path": "f", "fieldRef": {"fieldPath": path}})).expect("item")
        };
        assert_eq!(downward_value(&pod, &item("metadata.labels")).expect("labels"), "app=\"web\"\ntier=\"a b\"");
        assert_eq!(downward_value(&pod, &item("metadata.labels['app']")).expect("label"), "web");
        assert_eq!(downward_value(&pod, &item("metadata.namespace")).expect("ns"), "ns");
        assert!(downward_value(&pod, &item("spec.nodeName")).is_err());
    }

    #[test]
    fn host_path_types() {
        let base = std::env::temp_dir().join(format!("rkube-hostpath-{}", std::process::id()));
        let d = base.join("made/dir");
        host_path(d.to_str().expect("utf8"), "DirectoryOrCreate").expect("created");
        assert!(d.is_dir());
        host_path(d.to_str().expect("utf8"), "Directory").expect("a directory");
        assert!(host_path(d.to_str().expect("utf8"), "File").is_err_and(|e| e.contains("is not a file")));
        let f = base.join("f/file");
        host_path(f.to_str().expect("utf8"), "FileOrCreate").expect("file created");
        assert!(f.is_file());
        assert!(host_path(base.join("nope").to_str().expect("utf8"), "Directory").is_err());
        host_path(base.join("nope").to_str().expect("utf8"), "").expect("no type: no check");
        assert!(host_path("/", "Bogus").is_err());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn files_are_replaced_whole_and_paths_stay_inside() {
        let dir = std::env::temp_dir().join(format!("rkube-volumes-{}", std::process::id()));
        write_file(&dir, "token", b"one", 0o644).expect("write");
        write_file(&dir, "token", b"two", 0o600).expect("rewrite");
        assert_eq!(std::fs::read_to_string(dir.join("token")).expect("read"), "two");
        assert!(write_file(&dir, "../escape", b"x", 0o644).is_err());
        assert!(write_file(&dir, "/abs", b"x", 0o644).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
