//! End-to-end tests of the API server with the real kubectl v1.33 (issue 2):
//! the lesson's manifests, tables, apply, patch, scale, delete with garbage
//! collection, watch, and upstream's error texts. Needs only loopback.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};
use testkit::{manifest, TestServer};

fn server() -> TestServer {
    TestServer::start(env!("CARGO_BIN_EXE_rkube")).expect("rkube server starts")
}

fn columns(table: &str) -> Vec<String> {
    table.lines().next().unwrap_or_default().split_whitespace().map(String::from).collect()
}

/// The row of `name` split on runs of 2+ spaces (columns may contain one space).
fn row(table: &str, name: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"));
    line.split("  ").map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

#[test]
fn lesson_manifests_create_and_print_like_a_real_cluster() {
    let s = server();
    let k = s.kubectl();
    for f in [
        "mynapp-svc.yml",
        "mynapp-rs.yml",
        "mynapp-svc-session-affinity.yml",
        "mynapp-svc-multiport.yml",
        "mynapp-svc-ext-nodeport.yml",
        "mynapp-svc-ext-loadbalancer.yml",
        "mynapp-svc-ext-extname.yml",
    ] {
        let out = k.ok(["create", "-f", manifest(f).to_str().unwrap()]);
        assert!(out.contains("created"), "{f}: {out}");
    }
    let svc = k.ok(["get", "svc"]);
    assert_eq!(columns(&svc), ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    let kubernetes = row(&svc, "kubernetes");
    assert_eq!(&kubernetes[1..5], ["ClusterIP", "10.96.0.1", "<none>", "443/TCP"]);
    let r = row(&svc, "mynapp-svc");
    assert_eq!(r[1], "ClusterIP");
    assert!(r[2].starts_with("10."), "{r:?}");
    assert_eq!(&r[3..5], ["<none>", "80/TCP"]);
    assert_eq!(&row(&svc, "mynapp-svc-mp")[3..5], ["<none>", "80/TCP,443/TCP"]);
    let np = row(&svc, "mynapp-svc-ext-np");
    assert_eq!((np[1].as_str(), np[4].as_str()), ("NodePort", "80:31111/TCP"));
    let lb = row(&svc, "mynapp-svc-ext-lb");
    assert_eq!((lb[1].as_str(), lb[3].as_str()), ("LoadBalancer", "<pending>"));
    assert!(lb[4].starts_with("80:3") && lb[4].ends_with("/TCP"), "{lb:?}");
    let ext = row(&svc, "mynapp-svc-extname-gl");
    assert_eq!(&ext[1..4], ["ExternalName", "<none>", "www.google.com"]);

    let wide = k.ok(["get", "svc", "mynapp-svc", "-o", "wide"]);
    assert_eq!(columns(&wide).last().map(String::as_str), Some("SELECTOR"));
    assert!(wide.contains("app=mynapp-rs"), "{wide}");

    let rs = k.ok(["get", "rs"]);
    assert_eq!(columns(&rs), ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    assert_eq!(row(&rs, "mynapp-rs")[1], "3");

    let ep = k.ok(["get", "endpoints", "kubernetes"]);
    assert_eq!(columns(&ep), ["NAME", "ENDPOINTS", "AGE"]);
    assert!(row(&ep, "kubernetes")[1].starts_with("127.0.0.1:"), "{ep}");

    let ns = k.ok(["get", "ns"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert_eq!(row(&ns, n)[1], "Active", "{ns}");
    }

    let yaml = k.ok(["get", "svc", "mynapp-svc-ses-aff", "-o", "yaml"]);
    assert!(yaml.contains("sessionAffinity: ClientIP"), "{yaml}");
    assert!(yaml.contains("timeoutSeconds: 10800"), "{yaml}");
    let json: serde_json::Value = serde_json::from_str(&k.ok(["get", "svc", "mynapp-svc", "-o", "json"])).unwrap();
    assert_eq!(json["spec"]["ports"][0]["targetPort"], 8080);
    assert!(json["metadata"]["uid"].is_string() && json["metadata"]["resourceVersion"].is_string());

    // Creating the same object again is a conflict with upstream's text.
    let err = k.fail(["create", "-f", manifest("mynapp-svc.yml").to_str().unwrap()]);
    assert!(
        err.contains("Error from server (AlreadyExists)") && err.contains("services \"mynapp-svc\" already exists"),
        "{err}"
    );
}

#[test]
fn apply_twice_is_unchanged_and_patches_work() {
    let s = server();
    let k = s.kubectl();
    let f = manifest("mynapp-svc-multiport.yml");
    let f = f.to_str().unwrap();
    assert!(k.ok(["apply", "-f", f]).contains("service/mynapp-svc-mp created"));
    let second = k.ok(["apply", "-f", f]);
    assert!(second.contains("service/mynapp-svc-mp unchanged"), "{second}");
    let ip_before = k.ok(["get", "svc", "mynapp-svc-mp", "-o", "jsonpath={.spec.clusterIP}"]);

    // An apply that changes a port goes through strategic merge patch.
    let changed = std::fs::read_to_string(f).unwrap().replace("port: 443", "port: 8443");
    let out = k.ok_with_stdin(["apply", "-f", "-"], &changed);
    assert!(out.contains("configured"), "{out}");
    let ports = k.ok(["get", "svc", "mynapp-svc-mp", "-o", "jsonpath={.spec.ports[*].port}"]);
    assert_eq!(ports, "80 8443");
    assert_eq!(k.ok(["get", "svc", "mynapp-svc-mp", "-o", "jsonpath={.spec.clusterIP}"]), ip_before);

    k.ok(["patch", "svc", "mynapp-svc-mp", "--type", "merge", "-p", r#"{"metadata":{"labels":{"tier":"web"}}}"#]);
    k.ok([
        "patch",
        "svc",
        "mynapp-svc-mp",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/env","value":"test"}]"#,
    ]);
    k.ok([
        "patch",
        "svc",
        "mynapp-svc-mp",
        "-p",
        r#"{"spec":{"ports":[{"name":"mynapp-http","port":80,"targetPort":9090}]}}"#,
    ]);
    let labels = k.ok(["get", "svc", "mynapp-svc-mp", "-o", "jsonpath={.metadata.labels}"]);
    assert!(labels.contains("\"tier\":\"web\"") && labels.contains("\"env\":\"test\""), "{labels}");
    let targets = k.ok(["get", "svc", "mynapp-svc-mp", "-o", "jsonpath={.spec.ports[*].targetPort}"]);
    assert_eq!(targets, "9090 8443", "strategic merge keeps the other port");
}

#[test]
fn scale_delete_and_garbage_collection() {
    let s = server();
    let k = s.kubectl();
    k.ok(["create", "-f", manifest("mynapp-rs.yml").to_str().unwrap()]);
    let out = k.ok(["scale", "rs", "mynapp-rs", "--replicas=5"]);
    assert!(out.contains("replicaset.apps/mynapp-rs scaled"), "{out}");
    assert_eq!(k.ok(["get", "rs", "mynapp-rs", "-o", "jsonpath={.spec.replicas}"]), "5");
    let generation = k.ok(["get", "rs", "mynapp-rs", "-o", "jsonpath={.metadata.generation}"]);
    assert_eq!(generation, "2", "a spec change bumps the generation");

    // The pods the ReplicaSet controller made go away with it (background GC).
    wait_for("the ReplicaSet's 5 pods", Duration::from_secs(20), || {
        k.ok(["get", "pods", "-l", "app=mynapp-rs", "-o", "name"]).lines().count() == 5
    });
    let out = k.ok(["delete", "rs", "mynapp-rs"]);
    assert!(out.contains("replicaset.apps \"mynapp-rs\" deleted"), "{out}");
    wait_for("the owned pods to be collected", Duration::from_secs(20), || {
        k.ok(["get", "pods", "-l", "app=mynapp-rs", "-o", "name"]).trim().is_empty()
    });

    // Any owner works; orphan propagation keeps the dependent and drops its
    // ownerReference. (A ConfigMap owner: no controller competes for the pod.)
    let owner = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owner\n";
    let pod = |uid: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: owned\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: owner\n    uid: {uid}\nspec:\n  containers:\n  - name: c\n    image: minjulee226/myweb\n"
        )
    };
    k.ok_with_stdin(["create", "-f", "-"], owner);
    let uid = k.ok(["get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"]);
    k.ok_with_stdin(["create", "-f", "-"], &pod(&uid));
    k.ok(["delete", "cm", "owner"]);
    wait_for("the owned pod to be collected", Duration::from_secs(20), || !k.run(["get", "pod", "owned"]).success());
    let err = k.fail(["get", "pod", "owned"]);
    assert!(err.contains("Error from server (NotFound): pods \"owned\" not found"), "{err}");

    k.ok_with_stdin(["create", "-f", "-"], owner);
    let uid = k.ok(["get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"]);
    k.ok_with_stdin(["create", "-f", "-"], &pod(&uid));
    k.ok(["delete", "cm", "owner", "--cascade=orphan"]);
    wait_for("the orphaned pod to lose its owner", Duration::from_secs(20), || {
        k.ok(["get", "pod", "owned", "-o", "jsonpath={.metadata.ownerReferences}"]).is_empty()
    });
    assert!(!k.run(["get", "cm", "owner"]).success());
}

#[test]
fn watch_sees_changes_made_by_another_command() {
    let s = server();
    let k = s.kubectl();
    let mut child = k.spawn(["get", "svc", "-w", "--output-watch-events"]);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The initial list arrives first.
    let first = rx.recv_timeout(Duration::from_secs(20)).expect("watch header");
    assert!(first.contains("NAME"), "{first}");
    k.ok(["create", "-f", manifest("mynapp-svc.yml").to_str().unwrap()]);
    k.ok(["delete", "svc", "mynapp-svc"]);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline
        && !seen.iter().any(|l: &String| l.starts_with("DELETED") && l.contains("mynapp-svc"))
    {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.iter().any(|l| l.starts_with("ADDED") && l.contains("mynapp-svc")), "{seen:?}");
    assert!(seen.iter().any(|l| l.starts_with("DELETED") && l.contains("mynapp-svc")), "{seen:?}");
}

#[test]
fn delete_wait_returns_once_the_object_is_gone() {
    let s = server();
    let k = s.kubectl();
    k.ok_with_stdin(["create", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c1\ndata:\n  a: b\n");
    let t = Instant::now();
    let out = k.ok(["delete", "configmap", "c1", "--wait=true"]);
    assert!(out.contains("configmap \"c1\" deleted"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(!k.run(["get", "cm", "c1"]).success());
}

#[test]
fn errors_read_like_upstream() {
    let s = server();
    let k = s.kubectl();
    let err = k.fail(["get", "svc", "nope"]);
    assert!(err.contains("Error from server (NotFound): services \"nope\" not found"), "{err}");

    let unknown = "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  foo: 1\n  ports:\n  - port: 80\n";
    let err = k.run_with_stdin(["create", "-f", "-"], unknown);
    assert!(!err.success());
    assert!(err.stderr.contains("strict decoding error: unknown field \"spec.foo\""), "{}", err.stderr);

    let malformed = "apiVersion: v1\nkind: Service\nmetadata: [\n";
    let err = k.run_with_stdin(["create", "-f", "-"], malformed);
    assert!(!err.success());
    assert!(
        err.stderr.contains("error converting YAML to JSON") || err.stderr.contains("error parsing"),
        "{}",
        err.stderr
    );

    let unnamed = std::fs::read_to_string(manifest("mynapp-svc-multiport.yml"))
        .unwrap()
        .replace("   - name: mynapp-https\n", "   -\n");
    let err = k.run_with_stdin(["create", "-f", "-"], &unnamed);
    assert!(
        err.stderr.contains("The Service \"mynapp-svc-mp\" is invalid: spec.ports[1].name: Required value"),
        "{}",
        err.stderr
    );

    let err = k.run(["--token", "wrong", "get", "svc"]);
    assert!(!err.success());
    assert!(err.stderr.contains("Unauthorized"), "{}", err.stderr);
}

/// A user's certificate through the CSR API: `kubectl certificate approve|deny`,
/// the signer issues it, and the API server authenticates its CN and O (and,
/// without RBAC yet, forbids a user outside `system:masters`).
#[test]
fn certificate_signing_requests_issue_user_certificates() {
    use base64::Engine;
    let s = server();
    let k = s.kubectl();
    let csr = |name: &str, request: &str| {
        format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {}\n  signerName: kubernetes.io/kube-apiserver-client\n  expirationSeconds: 3600\n  usages: [client auth]\n",
            base64::engine::general_purpose::STANDARD.encode(request)
        )
    };
    let (request, key) = pki::client_request("jane", &["devs"]).expect("request");
    k.ok_with_stdin(["create", "-f", "-"], &csr("jane", &request));
    let table = k.ok(["get", "csr"]);
    assert_eq!(columns(&table), ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]);
    assert_eq!(&row(&table, "jane")[2..], ["kubernetes.io/kube-apiserver-client", "system:admin", "60m", "Pending"]);
    // The requester is the authenticated user, whatever the body claims.
    assert_eq!(
        k.ok(["get", "csr", "jane", "-o", "jsonpath={.spec.groups}"]),
        r#"["system:masters","system:authenticated"]"#
    );
    let out = k.ok(["certificate", "approve", "jane"]);
    assert!(out.contains("certificatesigningrequest.certificates.k8s.io/jane approved"), "{out}");
    wait_for("jane's certificate", Duration::from_secs(30), || {
        !k.ok(["get", "csr", "jane", "-o", "jsonpath={.status.certificate}"]).is_empty()
    });
    assert_eq!(row(&k.ok(["get", "csr"]), "jane")[5], "Approved,Issued");
    let reason = k.ok(["get", "csr", "jane", "-o", r#"jsonpath={.status.conditions[?(@.type=="Approved")].reason}"#]);
    assert_eq!(reason, "KubectlApprove");
    let cert = k.ok(["get", "csr", "jane", "-o", "jsonpath={.status.certificate}"]);
    let cert =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(cert.trim()).expect("b64")).expect("pem");
    assert_eq!(pki::subject_of_pem(&cert), Some(("jane".to_string(), vec!["devs".to_string()])));
    // jane's kubeconfig: authenticated as jane, not allowed to list pods.
    let ca = std::fs::read_to_string(s.data_dir().join("pki").join("ca.crt")).expect("ca");
    let jane_cfg = s.data_dir().join("jane.kubeconfig");
    apiserver::write_kubeconfig_cert(&jane_cfg, &s.url(), &ca, "jane", &cert, &key).expect("kubeconfig");
    let jane = testkit::Kubectl::new(jane_cfg);
    let err = jane.run(["get", "pods"]);
    assert!(
        err.stderr.contains(
            r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
        ),
        "{}",
        err.stderr
    );
    // A certificate can be approved only once it is asked for; a denied one is never issued.
    let (request, _) = pki::client_request("bob", &[]).expect("request");
    k.ok_with_stdin(["create", "-f", "-"], &csr("bob", &request));
    let out = k.ok(["certificate", "deny", "bob"]);
    assert!(out.contains("certificatesigningrequest.certificates.k8s.io/bob denied"), "{out}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(row(&k.ok(["get", "csr"]), "bob")[5], "Denied");
    // A request that is not a PEM CSR is refused.
    let bad = k.run_with_stdin(["create", "-f", "-"], &csr("bad", "garbage"));
    assert!(
        bad.stderr.contains("spec.request: Invalid value: \"<request>\": PEM block type must be CERTIFICATE REQUEST"),
        "{}",
        bad.stderr
    );
}

#[test]
fn deleting_a_namespace_deletes_its_content() {
    let s = server();
    let k = s.kubectl();
    k.ok_with_stdin(["create", "-f", "-"], "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: lesson\n");
    k.ok(["create", "-n", "lesson", "-f", manifest("mynapp-svc.yml").to_str().unwrap()]);
    k.ok(["create", "-n", "lesson", "-f", manifest("mynapp-rs.yml").to_str().unwrap()]);
    let out = k.ok(["delete", "namespace", "lesson", "--timeout=30s"]);
    assert!(out.contains("namespace \"lesson\" deleted"), "{out}");
    assert!(!k.run(["get", "ns", "lesson"]).success());
    // Objects cannot be created in a namespace that does not exist.
    let err = k.fail(["create", "-n", "lesson", "-f", manifest("mynapp-svc.yml").to_str().unwrap()]);
    assert!(err.contains("namespaces \"lesson\" not found"), "{err}");
}

#[test]
fn typed_create_commands_send_protobuf_and_work() {
    let s = server();
    let k = s.kubectl();
    assert!(k.ok(["create", "configmap", "cm1", "--from-literal=a=b"]).contains("configmap/cm1 created"));
    assert_eq!(k.ok(["get", "cm", "cm1", "-o", "jsonpath={.data.a}"]), "b");
    assert!(k.ok(["create", "secret", "generic", "s1", "--from-literal=p=secret"]).contains("secret/s1 created"));
    assert_eq!(k.ok(["get", "secret", "s1", "-o", "jsonpath={.data.p}"]), "c2VjcmV0");
    assert!(k.ok(["create", "namespace", "ns1"]).contains("namespace/ns1 created"));
    let out = k.ok(["create", "service", "nodeport", "np1", "--tcp=80:8080", "--node-port=31000"]);
    assert!(out.contains("service/np1 created"), "{out}");
    assert!(k.ok(["get", "svc", "np1", "--no-headers"]).contains("80:31000/TCP"));
    let err = k.fail(["create", "service", "nodeport", "np2", "--tcp=80:8080", "--node-port=31000"]);
    assert!(err.contains("provided port is already allocated"), "{err}");
    assert!(k
        .ok(["create", "deployment", "web", "--image=minjulee226/myweb", "--replicas=2"])
        .contains("deployment.apps/web created"));
    assert_eq!(k.ok(["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "2");
}

#[test]
fn service_account_tokens_authenticate_while_their_account_and_pod_exist() {
    let s = server();
    let k = s.kubectl();
    // Every namespace gets its `default` ServiceAccount and the CA ConfigMap.
    k.ok(["create", "namespace", "tokens"]);
    wait_for("the default ServiceAccount and kube-root-ca.crt", Duration::from_secs(30), || {
        k.run(["get", "sa", "default", "-n", "tokens"]).status.success()
            && k.run(["get", "cm", "kube-root-ca.crt", "-n", "tokens"]).status.success()
    });
    let ca = k.ok(["get", "cm", "kube-root-ca.crt", "-n", "tokens", "-o", "jsonpath={.data.ca\\.crt}"]);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    // A deleted default account comes back.
    let uid = k.ok(["get", "sa", "default", "-n", "tokens", "-o", "jsonpath={.metadata.uid}"]);
    k.ok(["delete", "sa", "default", "-n", "tokens"]);
    wait_for("the default ServiceAccount re-created", Duration::from_secs(30), || {
        let now = k.run(["get", "sa", "default", "-n", "tokens", "-o", "jsonpath={.metadata.uid}"]);
        now.status.success() && now.stdout != uid
    });

    // `kubectl create token`: a JWT that authenticates as the account, which
    // may do nothing yet (no RBAC grants it anything).
    k.ok(["create", "serviceaccount", "robot", "-n", "tokens"]);
    let token = k.ok(["create", "token", "robot", "-n", "tokens"]).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let as_robot = k.run(["--token", &token, "get", "pods", "-n", "tokens"]);
    assert!(
        as_robot.stderr.contains(
            "pods is forbidden: User \"system:serviceaccount:tokens:robot\" cannot list resource \"pods\" in API group \"\" in the namespace \"tokens\""
        ),
        "{}",
        as_robot.stderr
    );
    let short = k.run(["create", "token", "robot", "-n", "tokens", "--duration", "5m"]);
    assert!(short.stderr.contains("may not specify a duration less than 10 minutes"), "{}", short.stderr);
    let missing = k.run(["create", "token", "nobody", "-n", "tokens"]);
    assert!(missing.stderr.contains("serviceaccounts \"nobody\" not found"), "{}", missing.stderr);
    // Deleting the account invalidates its tokens, also once it is re-created.
    k.ok(["delete", "sa", "robot", "-n", "tokens"]);
    k.ok(["create", "serviceaccount", "robot", "-n", "tokens"]);
    let after = k.run(["--token", &token, "get", "pods", "-n", "tokens"]);
    assert!(after.stderr.contains("Unauthorized"), "{}", after.stderr);

    // A token bound to a pod dies with the pod.
    k.ok(["run", "holder", "-n", "tokens", "--image", "registry.k8s.io/pause", "--restart", "Never"]);
    let pod_token = k
        .ok([
            "create",
            "token",
            "default",
            "-n",
            "tokens",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "holder",
        ])
        .trim()
        .to_string();
    let bound = k.run(["--token", &pod_token, "get", "pods", "-n", "tokens"]);
    assert!(bound.stderr.contains("system:serviceaccount:tokens:default"), "{}", bound.stderr);
    let wrong = k.run([
        "create",
        "token",
        "robot",
        "-n",
        "tokens",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "holder",
    ]);
    assert!(
        wrong
            .stderr
            .contains("cannot bind token for serviceaccount \"robot\" to pod running with serviceaccount \"default\""),
        "{}",
        wrong.stderr
    );
    k.ok(["delete", "pod", "holder", "-n", "tokens", "--force", "--grace-period=0"]);
    wait_for("the holder pod gone", Duration::from_secs(30), || {
        !k.run(["get", "pod", "holder", "-n", "tokens"]).status.success()
    });
    let gone = k.run(["--token", &pod_token, "get", "pods", "-n", "tokens"]);
    assert!(gone.stderr.contains("Unauthorized"), "{}", gone.stderr);

    // The issuer's discovery document and keys.
    let oidc = k.ok(["get", "--raw", "/.well-known/openid-configuration"]);
    assert!(oidc.contains("\"issuer\":\"https://kubernetes.default.svc.cluster.local\""), "{oidc}");
    let jwks = k.ok(["get", "--raw", "/openid/v1/jwks"]);
    assert!(jwks.contains("\"alg\":\"ES256\"") && jwks.contains("\"crv\":\"P-256\""), "{jwks}");
}

#[test]
fn rbac_grants_exactly_what_bindings_say() {
    let s = server();
    let k = s.kubectl();
    // Upstream's bootstrap roles, with the aggregated ones filled in.
    let roles = k.ok(["get", "clusterroles"]);
    assert!(
        roles.lines().next().is_some_and(|h| h.starts_with("NAME") && h.trim_end().ends_with("CREATED AT")),
        "{roles}"
    );
    for name in ["cluster-admin", "admin", "edit", "view", "system:discovery", "system:coredns"] {
        assert!(roles.lines().any(|l| l.starts_with(&format!("{name} "))), "{name} in {roles}");
    }
    wait_for("view aggregated", Duration::from_secs(30), || {
        k.ok(["get", "clusterrole", "view", "-o", "jsonpath={.rules[*].resources}"]).contains("pods")
    });
    wait_for("admin aggregated from edit and view", Duration::from_secs(30), || {
        let r = k.ok(["get", "clusterrole", "admin", "-o", "jsonpath={.rules[*].resources}"]);
        r.contains("rolebindings") && r.contains("pods/exec") && r.contains("pods/log")
    });
    let binding = k.ok(["get", "clusterrolebinding", "cluster-admin", "-o", "wide"]);
    assert_eq!(columns(&binding), ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]);
    assert_eq!(row(&binding, "cluster-admin")[1], "ClusterRole/cluster-admin");
    assert_eq!(row(&binding, "cluster-admin")[3], "system:masters");

    k.ok(["create", "namespace", "team"]);
    k.ok(["create", "serviceaccount", "robot", "-n", "team"]);
    let token = k.ok(["create", "token", "robot", "-n", "team"]).trim().to_string();
    let robot = |args: &[&str]| {
        let mut a = vec!["--token", token.as_str()];
        a.extend_from_slice(args);
        k.run(a)
    };
    let denied = robot(&["get", "pods", "-n", "team"]);
    assert!(
        denied.stderr.contains("User \"system:serviceaccount:team:robot\" cannot list resource \"pods\""),
        "{}",
        denied.stderr
    );
    assert_eq!(
        k.run(["auth", "can-i", "list", "pods", "-n", "team", "--as", "system:serviceaccount:team:robot"])
            .stdout
            .trim(),
        "no"
    );

    // A RoleBinding to `view` in team: reading works there, not elsewhere, and
    // never secrets or writes.
    k.ok(["create", "rolebinding", "robot-view", "--clusterrole=view", "--serviceaccount=team:robot", "-n", "team"]);
    wait_for("the binding in force", Duration::from_secs(10), || {
        robot(&["get", "pods", "-n", "team"]).status.success()
    });
    let rb = k.ok(["get", "rolebinding", "-n", "team", "-o", "wide"]);
    assert_eq!(&row(&rb, "robot-view")[1..2], ["ClusterRole/view"]);
    assert_eq!(row(&rb, "robot-view").last().map(String::as_str), Some("team/robot"));
    assert!(!robot(&["get", "pods", "-n", "default"]).status.success(), "view is bound in team only");
    assert!(!robot(&["get", "secrets", "-n", "team"]).status.success(), "view does not read secrets");
    let write = robot(&["create", "configmap", "x", "-n", "team"]);
    assert!(write.stderr.contains("cannot create resource \"configmaps\""), "{}", write.stderr);
    let can = |verb: &str, what: &str, ns: &str| {
        k.run(["auth", "can-i", verb, what, "-n", ns, "--as", "system:serviceaccount:team:robot"])
            .stdout
            .trim()
            .to_string()
    };
    assert_eq!(can("list", "pods", "team"), "yes");
    assert_eq!(can("watch", "deployments.apps", "team"), "yes");
    assert_eq!(can("get", "secrets", "team"), "no");
    assert_eq!(can("list", "pods", "default"), "no");
    // A Role of our own: exactly one verb on one resource name.
    k.ok([
        "create",
        "role",
        "cm-reader",
        "--verb=get",
        "--resource=configmaps",
        "--resource-name=kube-root-ca.crt",
        "-n",
        "team",
    ]);
    k.ok(["create", "rolebinding", "robot-cm", "--role=cm-reader", "--serviceaccount=team:robot", "-n", "team"]);
    wait_for("the Role in force", Duration::from_secs(10), || {
        robot(&["get", "configmap", "kube-root-ca.crt", "-n", "team"]).status.success()
    });
    // Removing the binding takes the access away.
    k.ok(["delete", "rolebinding", "robot-view", "-n", "team"]);
    wait_for("the binding gone", Duration::from_secs(10), || !robot(&["get", "pods", "-n", "team"]).status.success());
    assert!(!robot(&["get", "configmaps", "-n", "team"]).status.success(), "a list is not the named get");
    assert!(robot(&["get", "configmap", "kube-root-ca.crt", "-n", "team"]).status.success());
    assert_eq!(k.ok(["auth", "can-i", "delete", "nodes"]).trim(), "yes", "the admin may do anything");
    // Escalation prevention: with the right to write Roles and bindings in team, the
    // robot grants what it holds (reading that configmap), not more; the `bind`
    // verb on a role lets it bind that role anyway.
    k.ok([
        "create",
        "role",
        "rbac-writer",
        "--verb=create,update,patch",
        "--resource=roles,rolebindings",
        "-n",
        "team",
    ]);
    k.ok(["create", "rolebinding", "robot-rbac", "--role=rbac-writer", "--serviceaccount=team:robot", "-n", "team"]);
    wait_for("the rbac-writer Role in force", Duration::from_secs(10), || {
        k.run(["auth", "can-i", "create", "roles", "-n", "team", "--as", "system:serviceaccount:team:robot"])
            .stdout
            .trim()
            == "yes"
    });
    let held = [
        "create",
        "role",
        "own",
        "--verb=get",
        "--resource=configmaps",
        "--resource-name=kube-root-ca.crt",
        "-n",
        "team",
    ];
    let out = robot(&held);
    assert!(out.status.success(), "{}", out.stderr);
    let more = robot(&["create", "role", "more", "--verb=get", "--resource=secrets", "-n", "team"]);
    assert!(
        more.stderr.contains(
            "roles.rbac.authorization.k8s.io \"more\" is forbidden: user \"system:serviceaccount:team:robot\" (groups=["
        ) && more.stderr.contains(
            "is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
        ),
        "{}",
        more.stderr
    );
    let bind_admin =
        ["create", "rolebinding", "self-admin", "--clusterrole=admin", "--serviceaccount=team:robot", "-n", "team"];
    let denied = robot(&bind_admin);
    assert!(denied.stderr.contains("is attempting to grant RBAC permissions not currently held"), "{}", denied.stderr);
    k.ok([
        "create",
        "role",
        "admin-binder",
        "--verb=bind",
        "--resource=clusterroles",
        "--resource-name=admin",
        "-n",
        "team",
    ]);
    k.ok(["create", "rolebinding", "robot-binds", "--role=admin-binder", "--serviceaccount=team:robot", "-n", "team"]);
    wait_for("binding admin with the bind verb", Duration::from_secs(10), || robot(&bind_admin).status.success());
    let whoami = robot(&["auth", "whoami"]);
    assert!(whoami.stdout.contains("system:serviceaccount:team:robot"), "{}{}", whoami.stdout, whoami.stderr);
}
