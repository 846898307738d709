//! `minjulee226/myweb`, the web app of the lesson.
//!
//! The real image is a Node.js program (`FROM node:slim`, `ENTRYPOINT ["node",
//! "index.js"]`, `CMD ["Hello World!"]`, published with the lesson's "Node.js
//! application container image" chapter) that listens on 8080 and answers every
//! request with
//!
//! ```text
//! Message: Hello World!
//! Hostname: mynapp-rs-abcde
//! Platform: linux
//! Uptime: 12345
//! IP: 10.244.1.5
//! DNS: 10.96.0.10
//! ```
//!
//! (`process.argv[2]`, `os.hostname()`, `os.platform()`, `os.uptime()`, the
//! first non-loopback IPv4 address, `dns.getServers()`), and logs
//! `Date()` + `Received Request From <client>` per request on stdout. This is
//! the same program; it also serves the same answer over HTTPS on 8443 with a
//! self-signed certificate made at start (the lesson's multi-port Service
//! targets 8443). The client's address is in the log, not in the body, as in
//! the real image; node listens dual-stack, so IPv4 clients are logged as
//! `::ffff:a.b.c.d`, and so are they here.
//!
//! SIGTERM and SIGINT end it with exit code 0.

use crate::http::{self, Handler, Resp};
use crate::util::{err_line, hostname, js_date, out_line};
use crate::{Listening, RunOptions};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

pub(crate) async fn main(args: Vec<String>, opts: &RunOptions) -> i32 {
    // node prints `undefined` for a missing process.argv[2].
    let message = args.first().cloned().unwrap_or_else(|| "undefined".into());
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            err_line(format_args!("installing signal handlers: {e}"));
            return 1;
        }
    };
    out_line(js_date());
    out_line("...Start My Node.js Application...");

    let ip = opts.bind_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let (http_port, https_port) = opts.myweb_ports.unwrap_or((8080, 8443));
    let dns = dns_servers(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    let handler = handler(Arc::new(message), Arc::new(dns));

    let host = hostname().unwrap_or_else(|_| "localhost".into());
    let mut names = vec![host, "localhost".to_string()];
    let addr = first_ipv4();
    if addr != "127.0.0.1" {
        names.push(addr);
    }
    let tls = match http::self_signed_tls(names).or_else(|_| http::self_signed_tls(vec!["localhost".into()])) {
        Ok(tls) => tls,
        Err(e) => {
            err_line(format_args!("Error: {e}"));
            return 1;
        }
    };

    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for (proto, port, tls) in [("http", http_port, None), ("https", https_port, Some(tls))] {
        let addr = SocketAddr::new(ip, port);
        let listener = match http::listen_tcp(addr) {
            Ok(l) => l,
            Err(e) => {
                err_line(format_args!("Error: listen {}: {e}", node_addr(addr)));
                return 1;
            }
        };
        if let (Some(tx), Ok(addr)) = (&opts.listening, listener.local_addr()) {
            let _ = tx.send(Listening { proto, addr });
        }
        servers.spawn(http::serve(listener, tls, handler.clone(), stop_rx.clone()));
    }
    tokio::select! {
        _ = term.recv() => 0,
        _ = int.recv() => 0,
        // The servers only return once stopped; reaching this is a bug, not a success.
        _ = servers.join_next() => 1,
    }
}

fn handler(message: Arc<String>, dns: Arc<String>) -> Handler {
    Arc::new(move |_req, remote| {
        let (message, dns) = (message.clone(), dns.clone());
        Box::pin(async move {
            out_line(js_date());
            out_line(format_args!("Received Request From {}", node_remote(remote.ip())));
            let body = format!(
                "Message: {message}\nHostname: {}\nPlatform: linux\nUptime: {}\nIP: {}\nDNS: {dns}\n",
                hostname().unwrap_or_default(),
                uptime_secs(),
                first_ipv4(),
            );
            Ok::<Resp, std::io::Error>(Response::new(Full::new(Bytes::from(body))))
        })
    })
}

/// `request.connection.remoteAddress` of a dual-stack node server.
fn node_remote(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("::ffff:{v4}"),
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// How node names a listen address in its errors (`:::8080`, `127.0.0.1:8080`).
fn node_addr(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => format!(":::{}", addr.port()),
        ip => format!("{ip}:{}", addr.port()),
    }
}

/// `os.uptime()` of node 14 (libuv: whole seconds of CLOCK_BOOTTIME).
fn uptime_secs() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc == 0 {
        ts.tv_sec
    } else {
        0
    }
}

/// npm `ip`'s `ip.address()`: the first non-loopback IPv4 address of the
/// interfaces, else `127.0.0.1`.
fn first_ipv4() -> String {
    let mut found = None;
    let mut ifaddrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a linked list we only read and then free once.
    unsafe {
        if libc::getifaddrs(&mut ifaddrs) != 0 {
            return "127.0.0.1".into();
        }
        let mut cur = ifaddrs;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() && i32::from((*addr).sa_family) == libc::AF_INET {
                let sin = &*(addr as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                if !ip.is_loopback() {
                    found = Some(ip);
                    break;
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(ifaddrs);
    }
    found.map(|ip| ip.to_string()).unwrap_or_else(|| "127.0.0.1".into())
}

/// `dns.getServers().toString()`: the nameservers of resolv.conf joined by
/// commas (c-ares falls back to 127.0.0.1 when there are none).
fn dns_servers(resolv_conf: &str) -> String {
    let servers: Vec<&str> = resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        .collect();
    if servers.is_empty() {
        "127.0.0.1".into()
    } else {
        servers.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_formats() {
        assert_eq!(node_remote("10.244.0.1".parse().expect("ip")), "::ffff:10.244.0.1");
        assert_eq!(node_remote("fd00::1".parse().expect("ip")), "fd00::1");
        assert_eq!(node_addr("0.0.0.0:8080".parse().expect("addr")), ":::8080");
        assert_eq!(
            dns_servers("search default.svc.cluster.local\nnameserver 169.254.20.10\nnameserver 10.96.0.10\n"),
            "169.254.20.10,10.96.0.10"
        );
        assert_eq!(dns_servers(""), "127.0.0.1");
        assert!(uptime_secs() > 0);
        assert!(first_ipv4().parse::<Ipv4Addr>().is_ok());
    }
}
