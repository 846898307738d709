//! `rkube server --datastore etcd://...` (issue 14) on a real 3-member etcd
//! (Debian's `etcd-server`, members on loopback ports): the API works as on
//! SQLite and keeps its objects in etcd under `--etcd-prefix`; a `kill -9`
//! of the server mid-writes loses no acknowledged write; one lost member
//! changes nothing; a lost quorum makes writes fail with a 503 Status within
//! the request timeout (no hang), and writes work again, without a restart,
//! once quorum is back; a compacted resourceVersion is 410 Gone; an etcd
//! that cannot be reached at start is a clear error naming the endpoints.
//!
//! One etcd cluster and one server for the whole file: each is a few seconds
//! to start, and the checks run in order against them.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::etcd::{EtcdCluster, Placement};
use testkit::{manifest, Error, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_rkube");

fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
}

/// The keys under `prefix` in etcd, read through etcd's JSON gateway (`/v3/kv/range`).
fn etcd_keys(endpoint: &str, prefix: &str) -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let body = serde_json::json!({"key": b64.encode(prefix), "range_end": b64.encode(&end), "keys_only": true});
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5", "-X", "POST", &format!("{endpoint}/v3/kv/range"), "-d", &body.to_string()])
        .output()
        .expect("curl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("etcd's range answer is JSON");
    let keys = v["kvs"].as_array().cloned().unwrap_or_default();
    keys.iter()
        .filter_map(|kv| kv["key"].as_str())
        .filter_map(|k| b64.decode(k).ok())
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .collect()
}

#[test]
fn rkube_server_on_etcd() {
    if testkit::etcd::etcd_binary().is_none() {
        testkit::skip("etcd is not installed (scripts/install-prereqs.sh installs etcd-server)");
        return;
    }

    // etcd that cannot be reached at start: a clear error naming the endpoints.
    let nowhere = format!("127.0.0.1:{}", testkit::free_port().expect("port"));
    let t = Instant::now();
    match TestServer::start_with_args(BIN, &["--datastore", &format!("etcd://{nowhere}")]) {
        Err(Error::Exited { logs, .. }) => {
            assert!(logs.contains(&format!("http://{nowhere}")) && logs.contains("cannot be reached"), "{logs}")
        }
        Ok(_) => panic!("rkube server started on an etcd that is not there"),
        Err(e) => panic!("unexpected: {e}"),
    }
    assert!(t.elapsed() < Duration::from_secs(30), "the error took {:?}", t.elapsed());

    let mut etcd =
        EtcdCluster::start(&[Placement::Loopback, Placement::Loopback, Placement::Loopback]).expect("3-member etcd");
    let datastore = etcd.datastore();
    let mut s = TestServer::start_with_args(
        BIN,
        &["--datastore", &datastore, "--etcd-prefix", "/lab", "--compaction-interval", "2s"],
    )
    .expect("rkube server on etcd");
    let k = s.kubectl();

    // The lesson's Services get their ClusterIPs and NodePorts; the objects are in etcd.
    k.ok(["create", "-f", manifest("mynapp-svc-ext-nodeport.yml").to_str().unwrap()]);
    k.ok(["create", "-f", manifest("mynapp-svc.yml").to_str().unwrap()]);
    let svcs = k.ok([
        "get",
        "svc",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.spec.clusterIP}:{.spec.ports[0].nodePort};{end}",
    ]);
    assert!(svcs.contains("mynapp-svc-ext-np=10.") && svcs.contains(":31111;"), "{svcs}");
    let keys = etcd_keys(&etcd.endpoints()[0], "/lab/");
    assert!(keys.iter().any(|k| k == "/lab/registry/core/services/default/mynapp-svc"), "{keys:?}");
    assert!(!s.data_dir().join("state.db").exists(), "no SQLite file next to an etcd datastore");

    // kill -9 of the server in the middle of writes: every acknowledged write is there.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let kubeconfig = s.kubeconfig_path();
    let writer = {
        let acked = acked.clone();
        rt.spawn(async move {
            let client = controllers::client_from_kubeconfig(&kubeconfig).await.expect("client");
            let api: Api<ConfigMap> = Api::namespaced(client, "default");
            for i in 0.. {
                let c = ConfigMap {
                    metadata: kube::api::ObjectMeta { name: Some(format!("w{i}")), ..Default::default() },
                    data: Some(BTreeMap::from([("i".to_string(), i.to_string())])),
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &c).await {
                    Ok(_) => acked.lock().expect("lock").push(format!("w{i}")),
                    Err(_) => break,
                }
            }
        })
    };
    while acked.lock().expect("lock").len() < 100 {
        std::thread::sleep(Duration::from_millis(10));
    }
    s.kill9().expect("kill -9");
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    });
    let acked = acked.lock().expect("lock").clone();
    s.restart().expect("restart on etcd");
    let kubeconfig = s.kubeconfig_path();
    let stored: Vec<String> = rt.block_on(async move {
        let client = controllers::client_from_kubeconfig(&kubeconfig).await.expect("client");
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        api.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect()
    });
    for name in &acked {
        assert!(stored.contains(name), "acknowledged {name} is missing after kill -9");
    }
    let after = k.ok([
        "get",
        "svc",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.spec.clusterIP}:{.spec.ports[0].nodePort};{end}",
    ]);
    assert_eq!(svcs, after, "ClusterIPs and NodePorts are unchanged by the restart");

    // A compacted resourceVersion: 410 Gone, as kube-apiserver answers.
    std::thread::sleep(Duration::from_secs(5));
    let out = k.run(["get", "--raw", "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=2"]);
    assert!(out.stdout.contains("\"code\":410") || out.stderr.contains("410"), "{out:?}");

    // The controllers' watches are served from the shared watch cache: one per resource.
    let metrics = k.ok(["get", "--raw", "/metrics"]);
    assert!(metrics.contains("apiserver_watch_cache_objects{prefix=\"/registry/core/services/\"} 3"), "{metrics}");

    // One member lost, the leader at that: writes go on (requests wait out the election).
    let leader = etcd.leader().expect("an etcd leader");
    etcd.kill(leader);
    k.ok_with_stdin(["create", "-f", "-"], &configmap("one-member-down"));
    let second = if leader == 0 { 1 } else { 0 };

    // Quorum lost: a write fails with a 503 Status within the request timeout, reads say so.
    etcd.kill(second);
    let t = Instant::now();
    let out = k.run_with_stdin(["create", "-f", "-", "--request-timeout", "60s"], &configmap("no-quorum"));
    assert!(!out.success(), "a write without quorum succeeded: {out:?}");
    assert!(out.stderr.contains("unavailable") || out.stderr.contains("ServiceUnavailable"), "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(40), "the failed write took {:?}", t.elapsed());
    let out = k.run(["get", "cm", "one-member-down", "--request-timeout", "60s"]);
    assert!(!out.success(), "a read without quorum succeeded: {out:?}");

    // Quorum back: writes work again, without restarting the server.
    etcd.restart(second).expect("a second member back");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = k.run_with_stdin(["create", "-f", "-"], &configmap("quorum-back"));
        if out.success() {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not recover: {out:?}\n{}", s.logs_tail(30));
        std::thread::sleep(Duration::from_millis(500));
    }
    etcd.restart(leader).expect("the old leader back");
    let names = k.ok(["get", "cm", "-o", "name"]);
    for n in ["one-member-down", "quorum-back"] {
        assert!(names.contains(&format!("configmap/{n}")), "{names}");
    }
    assert!(!names.contains("configmap/no-quorum\n"), "{names}");
}
