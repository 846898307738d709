//! OCI and Docker images for rkube's node agent, with no container engine.
//!
//! - [`reference`]: image references as the Docker grammar reads them
//!   (`nginx` is `docker.io/library/nginx:latest`).
//! - [`digest`]: `sha256:` digests and hashing readers/writers.
//! - [`manifest`]: OCI / Docker schema 2 manifests, indexes and image configs;
//!   picking the node's platform from an index.
//! - [`registry`]: the registry protocol v2 client (token and basic auth,
//!   mirrors, plain-HTTP and unverified-TLS registries).
//! - [`config`]: the k3s `registries.yaml` form of registry settings.
//! - [`store`]: the content-addressed store under the agent's data dir
//!   (`blobs/`, unpacked `layers/`, the `images.json` index), pulls
//!   deduplicated per reference, and garbage collection.
//! - [`unpack`]: layer tars unpacked safely into a directory in overlayfs
//!   form (whiteouts as 0/0 character devices, opaque directories by xattr).
//!
//! Anchors: the OCI image and distribution specs, containerd's overlayfs
//! snapshotter and `archive/tar.go`, k3s `registries.yaml`.

pub mod config;
pub mod digest;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod store;
mod transport;
pub mod unpack;

pub use config::{Credential, Registries};
pub use digest::Digest;
pub use reference::Reference;
pub use store::{Image, Outcome, PullPolicy, Store, StoreError};
