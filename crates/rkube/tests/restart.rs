//! Restarts (issue 2): every acknowledged object survives a clean stop and a
//! `kill -9` in the middle of writes; IPs and ports stay where they were.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use testkit::{manifest, TestServer};

#[test]
fn objects_survive_kill_9_mid_writes() {
    let mut s = TestServer::start(env!("CARGO_BIN_EXE_rkube")).expect("server");
    let k = s.kubectl();
    k.ok(["create", "-f", manifest("mynapp-svc-ext-nodeport.yml").to_str().unwrap()]);
    k.ok(["create", "-f", manifest("mynapp-svc.yml").to_str().unwrap()]);
    let svc_before = k.ok([
        "get",
        "svc",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.spec.clusterIP}:{.spec.ports[0].nodePort};{end}",
    ]);

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
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
                    Ok(_) => acked.lock().unwrap().push(format!("w{i}")),
                    Err(_) => break,
                }
            }
        })
    };
    // Let some writes land, then kill the server mid-stream.
    while acked.lock().unwrap().len() < 200 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    s.kill9().expect("kill -9");
    rt.block_on(async {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), writer).await;
    });
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200);

    s.restart().expect("restart");
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
    let k = s.kubectl();
    let svc_after = k.ok([
        "get",
        "svc",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.spec.clusterIP}:{.spec.ports[0].nodePort};{end}",
    ]);
    assert_eq!(svc_before, svc_after, "ClusterIPs and NodePorts are unchanged by the restart");
    // The restored allocator does not hand out a taken port again.
    let again = "apiVersion: v1\nkind: Service\nmetadata:\n  name: again\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 31111\n";
    let err = k.run_with_stdin(["create", "-f", "-"], again);
    assert!(
        err.stderr.contains("spec.ports[0].nodePort: Invalid value: 31111: provided port is already allocated"),
        "{}",
        err.stderr
    );

    // A clean stop (SIGTERM) keeps everything too.
    let status = s.stop().expect("stop");
    assert!(status.success(), "SIGTERM stops the server cleanly: {status:?}\n{}", s.logs_tail(20));
    s.restart().expect("restart");
    assert!(s.kubectl().ok(["get", "cm", "w0", "-o", "name"]).contains("configmap/w0"));
}
