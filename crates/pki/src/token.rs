//! Join tokens. A bootstrap token (`<id>.<secret>`, kubeadm's
//! `[a-z0-9]{6}.[a-z0-9]{16}`) prefixed with the CA's hash as k3s writes its
//! tokens: `K10<sha256 of the CA bundle, hex>::<id>.<secret>`. The hash lets
//! a joining agent trust the server's CA (fetched from `/cacerts`) without
//! copying `ca.crt` by hand, as kubeadm's `--discovery-token-ca-cert-hash` does.

use rand::Rng;

/// A join token: the CA hash (when given) and the bootstrap token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_hash: Option<String>,
    pub id: String,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the token is not a join token: expected K10<ca-hash>::<id>.<secret> (as in the server's \
         <data-dir>/node-token or `rkube token create`) or <id>.<secret> with 6 and 16 characters [a-z0-9]"
    )]
    Format,
}

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn valid_part(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl JoinToken {
    /// A new random token for the CA with `ca_hash`.
    pub fn generate(ca_hash: &str) -> JoinToken {
        let mut rng = rand::rng();
        let mut pick =
            |n: usize| -> String { (0..n).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect() };
        JoinToken { ca_hash: Some(ca_hash.to_string()), id: pick(ID_LEN), secret: pick(SECRET_LEN) }
    }

    /// Parses `K10<hash>::<id>.<secret>` or a bare `<id>.<secret>`.
    pub fn parse(s: &str) -> Result<JoinToken, TokenError> {
        let s = s.trim();
        let (hash, bootstrap) = match s.strip_prefix("K10") {
            Some(rest) => {
                let (h, b) = rest.split_once("::").ok_or(TokenError::Format)?;
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(TokenError::Format);
                }
                (Some(h.to_ascii_lowercase()), b)
            }
            None => (None, s),
        };
        let (id, secret) = bootstrap.split_once('.').ok_or(TokenError::Format)?;
        if !valid_part(id, ID_LEN) || !valid_part(secret, SECRET_LEN) {
            return Err(TokenError::Format);
        }
        Ok(JoinToken { ca_hash: hash, id: id.to_string(), secret: secret.to_string() })
    }

    /// The bearer token the API server authenticates (`<id>.<secret>`).
    pub fn bearer(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ca_hash {
            Some(h) => write!(f, "K10{h}::{}.{}", self.id, self.secret),
            None => write!(f, "{}.{}", self.id, self.secret),
        }
    }
}

/// Hex SHA-256 of the CA bundle exactly as `/cacerts` serves it.
pub fn ca_hash(ca_pem: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, ca_pem.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let hash = ca_hash("-----BEGIN CERTIFICATE-----\n");
        assert_eq!(hash.len(), 64);
        let t = JoinToken::generate(&hash);
        let text = t.to_string();
        assert!(text.starts_with("K10") && text.contains("::"));
        assert_eq!(JoinToken::parse(&text), Ok(t.clone()));
        assert_eq!(JoinToken::parse(&format!("  {text}\n")), Ok(t.clone()));
        let bare = JoinToken::parse(&t.bearer()).expect("bare");
        assert_eq!(bare.ca_hash, None);
        for bad in [
            "",
            "abcdef.0123",
            "ABCDEF.0123456789abcdef",
            "K10abc::abcdef.0123456789abcdef",
            "K10::abcdef.0123456789abcdef",
            "adminlongtokenwithoutdot",
        ] {
            assert_eq!(JoinToken::parse(bad), Err(TokenError::Format), "{bad}");
        }
    }
}
