//! `dns::watch` feeding a view through kube-rs watchers, against an in-process
//! fake Kubernetes API (a tower service answering list and watch requests): the
//! view syncs from the initial lists, then follows ADDED / DELETED events.

mod common;

use bytes::Bytes;
use common::*;
use dns::{ClusterDnsServer, ClusterView, DnsConfig};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

/// Resource path (`/api/v1/services`) -> list kind.
const KINDS: [(&str, &str); 4] = [
    ("/api/v1/services", "ServiceList"),
    ("/apis/discovery.k8s.io/v1/endpointslices", "EndpointSliceList"),
    ("/api/v1/pods", "PodList"),
    ("/api/v1/namespaces", "NamespaceList"),
];

#[derive(Clone)]
struct FakeApi {
    lists: Arc<Mutex<HashMap<&'static str, Vec<Value>>>>,
    events: broadcast::Sender<(&'static str, String)>,
    rv: Arc<std::sync::atomic::AtomicU64>,
}

impl FakeApi {
    fn new() -> FakeApi {
        let (events, _) = broadcast::channel(64);
        FakeApi { lists: Arc::new(Mutex::new(HashMap::new())), events, rv: Arc::new(2.into()) }
    }

    fn seed(&self, path: &'static str, obj: Value) {
        self.lists.lock().expect("lock").entry(path).or_default().push(obj);
    }

    /// Send a watch event; like the API server, every object carries a resourceVersion.
    fn send(&self, path: &'static str, kind: &str, mut obj: Value) {
        let rv = self.rv.fetch_add(1, std::sync::atomic::Ordering::SeqCst).to_string();
        obj["metadata"]["resourceVersion"] = Value::String(rv);
        let line = json!({ "type": kind, "object": obj }).to_string() + "\n";
        let _ = self.events.send((path, line));
    }

    fn client(&self) -> kube::Client {
        let api = self.clone();
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.answer(req)) }
        });
        kube::Client::new(svc, "default")
    }

    fn answer(&self, req: http::Request<kube::client::Body>) -> http::Response<BoxBody<Bytes, Infallible>> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let Some((path, kind)) = KINDS.iter().find(|(p, _)| *p == path).copied() else {
            let body = Full::new(Bytes::from_static(b"{}")).boxed();
            return http::Response::builder().status(404).body(body).unwrap_or_default();
        };
        if query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1") {
            let rx = self.events.subscribe();
            let stream = BroadcastStream::new(rx).filter_map(move |ev| match ev {
                Ok((p, line)) if p == path => Some(Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(line)))),
                _ => None,
            });
            return http::Response::new(BodyExt::boxed(StreamBody::new(stream)));
        }
        let items = self.lists.lock().expect("lock").get(path).cloned().unwrap_or_default();
        let list = json!({ "kind": kind, "apiVersion": "v1", "metadata": { "resourceVersion": "1" }, "items": items });
        let mut resp = http::Response::new(Full::new(Bytes::from(list.to_string())).boxed());
        resp.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
        resp
    }
}

fn to_json<T: serde::Serialize>(obj: &T) -> Value {
    serde_json::to_value(obj).expect("serialize")
}

#[tokio::test]
async fn watch_syncs_the_view_from_lists_then_follows_events() {
    let api = FakeApi::new();
    api.seed(
        "/api/v1/services",
        to_json(&cluster_ip_service("default", "mynapp-svc", "10.96.0.100", &[("http", "TCP", 80)])),
    );
    api.seed("/api/v1/services", to_json(&headless_service("default", "pets", &[("http", "TCP", 80)])));
    api.seed(
        "/apis/discovery.k8s.io/v1/endpointslices",
        to_json(&endpoint_slice(
            "default",
            "pets-1",
            "pets",
            &[("10.244.1.9", Some("cat"), true)],
            &[("http", "TCP", 80)],
        )),
    );
    api.seed("/api/v1/pods", to_json(&pod("default", "web-0", "10.244.1.7")));
    let ns = Namespace {
        metadata: ObjectMeta { name: Some("empty-ns".into()), ..Default::default() },
        ..Default::default()
    };
    api.seed("/api/v1/namespaces", to_json(&ns));

    let up = FakeUpstream::start("127.0.2.2").await;
    let view = ClusterView::new_unsynced();
    let cfg = DnsConfig {
        listen: vec!["127.0.2.1:0".parse().expect("addr")],
        upstream: vec![up.addr],
        upstream_timeout: Duration::from_millis(300),
        ..DnsConfig::default()
    };
    let server = ClusterDnsServer::start(cfg, view.clone()).await.expect("start cluster DNS");
    let a = server.local_addrs()[0];

    let watch = tokio::spawn(dns::watch(api.client(), view.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !view.is_synced() {
        assert!(tokio::time::Instant::now() < deadline, "view never synced: {:?}", view.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = view.stats();
    assert_eq!((stats.services, stats.endpoint_slices, stats.pods), (2, 1, 1), "{stats:?}");

    let resp = query_udp(a, "mynapp-svc.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 96, 0, 100)]);
    let resp = query_udp(a, "cat.pets.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 244, 1, 9)]);
    let resp = query_udp(a, "10-244-1-7.default.pod.cluster.local.", RecordType::A, None).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 244, 1, 7)]);
    let resp = query_udp(a, "empty-ns.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NoError, "an existing, empty namespace");

    // Events: a new Service appears, the first one goes.
    let q = "added.default.svc.cluster.local.";
    let added = cluster_ip_service("default", "added", "10.96.0.200", &[("http", "TCP", 80)]);
    // The watch may not be established yet when we send: resend until seen.
    let mut seen = false;
    for _ in 0..200 {
        api.send("/api/v1/services", "ADDED", to_json(&added));
        tokio::time::sleep(Duration::from_millis(25)).await;
        let resp = query_udp(a, q, RecordType::A, None).await;
        if resp.response_code == ResponseCode::NoError {
            assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 96, 0, 200)]);
            seen = true;
            break;
        }
    }
    assert!(seen, "ADDED Service never resolved");
    api.send(
        "/api/v1/services",
        "DELETED",
        to_json(&cluster_ip_service("default", "mynapp-svc", "10.96.0.100", &[("http", "TCP", 80)])),
    );
    let mut gone = false;
    for _ in 0..200 {
        let resp = query_udp(a, "mynapp-svc.default.svc.cluster.local.", RecordType::A, None).await;
        if resp.response_code == ResponseCode::NXDomain {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(gone, "DELETED Service still resolves");
    watch.abort();
}
