//! Pod start-up with a pulled image (issue 13): create -> Ready latency of
//! pods of a real image already in the node's store (pulled once before
//! measuring; built from busybox-static and served by Debian's
//! `docker-registry` on the sandbox LAN) against pods of a built-in image
//! (`registry.k8s.io/pause`), same run, alternating, one pod at a time.
//! Target: p50 ratio at most 1.5x. Needs root, docker-registry, skopeo.
//!
//! Run: `cargo bench --profile dev -p rkube --bench images`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use testkit::oci::{tar, Entry, Layout, Registry};
use testkit::{Kubectl, Sandbox};

const PODS: usize = 15;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).saturating_sub(1).min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Create pod `name` of `image` running `command`, and wait until it is Ready.
fn start(k: &Kubectl, name: &str, image: &str, command: &str) -> Duration {
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: {image}\n    imagePullPolicy: IfNotPresent\n{command}"
    );
    let t = Instant::now();
    k.ok_with_stdin(["create", "-f", "-"], &pod);
    k.ok(["wait", "--for=condition=Ready", &format!("pod/{name}"), "--timeout=60s"]);
    t.elapsed()
}

fn main() {
    if let Some(why) = testkit::sandbox_unavailable() {
        println!("skipping the image benchmark: {why}");
        return;
    }
    let sandbox = Sandbox::new(1).expect("sandbox");
    let addr = SocketAddr::new(sandbox.lan_ip().into(), 5000);
    let reg =
        Registry::start(&sandbox, sandbox.lan_netns(), addr, &sandbox.temp_dir().join("registry")).expect("registry");
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static");
    let layer = tar(&[
        Entry::dir("bin/"),
        Entry::file("bin/busybox", 0o755, busybox),
        Entry::symlink("bin/sleep", "busybox"),
        Entry::symlink("bin/sh", "busybox"),
    ]);
    let dir = sandbox.temp_dir().join("layout");
    let mut layout = Layout::new(&dir).expect("layout");
    layout.layer(&layer).expect("layer");
    layout.finish("v1", r#"{"Env":["PATH=/bin"],"Cmd":["sleep","3600"]}"#).expect("finish");
    reg.push(&sandbox, &dir, "v1", "sleeper").expect("push");
    let host = addr.to_string();
    let node = sandbox
        .start_rkube(
            std::path::Path::new(env!("CARGO_BIN_EXE_rkube")),
            1,
            &["--node-name", "node1", "--disable", "coredns,nodelocaldns", "--insecure-registry", &host],
        )
        .expect("rkube up");
    let k = node.kubectl();
    let t = Instant::now();
    while !k.ok(["get", "nodes"]).contains(" Ready ") {
        assert!(t.elapsed() < Duration::from_secs(30), "node not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let image = format!("{host}/sleeper:v1");
    // The first pod pulls; it is not measured.
    let first = start(&k, "warm", &image, "");
    println!("first pod of {image} (pull included): {:.0} ms", ms(first));
    let (mut real, mut builtin) = (Vec::new(), Vec::new());
    for i in 0..PODS {
        real.push(start(&k, &format!("real-{i}"), &image, ""));
        builtin.push(start(&k, &format!("builtin-{i}"), "registry.k8s.io/pause:3.10", ""));
    }
    let (r50, r90) = (pct(&mut real, 0.5), pct(&mut real, 0.9));
    let (b50, b90) = (pct(&mut builtin, 0.5), pct(&mut builtin, 0.9));
    println!("create -> Ready, {PODS} pods each, one at a time (kubectl create + kubectl wait):");
    println!("  cached real image: p50 {:.0} ms, p90 {:.0} ms", ms(r50), ms(r90));
    println!("  built-in image:    p50 {:.0} ms, p90 {:.0} ms", ms(b50), ms(b90));
    println!("ratio real / built-in (p50): {:.2}x (target <= 1.5x)", r50.as_secs_f64() / b50.as_secs_f64());
    drop(reg);
}
