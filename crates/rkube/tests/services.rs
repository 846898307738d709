//! Service API semantics with the real kubectl and kube-rs (issue 3):
//! allocation, defaults, validation messages, type changes, `kubectl expose`.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use kube::api::{Api, PostParams};
use std::collections::HashSet;
use testkit::{manifest, TestServer};

fn server() -> TestServer {
    TestServer::start(env!("CARGO_BIN_EXE_rkube")).expect("rkube server starts")
}

fn np_service(name: &str, node_port: u32) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: NodePort\n  selector:\n    app: x\n  ports:\n  - port: 80\n    targetPort: 8080\n    nodePort: {node_port}\n")
}

fn get(k: &testkit::Kubectl, name: &str, path: &str) -> String {
    k.ok(["get", "svc", name, "-o", &format!("jsonpath={path}")])
}

#[test]
fn node_ports_are_allocated_checked_and_freed() {
    let s = server();
    let k = s.kubectl();
    k.ok(["create", "-f", manifest("mynapp-svc-ext-nodeport.yml").to_str().unwrap()]);
    assert_eq!(get(&k, "mynapp-svc-ext-np", "{.spec.ports[0].nodePort}"), "31111");
    assert_eq!(get(&k, "mynapp-svc-ext-np", "{.spec.externalTrafficPolicy}"), "Cluster");

    let err = k.run_with_stdin(["create", "-f", "-"], &np_service("second", 31111));
    assert!(
        err.stderr.contains("The Service \"second\" is invalid: spec.ports[0].nodePort: Invalid value: 31111: provided port is already allocated"),
        "{}",
        err.stderr
    );
    let err = k.run_with_stdin(["create", "-f", "-"], &np_service("low", 29999));
    assert!(
        err.stderr.contains("spec.ports[0].nodePort: Invalid value: 29999: provided port is not in the valid range. The range of valid ports is 30000-32767"),
        "{}",
        err.stderr
    );
    k.ok(["delete", "svc", "mynapp-svc-ext-np"]);
    k.ok_with_stdin(["create", "-f", "-"], &np_service("second", 31111));
    assert_eq!(get(&k, "second", "{.spec.ports[0].nodePort}"), "31111");
}

#[test]
fn defaults_and_cluster_ip_rules() {
    let s = server();
    let k = s.kubectl();
    k.ok(["create", "-f", manifest("mynapp-svc.yml").to_str().unwrap()]);
    let spec: serde_json::Value =
        serde_json::from_str(&k.ok(["get", "svc", "mynapp-svc", "-o", "jsonpath={.spec}"])).unwrap();
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert_eq!(spec["ipFamilies"], serde_json::json!(["IPv4"]));
    assert_eq!(spec["ports"][0]["protocol"], "TCP");
    assert_eq!(spec["clusterIPs"], serde_json::json!([spec["clusterIP"]]));

    // A requested IP is honoured; a taken or out-of-range one is refused.
    let fixed = "apiVersion: v1\nkind: Service\nmetadata:\n  name: fixed\nspec:\n  clusterIP: 10.96.0.50\n  ports:\n  - port: 80\n";
    k.ok_with_stdin(["create", "-f", "-"], fixed);
    assert_eq!(get(&k, "fixed", "{.spec.clusterIP}"), "10.96.0.50");
    let err = k.run_with_stdin(["create", "-f", "-"], &fixed.replace("name: fixed", "name: fixed2"));
    assert!(err.stderr.contains("provided IP is already allocated"), "{}", err.stderr);
    let err = k.run_with_stdin(
        ["create", "-f", "-"],
        &fixed.replace("name: fixed", "name: far").replace("10.96.0.50", "192.168.9.9"),
    );
    assert!(
        err.stderr.contains("The Service \"far\" is invalid") && err.stderr.contains("192.168.9.9"),
        "{}",
        err.stderr
    );
    // The ClusterIP is immutable.
    let err = k.run([
        "patch",
        "svc",
        "fixed",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"clusterIP":"10.96.0.51","clusterIPs":["10.96.0.51"]}}"#,
    ]);
    assert!(err.stderr.contains("may not change once set"), "{}", err.stderr);
    // Headless.
    let headless = "apiVersion: v1\nkind: Service\nmetadata:\n  name: hl\nspec:\n  clusterIP: None\n  selector:\n    app: x\n  ports:\n  - port: 80\n";
    k.ok_with_stdin(["create", "-f", "-"], headless);
    let row = k.ok(["get", "svc", "hl", "--no-headers"]);
    assert!(row.split_whitespace().nth(2) == Some("None"), "{row}");
    // Session affinity defaults its timeout.
    k.ok(["create", "-f", manifest("mynapp-svc-session-affinity.yml").to_str().unwrap()]);
    assert_eq!(get(&k, "mynapp-svc-ses-aff", "{.spec.sessionAffinityConfig.clientIP.timeoutSeconds}"), "10800");
    let bad = std::fs::read_to_string(manifest("mynapp-svc-session-affinity.yml"))
        .unwrap()
        .replace("name: mynapp-svc-ses-aff", "name: aff2")
        .replace("sessionAffinity: ClientIP", "sessionAffinity: Sticky");
    let err = k.run_with_stdin(["create", "-f", "-"], &bad);
    assert!(
        err.stderr
            .contains("spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\""),
        "{}",
        err.stderr
    );
}

#[test]
fn type_changes_allocate_and_release() {
    let s = server();
    let k = s.kubectl();
    k.ok(["create", "-f", manifest("mynapp-svc.yml").to_str().unwrap()]);
    let ip = get(&k, "mynapp-svc", "{.spec.clusterIP}");
    k.ok(["patch", "svc", "mynapp-svc", "-p", r#"{"spec":{"type":"NodePort"}}"#]);
    let np = get(&k, "mynapp-svc", "{.spec.ports[0].nodePort}");
    assert!(np.parse::<u16>().is_ok_and(|p| (30000..=32767).contains(&p)), "{np}");
    assert_eq!(get(&k, "mynapp-svc", "{.spec.clusterIP}"), ip);
    k.ok(["patch", "svc", "mynapp-svc", "-p", r#"{"spec":{"type":"LoadBalancer"}}"#]);
    assert_eq!(get(&k, "mynapp-svc", "{.spec.ports[0].nodePort}"), np, "the node port is kept");
    let row = k.ok(["get", "svc", "mynapp-svc", "--no-headers"]);
    assert!(row.contains("<pending>"), "{row}");
    k.ok(["patch", "svc", "mynapp-svc", "-p", r#"{"spec":{"type":"ExternalName","externalName":"example.com"}}"#]);
    assert_eq!(get(&k, "mynapp-svc", "{.spec.clusterIP}"), "");
    assert_eq!(get(&k, "mynapp-svc", "{.spec.ports[0].nodePort}"), "");
    // The freed port and IP are free again.
    k.ok_with_stdin(["create", "-f", "-"], &np_service("reuse", np.parse().unwrap()));
    let reuse_ip = format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: reuse-ip\nspec:\n  clusterIP: {ip}\n  ports:\n  - port: 80\n");
    k.ok_with_stdin(["create", "-f", "-"], &reuse_ip);
    // ExternalName -> ClusterIP gets a new IP.
    k.ok([
        "patch",
        "svc",
        "mynapp-svc",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"type":"ClusterIP","externalName":null}}"#,
    ]);
    let new_ip = get(&k, "mynapp-svc", "{.spec.clusterIP}");
    assert!(new_ip.starts_with("10.") && new_ip != ip, "{new_ip}");
    // NodePort -> ExternalName releases both.
    k.ok(["patch", "svc", "reuse", "-p", r#"{"spec":{"type":"ExternalName","externalName":"example.com"}}"#]);
    k.ok_with_stdin(["create", "-f", "-"], &np_service("reuse2", np.parse().unwrap()));
}

#[test]
fn kubectl_expose_matches_the_manifest() {
    let s = server();
    let k = s.kubectl();
    k.ok(["create", "-f", manifest("mynapp-rs.yml").to_str().unwrap()]);
    let out = k.ok(["expose", "rs", "mynapp-rs", "--name", "mynapp-svc", "--port", "80", "--target-port", "8080"]);
    assert!(out.contains("service/mynapp-svc exposed"), "{out}");
    let exposed: serde_json::Value = serde_json::from_str(&k.ok(["get", "svc", "mynapp-svc", "-o", "json"])).unwrap();
    k.ok_with_stdin(
        ["create", "-f", "-"],
        &std::fs::read_to_string(manifest("mynapp-svc.yml")).unwrap().replace("name: mynapp-svc", "name: from-file"),
    );
    let from_file: serde_json::Value = serde_json::from_str(&k.ok(["get", "svc", "from-file", "-o", "json"])).unwrap();
    for f in ["type", "selector", "sessionAffinity", "internalTrafficPolicy", "ipFamilyPolicy"] {
        assert_eq!(exposed["spec"][f], from_file["spec"][f], "{f}");
    }
    assert_eq!(exposed["spec"]["ports"][0]["port"], 80);
    assert_eq!(exposed["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(exposed["spec"]["ports"][0]["protocol"], "TCP");
    let out = k.ok([
        "expose",
        "rs",
        "mynapp-rs",
        "--name",
        "np",
        "--port",
        "80",
        "--target-port",
        "8080",
        "--type",
        "NodePort",
    ]);
    assert!(out.contains("exposed"), "{out}");
    assert!(k.ok(["get", "svc", "np", "--no-headers"]).contains("80:3"));
    k.ok([
        "expose",
        "rs",
        "mynapp-rs",
        "--name",
        "lb",
        "--port",
        "80",
        "--target-port",
        "8080",
        "--type",
        "LoadBalancer",
    ]);
    assert!(k.ok(["get", "svc", "lb", "--no-headers"]).contains("<pending>"));
    k.ok(["expose", "svc", "lb", "--name", "again", "--port", "81"]);
    assert_eq!(k.ok(["get", "svc", "again", "-o", "jsonpath={.spec.selector.app}"]), "mynapp-rs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_get_distinct_ips_and_survive_restart() {
    let mut s = server();
    let client = controllers::client_from_kubeconfig(&s.kubeconfig_path()).await.expect("client");
    let api: Api<Service> = Api::namespaced(client, "default");
    let svc = |i: usize| Service {
        metadata: kube::api::ObjectMeta { name: Some(format!("c{i}")), ..Default::default() },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort { port: 80, ..Default::default() }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created: Vec<Service> = futures::stream::iter(0..1000)
        .map(|i| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &svc(i)).await.expect("create") }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let ips: HashSet<String> = created.iter().filter_map(|s| s.spec.as_ref()?.cluster_ip.clone()).collect();
    assert_eq!(ips.len(), 1000, "1,000 Services get 1,000 distinct ClusterIPs");
    assert!(!ips.contains("10.96.0.1"), "the kubernetes Service's IP is never handed out again");

    s.restart().expect("restart");
    let client = controllers::client_from_kubeconfig(&s.kubeconfig_path()).await.expect("client");
    let api: Api<Service> = Api::namespaced(client, "default");
    let after: HashSet<String> = api
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .iter()
        .filter(|s| s.metadata.name.as_deref() != Some("kubernetes"))
        .filter_map(|s| s.spec.as_ref()?.cluster_ip.clone())
        .collect();
    assert_eq!(after, ips, "no IP changed across the restart");
    // New Services after the restart never collide with the restored ones.
    for i in 1000..1100 {
        let created = api.create(&PostParams::default(), &svc(i)).await.expect("create");
        let ip = created.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
        assert!(!ips.contains(&ip), "{ip} handed out twice");
    }
}
