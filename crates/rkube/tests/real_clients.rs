//! Real clients against one sandboxed `rkube up` (issue 11): server-side apply
//! and field ownership (items 1, 2), OpenAPI/explain and aggregated discovery
//! (item 3), CustomResourceDefinitions (item 4), `kubectl port-forward` (item 6).
//!
//! Server-side apply: `kubectl apply --server-side`
//! creates, re-applies as a no-op, conflicts with another manager (upstream's
//! message), takes fields with `--force-conflicts`, removes fields it stopped
//! applying, shares an object with a second applier; every write records
//! `managedFields` (Update for create/patch, Apply for apply); helm 4 installs,
//! upgrades, rolls back and uninstalls a `helm create` chart with its defaults;
//! typed creates without `kind`/`apiVersion` (JSON, YAML) get them from the
//! URL. One cluster for all checks. Needs root (skips otherwise).

use serde_json::Value;
use testkit::{Kubectl, Sandbox, SandboxNode};

struct Cluster {
    server: SandboxNode,
    _sandbox: Sandbox,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        if let Some(why) = testkit::sandbox_unavailable() {
            testkit::skip(&why);
            return None;
        }
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rkube"));
        let sandbox = Sandbox::new(1).expect("sandbox");
        let server = sandbox.start_rkube(bin, 1, &["--node-name", "node1"]).expect("rkube up");
        Some(Cluster { server, _sandbox: sandbox })
    }

    fn k(&self) -> Kubectl {
        self.server.kubectl()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a: Vec<&str> = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
        serde_json::from_str(&self.k().ok(a)).expect("kubectl get -o json")
    }

    /// `manager/operation[/subresource]` of each managedFields entry.
    fn managers(&self, args: &[&str]) -> Vec<String> {
        let obj = self.json(args);
        obj.pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .map(|es| {
                es.iter()
                    .map(|e| {
                        let mut s = format!(
                            "{}/{}",
                            e["manager"].as_str().unwrap_or(""),
                            e["operation"].as_str().unwrap_or("")
                        );
                        if let Some(sub) = e["subresource"].as_str() {
                            s.push('/');
                            s.push_str(sub);
                        }
                        s
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn fields_of(&self, args: &[&str], manager: &str) -> Value {
        let obj = self.json(args);
        obj.pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .and_then(|es| es.iter().find(|e| e["manager"] == manager))
            .map(|e| e["fieldsV1"].clone())
            .unwrap_or(Value::Null)
    }
}

fn deployment(replicas: u32, extra_label: bool, env: bool) -> String {
    let label = if extra_label { "\n    tier: web" } else { "" };
    let env = if env { "\n        env:\n        - name: MODE\n          value: prod" } else { "" };
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web{label}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80{env}
"
    )
}

#[test]
fn server_side_apply_and_field_managers() {
    let Some(c) = Cluster::start() else { return };
    let k = c.k();
    let dep = ["deployment", "web"];

    // ---- kubectl create records an Update entry ----
    k.ok(["create", "configmap", "plain", "--from-literal=a=1"]);
    assert_eq!(c.managers(&["configmap", "plain"]), ["kubectl-create/Update"]);
    assert_eq!(
        c.fields_of(&["configmap", "plain"], "kubectl-create")["f:data"],
        serde_json::json!({".": {}, "f:a": {}})
    );

    // ---- apply creates; a second identical apply is a no-op ----
    let out = k.ok_with_stdin(["apply", "--server-side", "-f", "-"], &deployment(2, true, true));
    assert!(out.contains("deployment.apps/web serverside-applied"), "{out}");
    // The controllers write the new Deployment's status (and so its
    // resourceVersion) for a moment: compare once that has settled.
    let mut first = c.json(&dep);
    let mut stable_since = std::time::Instant::now();
    let settle = std::time::Instant::now();
    while stable_since.elapsed() < std::time::Duration::from_millis(1500)
        && settle.elapsed() < std::time::Duration::from_secs(30)
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = c.json(&dep);
        if now["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"] {
            first = now;
            stable_since = std::time::Instant::now();
        }
    }
    assert!(c.managers(&dep).contains(&"kubectl/Apply".to_string()), "{:?}", c.managers(&dep));
    let f = c.fields_of(&dep, "kubectl");
    assert_eq!(f["f:spec"]["f:replicas"], serde_json::json!({}));
    assert_eq!(f["f:metadata"]["f:labels"]["f:tier"], serde_json::json!({}));
    let c0 = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
    assert_eq!(c0["."], serde_json::json!({}), "{f}");
    assert!(c0["f:ports"].get("k:{\"containerPort\":80,\"protocol\":\"TCP\"}").is_some(), "{f}");
    k.ok_with_stdin(["apply", "--server-side", "-f", "-"], &deployment(2, true, true));
    let second = c.json(&dep);
    assert_eq!(
        first["metadata"]["resourceVersion"], second["metadata"]["resourceVersion"],
        "re-applying the same configuration changes nothing"
    );

    // ---- another manager takes replicas; re-applying conflicts ----
    k.ok(["patch", "deployment", "web", "--type=merge", "-p", r#"{"spec":{"replicas":3}}"#, "--field-manager=scaler"]);
    assert!(c.managers(&dep).contains(&"scaler/Update".to_string()));
    let err = k.run_with_stdin(["apply", "--server-side", "-f", "-"], &deployment(2, true, true));
    assert!(!err.success());
    assert!(
        err.stderr.contains(r#"Apply failed with 1 conflict: conflict with "scaler" using apps/v1: .spec.replicas"#),
        "{}",
        err.stderr
    );
    assert_eq!(c.json(&dep)["spec"]["replicas"], 3, "a conflicting apply writes nothing");
    // Leaving replicas out of the configuration avoids the conflict ...
    // ... and --force-conflicts takes the field back.
    k.ok_with_stdin(["apply", "--server-side", "--force-conflicts", "-f", "-"], &deployment(2, true, true));
    assert_eq!(c.json(&dep)["spec"]["replicas"], 2);
    assert!(!c.managers(&dep).contains(&"scaler/Update".to_string()), "{:?}", c.managers(&dep));

    // ---- the Scale shows and takes ownership of the replicas field ----
    let scale: Value =
        serde_json::from_str(&k.ok(["get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale"]))
            .expect("scale json");
    let owners: Vec<&Value> = scale["metadata"]["managedFields"].as_array().into_iter().flatten().collect();
    assert!(
        owners.iter().any(|e| e["manager"] == "kubectl"
            && e["operation"] == "Apply"
            && e["apiVersion"] == "autoscaling/v1"
            && e["fieldsV1"] == serde_json::json!({"f:spec": {"f:replicas": {}}})),
        "the Scale's managedFields: {scale}"
    );
    // Server-side apply to /scale takes a Scale, as upstream's field manager
    // checks (the official Python client applies one in python_client.rs).
    let err = k.run_with_stdin(
        ["apply", "--server-side", "--subresource=scale", "--field-manager=hpa", "-f", "-"],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 4\n",
    );
    assert!(err.stderr.contains("invalid object type: apps/v1, Kind=Deployment"), "{}", err.stderr);

    // ---- fields the applier stops applying are removed ----
    k.ok_with_stdin(["apply", "--server-side", "-f", "-"], &deployment(2, false, false));
    let obj = c.json(&dep);
    assert!(obj.pointer("/metadata/labels/tier").is_none(), "{}", obj["metadata"]);
    assert!(obj.pointer("/spec/template/spec/containers/0/env").is_none(), "{}", obj["spec"]["template"]);
    assert_eq!(obj["metadata"]["labels"]["app"], "web");

    // ---- a second applier owns its own fields; both stay ----
    let extra = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations:\n    team: blue\n";
    k.ok_with_stdin(["apply", "--server-side", "--field-manager=team", "-f", "-"], extra);
    k.ok_with_stdin(["apply", "--server-side", "-f", "-"], &deployment(2, false, false));
    let obj = c.json(&dep);
    assert_eq!(obj["metadata"]["annotations"]["team"], "blue");
    let managers = c.managers(&dep);
    assert!(
        managers.contains(&"team/Apply".to_string()) && managers.contains(&"kubectl/Apply".to_string()),
        "{managers:?}"
    );

    // ---- the controller's status writes are a subresource Update ----
    assert!(
        managers.iter().any(|m| m.ends_with("/Update/status")),
        "the deployment controller's status update is tracked: {managers:?}"
    );

    // ---- server dry-run and bad input ----
    let out = k.ok_with_stdin(["apply", "--server-side", "--dry-run=server", "-f", "-"], &deployment(5, false, false));
    assert!(out.contains("serverside-applied (server dry run)"), "{out}");
    assert_eq!(c.json(&dep)["spec"]["replicas"], 2);
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  bogus: 1\n";
    let err = k.run_with_stdin(["apply", "--server-side", "-f", "-"], bad);
    assert!(!err.success());
    assert!(err.stderr.contains(".spec.bogus: field not declared in schema"), "{}", err.stderr);

    // ---- kubectl apply to a Service: ports keyed by port+protocol ----
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n    targetPort: 80\n";
    k.ok_with_stdin(["apply", "--server-side", "-f", "-"], svc);
    let f = c.fields_of(&["service", "web"], "kubectl");
    assert!(f["f:spec"]["f:ports"].get("k:{\"port\":80,\"protocol\":\"TCP\"}").is_some(), "{f}");
    assert_eq!(f["f:spec"]["f:selector"], serde_json::json!({}), "selector is atomic: {f}");

    port_forward(&c);
    helm(&c);
    typed_bodies_without_kind(&c);
    explain(&c);
    aggregated_discovery(&c);
    custom_resources(&c);
    cel_rules(&c);
    suspended_job(&c);
    daemonset_history(&c);
    openapi_v2(&c);
}

/// `/openapi/v2` (Swagger 2.0 JSON) holds the built-in and custom schemas.
fn openapi_v2(c: &Cluster) {
    let doc: Value = serde_json::from_str(&c.k().ok(["get", "--raw", "/openapi/v2"])).expect("openapi v2 json");
    assert_eq!(doc["swagger"], "2.0");
    let defs = doc["definitions"].as_object().expect("definitions");
    assert!(defs.contains_key("io.k8s.api.apps.v1.Deployment"));
    assert!(defs.contains_key("com.example.v1.Widget"), "the CRD's schema is there too");
    assert!(doc["paths"].get("/apis/apps/v1/namespaces/{namespace}/deployments/{name}").is_some());
    // kubectl's v2 explain reads the protobuf document (client-go's OpenAPISchema()).
    let out = c.k().ok(["explain", "service.spec.sessionAffinity", "--output=plaintext-openapiv2"]);
    assert!(out.contains("sessionAffinity <string>") && out.contains("ClientIP"), "{out}");
    let out = c.k().ok(["explain", "deployment.spec.strategy", "--output=plaintext-openapiv2"]);
    assert!(out.contains("RESOURCE: strategy <Object>") || out.contains("strategy <Object>"), "{out}");
    let out = c.k().ok(["explain", "widget.spec.size", "--output=plaintext-openapiv2"]);
    assert!(out.contains("How big the widget is."), "the CRD's schema is in the protobuf document too: {out}");
}

/// DaemonSet rollouts leave ControllerRevisions: `kubectl rollout history`
/// lists them and `kubectl rollout undo` goes back.
fn daemonset_history(c: &Cluster) {
    let k = c.k();
    let ds = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: hist\nspec:\n  selector:\n    matchLabels: {app: hist}\n  template:\n    metadata:\n      labels: {app: hist}\n    spec:\n      containers:\n      - name: c\n        image: registry.k8s.io/pause:3.10\n";
    k.ok_with_stdin(["create", "-f", "-"], ds);
    let wait_revisions = |n: usize| {
        let start = std::time::Instant::now();
        loop {
            let out = k.ok(["get", "controllerrevisions", "-l", "app=hist", "--no-headers"]);
            if out.lines().count() == n {
                return out;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(30), "{n} revisions: {out}");
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    };
    let out = wait_revisions(1);
    assert!(out.contains("daemonset.apps/hist") && out.split_whitespace().nth(2) == Some("1"), "{out}");
    k.ok(["set", "image", "ds/hist", "c=registry.k8s.io/pause:3.9"]);
    wait_revisions(2);
    let out = k.ok(["rollout", "history", "ds/hist"]);
    let revs: Vec<&str> =
        out.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| w.parse::<u32>().is_ok()).collect();
    assert_eq!(revs, ["1", "2"], "{out}");
    let out = k.ok(["rollout", "undo", "ds/hist"]);
    assert!(out.contains("rolled back"), "{out}");
    let image = k.ok(["get", "ds", "hist", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert_eq!(image.trim(), "registry.k8s.io/pause:3.10");
    // The first template is the newest revision again.
    let start = std::time::Instant::now();
    loop {
        let out = k.ok(["rollout", "history", "ds/hist"]);
        let revs: Vec<&str> =
            out.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| w.parse::<u32>().is_ok()).collect();
        if revs == ["2", "3"] {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "{out}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    k.ok(["delete", "ds", "hist"]);
}

/// A suspended Job that never started may change its scheduling directives,
/// and Jobs are selectable by `status.successful`.
fn suspended_job(c: &Cluster) {
    let k = c.k();
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: later\nspec:\n  suspend: true\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n        command: [\"true\"]\n";
    k.ok_with_stdin(["create", "-f", "-"], job);
    k.ok([
        "patch",
        "job",
        "later",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"disk":"ssd"}}}}}"#,
    ]);
    let err = k.run([
        "patch",
        "job",
        "later",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"alpine"}]"#,
    ]);
    assert!(
        err.stderr.contains("spec.template: Invalid value") && err.stderr.contains("field is immutable"),
        "{}",
        err.stderr
    );
    let out = k.ok(["get", "jobs", "--field-selector", "status.successful=0", "-o", "name"]);
    assert!(out.contains("job.batch/later"), "{out}");
    let out = k.ok(["get", "jobs", "--field-selector", "status.successful=1", "-o", "name"]);
    assert!(!out.contains("later"), "{out}");
    k.ok(["delete", "job", "later"]);
}

const WIDGET_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wg]
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.count
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - name: Size
      type: string
      jsonPath: .spec.size
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size:
                type: string
                description: How big the widget is.
                enum: [small, large]
              replicas:
                type: integer
                minimum: 1
                maximum: 10
                default: 1
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
          status:
            type: object
            properties:
              ready:
                type: boolean
              count:
                type: integer
              selector:
                type: string
"#;

fn widget(name: &str, spec: &str) -> String {
    format!("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

/// A CRD is served at once: discovery, list/create with the schema's
/// defaults, pruning and validation, printer columns, the status
/// subresource, explain; deleting it deletes its objects.
fn custom_resources(c: &Cluster) {
    let k = c.k();
    let start = std::time::Instant::now();
    k.ok_with_stdin(["apply", "-f", "-"], WIDGET_CRD);
    k.ok(["wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s"]);
    let out = k.run(["get", "widgets"]);
    assert!(out.success(), "{}", out.stderr);
    assert!(start.elapsed() < std::time::Duration::from_secs(5), "served within {:?}", start.elapsed());

    k.ok_with_stdin(["apply", "-f", "-"], &widget("w1", "  size: small\n"));
    let w: Value = serde_json::from_str(&k.ok(["get", "widget", "w1", "-o", "json"])).expect("json");
    assert_eq!(w["spec"]["replicas"], 1, "the schema's default: {w}");
    assert_eq!(w["metadata"]["generation"], 1);
    let out = k.ok(["get", "wg"]);
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "REPLICAS", "AGE"], "{out}");
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with("w1") && l.contains("small") && l.contains(" 1 ")),
        "{out}"
    );

    // Validation with upstream's messages; nothing is written.
    let err = k.run_with_stdin(["create", "-f", "-"], &widget("bad", "  size: huge\n  replicas: 20\n"));
    assert!(!err.success());
    for line in [
        r#"The Widget "bad" is invalid: "#,
        "* spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10",
        r#"* spec.size: Unsupported value: "huge": supported values: "small", "large""#,
    ] {
        assert!(err.stderr.contains(line), "{line}\n{}", err.stderr);
    }
    let err = k.run_with_stdin(["create", "-f", "-"], &widget("bad", "  replicas: 2\n"));
    assert!(err.stderr.contains("spec.size: Required value"), "{}", err.stderr);
    // Unknown fields: refused under kubectl's strict validation, pruned otherwise.
    let err = k.run_with_stdin(["create", "-f", "-"], &widget("w2", "  size: large\n  bogus: 1\n"));
    assert!(err.stderr.contains(r#"unknown field "spec.bogus""#), "{}", err.stderr);
    k.ok_with_stdin(["create", "--validate=false", "-f", "-"], &widget("w2", "  size: large\n  bogus: 1\n"));
    let w: Value = serde_json::from_str(&k.ok(["get", "widget", "w2", "-o", "json"])).expect("json");
    assert!(w["spec"].get("bogus").is_none(), "pruned: {w}");

    // The status subresource: only /status changes status.
    k.ok(["patch", "widget", "w1", "--type=merge", "-p", r#"{"status":{"ready":true}}"#]);
    let w: Value = serde_json::from_str(&k.ok(["get", "widget", "w1", "-o", "json"])).expect("json");
    assert!(w.get("status").is_none(), "main resource ignores status: {w}");
    k.ok(["patch", "widget", "w1", "--subresource=status", "--type=merge", "-p", r#"{"status":{"ready":true}}"#]);
    let w: Value = serde_json::from_str(&k.ok(["get", "widget", "w1", "-o", "json"])).expect("json");
    assert_eq!(w["status"]["ready"], true);

    // Server-side apply works for custom objects too.
    k.ok_with_stdin(["apply", "--server-side", "-f", "-"], &widget("w3", "  size: small\n  replicas: 3\n"));
    assert_eq!(k.ok(["get", "widget", "w3", "-o", "jsonpath={.spec.replicas}"]).trim(), "3");
    // The CRD's x-kubernetes-list-type: map lets two appliers own one item each.
    k.ok_with_stdin(
        ["apply", "--server-side", "--field-manager=a", "-f", "-"],
        &widget("w3", "  size: small\n  replicas: 3\n  ports:\n  - name: a\n    port: 1\n"),
    );
    k.ok_with_stdin(
        ["apply", "--server-side", "--field-manager=b", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w3\nspec:\n  ports:\n  - name: b\n    port: 2\n",
    );
    assert_eq!(k.ok(["get", "widget", "w3", "-o", "jsonpath={.spec.ports[*].name}"]).trim(), "a b");

    // Every served version reads the same objects, as that version.
    let v = k.ok(["get", "widgets.v1beta1.example.com", "w1", "-o", "jsonpath={.apiVersion}"]);
    assert_eq!(v.trim(), "example.com/v1beta1");
    let list = k.ok(["get", "--raw", "/apis/example.com/v1beta1/namespaces/default/widgets"]);
    assert!(list.contains("\"apiVersion\":\"example.com/v1beta1\",\"kind\":\"Widget\""), "{list}");
    assert_eq!(
        k.ok(["get", "widget", "w1", "-o", "jsonpath={.apiVersion}"]).trim(),
        "example.com/v1",
        "v1 is preferred"
    );

    let out = k.ok(["explain", "widget.spec.size"]);
    assert!(out.contains("FIELD: size <string>") && out.contains("How big the widget is."), "{out}");

    // The garbage collector knows custom owners: a dependent of a live
    // widget stays, and goes with it.
    let uid = k.ok(["get", "widget", "w1", "-o", "jsonpath={.metadata.uid}"]);
    let owned = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned-by-w1\n  ownerReferences:\n  - apiVersion: example.com/v1\n    kind: Widget\n    name: w1\n    uid: {}\n",
        uid.trim()
    );
    k.ok_with_stdin(["create", "-f", "-"], &owned);
    k.ok(["create", "configmap", "gc-nudge-1"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    k.ok(["get", "configmap", "owned-by-w1"]);
    k.ok(["delete", "widget", "w1"]);
    k.ok(["create", "configmap", "gc-nudge-2"]);
    let start = std::time::Instant::now();
    while k.run(["get", "configmap", "owned-by-w1"]).success() {
        assert!(start.elapsed() < std::time::Duration::from_secs(40), "the dependent of a deleted widget is collected");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    // The scale subresource maps the CRD's paths: kubectl scale writes
    // .spec.replicas, the Scale reports .status.count and .status.selector.
    k.ok([
        "patch",
        "widget",
        "w3",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"count":3,"selector":"app=w3"}}"#,
    ]);
    k.ok(["scale", "widget", "w3", "--replicas=4"]);
    assert_eq!(k.ok(["get", "widget", "w3", "-o", "jsonpath={.spec.replicas}"]).trim(), "4");
    let scale: Value =
        serde_json::from_str(&k.ok(["get", "--raw", "/apis/example.com/v1/namespaces/default/widgets/w3/scale"]))
            .expect("json");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 4);
    assert_eq!(scale["status"], serde_json::json!({"replicas": 3, "selector": "app=w3"}), "{scale}");
    // The schema still holds through the Scale: replicas above the maximum are refused.
    let err = k.fail(["scale", "widget", "w3", "--replicas=11"]);
    assert!(err.contains("spec.replicas in body should be less than or equal to 10"), "{err}");

    // CRD updates: scope is fixed once established, and a stored version
    // cannot be dropped.
    let err = k.fail(["patch", "crd", "widgets.example.com", "--type=merge", "-p", r#"{"spec":{"scope":"Cluster"}}"#]);
    assert!(err.contains(r#"spec.scope: Invalid value: "Cluster": field is immutable"#), "{err}");
    let err = k.fail([
        "patch",
        "crd",
        "widgets.example.com",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/versions/1"},{"op":"replace","path":"/spec/versions/0/storage","value":true}]"#,
    ]);
    assert!(err.contains(r#"status.storedVersions[0]: Invalid value: "v1": must appear in spec.versions"#), "{err}");

    // Deleting the CRD deletes its objects and stops serving the kind.
    k.ok(["delete", "crd", "widgets.example.com"]);
    let gone = k.run(["get", "widgets"]);
    assert!(!gone.success(), "{}", gone.stdout);
    k.ok_with_stdin(["apply", "-f", "-"], WIDGET_CRD);
    k.ok(["wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s"]);
    let out = k.run(["get", "widgets", "-o", "name"]);
    assert!(out.success() && out.stdout.trim().is_empty(), "objects went with their CRD: {}{}", out.stdout, out.stderr);

    // A non-structural schema is refused.
    let bad = WIDGET_CRD
        .replace("widgets", "gadgets")
        .replace("Widget", "Gadget")
        .replace("widget", "gadget")
        .replace("[wg]", "[gd]")
        .replace("            type: object\n            required: [size]", "            required: [size]");
    let err = k.run_with_stdin(["create", "-f", "-"], &bad);
    assert!(
        err.stderr.contains("spec.versions[1].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"),
        "{}",
        err.stderr
    );
}

const GIZMO_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gizmos.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gizmos, singular: gizmo, kind: Gizmo}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-validations:
        - rule: self.metadata.name.size() <= 10
          message: name is too long
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: self.replicas <= self.maxReplicas
              messageExpression: "'replicas ' + string(self.replicas) + ' exceed maxReplicas ' + string(self.maxReplicas)"
            - rule: self.replicas >= oldSelf.replicas
              message: replicas may only grow
              reason: FieldValueForbidden
              fieldPath: .replicas
            properties:
              replicas: {type: integer}
              maxReplicas: {type: integer}
              class:
                type: string
                x-kubernetes-validations:
                - rule: self == oldSelf
                  message: class is immutable
              address:
                type: string
                x-kubernetes-validations:
                - rule: isIP(self) && ip(self).family() == 4
                  message: must be an IPv4 address
              memory:
                type: string
                x-kubernetes-validations:
                - rule: quantity(self).isLessThan(quantity('1Gi'))
                  message: at most 1Gi
              tags:
                type: array
                items: {type: string}
                x-kubernetes-validations:
                - rule: self.all(t, t.lowerAscii() == t) && self.isSorted()
                  message: tags are lower case and sorted
"#;

fn gizmo(name: &str, spec: &str) -> String {
    format!("apiVersion: example.com/v1\nkind: Gizmo\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

/// CEL rules (`x-kubernetes-validations`): messages and messageExpressions,
/// transition rules on updates only, reasons and fieldPaths, rules that do
/// not compile refuse the CRD.
fn cel_rules(c: &Cluster) {
    let k = c.k();
    k.ok_with_stdin(["apply", "-f", "-"], GIZMO_CRD);
    k.ok(["wait", "--for=condition=Established", "crd/gizmos.example.com", "--timeout=10s"]);
    k.ok_with_stdin(
        ["create", "-f", "-"],
        &gizmo("g1", "  replicas: 2\n  maxReplicas: 3\n  class: a\n  tags: [a, b]\n"),
    );

    let err =
        k.run_with_stdin(["create", "-f", "-"], &gizmo("g2", "  replicas: 5\n  maxReplicas: 3\n  tags: [B, a]\n"));
    assert!(!err.success());
    for line in [
        r#"The Gizmo "g2" is invalid: "#,
        r#"spec: Invalid value: "object": replicas 5 exceed maxReplicas 3"#,
        r#"spec.tags: Invalid value: "array": tags are lower case and sorted"#,
    ] {
        assert!(err.stderr.contains(line), "{line}\n{}", err.stderr);
    }
    // Kubernetes' CEL libraries: ip, quantity.
    let err = k.run_with_stdin(
        ["create", "-f", "-"],
        &gizmo("g4", "  replicas: 1\n  maxReplicas: 1\n  address: fd00::1\n  memory: 2Gi\n"),
    );
    for line in [
        r#"spec.address: Invalid value: "string": must be an IPv4 address"#,
        r#"spec.memory: Invalid value: "string": at most 1Gi"#,
    ] {
        assert!(err.stderr.contains(line), "{line}\n{}", err.stderr);
    }
    k.ok_with_stdin(
        ["create", "-f", "-"],
        &gizmo("g4", "  replicas: 1\n  maxReplicas: 1\n  address: 10.0.0.1\n  memory: 512Mi\n"),
    );
    k.ok(["delete", "gizmo", "g4"]);
    let err = k.run_with_stdin(["create", "-f", "-"], &gizmo("much-too-long", "  replicas: 1\n  maxReplicas: 1\n"));
    assert!(err.stderr.contains(r#"Invalid value: "object": name is too long"#), "{}", err.stderr);
    // A missing field is an evaluation error, not a pass.
    let err = k.run_with_stdin(["create", "-f", "-"], &gizmo("g3", "  replicas: 1\n"));
    assert!(
        err.stderr.contains("no such key: maxReplicas evaluating rule: self.replicas <= self.maxReplicas"),
        "{}",
        err.stderr
    );
    let out = k.run(["get", "gizmos", "-o", "name"]);
    assert_eq!(out.stdout.trim(), "gizmo.example.com/g1", "refused objects are not stored");

    // Transition rules see the old object.
    let err = k.fail(["patch", "gizmo", "g1", "--type=merge", "-p", r#"{"spec":{"replicas":1}}"#]);
    assert!(err.contains("spec.replicas: Forbidden: replicas may only grow"), "{err}");
    let err = k.fail(["patch", "gizmo", "g1", "--type=merge", "-p", r#"{"spec":{"class":"b"}}"#]);
    assert!(err.contains(r#"spec.class: Invalid value: "string": class is immutable"#), "{err}");
    k.ok(["patch", "gizmo", "g1", "--type=merge", "-p", r#"{"spec":{"replicas":3}}"#]);
    assert_eq!(k.ok(["get", "gizmo", "g1", "-o", "jsonpath={.spec.replicas}"]).trim(), "3");

    // A rule that does not compile, or a reason that does not exist, refuses the CRD.
    let bad = GIZMO_CRD
        .replace("gizmos", "doohickeys")
        .replace("Gizmo", "Doohickey")
        .replace("gizmo", "doohickey")
        .replace("self.replicas <= self.maxReplicas", "self.replicas <=")
        .replace("FieldValueForbidden", "FieldValueWrong");
    let err = k.run_with_stdin(["create", "-f", "-"], &bad);
    assert!(!err.success());
    for line in [
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: ",
        "compilation failed: ",
        r#"spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[1].reason: Unsupported value: "FieldValueWrong""#,
    ] {
        assert!(err.stderr.contains(line), "{line}\n{}", err.stderr);
    }
    // The garbage collector follows custom kinds as dependents too: a Gizmo
    // owned by a ConfigMap goes with it.
    k.ok(["create", "configmap", "gizmo-owner"]);
    let uid = k.ok(["get", "configmap", "gizmo-owner", "-o", "jsonpath={.metadata.uid}"]);
    let owned = format!(
        "apiVersion: example.com/v1\nkind: Gizmo\nmetadata:\n  name: g5\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: gizmo-owner\n    uid: {}\nspec:\n  replicas: 1\n  maxReplicas: 1\n",
        uid.trim()
    );
    k.ok_with_stdin(["create", "-f", "-"], &owned);
    std::thread::sleep(std::time::Duration::from_secs(1));
    k.ok(["get", "gizmo", "g5"]);
    k.ok(["delete", "configmap", "gizmo-owner"]);
    let start = std::time::Instant::now();
    while k.run(["get", "gizmo", "g5"]).success() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(40),
            "a custom dependent of a deleted owner is collected"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    // Deleting a namespace deletes its custom objects, then the namespace.
    k.ok(["create", "namespace", "gizmos"]);
    k.ok_with_stdin(["create", "-n", "gizmos", "-f", "-"], &gizmo("g6", "  replicas: 1\n  maxReplicas: 1\n"));
    k.ok(["delete", "namespace", "gizmos", "--timeout=40s"]);
    let out = k.run(["get", "namespace", "gizmos"]);
    assert!(!out.success(), "the namespace is gone: {}", out.stdout);
    let left = k.ok(["get", "gizmos", "-A", "-o", "name"]);
    assert!(!left.contains("g6"), "{left}");

    k.ok(["delete", "crd", "gizmos.example.com"]);
}

/// kubectl discovers everything from the two aggregated documents
/// (`apidiscovery.k8s.io/v2`), not one request per group version.
fn aggregated_discovery(c: &Cluster) {
    let cache = tempfile::tempdir().expect("tempdir");
    let k = c.k().with_cache_dir(cache.path());
    let out = k.run(["api-resources", "-v=6"]);
    assert!(out.success(), "{}", out.stderr);
    assert!(out.stdout.contains("deployments") && out.stdout.contains("daemonsets"), "{}", out.stdout);
    let per_gv: Vec<&str> =
        out.stderr.lines().filter(|l| l.contains("/apis/apps/v1") || l.contains("/api/v1?")).collect();
    assert!(per_gv.is_empty(), "legacy per-group-version discovery requests: {per_gv:?}");
    assert!(out.stderr.contains("/apis?timeout"), "{}", out.stderr);
}

/// `kubectl explain` reads the field schemas of OpenAPI v3: upstream's text.
fn explain(c: &Cluster) {
    let k = c.k();
    let out = k.ok(["explain", "service.spec.sessionAffinity"]);
    let want = r#"KIND:       Service
VERSION:    v1

FIELD: sessionAffinity <string>
ENUM:
    ClientIP
    None

DESCRIPTION:
    Supports "ClientIP" and "None". Used to maintain session affinity. Enable
    client IP based session affinity. Must be ClientIP or None. Defaults to
    None. More info:
    https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies
    
    Possible enum values:
     - `"ClientIP"` is the Client IP based.
     - `"None"` - no session affinity.
"#;
    assert_eq!(out.trim_end(), want.trim_end(), "kubectl explain service.spec.sessionAffinity");
    let out = k.ok(["explain", "deployment.spec.template.spec.containers.ports"]);
    assert!(out.contains("FIELD: ports <[]ContainerPort>"), "{out}");
    assert!(out.contains("containerPort\t<integer> -required-"), "{out}");
    let out = k.ok(["explain", "pods"]);
    assert!(out.contains("metadata\t<ObjectMeta>\n"), "metadata is not required: {out}");
    assert!(out.contains("spec\t<PodSpec>"), "{out}");
    let out = k.ok(["explain", "deploy.spec.strategy.type"]);
    assert!(out.contains("- `\"Recreate\"` Kill all existing pods before creating new ones."), "{out}");
}

/// helm 4 (server-side apply by default) installs, upgrades, rolls back and
/// uninstalls the chart `helm create` writes.
fn helm(c: &Cluster) {
    let helm = testkit::helm_path();
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| -> std::process::Output {
        let mut cmd = std::process::Command::new(testkit::sandbox::ip_path());
        cmd.args(["netns", "exec", c.server.netns()])
            .arg(&helm)
            .args(args)
            .arg("--kubeconfig")
            .arg(c.server.kubeconfig_path())
            .env("HELM_CACHE_HOME", dir.path().join("cache"))
            .env("HELM_CONFIG_HOME", dir.path().join("config"))
            .env("HELM_DATA_HOME", dir.path().join("data"))
            .current_dir(dir.path());
        cmd.output().expect("run helm")
    };
    let ok = |args: &[&str]| -> String {
        let out = run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "helm {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    ok(&["create", "mychart"]);
    let out = ok(&["install", "demo", "./mychart"]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    let k = c.k();
    k.ok(["get", "serviceaccount", "demo-mychart"]);
    k.ok(["get", "service", "demo-mychart"]);
    let managers = c.managers(&["deployment", "demo-mychart"]);
    assert!(managers.contains(&"helm/Apply".to_string()), "{managers:?}");
    let out = ok(&["upgrade", "demo", "./mychart", "--set", "replicaCount=2"]);
    assert!(out.contains("REVISION: 2"), "{out}");
    assert_eq!(c.json(&["deployment", "demo-mychart"])["spec"]["replicas"], 2);
    let out = ok(&["rollback", "demo", "1"]);
    assert!(out.contains("Rollback was a success"), "{out}");
    assert_eq!(c.json(&["deployment", "demo-mychart"])["spec"]["replicas"], 1);
    let out = ok(&["history", "demo"]);
    assert_eq!(out.lines().count(), 4, "{out}");
    let out = ok(&["uninstall", "demo"]);
    assert!(out.contains("release \"demo\" uninstalled"), "{out}");
    assert!(!k.run(["get", "deployment", "demo-mychart"]).success());
}

/// A typed endpoint fills `kind`/`apiVersion` from the URL and refuses a wrong one.
fn typed_bodies_without_kind(c: &Cluster) {
    let k = c.k();
    let out = k.run_with_stdin(
        ["create", "--raw", "/api/v1/namespaces/default/configmaps", "-f", "-"],
        r#"{"metadata":{"name":"nokind"},"data":{"a":"1"}}"#,
    );
    assert!(out.success(), "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["kind"], "ConfigMap");
    assert_eq!(v["apiVersion"], "v1");
    let out = k.run_with_stdin(
        ["create", "--raw", "/api/v1/namespaces/default/configmaps", "-f", "-"],
        r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"wrong"}}"#,
    );
    assert!(!out.success());
    assert!(out.stderr.contains("Secret in version \"v1\" cannot be handled as a ConfigMap"), "{}", out.stderr);
}

/// A pod serving HTTP on 8080 (all addresses) and on 127.0.0.1:9090 only, the
/// latter reachable through port-forward alone.
const PF_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pf\n  labels: {app: pf}\nspec:\n  containers:\n  - name: web\n    image: registry.k8s.io/e2e-test-images/agnhost:2.52\n    args: [\"netexec\", \"--http-port=8080\"]\n    ports:\n    - {name: http, containerPort: 8080}\n  - name: local\n    image: busybox\n    command: [\"python3\", \"-m\", \"http.server\", \"9090\", \"--bind\", \"127.0.0.1\"]\n";

/// A running `kubectl port-forward`, killed on drop.
struct Forward {
    child: std::process::Child,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Forward {
    /// Start `kubectl port-forward args...` (with `env`) and wait for its
    /// "Forwarding from 127.0.0.1:<port>" lines.
    fn start(c: &Cluster, env: &[(&str, &str)], args: &[&str], ports: usize) -> Forward {
        use std::io::BufRead;
        let mut a = vec!["port-forward"];
        a.extend_from_slice(args);
        let mut cmd = c.k().command(&a);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start kubectl port-forward");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let (etx, stderr) = std::sync::mpsc::channel::<String>();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        let mut seen = Vec::new();
        while seen.iter().filter(|l: &&String| l.starts_with("Forwarding from 127.0.0.1:")).count() < ports {
            match rx.recv_timeout(std::time::Duration::from_secs(30)) {
                Ok(l) => seen.push(l),
                Err(_) => {
                    let _ = child.kill();
                    let e: Vec<String> = stderr.try_iter().collect();
                    panic!("kubectl port-forward {args:?} did not start: {seen:?}\n{}", e.join("\n"));
                }
            }
        }
        std::thread::spawn(move || for _ in rx {});
        Forward { child, stderr }
    }

    fn stderr_lines(&self, wait: std::time::Duration) -> String {
        let start = std::time::Instant::now();
        let mut all = Vec::new();
        while start.elapsed() < wait {
            if let Ok(l) = self.stderr.recv_timeout(std::time::Duration::from_millis(200)) {
                all.push(l);
            }
        }
        all.join("\n")
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` from 127.0.0.1:`port` in the server's netns (where kubectl runs).
fn http_get(c: &Cluster, port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = c
        ._sandbox
        .tcp_connect(c.server.netns(), addr, std::time::Duration::from_secs(5))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// `kubectl port-forward` to a pod (WebSocket-tunnelled SPDY, kubectl's default,
/// and the SPDY fallback), to `svc/NAME`, to a port only bound to localhost in
/// the pod, concurrent connections, and a closed port's error.
fn port_forward(c: &Cluster) {
    let k = c.k();
    k.ok_with_stdin(["create", "-f", "-"], PF_POD);
    k.ok(["create", "service", "clusterip", "pf", "--tcp=80:8080"]);
    k.ok(["wait", "--for=condition=Ready", "pod/pf", "--timeout=60s"]);
    for env in [vec![], vec![("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")]] {
        let f = Forward::start(c, &env, &["pod/pf", "18080:8080", "19090:9090"], 2);
        let body = http_get(c, 18080, "/hostname").expect("GET through the forward");
        assert!(body.starts_with("HTTP/1.1 200") && body.ends_with("pf"), "{env:?}: {body}");
        let listing = http_get(c, 19090, "/").expect("GET of the localhost-only server");
        assert!(listing.contains("200 OK") && listing.contains("Directory listing"), "{env:?}: {listing}");
        // Several connections at once, each its own stream pair.
        let bodies: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8).map(|i| s.spawn(move || http_get(c, 18080, &format!("/echo?msg=m{i}")))).collect();
            hs.into_iter().map(|h| h.join().expect("thread").expect("GET")).collect()
        });
        for (i, b) in bodies.iter().enumerate() {
            assert!(b.ends_with(&format!("m{i}")), "{env:?}: {b}");
        }
        drop(f);
    }
    // A Service: kubectl picks a pod behind it and maps port 80 to targetPort 8080.
    let f = Forward::start(c, &[], &["svc/pf", "18081:80"], 1);
    let body = http_get(c, 18081, "/hostname").expect("GET through svc/pf");
    assert!(body.ends_with("pf"), "{body}");
    drop(f);
    // Nothing listens on 7777: the kubelet's error reaches kubectl.
    let f = Forward::start(c, &[], &["pod/pf", "18082:7777"], 1);
    let _ = http_get(c, 18082, "/");
    let err = f.stderr_lines(std::time::Duration::from_secs(3));
    assert!(err.contains("error forwarding port 7777 to pod") && err.contains("connect: connection refused"), "{err}");
    drop(f);
    // A pod that is not running cannot be forwarded to (kubectl's own check).
    let err = k.fail(["port-forward", "pod/nosuch", "18083:80"]);
    assert!(err.contains("pods \"nosuch\" not found"), "{err}");
    k.ok(["delete", "service", "pf"]);
}
