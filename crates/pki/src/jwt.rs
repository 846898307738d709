//! Signed JSON Web Tokens (RFC 7515/7519) with ES256 (ECDSA P-256, SHA-256):
//! the ServiceAccount tokens of the API server, signed with the key
//! kube-apiserver takes as `--service-account-signing-key-file` (an ECDSA key
//! is one of the kinds it accepts). Only the signature is checked here; what
//! the claims must say is the caller's (`apimachinery::serviceaccount`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rcgen::{KeyPair, PublicKeyData};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("the signing key: {0}")]
    Key(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("signing: {0}")]
    Sign(String),
    /// Not a JWT, or not one of ours; the message says which part.
    #[error("{0}")]
    Invalid(&'static str),
}

/// Signs tokens with one P-256 key.
pub struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Signer {
    /// A new key, as PKCS#8 PEM.
    pub fn generate_pem() -> Result<String, JwtError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| JwtError::Key(e.to_string()))?;
        Ok(key.serialize_pem())
    }

    /// The signer of a PKCS#8 PEM P-256 key.
    pub fn from_pem(pem: &str) -> Result<Signer, JwtError> {
        let parsed = KeyPair::from_pem(pem).map_err(|e| JwtError::Key(e.to_string()))?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &parsed.serialize_der(), &rng)
            .map_err(|e| JwtError::Key(format!("not an ECDSA P-256 key: {e}")))?;
        // kube-apiserver's keyIDFromPublicKey: SHA-256 of the PKIX public key.
        let kid = B64.encode(ring::digest::digest(&ring::digest::SHA256, &parsed.subject_public_key_info()));
        Ok(Signer { key, kid, rng })
    }

    /// The key in `path`, created (mode 0600) if missing.
    pub fn load_or_create(path: &Path) -> Result<Signer, JwtError> {
        let pem = match std::fs::read_to_string(path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pem = Signer::generate_pem()?;
                write_private(path, &pem).map_err(|e| JwtError::Io(format!("writing {}", path.display()), e))?;
                pem
            }
            Err(e) => return Err(JwtError::Io(format!("reading {}", path.display()), e)),
        };
        Signer::from_pem(&pem)
    }

    /// The key ID (`kid`) its tokens carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A compact JWS of `claims`.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, JwtError> {
        let header = serde_json::json!({"alg": "ES256", "kid": self.kid});
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let sig = self.key.sign(&self.rng, input.as_bytes()).map_err(|e| JwtError::Sign(e.to_string()))?;
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }

    /// The public half, to check tokens with.
    pub fn verifier(&self) -> Verifier {
        Verifier { keys: vec![(self.kid.clone(), self.key.public_key().as_ref().to_vec())] }
    }

    /// The public key as a JWK (`/openid/v1/jwks`).
    pub fn jwk(&self) -> serde_json::Value {
        let point = self.key.public_key().as_ref();
        // An uncompressed point: 0x04 || x (32) || y (32).
        serde_json::json!({
            "use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        })
    }
}

/// Checks signatures of tokens from known keys.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: Vec<(String, Vec<u8>)>,
}

impl Verifier {
    /// The claims of `token` if one of the keys signed it with ES256.
    pub fn verify(&self, token: &str) -> Result<serde_json::Value, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(JwtError::Invalid("not a JWT (three dot-separated parts)"));
        };
        let header: serde_json::Value = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Invalid("the JWT header is not base64url JSON"))?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("ES256") {
            return Err(JwtError::Invalid("the JWT is not signed with ES256"));
        }
        let kid = header.get("kid").and_then(|k| k.as_str());
        let sig = B64.decode(s).map_err(|_| JwtError::Invalid("the JWT signature is not base64url"))?;
        let input = &token[..h.len() + 1 + p.len()];
        let signed = self.keys.iter().filter(|(k, _)| kid.is_none_or(|want| want == k)).any(|(_, public)| {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public)
                .verify(input.as_bytes(), &sig)
                .is_ok()
        });
        if !signed {
            return Err(JwtError::Invalid("the JWT signature does not verify with any service account key"));
        }
        let claims: serde_json::Value = B64
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Invalid("the JWT claims are not base64url JSON"))?;
        if !claims.is_object() {
            return Err(JwtError::Invalid("the JWT claims are not an object"));
        }
        Ok(claims)
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_and_tampered_or_foreign_ones_do_not() {
        let signer = Signer::from_pem(&Signer::generate_pem().expect("key")).expect("signer");
        let claims = serde_json::json!({"sub": "system:serviceaccount:default:default", "exp": 2});
        let token = signer.sign(&claims).expect("sign");
        let v = signer.verifier();
        assert_eq!(v.verify(&token).expect("verify"), claims);

        let (head, rest) = token.split_once('.').expect("parts");
        let (_, sig) = rest.split_once('.').expect("parts");
        let forged = format!("{head}.{}.{sig}", B64.encode(r#"{"sub":"system:admin"}"#));
        assert!(v.verify(&forged).is_err(), "changed claims");
        let other = Signer::from_pem(&Signer::generate_pem().expect("key")).expect("signer");
        assert!(other.verifier().verify(&token).is_err(), "another key");
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), B64.encode(claims.to_string()));
        assert!(matches!(v.verify(&none), Err(JwtError::Invalid(m)) if m.contains("ES256")));
        assert!(v.verify("abc").is_err() && v.verify("a.b.c.d").is_err());
    }

    #[test]
    fn the_key_id_and_jwk_describe_the_public_key() {
        let signer = Signer::from_pem(&Signer::generate_pem().expect("key")).expect("signer");
        let jwk = signer.jwk();
        assert_eq!(jwk["kid"], signer.kid());
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(B64.decode(jwk["x"].as_str().expect("x")).expect("b64").len(), 32);
        assert_eq!(signer.kid().len(), 43, "base64url of a SHA-256");
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        let dir = std::env::temp_dir().join(format!("rkube-jwt-{}", std::process::id()));
        let path = dir.join("sa.key");
        let _ = std::fs::remove_dir_all(&dir);
        let a = Signer::load_or_create(&path).expect("create");
        let b = Signer::load_or_create(&path).expect("load");
        assert_eq!(a.kid(), b.kid());
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).expect("meta").permissions());
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
