//! The node's one image lookup (kubelet's `images.ImageManager` in front of
//! the runtime's image service): what a container's image runs as, pulling
//! it into the node's store (crate `oci`) as its pull policy says, and the
//! Events kubelet records on the way (`pkg/kubelet/images/image_manager.go`).
//!
//! Precedence: rkube's own DNS and pause images are always built in. Other
//! images with a built-in program (the lesson's `minjulee226/myweb`,
//! `agnhost`) or a tool image (`busybox`, `nicolaka/netshoot`, ...) are pulled
//! like any image; when no registry can be reached the built-in runs instead
//! and an Event says so. With `--builtin-images=prefer` they run built in
//! without asking a registry. Everything else is a real image or an
//! `ErrImagePull`.

use crate::ImageSettings;
use oci::store::{Outcome, PullPolicy, Store};
use oci::{Credential, Reference, Registries};
use std::path::Path;
use std::time::Duration;

/// What a container runs.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A program built into rkube.
    Builtin(images::Builtin),
    /// A tool image: its command runs from the node's filesystem.
    Host,
    /// A pulled image, run in a root filesystem of its own.
    Oci(Box<oci::Image>),
}

/// An Event to record about the container (type, reason, message).
pub type Event = (&'static str, &'static str, String);

/// A successful lookup.
#[derive(Debug, Clone)]
pub struct Found {
    pub resolved: Resolved,
    pub events: Vec<Event>,
}

/// A failed lookup: the container's waiting reason and message, and Events.
#[derive(Debug, Clone)]
pub struct Failure {
    /// `ErrImagePull`, `ErrImageNeverPull` or `InvalidImageName`.
    pub reason: &'static str,
    pub message: String,
    pub events: Vec<Event>,
}

pub struct ImageService {
    store: Store,
    prefer_builtin: bool,
    gc_high: u8,
    gc_low: u8,
}

/// How often image garbage collection looks at the disk (kubelet's period).
pub const GC_PERIOD: Duration = Duration::from_secs(300);

/// Images that are rkube's own programs: never pulled.
fn always_builtin(b: images::Builtin) -> bool {
    matches!(b, images::Builtin::CoreDns | images::Builtin::NodeCache | images::Builtin::Pause)
}

fn seconds(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

impl ImageService {
    /// Open the image store in `<data_dir>/images` with the registry settings.
    pub fn open(data_dir: &Path, settings: &ImageSettings) -> Result<ImageService, String> {
        let mut registries = Registries::load(settings.registry_config.as_deref(), &settings.insecure_registries)
            .map_err(|e| e.to_string())?;
        if settings.disable_default_endpoint {
            registries = registries.without_default_endpoint();
        }
        let store = Store::open(&data_dir.join("images"), registries).map_err(|e| e.to_string())?;
        Ok(ImageService {
            store,
            prefer_builtin: settings.prefer_builtin,
            gc_high: settings.gc_high_percent,
            gc_low: settings.gc_low_percent,
        })
    }

    /// The pulled image `image` names, if the store has it (no registry traffic).
    pub fn lookup(&self, image: &str) -> Option<oci::Image> {
        self.store.get(image).ok().flatten()
    }

    /// Remove images no pod on this node uses while the disk is over the
    /// high threshold (kubelet's image GC, `pkg/kubelet/images/image_gc_manager.go`).
    /// `in_use`: the image references of this node's pods.
    pub fn collect_garbage(&self, in_use: &[String]) {
        let digests: std::collections::HashSet<oci::Digest> =
            in_use.iter().filter_map(|i| self.store.get(i).ok().flatten()).map(|img| img.manifest_digest).collect();
        match self.store.gc(&digests, self.gc_high, self.gc_low) {
            Ok(r) if !r.images.is_empty() => {
                tracing::info!(images = ?r.images, layers = r.layers, "image garbage collection removed unused images")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "image garbage collection failed"),
        }
    }

    /// What `image` runs as, pulling it when `policy` (the container's
    /// `imagePullPolicy`, or kubelet's default) says so.
    pub async fn resolve(
        &self,
        image: &str,
        policy: Option<&str>,
        creds: &[(String, Credential)],
    ) -> Result<Found, Failure> {
        let builtin = images::resolve(image).ok();
        let fallback = match builtin {
            Some(images::Resolved::Builtin(b)) if always_builtin(b) => {
                return Ok(Found { resolved: Resolved::Builtin(b), events: Vec::new() });
            }
            Some(images::Resolved::Builtin(b)) => Some(Resolved::Builtin(b)),
            Some(images::Resolved::Host) => Some(Resolved::Host),
            None => None,
        };
        if let (Some(f), true) = (&fallback, self.prefer_builtin) {
            let msg = format!(
                "Container image {image:?} is built into rkube; running the built-in (--builtin-images=prefer)"
            );
            return Ok(Found { resolved: f.clone(), events: vec![("Normal", "Pulled", msg)] });
        }
        let reference = match Reference::parse(image) {
            Ok(r) => r,
            Err(e) => {
                let message = format!("Failed to apply default image tag {image:?}: {e}");
                return Err(Failure {
                    reason: "InvalidImageName",
                    message: message.clone(),
                    events: vec![("Warning", "InspectFailed", message)],
                });
            }
        };
        let policy = PullPolicy::for_container(policy, &reference);
        let mut events: Vec<Event> = Vec::new();
        if policy != PullPolicy::Never {
            let present = matches!(self.store.get(image), Ok(Some(_)));
            if policy == PullPolicy::Always || !present {
                events.push(("Normal", "Pulling", format!("Pulling image {image:?}")));
            }
        }
        match self.store.ensure(image, policy, creds).await {
            Ok((img, outcome)) => {
                match outcome {
                    Outcome::Present if policy != PullPolicy::Always => events.push((
                        "Normal",
                        "Pulled",
                        format!("Container image {image:?} already present on machine"),
                    )),
                    Outcome::Present => events.push((
                        "Normal",
                        "Pulled",
                        format!("Successfully pulled image {image:?} (pulled by another container just now). Image size: {} bytes.", img.size),
                    )),
                    Outcome::Pulled { elapsed, .. } => events.push((
                        "Normal",
                        "Pulled",
                        format!(
                            "Successfully pulled image {image:?} in {} ({} including waiting). Image size: {} bytes.",
                            seconds(elapsed),
                            seconds(elapsed),
                            img.size
                        ),
                    )),
                }
                Ok(Found { resolved: Resolved::Oci(Box::new(img)), events })
            }
            Err(e) if e.is_unreachable() && fallback.is_some() => {
                let msg = format!("No registry could be reached for {image:?} ({e}); running rkube's built-in image");
                events.push(("Normal", "Pulled", msg));
                Ok(Found { resolved: fallback.unwrap_or(Resolved::Host), events })
            }
            Err(oci::StoreError::NeverPull(_)) => {
                let message = format!("Container image {image:?} is not present with pull policy of Never");
                events.push(("Warning", "ErrImageNeverPull", message.clone()));
                Err(Failure { reason: "ErrImageNeverPull", message, events })
            }
            Err(e) => {
                let message = format!("failed to pull and unpack image \"{reference}\": {e}");
                events.push(("Warning", "Failed", format!("Failed to pull image {image:?}: {message}")));
                events.push(("Warning", "Failed", "Error: ErrImagePull".to_string()));
                Err(Failure { reason: "ErrImagePull", message, events })
            }
        }
    }
}

/// The registry credentials of `kubernetes.io/dockerconfigjson` (and
/// `.dockercfg`) Secrets' data.
pub fn credentials(secrets: &[k8s_openapi::api::core::v1::Secret]) -> Vec<(String, Credential)> {
    let mut out = Vec::new();
    for s in secrets {
        let Some(data) = &s.data else { continue };
        let Some(bytes) = data.get(".dockerconfigjson").or_else(|| data.get(".dockercfg")) else { continue };
        match oci::config::parse_docker_config(&bytes.0) {
            Ok(c) => out.extend(c),
            Err(e) => tracing::warn!(secret = ?s.metadata.name, error = %e, "ignoring an unreadable pull secret"),
        }
    }
    out
}
