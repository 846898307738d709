//! Registry settings: k3s's `registries.yaml` (mirrors with endpoints, and per
//! host `auth` and `tls`), the `--insecure-registry HOST:PORT` shortcut, and
//! the credentials of `kubernetes.io/dockerconfigjson` pull secrets.
//!
//! Like containerd (and k3s), a registry's mirror endpoints are tried in
//! order and the registry's own endpoint last.

use crate::reference::{Reference, DOCKER_HUB, DOCKER_HUB_ENDPOINT};
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `registries.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HostConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// base64 of `user:password`.
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default, alias = "identity_token")]
    pub identitytoken: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Credentials for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), traded at the token endpoint.
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credential::IdentityToken(_) => write!(f, "IdentityToken(***)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("--insecure-registry {0:?}: expected HOST or HOST:PORT")]
    InsecureRegistry(String),
    #[error("pull secret: {0}")]
    PullSecret(String),
}

/// One way to reach a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://host[:port]` or `http://host[:port]`, no path.
    pub base: String,
    pub host: String,
    pub plain_http: bool,
    pub insecure_skip_verify: bool,
    pub ca_file: Option<PathBuf>,
    /// Credentials from the registry config for this endpoint's host.
    pub credential: Option<Credential>,
}

/// The parsed settings the registry client works from.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    config: RegistriesConfig,
    /// Mirrors only (k3s `--disable-default-registry-endpoint`).
    no_default_endpoint: bool,
    timeouts: crate::transport::Timeouts,
}

impl Registries {
    /// Load `registries.yaml` (when given) and add `insecure` hosts.
    pub fn load(file: Option<&Path>, insecure: &[String]) -> Result<Registries, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
                if text.trim().is_empty() {
                    RegistriesConfig::default()
                } else {
                    serde_yaml::from_str(&text)
                        .map_err(|e| ConfigError::Invalid { path: path.to_path_buf(), reason: e.to_string() })?
                }
            }
            None => RegistriesConfig::default(),
        };
        for host in insecure {
            let h = host.trim();
            if h.is_empty() || h.contains('/') || h.contains("://") {
                return Err(ConfigError::InsecureRegistry(host.clone()));
            }
            // Docker's insecure registries: HTTPS without verification, then plain HTTP.
            let mirror = config.mirrors.entry(h.to_string()).or_default();
            for base in [format!("https://{h}"), format!("http://{h}")] {
                if !mirror.endpoint.contains(&base) {
                    mirror.endpoint.push(base);
                }
            }
            config
                .configs
                .entry(h.to_string())
                .or_default()
                .tls
                .get_or_insert_with(Default::default)
                .insecure_skip_verify = true;
        }
        Ok(Registries { config, no_default_endpoint: false, timeouts: Default::default() })
    }

    pub fn from_config(config: RegistriesConfig) -> Registries {
        Registries { config, no_default_endpoint: false, timeouts: Default::default() }
    }

    /// How long connecting to a registry, and a silent response, may take
    /// (10 s and 30 s by default).
    pub fn with_timeouts(mut self, connect: std::time::Duration, idle: std::time::Duration) -> Registries {
        self.timeouts = crate::transport::Timeouts { connect, idle };
        self
    }

    pub(crate) fn timeouts(&self) -> crate::transport::Timeouts {
        self.timeouts
    }

    /// Never fall back to a registry's own endpoint: only its mirrors.
    pub fn without_default_endpoint(mut self) -> Registries {
        self.no_default_endpoint = true;
        self
    }

    /// The endpoints to try for `r`, in order: its mirrors (or the `*`
    /// mirrors), then the registry itself.
    pub fn endpoints(&self, r: &Reference) -> Vec<Endpoint> {
        let mirror = self.config.mirrors.get(&r.registry).or_else(|| self.config.mirrors.get("*"));
        let mut bases: Vec<String> = mirror.map(|m| m.endpoint.clone()).unwrap_or_default();
        if !self.no_default_endpoint {
            bases.push(format!("https://{}", r.endpoint_host()));
        }
        let mut out: Vec<Endpoint> = Vec::new();
        for b in bases {
            let b = b.trim_end_matches('/');
            // A path after the host (k3s allows `https://host/v2`) is dropped.
            let (scheme, rest) = match b.split_once("://") {
                Some((s, rest)) => (s.to_ascii_lowercase(), rest),
                None => ("https".to_string(), b),
            };
            let host = rest.split('/').next().unwrap_or_default().to_string();
            if host.is_empty() || (scheme != "http" && scheme != "https") {
                continue;
            }
            let plain_http = scheme == "http";
            let base = format!("{scheme}://{host}");
            if out.iter().any(|e| e.base == base) {
                continue;
            }
            let cfg = self.config.configs.get(&host).or_else(|| {
                // Docker Hub's settings may be keyed by its reference name.
                (host == DOCKER_HUB_ENDPOINT).then(|| self.config.configs.get(DOCKER_HUB)).flatten()
            });
            let tls = cfg.and_then(|c| c.tls.clone()).unwrap_or_default();
            let credential = cfg.and_then(|c| c.auth.as_ref()).and_then(auth_credential);
            out.push(Endpoint {
                base,
                host,
                plain_http,
                insecure_skip_verify: tls.insecure_skip_verify,
                ca_file: tls.ca_file,
                credential,
            });
        }
        out
    }
}

fn auth_credential(a: &AuthConfig) -> Option<Credential> {
    if let Some(t) = a.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Some(Credential::IdentityToken(t.clone()));
    }
    if let (Some(u), Some(p)) = (&a.username, &a.password) {
        return Some(Credential::Basic { username: u.clone(), password: p.clone() });
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(a.auth.as_ref()?.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some(Credential::Basic { username: u.to_string(), password: p.to_string() })
}

/// The registry host a `.dockerconfigjson` key names: `https://index.docker.io/v1/`
/// is Docker Hub, a scheme and path are dropped (kubelet's keyring does the same).
fn docker_config_host(key: &str) -> String {
    let k = key.split_once("://").map(|(_, r)| r).unwrap_or(key);
    let host = k.split('/').next().unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

/// Credentials of a `kubernetes.io/dockerconfigjson` (or legacy `.dockercfg`)
/// pull secret: registry host -> credential.
pub fn parse_docker_config(data: &[u8]) -> Result<Vec<(String, Credential)>, ConfigError> {
    let v: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| ConfigError::PullSecret(format!("not JSON: {e}")))?;
    let auths = match v.get("auths") {
        Some(a) => a.clone(),
        None => v, // .dockercfg: the map itself
    };
    let map = auths.as_object().ok_or_else(|| ConfigError::PullSecret("\"auths\" is not an object".into()))?;
    let mut out = Vec::new();
    for (key, entry) in map {
        let a: AuthConfig = serde_json::from_value(entry.clone())
            .map_err(|e| ConfigError::PullSecret(format!("entry {key:?}: {e}")))?;
        if let Some(c) = auth_credential(&a) {
            out.push((docker_config_host(key), c));
        }
    }
    Ok(out)
}

/// The first credential among `creds` for the registry of `r` (kubelet tries
/// each matching one; rkube tries the first).
pub fn credential_for<'a>(creds: &'a [(String, Credential)], r: &Reference) -> Option<&'a Credential> {
    creds.iter().find(|(host, _)| *host == r.registry).map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_then_the_registry() {
        let yaml = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://10.0.0.5:5000"
configs:
  "10.0.0.5:5000":
    auth:
      username: u
      password: p
  "registry-1.docker.io":
    tls:
      insecure_skip_verify: false
"#;
        let cfg: RegistriesConfig = serde_yaml::from_str(yaml).expect("valid yaml");
        let regs = Registries::from_config(cfg);
        let r = Reference::parse("nginx").expect("valid");
        let eps = regs.endpoints(&r);
        let bases: Vec<&str> = eps.iter().map(|e| e.base.as_str()).collect();
        assert_eq!(bases, vec!["http://10.0.0.5:5000", "https://registry-1.docker.io"]);
        assert!(eps[0].plain_http);
        assert_eq!(eps[0].credential, Some(Credential::Basic { username: "u".into(), password: "p".into() }));
        assert_eq!(eps[1].credential, None);
    }

    #[test]
    fn insecure_registry_shortcut() {
        let regs = Registries::load(None, &["10.1.2.3:5000".to_string()]).expect("valid");
        let r = Reference::parse("10.1.2.3:5000/app:v1").expect("valid");
        let eps = regs.endpoints(&r);
        let bases: Vec<&str> = eps.iter().map(|e| e.base.as_str()).collect();
        assert_eq!(bases, vec!["https://10.1.2.3:5000", "http://10.1.2.3:5000"]);
        assert!(eps[0].insecure_skip_verify);
        assert!(Registries::load(None, &["http://x".to_string()]).is_err());
    }

    #[test]
    fn pull_secret_credentials() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:s3cret");
        let json = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"10.0.0.5:5000":{{"username":"a","password":"b"}}}}}}"#
        );
        let creds = parse_docker_config(json.as_bytes()).expect("valid");
        let hub = Reference::parse("library/nginx").expect("valid");
        assert_eq!(
            credential_for(&creds, &hub),
            Some(&Credential::Basic { username: "bob".into(), password: "s3cret".into() })
        );
        let local = Reference::parse("10.0.0.5:5000/x").expect("valid");
        assert_eq!(
            credential_for(&creds, &local),
            Some(&Credential::Basic { username: "a".into(), password: "b".into() })
        );
        assert!(parse_docker_config(b"[]").is_err());
        assert!(format!("{:?}", creds[0].1).contains("***"));
    }
}
