//! `agnhost netexec`, after upstream's `test/images/agnhost/netexec/netexec.go`.
//!
//! HTTP (or HTTPS with `--tls-cert-file`/`--tls-private-key-file`) on
//! `--http-port` (8080) with upstream's endpoints: `/` (`NOW: <time>`),
//! `/clientip` (`ip:port` of the client), `/dial`, `/echo?msg=&code=`,
//! `/exit?code=&timeout=&wait=`, `/healthz` (200 once a UDP server runs, else
//! 412), `/hostname` and `/hostName`, `/redirect?location=&code=`,
//! `/shell?cmd=`, `/shutdown` (exit 0 at once); `/upload` answers 501 here.
//! `--http-override` serves that path for every request. UDP on `--udp-port`
//! (8081; -1 disables) and `--udp-listen-addresses` answers `hostname`,
//! `echo <msg>` and `clientip`. `--sctp-port` is accepted and ignored (no SCTP).
//!
//! Like upstream, netexec installs no signal handler: SIGTERM kills it.

use super::command_flags;
use crate::http::{self, go_error, text, Handler, HandlerResult, Req};
use crate::util::{go_duration_string, go_log, go_now_string, hostname, parse_go_duration, Flag, Ty};
use crate::{Listening, RunOptions};
use hyper::StatusCode;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const FLAGS: &[Flag] = &[
    Flag { name: "http-port", default: Ty::Int(8080), usage: "HTTP Listen Port" },
    Flag {
        name: "tls-cert-file",
        default: Ty::Str(""),
        usage: "File containing an x509 certificate for HTTPS. (CA cert, if any, concatenated after server cert)",
    },
    Flag {
        name: "tls-private-key-file",
        default: Ty::Str(""),
        usage: "File containing an x509 private key matching --tls-cert-file",
    },
    Flag { name: "udp-port", default: Ty::Int(8081), usage: "UDP Listen Port" },
    Flag { name: "sctp-port", default: Ty::Int(-1), usage: "SCTP Listen Port" },
    Flag {
        name: "http-override",
        default: Ty::Str(""),
        usage: "Override the HTTP handler to always respond as if it were a GET with this path & params",
    },
    Flag {
        name: "udp-listen-addresses",
        default: Ty::Str(""),
        usage: "A comma separated list of ip addresses the udp servers listen from",
    },
];

/// How the process ends.
enum Exit {
    /// `os.Exit(code)`.
    Now(i32),
    /// `server.Shutdown` with a deadline, then `os.Exit(code)`.
    Graceful { code: i32, timeout: Duration },
    /// `log.Fatal`: exit 1.
    Fatal(String),
}

struct State {
    start: Instant,
    /// Go's `serverReady`: a UDP server is running.
    ready: AtomicBool,
    exit: mpsc::UnboundedSender<Exit>,
    override_uri: Option<hyper::Uri>,
}

pub(super) async fn main(args: &[String], opts: &RunOptions) -> i32 {
    let flags = match command_flags("netexec", args, FLAGS) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let (http_port, udp_port, sctp_port) = (flags.int("http-port"), flags.int("udp-port"), flags.int("sctp-port"));
    let (cert_file, key_file) = (flags.str("tls-cert-file"), flags.str("tls-private-key-file"));
    let override_path = flags.str("http-override");
    let default_ip = opts.bind_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let report = |proto, addr| {
        if let Some(tx) = &opts.listening {
            let _ = tx.send(Listening { proto, addr });
        }
    };

    let override_uri = if override_path.is_empty() {
        None
    } else {
        match override_path.parse::<hyper::Uri>() {
            Ok(uri) => Some(uri),
            Err(e) => {
                go_log(format_args!("override request failed: {e}"));
                return 1;
            }
        }
    };
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
    let state =
        Arc::new(State { start: Instant::now(), ready: AtomicBool::new(false), exit: exit_tx.clone(), override_uri });

    // UDP servers.
    if udp_port != -1 {
        let addresses = match parse_addresses(&flags.str("udp-listen-addresses")) {
            Ok(a) => a,
            Err(e) => {
                go_log(e);
                return 1;
            }
        };
        for address in addresses {
            let ip = address.unwrap_or(default_ip);
            let Ok(port) = u16::try_from(udp_port) else {
                go_log(format_args!(
                    "Error occurred: failed to resolve UDP address for port {sctp_port}:address {udp_port}: invalid port"
                ));
                return 1;
            };
            let sock = match UdpSocket::bind(SocketAddr::new(ip, port)).await {
                Ok(s) => s,
                Err(e) => {
                    go_log(format_args!(
                        "Error occurred: failed to create listener for UDP address {}:listen udp {}: bind: {}",
                        http::go_listen_addr(SocketAddr::new(ip, port)),
                        http::go_listen_addr(SocketAddr::new(ip, port)),
                        http::go_errno_text(&e)
                    ));
                    return 1;
                }
            };
            if let Ok(a) = sock.local_addr() {
                report("udp", a);
            }
            let label = address.map(|a| a.to_string()).unwrap_or_default();
            go_log(format_args!("Started UDP server on port {label} {udp_port}"));
            state.ready.store(true, Ordering::SeqCst);
            tokio::spawn(udp_server(sock, state.clone()));
        }
    }
    if sctp_port != -1 {
        go_log(format_args!("SCTP is not supported by rkube's built-in agnhost; ignoring --sctp-port={sctp_port}"));
    }

    // HTTP(S) server.
    let tls = if cert_file.is_empty() {
        None
    } else {
        match http::pem_tls(&cert_file, &key_file) {
            Ok(t) => Some(t),
            Err(e) => {
                go_log(format_args!("Started HTTP server on port {http_port}"));
                go_log(e);
                return 1;
            }
        }
    };
    go_log(format_args!("Started HTTP server on port {http_port}"));
    let Ok(port) = u16::try_from(http_port) else {
        go_log(format_args!("listen tcp: address {http_port}: invalid port"));
        return 1;
    };
    let addr = SocketAddr::new(default_ip, port);
    let listener = match http::listen_tcp(addr) {
        Ok(l) => l,
        Err(e) => {
            go_log(format_args!("listen tcp {}: bind: {}", http::go_listen_addr(addr), http::go_errno_text(&e)));
            return 1;
        }
    };
    if let Ok(a) = listener.local_addr() {
        report(if tls.is_some() { "https" } else { "http" }, a);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::serve(listener, tls, handler(state.clone()), stop_rx));

    match exit_rx.recv().await {
        Some(Exit::Now(code)) => code,
        Some(Exit::Fatal(msg)) => {
            go_log(msg);
            1
        }
        Some(Exit::Graceful { code, timeout }) => {
            let _ = stop_tx.send(true);
            let result = match tokio::time::timeout(timeout, server).await {
                Ok(_) => "<nil>",
                Err(_) => "context deadline exceeded",
            };
            go_log(format_args!("Graceful shutdown completed with: {result}"));
            code
        }
        // Unreachable: `state` holds a sender for the whole run.
        None => 1,
    }
}

/// `--udp-listen-addresses`: sorted, deduplicated IPs; `None` = any address.
fn parse_addresses(addresses: &str) -> Result<Vec<Option<IpAddr>>, String> {
    if addresses.is_empty() {
        return Ok(vec![None]);
    }
    let mut set = std::collections::BTreeSet::new();
    for address in addresses.split(',') {
        let ip: IpAddr = address.parse().map_err(|_| format!("parseAddress: invalid address {address}"))?;
        set.insert((address.to_string(), ip));
    }
    Ok(set.into_iter().map(|(_, ip)| Some(ip)).collect())
}

/// The UDP server: `hostname`, `echo <msg>`, `clientip` (case-insensitive,
/// trimmed, and echoed lowercased as upstream does).
async fn udp_server(sock: UdpSocket, state: Arc<State>) {
    let mut buf = [0u8; 2048];
    let fatal = |msg: String| {
        state.ready.store(false, Ordering::SeqCst);
        go_log("UDP server exited");
        let _ = state.exit.send(Exit::Fatal(msg));
    };
    loop {
        let (n, client) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => return fatal(format!("Error occurred: failed accepting UDP connections:{e}")),
        };
        let received = String::from_utf8_lossy(&buf[..n]).trim().to_lowercase();
        let reply = if received == "hostname" {
            go_log("Sending udp hostName response");
            match hostname() {
                Ok(h) => h,
                Err(e) => return fatal(format!("Error occurred: failed to get hostname:{e}")),
            }
        } else if let Some(msg) = received.strip_prefix("echo ") {
            go_log(format_args!("Echoing {msg} to UDP client {client}"));
            msg.to_string()
        } else if received == "clientip" {
            go_log(format_args!("Sending clientip back to UDP client {client}"));
            client.to_string()
        } else {
            if !received.is_empty() {
                go_log(format_args!("Unknown UDP command received from {client}: {received}"));
            }
            continue;
        };
        if let Err(e) = sock.send_to(reply.as_bytes(), client).await {
            return fatal(format!("Error occurred: failed to write to UDP client {client}:{e}"));
        }
    }
}

fn handler(state: Arc<State>) -> Handler {
    Arc::new(move |mut req, remote| {
        let state = state.clone();
        Box::pin(async move {
            if let Some(uri) = &state.override_uri {
                req = Req {
                    method: hyper::Method::GET,
                    uri: uri.clone(),
                    headers: hyper::HeaderMap::new(),
                    body: Default::default(),
                };
            }
            route(&state, req, remote).await
        })
    })
}

fn ok(body: impl Into<bytes::Bytes>) -> HandlerResult {
    Ok(text(StatusCode::OK, body))
}

/// Dropping the connection unanswered (the process exits first upstream).
fn exiting() -> HandlerResult {
    Err(std::io::Error::other("exiting"))
}

async fn route(state: &State, req: Req, remote: SocketAddr) -> HandlerResult {
    match req.path() {
        "/clientip" => {
            go_log("GET /clientip");
            ok(remote.to_string())
        }
        "/dial" => dial(&req).await,
        "/echo" => {
            let (msg, code) = (req.form_value("msg"), req.form_value("code"));
            go_log(format_args!("GET /echo?msg={msg}&code={code}"));
            if code.is_empty() {
                return ok(msg);
            }
            let Ok(code) = code.parse::<i64>() else {
                return ok(format!("argument 'code' must be an integer or empty, got {code:?}\n"));
            };
            match code {
                // Go's WriteHeader panics on these: the connection is dropped.
                ..=99 | 1000.. => exiting(),
                // Informational codes are sent ahead of an implicit 200.
                100..=199 => ok(msg),
                _ => {
                    let status = StatusCode::from_u16(code as u16).unwrap_or(StatusCode::OK);
                    Ok(text(status, msg))
                }
            }
        }
        "/exit" => exit(state, &req).await,
        "/healthz" => {
            go_log("GET /healthz");
            let status =
                if state.ready.load(Ordering::SeqCst) { StatusCode::OK } else { StatusCode::PRECONDITION_FAILED };
            Ok(text(status, ""))
        }
        "/hostname" | "/hostName" => {
            go_log(format_args!("GET {}", req.path()));
            match hostname() {
                Ok(h) => ok(h),
                Err(e) => {
                    let _ = state.exit.send(Exit::Fatal(format!("Error occurred: failed to get hostname:{e}")));
                    exiting()
                }
            }
        }
        "/redirect" => {
            let (location, code) = (req.form_value("location"), req.form_value("code"));
            go_log(format_args!("{} /redirect?msg={location}&code={code}", req.method));
            let code = if code.is_empty() {
                302
            } else {
                match code.parse::<u16>() {
                    Ok(c) => c,
                    Err(_) => return ok(format!("argument 'code' must be an integer or empty, got {code:?}\n")),
                }
            };
            Ok(redirect(&req, &location, code))
        }
        "/shell" => shell(&req).await,
        "/shutdown" => {
            go_log("GET /shutdown");
            let _ = state.exit.send(Exit::Now(0));
            exiting()
        }
        "/upload" => {
            go_log("GET /upload");
            Ok(go_error(StatusCode::NOT_IMPLEMENTED, "upload is not supported by rkube's built-in agnhost"))
        }
        _ => {
            go_log("GET /");
            ok(format!("NOW: {}", go_now_string(state.start)))
        }
    }
}

async fn exit(state: &State, req: &Req) -> HandlerResult {
    let (wait_s, timeout_s, code_s) = (req.form_value("wait"), req.form_value("timeout"), req.form_value("code"));
    go_log(format_args!("GET /exit?code={code_s}&timeout={timeout_s}&wait={wait_s}"));
    let timeout = match parse_go_duration(&timeout_s) {
        Ok(d) => d,
        Err(_) if timeout_s.is_empty() => 0,
        Err(_) => {
            return ok(format!("argument 'timeout' must be a valid golang duration or empty, got {timeout_s:?}\n"))
        }
    };
    let wait = match parse_go_duration(&wait_s) {
        Ok(d) => d,
        Err(_) if wait_s.is_empty() => 0,
        Err(_) => return ok(format!("argument 'wait' must be a valid golang duration or empty, got {wait_s:?}\n")),
    };
    let code = match code_s.parse::<i32>() {
        Ok(c) => c,
        Err(_) if code_s.is_empty() => 0,
        Err(_) => return ok(format!("argument 'code' must be an integer [0-127] or empty, got {code_s:?}\n")),
    };
    go_log(format_args!(
        "Will begin shutdown in {}, allowing {} for connections to close, then will exit with {code}",
        go_duration_string(wait),
        go_duration_string(timeout)
    ));
    if wait > 0 {
        tokio::time::sleep(Duration::from_nanos(wait.unsigned_abs())).await;
    }
    if timeout == 0 {
        let _ = state.exit.send(Exit::Now(code));
        return exiting();
    }
    let timeout = Duration::from_nanos(timeout.max(0).unsigned_abs());
    let _ = state.exit.send(Exit::Graceful { code, timeout });
    Ok(text(StatusCode::OK, ""))
}

/// Go's `http.Redirect`.
fn redirect(req: &Req, location: &str, code: u16) -> http::Resp {
    let mut target = location.to_string();
    if !location.contains("://") && !location.starts_with('/') {
        // Relative to the directory of the request path.
        let path = req.path();
        let dir = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
        target = format!("{dir}{location}");
    }
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
    let mut builder = hyper::Response::builder().status(status).header(hyper::header::LOCATION, target.as_str());
    let body = if matches!(req.method, hyper::Method::GET | hyper::Method::HEAD) {
        builder = builder.header(hyper::header::CONTENT_TYPE, "text/html; charset=utf-8");
        format!("<a href=\"{}\">{}</a>.\n\n", html_escape(&target), status.canonical_reason().unwrap_or(""))
    } else {
        String::new()
    };
    builder.body(http_body_util::Full::new(body.into())).unwrap_or_else(|_| text(StatusCode::FOUND, ""))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&#34;").replace('\'', "&#39;")
}

/// Go's `json.Marshal` of a string map: sorted keys, HTML-safe escapes.
fn go_json(map: &BTreeMap<&str, serde_json::Value>) -> String {
    let s = serde_json::to_string(map).unwrap_or_else(|_| "{}".into());
    s.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

async fn dial(req: &Req) -> HandlerResult {
    let q = |k: &str| {
        let query = req.uri.query().unwrap_or("");
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (host, port, request, protocol, tries_s) = (q("host"), q("port"), q("request"), q("protocol"), q("tries"));
    go_log(format_args!("GET /dial?host={host}&protocol={protocol}&port={port}&request={request}&tries={tries_s}"));
    let tries: i64 = if tries_s.is_empty() {
        1
    } else {
        match tries_s.parse() {
            Ok(t) => t,
            Err(_) => {
                return Ok(go_error(
                    StatusCode::BAD_REQUEST,
                    &format!("tries parameter is invalid. strconv.Atoi: parsing {tries_s:?}: invalid syntax"),
                ))
            }
        }
    };
    if request.is_empty() {
        return Ok(go_error(StatusCode::BAD_REQUEST, "request parameter not specified. <nil>"));
    }
    let protocol = protocol.to_lowercase();
    if !matches!(protocol.as_str(), "" | "http" | "udp") {
        let msg = if protocol == "sctp" {
            "unsupported protocol. sctp (rkube's built-in agnhost has no SCTP)".to_string()
        } else {
            format!("unsupported protocol. {protocol}")
        };
        return Ok(go_error(StatusCode::BAD_REQUEST, &msg));
    }
    let host_port = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let addr = match tokio::net::lookup_host(host_port.as_str()).await.map(|mut it| it.next()) {
        Ok(Some(a)) => a,
        Ok(None) => {
            return Ok(go_error(
                StatusCode::BAD_REQUEST,
                &format!("host and/or port param are invalid. lookup {host}: no such host"),
            ))
        }
        Err(e) => return Ok(go_error(StatusCode::BAD_REQUEST, &format!("host and/or port param are invalid. {e}"))),
    };
    let mut errors = Vec::new();
    let mut responses = Vec::new();
    let mut last = String::new();
    for _ in 0..tries {
        let result = if protocol == "udp" {
            dial_udp(&request, addr).await
        } else {
            http::get(addr, &request, Duration::from_secs(5)).await
        };
        match result {
            Ok(r) => {
                last = r.clone();
                responses.push(serde_json::Value::from(r));
            }
            Err(e) => {
                last.clear();
                errors.push(serde_json::Value::from(e));
            }
        }
    }
    let mut output = BTreeMap::new();
    // Upstream reports responses only when the last try answered.
    if !last.is_empty() {
        output.insert("responses", serde_json::Value::Array(responses));
    }
    if !errors.is_empty() {
        output.insert("errors", serde_json::Value::Array(errors));
    }
    ok(go_json(&output))
}

async fn dial_udp(request: &str, addr: SocketAddr) -> Result<String, String> {
    let local: SocketAddr = if addr.is_ipv4() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    } else {
        SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0)
    };
    let sock = UdpSocket::bind(local).await.map_err(|e| format!("udp dial failed. err:{e}"))?;
    sock.connect(addr).await.map_err(|e| format!("udp dial failed. err:{e}"))?;
    sock.send(request.as_bytes()).await.map_err(|e| format!("udp connection write failed. err:{e}"))?;
    let mut buf = [0u8; 2048];
    let local = sock.local_addr().map(|a| a.to_string()).unwrap_or_default();
    match tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(Ok(_)) => Err("reading from udp connection failed. err:'<nil>'".into()),
        Ok(Err(e)) => Err(format!(
            "reading from udp connection failed. err:'read udp {local}->{addr}: {}'",
            http::go_errno_text(&e)
        )),
        Err(_) => Err(format!("reading from udp connection failed. err:'read udp {local}->{addr}: i/o timeout'")),
    }
}

/// `/shell`: `/bin/sh -c <cmd>` (from the node's filesystem), combined output.
async fn shell(req: &Req) -> HandlerResult {
    let mut cmd = req.form_value("shellCommand");
    if cmd.is_empty() {
        cmd = req.form_value("cmd");
    }
    go_log(format_args!("GET /shell?cmd={cmd}"));
    let (output, error) = tokio::task::spawn_blocking(move || combined_output(&cmd))
        .await
        .unwrap_or_else(|e| (Vec::new(), Some(e.to_string())));
    let mut map = BTreeMap::new();
    if !output.is_empty() {
        map.insert("output", serde_json::Value::from(String::from_utf8_lossy(&output).into_owned()));
    }
    if let Some(e) = error {
        map.insert("error", serde_json::Value::from(e));
    }
    let body = go_json(&map);
    go_log(format_args!("Output: {body}"));
    ok(body)
}

/// Go's `exec.Command(...).CombinedOutput()`: stdout and stderr into one pipe.
fn combined_output(cmd: &str) -> (Vec<u8>, Option<String>) {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return (Vec::new(), Some(std::io::Error::last_os_error().to_string()));
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let write_clone = match write_end.try_clone() {
        Ok(fd) => fd,
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    let child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(write_end)
        .stderr(write_clone)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (Vec::new(), Some(format!("fork/exec /bin/sh: {}", http::go_errno_text(&e)))),
    };
    // The Command (and its copies of the write end) is gone: EOF comes when the child exits.
    let mut output = Vec::new();
    let _ = std::fs::File::from(read_end).read_to_end(&mut output);
    let error = match child.wait() {
        Ok(status) if status.success() => None,
        Ok(status) => Some(match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("signal: {}", signal_name(sig)),
            (None, None) => status.to_string(),
        }),
        Err(e) => Some(e.to_string()),
    };
    (output, error)
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGKILL => "killed".into(),
        libc::SIGTERM => "terminated".into(),
        libc::SIGINT => "interrupt".into(),
        libc::SIGSEGV => "segmentation fault".into(),
        libc::SIGABRT => "aborted".into(),
        libc::SIGPIPE => "broken pipe".into(),
        libc::SIGHUP => "hangup".into(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_json() {
        assert_eq!(parse_addresses(""), Ok(vec![None]));
        let ips = parse_addresses("127.0.0.2,127.0.0.1,127.0.0.2").expect("valid");
        assert_eq!(ips, vec![Some("127.0.0.1".parse().expect("ip")), Some("127.0.0.2".parse().expect("ip"))]);
        assert!(parse_addresses("nope").is_err());
        let mut m = BTreeMap::new();
        m.insert("output", serde_json::Value::from("<a&b>"));
        m.insert("error", serde_json::Value::from("exit status 1"));
        assert_eq!(go_json(&m), r#"{"error":"exit status 1","output":"\u003ca\u0026b\u003e"}"#);
    }

    #[test]
    fn shell_combines_output() {
        let (out, err) = combined_output("echo out; echo err >&2; exit 3");
        assert_eq!(String::from_utf8_lossy(&out), "out\nerr\n");
        assert_eq!(err.as_deref(), Some("exit status 3"));
        assert_eq!(combined_output("true"), (Vec::new(), None));
    }
}
