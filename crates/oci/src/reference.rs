//! Image references as the Docker reference grammar reads them
//! (`github.com/distribution/reference`, `normalize.go`): a short name is a
//! Docker Hub repository (`nginx` is `docker.io/library/nginx`), a first
//! component with a `.` or `:` (or `localhost`) is a registry host, a tag
//! defaults to `latest`, and a digest pins the content.

use crate::digest::Digest;
use std::fmt;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `registry.k8s.io`, `10.0.0.5:5000`, ...
    pub registry: String,
    /// `library/nginx`, `e2e-test-images/agnhost`, ...
    pub repository: String,
    /// The tag, `None` when only a digest was given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl Reference {
    /// Parse a reference as kubelet and containerd do.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let err = |reason: &str| ReferenceError { input: input.to_string(), reason: reason.to_string() };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("the image name is empty"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d).map_err(|e| err(&e.to_string()))?)),
            None => (s, None),
        };
        // A tag is a ':' after the last '/' (a ':' before it is a port).
        let (name, tag) = match name.rfind(':') {
            Some(colon) if !name[colon..].contains('/') => (&name[..colon], Some(&name[colon + 1..])),
            _ => (name, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
            if !ok {
                return Err(err("a tag is up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        if path.is_empty() {
            return Err(err("the repository name is empty"));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err("repository name must be lowercase"));
        }
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(err(
                    "each repository path component is [a-z0-9] groups joined by '.', '_', '__' or dashes",
                ));
            }
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// What the manifest is fetched by: the digest when there is one, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `registry/repository` (`docker.io/library/nginx`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host that serves this registry's API (Docker Hub's is not `docker.io`).
    pub fn endpoint_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_ENDPOINT
        } else {
            &self.registry
        }
    }

    /// `name@digest`: what kubelet reports as a container's `imageID`.
    pub fn with_digest(&self, digest: &Digest) -> String {
        format!("{}@{digest}", self.name())
    }

    /// Whether kubelet's default pull policy for this image is `Always`: an
    /// explicit or implied `:latest` without a digest (`pkg/apis/core/v1/defaults.go`).
    pub fn is_latest(&self) -> bool {
        self.digest.is_none() && self.tag.as_deref().is_none_or(|t| t == "latest")
    }
}

/// The fully qualified form (`docker.io/library/nginx:latest`,
/// `host/repo@sha256:...`), the store's key for a reference.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` (the grammar's path component).
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Reference::parse(s).map(|r| r.to_string()).unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(canon("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(canon("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(canon("minjulee226/myweb"), "docker.io/minjulee226/myweb:latest");
        assert_eq!(canon("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(canon("index.docker.io/library/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(canon("localhost/app"), "localhost/app:latest");
        assert_eq!(canon("10.0.0.5:5000/app:v1"), "10.0.0.5:5000/app:v1");
        assert_eq!(canon("registry.k8s.io/pause:3.10"), "registry.k8s.io/pause:3.10");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("busybox@{d}")).expect("valid");
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{d}"));
        assert!(!r.is_latest());
        assert!(Reference::parse("nginx").expect("valid").is_latest());
        assert!(!Reference::parse("nginx:1").expect("valid").is_latest());
        assert_eq!(Reference::parse("nginx").expect("valid").endpoint_host(), DOCKER_HUB_ENDPOINT);
    }

    #[test]
    fn refuses_bad_names() {
        for bad in ["", "Nginx", "nginx:", "nginx:-x", "a//b", "-a", "a..b", "a/b_", "nginx@sha256:12"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["a__b", "a--b/c.d", "my_app", "a-b-c:v1.2_3"] {
            assert!(Reference::parse(good).is_ok(), "{good:?} should parse");
        }
    }
}
