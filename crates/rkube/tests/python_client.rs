//! The official Kubernetes Python client (PyPI `kubernetes` 33.x, installed by
//! `scripts/fetch-python-client.sh` into a cached virtualenv) against one
//! sandboxed `rkube up`: `tests/python/client_checks.py` creates (bodies
//! without kind/apiVersion), reads, patches, lists, watches and deletes
//! ConfigMaps, Services, Pods, Deployments (+ scale), DaemonSets and Jobs, and
//! server-side applies through the dynamic client, and port-forwards to a pod
//! (`kubernetes.stream.portforward`). Needs root (skips otherwise).

use std::process::{Command, Stdio};
use testkit::Sandbox;

fn python() -> String {
    if let Ok(p) = std::env::var("RKUBE_PYTHON_CLIENT") {
        if !p.is_empty() {
            return p;
        }
    }
    let script = testkit::repo_root().join("scripts").join("fetch-python-client.sh");
    let out = Command::new("bash").arg(&script).stderr(Stdio::inherit()).output().expect("run fetch-python-client.sh");
    assert!(out.status.success(), "{} failed", script.display());
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string()
}

#[test]
fn official_python_client() {
    if let Some(why) = testkit::sandbox_unavailable() {
        testkit::skip(&why);
        return;
    }
    let py = python();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rkube"));
    let sandbox = Sandbox::new(1).expect("sandbox");
    let server = sandbox.start_rkube(bin, 1, &["--node-name", "node1"]).expect("rkube up");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_checks.py");
    let out =
        sandbox.command(server.netns(), &py).arg(&script).arg(server.kubeconfig_path()).output().expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all python client checks passed"),
        "python client checks failed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- rkube ---\n{}",
        server.logs_tail(40)
    );
    // The checks that ran, for the CI log.
    eprintln!("{stdout}");
}
