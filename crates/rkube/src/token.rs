//! `rkube token create|list|delete`: join tokens are bootstrap token Secrets in
//! `kube-system` (kubeadm's `kubeadm token`, k3s's `k3s token`), managed
//! through the API with the admin kubeconfig.

use crate::cli::{TokenArgs, TokenCommand};
use apimachinery::bootstrap_token::{self, NAMESPACE, SECRET_PREFIX};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use std::time::Duration;

async fn client(args: &TokenArgs) -> Result<kube::Client, String> {
    let path = args.kubeconfig.clone().unwrap_or_else(|| args.data_dir.join("kubeconfig.yaml"));
    if !path.exists() {
        return Err(format!(
            "no admin kubeconfig at {}: run this on the server (or give --data-dir / --kubeconfig)",
            path.display()
        ));
    }
    controllers::client_from_kubeconfig(&path).await.map_err(|e| e.to_string())
}

/// The CA hash of the cluster the client talks to (its `/cacerts`, read over
/// the connection that already verified the server against the kubeconfig's CA).
async fn ca_hash(client: &kube::Client) -> Result<String, String> {
    let req = http::Request::get("/cacerts").body(Vec::new()).map_err(|e| e.to_string())?;
    let ca = client.request_text(req).await.map_err(|e| format!("reading the cluster CA: {e}"))?;
    Ok(pki::ca_hash(&ca))
}

/// kubeadm's TTL column: `<forever>`, or the time left.
fn ttl_cell(expiration: Option<&str>, now: jiff::Timestamp) -> (String, String) {
    match expiration {
        None => ("<forever>".into(), "<never>".into()),
        Some(exp) => match exp.parse::<jiff::Timestamp>() {
            Ok(t) => {
                let left = Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO);
                let ttl =
                    if left.is_zero() { "<invalid>".to_string() } else { apimachinery::table::human_duration(left) };
                (ttl, exp.to_string())
            }
            Err(_) => ("<invalid>".into(), exp.to_string()),
        },
    }
}

/// The token ID of an argument: an ID, `<id>.<secret>` or a whole join token.
fn token_id(arg: &str) -> Result<String, String> {
    if let Ok(t) = pki::JoinToken::parse(arg) {
        return Ok(t.id);
    }
    let ok = arg.len() == 6 && arg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(arg.to_string())
    } else {
        Err(format!("{arg:?} is neither a token ID (6 characters [a-z0-9]) nor a join token"))
    }
}

pub async fn run(args: TokenArgs) -> Result<(), String> {
    let client = client(&args).await?;
    let api: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    match &args.command {
        TokenCommand::Create { ttl, description } => {
            let hash = ca_hash(&client).await?;
            let t = pki::JoinToken::generate(&hash);
            let expiration = (!ttl.is_zero()).then(|| {
                let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
                let when = jiff::Timestamp::now()
                    .checked_add(jiff::SignedDuration::from_secs(secs))
                    .unwrap_or(jiff::Timestamp::MAX);
                // RFC 3339 in whole seconds, as kubeadm writes it.
                when.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
            });
            let info = bootstrap_token::node_token(&t.id, &t.secret, expiration, description);
            let secret: Secret = serde_json::from_value(bootstrap_token::secret(&info)).map_err(|e| e.to_string())?;
            api.create(&PostParams::default(), &secret).await.map_err(|e| format!("creating the token: {e}"))?;
            println!("{t}");
            Ok(())
        }
        TokenCommand::List => {
            let list = api.list(&ListParams::default()).await.map_err(|e| format!("listing tokens: {e}"))?;
            let now = jiff::Timestamp::now();
            let mut rows = vec![[
                "TOKEN ID".to_string(),
                "TTL".into(),
                "EXPIRES".into(),
                "USAGES".into(),
                "DESCRIPTION".into(),
                "EXTRA GROUPS".into(),
            ]];
            for s in &list.items {
                let Ok(v) = serde_json::to_value(s) else { continue };
                let Some(info) = bootstrap_token::parse_secret(&v) else { continue };
                let (ttl, expires) = ttl_cell(info.expiration.as_deref(), now);
                let or_none = |s: String| if s.is_empty() { "<none>".to_string() } else { s };
                rows.push([
                    info.id.clone(),
                    ttl,
                    expires,
                    or_none(info.usages.join(",")),
                    or_none(info.description.clone()),
                    or_none(info.extra_groups.join(",")),
                ]);
            }
            let widths: Vec<usize> = (0..6).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
            for r in &rows {
                let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
                println!("{}", line.join("   ").trim_end());
            }
            Ok(())
        }
        TokenCommand::Delete { tokens } => {
            let mut failed = false;
            for arg in tokens {
                let id = token_id(arg)?;
                match api.delete(&format!("{SECRET_PREFIX}{id}"), &DeleteParams::default()).await {
                    Ok(_) => println!("bootstrap token {id:?} deleted"),
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        eprintln!("error: no join token with ID {id:?}");
                        failed = true;
                    }
                    Err(e) => return Err(format!("deleting token {id}: {e}")),
                }
            }
            if failed {
                Err("some tokens were not found".into())
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_ttls() {
        assert_eq!(token_id("abcdef"), Ok("abcdef".into()));
        assert_eq!(token_id("abcdef.0123456789abcdef"), Ok("abcdef".into()));
        assert!(token_id("ABC").is_err());
        let now: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().expect("ts");
        assert_eq!(ttl_cell(None, now), ("<forever>".into(), "<never>".into()));
        assert_eq!(ttl_cell(Some("2026-06-02T00:00:00Z"), now).0, "24h");
        assert_eq!(ttl_cell(Some("2026-05-02T00:00:00Z"), now).0, "<invalid>");
    }
}
