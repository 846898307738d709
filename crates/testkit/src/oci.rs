//! Test images without a container engine: a small tar writer for layers
//! (including hostile ones), an OCI image layout on disk, a real registry
//! (Debian's `docker-registry`, plain HTTP) in a sandbox namespace, and
//! pushing a layout to it with `skopeo copy`.

use crate::sandbox::Sandbox;
use crate::{Error, Result};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// One member of a layer tar. Names are written as given (so a test can
/// write `../escape`).
#[derive(Debug, Clone)]
pub enum Entry {
    Dir { name: String, mode: u32 },
    File { name: String, mode: u32, data: Vec<u8> },
    Symlink { name: String, target: String },
    Hardlink { name: String, target: String },
}

impl Entry {
    pub fn dir(name: &str) -> Entry {
        Entry::Dir { name: name.into(), mode: 0o755 }
    }
    pub fn file(name: &str, mode: u32, data: impl Into<Vec<u8>>) -> Entry {
        Entry::File { name: name.into(), mode, data: data.into() }
    }
    pub fn symlink(name: &str, target: &str) -> Entry {
        Entry::Symlink { name: name.into(), target: target.into() }
    }
}

/// A ustar archive of `entries` (names up to 100 bytes; no PAX).
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let (name, mode, typeflag, link, data): (&str, u32, u8, &str, &[u8]) = match e {
            Entry::Dir { name, mode } => (name, *mode, b'5', "", &[]),
            Entry::File { name, mode, data } => (name, *mode, b'0', "", data),
            Entry::Symlink { name, target } => (name, 0o777, b'2', target, &[]),
            Entry::Hardlink { name, target } => (name, 0o644, b'1', target, &[]),
        };
        let mut h = [0u8; 512];
        let put = |h: &mut [u8; 512], off: usize, len: usize, s: &[u8]| {
            let n = s.len().min(len);
            h[off..off + n].copy_from_slice(&s[..n]);
        };
        put(&mut h, 0, 100, name.as_bytes());
        put(&mut h, 100, 8, format!("{mode:07o}\0").as_bytes());
        put(&mut h, 108, 8, b"0000000\0");
        put(&mut h, 116, 8, b"0000000\0");
        put(&mut h, 124, 12, format!("{:011o}\0", data.len()).as_bytes());
        put(&mut h, 136, 12, b"14000000000\0");
        h[156] = typeflag;
        put(&mut h, 157, 100, link.as_bytes());
        put(&mut h, 257, 8, b"ustar\x0000");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// `sha256:<hex>` of `data` (via `sha256sum`, to keep testkit's dependencies small).
pub fn sha256(data: &[u8]) -> Result<String> {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::Io { context: "running sha256sum".into(), source: e })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(data).map_err(|e| Error::Io { context: "writing to sha256sum".into(), source: e })?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Io { context: "sha256sum".into(), source: e })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.split_whitespace().next().unwrap_or_default();
    Ok(format!("sha256:{hex}"))
}

/// gzip of `data` (via `gzip -n`).
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut child = std::process::Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::Io { context: "running gzip".into(), source: e })?;
    let mut stdin = child.stdin.take();
    let payload = data.to_vec();
    let writer = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(&payload);
        }
        drop(stdin);
    });
    let out = child.wait_with_output().map_err(|e| Error::Io { context: "gzip".into(), source: e })?;
    let _ = writer.join();
    Ok(out.stdout)
}

/// zstd of `data` (via `zstd -q -c`).
pub fn zstd(data: &[u8]) -> Result<Vec<u8>> {
    let mut child = std::process::Command::new("zstd")
        .args(["-q", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::Io { context: "running zstd".into(), source: e })?;
    let mut stdin = child.stdin.take();
    let payload = data.to_vec();
    let writer = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(&payload);
        }
        drop(stdin);
    });
    let out = child.wait_with_output().map_err(|e| Error::Io { context: "zstd".into(), source: e })?;
    let _ = writer.join();
    Ok(out.stdout)
}

/// An image being written as an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`).
pub struct Layout {
    dir: PathBuf,
    layers: Vec<(String, String, u64)>,
    diff_ids: Vec<String>,
}

impl Layout {
    pub fn new(dir: &Path) -> Result<Layout> {
        std::fs::create_dir_all(dir.join("blobs/sha256"))
            .map_err(|e| Error::Io { context: format!("creating {}", dir.display()), source: e })?;
        Ok(Layout { dir: dir.to_path_buf(), layers: Vec::new(), diff_ids: Vec::new() })
    }

    fn blob(&self, data: &[u8]) -> Result<String> {
        let d = sha256(data)?;
        let path = self.dir.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
        std::fs::write(&path, data)
            .map_err(|e| Error::Io { context: format!("writing {}", path.display()), source: e })?;
        Ok(d)
    }

    /// Add a layer (gzip-compressed in the layout).
    pub fn layer(&mut self, tar: &[u8]) -> Result<&mut Layout> {
        self.diff_ids.push(sha256(tar)?);
        let gz = gzip(tar)?;
        let d = self.blob(&gz)?;
        self.layers.push(("application/vnd.oci.image.layer.v1.tar+gzip".into(), d, gz.len() as u64));
        Ok(self)
    }

    /// Add a layer compressed with zstd.
    pub fn layer_zstd(&mut self, tar: &[u8]) -> Result<&mut Layout> {
        self.diff_ids.push(sha256(tar)?);
        let z = zstd(tar)?;
        let d = self.blob(&z)?;
        self.layers.push(("application/vnd.oci.image.layer.v1.tar+zstd".into(), d, z.len() as u64));
        Ok(self)
    }

    /// Write config and manifest for one architecture: (manifest digest, size).
    fn image_manifest(&self, arch: &str, run_config: &str) -> Result<(String, usize)> {
        let diff_ids: Vec<String> = self.diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","config":{run_config},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            diff_ids.join(",")
        );
        let config_digest = self.blob(config.as_bytes())?;
        let layers: Vec<String> = self
            .layers
            .iter()
            .map(|(mt, d, size)| format!(r#"{{"mediaType":"{mt}","digest":"{d}","size":{size}}}"#))
            .collect();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
            config.len(),
            layers.join(",")
        );
        Ok((self.blob(manifest.as_bytes())?, manifest.len()))
    }

    /// Write a multi-platform image for tag `tag`: per `(architecture,
    /// run_config)` a config and manifest over the same layers, an image
    /// index naming their platforms, and `index.json` pointing at it (push
    /// with `skopeo copy --all`). Returns the image index's digest.
    pub fn finish_index(&self, tag: &str, platforms: &[(&str, &str)]) -> Result<String> {
        let mut entries = Vec::new();
        for (arch, run_config) in platforms {
            let (digest, size) = self.image_manifest(arch, run_config)?;
            entries.push(format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":{size},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#
            ));
        }
        let image_index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
            entries.join(",")
        );
        let index_digest = self.blob(image_index.as_bytes())?;
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{index_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#,
            image_index.len()
        );
        let write = |name: &str, text: &str| {
            let p = self.dir.join(name);
            std::fs::write(&p, text).map_err(|e| Error::Io { context: format!("writing {}", p.display()), source: e })
        };
        write("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#)?;
        write("index.json", &index)?;
        Ok(index_digest)
    }

    /// Write config, manifest and `index.json` for tag `tag`; `run_config` is
    /// the config's `config` object (`{"Entrypoint": [...], "Env": [...]}`).
    /// Returns the manifest digest.
    pub fn finish(&self, tag: &str, run_config: &str) -> Result<String> {
        let diff_ids: Vec<String> = self.diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{run_config},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            diff_ids.join(",")
        );
        let config_digest = self.blob(config.as_bytes())?;
        let layers: Vec<String> = self
            .layers
            .iter()
            .map(|(mt, d, size)| format!(r#"{{"mediaType":"{mt}","digest":"{d}","size":{size}}}"#))
            .collect();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
            config.len(),
            layers.join(",")
        );
        let manifest_digest = self.blob(manifest.as_bytes())?;
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#,
            manifest.len()
        );
        let write = |name: &str, text: &str| {
            let p = self.dir.join(name);
            std::fs::write(&p, text).map_err(|e| Error::Io { context: format!("writing {}", p.display()), source: e })
        };
        write("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#)?;
        write("index.json", &index)?;
        Ok(manifest_digest)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The digests of the (compressed) layer blobs, bottom first.
    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|(_, d, _)| d.clone()).collect()
    }
}

/// Debian's `docker-registry` serving plain HTTP at `addr` in `netns`, storing
/// in a directory of its own. Killed on drop.
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    netns: String,
    storage: PathBuf,
}

impl Registry {
    /// Start the registry and wait until `/v2/` answers.
    pub fn start(sandbox: &Sandbox, netns: &str, addr: SocketAddr, dir: &Path) -> Result<Registry> {
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage)
            .map_err(|e| Error::Io { context: format!("creating {}", storage.display()), source: e })?;
        let config = dir.join("config.yml");
        let text = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        std::fs::write(&config, text)
            .map_err(|e| Error::Io { context: format!("writing {}", config.display()), source: e })?;
        let child = sandbox.spawn(netns, "docker-registry", [std::ffi::OsStr::new("serve"), config.as_os_str()])?;
        let storage = storage.clone();
        let mut reg = Registry { child, addr, netns: netns.to_string(), storage };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if sandbox.tcp_connect(netns, addr, Duration::from_millis(300)).is_ok() {
                return Ok(reg);
            }
            if let Ok(Some(status)) = reg.child.try_wait() {
                return Err(Error::Io {
                    context: format!("docker-registry in {netns}"),
                    source: std::io::Error::other(format!("exited with {status}")),
                });
            }
            if Instant::now() > deadline {
                return Err(Error::Io {
                    context: format!("docker-registry in {netns}"),
                    source: std::io::Error::other(format!("not listening on {addr} after 20 s")),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the registry keeps blob `digest` (`sha256:...`): tests corrupt it there.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage.join("docker/registry/v2/blobs/sha256").join(&hex[..2.min(hex.len())]).join(hex).join("data")
    }

    /// Push the layout's `tag` as `<registry>/<repo>:<tag>` with `skopeo copy`.
    pub fn push(&self, sandbox: &Sandbox, layout: &Path, tag: &str, repo: &str) -> Result<()> {
        self.push_with(sandbox, layout, tag, repo, &[])
    }

    /// [`Registry::push`] with more `skopeo copy` flags (`--all` for an
    /// index, `--format v2s2` for Docker's manifest types).
    pub fn push_with(&self, sandbox: &Sandbox, layout: &Path, tag: &str, repo: &str, flags: &[&str]) -> Result<()> {
        let src = format!("oci:{}:{tag}", layout.display());
        let dest = format!("docker://{}/{repo}:{tag}", self.addr);
        let mut args = vec!["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"];
        args.extend_from_slice(flags);
        args.extend([src.as_str(), dest.as_str()]);
        sandbox.exec_ok(&self.netns, "skopeo", args).map(|_| ())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
