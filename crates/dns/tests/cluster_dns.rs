//! The cluster DNS answering real DNS queries on loopback (hickory-proto clients
//! and `dig`), with a fake upstream server on 127.0.0.x for outside names.

mod common;

use common::*;
use dns::{ClusterDnsServer, ClusterView, DnsConfig};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

async fn start(view: &ClusterView, upstream: &FakeUpstream) -> ClusterDnsServer {
    start_with(view, upstream, |_| {}).await
}

async fn start_with(
    view: &ClusterView,
    upstream: &FakeUpstream,
    tweak: impl FnOnce(&mut DnsConfig),
) -> ClusterDnsServer {
    let mut cfg = DnsConfig {
        listen: vec!["127.0.0.1:0".parse().expect("addr")],
        zone: ZONE.into(),
        ttl: 5,
        upstream: vec![upstream.addr],
        upstream_timeout: Duration::from_millis(500),
        ..DnsConfig::default()
    };
    tweak(&mut cfg);
    ClusterDnsServer::start(cfg, view.clone()).await.expect("start cluster DNS")
}

fn addr(s: &ClusterDnsServer) -> SocketAddr {
    s.local_addrs()[0]
}

/// The lesson's objects: a ClusterIP Service with two named ports, its pods'
/// slice, a headless Service with hostnames, an ExternalName Service.
fn lesson_view() -> ClusterView {
    let view = ClusterView::new();
    view.apply_service(&cluster_ip_service(
        "default",
        "mynapp-svc",
        "10.96.0.100",
        &[("http", "TCP", 80), ("https", "TCP", 443)],
    ));
    view.apply_endpoint_slice(&endpoint_slice(
        "default",
        "mynapp-svc-abcde",
        "mynapp-svc",
        &[("10.244.1.5", None, true), ("10.244.2.6", None, true)],
        &[("http", "TCP", 8080), ("https", "TCP", 8443)],
    ));
    view.apply_service(&external_name_service("default", "mynapp-svc-extname-gl", "www.google.com"));
    view
}

#[tokio::test]
async fn clusterip_service_has_a_srv_and_ptr_records() {
    let up = FakeUpstream::start("127.0.0.2").await;
    let view = lesson_view();
    let server = start(&view, &up).await;
    let a = addr(&server);

    let resp = query_udp(a, "mynapp-svc.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NoError);
    assert!(resp.authoritative, "answers in the cluster zone are authoritative");
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 96, 0, 100)]);
    assert_eq!(resp.answers[0].ttl, 5);

    // Named port: _<port>._<proto>.<svc>.<ns>.svc.<zone> -> the Service name.
    let resp = query_udp(a, "_http._tcp.mynapp-svc.default.svc.cluster.local.", RecordType::SRV, None).await;
    assert_eq!(srv_records(&resp), vec![(0, 100, 80, "mynapp-svc.default.svc.cluster.local.".to_string())]);
    let extra: Vec<_> = resp.additionals.iter().filter(|r| r.record_type() == RecordType::A).collect();
    assert_eq!(extra.len(), 1, "the Service's A record in the additional section");
    assert_eq!(extra[0].name.to_ascii(), "mynapp-svc.default.svc.cluster.local.");

    // CoreDNS also answers SRV for the Service name itself: one per port.
    let resp = query_udp(a, "mynapp-svc.default.svc.cluster.local.", RecordType::SRV, None).await;
    assert_eq!(
        srv_records(&resp),
        vec![
            (0, 50, 80, "mynapp-svc.default.svc.cluster.local.".to_string()),
            (0, 50, 443, "mynapp-svc.default.svc.cluster.local.".to_string()),
        ]
    );

    // Unknown port name, wrong protocol: NXDOMAIN.
    let resp = query_udp(a, "_nope._tcp.mynapp-svc.default.svc.cluster.local.", RecordType::SRV, None).await;
    assert_eq!(resp.response_code, ResponseCode::NXDomain);
    let resp = query_udp(a, "_http._udp.mynapp-svc.default.svc.cluster.local.", RecordType::SRV, None).await;
    assert_eq!(resp.response_code, ResponseCode::NXDomain);
    // `_tcp.<svc>...` is an empty non-terminal above the SRV names.
    let resp = query_udp(a, "_tcp.mynapp-svc.default.svc.cluster.local.", RecordType::SRV, None).await;
    assert_eq!(resp.response_code, ResponseCode::NoError);
    assert!(resp.answers.is_empty());

    // PTR of the ClusterIP.
    let resp = query_udp(a, "100.0.96.10.in-addr.arpa.", RecordType::PTR, None).await;
    assert_eq!(resp.response_code, ResponseCode::NoError);
    assert_eq!(ptr_records(&resp), vec!["mynapp-svc.default.svc.cluster.local."]);
    // ... and of its endpoints (CoreDNS: every endpoint, named by its dashed IP).
    let resp = query_udp(a, "5.1.244.10.in-addr.arpa.", RecordType::PTR, None).await;
    assert_eq!(ptr_records(&resp), vec!["10-244-1-5.mynapp-svc.default.svc.cluster.local."]);

    // Case-insensitive, and the answer keeps the question's spelling.
    let resp = query_udp(a, "MyNapp-Svc.Default.SVC.Cluster.Local.", RecordType::A, None).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 96, 0, 100)]);
    assert_eq!(resp.answers[0].name.to_ascii(), "MyNapp-Svc.Default.SVC.Cluster.Local.");
    assert_eq!(up.total(), 0, "nothing in the cluster zone goes upstream");
}

#[tokio::test]
async fn names_resolve_as_fqdn_and_through_the_pod_search_path() {
    let up = FakeUpstream::start("127.0.0.3").await;
    let view = lesson_view();
    let server = start(&view, &up).await;
    let a = addr(&server);
    let want = vec![Ipv4Addr::new(10, 96, 0, 100)];

    for short in ["mynapp-svc", "mynapp-svc.default", "mynapp-svc.default.svc", "mynapp-svc.default.svc.cluster.local"]
    {
        let (used, resp) = resolve_with_search(a, "default", short, RecordType::A).await;
        assert_eq!(resp.response_code, ResponseCode::NoError, "{short}");
        assert_eq!(a_records(&resp), want, "{short} resolved as {used}");
        assert_eq!(used, "mynapp-svc.default.svc.cluster.local.", "{short}");
    }
    // From another namespace, the short name is not found but `<svc>.<ns>` is.
    let (_, resp) = resolve_with_search(a, "other", "mynapp-svc.default", RecordType::A).await;
    assert_eq!(a_records(&resp), want);
    // The fully qualified name with its trailing dot is asked as is.
    let (used, resp) = resolve_with_search(a, "other", "mynapp-svc.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(used, "mynapp-svc.default.svc.cluster.local.");
    assert_eq!(a_records(&resp), want);
}

#[tokio::test]
async fn service_resolves_as_soon_as_added_and_is_nxdomain_once_deleted() {
    let up = FakeUpstream::start("127.0.0.4").await;
    let view = ClusterView::new();
    let server = start(&view, &up).await;
    let a = addr(&server);
    let q = "late.default.svc.cluster.local.";

    let resp = query_udp(a, q, RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NXDomain);

    let svc = cluster_ip_service("default", "late", "10.96.7.7", &[("", "TCP", 80)]);
    view.apply_service(&svc);
    let resp = query_udp(a, q, RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NoError, "no negative caching inside the zone");
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 96, 7, 7)]);

    // A new ClusterIP is visible at once too.
    view.apply_service(&cluster_ip_service("default", "late", "10.96.7.8", &[("", "TCP", 80)]));
    assert_eq!(a_records(&query_udp(a, q, RecordType::A, None).await), vec![Ipv4Addr::new(10, 96, 7, 8)]);

    view.delete_service(&svc);
    let resp = query_udp(a, q, RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NXDomain);
    let resp = query_udp(a, "8.7.96.10.in-addr.arpa.", RecordType::PTR, None).await;
    assert_ne!(ptr_records(&resp), vec!["late.default.svc.cluster.local."], "PTR gone with the Service");
    assert_eq!(up.total(), 1, "the unknown reverse name fell through to the upstream");
}

#[tokio::test]
async fn headless_service_answers_its_ready_endpoints() {
    let up = FakeUpstream::start("127.0.0.5").await;
    let view = ClusterView::new();
    view.apply_service(&headless_service("db", "pg", &[("postgres", "TCP", 5432)]));
    view.apply_endpoint_slice(&endpoint_slice(
        "db",
        "pg-1",
        "pg",
        &[("10.244.1.10", Some("pg-0"), true), ("10.244.1.11", Some("pg-1"), true), ("10.244.1.12", None, true)],
        &[("postgres", "TCP", 5432)],
    ));
    // A second slice of the same Service, with one unready endpoint.
    view.apply_endpoint_slice(&endpoint_slice(
        "db",
        "pg-2",
        "pg",
        &[("10.244.2.20", Some("pg-2"), false)],
        &[("postgres", "TCP", 5432)],
    ));
    let server = start(&view, &up).await;
    let a = addr(&server);

    let resp = query_udp(a, "pg.db.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NoError);
    assert_eq!(
        a_records(&resp),
        vec![Ipv4Addr::new(10, 244, 1, 10), Ipv4Addr::new(10, 244, 1, 11), Ipv4Addr::new(10, 244, 1, 12)],
        "one A per ready endpoint"
    );

    // <hostname>.<svc>.<ns>.svc.<zone>, and the dashed IP for endpoints without one.
    let resp = query_udp(a, "pg-1.pg.db.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 244, 1, 11)]);
    let resp = query_udp(a, "10-244-1-12.pg.db.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 244, 1, 12)]);
    let resp = query_udp(a, "pg-2.pg.db.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NXDomain, "unready endpoints are not published");

    // SRV: one per ready endpoint, targets its own name; A records in additional.
    let resp = query_udp(a, "_postgres._tcp.pg.db.svc.cluster.local.", RecordType::SRV, Some(1232)).await;
    assert_eq!(
        srv_records(&resp),
        vec![
            (0, 33, 5432, "10-244-1-12.pg.db.svc.cluster.local.".to_string()),
            (0, 33, 5432, "pg-0.pg.db.svc.cluster.local.".to_string()),
            (0, 33, 5432, "pg-1.pg.db.svc.cluster.local.".to_string()),
        ]
    );
    assert_eq!(resp.additionals.iter().filter(|r| r.record_type() == RecordType::A).count(), 3);

    // PTR of an endpoint: its hostname under the Service.
    let resp = query_udp(a, "10.1.244.10.in-addr.arpa.", RecordType::PTR, None).await;
    assert_eq!(ptr_records(&resp), vec!["pg-0.pg.db.svc.cluster.local."]);

    // publishNotReadyAddresses publishes the unready one too.
    let mut svc = headless_service("db", "pg", &[("postgres", "TCP", 5432)]);
    if let Some(spec) = svc.spec.as_mut() {
        spec.publish_not_ready_addresses = Some(true);
    }
    view.apply_service(&svc);
    let resp = query_udp(a, "pg.db.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(a_records(&resp).len(), 4);
    let resp = query_udp(a, "pg-2.pg.db.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 244, 2, 20)]);
}

#[tokio::test]
async fn headless_service_without_ready_endpoints_is_nxdomain() {
    let up = FakeUpstream::start("127.0.0.6").await;
    let view = ClusterView::new();
    view.apply_service(&headless_service("default", "empty", &[("http", "TCP", 80)]));
    let server = start(&view, &up).await;
    let a = addr(&server);

    // No slice at all.
    let resp = query_udp(a, "empty.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NXDomain);
    // A slice with only unready endpoints.
    let slice = endpoint_slice("default", "empty-x", "empty", &[("10.244.3.3", None, false)], &[("http", "TCP", 80)]);
    view.apply_endpoint_slice(&slice);
    let resp = query_udp(a, "empty.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NXDomain);
    // The endpoint becomes ready: it resolves at once.
    let ready = endpoint_slice("default", "empty-x", "empty", &[("10.244.3.3", None, true)], &[("http", "TCP", 80)]);
    view.apply_endpoint_slice(&ready);
    let resp = query_udp(a, "empty.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 244, 3, 3)]);
    // And goes with its slice.
    view.delete_endpoint_slice(&ready);
    let resp = query_udp(a, "empty.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn external_name_is_a_cname_followed_by_the_upstream_addresses() {
    let up = FakeUpstream::start("127.0.0.7").await;
    let view = lesson_view();
    let server = start(&view, &up).await;
    let a = addr(&server);

    let resp = query_udp(a, "mynapp-svc-extname-gl.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NoError);
    assert_eq!(cname_records(&resp), vec!["www.google.com."]);
    assert_eq!(resp.answers[0].record_type(), RecordType::CNAME, "the CNAME comes first");
    assert_eq!(resp.answers[0].ttl, 5);
    assert_eq!(a_records(&resp), GOOGLE_ADDRS.to_vec());
    assert_eq!(up.count("www.google.com."), 1);

    // CNAME asked directly: only the CNAME, nothing upstream.
    let resp = query_udp(a, "mynapp-svc-extname-gl.default.svc.cluster.local.", RecordType::CNAME, None).await;
    assert_eq!(cname_records(&resp), vec!["www.google.com."]);
    assert_eq!(resp.answers.len(), 1);
    // Over TCP as well; the target's answer comes from the cache now.
    let resp = query_tcp(a, "mynapp-svc-extname-gl.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(a_records(&resp), GOOGLE_ADDRS.to_vec());
    assert_eq!(up.count("www.google.com."), 1);

    // An ExternalName pointing inside the zone is followed inside the view.
    view.apply_service(&external_name_service("default", "alias", "mynapp-svc.default.svc.cluster.local"));
    let resp = query_udp(a, "alias.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(cname_records(&resp), vec!["mynapp-svc.default.svc.cluster.local."]);
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 96, 0, 100)]);
}

#[tokio::test]
async fn names_outside_the_zone_are_forwarded_and_cached() {
    let up = FakeUpstream::start("127.0.0.8").await;
    let view = ClusterView::new();
    let server = start(&view, &up).await;
    let a = addr(&server);

    let first = query_udp(a, "www.google.com.", RecordType::A, None).await;
    assert_eq!(first.response_code, ResponseCode::NoError);
    assert!(!first.authoritative);
    assert!(first.recursion_available);
    assert_eq!(a_records(&first), GOOGLE_ADDRS.to_vec());
    let second = query_udp(a, "WWW.Google.COM.", RecordType::A, None).await;
    assert_eq!(a_records(&second), GOOGLE_ADDRS.to_vec());
    assert!(second.answers[0].ttl <= 30, "kept at most 30 s");
    assert_eq!(up.count("www.google.com."), 1, "the second answer came from the cache");

    // Negative answers are forwarded and cached too.
    let nx = query_udp(a, "nowhere.example.", RecordType::A, None).await;
    assert_eq!(nx.response_code, ResponseCode::NXDomain);
    assert!(authority_soa(&nx).is_some());
    let _ = query_udp(a, "nowhere.example.", RecordType::A, None).await;
    assert_eq!(up.count("nowhere.example."), 1);

    let metrics = server.metrics();
    assert!(metrics.contains("coredns_cache_hits_total{server=\"cluster-dns\",type=\"success\"} 1"), "{metrics}");
    assert!(metrics.contains("coredns_cache_hits_total{server=\"cluster-dns\",type=\"denial\"} 1"), "{metrics}");
    assert!(metrics.contains("coredns_forward_requests_total{server=\"cluster-dns\"} 2"), "{metrics}");
}

#[tokio::test]
async fn large_headless_answer_is_truncated_over_udp_and_complete_over_tcp() {
    let up = FakeUpstream::start("127.0.0.9").await;
    let view = ClusterView::new();
    view.apply_service(&headless_service("default", "many", &[("http", "TCP", 80)]));
    let ips: Vec<String> = (0..100).map(|i| format!("10.244.{}.{}", 10 + i / 50, 1 + i % 50)).collect();
    let eps: Vec<EpSpec> = ips.iter().map(|ip| (ip.as_str(), None, true)).collect();
    view.apply_endpoint_slice(&endpoint_slice("default", "many-1", "many", &eps, &[("http", "TCP", 80)]));
    let server = start(&view, &up).await;
    let a = addr(&server);
    let q = "many.default.svc.cluster.local.";

    // Plain UDP (no EDNS): 512 bytes at most, so TC and no answers.
    let resp = query_udp(a, q, RecordType::A, None).await;
    assert!(resp.truncation, "TC bit set");
    assert!(resp.answers.is_empty());
    assert!(resp.edns.is_none(), "no OPT record without one in the query");
    assert_eq!(resp.queries.len(), 1, "the question is kept");

    // EDNS(0) with 4096 bytes: everything fits, and the OPT record is echoed.
    let resp = query_udp(a, q, RecordType::A, Some(4096)).await;
    assert!(!resp.truncation);
    assert_eq!(a_records(&resp).len(), 100);
    assert!(resp.edns.is_some(), "OPT echoed");
    // EDNS(0) with 1232 bytes: 100 A records (~16 bytes each) do not fit.
    let resp = query_udp(a, q, RecordType::A, Some(1232)).await;
    assert!(resp.truncation);
    assert!(resp.edns.is_some(), "OPT kept in the truncated answer");

    // TCP: the whole answer.
    let resp = query_tcp(a, q, RecordType::A).await;
    assert!(!resp.truncation);
    assert_eq!(a_records(&resp).len(), 100);
    let resp = query_tcp(a, "_http._tcp.many.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(srv_records(&resp).len(), 100);
    assert_eq!(resp.additionals.len(), 100);

    let metrics = server.metrics();
    assert!(metrics.contains("coredns_dns_truncated_responses_total{server=\"cluster-dns\"} 2"), "{metrics}");
}

#[tokio::test]
async fn negative_answers_carry_the_soa_and_empty_non_terminals_are_noerror() {
    let up = FakeUpstream::start("127.0.0.10").await;
    let view = lesson_view();
    view.apply_pod(&pod("default", "mynapp-rs-x", "10.244.1.5"));
    let server = start_with(&view, &up, |c| c.ttl = 7).await;
    let a = addr(&server);

    let check_soa = |m: &Message| {
        let (ttl, soa) = authority_soa(m).expect("SOA in the authority section");
        assert_eq!(soa.minimum, 7, "minimum = the zone's TTL");
        assert_eq!(ttl, 7);
        assert_eq!(soa.mname.to_ascii(), "ns.dns.cluster.local.");
        assert_eq!(soa.rname.to_ascii(), "hostmaster.cluster.local.");
    };
    for (q, t) in [
        ("nope.default.svc.cluster.local.", RecordType::A),
        ("mynapp-svc.nons.svc.cluster.local.", RecordType::A),
        ("nons.svc.cluster.local.", RecordType::A),
        ("x.cluster.local.", RecordType::A),
        ("a.b.c.mynapp-svc.default.svc.cluster.local.", RecordType::A),
        ("nope.default.svc.cluster.local.", RecordType::TXT),
        ("1-2-3-4.default.pod.cluster.local.", RecordType::A),
    ] {
        let resp = query_udp(a, q, t, None).await;
        assert_eq!(resp.response_code, ResponseCode::NXDomain, "{q} {t}");
        assert!(resp.authoritative);
        check_soa(&resp);
    }
    for (q, t) in [
        ("mynapp-svc.default.svc.cluster.local.", RecordType::AAAA),
        ("mynapp-svc.default.svc.cluster.local.", RecordType::TXT),
        ("mynapp-svc.default.svc.cluster.local.", RecordType::MX),
        ("default.svc.cluster.local.", RecordType::A),
        ("default.pod.cluster.local.", RecordType::A),
        ("svc.cluster.local.", RecordType::A),
        ("pod.cluster.local.", RecordType::A),
        ("cluster.local.", RecordType::A),
        ("dns-version.cluster.local.", RecordType::A),
    ] {
        let resp = query_udp(a, q, t, None).await;
        assert_eq!(resp.response_code, ResponseCode::NoError, "{q} {t}");
        assert!(resp.answers.is_empty(), "{q} {t}");
        check_soa(&resp);
    }
    // The apex SOA itself.
    let resp = query_udp(a, "cluster.local.", RecordType::SOA, None).await;
    assert_eq!(resp.answers.len(), 1);
    assert!(matches!(resp.answers[0].data, RData::SOA(_)));
    assert_eq!(up.total(), 0);
}

#[tokio::test]
async fn dns_version_is_1_1_0_and_pods_resolve_only_when_they_exist() {
    let up = FakeUpstream::start("127.0.0.11").await;
    let view = ClusterView::new();
    let p = pod("default", "web-0", "10.244.1.7");
    view.apply_pod(&p);
    let server = start(&view, &up).await;
    let a = addr(&server);

    let resp = query_udp(a, "dns-version.cluster.local.", RecordType::TXT, None).await;
    let txt: Vec<String> = resp
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(txt, vec!["1.1.0"]);

    // pods verified: only an existing pod with that IP in that namespace.
    let resp = query_udp(a, "10-244-1-7.default.pod.cluster.local.", RecordType::A, None).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 244, 1, 7)]);
    let resp = query_udp(a, "10-244-1-7.other.pod.cluster.local.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NXDomain, "wrong namespace");
    let resp = query_udp(a, "10-244-1-8.default.pod.cluster.local.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NXDomain, "no such pod");
    view.delete_pod(&p);
    let resp = query_udp(a, "10-244-1-7.default.pod.cluster.local.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::NXDomain, "gone with the pod");
}

#[tokio::test]
async fn edns_is_echoed_and_other_versions_get_badvers() {
    let up = FakeUpstream::start("127.0.0.12").await;
    let view = lesson_view();
    let server = start(&view, &up).await;
    let a = addr(&server);

    let resp = query_udp(a, "mynapp-svc.default.svc.cluster.local.", RecordType::A, Some(4096)).await;
    let edns = resp.edns.as_ref().expect("OPT echoed");
    assert_eq!(edns.version(), 0);
    assert!(edns.max_payload() >= 512);

    let mut req = Message::new(4242, MessageType::Query, OpCode::Query);
    req.add_query(Query::query(name("mynapp-svc.default.svc.cluster.local."), RecordType::A));
    let mut e = Edns::new();
    e.set_version(1);
    req.set_edns(e);
    let resp = send_udp(a, &req).await;
    // 16 is BADVERS with an OPT record (RFC 6891); hickory names the code BADSIG.
    assert_eq!(u16::from(resp.response_code), 16);
    assert!(resp.edns.is_some());

    // Two questions: FORMERR.
    let mut req = Message::new(4243, MessageType::Query, OpCode::Query);
    req.add_query(Query::query(name("a.cluster.local."), RecordType::A));
    req.add_query(Query::query(name("b.cluster.local."), RecordType::A));
    assert_eq!(send_udp(a, &req).await.response_code, ResponseCode::FormErr);

    // The cluster zone exists in class IN only.
    let mut req = Message::new(4244, MessageType::Query, OpCode::Query);
    let mut q = Query::query(name("mynapp-svc.default.svc.cluster.local."), RecordType::A);
    q.set_query_class(DNSClass::CH);
    req.add_query(q);
    assert_eq!(send_udp(a, &req).await.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn unsynced_view_answers_servfail_rather_than_nxdomain() {
    let up = FakeUpstream::start("127.0.0.13").await;
    let view = ClusterView::new_unsynced();
    let server = start(&view, &up).await;
    let a = addr(&server);
    let resp = query_udp(a, "mynapp-svc.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(resp.response_code, ResponseCode::ServFail);
    view.apply_service(&cluster_ip_service("default", "mynapp-svc", "10.96.0.100", &[("http", "TCP", 80)]));
    view.set_synced(true);
    let resp = query_udp(a, "mynapp-svc.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(a_records(&resp), vec![Ipv4Addr::new(10, 96, 0, 100)]);
}

#[tokio::test]
async fn reverse_names_of_unknown_addresses_are_forwarded() {
    let up = FakeUpstream::start("127.0.0.14").await;
    let view = lesson_view();
    let server = start(&view, &up).await;
    let resp = query_udp(addr(&server), "10.2.0.192.in-addr.arpa.", RecordType::PTR, None).await;
    assert_eq!(ptr_records(&resp), vec!["www.google.com."]);
    assert_eq!(up.total(), 1);
}

#[tokio::test]
async fn metrics_count_requests_by_type_and_rcode_and_are_served_over_http() {
    let up = FakeUpstream::start("127.0.0.15").await;
    let view = lesson_view();
    let server = start_with(&view, &up, |c| c.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let a = addr(&server);
    let _ = query_udp(a, "mynapp-svc.default.svc.cluster.local.", RecordType::A, None).await;
    let _ = query_udp(a, "nope.default.svc.cluster.local.", RecordType::A, None).await;
    let _ = query_tcp(a, "_http._tcp.mynapp-svc.default.svc.cluster.local.", RecordType::SRV).await;

    let text = server.metrics();
    for line in [
        "coredns_dns_requests_total{server=\"cluster-dns\",proto=\"udp\",type=\"A\"} 2",
        "coredns_dns_requests_total{server=\"cluster-dns\",proto=\"tcp\",type=\"SRV\"} 1",
        "coredns_dns_responses_total{server=\"cluster-dns\",rcode=\"NOERROR\"} 2",
        "coredns_dns_responses_total{server=\"cluster-dns\",rcode=\"NXDOMAIN\"} 1",
        "coredns_dns_request_duration_seconds_count{server=\"cluster-dns\"} 3",
        "coredns_dns_request_duration_seconds_bucket{server=\"cluster-dns\",le=\"+Inf\"} 3",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }

    let http = server.metrics_addr().expect("metrics listener");
    let body = http_get(http, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("coredns_dns_requests_total"), "{body}");
    let body = http_get(http, "/health").await;
    assert!(body.starts_with("HTTP/1.1 200") && body.ends_with("OK"), "{body}");
    let body = http_get(http, "/ready").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let body = http_get(http, "/nope").await;
    assert!(body.starts_with("HTTP/1.1 404"), "{body}");
}

/// dig's output with every run of whitespace made one space.
fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect metrics");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.expect("write");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await.expect("in time").expect("read");
    out
}

#[tokio::test]
async fn dig_sees_every_record_type_over_udp_and_tcp() {
    if !have_dig() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true, so this test may not skip: dig not installed");
        eprintln!("skipping: dig not installed (apt-get install dnsutils)");
        return;
    }
    let up = FakeUpstream::start("127.0.0.16").await;
    let view = lesson_view();
    view.apply_service(&headless_service("default", "many", &[("http", "TCP", 80)]));
    let ips: Vec<String> = (1..=100).map(|i| format!("10.244.9.{i}")).collect();
    let eps: Vec<EpSpec> = ips.iter().map(|ip| (ip.as_str(), None, true)).collect();
    view.apply_endpoint_slice(&endpoint_slice("default", "many-1", "many", &eps, &[("http", "TCP", 80)]));
    let server = start(&view, &up).await;
    let a = addr(&server);

    let out = dig(a, &["mynapp-svc.default.svc.cluster.local", "A", "+short"]).await;
    assert_eq!(out.trim(), "10.96.0.100");
    let out = dig(a, &["mynapp-svc.default.svc.cluster.local", "A", "+tcp", "+short"]).await;
    assert_eq!(out.trim(), "10.96.0.100");
    let out = dig(a, &["_https._tcp.mynapp-svc.default.svc.cluster.local", "SRV", "+short"]).await;
    assert_eq!(out.trim(), "0 100 443 mynapp-svc.default.svc.cluster.local.");
    let out = dig(a, &["-x", "10.96.0.100", "+short"]).await;
    assert_eq!(out.trim(), "mynapp-svc.default.svc.cluster.local.");
    let out = dig(a, &["dns-version.cluster.local", "TXT", "+short"]).await;
    assert_eq!(out.trim(), "\"1.1.0\"");
    let out = words(&dig(a, &["mynapp-svc-extname-gl.default.svc.cluster.local", "A", "+noall", "+answer"]).await);
    assert!(out.contains("mynapp-svc-extname-gl.default.svc.cluster.local. 5 IN CNAME www.google.com."), "{out}");
    assert!(out.contains("192.0.2.10") && out.contains("192.0.2.11"), "{out}");
    let out = words(&dig(a, &["nope.default.svc.cluster.local", "A"]).await);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(out.contains("cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local."), "{out}");
    let out = dig(a, &["default.svc.cluster.local", "A"]).await;
    assert!(out.contains("status: NOERROR") && out.contains("ANSWER: 0"), "{out}");

    // Truncation: plain UDP without EDNS sets TC (+ignore keeps dig from retrying
    // over TCP); by default dig retries over TCP and gets all 100.
    let out = dig(a, &["many.default.svc.cluster.local", "A", "+notcp", "+noedns", "+ignore"]).await;
    assert!(out.contains(" tc") && out.contains("ANSWER: 0"), "{out}");
    let out = dig(a, &["many.default.svc.cluster.local", "A", "+notcp", "+noedns", "+short"]).await;
    assert_eq!(out.lines().count(), 100, "{out}");
    let out = dig(a, &["many.default.svc.cluster.local", "A", "+tcp", "+short"]).await;
    assert_eq!(out.lines().count(), 100, "{out}");
    // Outside the zone, through the fake upstream.
    let out = dig(a, &["www.google.com", "A", "+short"]).await;
    assert_eq!(out.lines().count(), 2, "{out}");
}
