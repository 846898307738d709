//! The default join token: `<data-dir>/node-token` (root-only), backed by a
//! bootstrap token Secret, made on the server's first start as k3s writes its
//! `node-token`. Deleting that Secret (`rkube token delete`) revokes it; the
//! server never re-creates a revoked token behind the operator's back.

use crate::error::ApiResult;
use crate::registry::Registry;
use crate::resources;
use apimachinery::bootstrap_token;
use std::path::Path;

const FILE: &str = "node-token";

/// The join token in `data_dir`, created (with its Secret) if there is none.
/// `Ok(None)` if the file's token was revoked.
pub async fn ensure_node_token(reg: &Registry, data_dir: &Path, ca_pem: &str) -> ApiResult<Option<String>> {
    let path = data_dir.join(FILE);
    let hash = pki::ca_hash(ca_pem);
    let r = resources::find("", "v1", "secrets")
        .ok_or_else(|| crate::error::ApiError::internal("the secrets resource is not served"))?;
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(t) = pki::JoinToken::parse(&text) {
            let name = format!("{}{}", bootstrap_token::SECRET_PREFIX, t.id);
            return match reg.get(r, Some(bootstrap_token::NAMESPACE), &name).await {
                Ok(_) => Ok(Some(pki::JoinToken { ca_hash: Some(hash), ..t }.to_string())),
                Err(e) if e.code == 404 => {
                    tracing::warn!(
                        path = %path.display(),
                        "the join token in this file was revoked; make a new one with `rkube token create`"
                    );
                    Ok(None)
                }
                Err(e) => Err(e),
            };
        }
    }
    let t = pki::JoinToken::generate(&hash);
    let info = bootstrap_token::node_token(
        &t.id,
        &t.secret,
        None,
        &format!("The default join token, written to {}", path.display()),
    );
    reg.create(
        r,
        Some(bootstrap_token::NAMESPACE),
        bootstrap_token::secret(&info),
        false,
        &crate::fieldmanager::Tracking::Update("rkube-apiserver".into()),
    )
    .await?;
    let text = t.to_string();
    if let Err(e) = crate::write_private(&path, &format!("{text}\n")) {
        tracing::warn!(error = %e, "writing the join token file failed");
    }
    Ok(Some(text))
}
