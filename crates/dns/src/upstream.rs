//! Forwarding to upstream DNS servers: one question per exchange over UDP (retried
//! over TCP when the answer is truncated) or over TCP only (`force_tcp`, as the
//! node-local cache talks to the cluster DNS).

use crate::error::{Error, Result};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, Instant};

/// The EDNS(0) payload size asked of upstreams.
const UPSTREAM_UDP_PAYLOAD: u16 = 1232;

/// The `nameserver` lines of a resolv.conf (port 53), in order. A missing or
/// unreadable file gives an empty list.
pub fn resolv_conf_nameservers(path: impl AsRef<Path>) -> Vec<SocketAddr> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            // A scoped IPv6 address (fe80::1%eth0) keeps only its address part.
            let addr = words.next()?.split('%').next()?;
            let ip: IpAddr = addr.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// Idle TCP connections are reused for this long (the cluster DNS closes its own
/// after 10 s; CoreDNS's `forward` expires them after 10 s too).
const POOL_IDLE: Duration = Duration::from_secs(5);
/// Most idle connections kept per server.
const POOL_SIZE: usize = 64;

/// A set of upstream servers tried in turn, starting from a rotating position.
#[derive(Debug)]
pub(crate) struct Upstream {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    force_tcp: bool,
    next: AtomicUsize,
    pool: Mutex<HashMap<SocketAddr, Vec<(TcpStream, Instant)>>>,
}

impl Upstream {
    pub(crate) fn new(servers: Vec<SocketAddr>, timeout: Duration, force_tcp: bool) -> Upstream {
        Upstream { servers, timeout, force_tcp, next: AtomicUsize::new(0), pool: Mutex::new(HashMap::new()) }
    }

    fn take_idle(&self, server: SocketAddr) -> Option<TcpStream> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let conns = pool.get_mut(&server)?;
        while let Some((stream, since)) = conns.pop() {
            if since.elapsed() < POOL_IDLE {
                return Some(stream);
            }
        }
        None
    }

    fn put_idle(&self, server: SocketAddr, stream: TcpStream) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let conns = pool.entry(server).or_default();
        conns.retain(|(_, since)| since.elapsed() < POOL_IDLE);
        if conns.len() < POOL_SIZE {
            conns.push((stream, Instant::now()));
        }
    }

    /// One exchange over TCP, on an idle pooled connection when there is one (and
    /// on a fresh one if that fails: the server may have closed it).
    async fn exchange_tcp(&self, server: SocketAddr, req: &Message) -> Result<Message> {
        let bytes = req.to_vec().map_err(|e| Error::Proto(e.to_string()))?;
        let len = u16::try_from(bytes.len()).map_err(|_| Error::Proto("query too long".into()))?;
        let mut frame = Vec::with_capacity(bytes.len() + 2);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&bytes);
        if let Some(mut stream) = self.take_idle(server) {
            if let Ok(Ok(resp)) = timeout(self.timeout, roundtrip(&mut stream, server, req, &frame)).await {
                self.put_idle(server, stream);
                return Ok(resp);
            }
        }
        let work = async {
            let mut stream = TcpStream::connect(server).await.map_err(|e| Error::io(format!("connect {server}"), e))?;
            let _ = stream.set_nodelay(true);
            let resp = roundtrip(&mut stream, server, req, &frame).await?;
            Ok::<_, Error>((stream, resp))
        };
        match timeout(self.timeout, work).await {
            Ok(Ok((stream, resp))) => {
                self.put_idle(server, stream);
                Ok(resp)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Upstream(format!("{server}: timed out over TCP"))),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Ask `query` upstream. A SERVFAIL or REFUSED answer moves on to the next
    /// server; when none gives a usable answer the last error is returned.
    pub(crate) async fn exchange(
        &self,
        query: &Query,
        recursion_desired: bool,
        checking_disabled: bool,
    ) -> Result<Message> {
        if self.servers.is_empty() {
            return Err(Error::Upstream("no upstream servers".into()));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.servers.len();
        let mut last = Error::Upstream("no answer".into());
        for i in 0..self.servers.len() {
            let server = self.servers[(start + i) % self.servers.len()];
            let mut req = Message::new(rand::random(), MessageType::Query, OpCode::Query);
            req.metadata.recursion_desired = recursion_desired;
            req.metadata.checking_disabled = checking_disabled;
            req.add_query(query.clone());
            let mut edns = Edns::new();
            edns.set_max_payload(UPSTREAM_UDP_PAYLOAD);
            req.set_edns(edns);
            let result = if self.force_tcp {
                self.exchange_tcp(server, &req).await
            } else {
                match exchange_udp(server, &req, self.timeout).await {
                    Ok(resp) if resp.truncation => self.exchange_tcp(server, &req).await,
                    other => other,
                }
            };
            match result {
                Ok(resp) if matches!(resp.response_code, ResponseCode::ServFail | ResponseCode::Refused) => {
                    last = Error::Upstream(format!("{server}: {}", resp.response_code));
                }
                Ok(resp) => return Ok(resp),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

fn matches_request(req: &Message, resp: &Message) -> bool {
    resp.message_type == MessageType::Response
        && resp.id == req.id
        && resp.queries.len() == req.queries.len()
        && resp.queries.iter().zip(&req.queries).all(|(a, b)| {
            a.name() == b.name() && a.query_type() == b.query_type() && a.query_class() == b.query_class()
        })
}

async fn exchange_udp(server: SocketAddr, req: &Message, limit: Duration) -> Result<Message> {
    let bind: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let bytes = req.to_vec().map_err(|e| Error::Proto(e.to_string()))?;
    let sock = UdpSocket::bind(bind).await.map_err(|e| Error::io("bind upstream socket", e))?;
    // Connected: an ICMP port-unreachable comes back as an error at once.
    sock.connect(server).await.map_err(|e| Error::io(format!("connect {server}"), e))?;
    sock.send(&bytes).await.map_err(|e| Error::io(format!("send to {server}"), e))?;
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => return Err(Error::Upstream(format!("{server}: timed out"))),
            Ok(Err(e)) => return Err(Error::io(format!("receive from {server}"), e)),
            Ok(Ok(n)) => n,
        };
        // Anything that is not the answer to this question is ignored.
        if let Ok(resp) = Message::from_vec(&buf[..n]) {
            if matches_request(req, &resp) {
                return Ok(resp);
            }
        }
    }
}

/// Write one framed query and read frames until its answer.
async fn roundtrip(stream: &mut TcpStream, server: SocketAddr, req: &Message, frame: &[u8]) -> Result<Message> {
    stream.write_all(frame).await.map_err(|e| Error::io(format!("send to {server}"), e))?;
    loop {
        let mut lenbuf = [0u8; 2];
        stream.read_exact(&mut lenbuf).await.map_err(|e| Error::io(format!("receive from {server}"), e))?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(lenbuf))];
        stream.read_exact(&mut body).await.map_err(|e| Error::io(format!("receive from {server}"), e))?;
        if let Ok(resp) = Message::from_vec(&body) {
            if matches_request(req, &resp) {
                return Ok(resp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_are_parsed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "# comment\nsearch default.svc.cluster.local\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\n\
             nameserver bogus\noptions ndots:5\n",
        )
        .expect("write");
        let got = resolv_conf_nameservers(&path);
        assert_eq!(got, vec!["127.0.0.53:53".parse().expect("addr"), "[fe80::1]:53".parse().expect("addr")]);
        assert!(resolv_conf_nameservers(dir.path().join("missing")).is_empty());
    }
}
