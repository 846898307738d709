//! Test helpers: Kubernetes objects, a DNS client (hickory-proto over UDP/TCP), a
//! `dig` runner, and a fake upstream DNS server on loopback that knows a few names.
//! Everything binds to 127.0.0.0/8 on ephemeral ports; nothing leaves the machine.
#![allow(dead_code)]

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Pod, PodIP, PodStatus, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub const ZONE: &str = "cluster.local";
/// What the fake upstream answers for `www.google.com` (documentation addresses).
pub const GOOGLE_ADDRS: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 11)];

// ---------------------------------------------------------------- objects

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..Default::default() }
}

/// `(name, protocol, port)`; an empty name is an unnamed port.
pub type PortSpec<'a> = (&'a str, &'a str, i32);

fn service_ports(ports: &[PortSpec]) -> Vec<ServicePort> {
    ports
        .iter()
        .map(|(name, proto, port)| ServicePort {
            name: (!name.is_empty()).then(|| name.to_string()),
            protocol: Some(proto.to_string()),
            port: *port,
            ..Default::default()
        })
        .collect()
}

pub fn cluster_ip_service(ns: &str, name: &str, ip: &str, ports: &[PortSpec]) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(ip.into()),
            cluster_ips: Some(vec![ip.into()]),
            ports: Some(service_ports(ports)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn headless_service(ns: &str, name: &str, ports: &[PortSpec]) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some("None".into()),
            cluster_ips: Some(vec!["None".into()]),
            ports: Some(service_ports(ports)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn external_name_service(ns: &str, name: &str, target: &str) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One endpoint: `(ip, hostname, ready)`.
pub type EpSpec<'a> = (&'a str, Option<&'a str>, bool);

pub fn endpoint_slice(ns: &str, name: &str, service: &str, eps: &[EpSpec], ports: &[PortSpec]) -> EndpointSlice {
    let mut m = meta(ns, name);
    m.labels = Some(BTreeMap::from([("kubernetes.io/service-name".to_string(), service.to_string())]));
    EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        endpoints: eps
            .iter()
            .map(|(ip, host, ready)| Endpoint {
                addresses: vec![ip.to_string()],
                hostname: host.map(str::to_string),
                conditions: Some(EndpointConditions { ready: Some(*ready), ..Default::default() }),
                ..Default::default()
            })
            .collect(),
        ports: Some(
            ports
                .iter()
                .map(|(name, proto, port)| EndpointPort {
                    name: (!name.is_empty()).then(|| name.to_string()),
                    protocol: Some(proto.to_string()),
                    port: Some(*port),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

pub fn pod(ns: &str, name: &str, ip: &str) -> Pod {
    Pod {
        metadata: meta(ns, name),
        status: Some(PodStatus {
            pod_ip: Some(ip.into()),
            pod_ips: Some(vec![PodIP { ip: ip.into() }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

// ---------------------------------------------------------------- client

pub fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("valid name")
}

fn request(qname: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

pub async fn send_udp(server: SocketAddr, req: &Message) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind client socket");
    let bytes = req.to_vec().expect("encode");
    for _attempt in 0..3 {
        sock.send_to(&bytes, server).await.expect("send");
        let mut buf = vec![0u8; 65535];
        match tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => {
                let resp = Message::from_vec(&buf[..n]).expect("decode response");
                assert_eq!(resp.id, req.id, "response id");
                return resp;
            }
            _ => continue,
        }
    }
    panic!("no UDP answer from {server} for {:?}", req.queries);
}

/// One question over UDP; `edns`: the EDNS(0) payload size to announce, if any.
pub async fn query_udp(server: SocketAddr, qname: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    send_udp(server, &request(qname, qtype, edns)).await
}

/// One question over TCP (RFC 7766 length-prefixed frames).
pub async fn query_tcp(server: SocketAddr, qname: &str, qtype: RecordType) -> Message {
    let req = request(qname, qtype, None);
    let bytes = req.to_vec().expect("encode");
    let work = async {
        let mut s = TcpStream::connect(server).await.expect("connect");
        let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&bytes);
        s.write_all(&frame).await.expect("write");
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.expect("read length");
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut body).await.expect("read body");
        Message::from_vec(&body).expect("decode response")
    };
    let resp = tokio::time::timeout(Duration::from_secs(10), work).await.expect("TCP answer in time");
    assert_eq!(resp.id, req.id);
    resp
}

pub fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// `(priority, weight, port, target)` of the SRV answers, sorted.
pub fn srv_records(m: &Message) -> Vec<(u16, u16, u16, String)> {
    let mut v: Vec<_> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

pub fn ptr_records(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
        .collect()
}

pub fn cname_records(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.to_ascii()),
            _ => None,
        })
        .collect()
}

/// The SOA of the authority section, if any.
pub fn authority_soa(m: &Message) -> Option<(u32, SOA)> {
    m.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(s) => Some((r.ttl, s.clone())),
        _ => None,
    })
}

/// A pod's resolver: `ndots:5` and the search list of a pod in `ns`, as kubelet
/// writes /etc/resolv.conf. Tries the expansions in order until one is not
/// NXDOMAIN; returns the name that answered and the answer.
pub async fn resolve_with_search(server: SocketAddr, ns: &str, short: &str, qtype: RecordType) -> (String, Message) {
    let search = [format!("{ns}.svc.{ZONE}"), format!("svc.{ZONE}"), ZONE.to_string()];
    let mut candidates = Vec::new();
    if short.ends_with('.') {
        candidates.push(short.to_string());
    } else {
        let dots = short.matches('.').count();
        if dots >= 5 {
            candidates.push(format!("{short}."));
        }
        candidates.extend(search.iter().map(|s| format!("{short}.{s}.")));
        if dots < 5 {
            candidates.push(format!("{short}."));
        }
    }
    let mut last = None;
    for c in candidates {
        let resp = query_udp(server, &c, qtype, Some(1232)).await;
        if resp.response_code != ResponseCode::NXDomain {
            return (c, resp);
        }
        last = Some((c, resp));
    }
    last.expect("at least one candidate")
}

// ---------------------------------------------------------------- dig

/// Whether the `dig` binary is there (Debian `dnsutils`/`bind9-dnsutils`).
pub fn have_dig() -> bool {
    std::process::Command::new("dig").arg("-v").output().is_ok()
}

/// Run `dig @server -p port args...` with one try and a short timeout; its stdout.
pub async fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+time=3", "+tries=1"])
        .args(args)
        .output()
        .await
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------- fake upstream

/// A fake upstream DNS server on a loopback address: `www.google.com` A (two
/// documentation addresses, TTL 300), `short.example` A (TTL 1), the PTR of
/// 192.0.2.10, NXDOMAIN with an SOA for everything else. Counts what it is asked.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    queries: Arc<Mutex<Vec<(String, RecordType)>>>,
    total: Arc<AtomicUsize>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeUpstream {
    pub async fn start(ip: &str) -> FakeUpstream {
        let sock = UdpSocket::bind(format!("{ip}:0")).await.expect("bind fake upstream");
        let addr = sock.local_addr().expect("fake upstream address");
        let queries = Arc::new(Mutex::new(Vec::new()));
        let total = Arc::new(AtomicUsize::new(0));
        let (q, t) = (queries.clone(), total.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else { continue };
                let Ok(req) = Message::from_vec(&buf[..n]) else { continue };
                let Some(query) = req.queries.first().cloned() else { continue };
                t.fetch_add(1, Ordering::SeqCst);
                q.lock().expect("lock").push((query.name().to_lowercase().to_ascii(), query.query_type()));
                let resp = fake_answer(&req, &query);
                if let Ok(bytes) = resp.to_vec() {
                    let _ = sock.send_to(&bytes, peer).await;
                }
            }
        });
        FakeUpstream { addr, queries, total, task: Some(task) }
    }

    /// Questions received so far.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// How often `name` (lower case, fully qualified) was asked.
    pub fn count(&self, name: &str) -> usize {
        self.queries.lock().expect("lock").iter().filter(|(n, _)| n == name).count()
    }

    /// Stop answering and close the socket (later queries get ICMP unreachable).
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

fn fake_answer(req: &Message, query: &Query) -> Message {
    let mut resp = Message::new(req.id, MessageType::Response, OpCode::Query);
    resp.metadata.recursion_desired = req.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_query(query.clone());
    if req.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        resp.set_edns(e);
    }
    let qname = query.name().to_lowercase().to_ascii();
    let owner = query.name().clone();
    match (qname.as_str(), query.query_type()) {
        ("www.google.com.", RecordType::A) => {
            for ip in GOOGLE_ADDRS {
                resp.add_answer(Record::from_rdata(owner.clone(), 300, RData::A(A(ip))));
            }
        }
        ("short.example.", RecordType::A) => {
            resp.add_answer(Record::from_rdata(owner, 1, RData::A(A::new(192, 0, 2, 99))));
        }
        ("10.2.0.192.in-addr.arpa.", RecordType::PTR) => {
            resp.add_answer(Record::from_rdata(owner, 300, RData::PTR(PTR(name("www.google.com.")))));
        }
        ("www.google.com.", _) | ("short.example.", _) => add_soa(&mut resp),
        _ => {
            resp.metadata.response_code = ResponseCode::NXDomain;
            add_soa(&mut resp);
        }
    }
    resp
}

fn add_soa(resp: &mut Message) {
    let soa = SOA::new(name("ns.example."), name("hostmaster.example."), 1, 3600, 600, 86400, 60);
    resp.add_authority(Record::from_rdata(name("example."), 60, RData::SOA(soa)));
}
