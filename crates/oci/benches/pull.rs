//! Cold pull and unpack of a ~50 MB image by rkube's store, against
//! `skopeo copy` then `tar xzf` of the same image, in the same run, from a
//! real registry (Debian's `docker-registry`) on the sandbox LAN. Prints the
//! ratio (issue 13 target: at most 1.2x). Needs root, docker-registry,
//! skopeo and tar.
//!
//!   cargo bench -p oci --bench pull

use oci::store::{PullPolicy, Store};
use oci::Registries;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::oci::{tar, Entry, Layout, Registry};
use testkit::Sandbox;

const RUNS: usize = 3;
/// Uncompressed bytes of the image's one layer (binaries and libraries of
/// the node compress to about half).
const LAYER_BYTES: u64 = 110 << 20;

/// Files of the node (libraries and binaries) up to `LAYER_BYTES`.
fn node_files() -> Vec<Entry> {
    let mut out = vec![Entry::dir("payload/")];
    let mut total = 0u64;
    let mut stack: Vec<PathBuf> = vec!["/usr/lib".into(), "/usr/bin".into()];
    let mut dirs = std::collections::BTreeSet::new();
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
            if m.is_dir() {
                stack.push(p);
                continue;
            }
            if !m.is_file() || m.len() > (8 << 20) {
                continue;
            }
            let name = format!("payload{}", p.display());
            if name.len() > 99 {
                continue;
            }
            let Ok(data) = std::fs::read(&p) else { continue };
            if let Some(parent) = Path::new(&name).parent() {
                let mut acc = PathBuf::new();
                for c in parent.components() {
                    acc.push(c);
                    let d = format!("{}/", acc.display());
                    if dirs.insert(d.clone()) && d != "payload/" {
                        out.push(Entry::dir(&d));
                    }
                }
            }
            total += data.len() as u64;
            out.push(Entry::file(&name, 0o644, data));
            if total >= LAYER_BYTES {
                return out;
            }
        }
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if let Some(why) = testkit::sandbox_unavailable() {
        eprintln!("pull bench skipped: {why}");
        return;
    }
    let sb = Sandbox::new(1).expect("sandbox");
    let addr = SocketAddr::new(sb.lan_ip().into(), 5000);
    let reg = Registry::start(&sb, sb.lan_netns(), addr, &sb.temp_dir().join("registry")).expect("registry");
    let layout_dir = sb.temp_dir().join("layout");
    let mut layout = Layout::new(&layout_dir).expect("layout");
    let layer = tar(&node_files());
    layout.layer(&layer).expect("layer");
    layout.finish("v1", r#"{"Cmd":["/bin/true"]}"#).expect("finish");
    reg.push(&sb, &layout_dir, "v1", "big").expect("push");
    let blob = reg.blob_path(&layout.layer_digests()[0]);
    let compressed = std::fs::metadata(&blob).map(|m| m.len()).unwrap_or(0);
    println!(
        "image: one layer, {:.1} MB compressed, {:.1} MB as a tar",
        compressed as f64 / 1e6,
        layer.len() as f64 / 1e6
    );
    let host = addr.to_string();
    let node = sb.node_netns(1).to_string();
    let work = sb.temp_dir().to_path_buf();

    let (rkube, baseline) = testkit::sandbox::in_netns(&node, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let mut rkube = Vec::new();
        let mut baseline = Vec::new();
        for i in 0..RUNS {
            // rkube: a fresh store each run (a cold pull).
            let root = work.join(format!("store-{i}"));
            let regs = Registries::load(None, std::slice::from_ref(&host)).expect("registries");
            let store = Store::open(&root, regs).expect("store");
            let t = Instant::now();
            rt.block_on(store.ensure(&format!("{host}/big:v1"), PullPolicy::Always, &[])).expect("pull");
            rkube.push(t.elapsed());
            let _ = std::fs::remove_dir_all(&root);

            // Baseline: skopeo copy to an OCI layout, then tar xzf of each layer.
            let dest = work.join(format!("skopeo-{i}"));
            let out = work.join(format!("rootfs-{i}"));
            std::fs::create_dir_all(&out).expect("mkdir");
            let t = Instant::now();
            let st = std::process::Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--quiet", "--src-tls-verify=false"])
                .arg(format!("docker://{host}/big:v1"))
                .arg(format!("oci:{}:v1", dest.display()))
                .status()
                .expect("skopeo");
            assert!(st.success(), "skopeo copy failed");
            let index: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dest.join("index.json")).expect("index")).expect("json");
            let manifest_digest = index["manifests"][0]["digest"].as_str().expect("digest").to_string();
            let blob = |d: &str| dest.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(blob(&manifest_digest)).expect("manifest")).expect("json");
            for l in manifest["layers"].as_array().expect("layers") {
                let d = l["digest"].as_str().expect("digest");
                let st = std::process::Command::new("tar")
                    .arg("-xzf")
                    .arg(blob(d))
                    .arg("-C")
                    .arg(&out)
                    .status()
                    .expect("tar");
                assert!(st.success(), "tar failed");
            }
            baseline.push(t.elapsed());
            let _ = std::fs::remove_dir_all(&dest);
            let _ = std::fs::remove_dir_all(&out);
        }
        (rkube, baseline)
    })
    .expect("in the node namespace");
    let (r, b) = (median(rkube.clone()), median(baseline.clone()));
    println!("rkube store (pull + verify + unpack, streamed): {rkube:?}, median {r:?}");
    println!("skopeo copy + tar xzf:                         {baseline:?}, median {b:?}");
    println!("ratio rkube / baseline: {:.2}x (target <= 1.2x)", r.as_secs_f64() / b.as_secs_f64());
    drop(reg);
}
