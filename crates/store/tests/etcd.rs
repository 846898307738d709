//! The store contract on a real etcd (Debian's `etcd-server`), started by
//! each check on loopback ports of its own (revisions must start fresh), and
//! the backend's own behaviour: the key prefix, reconnecting, a clear error
//! when etcd cannot be reached.

mod suite;

use std::time::{Duration, Instant};
use store::{EtcdOptions, EtcdStore, ListOptions, Store};
use suite::{v, TestResult};
use testkit::etcd::{EtcdCluster, Placement};

/// A one-member etcd of its own on loopback (killed on drop), or `None` (a
/// skip, which fails under CI) without the binary.
fn start() -> Option<EtcdCluster> {
    start_with(&[], "http")
}

fn start_with(extra: &[String], scheme: &str) -> Option<EtcdCluster> {
    if testkit::etcd::etcd_binary().is_none() {
        testkit::skip("etcd is not installed (scripts/install-prereqs.sh installs etcd-server)");
        return None;
    }
    Some(EtcdCluster::start_with(&[Placement::Loopback], scheme, extra).expect("starting etcd"))
}

fn url(e: &EtcdCluster) -> String {
    e.endpoints().remove(0)
}

async fn connect(e: &EtcdCluster) -> store::Result<EtcdStore> {
    EtcdStore::connect(EtcdOptions { endpoints: vec![url(e)], prefix: "/rkube".into(), ..Default::default() }).await
}

macro_rules! on_etcd {
    ($name:ident, $check:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> TestResult {
            let Some(e) = start() else { return Ok(()) };
            let s = connect(&e).await?;
            $check(&s).await
        }
    };
}

on_etcd!(crud_and_conflicts, suite::crud_and_conflicts);
on_etcd!(get_at_revision, suite::get_at_revision);
on_etcd!(list_prefix_limit_continue, suite::list_prefix_limit_continue);
on_etcd!(list_at_older_revision, suite::list_at_older_revision);
on_etcd!(compaction_keeps_latest_values, suite::compaction_keeps_latest_values);
on_etcd!(watch_replays_then_streams_live, suite::watch_replays_then_streams_live);
on_etcd!(watch_from_compacted_revision_fails, suite::watch_from_compacted_revision_fails);
on_etcd!(watch_progress_on_request, suite::watch_progress_on_request);
on_etcd!(concurrent_updates_conflict_exactly_once, suite::concurrent_updates_conflict_exactly_once);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_no_gaps() -> TestResult {
    let Some(e) = start() else { return Ok(()) };
    let s = connect(&e).await?;
    suite::concurrent_writers_no_gaps(&s, 4, 150).await
}

/// Keys live under the cluster's prefix; two prefixes on one etcd do not see
/// each other; a reopened store (a restarted server) knows the compaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_and_reopen() -> TestResult {
    let Some(e) = start() else { return Ok(()) };
    let a = connect(&e).await?;
    let b = EtcdStore::connect(EtcdOptions { endpoints: vec![url(&e)], prefix: "/other".into(), ..Default::default() })
        .await?;
    a.create("/registry/x", v("a")).await?;
    b.create("/registry/x", v("b")).await?;
    assert_eq!(a.get("/registry/x", None).await?.map(|kv| kv.value), Some(v("a")));
    assert_eq!(b.list("/", ListOptions::default()).await?.kvs.len(), 1);
    let rev = a.current_revision().await?;
    a.compact(rev - 1).await?;
    let reopened = connect(&e).await?;
    assert_eq!(reopened.compacted_revision().await?, rev - 1);
    Ok(())
}

/// No etcd at the endpoint: a clear error naming it, quickly.
#[tokio::test]
async fn unreachable_etcd_is_a_clear_error() -> TestResult {
    let url = format!("http://127.0.0.1:{}", testkit::free_port()?);
    let t = Instant::now();
    let e = match EtcdStore::connect(EtcdOptions {
        endpoints: vec![url.clone()],
        prefix: "/rkube".into(),
        ..Default::default()
    })
    .await
    {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains(&url) && e.contains("cannot be reached"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    Ok(())
}

/// PEMs of a throwaway CA, etcd's serving certificate for 127.0.0.1, and a client certificate.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).expect("writing a PEM");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        write("ca.crt", ca.self_signed(&ca_key).expect("CA").pem());
        let issuer = Issuer::new(ca, ca_key);
        for (name, usage) in
            [("server", ExtendedKeyUsagePurpose::ServerAuth), ("client", ExtendedKeyUsagePurpose::ClientAuth)]
        {
            let key = KeyPair::generate().expect("key");
            let mut p = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
            p.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
            p.extended_key_usages = vec![usage];
            write(&format!("{name}.crt"), p.signed_by(&key, &issuer).expect("certificate").pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Pki { dir }
    }
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

/// `etcd+tls://`: etcd serving TLS and checking client certificates; the
/// store connects with the CA and a client certificate, and without the
/// client certificate it gets a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() -> TestResult {
    let pki = Pki::new();
    let arg = |flag: &str, file: &str| [flag.to_string(), pki.path(file).display().to_string()];
    let mut flags: Vec<String> = Vec::new();
    flags.extend(arg("--cert-file", "server.crt"));
    flags.extend(arg("--key-file", "server.key"));
    flags.extend(arg("--trusted-ca-file", "ca.crt"));
    flags.push("--client-cert-auth".into());
    let Some(e) = start_with(&flags, "https") else { return Ok(()) };
    let tls = store::EtcdTls {
        ca_file: Some(pki.path("ca.crt")),
        cert_file: Some(pki.path("client.crt")),
        key_file: Some(pki.path("client.key")),
    };
    let opts = EtcdOptions { endpoints: vec![url(&e)], prefix: "/rkube".into(), tls: Some(tls.clone()) };
    let s = EtcdStore::connect(opts.clone()).await?;
    suite::crud_and_conflicts(&s).await?;

    let no_client = store::EtcdTls { cert_file: None, key_file: None, ..tls.clone() };
    let err = match EtcdStore::connect(EtcdOptions { tls: Some(no_client), ..opts.clone() }).await {
        Ok(_) => panic!("etcd accepted a client without a certificate"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&url(&e)), "{err}");
    let half = store::EtcdTls { key_file: None, ..tls };
    let err = match EtcdStore::connect(EtcdOptions { tls: Some(half), ..opts }).await {
        Ok(_) => panic!("a certificate without its key was taken"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("give both or neither"), "{err}");
    Ok(())
}
