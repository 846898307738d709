//! Manifests, indexes and image configs (OCI image spec and Docker's
//! schema 2, which share their JSON shape), and choosing the node's
//! platform from an index as containerd's `platforms.Default()` does.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The `Accept` header of a manifest request: every form rkube reads.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest: a config and layers, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An index (manifest list): one manifest per platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// What a manifest request returned.
#[derive(Debug, Clone)]
pub enum Fetched {
    Index(Index),
    Manifest(Manifest),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("unsupported manifest media type {0:?} (rkube reads OCI and Docker schema 2 manifests and indexes)")]
    MediaType(String),
    #[error("malformed manifest: {0}")]
    Malformed(String),
    #[error("the image index has no manifest for {wanted} (it has: {available})")]
    NoPlatform { wanted: String, available: String },
    #[error("unsupported layer media type {0:?}")]
    LayerType(String),
}

/// Decode a manifest body by its media type (the response's Content-Type,
/// or the body's own `mediaType` when the registry sent a generic one).
pub fn decode(content_type: &str, body: &[u8]) -> Result<Fetched, ManifestError> {
    let malformed = |e: serde_json::Error| ManifestError::Malformed(e.to_string());
    let mut media = content_type.split(';').next().unwrap_or_default().trim().to_string();
    if !matches!(media.as_str(), OCI_INDEX | DOCKER_LIST | OCI_MANIFEST | DOCKER_MANIFEST) {
        let v: serde_json::Value = serde_json::from_slice(body).map_err(malformed)?;
        media = match v.get("mediaType").and_then(|m| m.as_str()) {
            Some(m) => m.to_string(),
            None if v.get("manifests").is_some() => OCI_INDEX.to_string(),
            None if v.get("layers").is_some() => OCI_MANIFEST.to_string(),
            None => return Err(ManifestError::MediaType(content_type.to_string())),
        };
    }
    match media.as_str() {
        OCI_INDEX | DOCKER_LIST => Ok(Fetched::Index(serde_json::from_slice(body).map_err(malformed)?)),
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(Fetched::Manifest(serde_json::from_slice(body).map_err(malformed)?)),
        other => Err(ManifestError::MediaType(other.to_string())),
    }
}

/// The platform of this node, in Go's names (`GOARCH`), as containerd matches it.
pub fn node_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        other => (other, None),
    };
    Platform { architecture: architecture.into(), os: "linux".into(), variant: variant.map(Into::into) }
}

/// The index entry for `want`: same os and architecture, and the variant when
/// both name one (arm64 images often leave `v8` out). Attestation entries
/// (`unknown/unknown`) never match.
pub fn choose<'a>(index: &'a Index, want: &Platform) -> Result<&'a Descriptor, ManifestError> {
    let matches = |p: &Platform| {
        p.os == want.os
            && p.architecture == want.architecture
            && match (&p.variant, &want.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    };
    index.manifests.iter().find(|d| d.platform.as_ref().is_some_and(matches)).ok_or_else(|| {
        let available: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(|p| p.to_string())
            .collect();
        ManifestError::NoPlatform {
            wanted: want.to_string(),
            available: if available.is_empty() { "no platforms".into() } else { available.join(", ") },
        }
    })
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression a layer's media type names.
pub fn layer_compression(media_type: &str) -> Result<Compression, ManifestError> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar" | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
            Ok(Compression::None)
        }
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Ok(Compression::Zstd),
        other => Err(ManifestError::LayerType(other.to_string())),
    }
}

/// An image config (the parts a runtime reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: RunConfig,
    #[serde(default)]
    pub rootfs: RootFs,
}

/// The image's defaults for a container (Dockerfile `ENTRYPOINT`, `CMD`,
/// `ENV`, `WORKDIR`, `USER`, `EXPOSE`, `STOPSIGNAL`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(rename = "ExposedPorts", default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "StopSignal", default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

impl ImageConfig {
    /// The image's environment as (name, value), in order.
    pub fn env(&self) -> Vec<(String, String)> {
        self.config
            .env
            .iter()
            .flatten()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(arch: &str, variant: Option<&str>, os: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::of(arch.as_bytes()),
            size: 1,
            platform: Some(Platform { architecture: arch.into(), os: os.into(), variant: variant.map(Into::into) }),
            annotations: None,
        }
    }

    #[test]
    fn chooses_the_node_platform() {
        let index = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![
                desc("unknown", None, "unknown"),
                desc("arm64", None, "linux"),
                desc("amd64", None, "linux"),
            ],
        };
        let amd = Platform { architecture: "amd64".into(), os: "linux".into(), variant: None };
        assert_eq!(choose(&index, &amd).map(|d| d.digest.clone()), Ok(Digest::of(b"amd64")));
        let arm = Platform { architecture: "arm64".into(), os: "linux".into(), variant: Some("v8".into()) };
        assert_eq!(choose(&index, &arm).map(|d| d.digest.clone()), Ok(Digest::of(b"arm64")));
        let s390 = Platform { architecture: "s390x".into(), os: "linux".into(), variant: None };
        let e = choose(&index, &s390).map(|_| ()).unwrap_err().to_string();
        assert_eq!(e, "the image index has no manifest for linux/s390x (it has: linux/arm64, linux/amd64)");
    }

    #[test]
    fn decodes_by_media_type() {
        let d = Digest::of(b"x");
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{d}","size":1}},"layers":[]}}"#
        );
        assert!(matches!(decode(DOCKER_MANIFEST, body.as_bytes()), Ok(Fetched::Manifest(_))));
        // A generic content type: the body's shape decides.
        assert!(matches!(decode("application/json", body.as_bytes()), Ok(Fetched::Manifest(_))));
        assert!(matches!(
            decode("application/vnd.docker.distribution.manifest.v1+prettyjws", b"{\"mediaType\":\"x\"}"),
            Err(ManifestError::MediaType(_))
        ));
        assert_eq!(layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip"), Ok(Compression::Gzip));
        assert!(layer_compression("text/plain").is_err());
        let cfg: ImageConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin","A=b=c","EMPTY"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .expect("valid config");
        assert_eq!(
            cfg.env(),
            vec![("PATH".into(), "/bin".into()), ("A".into(), "b=c".into()), ("EMPTY".into(), String::new())]
        );
    }
}
