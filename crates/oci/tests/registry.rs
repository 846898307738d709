//! The image store against a real registry (Debian's `docker-registry`, plain
//! HTTP) on the sandbox LAN: pulls, layer sharing, whiteouts, policies,
//! digests, hostile layers, missing tags, unreachable registries and GC. One
//! sandbox and one registry for all checks.

use oci::store::{Outcome, PullPolicy, Store, StoreError};
use oci::{Digest, Registries};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use testkit::oci::{tar, Entry, Layout, Registry};
use testkit::Sandbox;

fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn push(sb: &Sandbox, reg: &Registry, name: &str, layers: &[Vec<Entry>], run_config: &str) -> String {
    let dir = sb.temp_dir().join(format!("layout-{}", name.replace(['/', ':'], "-")));
    let mut layout = Layout::new(&dir).expect("layout");
    for l in layers {
        layout.layer(&tar(l)).expect("layer");
    }
    let (repo, tag) = name.split_once(':').expect("name:tag");
    let digest = layout.finish(tag, run_config).expect("finish layout");
    reg.push(sb, &dir, tag, repo).expect("skopeo push");
    digest
}

fn layer_files(store_root: &Path) -> usize {
    std::fs::read_dir(store_root.join("layers/sha256")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn pulls_from_a_real_registry() {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return;
    }
    for tool in ["docker-registry", "skopeo", "gzip", "sha256sum"] {
        if !have(tool) {
            testkit::skip(&format!("{tool} is not installed (scripts/install-prereqs.sh installs it)"));
            return;
        }
    }
    let sb = Sandbox::new(1).expect("sandbox");
    let addr = SocketAddr::new(sb.lan_ip().into(), 5000);
    let reg = Registry::start(&sb, sb.lan_netns(), addr, &sb.temp_dir().join("registry")).expect("registry");
    let host = addr.to_string();

    let base = vec![
        Entry::dir("etc/"),
        Entry::file("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
        Entry::file("etc/motd", 0o644, "old\n"),
        Entry::dir("data/"),
        Entry::file("data/a", 0o600, "a"),
        Entry::symlink("bin", "/usr/bin"),
    ];
    let top = vec![
        Entry::file("etc/.wh.motd", 0o644, ""),
        Entry::dir("data/"),
        Entry::file("data/.wh..wh..opq", 0o644, ""),
        Entry::file("data/b", 0o644, "b"),
        Entry::file("www/index.html", 0o644, "<h1>hello from a pulled image</h1>\n"),
    ];
    let run_config = r#"{"Env":["PATH=/usr/bin:/bin","GREETING=hi"],"Entrypoint":["/bin/sh"],"Cmd":["-c","echo hi"],"WorkingDir":"/www","User":"app"}"#;
    let app_digest = push(&sb, &reg, "app:v1", &[base.clone(), top.clone()], run_config);
    // Same base layer, another top: the base is shared in the store.
    let other = vec![Entry::file("other.txt", 0o644, "other")];
    push(&sb, &reg, "team/other:v2", &[base.clone(), other], "{}");
    let traversal = vec![Entry::file("../escape", 0o644, "pwned")];
    push(&sb, &reg, "evil:dotdot", &[traversal], "{}");
    let through_link =
        vec![Entry::symlink("etc", "/tmp/rkube-oci-test-outside"), Entry::file("etc/passwd", 0o644, "x")];
    push(&sb, &reg, "evil:symlink", &[through_link], "{}");

    // A zstd layer; Docker schema 2 manifests; a multi-arch index; an index
    // without this node's platform.
    let one_file =
        |name: &str, body: &str| vec![Entry::dir("data/"), Entry::file(&format!("data/{name}"), 0o644, body)];
    let dir = sb.temp_dir().join("layout-zstd");
    let mut l = Layout::new(&dir).expect("layout");
    l.layer_zstd(&tar(&one_file("z", "zstd"))).expect("zstd layer");
    l.finish("v1", "{}").expect("finish");
    reg.push(&sb, &dir, "v1", "zstd").expect("push zstd");
    let dir = sb.temp_dir().join("layout-docker");
    let mut l = Layout::new(&dir).expect("layout");
    l.layer(&tar(&one_file("d", "docker"))).expect("layer");
    l.finish("v1", "{}").expect("finish");
    reg.push_with(&sb, &dir, "v1", "docker", &["--format", "v2s2"]).expect("push v2s2");
    let dir = sb.temp_dir().join("layout-multi");
    let mut l = Layout::new(&dir).expect("layout");
    l.layer(&tar(&one_file("m", "multi"))).expect("layer");
    let index_digest = l
        .finish_index("v1", &[("arm64", r#"{"Env":["ARCH=arm64"]}"#), ("amd64", r#"{"Env":["ARCH=amd64"]}"#)])
        .expect("index");
    reg.push_with(&sb, &dir, "v1", "multi", &["--all"]).expect("push index");
    let dir = sb.temp_dir().join("layout-arm");
    let mut l = Layout::new(&dir).expect("layout");
    l.layer(&tar(&one_file("a", "arm"))).expect("layer");
    l.finish_index("v1", &[("arm64", "{}")]).expect("index");
    reg.push_with(&sb, &dir, "v1", "armonly", &["--all"]).expect("push arm index");

    // A blob the registry serves corrupted (same length, other bytes).
    let dir = sb.temp_dir().join("layout-corrupt");
    let mut layout = Layout::new(&dir).expect("layout");
    layout.layer(&tar(&[Entry::file("f", 0o644, "payload")])).expect("layer");
    layout.finish("v1", "{}").expect("finish");
    reg.push(&sb, &dir, "v1", "corrupt").expect("push");
    let blob = reg.blob_path(&layout.layer_digests()[0]);
    let len = std::fs::metadata(&blob).expect("stored blob").len() as usize;
    std::fs::write(&blob, vec![0x1fu8; len]).expect("corrupt the blob");

    // A registry that accepts connections and never answers.
    let hang_addr = SocketAddr::new(sb.lan_ip().into(), 5002);
    let hang = sb.tcp_listener(sb.lan_netns(), hang_addr).expect("listener");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hang.incoming().flatten() {
            held.push(s);
        }
    });

    let data = sb.temp_dir().join("store");
    let insecure = [host.clone()];
    let node = sb.node_netns(1).to_string();
    let data2 = data.clone();
    testkit::sandbox::in_netns(&node, move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let regs = Registries::load(None, &insecure).expect("registries");
            let store = Store::open(&data2, regs).expect("store");
            let image = format!("{host}/app:v1");

            // First pull: downloaded, unpacked, whiteouts in overlay form.
            let (img, outcome) = store.ensure(&image, PullPolicy::IfNotPresent, &[]).await.expect("pull app:v1");
            assert!(matches!(outcome, Outcome::Pulled { downloaded, .. } if downloaded > 0), "{outcome:?}");
            assert_eq!(img.image_id, format!("{host}/app@{app_digest}"));
            assert_eq!(img.layers.len(), 2);
            assert_eq!(img.config.config.working_dir.as_deref(), Some("/www"));
            assert_eq!(img.config.config.user.as_deref(), Some("app"));
            assert!(img.config.env().contains(&("GREETING".into(), "hi".into())));
            let (lower, upper) = (&img.layers[0], &img.layers[1]);
            assert_eq!(std::fs::read_to_string(lower.join("etc/motd")).ok().as_deref(), Some("old\n"));
            assert_eq!(std::fs::read_link(lower.join("bin")).ok(), Some("/usr/bin".into()));
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            let wh = std::fs::symlink_metadata(upper.join("etc/motd")).expect("whiteout");
            assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "a whiteout is a 0/0 char device");
            let mut buf = [0u8; 4];
            let c = std::ffi::CString::new(upper.join("data").as_os_str().as_encoded_bytes()).expect("path");
            // SAFETY: lgetxattr into a 4-byte buffer.
            let n = unsafe {
                libc::lgetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            };
            assert_eq!((n, buf[0]), (1, b'y'), "opaque directory marked for overlayfs");
            assert!(!upper.join("data/.wh..wh..opq").exists());
            assert_eq!(std::fs::metadata(lower.join("data/a")).map(|m| m.mode() & 0o7777).ok(), Some(0o600));

            // Present: no second pull; Never finds it; Always re-checks without downloading.
            let (_, o) = store.ensure(&image, PullPolicy::IfNotPresent, &[]).await.expect("present");
            assert_eq!(o, Outcome::Present);
            let (_, o) = store.ensure(&image, PullPolicy::Never, &[]).await.expect("never, present");
            assert_eq!(o, Outcome::Present);
            let (_, o) = store.ensure(&image, PullPolicy::Always, &[]).await.expect("always");
            assert!(matches!(o, Outcome::Pulled { downloaded: 0, .. }), "{o:?}");

            // Shared base layer: the second image adds one layer directory.
            let before = layer_files(store.root());
            let other = format!("{host}/team/other:v2");
            let (a, b) = tokio::join!(
                store.ensure(&other, PullPolicy::Always, &[]),
                store.ensure(&other, PullPolicy::Always, &[])
            );
            let (oa, ob) = (a.expect("other").1, b.expect("other").1);
            assert!(
                matches!((&oa, &ob), (Outcome::Pulled { .. }, Outcome::Present)),
                "two concurrent pulls of one reference pull once: {oa:?} {ob:?}"
            );
            assert_eq!(layer_files(store.root()), before + 1);

            // Other forms: zstd, Docker schema 2, an index (the node's platform picked).
            let (z, _) = store.ensure(&format!("{host}/zstd:v1"), PullPolicy::IfNotPresent, &[]).await.expect("zstd");
            assert_eq!(std::fs::read_to_string(z.layers[0].join("data/z")).ok().as_deref(), Some("zstd"));
            let (d, _) = store.ensure(&format!("{host}/docker:v1"), PullPolicy::IfNotPresent, &[]).await.expect("v2s2");
            assert_eq!(std::fs::read_to_string(d.layers[0].join("data/d")).ok().as_deref(), Some("docker"));
            let blob = store.root().join("blobs/sha256").join(d.manifest_digest.hex());
            let manifest = std::fs::read_to_string(blob).expect("stored manifest");
            assert!(manifest.contains("application/vnd.docker.distribution.manifest.v2+json"), "{manifest}");
            let (m, _) = store.ensure(&format!("{host}/multi:v1"), PullPolicy::IfNotPresent, &[]).await.expect("index");
            assert!(m.config.env().contains(&("ARCH".into(), "amd64".into())), "{:?}", m.config.env());
            assert_eq!(m.image_id, format!("{host}/multi@{index_digest}"), "imageID names the index");
            let e = store.ensure(&format!("{host}/armonly:v1"), PullPolicy::IfNotPresent, &[]).await.unwrap_err();
            assert!(e.to_string().contains("no manifest for linux/amd64 (it has: linux/arm64)"), "{e}");

            // Never pull an absent image; a missing tag; an unreachable registry.
            let e = store.ensure(&format!("{host}/app:v9"), PullPolicy::Never, &[]).await.unwrap_err();
            assert!(matches!(e, StoreError::NeverPull(_)), "{e}");
            let e = store.ensure(&format!("{host}/app:v9"), PullPolicy::IfNotPresent, &[]).await.unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("failed to resolve reference \"{host}/app:v9\": {host}/app:v9: not found")
            );
            let closed = format!("{}:5999/app:v1", addr.ip());
            let e = store.ensure(&closed, PullPolicy::IfNotPresent, &[]).await.unwrap_err();
            assert!(e.is_unreachable(), "{e}");

            // A registry that hangs: the pull fails after the timeouts, saying so.
            let slow = Registries::load(None, &[hang_addr.to_string()])
                .expect("registries")
                .with_timeouts(std::time::Duration::from_millis(800), std::time::Duration::from_millis(800));
            let slow_store = Store::open(&data2.join("slow"), slow).expect("store");
            let t = std::time::Instant::now();
            let e = slow_store.ensure(&format!("{hang_addr}/app:v1"), PullPolicy::IfNotPresent, &[]).await.unwrap_err();
            assert!(t.elapsed() < std::time::Duration::from_secs(10), "{:?}", t.elapsed());
            let text = e.to_string();
            assert!(e.is_unreachable() && text.contains("no data for 800ms"), "{text}");

            // Hostile layers: refused, nothing written outside the store, nothing left in it.
            let layers_before = layer_files(store.root());
            for (name, needle) in [("evil:dotdot", "\"../escape\""), ("evil:symlink", "etc/passwd")] {
                let e = store.ensure(&format!("{host}/{name}"), PullPolicy::IfNotPresent, &[]).await.unwrap_err();
                let text = e.to_string();
                assert!(text.contains("refused") && text.contains(needle), "{name}: {text}");
            }
            assert_eq!(layer_files(store.root()), layers_before);
            assert!(!Path::new("/tmp/rkube-oci-test-outside").exists());
            assert!(!store.root().join("tmp/../escape").exists() && !store.root().join("escape").exists());
            let tmp_left = std::fs::read_dir(store.root().join("tmp")).map(|d| d.count()).unwrap_or(0);
            assert_eq!(tmp_left, 0, "a failed unpack leaves nothing in tmp/");

            // A corrupted blob: refused by digest, nothing kept.
            let e = store.ensure(&format!("{host}/corrupt:v1"), PullPolicy::IfNotPresent, &[]).await.unwrap_err();
            assert_eq!(layer_files(store.root()), layers_before, "{e}");
            let text = e.to_string();
            assert!(text.contains("digest mismatch") || text.contains("gzip") || text.contains("corrupt"), "{text}");

            // GC: thresholds 0/0 remove every image not in use, and their layers.
            let keep: HashSet<Digest> = [img.manifest_digest.clone()].into();
            let report = store.gc(&keep, 0, 0).expect("gc");
            let mut removed = report.images.clone();
            removed.sort();
            let mut expected: Vec<String> =
                ["docker:v1", "multi:v1", "team/other:v2", "zstd:v1"].iter().map(|n| format!("{host}/{n}")).collect();
            expected.sort();
            assert_eq!(removed, expected);
            assert_eq!(report.layers, 4, "the shared base layer stays with app:v1");
            assert!(store.get(&other).expect("valid").is_none());
            assert!(store.get(&image).expect("valid").is_some());
        });
    })
    .expect("in the node namespace");

    // A reopened store (agent restart) still has the image.
    let regs = Registries::load(None, &[]).expect("registries");
    let store = Store::open(&data, regs).expect("reopen");
    assert!(store.get(&format!("{addr}/app:v1")).expect("valid").is_some());
    drop(reg);
}

/// Docker Hub's auth flow against a fake registry on the sandbox LAN: a 401
/// with `WWW-Authenticate: Bearer realm=...`, the token fetched from the
/// realm (with the pull secret's Basic credentials), the request repeated
/// with it. The fake answers 404 once it sees the token, so a NotFound
/// (not a denial) shows the flow went through.
#[test]
fn bearer_token_flow() {
    use std::io::{BufRead, BufReader, Write};
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return;
    }
    let sb = Sandbox::new(1).expect("sandbox");
    let addr = SocketAddr::new(sb.lan_ip().into(), 5004);
    let listener = sb.tcp_listener(sb.lan_netns(), addr).expect("listener");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(match stream.try_clone() {
                Ok(s) => s,
                Err(_) => continue,
            });
            let mut request = String::new();
            let mut auth = String::new();
            let mut line = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                line.clear();
                if reader.read_line(&mut line).map(|n| n == 0).unwrap_or(true) || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.strip_prefix("authorization: ").or_else(|| line.strip_prefix("Authorization: ")) {
                    auth = v.trim().to_string();
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or_default().to_string();
            if let Ok(mut l) = log.lock() {
                l.push(format!("{path} [{auth}]"));
            }
            let (status, headers, body) = if path.starts_with("/token?") {
                ("200 OK", String::new(), r#"{"token":"t0ken"}"#.to_string())
            } else if auth == "Bearer t0ken" {
                (
                    "404 Not Found",
                    String::new(),
                    r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.to_string(),
                )
            } else {
                let challenge = format!(
                    "WWW-Authenticate: Bearer realm=\"http://{addr}/token\",service=\"fake\",scope=\"repository:team/app:pull\"\r\n"
                );
                (
                    "401 Unauthorized",
                    challenge,
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_string(),
                )
            };
            let mut s = reader.into_inner();
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
                body.len()
            );
        }
    });
    let host = addr.to_string();
    let data = sb.temp_dir().join("store");
    testkit::sandbox::in_netns(sb.node_netns(1), move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            // Plain HTTP only (the fake speaks no TLS).
            let cfg: oci::config::RegistriesConfig =
                serde_yaml::from_str(&format!("mirrors:\n  \"{host}\":\n    endpoint: [\"http://{host}\"]\n"))
                    .expect("config");
            let store = Store::open(&data, Registries::from_config(cfg).without_default_endpoint()).expect("store");
            let creds = vec![(host.clone(), oci::Credential::Basic { username: "bob".into(), password: "pw".into() })];
            let e = store.ensure(&format!("{host}/team/app:v1"), PullPolicy::IfNotPresent, &creds).await.unwrap_err();
            assert!(matches!(e, StoreError::Registry(oci::registry::RegistryError::NotFound { .. })), "{e}");
        });
    })
    .expect("in the node namespace");
    let seen = seen.lock().map(|l| l.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], "/v2/team/app/manifests/v1 []");
    // base64("bob:pw") = Ym9iOnB3
    assert_eq!(seen[1], "/token?service=fake&scope=repository%3Ateam%2Fapp%3Apull [Basic Ym9iOnB3]");
    assert_eq!(seen[2], "/v2/team/app/manifests/v1 [Bearer t0ken]");
}
