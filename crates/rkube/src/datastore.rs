//! `--datastore`: which backend of the store the API server runs on.
//!
//! `sqlite` (the default) is a file in the data dir; `etcd://h1:2379,h2:2379`
//! is an etcd v3 cluster over plain HTTP and `etcd+tls://...` the same over
//! TLS with `--etcd-cafile`/`--etcd-certfile`/`--etcd-keyfile`, as
//! kube-apiserver's `--etcd-servers`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A parsed `--datastore`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Datastore {
    Sqlite,
    /// Member URLs (`http://` or `https://`).
    Etcd {
        endpoints: Vec<String>,
        tls: bool,
    },
}

/// Parse `--datastore`, saying what was wrong and what is expected.
pub fn parse(s: &str) -> Result<Datastore, String> {
    let expected = "expected `sqlite`, `etcd://HOST:PORT[,HOST:PORT...]` or `etcd+tls://HOST:PORT[,...]`";
    if s == "sqlite" {
        return Ok(Datastore::Sqlite);
    }
    let (rest, tls) = if let Some(r) = s.strip_prefix("etcd+tls://") {
        (r, true)
    } else if let Some(r) = s.strip_prefix("etcd://") {
        (r, false)
    } else {
        return Err(format!("--datastore {s:?}: {expected}"));
    };
    let scheme = if tls { "https" } else { "http" };
    let mut endpoints = Vec::new();
    for member in rest.split(',').map(str::trim) {
        let member = member.trim_end_matches('/');
        let (host, port) = member
            .rsplit_once(':')
            .ok_or_else(|| format!("--datastore {s:?}: member {member:?} has no port ({expected})"))?;
        if host.is_empty() || port.parse::<u16>().is_err() || member.contains('/') {
            return Err(format!("--datastore {s:?}: member {member:?} is not HOST:PORT ({expected})"));
        }
        endpoints.push(format!("{scheme}://{member}"));
    }
    Ok(Datastore::Etcd { endpoints, tls })
}

/// The etcd flags besides `--datastore`.
pub struct EtcdFlags<'a> {
    pub prefix: &'a str,
    pub ca_file: Option<&'a Path>,
    pub cert_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
}

/// Open the store `ds` names (SQLite at `<data_dir>/state.db`).
pub async fn open(ds: &Datastore, data_dir: &Path, etcd: EtcdFlags<'_>) -> Result<Arc<dyn store::Store>, String> {
    match ds {
        Datastore::Sqlite => {
            std::fs::create_dir_all(data_dir).map_err(|e| {
                format!("cannot create the data dir {}: {e} (choose another with --data-dir)", data_dir.display())
            })?;
            let path = data_dir.join("state.db");
            let s = store::SqliteStore::open(&path)
                .map_err(|e| format!("opening the datastore {}: {e}", path.display()))?;
            Ok(Arc::new(s))
        }
        Datastore::Etcd { endpoints, tls } => {
            let files = [etcd.ca_file, etcd.cert_file, etcd.key_file];
            if !tls && files.iter().any(Option::is_some) {
                return Err("--etcd-cafile/--etcd-certfile/--etcd-keyfile need an `etcd+tls://` datastore".into());
            }
            let owned = |p: Option<&Path>| p.map(PathBuf::from);
            let tls = tls.then(|| store::EtcdTls {
                ca_file: owned(etcd.ca_file),
                cert_file: owned(etcd.cert_file),
                key_file: owned(etcd.key_file),
            });
            if !etcd.prefix.starts_with('/') {
                return Err(format!("--etcd-prefix {:?}: must start with `/`", etcd.prefix));
            }
            let opts = store::EtcdOptions { endpoints: endpoints.clone(), prefix: etcd.prefix.to_string(), tls };
            let s = store::EtcdStore::connect(opts).await.map_err(|e| format!("opening the datastore: {e}"))?;
            Ok(Arc::new(s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_backends() {
        assert_eq!(parse("sqlite"), Ok(Datastore::Sqlite));
        assert_eq!(
            parse("etcd://10.0.0.1:2379,h2:2379"),
            Ok(Datastore::Etcd { endpoints: vec!["http://10.0.0.1:2379".into(), "http://h2:2379".into()], tls: false })
        );
        assert_eq!(
            parse("etcd+tls://h1:2379/"),
            Ok(Datastore::Etcd { endpoints: vec!["https://h1:2379".into()], tls: true })
        );
        for bad in ["mysql://x", "etcd://", "etcd://h1", "etcd://h1:99999", "etcd://h1:2379/x", "etcd://:2379"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("--datastore") && e.contains("expected"), "{bad}: {e}");
        }
    }
}
