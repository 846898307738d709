//! Test helpers: run a program in a thread bound to 127.0.0.1 on free ports,
//! and tiny blocking HTTP, HTTPS (any certificate) and UDP clients.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A program running in a thread of the test process.
pub struct Running {
    pub handle: JoinHandle<i32>,
    pub addrs: HashMap<&'static str, SocketAddr>,
}

impl Running {
    pub fn addr(&self, proto: &str) -> SocketAddr {
        *self.addrs.get(proto).unwrap_or_else(|| panic!("no {proto} listener in {:?}", self.addrs))
    }

    /// The program's exit code, waiting at most `TIMEOUT`.
    pub fn exit_code(self) -> i32 {
        let deadline = Instant::now() + TIMEOUT;
        while !self.handle.is_finished() {
            assert!(Instant::now() < deadline, "program did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.handle.join().expect("program thread panicked")
    }
}

/// Start `argv` on 127.0.0.1 (free ports for myweb) and wait until the
/// listeners named in `expect` (`"http"`, `"https"`, `"udp"`, `"tcp"`) are bound.
pub fn start(argv: &[&str], expect: &[&'static str]) -> Running {
    let (tx, rx) = std::sync::mpsc::channel();
    let argv = strings(argv);
    let opts = images::RunOptions {
        bind_ip: Some("127.0.0.1".parse().expect("ip")),
        myweb_ports: Some((0, 0)),
        listening: Some(tx),
    };
    let handle = std::thread::spawn(move || images::run_with(&argv, &opts));
    let mut addrs = HashMap::new();
    while !expect.iter().all(|p| addrs.contains_key(p)) {
        match rx.recv_timeout(TIMEOUT) {
            Ok(l) => {
                addrs.insert(l.proto, l.addr);
            }
            Err(_) => panic!("listeners {expect:?} not up; got {addrs:?}"),
        }
    }
    Running { handle, addrs }
}

/// A free port on 127.0.0.1 for `proto` ("tcp"/"udp"), for programs that take ports as flags.
pub fn free_port(proto: &str) -> u16 {
    match proto {
        "udp" => UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("udp port").port(),
        _ => std::net::TcpListener::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("tcp port").port(),
    }
}

/// (status, headers in lowercase, body) of a complete HTTP/1.1 response.
pub fn parse(raw: &[u8]) -> (u16, HashMap<String, String>, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP response in {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
}

/// Raw response bytes of `GET path` (empty if the server dropped the connection).
pub fn http_raw(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream.write_all(request(path).as_bytes()).expect("write request");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    raw
}

/// `GET path` over HTTP, with the client's own address.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, HashMap<String, String>, String, SocketAddr) {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    let local = stream.local_addr().expect("local addr");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream.write_all(request(path).as_bytes()).expect("write request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let (status, headers, body) = parse(&raw);
    (status, headers, body, local)
}

/// Accepts any server certificate (the servers' are self-signed), still
/// checking the handshake signatures.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `GET path` over HTTPS accepting any certificate: (status, body, server
/// certificate chain length).
pub fn https_get(addr: SocketAddr, path: &str) -> (u16, String, usize) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("server name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("tls client");
    let sock = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(request(path).as_bytes()).expect("write request");
    let mut raw = Vec::new();
    // A peer closing without close_notify shows as an error after the data.
    let _ = tls.read_to_end(&mut raw);
    let chain = tls.conn.peer_certificates().map(|c| c.len()).unwrap_or(0);
    let (status, _, body) = parse(&raw);
    (status, body, chain)
}

/// One UDP request and its answer, with the client's own address.
pub fn udp_query(addr: SocketAddr, msg: &str) -> (String, SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    sock.send_to(msg.as_bytes(), addr).expect("udp send");
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("udp answer");
    (String::from_utf8_lossy(&buf[..n]).into_owned(), sock.local_addr().expect("local addr"))
}

/// This machine's host name (what the programs serve: the test process has no UTS namespace of its own).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim().to_string()
}

/// `GET path` on a kept-alive HTTP/1.1 connection (no `Connection: close`):
/// (status, headers, body) read by Content-Length.
pub fn http_get_keepalive(addr: SocketAddr, path: &str) -> (u16, HashMap<String, String>, String) {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes()).expect("write request");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let (_, headers, _) = parse(&raw);
            let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
            if raw.len() >= end + 4 + length {
                return parse(&raw[..end + 4 + length]);
            }
        }
        let n = stream.read(&mut buf).expect("read response");
        assert!(n > 0, "connection closed before the whole response");
        raw.extend_from_slice(&buf[..n]);
    }
}
