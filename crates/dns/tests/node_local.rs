//! The node-local DNS cache on loopback: cluster names from its own view or from
//! the cluster DNS over TCP, outside names cached, stale answers when the
//! (fake, loopback) upstream stops.

mod common;

use common::*;
use dns::{CacheConfig, ClusterDnsServer, ClusterView, DnsConfig, NodeLocalCache, NodeLocalConfig};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

fn config(listen: &str, upstream: &FakeUpstream) -> NodeLocalConfig {
    NodeLocalConfig {
        listen: listen.parse().expect("addr"),
        cluster_zone: ZONE.into(),
        ttl: 5,
        cluster_view: None,
        cluster_dns: Vec::new(),
        upstream: vec![upstream.addr],
        upstream_timeout: Duration::from_millis(300),
        cache: CacheConfig::default(),
        metrics_listen: None,
    }
}

fn view_with_service() -> ClusterView {
    let view = ClusterView::new();
    view.apply_service(&cluster_ip_service("default", "mynapp-svc", "10.96.0.100", &[("http", "TCP", 80)]));
    view.apply_service(&external_name_service("default", "ext", "www.google.com"));
    view
}

#[tokio::test]
async fn node_local_answers_cluster_names_from_its_own_view_without_caching_them() {
    let up = FakeUpstream::start("127.0.1.2").await;
    let view = view_with_service();
    let mut cfg = config("127.0.1.1:0", &up);
    cfg.cluster_view = Some(view.clone());
    let cache = NodeLocalCache::start(cfg).await.expect("start node-local cache");
    let a = cache.local_addr();
    assert_eq!(a.ip().to_string(), "127.0.1.1");

    let resp = query_udp(a, "mynapp-svc.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 96, 0, 100)]);
    let resp = query_tcp(a, "mynapp-svc.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 96, 0, 100)]);

    // Added and deleted Services show at once: the zone is never cached.
    let q = "new.default.svc.cluster.local.";
    assert_eq!(query_udp(a, q, RecordType::A, None).await.response_code, ResponseCode::NXDomain);
    let svc = cluster_ip_service("default", "new", "10.96.3.3", &[("http", "TCP", 80)]);
    view.apply_service(&svc);
    assert_eq!(a_records(&query_udp(a, q, RecordType::A, None).await), vec![Ipv4Addr::new(10, 96, 3, 3)]);
    view.delete_service(&svc);
    assert_eq!(query_udp(a, q, RecordType::A, None).await.response_code, ResponseCode::NXDomain);

    // ExternalName: CNAME from the view, addresses from the upstream.
    let resp = query_udp(a, "ext.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(cname_records(&resp), vec!["www.google.com."]);
    assert_eq!(a_records(&resp), GOOGLE_ADDRS.to_vec());
    assert_eq!(up.total(), 1, "only the ExternalName target went upstream");
}

#[tokio::test]
async fn node_local_forwards_cluster_names_to_the_cluster_dns_over_tcp() {
    let up = FakeUpstream::start("127.0.1.4").await;
    let view = view_with_service();
    let cluster = ClusterDnsServer::start(
        DnsConfig {
            listen: vec!["127.0.1.5:0".parse().expect("addr")],
            zone: ZONE.into(),
            ttl: 5,
            upstream: vec![up.addr],
            upstream_timeout: Duration::from_millis(300),
            ..DnsConfig::default()
        },
        view.clone(),
    )
    .await
    .expect("start cluster DNS");
    let mut cfg = config("127.0.1.3:0", &up);
    cfg.cluster_dns = cluster.local_addrs().to_vec();
    let cache = NodeLocalCache::start(cfg).await.expect("start node-local cache");
    let a = cache.local_addr();

    let resp = query_udp(a, "mynapp-svc.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 96, 0, 100)]);
    let resp = query_udp(a, "100.0.96.10.in-addr.arpa.", RecordType::PTR, None).await;
    assert_eq!(ptr_records(&resp), vec!["mynapp-svc.default.svc.cluster.local."]);
    let resp = query_udp(a, "gone.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NXDomain);

    let text = cluster.metrics();
    assert!(text.contains("proto=\"tcp\",type=\"A\"} 2"), "cluster DNS asked over TCP:\n{text}");
    assert!(text.contains("proto=\"tcp\",type=\"PTR\"} 1"), "{text}");
    assert!(!text.contains("proto=\"udp\""), "{text}");

    // A Service deleted in the cluster is gone through the node-local cache at once.
    view.delete_service(&cluster_ip_service("default", "mynapp-svc", "10.96.0.100", &[]));
    let resp = query_udp(a, "mynapp-svc.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NXDomain);
    assert_eq!(up.total(), 0);
}

#[tokio::test]
async fn node_local_caches_outside_names_and_counts_hits() {
    let up = FakeUpstream::start("127.0.1.7").await;
    let mut cfg = config("127.0.1.6:0", &up);
    cfg.cluster_view = Some(ClusterView::new());
    cfg.cache.negative_ttl = Duration::from_secs(1);
    let cache = NodeLocalCache::start(cfg).await.expect("start node-local cache");
    let a = cache.local_addr();

    for _ in 0..3 {
        let resp = query_udp(a, "www.google.com.", RecordType::A, Some(1232)).await;
        assert_eq!(a_records(&resp), GOOGLE_ADDRS.to_vec());
    }
    let resp = query_tcp(a, "www.google.com.", RecordType::A).await;
    assert_eq!(a_records(&resp), GOOGLE_ADDRS.to_vec());
    assert_eq!(up.count("www.google.com."), 1, "one upstream query, then cache hits");

    // Negative answers: cached for at most negative_ttl (1 s here, 5 s by default).
    for _ in 0..2 {
        let resp = query_udp(a, "missing.example.", RecordType::A, None).await;
        assert_eq!(resp.response_code, ResponseCode::NXDomain);
    }
    assert_eq!(up.count("missing.example."), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _ = query_udp(a, "missing.example.", RecordType::A, None).await;
    assert_eq!(up.count("missing.example."), 2, "asked again once the negative entry expired");

    let m = cache.metrics_handle();
    assert_eq!(m.cache_hits(), 4);
    assert_eq!(m.cache_misses(), 3);
    assert_eq!(m.upstream_requests(), 3);
    let text = cache.metrics();
    assert!(text.contains("coredns_cache_hits_total{server=\"node-local-dns\",type=\"success\"} 3"), "{text}");
    assert!(text.contains("coredns_cache_hits_total{server=\"node-local-dns\",type=\"denial\"} 1"), "{text}");
    assert!(text.contains("coredns_cache_misses_total{server=\"node-local-dns\"} 3"), "{text}");
}

#[tokio::test]
async fn node_local_serves_stale_answers_when_the_upstream_stops() {
    let mut up = FakeUpstream::start("127.0.1.9").await;
    let mut cfg = config("127.0.1.8:0", &up);
    cfg.cluster_view = Some(ClusterView::new());
    let cache = NodeLocalCache::start(cfg).await.expect("start node-local cache");
    let a = cache.local_addr();

    // `short.example` has a TTL of 1 s.
    let resp = query_udp(a, "short.example.", RecordType::A, None).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(192, 0, 2, 99)]);
    assert_eq!(up.count("short.example."), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Expired, upstream up: asked again.
    let resp = query_udp(a, "short.example.", RecordType::A, None).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(192, 0, 2, 99)]);
    assert_eq!(up.count("short.example."), 2);

    up.stop().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let resp = query_udp(a, "short.example.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NoError, "stale answer instead of SERVFAIL");
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(192, 0, 2, 99)]);
    assert_eq!(resp.answers[0].ttl, 0, "stale answers carry TTL 0");
    assert_eq!(cache.metrics_handle().cache_served_stale(), 1);

    // A name never seen has nothing stale to fall back on.
    let resp = query_udp(a, "never.example.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn node_local_needs_a_view_or_a_cluster_dns() {
    let up = FakeUpstream::start("127.0.1.11").await;
    let cfg = config("127.0.1.10:0", &up);
    assert!(NodeLocalCache::start(cfg).await.is_err());
}

#[test]
fn the_default_address_is_upstreams() {
    let default = NodeLocalConfig::default();
    assert_eq!(default.listen, SocketAddr::from(([169, 254, 20, 10], 53)));
}
