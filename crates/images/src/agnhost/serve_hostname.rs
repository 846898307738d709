//! `agnhost serve-hostname`, after upstream's
//! `test/images/agnhost/serve-hostname/serve_hostname.go`: serve the hostname
//! over HTTP (default), or raw over TCP and/or UDP (`--tcp`, `--udp`, which
//! need `--http=false`), on `--port` (9376). `--close` adds `Connection: close`
//! to HTTP answers. On SIGTERM it logs, keeps serving for 60 s ("Awaiting pod
//! deletion") and exits 0; SIGINT keeps its default action.

use super::command_flags;
use crate::http::{self, Handler};
use crate::util::{go_log, hostname, Flag, Ty};
use crate::{Listening, RunOptions};
use hyper::StatusCode;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, SignalKind};

const FLAGS: &[Flag] = &[
    Flag { name: "tcp", default: Ty::Bool(false), usage: "Serve raw over TCP." },
    Flag { name: "udp", default: Ty::Bool(false), usage: "Serve raw over UDP." },
    Flag { name: "http", default: Ty::Bool(true), usage: "Serve HTTP." },
    Flag { name: "close", default: Ty::Bool(false), usage: "Close connection per each HTTP request." },
    Flag { name: "port", default: Ty::Int(9376), usage: "Port number." },
];

pub(super) async fn main(args: &[String], opts: &RunOptions) -> i32 {
    let flags = match command_flags("serve-hostname", args, FLAGS) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let (do_tcp, do_udp, do_http, do_close) =
        (flags.bool("tcp"), flags.bool("udp"), flags.bool("http"), flags.bool("close"));
    let port = flags.int("port");
    if do_http && (do_tcp || do_udp) {
        go_log("Can't server TCP/UDP mode and HTTP mode at the same time");
        return 1;
    }
    let host = match hostname() {
        Ok(h) => h,
        Err(e) => {
            go_log(format_args!("Error from os.Hostname(): {e}"));
            return 1;
        }
    };
    let Ok(port16) = u16::try_from(port) else {
        go_log(format_args!("Error from net.Listen(): listen tcp: address {port}: invalid port"));
        return 1;
    };
    let addr = SocketAddr::new(opts.bind_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port16);
    let report = |proto, addr| {
        if let Some(tx) = &opts.listening {
            let _ = tx.send(Listening { proto, addr });
        }
    };
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel::<String>();

    if do_tcp {
        let listener = match http::listen_tcp(addr) {
            Ok(l) => l,
            Err(e) => {
                go_log(format_args!(
                    "Error from net.Listen(): listen tcp {}: bind: {}",
                    http::go_listen_addr(addr),
                    http::go_errno_text(&e)
                ));
                return 1;
            }
        };
        if let Ok(a) = listener.local_addr() {
            report("tcp", a);
        }
        let (host, fatal) = (host.clone(), fatal_tx.clone());
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((mut conn, remote)) => {
                        go_log(format_args!("TCP request from {remote}"));
                        let _ = conn.write_all(host.as_bytes()).await;
                        let _ = conn.shutdown().await;
                    }
                    Err(e) => {
                        let _ = fatal.send(format!("Error from Accept(): {e}"));
                        return;
                    }
                }
            }
        });
    }
    if do_udp {
        let sock = match tokio::net::UdpSocket::bind(addr).await {
            Ok(s) => s,
            Err(e) => {
                go_log(format_args!(
                    "Error from ListenUDP(): listen udp {}: bind: {}",
                    http::go_listen_addr(addr),
                    http::go_errno_text(&e)
                ));
                return 1;
            }
        };
        if let Ok(a) = sock.local_addr() {
            report("udp", a);
        }
        let (host, fatal) = (host.clone(), fatal_tx.clone());
        tokio::spawn(async move {
            let mut buffer = [0u8; 16];
            loop {
                match sock.recv_from(&mut buffer).await {
                    Ok((_, client)) => {
                        go_log(format_args!("UDP request from {client}"));
                        let _ = sock.send_to(host.as_bytes(), client).await;
                    }
                    Err(e) => {
                        let _ = fatal.send(format!("Error from ReadFrom(): {e}"));
                        return;
                    }
                }
            }
        });
    }
    // Kept alive for the whole run: the HTTP server is never stopped.
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if do_http {
        match http::listen_tcp(addr) {
            Ok(listener) => {
                if let Ok(a) = listener.local_addr() {
                    report("http", a);
                }
                let host = Arc::new(host.clone());
                let handler: Handler = Arc::new(move |_req, remote| {
                    let host = host.clone();
                    Box::pin(async move {
                        go_log(format_args!("HTTP request from {remote}"));
                        let mut resp = http::text(StatusCode::OK, host.as_bytes().to_vec());
                        if do_close {
                            // Force the connection closed after serving the request.
                            resp.headers_mut()
                                .insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
                        }
                        Ok(resp)
                    })
                });
                tokio::spawn(http::serve(listener, None, handler, stop_rx));
            }
            Err(e) => {
                // Upstream logs "Serving on port" first, then log.Fatal from the server goroutine.
                go_log(format_args!("Serving on port {port}."));
                go_log(format_args!("listen tcp {}: bind: {}", http::go_listen_addr(addr), http::go_errno_text(&e)));
                return 1;
            }
        }
    }
    go_log(format_args!("Serving on port {port}."));
    let mut term = match signal(SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            go_log(format_args!("registering SIGTERM: {e}"));
            return 1;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        Some(msg) = fatal_rx.recv() => {
            go_log(msg);
            return 1;
        }
    }
    go_log("Shutting down after receiving signal: terminated.");
    go_log("Awaiting pod deletion.");
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(60)) => 0,
        Some(msg) = fatal_rx.recv() => {
            go_log(msg);
            1
        }
    }
}
