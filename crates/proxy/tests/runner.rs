//! `proxy::run` against a minimal list+watch API server (in this test process, on
//! 127.0.0.1): the runner watches Services and EndpointSlices and programs the sandbox's
//! node namespace. Needs root; skips with a message otherwise.

mod common;

use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{pods_in, root_or_skip, Sandbox};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Objects by collection path, and watch events for each.
struct Api {
    services: Vec<Value>,
    slices: Vec<Value>,
    nodes: Vec<Value>,
    events: broadcast::Sender<(String, Value)>,
}

const SERVICES: &str = "/api/v1/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
const NODES: &str = "/api/v1/nodes";

fn list(kind: &str, items: &[Value]) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

async fn handle(
    api: Arc<Mutex<Api>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<UnsyncBoxBody<Bytes, Infallible>>, Infallible> {
    let path = req.uri().path().to_string();
    let watch = req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let ok = |body: Value| {
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())).boxed_unsync())
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync()))
    };
    if path != SERVICES && path != SLICES && path != NODES {
        return Ok(Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"{}")).boxed_unsync())
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync())));
    }
    if !watch {
        let a = api.lock().unwrap_or_else(|e| e.into_inner());
        return Ok(match path.as_str() {
            SERVICES => ok(list("ServiceList", &a.services)),
            NODES => ok(list("NodeList", &a.nodes)),
            _ => ok(list("EndpointSliceList", &a.slices)),
        });
    }
    let rx = api.lock().unwrap_or_else(|e| e.into_inner()).events.subscribe();
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(StreamBody::new(watch_stream(path, rx)).boxed_unsync())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync())))
}

/// The watch stream: every broadcast event for `path`, as one JSON line each.
fn watch_stream(
    path: String,
    rx: broadcast::Receiver<(String, Value)>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static {
    futures::stream::unfold((rx, path), |(mut rx, path)| async move {
        loop {
            match rx.recv().await {
                Ok((p, ev)) if p == path => {
                    let line = format!("{ev}\n");
                    return Some((Ok(Frame::data(Bytes::from(line))), (rx, path)));
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

fn slice(rv: u32, ips: &[Ipv4Addr], trigger: Option<String>) -> Value {
    hinted_slice(rv, &ips.iter().map(|ip| (*ip, None)).collect::<Vec<_>>(), trigger)
}

fn node_object(rv: u32, zone: Option<&str>) -> Value {
    let labels = match zone {
        Some(z) => json!({"topology.kubernetes.io/zone": z}),
        None => json!({}),
    };
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": common::NODE_NAME, "resourceVersion": rv.to_string(), "labels": labels}
    })
}

/// A slice whose endpoints may carry a zone hint.
fn hinted_slice(rv: u32, eps: &[(Ipv4Addr, Option<&str>)], trigger: Option<String>) -> Value {
    let eps: Vec<Value> = eps
        .iter()
        .map(|(ip, zone)| {
            let mut e =
                json!({"addresses": [ip.to_string()], "nodeName": common::NODE_NAME, "conditions": {"ready": true}});
            if let Some(z) = zone {
                e["hints"] = json!({"forZones": [{"name": z}]});
            }
            e
        })
        .collect();
    let mut annotations = json!({});
    if let Some(t) = trigger {
        annotations = json!({"endpoints.kubernetes.io/last-change-trigger-time": t});
    }
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": "web-abc", "resourceVersion": rv.to_string(),
                     "labels": {"kubernetes.io/service-name": "web"}, "annotations": annotations},
        "addressType": "IPv4",
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps
    })
}

/// Serves `api` on a loopback port; a client for it and the server task.
async fn serve(api: Arc<Mutex<Api>>) -> (kube::Client, tokio::task::JoinHandle<()>) {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let server_api = api;
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let api = server_api.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(api.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    let uri: http::Uri = match format!("http://127.0.0.1:{port}").parse() {
        Ok(u) => u,
        Err(e) => panic!("uri: {e}"),
    };
    let client = match kube::Client::try_from(kube::Config::new(uri)) {
        Ok(c) => c,
        Err(e) => panic!("client: {e}"),
    };
    (client, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_programs_services_from_watches() {
    if !root_or_skip("runner_programs_services_from_watches") {
        return;
    }
    let sb = Sandbox::new(2);
    let (p1, p2) = (sb.pods[0].ip, sb.pods[1].ip);
    let (tx, _) = broadcast::channel(16);
    let api = Arc::new(Mutex::new(Api {
        services: vec![json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "default", "name": "web", "resourceVersion": "1"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.70", "clusterIPs": ["10.96.0.70"],
                     "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        })],
        slices: vec![slice(1, &[p1], None)],
        nodes: vec![node_object(1, Some("zone-a"))],
        events: tx.clone(),
    }));

    let (client, server) = serve(api.clone()).await;
    let cfg = proxy::ProxyConfig { min_sync_period: Duration::from_millis(20), ..sb.proxy_config() };
    let runner = tokio::spawn(proxy::run(client, cfg));

    let cip = Ipv4Addr::new(10, 96, 0, 70);
    let node = sb.node.clone();
    let sb = Arc::new(sb);
    let get = |n: usize| {
        let sb = sb.clone();
        let node = node.clone();
        async move { tokio::task::spawn_blocking(move || sb.http_get(&node, cip, 80, n, 1.0)).await.unwrap_or_default() }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = get(1).await;
        if lines.first().is_some_and(|l| l.starts_with("OK p1")) {
            break;
        }
        assert!(Instant::now() < deadline, "the runner never programmed the service: {lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A new endpoint arrives through the watch, with its trigger time.
    let now = jiff::Timestamp::now().to_string();
    let updated = slice(2, &[p1, p2], Some(now));
    let _ = tx.send((SLICES.to_string(), json!({"type": "MODIFIED", "object": updated})));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = get(30).await;
        if pods_in(&lines).len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the new endpoint was never programmed: {lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = proxy::metrics();
    let count = m
        .lines()
        .find_map(|l| l.strip_prefix("kubeproxy_network_programming_duration_seconds_count "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(count >= 1, "network programming latency recorded:\n{m}");

    // Topology aware routing: with zone hints on every endpoint, only the endpoints hinted
    // for this node's zone (from its Node's label, watched) are used.
    let hinted = hinted_slice(3, &[(p1, Some("zone-a")), (p2, Some("zone-b"))], None);
    let _ = tx.send((SLICES.to_string(), json!({"type": "MODIFIED", "object": hinted})));
    let only = |want: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines = get(20).await;
            let seen = pods_in(&lines);
            if seen.len() == 1 && seen.contains(want) {
                return;
            }
            assert!(Instant::now() < deadline, "expected only {want}: {lines:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    only("p1").await;
    let _ = tx.send((NODES.to_string(), json!({"type": "MODIFIED", "object": node_object(2, Some("zone-b"))})));
    only("p2").await;
    // No zone label: no topology filtering.
    let _ = tx.send((NODES.to_string(), json!({"type": "MODIFIED", "object": node_object(3, None)})));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = get(30).await;
        if pods_in(&lines).len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "both endpoints again without a zone: {lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The Service goes away: its ClusterIP stops answering.
    let _ = tx.send((
        SERVICES.to_string(),
        json!({"type": "DELETED", "object": api.lock().unwrap_or_else(|e| e.into_inner()).services[0].clone()}),
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = get(1).await;
        if lines.first().is_some_and(|l| l == "TIMEOUT") {
            break;
        }
        assert!(Instant::now() < deadline, "the deleted service still answers: {lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    runner.abort();
    server.abort();
}

/// A LoadBalancer Service with `externalTrafficPolicy: Local` and a health check node port.
fn local_lb(rv: u32, policy: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "default", "name": "web", "resourceVersion": rv.to_string()},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.71", "clusterIPs": ["10.96.0.71"],
                 "externalTrafficPolicy": policy, "healthCheckNodePort": 32100,
                 "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 31180}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.122.220"}]}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_serves_health_check_node_ports() {
    if !root_or_skip("runner_serves_health_check_node_ports") {
        return;
    }
    let sb = Sandbox::new(1);
    let p1 = sb.pods[0].ip;
    let (tx, _) = broadcast::channel(16);
    let api = Arc::new(Mutex::new(Api {
        services: vec![local_lb(1, "Local")],
        slices: vec![slice(1, &[p1], None)],
        nodes: vec![node_object(1, None)],
        events: tx.clone(),
    }));
    let (client, server) = serve(api.clone()).await;
    let cfg = proxy::ProxyConfig { min_sync_period: Duration::from_millis(20), ..sb.proxy_config() };
    let runner = tokio::spawn(proxy::run(client, cfg));

    let sb = Arc::new(sb);
    let health = || {
        let sb = sb.clone();
        async move {
            tokio::task::spawn_blocking(move || sb.http_status(&sb.client, common::NODE_IP, 32100))
                .await
                .unwrap_or_default()
        }
    };
    let until = |what: &'static str, want: fn(&str) -> bool| async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = health().await;
            if want(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "{what}: {got:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // The listener is opened in the node's namespace, reachable from the LAN.
    let got = until("health check with a local endpoint", |g| g.starts_with("200 ")).await;
    assert!(got.contains("\"localEndpoints\": 1") && got.contains("\"name\": \"web\""), "{got}");

    // The endpoint goes away: 503.
    let _ = tx.send((SLICES.to_string(), json!({"type": "MODIFIED", "object": slice(2, &[], None)})));
    until("no local endpoint", |g| g.starts_with("503 ")).await;

    // Policy Cluster: the port closes; Local again: it opens; the Service deleted: closed.
    let _ = tx.send((SERVICES.to_string(), json!({"type": "MODIFIED", "object": local_lb(2, "Cluster")})));
    until("policy Cluster", |g| g == "REFUSED").await;
    let _ = tx.send((SERVICES.to_string(), json!({"type": "MODIFIED", "object": local_lb(3, "Local")})));
    until("policy Local again", |g| g.starts_with("503 ")).await;
    let _ = tx.send((SERVICES.to_string(), json!({"type": "DELETED", "object": local_lb(4, "Local")})));
    until("Service deleted", |g| g == "REFUSED").await;
    runner.abort();
    server.abort();
}
