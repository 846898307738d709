//! `testkit`: helpers for rkube's end-to-end tests (`crates/rkube/tests/`).
//!
//! - [`kubectl_path`] finds the real kubectl v1.33 (`$RKUBE_KUBECTL`, or
//!   `scripts/fetch-kubectl.sh`), and [`Kubectl`] runs it against a kubeconfig.
//! - [`TestServer`] starts `rkube server` on a free loopback port in a temporary
//!   data dir, waits until it is ready, and stops, kills or restarts it.
//! - [`manifests_dir`] points at the lesson's manifests (byte-identical copies in
//!   the repository's `tests/manifests/`).
//!
//! - [`sandbox`]: network-namespace sandboxes for multi-host tests.
//! - [`etcd`]: a real etcd cluster (members on loopback or in sandbox namespaces).
//! - [`oci`]: test images (layer tars, OCI layouts) and a real registry to push them to.
//!
//! Depends on: tempfile, serde_yaml, libc. Never on rkube's own crates: tests drive
//! the real binary and the real kubectl, as a user would.

mod error;
pub mod etcd;
mod kubectl;
pub mod oci;
pub mod sandbox;
mod server;

pub use error::{Error, Result};
pub use kubectl::{helm_path, kubectl_path, Kubectl, Output};
pub use sandbox::{cleanup_stale, sandbox_unavailable, Sandbox, SandboxNode};
pub use server::{free_port, token_from_kubeconfig, TestServer};

use std::path::PathBuf;

/// Whether this run is CI's (`CI=true`): root, with every prerequisite installed.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports a test that cannot run here (not root, a tool missing). Under CI a skip
/// means something is broken, so it fails the test instead.
pub fn skip(why: &str) {
    assert!(!in_ci(), "CI=true, so this test may not skip itself: {why}");
    eprintln!("skipping: {why}");
}

/// The root of the repository (the workspace), found from this crate's manifest dir.
pub fn repo_root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent().and_then(|p| p.parent()).map(PathBuf::from).unwrap_or(dir)
}

/// The directory holding the lesson's manifests (`mynapp-svc.yml`, ...).
///
/// By default the repository's own copy, `tests/manifests/`, which is kept byte for
/// byte identical to `shared/seed/manifests/`. With `RKUBE_SHARED_DIR` set, the
/// originals in `$RKUBE_SHARED_DIR/seed/manifests` are used instead.
pub fn manifests_dir() -> PathBuf {
    match std::env::var_os("RKUBE_SHARED_DIR") {
        Some(shared) if !shared.is_empty() => PathBuf::from(shared).join("seed").join("manifests"),
        _ => repo_root().join("tests").join("manifests"),
    }
}

/// The path of one lesson manifest, e.g. `manifest("mynapp-svc.yml")`.
pub fn manifest(name: &str) -> PathBuf {
    manifests_dir().join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFESTS: [&str; 7] = [
        "mynapp-rs.yml",
        "mynapp-svc-ext-extname.yml",
        "mynapp-svc-ext-loadbalancer.yml",
        "mynapp-svc-ext-nodeport.yml",
        "mynapp-svc-multiport.yml",
        "mynapp-svc-session-affinity.yml",
        "mynapp-svc.yml",
    ];

    #[test]
    fn repo_copy_of_manifests_is_complete() {
        let dir = repo_root().join("tests").join("manifests");
        for name in MANIFESTS {
            let path = dir.join(name);
            assert!(path.is_file(), "missing {}", path.display());
        }
    }

    /// The repo copy must stay byte-identical to the user's originals when those are
    /// reachable (`shared/` beside the clone, or `$RKUBE_SHARED_DIR`).
    #[test]
    fn repo_copy_of_manifests_matches_shared() {
        let shared = std::env::var_os("RKUBE_SHARED_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("..").join("shared"));
        let originals = shared.join("seed").join("manifests");
        if !originals.is_dir() {
            skip(&format!("{} not found", originals.display()));
            return;
        }
        let copy = repo_root().join("tests").join("manifests");
        for name in MANIFESTS {
            let a = std::fs::read(originals.join(name)).unwrap();
            let b = std::fs::read(copy.join(name)).unwrap();
            assert!(a == b, "tests/manifests/{name} differs from {}", originals.display());
        }
    }

    #[test]
    fn manifest_paths() {
        assert!(manifest("mynapp-svc.yml").is_file());
    }
}
