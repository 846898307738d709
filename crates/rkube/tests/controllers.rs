//! The controllers against the real `rkube server` and kubectl: ReplicaSet,
//! Deployment, Endpoints, EndpointSlice (and mirroring), node IPAM and the
//! scheduler. There is no node agent here: tests play the kubelet by patching
//! pod status (phase, podIP, Ready condition).

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints, Event, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::{manifest, Kubectl, TestServer};

const WAIT: Duration = Duration::from_secs(30);

fn server() -> TestServer {
    TestServer::start(env!("CARGO_BIN_EXE_rkube")).expect("rkube server starts")
}

async fn client(s: &TestServer) -> kube::Client {
    controllers::client_from_kubeconfig(&s.kubeconfig_path()).await.expect("client")
}

fn path(name: &str) -> String {
    manifest(name).to_string_lossy().into_owned()
}

/// Polls `f` until it returns `Some`, or panics with `what` after 30 s.
async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// kubectl off the async runtime (for commands that wait, like `rollout status`).
async fn kubectl(k: &Kubectl, args: &[&str]) -> testkit::Output {
    let k = k.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || k.run(&args)).await.expect("kubectl task")
}

async fn pods(api: &Api<Pod>, selector: &str) -> Vec<Pod> {
    api.list(&ListParams::default().labels(selector))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// Plays the kubelet: phase Running, a pod IP, and the Ready condition.
async fn set_pod_status(api: &Api<Pod>, pod: &str, ip: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch = json!({ "status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{ "ip": ip }],
        "conditions": [
            { "type": "Ready", "status": status, "lastTransitionTime": "2024-01-01T00:00:00Z" },
            { "type": "ContainersReady", "status": status, "lastTransitionTime": "2024-01-01T00:00:00Z" }
        ],
        "containerStatuses": [{ "name": "c", "image": "img", "imageID": "", "ready": ready, "restartCount": 0,
                                "started": true, "state": { "running": { "startedAt": "2024-01-01T00:00:00Z" } } }]
    }});
    api.patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch pod status");
}

/// A fake kubelet for a namespace: every pod that is not Ready yet becomes
/// Running and Ready with the next IP of 10.244.0.0/16.
fn spawn_kubelet(api: Api<Pod>) -> tokio::task::JoinHandle<()> {
    let next = Arc::new(AtomicU32::new(10));
    tokio::spawn(async move {
        loop {
            if let Ok(list) = api.list(&ListParams::default()).await {
                for p in list.items {
                    let ready = p
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                    if ready || p.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    let ip = format!("10.244.{}.{}", n / 250, n % 250 + 1);
                    let _ = api
                        .patch_status(
                            &name(&p),
                            &PatchParams::default(),
                            &Patch::Merge(&json!({ "status": {
                                "phase": "Running", "podIP": ip, "podIPs": [{ "ip": ip }],
                                "conditions": [{ "type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z" }]
                            }})),
                        )
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn events(api: &Api<Event>) -> Vec<(String, String, String)> {
    api.list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
                e.source.and_then(|s| s.component).unwrap_or_default(),
            )
        })
        .collect()
}

/// Columns of `kubectl get <what> <name> --no-headers`.
fn row(k: &Kubectl, what: &str, name: &str) -> Vec<String> {
    k.ok(["get", what, name, "--no-headers"]).split_whitespace().map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_creates_scales_and_replaces_pods() {
    let s = server();
    let k = s.kubectl();
    let c = client(&s).await;
    let pod_api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let rs_api: Api<ReplicaSet> = Api::namespaced(c.clone(), "default");
    k.ok(["create", "-f", &path("mynapp-rs.yml")]);
    let created = wait_for("3 pods", || async {
        let p = pods(&pod_api, "app=mynapp-rs").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    let rs = rs_api.get("mynapp-rs").await.expect("rs");
    for p in &created {
        let n = name(p);
        assert!(n.starts_with("mynapp-rs-") && n.len() == "mynapp-rs-".len() + 5, "{n}");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("mynapp-rs-"));
        assert_eq!(p.metadata.labels.as_ref().and_then(|l| l.get("app")).map(String::as_str), Some("mynapp-rs"));
        let refs = p.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(refs.len(), 1, "{refs:?}");
        let r = &refs[0];
        assert_eq!((r.api_version.as_str(), r.kind.as_str(), r.name.as_str()), ("apps/v1", "ReplicaSet", "mynapp-rs"));
        assert_eq!(Some(&r.uid), rs.metadata.uid.as_ref());
        assert_eq!((r.controller, r.block_owner_deletion), (Some(true), Some(true)));
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.containers[0].image.as_deref(), Some("minjulee226/myweb"));
    }
    wait_for("status.replicas 3", || async {
        let rs = rs_api.get("mynapp-rs").await.ok()?;
        let st = rs.status?;
        (st.replicas == 3 && st.fully_labeled_replicas == Some(3) && st.observed_generation == Some(1)).then_some(())
    })
    .await;
    assert_eq!(row(&k, "rs", "mynapp-rs")[..4], ["mynapp-rs", "3", "3", "0"]);
    let ev_api: Api<Event> = Api::namespaced(c.clone(), "default");
    wait_for("SuccessfulCreate events", || async {
        let ev = events(&ev_api).await;
        let n = ev
            .iter()
            .filter(|(r, m, src)| {
                r == "SuccessfulCreate" && m.starts_with("Created pod: mynapp-rs-") && src == "replicaset-controller"
            })
            .count();
        (n == 3).then_some(())
    })
    .await;

    // Two pods become ready; READY follows.
    let ready: BTreeSet<String> = created.iter().take(2).map(name).collect();
    for (i, n) in ready.iter().enumerate() {
        set_pod_status(&pod_api, n, &format!("10.244.0.{}", i + 2), true).await;
    }
    wait_for("readyReplicas 2", || async {
        let st = rs_api.get("mynapp-rs").await.ok()?.status?;
        (st.ready_replicas == Some(2) && st.available_replicas == Some(2)).then_some(())
    })
    .await;
    assert_eq!(row(&k, "rs", "mynapp-rs")[..4], ["mynapp-rs", "3", "3", "2"]);

    k.ok(["scale", "rs", "mynapp-rs", "--replicas=5"]);
    wait_for("5 pods", || async { (pods(&pod_api, "app=mynapp-rs").await.len() == 5).then_some(()) }).await;
    wait_for("kubectl shows 5", || async {
        (row(&k, "rs", "mynapp-rs")[..3] == ["mynapp-rs", "5", "5"]).then_some(())
    })
    .await;

    // Scaling down deletes not-ready pods first: the two ready ones stay.
    k.ok(["scale", "rs", "mynapp-rs", "--replicas=2"]);
    let left = wait_for("2 pods", || async {
        let p = pods(&pod_api, "app=mynapp-rs").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    assert_eq!(left.iter().map(name).collect::<BTreeSet<_>>(), ready);
    wait_for("SuccessfulDelete events", || async {
        let n = events(&ev_api)
            .await
            .iter()
            .filter(|(r, m, _)| r == "SuccessfulDelete" && m.starts_with("Deleted pod: "))
            .count();
        (n == 3).then_some(())
    })
    .await;

    // A deleted pod is replaced.
    let victim = ready.iter().next().cloned().expect("a pod");
    k.ok(["delete", "pod", &victim]);
    let now = wait_for("a replacement pod", || async {
        let p = pods(&pod_api, "app=mynapp-rs").await;
        (p.len() == 2 && !p.iter().any(|p| name(p) == victim)).then_some(p)
    })
    .await;
    assert_eq!(now.iter().filter(|p| !ready.contains(&name(p))).count(), 1);
    wait_for("status back to 2 replicas, 1 ready", || async {
        let st = rs_api.get("mynapp-rs").await.ok()?.status?;
        (st.replicas == 2 && st.ready_replicas == Some(1)).then_some(())
    })
    .await;

    // Deleting the ReplicaSet deletes its pods (garbage collector).
    k.ok(["delete", "rs", "mynapp-rs"]);
    wait_for("pods gone", || async { pods(&pod_api, "app=mynapp-rs").await.is_empty().then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_adopts_orphans_and_releases_relabelled_pods() {
    let s = server();
    let k = s.kubectl();
    let c = client(&s).await;
    let pod_api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let orphan = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: orphan\n  labels:\n    app: mynapp-rs\nspec:\n  containers:\n  - name: mynapp\n    image: minjulee226/myweb\n";
    k.ok_with_stdin(["create", "-f", "-"], orphan);
    k.ok(["create", "-f", &path("mynapp-rs.yml")]);
    let rs_uid = Api::<ReplicaSet>::namespaced(c.clone(), "default")
        .get("mynapp-rs")
        .await
        .expect("rs")
        .metadata
        .uid
        .expect("uid");
    wait_for("orphan adopted and 2 pods created", || async {
        let p = pods(&pod_api, "app=mynapp-rs").await;
        let adopted = p.iter().find(|p| name(p) == "orphan")?.metadata.owner_references.clone()?;
        (p.len() == 3 && adopted.iter().any(|r| r.uid == rs_uid && r.controller == Some(true))).then_some(())
    })
    .await;
    // Still 3 after a moment: the adopted pod counts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pods(&pod_api, "app=mynapp-rs").await.len(), 3);

    // A pod that stops matching is released and replaced.
    k.ok(["label", "pod", "orphan", "app=elsewhere", "--overwrite"]);
    wait_for("orphan released", || async {
        let p = pod_api.get("orphan").await.ok()?;
        p.metadata.owner_references.is_none_or(|r| r.is_empty()).then_some(())
    })
    .await;
    wait_for("a replacement", || async { (pods(&pod_api, "app=mynapp-rs").await.len() == 3).then_some(()) }).await;
    // The released pod survives the ReplicaSet's deletion.
    k.ok(["delete", "rs", "mynapp-rs"]);
    wait_for("owned pods gone", || async { pods(&pod_api, "app=mynapp-rs").await.is_empty().then_some(()) }).await;
    assert!(pod_api.get("orphan").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_slices_follow_pods() {
    let s = server();
    let k = s.kubectl();
    let c = client(&s).await;
    let pod_api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let ep_api: Api<Endpoints> = Api::namespaced(c.clone(), "default");
    let es_api: Api<EndpointSlice> = Api::namespaced(c.clone(), "default");
    k.ok(["create", "-f", &path("mynapp-svc.yml")]);
    wait_for("Endpoints object", || async { ep_api.get("mynapp-svc").await.ok() }).await;
    assert_eq!(row(&k, "endpoints", "mynapp-svc")[..2], ["mynapp-svc", "<none>"]);
    let slice_sel = "kubernetes.io/service-name=mynapp-svc";
    let placeholder = wait_for("placeholder slice", || async {
        let l = es_api.list(&ListParams::default().labels(slice_sel)).await.ok()?.items;
        (l.len() == 1).then(|| l[0].clone())
    })
    .await;
    assert!(placeholder.endpoints.is_empty());
    let labels = placeholder.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    assert!(placeholder.metadata.name.as_deref().is_some_and(|n| n.starts_with("mynapp-svc-")));
    let owner = &placeholder.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("Service", "mynapp-svc", Some(true)));

    // Pods without IPs are not endpoints.
    k.ok(["create", "-f", &path("mynapp-rs.yml")]);
    let created = wait_for("3 pods", || async {
        let p = pods(&pod_api, "app=mynapp-rs").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(row(&k, "endpoints", "mynapp-svc")[1], "<none>");

    let mut ips = BTreeMap::new();
    for (i, p) in created.iter().enumerate() {
        let ip = format!("10.244.0.{}", i + 11);
        set_pod_status(&pod_api, &name(p), &ip, true).await;
        ips.insert(name(p), ip);
    }
    let want: BTreeSet<String> = ips.values().map(|ip| format!("{ip}:8080")).collect();
    wait_for("3 endpoints in kubectl", || async {
        let got: BTreeSet<String> = row(&k, "endpoints", "mynapp-svc")[1].split(',').map(String::from).collect();
        (got == want).then_some(())
    })
    .await;
    let ep = ep_api.get("mynapp-svc").await.expect("endpoints");
    let subset = &ep.subsets.clone().unwrap_or_default()[0];
    let addrs = subset.addresses.clone().unwrap_or_default();
    assert_eq!(addrs.len(), 3);
    for a in &addrs {
        let r = a.target_ref.as_ref().expect("targetRef");
        assert_eq!(r.kind.as_deref(), Some("Pod"));
        assert_eq!(ips.get(r.name.as_deref().unwrap_or_default()), Some(&a.ip));
    }
    assert_eq!(subset.ports.clone().unwrap_or_default()[0].port, 8080);
    let ann = ep.metadata.annotations.clone().unwrap_or_default();
    assert!(ann.contains_key("endpoints.kubernetes.io/last-change-trigger-time"), "{ann:?}");

    let slice = wait_for("slice with 3 endpoints", || async {
        let l = es_api.list(&ListParams::default().labels(slice_sel)).await.ok()?.items;
        (l.len() == 1 && l[0].endpoints.len() == 3).then(|| l[0].clone())
    })
    .await;
    assert_eq!(slice.address_type, "IPv4");
    let port = &slice.ports.clone().unwrap_or_default()[0];
    assert_eq!((port.port, port.protocol.as_deref(), port.name.as_deref()), (Some(8080), Some("TCP"), Some("")));
    for e in &slice.endpoints {
        let cond = e.conditions.clone().expect("conditions");
        assert_eq!((cond.ready, cond.serving, cond.terminating), (Some(true), Some(true), Some(false)));
        assert_eq!(e.target_ref.as_ref().and_then(|r| r.kind.as_deref()), Some("Pod"));
    }

    // A pod that turns not ready moves to notReadyAddresses.
    let (sick, sick_ip) = ips.iter().next().map(|(n, ip)| (n.clone(), ip.clone())).expect("pod");
    set_pod_status(&pod_api, &sick, &sick_ip, false).await;
    wait_for("a not-ready address", || async {
        let ep = ep_api.get("mynapp-svc").await.ok()?;
        let s = ep.subsets?.into_iter().next()?;
        let nr = s.not_ready_addresses?;
        (nr.len() == 1 && nr[0].ip == sick_ip && s.addresses?.len() == 2).then_some(())
    })
    .await;
    wait_for("slice endpoint not ready", || async {
        let l = es_api.list(&ListParams::default().labels(slice_sel)).await.ok()?.items;
        let e = l.first()?.endpoints.iter().find(|e| e.addresses == vec![sick_ip.clone()])?.clone();
        let c = e.conditions?;
        (c.ready == Some(false) && c.serving == Some(false)).then_some(())
    })
    .await;

    // Scaling to zero empties them again.
    k.ok(["scale", "rs", "mynapp-rs", "--replicas=0"]);
    wait_for("<none> again", || async { (row(&k, "endpoints", "mynapp-svc")[1] == "<none>").then_some(()) }).await;
    wait_for("placeholder again", || async {
        let l = es_api.list(&ListParams::default().labels(slice_sel)).await.ok()?.items;
        (l.len() == 1 && l[0].endpoints.is_empty()).then_some(())
    })
    .await;

    // The Endpoints and slices go with the Service.
    k.ok(["delete", "svc", "mynapp-svc"]);
    wait_for("Endpoints deleted", || async { ep_api.get("mynapp-svc").await.is_err().then_some(()) }).await;
    wait_for("slices deleted", || async {
        es_api.list(&ListParams::default().labels(slice_sel)).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    // The API server's own `kubernetes` Endpoints stay as they were.
    let kep = ep_api.get("kubernetes").await.expect("kubernetes endpoints");
    assert_eq!(kep.subsets.map(|s| s.len()), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_target_port_hostname_and_publish_not_ready() {
    let s = server();
    let k = s.kubectl();
    let c = client(&s).await;
    let pod_api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let ep_api: Api<Endpoints> = Api::namespaced(c.clone(), "default");
    let es_api: Api<EndpointSlice> = Api::namespaced(c.clone(), "default");
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: None\n  publishNotReadyAddresses: true\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n    targetPort: web\n";
    k.ok_with_stdin(["create", "-f", "-"], svc);
    let pod = |n: &str, port_name: &str, port: u16| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {n}\n  labels:\n    app: web\nspec:\n  hostname: {n}\n  subdomain: web\n  containers:\n  - name: c\n    image: img\n    ports:\n    - name: {port_name}\n      containerPort: {port}\n")
    };
    k.ok_with_stdin(["create", "-f", "-"], &pod("a", "web", 8080));
    k.ok_with_stdin(["create", "-f", "-"], &pod("b", "web", 9090));
    k.ok_with_stdin(["create", "-f", "-"], &pod("c", "metrics", 7070));
    // Not ready, but published.
    set_pod_status(&pod_api, "a", "10.244.1.1", false).await;
    set_pod_status(&pod_api, "b", "10.244.1.2", false).await;
    set_pod_status(&pod_api, "c", "10.244.1.3", false).await;
    let ep = wait_for("a and b published", || async {
        let ep = ep_api.get("web").await.ok()?;
        let n: usize = ep.subsets.iter().flatten().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum();
        (n == 2).then_some(ep)
    })
    .await;
    let mut got = BTreeSet::new();
    for s in ep.subsets.clone().unwrap_or_default() {
        assert!(s.not_ready_addresses.is_none());
        let port = s.ports.clone().unwrap_or_default()[0].clone();
        assert_eq!(port.name.as_deref(), Some("http"));
        for a in s.addresses.unwrap_or_default() {
            got.insert((a.ip.clone(), port.port, a.hostname.clone().unwrap_or_default()));
        }
    }
    let want: BTreeSet<(String, i32, String)> =
        [("10.244.1.1".to_string(), 8080, "a".to_string()), ("10.244.1.2".to_string(), 9090, "b".to_string())].into();
    assert_eq!(got, want, "pod c has no port named web and is left out");
    let labels = ep.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("service.kubernetes.io/headless").map(String::as_str), Some(""));

    // Slices: one per port set; published endpoints are ready but not serving.
    let slices = wait_for("slices for a, b and c", || async {
        let l = es_api.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.ok()?.items;
        (l.iter().map(|s| s.endpoints.len()).sum::<usize>() == 3).then_some(l)
    })
    .await;
    for sl in &slices {
        let port = sl.ports.clone().unwrap_or_default().first().and_then(|p| p.port);
        for e in &sl.endpoints {
            let c = e.conditions.clone().expect("conditions");
            assert_eq!((c.ready, c.serving), (Some(true), Some(false)));
            let expected = match e.addresses[0].as_str() {
                "10.244.1.1" => Some(8080),
                "10.244.1.2" => Some(9090),
                _ => None,
            };
            assert_eq!(port, expected, "{:?}", e.addresses);
            if expected.is_some() {
                assert!(e.hostname.is_some());
            }
        }
    }

    // Without publishNotReadyAddresses they are not-ready addresses.
    k.ok(["patch", "svc", "web", "-p", r#"{"spec":{"publishNotReadyAddresses":false}}"#]);
    wait_for("not-ready addresses", || async {
        let ep = ep_api.get("web").await.ok()?;
        let ready: usize = ep.subsets.iter().flatten().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum();
        let not_ready: usize =
            ep.subsets.iter().flatten().map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len)).sum();
        (ready == 0 && not_ready == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectorless_service_endpoints_are_mirrored() {
    let s = server();
    let k = s.kubectl();
    let c = client(&s).await;
    let es_api: Api<EndpointSlice> = Api::namespaced(c.clone(), "default");
    let yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: external\nspec:\n  ports:\n  - name: http\n    port: 80\n---\napiVersion: v1\nkind: Endpoints\nmetadata:\n  name: external\n  labels:\n    team: a\nsubsets:\n- addresses:\n  - ip: 192.168.10.1\n  - ip: 192.168.10.2\n  ports:\n  - name: http\n    port: 8080\n";
    k.ok_with_stdin(["create", "-f", "-"], yaml);
    let slice = wait_for("mirrored slice", || async {
        let l = es_api.list(&ListParams::default().labels("kubernetes.io/service-name=external")).await.ok()?.items;
        (l.len() == 1 && l[0].endpoints.len() == 2).then(|| l[0].clone())
    })
    .await;
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
        Some("endpointslicemirroring-controller.k8s.io")
    );
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    assert_eq!(slice.ports.clone().unwrap_or_default()[0].port, Some(8080));
    let owner = &slice.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Endpoints", "external"));
    // The hand-written Endpoints are left as they are (no selector).
    let ep = Api::<Endpoints>::namespaced(c.clone(), "default").get("external").await.expect("endpoints");
    assert_eq!(ep.subsets.unwrap_or_default()[0].addresses.clone().unwrap_or_default().len(), 2);
    // Changes are mirrored.
    k.ok([
        "patch",
        "endpoints",
        "external",
        "--type",
        "merge",
        "-p",
        r#"{"subsets":[{"addresses":[{"ip":"192.168.10.3"}],"ports":[{"name":"http","port":8080}]}]}"#,
    ]);
    wait_for("updated mirror", || async {
        let l = es_api.list(&ListParams::default().labels("kubernetes.io/service-name=external")).await.ok()?.items;
        (l.len() == 1 && l[0].endpoints.len() == 1 && l[0].endpoints[0].addresses == vec!["192.168.10.3".to_string()])
            .then_some(())
    })
    .await;
    // The `kubernetes` Endpoints (skip-mirror) get no mirror.
    let mirrored = es_api
        .list(
            &ListParams::default()
                .labels("endpointslice.kubernetes.io/managed-by=endpointslicemirroring-controller.k8s.io"),
        )
        .await
        .expect("list");
    assert!(mirrored.items.iter().all(|s| label(s, "kubernetes.io/service-name") != Some("kubernetes")));
}

fn label<'a>(s: &'a EndpointSlice, key: &str) -> Option<&'a str> {
    s.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn deployment_yaml(strategy: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  selector:\n    matchLabels:\n      app: web\n  strategy:\n    type: {strategy}\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: example/web:v1\n"
    )
}

async fn rollout_status(k: &Kubectl) -> String {
    let out = kubectl(k, &["rollout", "status", "deployment/web", "--timeout=60s"]).await;
    assert!(out.success(), "rollout status failed: {}\n{}", out.stdout, out.stderr);
    out.stdout
}

fn revision(meta: &kube::api::ObjectMeta) -> Option<&str> {
    meta.annotations.as_ref()?.get("deployment.kubernetes.io/revision").map(String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_and_undoes() {
    let s = server();
    let k = s.kubectl();
    let c = client(&s).await;
    let pod_api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let rs_api: Api<ReplicaSet> = Api::namespaced(c.clone(), "default");
    let d_api: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let kubelet = spawn_kubelet(pod_api.clone());
    k.ok_with_stdin(["create", "-f", "-"], &deployment_yaml("RollingUpdate"));
    let out = rollout_status(&k).await;
    assert!(out.contains("deployment \"web\" successfully rolled out"), "{out}");

    let rss = rs_api.list(&ListParams::default().labels("app=web")).await.expect("rs").items;
    assert_eq!(rss.len(), 1);
    let first = rss[0].clone();
    let hash = first.metadata.labels.as_ref().and_then(|l| l.get("pod-template-hash")).cloned().expect("hash label");
    assert_eq!(first.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
    assert_eq!(revision(&first.metadata), Some("1"));
    assert_eq!(first.spec.as_ref().and_then(|s| s.replicas), Some(3));
    let owner = &first.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Deployment", "web"));
    for p in pods(&pod_api, "app=web").await {
        assert_eq!(p.metadata.labels.as_ref().and_then(|l| l.get("pod-template-hash")), Some(&hash));
    }
    let d = d_api.get("web").await.expect("deployment");
    assert_eq!(revision(&d.metadata), Some("1"));
    let st = d.status.clone().expect("status");
    assert_eq!(
        (st.replicas, st.updated_replicas, st.ready_replicas, st.available_replicas),
        (Some(3), Some(3), Some(3), Some(3))
    );
    let conds: BTreeMap<String, (String, String)> = st
        .conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, (c.status, c.reason.unwrap_or_default())))
        .collect();
    assert_eq!(conds.get("Available"), Some(&("True".to_string(), "MinimumReplicasAvailable".to_string())));
    assert_eq!(conds.get("Progressing"), Some(&("True".to_string(), "NewReplicaSetAvailable".to_string())));
    assert_eq!(row(&k, "deployment", "web")[..4], ["web", "3/3", "3", "3"]);

    // A new template rolls out through a second ReplicaSet.
    k.ok(["set", "image", "deployment/web", "web=example/web:v2"]);
    let out = rollout_status(&k).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let rss = rs_api.list(&ListParams::default().labels("app=web")).await.expect("rs").items;
    assert_eq!(rss.len(), 2);
    let second = rss.iter().find(|r| r.metadata.name != first.metadata.name).cloned().expect("new rs");
    assert_eq!(revision(&second.metadata), Some("2"));
    assert_eq!(second.spec.as_ref().and_then(|s| s.replicas), Some(3));
    let old = rss.iter().find(|r| r.metadata.name == first.metadata.name).expect("old rs");
    assert_eq!(old.spec.as_ref().and_then(|s| s.replicas), Some(0));
    let images: BTreeSet<String> =
        pods(&pod_api, "app=web").await.iter().filter_map(|p| p.spec.as_ref()?.containers[0].image.clone()).collect();
    assert_eq!(images, BTreeSet::from(["example/web:v2".to_string()]));
    let ev_api: Api<Event> = Api::namespaced(c.clone(), "default");
    let ev = events(&ev_api).await;
    let first_name = first.metadata.name.clone().unwrap_or_default();
    assert!(
        ev.iter().any(|(r, m, src)| r == "ScalingReplicaSet"
            && m == &format!("Scaled up replica set {first_name} from 0 to 3")
            && src == "deployment-controller"),
        "{ev:?}"
    );

    // Undo goes back to the first template (its ReplicaSet, revision 3).
    let out = k.ok(["rollout", "undo", "deployment/web"]);
    assert!(out.contains("deployment.apps/web rolled back"), "{out}");
    rollout_status(&k).await;
    let back = rs_api.get(&first_name).await.expect("first rs");
    assert_eq!(back.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(revision(&back.metadata), Some("3"));
    assert_eq!(
        back.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision-history"))
            .map(String::as_str),
        Some("1")
    );
    let d = d_api.get("web").await.expect("deployment");
    assert_eq!(revision(&d.metadata), Some("3"));
    let history = k.ok(["rollout", "history", "deployment/web"]);
    assert!(history.contains('2') && history.contains('3'), "{history}");
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_recreate_and_history_limit() {
    let s = server();
    let k = s.kubectl();
    let c = client(&s).await;
    let pod_api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let rs_api: Api<ReplicaSet> = Api::namespaced(c.clone(), "default");
    let kubelet = spawn_kubelet(pod_api.clone());
    let yaml = deployment_yaml("Recreate").replace("  replicas: 3\n", "  replicas: 2\n  revisionHistoryLimit: 1\n");
    k.ok_with_stdin(["create", "-f", "-"], &yaml);
    rollout_status(&k).await;
    for v in ["v2", "v3"] {
        k.ok(["set", "image", "deployment/web", &format!("web=example/web:{v}")]);
        rollout_status(&k).await;
    }
    // Current plus one old ReplicaSet kept.
    wait_for("old ReplicaSets cleaned up", || async {
        let rss = rs_api.list(&ListParams::default().labels("app=web")).await.ok()?.items;
        (rss.len() == 2).then_some(())
    })
    .await;
    let images: BTreeSet<String> =
        pods(&pod_api, "app=web").await.iter().filter_map(|p| p.spec.as_ref()?.containers[0].image.clone()).collect();
    assert_eq!(images, BTreeSet::from(["example/web:v3".to_string()]));
    kubelet.abort();
}

fn node_yaml(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}\n{labels}")
}

async fn set_node_ready(api: &Api<Node>, name: &str) {
    let patch = json!({ "status": { "conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
        "lastHeartbeatTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"
    }], "allocatable": { "pods": "110", "cpu": "2", "memory": "4Gi" } }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("node status");
}

fn pod_cidr(n: &Node) -> Option<(String, Vec<String>)> {
    let spec = n.spec.as_ref()?;
    Some((spec.pod_cidr.clone()?, spec.pod_cidrs.clone()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ipam_gives_each_node_its_own_subnet() {
    let mut s = server();
    let k = s.kubectl();
    let c = client(&s).await;
    let nodes: Api<Node> = Api::all(c.clone());
    k.ok_with_stdin(["create", "-f", "-"], &node_yaml("node-a", ""));
    k.ok_with_stdin(["create", "-f", "-"], &node_yaml("node-b", ""));
    let mut cidrs = BTreeSet::new();
    for n in ["node-a", "node-b"] {
        let (cidr, list) = wait_for("podCIDR", || async { pod_cidr(&nodes.get(n).await.ok()?) }).await;
        assert_eq!(list, vec![cidr.clone()]);
        assert!(cidr.starts_with("10.244.") && cidr.ends_with(".0/24"), "{cidr}");
        cidrs.insert(cidr);
    }
    assert_eq!(cidrs.len(), 2, "distinct subnets: {cidrs:?}");

    // After a restart the allocations are rebuilt from the nodes.
    s.restart().expect("restart");
    let c = client(&s).await;
    let nodes: Api<Node> = Api::all(c.clone());
    k.ok_with_stdin(["create", "-f", "-"], &node_yaml("node-c", ""));
    let (third, _) = wait_for("podCIDR of node-c", || async { pod_cidr(&nodes.get("node-c").await.ok()?) }).await;
    assert!(!cidrs.contains(&third), "{third} reused");
    cidrs.insert(third);

    // A node created with its own podCIDR keeps it, and that subnet is not
    // handed out again; a deleted node's subnet is released (unit-tested:
    // the allocator hands out the next subnet round-robin).
    k.ok(["delete", "node", "node-a"]);
    let fixed = "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-d\nspec:\n  podCIDR: 10.244.3.0/24\n  podCIDRs:\n  - 10.244.3.0/24\n";
    k.ok_with_stdin(["create", "-f", "-"], fixed);
    wait_for("node-d seen", || async { nodes.get("node-d").await.ok() }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    k.ok_with_stdin(["create", "-f", "-"], &node_yaml("node-e", ""));
    let (fifth, _) = wait_for("podCIDR of node-e", || async { pod_cidr(&nodes.get("node-e").await.ok()?) }).await;
    let mut live = BTreeSet::new();
    for n in nodes.list(&ListParams::default()).await.expect("nodes").items {
        let (cidr, _) = pod_cidr(&n).expect("every node has a podCIDR");
        assert!(live.insert(cidr.clone()), "{cidr} given twice");
    }
    assert!(live.contains(&fifth));
    let d = nodes.get("node-d").await.expect("node-d");
    assert_eq!(pod_cidr(&d).map(|c| c.0), Some("10.244.3.0/24".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_binds_to_ready_nodes_and_reports_unschedulable() {
    let s = server();
    let k = s.kubectl();
    let c = client(&s).await;
    let nodes: Api<Node> = Api::all(c.clone());
    let pod_api: Api<Pod> = Api::namespaced(c.clone(), "default");
    k.ok_with_stdin(["create", "-f", "-"], &node_yaml("n1", "    disk: ssd\n"));
    k.ok_with_stdin(["create", "-f", "-"], &node_yaml("n2", ""));
    k.ok_with_stdin(["create", "-f", "-"], &node_yaml("n3", "    disk: nvme\n"));
    set_node_ready(&nodes, "n1").await;
    set_node_ready(&nodes, "n2").await;
    // n3 never reports Ready.

    let pod = |n: &str, selector: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {n}\nspec:\n  nodeSelector:\n    {selector}\n  containers:\n  - name: c\n    image: img\n")
    };
    k.ok_with_stdin(["create", "-f", "-"], &pod("fast", "disk: ssd"));
    let bound = wait_for("fast bound", || async {
        let p = pod_api.get("fast").await.ok()?;
        p.spec.as_ref()?.node_name.clone()
    })
    .await;
    assert_eq!(bound, "n1");
    wait_for("PodScheduled=True", || async {
        let p = pod_api.get("fast").await.ok()?;
        p.status?.conditions?.iter().any(|c| c.type_ == "PodScheduled" && c.status == "True").then_some(())
    })
    .await;
    let ev_api: Api<Event> = Api::namespaced(c.clone(), "default");
    wait_for("Scheduled event", || async {
        events(&ev_api)
            .await
            .iter()
            .any(|(r, m, src)| {
                r == "Scheduled" && m == "Successfully assigned default/fast to n1" && src == "default-scheduler"
            })
            .then_some(())
    })
    .await;

    // Only the not-ready node has disk=nvme: unschedulable.
    k.ok_with_stdin(["create", "-f", "-"], &pod("stuck", "disk: nvme"));
    let want = "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    let cond = wait_for("Unschedulable condition", || async {
        let p = pod_api.get("stuck").await.ok()?;
        p.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled" && c.status == "False")
    })
    .await;
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(cond.message.as_deref(), Some(want));
    wait_for("FailedScheduling event", || async {
        events(&ev_api).await.iter().any(|(r, m, _)| r == "FailedScheduling" && m == want).then_some(())
    })
    .await;
    let phase = row(&k, "pod", "stuck");
    assert_eq!(phase[2], "Pending", "{phase:?}");

    // The node becomes ready: the pod is placed.
    set_node_ready(&nodes, "n3").await;
    let bound = wait_for("stuck bound", || async { pod_api.get("stuck").await.ok()?.spec?.node_name }).await;
    assert_eq!(bound, "n3");

    // Pods without constraints spread over the ready nodes by pod count.
    for i in 0..3 {
        let p = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: free-{i}\nspec:\n  containers:\n  - name: c\n    image: img\n");
        k.ok_with_stdin(["create", "-f", "-"], &p);
    }
    let placed = wait_for("free pods bound", || async {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(pod_api.get(&format!("free-{i}")).await.ok()?.spec?.node_name?);
        }
        Some(v)
    })
    .await;
    assert!(placed.contains(&"n2".to_string()), "n2 had no pods and gets one: {placed:?}");
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in pod_api.list(&ListParams::default()).await.expect("pods").items {
        if let Some(n) = p.spec.and_then(|s| s.node_name) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let (min, max) = (per_node.values().min().copied(), per_node.values().max().copied());
    assert!(per_node.len() == 3 && max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{per_node:?}");

    // A cordoned node takes no pods.
    k.ok(["cordon", "n2"]);
    k.ok_with_stdin(["create", "-f", "-"], &pod("cordoned", "kubernetes.io/hostname: n2"));
    let cond = wait_for("Unschedulable again", || async {
        let p = pod_api.get("cordoned").await.ok()?;
        p.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled" && c.status == "False")
    })
    .await;
    assert_eq!(
        cond.message.as_deref(),
        Some("0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")
    );
}
