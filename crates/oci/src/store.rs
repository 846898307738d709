//! The node's image store: content-addressed, shared by every pod.
//!
//! Layout under the store's root (`<agent data dir>/images`):
//! - `blobs/sha256/<hex>`: manifests and configs as the registry sent them;
//! - `layers/sha256/<diff id hex>/`: each layer unpacked once, in overlayfs
//!   lower-layer form (see [`crate::unpack`]), named by the digest of its
//!   uncompressed tar (the config's `rootfs.diff_ids`), so images that share a
//!   layer share its directory;
//! - `images.json`: references -> manifest digest, and per image its config,
//!   layers, size and last use;
//! - `tmp/`: layers being unpacked (cleared at open; a failed pull leaves nothing).
//!
//! A layer streams from the registry through digest checks, the decompressor
//! and the unpacker in one pass; the compressed blob is not kept. Pulls of one
//! reference are serialized (a second caller waits and reuses the result) and
//! so are unpacks of one layer.

use crate::config::{credential_for, Credential, Registries};
use crate::digest::{Digest, HashingReader};
use crate::manifest::{self, Compression, Descriptor, Fetched, ImageConfig, Manifest, Platform};
use crate::reference::{Reference, ReferenceError};
use crate::registry::{Client, RegistryError};
use crate::unpack::{self, UnpackError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Layers downloaded at once per image (containerd's default).
const PARALLEL_LAYERS: usize = 3;

/// kubelet's `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The policy a container states, or kubelet's default: `Always` for
    /// `:latest` (explicit or implied) without a digest, else `IfNotPresent`.
    pub fn for_container(stated: Option<&str>, r: &Reference) -> PullPolicy {
        match stated {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            Some("IfNotPresent") => PullPolicy::IfNotPresent,
            _ if r.is_latest() => PullPolicy::Always,
            _ => PullPolicy::IfNotPresent,
        }
    }
}

/// An image in the store, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub reference: Reference,
    /// What kubelet reports as `imageID`: `name@<digest the registry named the image by>`.
    pub image_id: String,
    /// The platform manifest's digest (the store's key).
    pub manifest_digest: Digest,
    pub config: ImageConfig,
    /// Unpacked layer directories, bottom first.
    pub layers: Vec<PathBuf>,
    /// Compressed size of config and layers (what the registry served).
    pub size: u64,
}

/// How [`Store::ensure`] got the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It was in the store (policy `IfNotPresent`/`Never`, or another pull just got it).
    Present,
    /// Pulled now: bytes downloaded (0 when every layer was there already) and time taken.
    Pulled { downloaded: u64, elapsed: Duration },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("container image {0:?} is not present with pull policy of Never")]
    NeverPull(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("layer {layer} of {image}: {source}")]
    Unpack { image: String, layer: Digest, source: UnpackError },
    #[error("layer {layer} of {image}: {reason}")]
    Layer { image: String, layer: Digest, reason: String },
    #[error("image {image}: {reason}")]
    Invalid { image: String, reason: String },
}

impl StoreError {
    /// Whether no registry endpoint could be reached (the built-in fallback's cue).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Registry(RegistryError::Unreachable { .. }))
    }
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// `images.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct IndexFile {
    /// Canonical reference -> manifest digest.
    references: BTreeMap<String, Digest>,
    images: BTreeMap<Digest, ImageRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImageRecord {
    config: Digest,
    diff_ids: Vec<Digest>,
    size: u64,
    /// `name@digest` for each reference pulled to this image.
    image_ids: BTreeMap<String, String>,
    last_used_unix: u64,
}

/// What [`Store::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub images: Vec<String>,
    pub layers: usize,
}

/// A reference's pull lock, and when its last pull finished.
type PullGate = (Arc<tokio::sync::Mutex<()>>, Option<Instant>);

pub struct Store {
    root: PathBuf,
    client: Client,
    platform: Platform,
    index: Mutex<IndexFile>,
    /// One lock per reference being pulled, and when its last pull finished.
    pulls: Mutex<HashMap<String, PullGate>>,
    layer_locks: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Store {
    /// Open (creating) the store at `root`.
    pub fn open(root: &Path, registries: Registries) -> Result<Store, StoreError> {
        Store::open_for(root, registries, manifest::node_platform())
    }

    /// [`Store::open`] for another platform (tests).
    pub fn open_for(root: &Path, registries: Registries, platform: Platform) -> Result<Store, StoreError> {
        for d in ["blobs/sha256", "layers/sha256"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(io_ctx(format!("creating {}", p.display())))?;
        }
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_ctx(format!("clearing {}", tmp.display())))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_ctx(format!("creating {}", tmp.display())))?;
        let index_path = root.join("images.json");
        let index = match std::fs::read(&index_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StoreError::Io {
                context: format!("reading {}", index_path.display()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => IndexFile::default(),
            Err(e) => return Err(io_ctx(format!("reading {}", index_path.display()))(e)),
        };
        Ok(Store {
            root: root.to_path_buf(),
            client: Client::new(registries),
            platform,
            index: Mutex::new(index),
            pulls: Mutex::new(HashMap::new()),
            layer_locks: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers/sha256").join(diff_id.hex())
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// The image `image` names, if the store has it (no registry traffic).
    pub fn get(&self, image: &str) -> Result<Option<Image>, StoreError> {
        let r = Reference::parse(image)?;
        Ok(self.lookup(&r))
    }

    fn lookup(&self, r: &Reference) -> Option<Image> {
        let index = lock(&self.index);
        let key = r.to_string();
        let digest = index.references.get(&key).cloned().or_else(|| {
            // `name@digest` also finds an image pulled by tag whose digest it is.
            let d = r.digest.as_ref()?;
            let wanted = r.with_digest(d);
            index
                .images
                .iter()
                .find(|(md, rec)| *md == d || rec.image_ids.values().any(|i| *i == wanted))
                .map(|(md, _)| md.clone())
        })?;
        let rec = index.images.get(&digest)?;
        let config: ImageConfig =
            std::fs::read(self.blob_path(&rec.config)).ok().and_then(|b| serde_json::from_slice(&b).ok())?;
        let layers: Vec<PathBuf> = rec.diff_ids.iter().map(|d| self.layer_dir(d)).collect();
        if !layers.iter().all(|l| l.is_dir()) {
            return None;
        }
        let image_id = rec.image_ids.get(&key).cloned().unwrap_or_else(|| r.with_digest(&digest));
        Some(Image { reference: r.clone(), image_id, manifest_digest: digest, config, layers, size: rec.size })
    }

    /// The image `image` names, pulled as `policy` says, with the pull
    /// secrets' credentials `creds` (registry host -> credential).
    pub async fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
        creds: &[(String, Credential)],
    ) -> Result<(Image, Outcome), StoreError> {
        let r = Reference::parse(image)?;
        let key = r.to_string();
        let waited_from = Instant::now();
        let gate = lock(&self.pulls).entry(key.clone()).or_insert_with(|| (Default::default(), None)).0.clone();
        let _pulling = gate.lock().await;
        let present = self.lookup(&r);
        let fresh = lock(&self.pulls).get(&key).and_then(|(_, done)| *done).is_some_and(|t| t >= waited_from);
        let result = match (policy, present) {
            (PullPolicy::Never, None) => return Err(StoreError::NeverPull(image.to_string())),
            (PullPolicy::Never | PullPolicy::IfNotPresent, Some(img)) => Ok((img, Outcome::Present)),
            // Another caller pulled it while this one waited: the same answer.
            (PullPolicy::Always, Some(img)) if fresh => Ok((img, Outcome::Present)),
            _ => {
                let started = Instant::now();
                let (img, downloaded) = self.pull(&r, credential_for(creds, &r)).await?;
                if let Some(e) = lock(&self.pulls).get_mut(&key) {
                    e.1 = Some(Instant::now());
                }
                Ok((img, Outcome::Pulled { downloaded, elapsed: started.elapsed() }))
            }
        };
        if let Ok((img, _)) = &result {
            if let Some(rec) = lock(&self.index).images.get_mut(&img.manifest_digest) {
                rec.last_used_unix = unix_now();
            }
        }
        result
    }

    /// Pull `r`: manifest (the node's platform from an index), config, and
    /// each layer not in the store yet. Returns the image and the bytes downloaded.
    async fn pull(&self, r: &Reference, credential: Option<&Credential>) -> Result<(Image, u64), StoreError> {
        let canonical = r.to_string();
        let invalid = |reason: String| StoreError::Invalid { image: canonical.clone(), reason };
        let (top, ep) = self.client.manifest(r, &r.manifest_ref(), credential).await?;
        let repo_digest = top.digest.clone();
        let (manifest_digest, manifest_bytes, m): (Digest, Vec<u8>, Manifest) = match top.decoded {
            Fetched::Manifest(m) => (top.digest, top.bytes, m),
            Fetched::Index(ix) => {
                let d = manifest::choose(&ix, &self.platform)
                    .map_err(|source| RegistryError::Manifest { reference: canonical.clone(), source })?;
                let (mb, _) = self.client.manifest(r, &d.digest.to_string(), credential).await?;
                match mb.decoded {
                    Fetched::Manifest(m) => (mb.digest, mb.bytes, m),
                    Fetched::Index(_) => return Err(invalid("an index entry names another index".into())),
                }
            }
        };
        let config_bytes = self.client.small_blob(&ep, r, &m.config.digest, credential).await?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| invalid(format!("the image config is not valid: {e}")))?;
        if !config.architecture.is_empty() && config.architecture != self.platform.architecture {
            return Err(invalid(format!(
                "the image is for {}/{}, this node is {}",
                config.os, config.architecture, self.platform
            )));
        }
        if config.rootfs.diff_ids.len() != m.layers.len() {
            return Err(invalid(format!(
                "the manifest has {} layers but the config {} diff ids",
                m.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        for desc in &m.layers {
            manifest::layer_compression(&desc.media_type)
                .map_err(|source| RegistryError::Manifest { reference: canonical.clone(), source })?;
        }
        let mut downloaded = 0u64;
        let jobs: Vec<(&Descriptor, &Digest)> = m.layers.iter().zip(&config.rootfs.diff_ids).collect();
        for batch in jobs.chunks(PARALLEL_LAYERS) {
            let results = futures::future::join_all(
                batch.iter().map(|(desc, diff)| self.fetch_layer(&ep, r, desc, diff, credential)),
            )
            .await;
            for res in results {
                downloaded += res?;
            }
        }
        self.write_blob(&manifest_digest, &manifest_bytes)?;
        self.write_blob(&m.config.digest, &config_bytes)?;
        let size = m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>();
        {
            let mut index = lock(&self.index);
            index.references.insert(canonical.clone(), manifest_digest.clone());
            let rec = index.images.entry(manifest_digest.clone()).or_insert_with(|| ImageRecord {
                config: m.config.digest.clone(),
                diff_ids: config.rootfs.diff_ids.clone(),
                size,
                image_ids: BTreeMap::new(),
                last_used_unix: unix_now(),
            });
            rec.image_ids.insert(canonical.clone(), r.with_digest(&repo_digest));
            self.save_index(&index)?;
        }
        let image = self.lookup(r).ok_or_else(|| invalid("the pulled image is missing from the store".into()))?;
        Ok((image, downloaded))
    }

    fn write_blob(&self, d: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.blob_path(d);
        if path.exists() {
            return Ok(());
        }
        write_atomic(&path, bytes).map_err(io_ctx(format!("writing {}", path.display())))
    }

    fn save_index(&self, index: &IndexFile) -> Result<(), StoreError> {
        let path = self.root.join("images.json");
        let bytes =
            serde_json::to_vec_pretty(index).map_err(|e| io_ctx("encoding images.json")(std::io::Error::other(e)))?;
        write_atomic(&path, &bytes).map_err(io_ctx(format!("writing {}", path.display())))
    }

    /// Download and unpack one layer unless the store has it; returns the bytes downloaded.
    async fn fetch_layer(
        &self,
        ep: &crate::config::Endpoint,
        r: &Reference,
        desc: &Descriptor,
        diff_id: &Digest,
        credential: Option<&Credential>,
    ) -> Result<u64, StoreError> {
        let image = r.to_string();
        let gate = lock(&self.layer_locks).entry(diff_id.clone()).or_default().clone();
        let _unpacking = gate.lock().await;
        let dest = self.layer_dir(diff_id);
        if dest.is_dir() {
            return Ok(0);
        }
        let compression = manifest::layer_compression(&desc.media_type).map_err(|e| StoreError::Layer {
            image: image.clone(),
            layer: desc.digest.clone(),
            reason: e.to_string(),
        })?;
        let tmp = self.root.join("tmp").join(format!("{}-{}", diff_id.hex(), std::process::id()));
        if tmp.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        std::fs::create_dir(&tmp).map_err(io_ctx(format!("creating {}", tmp.display())))?;
        let result = self.stream_layer(ep, r, desc, diff_id, credential, compression, &tmp).await;
        match result {
            Ok(n) => {
                std::fs::rename(&tmp, &dest).map_err(io_ctx(format!(
                    "moving {} to {}",
                    tmp.display(),
                    dest.display()
                )))?;
                Ok(n)
            }
            Err(e) => {
                // Nothing of a failed layer stays.
                let _ = std::fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn stream_layer(
        &self,
        ep: &crate::config::Endpoint,
        r: &Reference,
        desc: &Descriptor,
        diff_id: &Digest,
        credential: Option<&Credential>,
        compression: Compression,
        tmp: &Path,
    ) -> Result<u64, StoreError> {
        let image = r.to_string();
        let layer = desc.digest.clone();
        let mut resp = self.client.blob(ep, r, &desc.digest, credential).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(32);
        let dir = tmp.to_path_buf();
        let worker = tokio::task::spawn_blocking(move || unpack_stream(ChannelReader::new(rx), compression, &dir));
        let mut sent = 0u64;
        let mut transfer: Result<(), StoreError> = Ok(());
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    sent += chunk.len() as u64;
                    if sent > desc.size {
                        transfer = Err(StoreError::Layer {
                            image: image.clone(),
                            layer: layer.clone(),
                            reason: format!("the registry sent more than the manifest's {} bytes", desc.size),
                        });
                        break;
                    }
                    // The unpacker stopped early (an error it reports below).
                    if tx.send(chunk).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    transfer = Err(StoreError::Registry(RegistryError::Http {
                        what: format!("blob {layer} of {}", r.name()),
                        source: e,
                    }));
                    break;
                }
            }
        }
        drop(tx);
        let unpacked = worker.await.map_err(|e| StoreError::Layer {
            image: image.clone(),
            layer: layer.clone(),
            reason: format!("the unpacker panicked: {e}"),
        })?;
        transfer?;
        let (compressed, count, uncompressed) = match unpacked {
            Ok(v) => v,
            Err(LayerFailure::Unpack(source)) => return Err(StoreError::Unpack { image, layer, source }),
            Err(LayerFailure::Decode(reason)) => return Err(StoreError::Layer { image, layer, reason }),
        };
        let bad = |reason: String| StoreError::Layer { image: image.clone(), layer: layer.clone(), reason };
        if compressed != desc.digest {
            return Err(bad(format!("digest mismatch: the blob is {compressed}")));
        }
        if count != desc.size {
            return Err(bad(format!("size mismatch: the manifest says {} bytes, the blob has {count}", desc.size)));
        }
        if uncompressed != *diff_id {
            return Err(bad(format!("diff id mismatch: the config says {diff_id}, the layer is {uncompressed}")));
        }
        Ok(count)
    }

    /// Remove images not in `in_use` (manifest digests), least recently used
    /// first, while the store's filesystem is over `high_percent` full, until
    /// it is under `low_percent` (kubelet's image GC thresholds, 85/80 by
    /// default); then layers no image uses.
    pub fn gc(&self, in_use: &HashSet<Digest>, high_percent: u8, low_percent: u8) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        if disk_usage_percent(&self.root)? < f64::from(high_percent) {
            return Ok(report);
        }
        let mut index = lock(&self.index);
        let mut candidates: Vec<(u64, Digest)> = index
            .images
            .iter()
            .filter(|(d, _)| !in_use.contains(*d))
            .map(|(d, rec)| (rec.last_used_unix, d.clone()))
            .collect();
        candidates.sort();
        for (_, digest) in candidates {
            if disk_usage_percent(&self.root)? < f64::from(low_percent) {
                break;
            }
            let Some(rec) = index.images.remove(&digest) else { continue };
            index.references.retain(|_, d| *d != digest);
            report.images.extend(rec.image_ids.keys().cloned());
            let used: HashSet<Digest> = index.images.values().flat_map(|r| r.diff_ids.iter().cloned()).collect();
            for diff in rec.diff_ids.iter().filter(|d| !used.contains(*d)) {
                let dir = self.layer_dir(diff);
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(io_ctx(format!("removing {}", dir.display())))?;
                    report.layers += 1;
                }
            }
            let configs: HashSet<&Digest> = index.images.values().map(|r| &r.config).collect();
            if !configs.contains(&rec.config) {
                let _ = std::fs::remove_file(self.blob_path(&rec.config));
            }
            let _ = std::fs::remove_file(self.blob_path(&digest));
            self.save_index(&index)?;
        }
        Ok(report)
    }

    /// Manifest digests of every image in the store.
    pub fn images(&self) -> Vec<(String, Digest)> {
        lock(&self.index).references.iter().map(|(r, d)| (r.clone(), d.clone())).collect()
    }
}

enum LayerFailure {
    Unpack(UnpackError),
    Decode(String),
}

/// Hash the compressed stream, decompress it, unpack it into `dir` and hash
/// the tar: (compressed digest, compressed size, diff id).
fn unpack_stream(
    reader: ChannelReader,
    compression: Compression,
    dir: &Path,
) -> Result<(Digest, u64, Digest), LayerFailure> {
    let mut compressed = HashingReader::new(reader);
    let diff = {
        let decoder: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(&mut compressed),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut compressed)),
            Compression::Zstd => Box::new(
                ruzstd::decoding::StreamingDecoder::new(&mut compressed)
                    .map_err(|e| LayerFailure::Decode(format!("zstd: {e}")))?,
            ),
        };
        let mut tar = HashingReader::new(decoder);
        unpack::unpack_layer(&mut tar, dir).map_err(LayerFailure::Unpack)?;
        let (diff, _) = tar.finish().map_err(|e| LayerFailure::Decode(format!("decompressing: {e}")))?;
        diff
    };
    let (digest, count) = compressed.finish().map_err(|e| LayerFailure::Decode(format!("reading: {e}")))?;
    Ok((digest, count, diff))
}

/// A blocking reader over the chunks the download task sends.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl ChannelReader {
    fn new(rx: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> Self {
        ChannelReader { rx, current: bytes::Bytes::new() }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(c) => self.current = c,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// How full the filesystem holding `path` is, in percent.
fn disk_usage_percent(path: &Path) -> Result<f64, StoreError> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io_ctx("statvfs")(std::io::Error::other("NUL in path")))?;
    // SAFETY: statvfs fills the zeroed struct for a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } < 0 {
        return Err(io_ctx(format!("statvfs {}", path.display()))(std::io::Error::last_os_error()));
    }
    let total = st.f_blocks as f64;
    if total == 0.0 {
        return Ok(0.0);
    }
    Ok(100.0 * (total - st.f_bfree as f64) / total)
}
