//! The registry protocol (OCI distribution spec v2 / Docker registry API v2):
//! manifests by tag or digest, blobs by digest, the token flow of
//! `WWW-Authenticate: Bearer realm=...,service=...,scope=...` (anonymous or
//! with Basic credentials), Basic auth, redirects (blobs usually live on a
//! CDN), and a registry's mirror endpoints tried in order.

use crate::config::{Credential, Endpoint, Registries};
use crate::digest::Digest;
use crate::manifest::{self, Fetched};
use crate::reference::Reference;
use crate::transport::{self, HttpError, Response, Timeouts, Trust};
use base64::Engine;
use http::StatusCode;
use std::collections::HashMap;
use std::sync::Mutex;

/// The largest manifest or config rkube reads (containerd's limit is 4 MiB too).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
const MAX_REDIRECTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No endpoint could be reached at all (the built-in fallback's trigger).
    #[error("failed to resolve reference {reference:?}: {detail}")]
    Unreachable { reference: String, detail: String },
    /// The registry has no such tag/digest (containerd's "not found").
    #[error("failed to resolve reference {reference:?}: {reference}: not found")]
    NotFound { reference: String },
    #[error("failed to resolve reference {reference:?}: pull access denied, repository does not exist or may require authorization: {detail}")]
    Denied { reference: String, detail: String },
    #[error("{what}: {endpoint} answered {status}: {message}")]
    Status { what: String, endpoint: String, status: u16, message: String },
    #[error("{what}: {source}")]
    Http { what: String, source: HttpError },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },
    #[error("{reference}: {source}")]
    Manifest { reference: String, source: manifest::ManifestError },
}

/// A manifest as the registry sent it.
#[derive(Debug, Clone)]
pub struct ManifestBody {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
    pub decoded: Fetched,
}

/// Talks to registries as the settings say. Cheap to share.
pub struct Client {
    registries: Registries,
    timeouts: Timeouts,
    /// `Authorization` values by (endpoint, repository), reused until a 401.
    auth: Mutex<HashMap<(String, String), String>>,
}

impl Client {
    pub fn new(registries: Registries) -> Client {
        let timeouts = registries.timeouts();
        Client { registries, timeouts, auth: Mutex::new(HashMap::new()) }
    }

    /// The endpoints tried for `r` (mirrors first).
    pub fn endpoints(&self, r: &Reference) -> Vec<Endpoint> {
        self.registries.endpoints(r)
    }

    /// Fetch the manifest `r` names (by digest when it has one, then
    /// verified), trying each endpoint; returns it with the endpoint that
    /// served it, which then serves the blobs too.
    pub async fn manifest(
        &self,
        r: &Reference,
        reference: &str,
        credential: Option<&Credential>,
    ) -> Result<(ManifestBody, Endpoint), RegistryError> {
        let canonical = r.to_string();
        let mut unreachable = Vec::new();
        let mut found_error: Option<RegistryError> = None;
        for ep in self.endpoints(r) {
            let path = format!("manifests/{reference}");
            match self.fetch(&ep, &r.repository, &path, Some(manifest::ACCEPT), credential).await {
                Ok(resp) if resp.status == StatusCode::OK => {
                    let media_type = resp.header("content-type").unwrap_or_default().to_string();
                    let header_digest = resp.header("docker-content-digest").map(str::to_string);
                    let what = format!("manifest {canonical} from {}", ep.base);
                    let bytes = match resp.bytes(MAX_MANIFEST_BYTES).await {
                        Ok(Ok(b)) => b,
                        Ok(Err(reason)) => return Err(RegistryError::Invalid { what, reason }),
                        Err(source) => return Err(RegistryError::Http { what, source }),
                    };
                    let digest = Digest::of(&bytes);
                    let expected = match reference.starts_with("sha256:") {
                        true => Digest::parse(reference).ok(),
                        false => header_digest.and_then(|h| Digest::parse(&h).ok()),
                    };
                    if let Some(expected) = expected.filter(|e| *e != digest) {
                        return Err(RegistryError::DigestMismatch { what, expected, actual: digest });
                    }
                    let decoded = manifest::decode(&media_type, &bytes)
                        .map_err(|source| RegistryError::Manifest { reference: canonical.clone(), source })?;
                    return Ok((ManifestBody { media_type, digest, bytes, decoded }, ep));
                }
                Ok(resp) => {
                    let status = resp.status;
                    let message = error_message(resp).await;
                    let e = match status {
                        StatusCode::NOT_FOUND => RegistryError::NotFound { reference: canonical.clone() },
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                            RegistryError::Denied { reference: canonical.clone(), detail: message }
                        }
                        _ => RegistryError::Status {
                            what: format!("manifest {canonical}"),
                            endpoint: ep.base.clone(),
                            status: status.as_u16(),
                            message,
                        },
                    };
                    // An answer beats an endpoint that could not be reached; try the next one anyway (a mirror may lack it).
                    if found_error.is_none() || matches!(e, RegistryError::NotFound { .. }) {
                        found_error = Some(e);
                    }
                }
                Err(e) => unreachable.push(format!("{}: {e}", ep.base)),
            }
        }
        Err(found_error
            .unwrap_or_else(|| RegistryError::Unreachable { reference: canonical, detail: unreachable.join("; ") }))
    }

    /// Start fetching blob `digest` of `r` from `ep`; the caller reads and verifies it.
    pub async fn blob(
        &self,
        ep: &Endpoint,
        r: &Reference,
        digest: &Digest,
        credential: Option<&Credential>,
    ) -> Result<Response, RegistryError> {
        let what = format!("blob {digest} of {}", r.name());
        let resp = self
            .fetch(ep, &r.repository, &format!("blobs/{digest}"), None, credential)
            .await
            .map_err(|source| RegistryError::Http { what: what.clone(), source })?;
        if resp.status != StatusCode::OK {
            let status = resp.status.as_u16();
            let message = error_message(resp).await;
            return Err(RegistryError::Status { what, endpoint: ep.base.clone(), status, message });
        }
        Ok(resp)
    }

    /// A small blob (a config), read whole and verified.
    pub async fn small_blob(
        &self,
        ep: &Endpoint,
        r: &Reference,
        digest: &Digest,
        credential: Option<&Credential>,
    ) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {digest} of {}", r.name());
        let resp = self.blob(ep, r, digest, credential).await?;
        let bytes = match resp.bytes(MAX_MANIFEST_BYTES).await {
            Ok(Ok(b)) => b,
            Ok(Err(reason)) => return Err(RegistryError::Invalid { what, reason }),
            Err(source) => return Err(RegistryError::Http { what, source }),
        };
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(RegistryError::DigestMismatch { what, expected: digest.clone(), actual });
        }
        Ok(bytes)
    }

    /// GET `/v2/<repo>/<path>` on `ep` with auth (answering one 401
    /// challenge) and redirects.
    async fn fetch(
        &self,
        ep: &Endpoint,
        repo: &str,
        path: &str,
        accept: Option<&str>,
        credential: Option<&Credential>,
    ) -> Result<Response, HttpError> {
        let credential = credential.or(ep.credential.as_ref());
        let url_s = format!("{}/v2/{repo}/{path}", ep.base);
        let url = url::Url::parse(&url_s).map_err(|_| HttpError::Url(url_s.clone()))?;
        let key = (ep.base.clone(), repo.to_string());
        let cached = lock(&self.auth).get(&key).cloned();
        let resp = self.follow(ep, &url, accept, cached.as_deref()).await?;
        if resp.status != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp.header("www-authenticate").map(str::to_string).unwrap_or_default();
        let Some(auth) = self.answer(&challenge, repo, credential).await else { return Ok(resp) };
        lock(&self.auth).insert(key, auth.clone());
        self.follow(ep, &url, accept, Some(&auth)).await
    }

    /// GET with up to [`MAX_REDIRECTS`] redirects; `Authorization` goes only
    /// to the endpoint's own host.
    async fn follow(
        &self,
        ep: &Endpoint,
        url: &url::Url,
        accept: Option<&str>,
        auth: Option<&str>,
    ) -> Result<Response, HttpError> {
        let mut url = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let own = url.host_str() == url::Url::parse(&ep.base).ok().as_ref().and_then(|u| u.host_str());
            let mut headers: Vec<(&str, String)> = Vec::new();
            if let Some(a) = accept {
                headers.push(("accept", a.to_string()));
            }
            if let (Some(a), true) = (auth, own) {
                headers.push(("authorization", a.to_string()));
            }
            let trust = match (own, ep.insecure_skip_verify, &ep.ca_file) {
                (true, true, _) => Trust::Anything,
                (true, false, Some(ca)) => Trust::CaFile(ca.clone()),
                _ => Trust::System,
            };
            let resp = transport::get(&url, &headers, &trust, self.timeouts).await?;
            let redirect = matches!(resp.status.as_u16(), 301 | 302 | 303 | 307 | 308);
            let location = resp.header("location").map(str::to_string);
            match (redirect, location) {
                (true, Some(loc)) => {
                    url = url.join(&loc).map_err(|_| HttpError::Url(loc))?;
                }
                _ => return Ok(resp),
            }
        }
        Err(HttpError::Url(format!("{url} (more than {MAX_REDIRECTS} redirects)")))
    }

    /// The `Authorization` value answering a challenge, `None` when it cannot be answered.
    async fn answer(&self, challenge: &str, repo: &str, credential: Option<&Credential>) -> Option<String> {
        let (scheme, params) = parse_challenge(challenge)?;
        let basic = match credential {
            Some(Credential::Basic { username, password }) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            _ => None,
        };
        if scheme.eq_ignore_ascii_case("basic") {
            return basic;
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let realm = params.get("realm")?;
        let mut url = url::Url::parse(realm).ok()?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = params.get("service") {
                q.append_pair("service", s);
            }
            let scope = params.get("scope").cloned().unwrap_or_else(|| format!("repository:{repo}:pull"));
            q.append_pair("scope", &scope);
        }
        let headers: Vec<(&str, String)> = basic.into_iter().map(|b| ("authorization", b)).collect();
        let resp = match transport::get(&url, &headers, &Trust::System, self.timeouts).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(realm = %realm, error = %e, "fetching a registry token failed");
                return None;
            }
        };
        if resp.status != StatusCode::OK {
            tracing::warn!(realm = %realm, status = %resp.status, "the registry's token endpoint refused");
            return None;
        }
        let body = resp.bytes(1 << 20).await.ok()?.ok()?;
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let token = v.get("token").or_else(|| v.get("access_token"))?.as_str()?;
        Some(format!("Bearer {token}"))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="..."`
/// -> ("Bearer", {realm, service, scope}).
pub fn parse_challenge(h: &str) -> Option<(String, HashMap<String, String>)> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some((scheme.to_string(), params))
}

/// The registry's error text (`{"errors":[{"code","message"}]}`) or the status line.
async fn error_message(resp: Response) -> String {
    let status = resp.status;
    let body = match resp.bytes(64 << 10).await {
        Ok(Ok(b)) => b,
        _ => Vec::new(),
    };
    let parsed: Option<String> = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| {
        let errs = v.get("errors")?.as_array()?;
        let texts: Vec<String> = errs
            .iter()
            .map(|e| {
                let code = e.get("code").and_then(|c| c.as_str()).unwrap_or_default();
                let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or_default();
                format!("{code}: {msg}")
            })
            .collect();
        (!texts.is_empty()).then(|| texts.join("; "))
    });
    parsed.unwrap_or_else(|| status.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        )
        .expect("valid challenge");
        assert_eq!(s, "Bearer");
        assert_eq!(p.get("realm").map(String::as_str), Some("https://auth.docker.io/token"));
        assert_eq!(p.get("service").map(String::as_str), Some("registry.docker.io"));
        assert_eq!(p.get("scope").map(String::as_str), Some("repository:library/nginx:pull"));
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#).expect("valid challenge");
        assert_eq!((s.as_str(), p.get("realm").map(String::as_str)), ("Basic", Some("Registry Realm")));
        assert!(parse_challenge("").is_none());
    }
}
