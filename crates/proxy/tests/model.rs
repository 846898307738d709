//! The pure model: Services + EndpointSlices -> service ports and endpoints (no root needed).

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use proxy::render::assign_slots;
use proxy::{
    categorize_endpoints, from_objects, Endpoint, Protocol, ServicePortInfo, ServiceType, SessionAffinity,
    TrafficPolicy,
};
use serde_json::{json, Value};

fn service(v: Value) -> Service {
    match serde_json::from_value(v) {
        Ok(s) => s,
        Err(e) => panic!("bad test Service: {e}"),
    }
}

fn slice(v: Value) -> EndpointSlice {
    match serde_json::from_value(v) {
        Ok(s) => s,
        Err(e) => panic!("bad test EndpointSlice: {e}"),
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
}

fn multiport() -> Service {
    service(json!({
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "externalIPs": ["192.168.122.50", "fd00::1"],
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 31111},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443, "nodePort": 31112},
                {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 31113}
            ],
            "sessionAffinity": "ClientIP",
            "externalTrafficPolicy": "Local",
            "internalTrafficPolicy": "Cluster"
        }
    }))
}

fn web_slice(name: &str, eps: Value) -> EndpointSlice {
    slice(json!({
        "metadata": {"namespace": "default", "name": name, "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [
            {"name": "http", "port": 8080, "protocol": "TCP"},
            {"name": "https", "port": 8443, "protocol": "TCP"},
            {"name": "dns", "port": 5353, "protocol": "UDP"},
            {"name": "http", "port": 9999, "protocol": "UDP"}
        ],
        "endpoints": eps
    }))
}

#[test]
fn service_ports_carry_the_service_fields() {
    let out = from_objects(&[multiport()], &[] as &[EndpointSlice], "node-a");
    assert_eq!(out.len(), 3);
    let names: Vec<(&str, Protocol, u16)> =
        out.iter().map(|(s, _)| (s.port_name.as_str(), s.protocol, s.port)).collect();
    assert_eq!(names, vec![("dns", Protocol::Udp, 53), ("http", Protocol::Tcp, 80), ("https", Protocol::Tcp, 443)]);
    let (http, eps) = &out[1];
    assert!(eps.is_empty());
    assert_eq!(http.cluster_ip, ip("10.96.0.10"));
    assert_eq!(http.service_type, ServiceType::NodePort);
    assert_eq!(http.node_port, Some(31111));
    assert_eq!(http.external_ips, vec![ip("192.168.122.50")], "IPv6 externalIPs are for the IPv6 proxier");
    assert_eq!(http.session_affinity, SessionAffinity::ClientIP { timeout_seconds: 10800 }, "default timeout");
    assert_eq!(http.external_traffic_policy, TrafficPolicy::Local);
    assert!(http.external_policy_local() && http.externally_accessible());
    assert_eq!(http.port_name_string(), "default/web:http");
}

#[test]
fn slices_match_ports_by_name_and_protocol() {
    let s1 = web_slice(
        "web-a",
        json!([
            {"addresses": ["10.244.0.2"], "nodeName": "node-a", "conditions": {"ready": true}},
            {"addresses": ["10.244.1.2"], "nodeName": "node-b", "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["10.244.1.3"], "nodeName": "node-b"}
        ]),
    );
    // The same endpoint again in another slice, this time marked with our node: the local copy wins.
    let s2 = web_slice("web-b", json!([{"addresses": ["10.244.1.3"], "nodeName": "node-a"}]));
    let out = from_objects(&[multiport()], &[s1, s2], "node-a");
    let http = &out[1].1;
    assert_eq!(http.len(), 3, "{http:?}");
    assert!(http.iter().all(|e| e.port == 8080), "TCP port http, not the UDP one: {http:?}");
    let e2 = &http[1];
    assert_eq!(
        (e2.ip, e2.ready, e2.serving, e2.terminating, e2.is_local),
        (ip("10.244.1.2"), false, true, true, false)
    );
    let e3 = &http[2];
    assert_eq!((e3.ip, e3.ready, e3.serving, e3.terminating), (ip("10.244.1.3"), true, true, false), "nil conditions");
    assert!(e3.is_local, "duplicate endpoint: the local copy wins");
    assert!(out[0].1.iter().all(|e| e.port == 5353), "dns gets the UDP port");
}

#[test]
fn slices_of_other_services_namespaces_and_families_are_ignored() {
    let other_ns = slice(json!({
        "metadata": {"namespace": "other", "name": "web-x", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 1, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.0.0.1"]}]
    }));
    let v6 = slice(json!({
        "metadata": {"namespace": "default", "name": "web-v6", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv6", "ports": [{"name": "http", "port": 1, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["fd00::2"]}]
    }));
    let unlabelled = slice(json!({
        "metadata": {"namespace": "default", "name": "web-u"},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 1, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.0.0.2"]}]
    }));
    let out = from_objects(&[multiport()], &[other_ns, v6, unlabelled], "node-a");
    assert!(out.iter().all(|(_, e)| e.is_empty()), "{out:?}");
}

#[test]
fn headless_externalname_and_foreign_proxy_services_are_skipped() {
    let headless = service(json!({
        "metadata": {"namespace": "default", "name": "h"},
        "spec": {"clusterIP": "None", "ports": [{"port": 80}]}
    }));
    let extname = service(json!({
        "metadata": {"namespace": "default", "name": "x"},
        "spec": {"type": "ExternalName", "externalName": "www.google.com"}
    }));
    let foreign = service(json!({
        "metadata": {"namespace": "default", "name": "f", "labels": {"service.kubernetes.io/service-proxy-name": "other"}},
        "spec": {"clusterIP": "10.96.0.5", "ports": [{"port": 80}]}
    }));
    let plain = service(json!({
        "metadata": {"namespace": "default", "name": "p"},
        "spec": {"clusterIP": "10.96.0.6", "ports": [{"port": 80}]}
    }));
    let out = from_objects(&[headless, extname, foreign, plain], &[] as &[EndpointSlice], "node-a");
    assert_eq!(out.len(), 1);
    let p = &out[0].0;
    assert_eq!((p.name.as_str(), p.port_name.as_str(), p.protocol, p.node_port), ("p", "", Protocol::Tcp, None));
}

#[test]
fn load_balancer_ingress_ips_skip_proxy_mode() {
    let lb = service(json!({
        "metadata": {"namespace": "default", "name": "lb"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.7", "ports": [{"port": 80, "nodePort": 30080}],
                 "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}},
        "status": {"loadBalancer": {"ingress": [
            {"ip": "192.168.122.201"}, {"ip": "192.168.122.202", "ipMode": "Proxy"}, {"hostname": "lb.example"}
        ]}}
    }));
    let out = from_objects(&[lb], &[] as &[EndpointSlice], "node-a");
    let s = &out[0].0;
    assert_eq!(s.load_balancer_ips, vec![ip("192.168.122.201")]);
    assert_eq!(s.node_port, Some(30080));
    assert_eq!(s.session_affinity, SessionAffinity::ClientIP { timeout_seconds: 60 });
}

fn lb_with(spec_extra: Value, annotations: Value) -> Service {
    let mut spec = json!({"type": "LoadBalancer", "clusterIP": "10.96.0.8",
                          "ports": [{"port": 80, "nodePort": 30081}]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    service(json!({
        "metadata": {"namespace": "default", "name": "lb", "annotations": annotations},
        "spec": spec,
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.122.201"}]}}
    }))
}

fn nets(v: &[&str]) -> Vec<ipnet::Ipv4Net> {
    v.iter().map(|s| s.parse().expect("test CIDR")).collect()
}

#[test]
fn load_balancer_source_ranges_are_parsed_as_upstream() {
    // Whitespace is trimmed, IPv6 and unparsable entries are skipped (MapCIDRsByIPFamily),
    // host bits are cleared and leading zeros read as decimal (ParseCIDRSloppy), overlaps merged.
    let svc = lb_with(
        json!({"loadBalancerSourceRanges": [" 192.168.122.0/24 ", "fd00::/64", "not-a-cidr", "10.1.2.3/8",
                                            "010.2.0.0/16", "192.168.122.128/25", "1.2.3.4", "1.2.3.0/33"]}),
        json!({}),
    );
    assert_eq!(proxy::model::load_balancer_source_ranges(&svc), nets(&["10.0.0.0/8", "192.168.122.0/24"]));
    let out = from_objects(&[svc], &[] as &[EndpointSlice], "node-a");
    assert_eq!(out[0].0.load_balancer_source_ranges, nets(&["10.0.0.0/8", "192.168.122.0/24"]));

    // The annotation counts only when the field is empty.
    let ann = json!({"service.beta.kubernetes.io/load-balancer-source-ranges": "192.168.1.0/24, 172.16.0.0/12,"});
    let svc = lb_with(json!({}), ann.clone());
    assert_eq!(proxy::model::load_balancer_source_ranges(&svc), nets(&["172.16.0.0/12", "192.168.1.0/24"]));
    let svc = lb_with(json!({"loadBalancerSourceRanges": []}), ann.clone());
    assert_eq!(proxy::model::load_balancer_source_ranges(&svc), nets(&["172.16.0.0/12", "192.168.1.0/24"]));
    let svc = lb_with(json!({"loadBalancerSourceRanges": ["10.0.0.0/8"]}), ann);
    assert_eq!(proxy::model::load_balancer_source_ranges(&svc), nets(&["10.0.0.0/8"]));
    let svc = lb_with(json!({}), json!({}));
    assert!(proxy::model::load_balancer_source_ranges(&svc).is_empty(), "no ranges: no filtering");

    // Only LoadBalancer Services carry them into the model.
    let mut np = lb_with(json!({"loadBalancerSourceRanges": ["10.0.0.0/8"]}), json!({}));
    if let Some(spec) = np.spec.as_mut() {
        spec.type_ = Some("NodePort".into());
    }
    let out = from_objects(&[np], &[] as &[EndpointSlice], "node-a");
    assert!(out[0].0.load_balancer_source_ranges.is_empty());
}

#[test]
fn health_check_node_port_only_for_local_load_balancers() {
    let local = lb_with(json!({"externalTrafficPolicy": "Local", "healthCheckNodePort": 32000}), json!({}));
    let out = from_objects(std::slice::from_ref(&local), &[] as &[EndpointSlice], "node-a");
    assert_eq!(out[0].0.health_check_node_port, Some(32000));
    let cluster = lb_with(json!({"externalTrafficPolicy": "Cluster", "healthCheckNodePort": 32000}), json!({}));
    let out = from_objects(&[cluster], &[] as &[EndpointSlice], "node-a");
    assert_eq!(out[0].0.health_check_node_port, None, "Cluster policy: no health check");
    let mut np = local;
    if let Some(spec) = np.spec.as_mut() {
        spec.type_ = Some("NodePort".into());
    }
    let out = from_objects(&[np], &[] as &[EndpointSlice], "node-a");
    assert_eq!(out[0].0.health_check_node_port, None, "NodePort: no health check");
    let unset = lb_with(json!({"externalTrafficPolicy": "Local"}), json!({}));
    let out = from_objects(&[unset], &[] as &[EndpointSlice], "node-a");
    assert_eq!(out[0].0.health_check_node_port, None);
}

fn ep(last: u8, ready: bool, serving: bool, terminating: bool, local: bool) -> Endpoint {
    Endpoint {
        ip: Ipv4Addr::new(10, 244, 0, last),
        port: 8080,
        ready,
        serving,
        terminating,
        node_name: Some(if local { "node-a" } else { "node-b" }.into()),
        is_local: local,
        zone_hints: Vec::new(),
    }
}

#[test]
fn categorize_prefers_ready_then_serving_terminating() {
    let svc = ServicePortInfo { cluster_ip: ip("10.96.0.1"), port: 80, ..ServicePortInfo::default() };
    let eps = vec![ep(2, true, true, false, false), ep(3, false, true, true, true), ep(4, false, false, true, true)];
    let c = categorize_endpoints(&svc, &eps, None);
    assert_eq!(c.cluster, vec![eps[0].clone()], "ready only");
    assert!(c.has_any && c.local.is_empty());

    let draining =
        vec![ep(3, false, true, true, true), ep(4, false, false, true, true), ep(5, false, true, false, true)];
    let c = categorize_endpoints(&svc, &draining, None);
    assert_eq!(c.cluster, vec![draining[0].clone()], "fallback: serving and terminating");
    assert!(c.has_any);

    let none = vec![ep(4, false, false, true, true)];
    let c = categorize_endpoints(&svc, &none, None);
    assert!(!c.has_any && c.cluster.is_empty());
}

#[test]
fn categorize_local_policies() {
    let mut svc = ServicePortInfo {
        cluster_ip: ip("10.96.0.1"),
        port: 80,
        service_type: ServiceType::NodePort,
        node_port: Some(30000),
        external_traffic_policy: TrafficPolicy::Local,
        ..ServicePortInfo::default()
    };
    let eps = vec![ep(2, true, true, false, false), ep(3, true, true, false, true)];
    let c = categorize_endpoints(&svc, &eps, None);
    assert_eq!(c.cluster.len(), 2, "external Local policy still needs cluster endpoints (short-circuit)");
    assert_eq!(c.local, vec![eps[1].clone()]);
    assert_eq!(c.all_reachable.len(), 2);

    svc.internal_traffic_policy = TrafficPolicy::Local;
    svc.service_type = ServiceType::ClusterIP;
    let c = categorize_endpoints(&svc, &[eps[0].clone()], None);
    assert!(c.cluster.is_empty() && c.local.is_empty(), "internal Local policy without local endpoints");
    assert!(c.has_any, "but the service has endpoints elsewhere (traffic is dropped, not rejected)");

    // Local endpoints only terminating: they are used (and merged with the ready remote ones).
    svc.internal_traffic_policy = TrafficPolicy::Cluster;
    svc.service_type = ServiceType::NodePort;
    let eps = vec![ep(2, true, true, false, false), ep(3, false, true, true, true)];
    let c = categorize_endpoints(&svc, &eps, None);
    assert_eq!(c.local, vec![eps[1].clone()]);
    assert_eq!(c.all_reachable.len(), 2);
}

#[test]
fn endpoint_slots_are_stable() {
    let e = |n: u8| (Ipv4Addr::new(10, 0, 0, n), 80u16);
    let old = vec![e(1), e(2), e(3), e(4)];
    assert_eq!(assign_slots(&old, &[e(1), e(2), e(3), e(4)]), old, "no change");
    assert_eq!(assign_slots(&old, &[e(1), e(9), e(3), e(4)]), vec![e(1), e(9), e(3), e(4)], "replaced in place");
    assert_eq!(assign_slots(&old, &[e(1), e(3), e(4)]), vec![e(1), e(4), e(3)], "last moves into the hole");
    assert_eq!(assign_slots(&old, &[e(1), e(2), e(3), e(4), e(5)]), vec![e(1), e(2), e(3), e(4), e(5)], "appended");
    assert_eq!(assign_slots(&old, &[e(4)]), vec![e(4)]);
    assert_eq!(assign_slots(&old, &[]), Vec::<(Ipv4Addr, u16)>::new());
    assert_eq!(assign_slots(&[], &[e(2), e(1)]), vec![e(2), e(1)]);
}

fn plain_service(name: &str, ip: &str) -> Service {
    service(json!({
        "metadata": {"namespace": "default", "name": name},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))
}

fn plain_slice(svc: &str, name: &str, ips: &[&str]) -> EndpointSlice {
    let eps: Vec<Value> = ips.iter().map(|ip| json!({"addresses": [ip], "nodeName": "node-a"})).collect();
    slice(json!({
        "metadata": {"namespace": "default", "name": name, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps
    }))
}

#[test]
fn model_cache_matches_from_objects_and_converts_only_changes() {
    use std::sync::Arc;
    let mut services: Vec<Arc<Service>> = vec![
        Arc::new(plain_service("a", "10.96.0.1")),
        Arc::new(multiport()),
        Arc::new(plain_service("b", "10.96.0.2")),
    ];
    let mut slices: Vec<Arc<EndpointSlice>> = vec![
        Arc::new(plain_slice("a", "a-1", &["10.244.0.2"])),
        Arc::new(web_slice("web-2", json!([{"addresses": ["10.244.0.9"], "nodeName": "node-a"}]))),
        Arc::new(web_slice("web-1", json!([{"addresses": ["10.244.0.9"], "nodeName": "node-b"}]))),
        Arc::new(plain_slice("b", "b-1", &["10.244.0.3", "10.244.0.4"])),
    ];
    let mut cache = proxy::ModelCache::new("node-a");
    let check = |cache: &mut proxy::ModelCache, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]| {
        let want = from_objects(services, slices, "node-a");
        let got: Vec<_> = cache.update(services, slices).into_iter().cloned().collect();
        assert_eq!(got, want);
        cache.converted()
    };
    assert_eq!(check(&mut cache, &services, &slices), 3, "the first update converts everything");
    assert_eq!(check(&mut cache, &services, &slices), 0, "nothing changed");

    // A new object for one slice (the store replaces the Arc on update): only its Service.
    slices[3] = Arc::new(plain_slice("b", "b-1", &["10.244.0.3"]));
    assert_eq!(check(&mut cache, &services, &slices), 1);
    // A Service updated; a slice added for another; a Service deleted; a slice deleted.
    services[0] = Arc::new(plain_service("a", "10.96.0.5"));
    slices.push(Arc::new(plain_slice("b", "b-2", &["10.244.0.7"])));
    assert_eq!(check(&mut cache, &services, &slices), 2);
    services.remove(1);
    assert_eq!(check(&mut cache, &services, &slices), 0, "a deletion converts nothing");
    slices.remove(0);
    assert_eq!(check(&mut cache, &services, &slices), 1);
    // An equal but new object counts as a change (identity, not content, is compared).
    services[1] = Arc::new(plain_service("b", "10.96.0.2"));
    assert_eq!(check(&mut cache, &services, &slices), 1);
}

fn hinted(last: u8, zones: &[&str], local: bool) -> Endpoint {
    Endpoint { zone_hints: zones.iter().map(|z| z.to_string()).collect(), ..ep(last, true, true, false, local) }
}

#[test]
fn categorize_follows_zone_hints_as_upstream() {
    let svc = ServicePortInfo { cluster_ip: ip("10.96.0.1"), port: 80, ..ServicePortInfo::default() };
    let ips = |c: &[Endpoint]| c.iter().map(|e| e.ip.octets()[3]).collect::<Vec<_>>();
    let eps = vec![hinted(1, &["a"], true), hinted(2, &["b"], false), hinted(3, &["a", "b"], false)];
    assert_eq!(ips(&categorize_endpoints(&svc, &eps, Some("a")).cluster), vec![1, 3]);
    assert_eq!(ips(&categorize_endpoints(&svc, &eps, Some("b")).cluster), vec![2, 3]);
    // No endpoint for this zone, no zone label, or one ready endpoint without a hint: all.
    assert_eq!(ips(&categorize_endpoints(&svc, &eps, Some("c")).cluster), vec![1, 2, 3]);
    assert_eq!(ips(&categorize_endpoints(&svc, &eps, None).cluster), vec![1, 2, 3]);
    let mut partial = eps.clone();
    partial.push(hinted(4, &[], false));
    assert_eq!(ips(&categorize_endpoints(&svc, &partial, Some("a")).cluster), vec![1, 2, 3, 4]);
    // A not-ready endpoint without hints does not turn hints off.
    let mut sick = eps.clone();
    sick.push(Endpoint { ready: false, ..hinted(5, &[], false) });
    assert_eq!(ips(&categorize_endpoints(&svc, &sick, Some("a")).cluster), vec![1, 3]);
    // Local traffic policy ignores hints.
    let local = ServicePortInfo { internal_traffic_policy: TrafficPolicy::Local, ..svc.clone() };
    assert_eq!(ips(&categorize_endpoints(&local, &eps, Some("b")).local), vec![1]);
}

#[test]
fn zone_hints_are_read_from_slices() {
    let s = web_slice(
        "web-1",
        json!([{"addresses": ["10.244.0.9"], "hints": {"forZones": [{"name": "zone-a"}]}}, {"addresses": ["10.244.0.10"]}]),
    );
    let out = from_objects(&[multiport()], &[s], "node-a");
    let (_, eps) = out.iter().find(|(i, _)| i.port_name == "http").expect("http port");
    let hints: Vec<Vec<String>> = eps.iter().map(|e| e.zone_hints.clone()).collect();
    assert_eq!(hints, vec![vec!["zone-a".to_string()], vec![]]);
}
