use super::*;
use serde_json::json;

fn cfg() -> ServiceConfig {
    ServiceConfig::default()
}

fn from_json(v: serde_json::Value) -> Service {
    serde_json::from_value(v).expect("test manifest")
}

fn strings(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(|e| e.to_string()).collect()
}

/// The lesson's `mynapp-svc.yml`, as the server sees it (namespace from the URL).
fn mynapp_svc() -> Service {
    from_json(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "mynapp-svc", "namespace": "default"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "mynapp-rs"}}
    }))
}

fn defaulted(mut svc: Service) -> Service {
    set_defaults(&mut svc);
    svc
}

fn spec_mut(svc: &mut Service) -> &mut ServiceSpec {
    svc.spec.get_or_insert_with(ServiceSpec::default)
}

/// Validates `mynapp-svc` after defaulting and then `mutate`.
fn check(mutate: impl FnOnce(&mut Service), expected: &[&str]) {
    let mut svc = defaulted(mynapp_svc());
    mutate(&mut svc);
    assert_eq!(strings(&validate(&svc, &cfg())), expected);
}

/// Defaults `mynapp-svc` with `mutate` applied *before* defaulting, then validates.
fn check_raw(mutate: impl FnOnce(&mut Service), expected: &[&str]) {
    let mut svc = mynapp_svc();
    mutate(&mut svc);
    set_defaults(&mut svc);
    assert_eq!(strings(&validate(&svc, &cfg())), expected);
}

fn port(name: &str, port: i32, target: i32) -> ServicePort {
    ServicePort {
        name: (!name.is_empty()).then(|| name.to_string()),
        port,
        target_port: Some(IntOrString::Int(target)),
        ..Default::default()
    }
}

const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

// ----- defaults: the lesson's manifests become what a real cluster stores -----

fn create(manifest: serde_json::Value, seed: u64) -> (Service, IpAllocator, PortAllocator) {
    let mut svc = from_json(manifest);
    svc.metadata.namespace = Some("default".into());
    set_defaults(&mut svc);
    prepare_for_create(&mut svc);
    let mut ips = IpAllocator::with_seed(cfg().service_cidr, seed);
    let mut ports = PortAllocator::with_seed(cfg().node_port_range, seed);
    allocate_create(&mut svc, &mut ips, &mut ports).expect("allocation");
    assert_eq!(strings(&validate(&svc, &cfg())), Vec::<String>::new());
    (svc, ips, ports)
}

fn cluster_ip_of(svc: &Service) -> String {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.clone()).expect("clusterIP")
}

#[test]
fn lesson_cluster_ip_service() {
    let (svc, ips, _) = create(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mynapp-svc"},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "mynapp-rs"}}}),
        1,
    );
    let ip = cluster_ip_of(&svc);
    let addr: Ipv4Addr = ip.parse().unwrap();
    assert!(ips.is_allocated(addr));
    // Dynamic allocation stays out of the static block 10.96.0.1-10.96.1.0.
    assert!(u32::from(addr) > u32::from(Ipv4Addr::new(10, 96, 1, 0)), "{ip}");
    assert_eq!(
        serde_json::to_value(&svc).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "mynapp-svc", "namespace": "default"},
            "spec": {
                "clusterIP": ip, "clusterIPs": [ip],
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
                "selector": {"app": "mynapp-rs"},
                "sessionAffinity": "None", "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        })
    );
}

#[test]
fn lesson_session_affinity_and_multiport() {
    let (svc, _, _) = create(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mynapp-svc-ses-aff"},
            "spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 80, "targetPort": 8080}],
                "selector": {"app": "mynapp-rs"}}}),
        2,
    );
    let v = serde_json::to_value(&svc).unwrap();
    assert_eq!(v["spec"]["sessionAffinity"], "ClientIP");
    assert_eq!(v["spec"]["sessionAffinityConfig"], json!({"clientIP": {"timeoutSeconds": 10800}}));

    let (svc, _, _) = create(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mynapp-svc-mp"},
            "spec": {"ports": [{"name": "mynapp-http", "port": 80, "targetPort": 8080},
                               {"name": "mynapp-https", "port": 443, "targetPort": 8443}],
                "selector": {"app": "mynapp-rs"}}}),
        3,
    );
    assert_eq!(
        serde_json::to_value(&svc).unwrap()["spec"]["ports"],
        json!([{"name": "mynapp-http", "port": 80, "protocol": "TCP", "targetPort": 8080},
               {"name": "mynapp-https", "port": 443, "protocol": "TCP", "targetPort": 8443}])
    );
}

#[test]
fn lesson_node_port_and_load_balancer() {
    let (svc, _, ports) = create(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mynapp-svc-ext-np"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080, "nodePort": 31111}],
                "selector": {"app": "mynapp-rs"}}}),
        4,
    );
    assert!(ports.is_allocated(31111));
    let ip = cluster_ip_of(&svc);
    assert_eq!(
        serde_json::to_value(&svc).unwrap()["spec"],
        json!({
            "clusterIP": ip, "clusterIPs": [ip],
            "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [{"nodePort": 31111, "port": 80, "protocol": "TCP", "targetPort": 8080}],
            "selector": {"app": "mynapp-rs"},
            "sessionAffinity": "None", "type": "NodePort"
        })
    );

    let (svc, _, ports) = create(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mynapp-svc-ext-lb"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 8080}],
                "selector": {"app": "mynapp-rs"}}}),
        5,
    );
    let ip = cluster_ip_of(&svc);
    let np = svc.spec.as_ref().and_then(|s| s.ports.as_ref()).and_then(|p| p[0].node_port).unwrap();
    assert!((30086..=32767).contains(&np), "{np}");
    assert!(ports.is_allocated(i64::from(np)));
    assert_eq!(
        serde_json::to_value(&svc).unwrap()["spec"],
        json!({
            "allocateLoadBalancerNodePorts": true,
            "clusterIP": ip, "clusterIPs": [ip],
            "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [{"nodePort": np, "port": 80, "protocol": "TCP", "targetPort": 8080}],
            "selector": {"app": "mynapp-rs"},
            "sessionAffinity": "None", "type": "LoadBalancer"
        })
    );
}

#[test]
fn lesson_external_name() {
    let (svc, ips, ports) = create(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mynapp-svc-extname-gl"},
            "spec": {"type": "ExternalName", "externalName": "www.google.com"}}),
        6,
    );
    assert_eq!(ips.used_count(), 0);
    assert_eq!(ports.used_count(), 0);
    assert_eq!(
        serde_json::to_value(&svc).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "mynapp-svc-extname-gl", "namespace": "default"},
            "spec": {"externalName": "www.google.com", "sessionAffinity": "None", "type": "ExternalName"},
            "status": {"loadBalancer": {}}
        })
    );
}

#[test]
fn defaults_headless_and_explicit_values() {
    // Headless with selector: single stack.
    let mut svc = mynapp_svc();
    spec_mut(&mut svc).cluster_ip = Some("None".into());
    set_defaults(&mut svc);
    let spec = svc.spec.clone().unwrap();
    assert_eq!(spec.cluster_ips, Some(vec!["None".to_string()]));
    assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));
    assert!(validate(&svc, &cfg()).is_empty());

    // Headless without selector: RequireDualStack [IPv4, IPv6], even on a single-stack cluster.
    let mut svc = mynapp_svc();
    spec_mut(&mut svc).cluster_ip = Some("None".into());
    spec_mut(&mut svc).selector = None;
    set_defaults(&mut svc);
    let spec = svc.spec.clone().unwrap();
    assert_eq!(spec.ip_family_policy.as_deref(), Some("RequireDualStack"));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string(), "IPv6".to_string()]));
    assert!(validate(&svc, &cfg()).is_empty());

    // Requested clusterIP: clusterIPs follows; named targetPort and ClientIP timeout are kept.
    let mut svc = mynapp_svc();
    let spec = spec_mut(&mut svc);
    spec.cluster_ip = Some("10.96.0.10".into());
    spec.session_affinity = Some("ClientIP".into());
    spec.session_affinity_config =
        Some(SessionAffinityConfig { client_ip: Some(ClientIPConfig { timeout_seconds: Some(60) }) });
    spec.ports = Some(vec![ServicePort {
        port: 53,
        protocol: Some("UDP".into()),
        target_port: Some(IntOrString::String("dns".into())),
        ..Default::default()
    }]);
    set_defaults(&mut svc);
    let spec = svc.spec.clone().unwrap();
    assert_eq!(spec.cluster_ips, Some(vec!["10.96.0.10".to_string()]));
    assert_eq!(spec.session_affinity_config.unwrap().client_ip.unwrap().timeout_seconds, Some(60));
    let p = &spec.ports.unwrap()[0];
    assert_eq!(p.protocol.as_deref(), Some("UDP"));
    assert_eq!(p.target_port, Some(IntOrString::String("dns".into())));

    // targetPort 0 / "" are defaulted to port; None clears sessionAffinityConfig.
    let mut svc = mynapp_svc();
    let spec = spec_mut(&mut svc);
    spec.ports = Some(vec![port("", 80, 0)]);
    spec.session_affinity_config =
        Some(SessionAffinityConfig { client_ip: Some(ClientIPConfig { timeout_seconds: Some(60) }) });
    set_defaults(&mut svc);
    let spec = svc.spec.clone().unwrap();
    assert_eq!(spec.ports.unwrap()[0].target_port, Some(IntOrString::Int(80)));
    assert_eq!(spec.session_affinity_config, None);

    // ClusterIP with externalIPs is externally accessible: externalTrafficPolicy defaulted.
    let mut svc = mynapp_svc();
    spec_mut(&mut svc).external_ips = Some(vec!["192.168.122.10".into()]);
    set_defaults(&mut svc);
    assert_eq!(svc.spec.unwrap().external_traffic_policy.as_deref(), Some("Cluster"));
}

#[test]
fn default_on_read_hides_itp_for_external_name() {
    let mut svc = from_json(json!({"metadata": {"name": "x"},
        "spec": {"type": "ExternalName", "externalName": "a.b", "internalTrafficPolicy": "Cluster"}}));
    default_on_read(&mut svc);
    assert_eq!(svc.spec.unwrap().internal_traffic_policy, None);
    let mut svc = from_json(json!({"metadata": {"name": "x"}, "spec": {"clusterIP": "10.96.0.7"}}));
    default_on_read(&mut svc);
    let spec = svc.spec.unwrap();
    assert_eq!(spec.cluster_ips, Some(vec!["10.96.0.7".to_string()]));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));
    assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
}

// ----- validation: ports -----

#[test]
fn multi_port_needs_names() {
    check_raw(
        |s| spec_mut(s).ports = Some(vec![port("", 80, 8080), port("", 443, 8443)]),
        &["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"],
    );
    check_raw(
        |s| spec_mut(s).ports = Some(vec![port("http", 80, 8080), port("", 443, 8443)]),
        &["spec.ports[1].name: Required value"],
    );
    // A single port may be unnamed.
    check_raw(|s| spec_mut(s).ports = Some(vec![port("", 80, 8080)]), &[]);
}

#[test]
fn port_names_unique_and_dns_labels() {
    check_raw(
        |s| spec_mut(s).ports = Some(vec![port("x", 80, 8080), port("x", 443, 8443)]),
        &["spec.ports[1].name: Duplicate value: \"x\""],
    );
    let http_upper = format!("spec.ports[0].name: Invalid value: \"HTTP\": {LABEL_MSG}");
    check_raw(|s| spec_mut(s).ports = Some(vec![port("HTTP", 80, 8080)]), &[http_upper.as_str()]);
    check_raw(
        |s| spec_mut(s).ports = Some(vec![port("a.b", 80, 8080)]),
        &["spec.ports[0].name: Invalid value: \"a.b\": must not contain dots"],
    );
}

#[test]
fn port_numbers() {
    check_raw(
        |s| spec_mut(s).ports = Some(vec![port("", 0, 8080)]),
        &["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"],
    );
    check_raw(
        |s| spec_mut(s).ports = Some(vec![port("", 65536, 8080)]),
        &["spec.ports[0].port: Invalid value: 65536: must be between 1 and 65535, inclusive"],
    );
    // targetPort defaults to port, so a bad port is reported twice, as upstream does.
    check_raw(
        |s| spec_mut(s).ports = Some(vec![ServicePort { port: 70000, ..Default::default() }]),
        &[
            "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        ],
    );
    check_raw(
        |s| spec_mut(s).ports = Some(vec![port("", 80, 65536)]),
        &["spec.ports[0].targetPort: Invalid value: 65536: must be between 1 and 65535, inclusive"],
    );
    check(|s| spec_mut(s).ports = None, &["spec.ports: Required value"]);
}

#[test]
fn target_port_names() {
    let named = |name: &str| {
        let name = name.to_string();
        move |s: &mut Service| {
            spec_mut(s).ports =
                Some(vec![ServicePort { port: 80, target_port: Some(IntOrString::String(name)), ..Default::default() }])
        }
    };
    check_raw(named("http-alt"), &[]);
    check_raw(
        named("-bad"),
        &["spec.ports[0].targetPort: Invalid value: \"-bad\": must not begin or end with a hyphen"],
    );
    check_raw(
        named("1234"),
        &["spec.ports[0].targetPort: Invalid value: \"1234\": must contain at least one letter (a-z)"],
    );
    check_raw(
        named("a-very-long-port-name"),
        &["spec.ports[0].targetPort: Invalid value: \"a-very-long-port-name\": must be no more than 15 characters"],
    );
}

#[test]
fn protocols() {
    check(
        |s| spec_mut(s).ports.as_mut().unwrap()[0].protocol = Some("HTTP".into()),
        &["spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""],
    );
    check(|s| spec_mut(s).ports.as_mut().unwrap()[0].protocol = None, &["spec.ports[0].protocol: Required value"]);
    for ok in ["TCP", "UDP", "SCTP"] {
        check(|s| spec_mut(s).ports.as_mut().unwrap()[0].protocol = Some(ok.into()), &[]);
    }
}

#[test]
fn app_protocol() {
    check(|s| spec_mut(s).ports.as_mut().unwrap()[0].app_protocol = Some("kubernetes.io/h2c".into()), &[]);
    check(
        |s| spec_mut(s).ports.as_mut().unwrap()[0].app_protocol = Some("a/b/c".into()),
        &["spec.ports[0].appProtocol: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"],
    );
}

#[test]
fn duplicate_ports_and_node_ports() {
    check_raw(
        |s| spec_mut(s).ports = Some(vec![port("a", 80, 8080), port("b", 80, 8081)]),
        &["spec.ports[1]: Duplicate value: {\"port\":80,\"protocol\":\"TCP\"}"],
    );
    // Same port, different protocols: fine.
    check_raw(
        |s| {
            let mut udp = port("b", 80, 8080);
            udp.protocol = Some("UDP".into());
            spec_mut(s).ports = Some(vec![port("a", 80, 8080), udp]);
        },
        &[],
    );
    check_raw(
        |s| {
            let spec = spec_mut(s);
            spec.type_ = Some("NodePort".into());
            let mut a = port("a", 80, 8080);
            a.node_port = Some(31000);
            let mut b = port("b", 81, 8081);
            b.node_port = Some(31000);
            spec.ports = Some(vec![a, b]);
        },
        // Allocation would take 31000 twice: upstream's allocator reports it first.
        &["spec.ports[1].nodePort: Invalid value: 31000: provided port is already allocated"],
    );
    // Validation alone (as after allocation) reports the duplicate pair.
    let mut svc = mynapp_svc();
    let spec = spec_mut(&mut svc);
    spec.type_ = Some("NodePort".into());
    let mut a = port("a", 80, 8080);
    a.node_port = Some(31000);
    let mut b = port("b", 81, 8081);
    b.node_port = Some(31000);
    spec.ports = Some(vec![a, b]);
    set_defaults(&mut svc);
    assert_eq!(strings(&validate_service(&svc)), vec!["spec.ports[1].nodePort: Duplicate value: 31000"]);
}

// ----- validation: node ports and the service CIDR (allocation-phase checks) -----

#[test]
fn node_port_range_and_type() {
    let with_node_port = |t: &'static str, np: i32| {
        move |s: &mut Service| {
            let spec = spec_mut(s);
            spec.type_ = Some(t.into());
            spec.ports.as_mut().unwrap()[0].node_port = Some(np);
        }
    };
    check_raw(
        with_node_port("NodePort", 29999),
        &["spec.ports[0].nodePort: Invalid value: 29999: provided port is not in the valid range. The range of valid ports is 30000-32767"],
    );
    check_raw(
        with_node_port("LoadBalancer", 32768),
        &["spec.ports[0].nodePort: Invalid value: 32768: provided port is not in the valid range. The range of valid ports is 30000-32767"],
    );
    check_raw(with_node_port("NodePort", 30000), &[]);
    check_raw(with_node_port("NodePort", 32767), &[]);
    check_raw(
        with_node_port("ClusterIP", 31111),
        &["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
    );
}

#[test]
fn cluster_ip_values() {
    let with_ip = |ip: &'static str| move |s: &mut Service| spec_mut(s).cluster_ip = Some(ip.into());
    check_raw(with_ip("10.96.0.10"), &[]);
    check_raw(with_ip("None"), &[]);
    check_raw(
        with_ip("bogus"),
        &["spec.clusterIPs[0]: Invalid value: \"bogus\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"],
    );
    check_raw(
        with_ip("1.2.3.4"),
        &["spec.clusterIPs: Invalid value: [\"1.2.3.4\"]: failed to allocate IP 1.2.3.4: the provided IP (1.2.3.4) is not in the valid range. The range of valid IPs is 10.96.0.0/12"],
    );
    check_raw(
        with_ip("10.96.0.0"),
        &["spec.clusterIPs: Invalid value: [\"10.96.0.0\"]: failed to allocate IP 10.96.0.0: the provided IP (10.96.0.0) is not in the valid range. The range of valid IPs is 10.96.0.0/12"],
    );
    check_raw(
        with_ip("2001:db8::1"),
        &["spec.clusterIPs[0]: Invalid value: [\"2001:db8::1\"]: IPv6 is not configured on this cluster"],
    );
    check_raw(
        |s| spec_mut(s).cluster_ips = Some(vec!["10.96.0.5".into()]),
        &["spec.clusterIPs: Invalid value: [\"10.96.0.5\"]: must be empty when `clusterIP` is not specified"],
    );
    check_raw(
        |s| {
            spec_mut(s).cluster_ip = Some("10.96.0.5".into());
            spec_mut(s).cluster_ips = Some(vec!["10.96.0.6".into()]);
        },
        &["spec.clusterIPs: Invalid value: [\"10.96.0.6\"]: first value must match `clusterIP`"],
    );
    check_raw(
        |s| {
            spec_mut(s).cluster_ip = Some("None".into());
            spec_mut(s).cluster_ips = Some(vec!["None".into(), "10.96.0.6".into()]);
        },
        &["spec.clusterIPs: Invalid value: [\"None\",\"10.96.0.6\"]: 'None' must be the first and only value"],
    );
    check_raw(
        |s| {
            spec_mut(s).cluster_ip = Some("10.96.0.5".into());
            spec_mut(s).cluster_ips = Some(vec!["10.96.0.5".into(), "10.96.0.6".into()]);
        },
        &["spec.clusterIPs: Invalid value: [\"10.96.0.5\",\"10.96.0.6\"]: may specify no more than one IP for each IP family"],
    );
    check_raw(
        |s| {
            spec_mut(s).cluster_ip = Some("None".into());
            spec_mut(s).type_ = Some("NodePort".into());
        },
        &["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"],
    );
    check_raw(
        |s| {
            spec_mut(s).cluster_ip = Some("None".into());
            spec_mut(s).type_ = Some("LoadBalancer".into());
        },
        &["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer services"],
    );
    // Headless Services need no ports.
    check_raw(
        |s| {
            spec_mut(s).cluster_ip = Some("None".into());
            spec_mut(s).ports = None;
        },
        &[],
    );
}

#[test]
fn ip_families_and_policy() {
    check_raw(
        |s| spec_mut(s).ip_family_policy = Some("RequireDualStack".into()),
        &["spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"],
    );
    check_raw(|s| spec_mut(s).ip_family_policy = Some("PreferDualStack".into()), &[]);
    check_raw(
        |s| spec_mut(s).ip_families = Some(vec!["IPv6".into()]),
        &["spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster"],
    );
    check_raw(
        |s| spec_mut(s).ip_families = Some(vec!["IPv5".into()]),
        &["spec.ipFamilies[0]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\""],
    );
    check_raw(
        |s| spec_mut(s).ip_family_policy = Some("Both".into()),
        &["spec.ipFamilyPolicy: Unsupported value: \"Both\": supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\""],
    );
    check_raw(
        |s| spec_mut(s).ip_families = Some(vec!["IPv4".into(), "IPv6".into()]),
        &["spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"],
    );
    check_raw(
        |s| {
            spec_mut(s).cluster_ip = Some("10.96.0.5".into());
            spec_mut(s).ip_families = Some(vec!["IPv6".into()]);
            spec_mut(s).ip_family_policy = Some("SingleStack".into());
        },
        &["spec.clusterIPs[0]: Invalid value: \"10.96.0.5\": expected an IPv6 value as indicated by `ipFamilies[0]`"],
    );
}

// ----- validation: session affinity -----

#[test]
fn session_affinity() {
    check(
        |s| spec_mut(s).session_affinity = Some("Sticky".into()),
        &["spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\""],
    );
    check(|s| spec_mut(s).session_affinity = None, &["spec.sessionAffinity: Required value"]);
    let timeout = |t: i32| {
        move |s: &mut Service| {
            spec_mut(s).session_affinity = Some("ClientIP".into());
            spec_mut(s).session_affinity_config =
                Some(SessionAffinityConfig { client_ip: Some(ClientIPConfig { timeout_seconds: Some(t) }) });
        }
    };
    check_raw(timeout(1), &[]);
    check_raw(timeout(86400), &[]);
    check_raw(
        timeout(0),
        &["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"],
    );
    check_raw(
        timeout(86401),
        &["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400"],
    );
    check(
        |s| {
            spec_mut(s).session_affinity = Some("ClientIP".into());
            spec_mut(s).session_affinity_config = None;
        },
        &["spec.sessionAffinityConfig: Required value: when session affinity type is ClientIP"],
    );
    check(
        |s| {
            spec_mut(s).session_affinity = Some("ClientIP".into());
            spec_mut(s).session_affinity_config = Some(SessionAffinityConfig { client_ip: None });
        },
        &["spec.sessionAffinityConfig.clientIP: Required value: when session affinity type is ClientIP"],
    );
    check(
        |s| {
            spec_mut(s).session_affinity_config =
                Some(SessionAffinityConfig { client_ip: Some(ClientIPConfig { timeout_seconds: Some(10) }) })
        },
        &["spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None"],
    );
}

// ----- validation: ExternalName -----

fn external_name(name: &str) -> Service {
    from_json(json!({"metadata": {"name": "ext", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": name}}))
}

#[test]
fn external_name_rules() {
    for ok in ["www.google.com", "www.google.com.", "localhost", "a-b.c"] {
        assert!(validate(&defaulted(external_name(ok)), &cfg()).is_empty(), "{ok}");
    }
    assert_eq!(strings(&validate(&defaulted(external_name("")), &cfg())), vec!["spec.externalName: Required value"]);
    assert_eq!(strings(&validate(&defaulted(external_name(".")), &cfg())), vec!["spec.externalName: Required value"]);
    assert_eq!(
        strings(&validate(&defaulted(external_name("www.google.com..")), &cfg())),
        vec!["spec.externalName: Invalid value: \"www.google.com.\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
    );
    assert_eq!(strings(&validate(&defaulted(external_name("Bad_Name")), &cfg())).len(), 1);
    let mut svc = external_name("www.google.com");
    spec_mut(&mut svc).cluster_ip = Some("10.96.0.5".into());
    assert_eq!(
        strings(&validate(&defaulted(svc), &cfg())),
        vec!["spec.clusterIPs: Forbidden: may not be set for ExternalName services"]
    );
    let mut svc = defaulted(external_name("www.google.com"));
    spec_mut(&mut svc).ip_families = Some(vec!["IPv4".into()]);
    spec_mut(&mut svc).ip_family_policy = Some("SingleStack".into());
    assert_eq!(
        strings(&validate(&svc, &cfg())),
        vec![
            "spec.ipFamilies: Forbidden: may not be set for ExternalName services",
            "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services",
        ]
    );
    // An ExternalName Service may carry ports (they are only documentation).
    let mut svc = external_name("www.google.com");
    spec_mut(&mut svc).ports = Some(vec![port("", 80, 80)]);
    assert!(validate(&defaulted(svc), &cfg()).is_empty());
}

// ----- validation: selector, traffic policies, LB fields, externalIPs, metadata -----

#[test]
fn selector_labels() {
    check(
        |s| spec_mut(s).selector = Some(BTreeMap::from([("app".into(), "my app".into())])),
        &["spec.selector: Invalid value: \"my app\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"],
    );
    check(
        |s| spec_mut(s).selector = Some(BTreeMap::from([("-app".into(), "x".into())])),
        &["spec.selector: Invalid value: \"-app\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"],
    );
    check(|s| spec_mut(s).selector = None, &[]);
}

#[test]
fn traffic_policies() {
    check(
        |s| spec_mut(s).external_traffic_policy = Some("Local".into()),
        &["spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services"],
    );
    check_raw(
        |s| {
            spec_mut(s).type_ = Some("NodePort".into());
            spec_mut(s).external_traffic_policy = Some("Nowhere".into());
        },
        &["spec.externalTrafficPolicy: Unsupported value: \"Nowhere\": supported values: \"Cluster\", \"Local\""],
    );
    check(
        |s| spec_mut(s).internal_traffic_policy = Some("Nowhere".into()),
        &["spec.internalTrafficPolicy: Unsupported value: \"Nowhere\": supported values: \"Cluster\", \"Local\""],
    );
    check(|s| spec_mut(s).internal_traffic_policy = None, &["spec.internalTrafficPolicy: Required value"]);
    check(
        |s| spec_mut(s).health_check_node_port = Some(31000),
        &["spec.healthCheckNodePort: Invalid value: 31000: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"],
    );
    check(
        |s| spec_mut(s).traffic_distribution = Some("Anywhere".into()),
        &["spec.trafficDistribution: Unsupported value: \"Anywhere\": supported values: \"PreferClose\""],
    );
    check(|s| spec_mut(s).traffic_distribution = Some("PreferClose".into()), &[]);
}

#[test]
fn load_balancer_fields() {
    check(
        |s| spec_mut(s).load_balancer_source_ranges = Some(vec!["10.0.0.0/8".into()]),
        &["spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"],
    );
    check_raw(
        |s| {
            spec_mut(s).type_ = Some("LoadBalancer".into());
            spec_mut(s).load_balancer_source_ranges = Some(vec![" 10.0.0.0/8 ".into(), "10.0.0.1".into()]);
        },
        &["spec.LoadBalancerSourceRanges[1]: Invalid value: \"10.0.0.1\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"],
    );
    check(
        |s| {
            s.metadata.annotations =
                Some(BTreeMap::from([(ANNOTATION_LB_SOURCE_RANGES.to_string(), "10.0.0.0/8, bad".to_string())]))
        },
        &[
            "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]: Forbidden: may only be used when `type` is 'LoadBalancer'",
            "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]: Invalid value: \"bad\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ],
    );
    check(
        |s| spec_mut(s).allocate_load_balancer_node_ports = Some(true),
        &["spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'"],
    );
    check(
        |s| {
            spec_mut(s).type_ = Some("LoadBalancer".into());
            spec_mut(s).external_traffic_policy = Some("Cluster".into());
        },
        &["allocateLoadBalancerNodePorts: Required value"],
    );
    check(
        |s| spec_mut(s).load_balancer_class = Some("example.com/lb".into()),
        &["spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'"],
    );
    check_raw(
        |s| {
            spec_mut(s).type_ = Some("LoadBalancer".into());
            spec_mut(s).load_balancer_class = Some("example.com/lb".into());
        },
        &[],
    );
    // LoadBalancer + Local needs a healthCheckNodePort (allocated before validation upstream).
    check_raw(
        |s| {
            spec_mut(s).type_ = Some("LoadBalancer".into());
            spec_mut(s).external_traffic_policy = Some("Local".into());
        },
        &["spec.healthCheckNodePort: Required value"],
    );
}

#[test]
fn external_ips() {
    let with = |ip: &'static str| move |s: &mut Service| spec_mut(s).external_ips = Some(vec![ip.into()]);
    check_raw(with("192.168.122.201"), &[]);
    check_raw(
        with("127.0.0.1"),
        &["spec.externalIPs[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"],
    );
    check_raw(with("0.0.0.0"), &["spec.externalIPs[0]: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0)"]);
    check_raw(
        with("169.254.1.1"),
        &["spec.externalIPs[0]: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)"],
    );
    check_raw(
        with("224.0.0.5"),
        &["spec.externalIPs[0]: Invalid value: \"224.0.0.5\": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"],
    );
    check_raw(
        with("not-an-ip"),
        &["spec.externalIPs[0]: Invalid value: \"not-an-ip\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"],
    );
}

#[test]
fn service_type_and_name() {
    check(
        |s| spec_mut(s).type_ = Some("Foo".into()),
        &["spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""],
    );
    check(|s| spec_mut(s).type_ = None, &["spec.type: Required value"]);
    let one = format!("metadata.name: Invalid value: \"1svc\": {DNS1035_MSG}");
    check(|s| s.metadata.name = Some("1svc".into()), &[one.as_str()]);
    let dotted = format!("metadata.name: Invalid value: \"my.svc\": {DNS1035_MSG}");
    check(|s| s.metadata.name = Some("my.svc".into()), &[dotted.as_str()]);
    check(|s| s.metadata.name = None, &["metadata.name: Required value: name or generateName is required"]);
    check(
        |s| {
            s.metadata.annotations = Some(BTreeMap::from([
                (ANNOTATION_TOPOLOGY_MODE.to_string(), "Auto".to_string()),
                (ANNOTATION_TOPOLOGY_AWARE_HINTS.to_string(), "Disabled".to_string()),
            ]))
        },
        &["metadata.annotations[service.kubernetes.io/topology-mode]: Invalid value: \"Auto\": must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified"],
    );
}

// ----- allocation -----

fn allocators(seed: u64) -> (IpAllocator, PortAllocator) {
    (IpAllocator::with_seed(cfg().service_cidr, seed), PortAllocator::with_seed(cfg().node_port_range, seed))
}

fn node_port_svc(name: &str, np: i32) -> Service {
    let mut svc = from_json(json!({"metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080, "nodePort": np}],
            "selector": {"app": "mynapp-rs"}}}));
    set_defaults(&mut svc);
    svc
}

#[test]
fn allocate_requested_and_conflicts() {
    let (mut ips, mut ports) = allocators(1);
    let mut a = node_port_svc("a", 31111);
    let got = allocate_create(&mut a, &mut ips, &mut ports).unwrap();
    assert_eq!(got.node_ports, vec![31111]);
    assert_eq!(got.cluster_ips.len(), 1);

    // Same nodePort again: 422 on spec.ports[0].nodePort and nothing leaks.
    let mut b = node_port_svc("b", 31111);
    let err = allocate_create(&mut b, &mut ips, &mut ports).unwrap_err();
    assert_eq!(err.to_string(), "spec.ports[0].nodePort: Invalid value: 31111: provided port is already allocated");
    assert_eq!(ips.used_count(), 1);
    assert_eq!(ports.used_count(), 1);

    // Requested clusterIP already taken.
    ips.allocate(Ipv4Addr::new(10, 96, 0, 10)).unwrap();
    let mut c = mynapp_svc();
    spec_mut(&mut c).cluster_ip = Some("10.96.0.10".into());
    set_defaults(&mut c);
    assert_eq!(
        allocate_create(&mut c, &mut ips, &mut ports).unwrap_err(),
        AllocateError::Invalid(vec![FieldError::invalid(
            "spec.clusterIPs",
            json!(["10.96.0.10"]),
            "failed to allocate IP 10.96.0.10: provided IP is already allocated"
        )])
    );

    // Deleting `a` frees its IP and port.
    release_all(&a, &mut ips, &mut ports);
    assert_eq!(ips.used_count(), 1);
    assert_eq!(ports.used_count(), 0);
}

#[test]
fn allocate_shares_node_port_for_same_port_number_and_respects_lb_flag() {
    let (mut ips, mut ports) = allocators(2);
    let mut dns = from_json(json!({"metadata": {"name": "dns", "namespace": "kube-system"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}));
    set_defaults(&mut dns);
    let got = allocate_create(&mut dns, &mut ips, &mut ports).unwrap();
    assert_eq!(got.cluster_ips, vec![Ipv4Addr::new(10, 96, 0, 10)]);
    assert_eq!(got.node_ports.len(), 1);
    let p = dns.spec.as_ref().unwrap().ports.as_ref().unwrap();
    assert_eq!(p[0].node_port, p[1].node_port);
    assert!(validate(&dns, &cfg()).is_empty());

    let mut lb = from_json(json!({"metadata": {"name": "lb", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
            "ports": [{"port": 80}], "selector": {"app": "x"}}}));
    set_defaults(&mut lb);
    let got = allocate_create(&mut lb, &mut ips, &mut ports).unwrap();
    assert!(got.node_ports.is_empty());
    assert_eq!(lb.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port, None);

    let mut local = from_json(json!({"metadata": {"name": "local", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "ports": [{"port": 80}], "selector": {"app": "x"}}}));
    set_defaults(&mut local);
    let got = allocate_create(&mut local, &mut ips, &mut ports).unwrap();
    assert_eq!(got.node_ports.len(), 2, "node port and health check node port");
    assert!(local.spec.as_ref().unwrap().health_check_node_port.is_some());
    assert!(validate(&local, &cfg()).is_empty());
    assert_eq!(allocated_resources(&local).node_ports.len(), 2);
}

#[test]
fn allocate_full_range_is_internal_error() {
    let mut ips = IpAllocator::with_seed("10.0.0.0/30".parse().unwrap(), 1);
    let mut ports = PortAllocator::with_seed(30000..=30001, 1);
    let mut made = Vec::new();
    for i in 0..2 {
        let mut svc = node_port_svc(&format!("s{i}"), 0);
        allocate_create(&mut svc, &mut ips, &mut ports).unwrap();
        made.push(svc);
    }
    let mut svc = defaulted(mynapp_svc());
    assert_eq!(
        allocate_create(&mut svc, &mut ips, &mut ports).unwrap_err(),
        AllocateError::Internal("failed to allocate a serviceIP: range is full".into())
    );
    release_all(&made[0], &mut ips, &mut ports);
    let mut svc = node_port_svc("s3", 0);
    allocate_create(&mut svc, &mut ips, &mut ports).unwrap();
    let mut svc = node_port_svc("s4", 0);
    ips.release(Ipv4Addr::new(10, 0, 0, 1));
    ips.release(Ipv4Addr::new(10, 0, 0, 2));
    let err = allocate_create(&mut svc, &mut ips, &mut ports).unwrap_err();
    assert_eq!(err, AllocateError::Internal("failed to allocate a nodePort: range is full".into()));
    assert_eq!(ips.used_count(), 0, "the clusterIP taken before the failure was given back");
}

// ----- updates -----

/// Creates `manifest` for real, then returns (stored, allocators).
fn stored(manifest: serde_json::Value, seed: u64) -> (Service, IpAllocator, PortAllocator) {
    let (mut svc, ips, ports) = create(manifest, seed);
    svc.metadata.resource_version = Some("1".into());
    svc.metadata.uid = Some("uid-1".into());
    (svc, ips, ports)
}

fn update(
    old: &Service,
    manifest: serde_json::Value,
    ips: &mut IpAllocator,
    ports: &mut PortAllocator,
) -> (Service, Result<UpdateAllocation, AllocateError>, Vec<String>) {
    let mut new = from_json(manifest);
    new.metadata.namespace = Some("default".into());
    new.metadata.resource_version = Some("1".into());
    set_object_defaults(&mut new);
    names::prepare_object_meta_update(&mut new.metadata, &old.metadata);
    prepare_for_update(&mut new, old);
    let alloc = allocate_update(&mut new, old, ips, ports);
    let errs = strings(&validate_update(&new, old, &cfg()));
    (new, alloc, errs)
}

fn np_manifest() -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "web"}}})
}

#[test]
fn resubmitting_the_manifest_keeps_allocated_values() {
    let (old, mut ips, mut ports) = stored(np_manifest(), 7);
    let (new, alloc, errs) = update(&old, np_manifest(), &mut ips, &mut ports);
    assert_eq!(errs, Vec::<String>::new());
    assert_eq!(alloc.unwrap(), UpdateAllocation::default());
    assert_eq!(new.spec, old.spec);
    assert_eq!(new.status, old.status);
}

#[test]
fn cluster_ip_may_not_change() {
    let (old, mut ips, mut ports) = stored(np_manifest(), 8);
    let old_ip = cluster_ip_of(&old);
    let mut m = serde_json::to_value(&old).unwrap();
    m["spec"]["clusterIP"] = json!("10.96.0.5");
    let (_, _, errs) = update(&old, m.clone(), &mut ips, &mut ports);
    assert_eq!(errs, vec!["spec.clusterIPs[0]: Invalid value: [\"10.96.0.5\"]: may not change once set"]);
    m["spec"]["clusterIPs"] = json!(["10.96.0.5"]);
    let (_, _, errs) = update(&old, m, &mut ips, &mut ports);
    assert_eq!(errs, vec!["spec.clusterIPs[0]: Invalid value: [\"10.96.0.5\"]: may not change once set"]);
    assert!(ips.is_allocated(old_ip.parse().unwrap()));
}

#[test]
fn change_to_external_name_drops_and_releases() {
    let (old, mut ips, mut ports) = stored(np_manifest(), 9);
    let old_ip: Ipv4Addr = cluster_ip_of(&old).parse().unwrap();
    let old_np = old.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port.unwrap();
    // kubectl edit: the whole stored object with only type/externalName changed.
    let mut m = serde_json::to_value(&old).unwrap();
    m["spec"]["type"] = json!("ExternalName");
    m["spec"]["externalName"] = json!("www.google.com");
    m["spec"]["externalTrafficPolicy"] = json!("Cluster");
    let (new, alloc, errs) = update(&old, m, &mut ips, &mut ports);
    assert_eq!(errs, Vec::<String>::new());
    let spec = new.spec.clone().unwrap();
    assert_eq!((spec.cluster_ip, spec.cluster_ips, spec.ip_families, spec.ip_family_policy), (None, None, None, None));
    assert_eq!(spec.ports.unwrap()[0].node_port, None);
    assert_eq!(spec.external_traffic_policy, None);
    let alloc = alloc.unwrap();
    assert_eq!(alloc.allocated, Allocation::default());
    assert_eq!(alloc.to_release, Allocation { cluster_ips: vec![old_ip], node_ports: vec![old_np as u16] });
    alloc.to_release.release(&mut ips, &mut ports);
    assert_eq!((ips.used_count(), ports.used_count()), (0, 0));

    // And back: a fresh clusterIP is allocated.
    let mut stored_new = new.clone();
    stored_new.metadata.resource_version = Some("2".into());
    let mut m = serde_json::to_value(&stored_new).unwrap();
    m["spec"]["type"] = json!("ClusterIP");
    m["spec"].as_object_mut().unwrap().remove("externalName");
    let (back, alloc, errs) = update(&stored_new, m, &mut ips, &mut ports);
    assert_eq!(errs, Vec::<String>::new());
    let alloc = alloc.unwrap();
    assert_eq!(alloc.allocated.cluster_ips.len(), 1);
    let spec = back.spec.unwrap();
    assert_eq!(spec.cluster_ip, Some(alloc.allocated.cluster_ips[0].to_string()));
    assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));
}

#[test]
fn change_node_port_to_cluster_ip_and_new_node_ports() {
    let (old, mut ips, mut ports) = stored(np_manifest(), 10);
    let old_np = old.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port.unwrap();
    let mut m = serde_json::to_value(&old).unwrap();
    m["spec"]["type"] = json!("ClusterIP");
    let (new, alloc, errs) = update(&old, m, &mut ips, &mut ports);
    assert_eq!(errs, Vec::<String>::new());
    assert_eq!(new.spec.unwrap().ports.unwrap()[0].node_port, None);
    assert_eq!(alloc.unwrap().to_release.node_ports, vec![old_np as u16]);

    // Changing the nodePort allocates the new one and releases the old on commit.
    let mut m = serde_json::to_value(&old).unwrap();
    m["spec"]["ports"][0]["nodePort"] = json!(31500);
    let (_, alloc, errs) = update(&old, m.clone(), &mut ips, &mut ports);
    assert_eq!(errs, Vec::<String>::new());
    let alloc = alloc.unwrap();
    assert_eq!(alloc.allocated.node_ports, vec![31500]);
    assert_eq!(alloc.to_release.node_ports, vec![old_np as u16]);
    // The same change again now conflicts (31500 is taken).
    let (_, alloc, _) = update(&old, m.clone(), &mut ips, &mut ports);
    assert_eq!(
        alloc.unwrap_err().to_string(),
        "spec.ports[0].nodePort: Invalid value: 31500: provided port is already allocated"
    );
    // Out of range is reported by validate_update as well.
    m["spec"]["ports"][0]["nodePort"] = json!(80);
    let (_, _, errs) = update(&old, m, &mut ips, &mut ports);
    assert_eq!(
        errs,
        vec!["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"]
    );
}

#[test]
fn update_metadata_and_lb_rules() {
    let lb = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "loadBalancerClass": "example.com/a",
            "ports": [{"port": 80}], "selector": {"app": "x"}}});
    let (old, mut ips, mut ports) = stored(lb, 11);
    let mut m = serde_json::to_value(&old).unwrap();
    m["metadata"]["name"] = json!("other");
    m["spec"]["loadBalancerClass"] = json!("example.com/b");
    m["spec"]["healthCheckNodePort"] = json!(30001);
    let (_, _, errs) = update(&old, m, &mut ips, &mut ports);
    assert_eq!(
        errs,
        vec![
            "metadata.name: Invalid value: \"other\": field is immutable",
            "spec.loadBalancerClass: Invalid value: \"example.com/b\": may not change once set",
            "spec.healthCheckNodePort: Forbidden: field is immutable",
        ]
    );

    // LoadBalancer -> NodePort drops allocateLoadBalancerNodePorts, loadBalancerClass and
    // the health check port (released on commit).
    let hc = old.spec.as_ref().unwrap().health_check_node_port.unwrap();
    let mut m = serde_json::to_value(&old).unwrap();
    m["spec"]["type"] = json!("NodePort");
    let (new, alloc, errs) = update(&old, m, &mut ips, &mut ports);
    assert_eq!(errs, Vec::<String>::new());
    let spec = new.spec.unwrap();
    assert_eq!(spec.allocate_load_balancer_node_ports, None);
    assert_eq!(spec.load_balancer_class, None);
    assert_eq!(spec.health_check_node_port, None);
    assert_eq!(alloc.unwrap().to_release.node_ports, vec![hc as u16]);
}

#[test]
fn validate_update_headless_and_families() {
    let headless = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "h"},
        "spec": {"clusterIP": "None", "ports": [{"port": 80}], "selector": {"app": "x"}}});
    let (old, mut ips, mut ports) = stored(headless, 12);
    // Headless -> headful is a clusterIP change.
    let mut m = serde_json::to_value(&old).unwrap();
    m["spec"]["clusterIP"] = json!("10.96.0.50");
    m["spec"]["clusterIPs"] = json!(["10.96.0.50"]);
    let (_, _, errs) = update(&old, m, &mut ips, &mut ports);
    assert_eq!(errs, vec!["spec.clusterIPs[0]: Invalid value: [\"10.96.0.50\"]: may not change once set"]);
}
