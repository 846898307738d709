//! Who is asking. The authenticators in front of every request, tried in
//! upstream's order (`pkg/kubeapiserver/authenticator/config.go`):
//!
//! 1. a client certificate signed by the cluster CA (rustls verified it in the
//!    handshake; CN is the user, O the groups — `x509.CommonNameUserConversion`);
//! 2. the admin bearer token of `<data-dir>/admin.token` (user `system:admin`,
//!    group `system:masters`);
//! 3. a bootstrap token `<id>.<secret>` backed by the Secret
//!    `kube-system/bootstrap-token-<id>` (`plugin/pkg/auth/authenticator/token/bootstrap`);
//! 4. a ServiceAccount token (a JWT signed with `<data-dir>/pki/sa.key`, see
//!    `serviceaccount.rs`).
//!
//! Every authenticated user is also in `system:authenticated`.

use crate::registry::Registry;
use apimachinery::bootstrap_token::{NAMESPACE as BOOTSTRAP_NAMESPACE, SECRET_PREFIX as BOOTSTRAP_SECRET_PREFIX};
use serde_json::Value;

pub const MASTERS: &str = "system:masters";
pub const NODES: &str = "system:nodes";
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
pub const AUTHENTICATED: &str = "system:authenticated";
/// `bootstrapapi.BootstrapUserPrefix`.
pub const BOOTSTRAP_USER_PREFIX: &str = "system:bootstrap:";
/// The user the admin token authenticates as.
pub const ADMIN_USER: &str = "system:admin";

/// An authenticated user (`user.Info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn new(name: impl Into<String>, groups: impl IntoIterator<Item = String>) -> User {
        let mut groups: Vec<String> = groups.into_iter().collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        User { name: name.into(), uid: String::new(), groups }
    }

    pub fn admin() -> User {
        User::new(ADMIN_USER, [MASTERS.to_string()])
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The user a verified client certificate names: CN, and O as the groups.
pub fn user_from_certificate(der: &[u8]) -> Option<User> {
    let (cn, orgs) = pki::subject(der)?;
    (!cn.is_empty()).then(|| User::new(cn, orgs))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `^([a-z0-9]{6})\.([a-z0-9]{16})$`: (token id, token secret).
pub fn parse_bootstrap_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// Why a bootstrap token Secret does not authenticate, for the server log (the
/// client only ever sees 401, as upstream).
fn check_bootstrap_secret(secret: &Value, id: &str, token_secret: &str, now: jiff::Timestamp) -> Result<User, String> {
    let Some(info) = apimachinery::bootstrap_token::parse_secret(secret) else {
        return Err("not a bootstrap token Secret (wrong type, or no token-id/token-secret)".into());
    };
    if secret.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return Err("secret is being deleted".into());
    }
    if info.id != id {
        return Err("token-id does not match".into());
    }
    if !constant_time_eq(info.secret.as_bytes(), token_secret.as_bytes()) {
        return Err("token secret does not match".into());
    }
    if !info.usages.iter().any(|u| u == "authentication") {
        return Err("token is not usable for authentication".into());
    }
    if let Some(exp) = &info.expiration {
        match exp.parse::<jiff::Timestamp>() {
            Ok(t) if t <= now => return Err(format!("token expired at {exp}")),
            Ok(_) => {}
            Err(_) => return Err(format!("unparsable expiration {exp:?}")),
        }
    }
    let mut groups = vec![BOOTSTRAPPERS.to_string()];
    // `bootstrapsecretutil.ValidateBootstrapGroupName`.
    groups.extend(info.extra_groups.into_iter().filter(|g| g.starts_with("system:bootstrappers:")));
    Ok(User::new(format!("{BOOTSTRAP_USER_PREFIX}{id}"), groups))
}

/// Authenticates a request: the connection's certificate user, else its bearer token.
pub async fn authenticate(
    registry: &Registry,
    admin_token: &str,
    sa_tokens: &crate::serviceaccount::Tokens,
    cert_user: Option<&User>,
    authorization: Option<&str>,
) -> Option<User> {
    if let Some(u) = cert_user {
        return Some(u.clone());
    }
    let token = authorization?.strip_prefix("Bearer ").map(str::trim)?;
    if constant_time_eq(token.as_bytes(), admin_token.as_bytes()) {
        return Some(User::admin());
    }
    if crate::serviceaccount::looks_like_jwt(token) {
        return match crate::serviceaccount::authenticate(registry, sa_tokens, token).await {
            Ok(u) => Some(u),
            Err(why) => {
                tracing::info!(reason = %why, "service account token rejected");
                None
            }
        };
    }
    let (id, secret) = parse_bootstrap_token(token)?;
    let r = crate::resources::find("", "v1", "secrets")?;
    let stored = registry.get(r, Some(BOOTSTRAP_NAMESPACE), &format!("{BOOTSTRAP_SECRET_PREFIX}{id}")).await.ok()?;
    match check_bootstrap_secret(&stored.object, id, secret, jiff::Timestamp::now()) {
        Ok(u) => Some(u),
        Err(why) => {
            tracing::info!(token_id = id, reason = %why, "bootstrap token rejected");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apimachinery::bootstrap_token::SECRET_TYPE as BOOTSTRAP_SECRET_TYPE;
    use base64::Engine;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(extra: &[(&str, &str)]) -> Value {
        let mut data = json!({
            "token-id": b64("abcdef"), "token-secret": b64("0123456789abcdef"),
            "usage-bootstrap-authentication": b64("true"),
        });
        for (k, v) in extra {
            data[*k] = json!(b64(v));
        }
        json!({"metadata": {"name": "bootstrap-token-abcdef"}, "type": BOOTSTRAP_SECRET_TYPE, "data": data})
    }

    #[test]
    fn bootstrap_tokens() {
        assert_eq!(parse_bootstrap_token("abcdef.0123456789abcdef"), Some(("abcdef", "0123456789abcdef")));
        assert_eq!(parse_bootstrap_token("ABCDEF.0123456789abcdef"), None);
        assert_eq!(parse_bootstrap_token("abcdef.0123"), None);
        assert_eq!(parse_bootstrap_token("plainadmintoken"), None);
        let now: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().expect("ts");
        let u = check_bootstrap_secret(
            &secret(&[("auth-extra-groups", "system:bootstrappers:workers,evil")]),
            "abcdef",
            "0123456789abcdef",
            now,
        )
        .expect("user");
        assert_eq!(u.name, "system:bootstrap:abcdef");
        assert_eq!(u.groups, [BOOTSTRAPPERS, "system:bootstrappers:workers", AUTHENTICATED]);
        assert!(check_bootstrap_secret(&secret(&[]), "abcdef", "0123456789abcdeX", now).is_err());
        let expired = secret(&[("expiration", "2026-05-01T00:00:00Z")]);
        assert!(check_bootstrap_secret(&expired, "abcdef", "0123456789abcdef", now).unwrap_err().contains("expired"));
        let later = secret(&[("expiration", "2026-07-01T00:00:00Z")]);
        assert!(check_bootstrap_secret(&later, "abcdef", "0123456789abcdef", now).is_ok());
        let mut unusable = secret(&[]);
        unusable["data"]["usage-bootstrap-authentication"] = json!(b64("false"));
        assert!(check_bootstrap_secret(&unusable, "abcdef", "0123456789abcdef", now).is_err());
        let mut wrong_type = secret(&[]);
        wrong_type["type"] = json!("Opaque");
        assert!(check_bootstrap_secret(&wrong_type, "abcdef", "0123456789abcdef", now).is_err());
    }
}
