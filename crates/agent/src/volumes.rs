//! Projected volumes (`projected:` with `serviceAccountToken`, `configMap` and
//! `downwardAPI` namespace sources): the volume the ServiceAccount admission
//! adds to every pod, made as kubelet's projected volume plugin and token
//! manager do (`pkg/volume/projected`, `pkg/kubelet/token/token_manager.go`).
//! The files are written under `<data-dir>/volumes/<pod uid>/<volume>/` and
//! bound read-only at each container's `mountPath` by the pod's infra
//! process; a token is requested bound to the pod and replaced once 80 % of
//! its lifetime has passed (the bind mount shows the new file). Other volume
//! kinds are not mounted yet.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, ProjectedVolumeSource};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// When a token is replaced: this share of its lifetime (kubelet's 80 %).
const REFRESH_AT: f64 = 0.8;

/// The projected volumes of one pod and when their tokens go stale.
#[derive(Debug, Default)]
pub struct PodVolumes {
    /// Volume name -> when its files must be written again.
    due: BTreeMap<String, Instant>,
}

/// Where a pod's volume lives on the node.
pub fn volume_dir(data_dir: &Path, pod_uid: &str, volume: &str) -> PathBuf {
    data_dir.join("volumes").join(pod_uid).join(volume)
}

/// The (source directory, mount path) pairs of the pod's projected volumes.
pub fn mounts(data_dir: &Path, pod: &Pod) -> Vec<(PathBuf, String)> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let Some(spec) = &pod.spec else { return Vec::new() };
    let projected: Vec<&str> =
        spec.volumes.iter().flatten().filter(|v| v.projected.is_some()).map(|v| v.name.as_str()).collect();
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    let containers = spec.init_containers.iter().flatten().chain(&spec.containers);
    for m in containers.flat_map(|c| c.volume_mounts.iter().flatten()) {
        if projected.contains(&m.name.as_str()) && !out.iter().any(|(_, t)| *t == m.mount_path) {
            out.push((volume_dir(data_dir, &uid, &m.name), m.mount_path.clone()));
        }
    }
    out
}

impl PodVolumes {
    /// Writes the files of every projected volume not written yet or whose
    /// token is due. Errors name the volume and source (the pod waits).
    pub async fn ensure(&mut self, client: &kube::Client, data_dir: &Path, pod: &Pod) -> Result<(), String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let Some(spec) = &pod.spec else { return Ok(()) };
        for v in spec.volumes.iter().flatten() {
            let Some(p) = &v.projected else { continue };
            if self.due.get(&v.name).is_some_and(|t| *t > Instant::now()) {
                continue;
            }
            let dir = volume_dir(data_dir, &uid, &v.name);
            let lifetime = write_projected(client, pod, p, &dir)
                .await
                .map_err(|e| format!("MountVolume.SetUp failed for volume {:?}: {e}", v.name))?;
            let next = lifetime.map(|l| l.mul_f64(REFRESH_AT)).unwrap_or(Duration::from_secs(24 * 3600));
            self.due.insert(v.name.clone(), Instant::now() + next);
        }
        Ok(())
    }
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
        if let Some(c) = &s.config_map {
            let cm =
                Api::<ConfigMap>::namespaced(client.clone(), &ns).get_opt(&c.name).await.map_err(|e| e.to_string())?;
            let Some(cm) = cm else {
                if c.optional == Some(true) {
                    continue;
                }
                return Err(format!("configmap {:?} not found", c.name));
            };
            let data = cm.data.unwrap_or_default();
            for item in c.items.iter().flatten() {
                match data.get(&item.key) {
                    Some(v) => write_file(dir, &item.path, v.as_bytes(), item.mode.unwrap_or(mode))?,
                    None if c.optional == Some(true) => {}
                    None => return Err(format!("configmap {:?} has no key {:?}", c.name, item.key)),
                }
            }
        }
        if let Some(d) = &s.downward_api {
            for item in d.items.iter().flatten() {
                let value = match item.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                    Some("metadata.namespace") => ns.clone(),
                    Some("metadata.name") => pod.metadata.name.clone().unwrap_or_default(),
                    Some("metadata.uid") => pod.metadata.uid.clone().unwrap_or_default(),
                    Some(other) => return Err(format!("downward API field {other:?} is not supported in volumes yet")),
                    None => return Err("downward API volume items need a fieldRef".into()),
                };
                write_file(dir, &item.path, value.as_bytes(), item.mode.unwrap_or(mode))?;
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
    if name.is_empty() || name.starts_with('/') || name.split('/').any(|p| p == "..") {
        return Err(format!("invalid path {name:?} in a projected volume"));
    }
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
        let m = mounts(Path::new("/var/lib/agent"), &pod);
        assert_eq!(
            m,
            [(
                PathBuf::from("/var/lib/agent/volumes/u1/kube-api-access-abcde"),
                "/var/run/secrets/kubernetes.io/serviceaccount".to_string()
            )]
        );
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
