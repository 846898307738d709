//! The agent's HTTPS API, used by the API server for `kubectl logs` and
//! `kubectl exec` (kubelet's `/containerLogs` and `/exec`). Exec speaks the
//! Kubernetes WebSocket remote-command protocol (`v5.channel.k8s.io`, and v4):
//! each binary message starts with a channel byte (0 stdin, 1 stdout, 2 stderr,
//! 3 error/exit status, 4 resize, 255 close in v5).

use crate::pods::container_log_path;
use crate::runtime::{ExecSpec, Runtime};
use crate::AgentConfig;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, Message};

type Body = BoxBody<Bytes, Infallible>;

struct Ctx {
    cfg: AgentConfig,
    rt: Runtime,
    client: kube::Client,
}

fn text(code: u16, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(msg.into())).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

/// Bind the agent API on the node address and serve it.
pub async fn start(cfg: AgentConfig, rt: Runtime, client: kube::Client) -> Result<tokio::task::JoinHandle<()>, String> {
    let chain: Vec<rustls_pki_types::CertificateDer<'static>> = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::pem_slice_iter(cfg.tls_cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("agent certificate: {e}"))?
    };
    let key = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::PrivateKeyDer::from_pem_slice(cfg.tls_key_pem.as_bytes())
            .map_err(|e| format!("agent key: {e}"))?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(cfg.client_ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("cluster CA: {e}"))?;
            roots.add(cert).map_err(|e| format!("cluster CA: {e}"))?;
        }
    }
    // Clients without a certificate still reach /healthz and /metrics.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("client certificate verifier: {e}"))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let addr = std::net::SocketAddr::from((cfg.node_ip, cfg.kubelet_port));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("binding {addr}: {e}"))?;
    let ctx = Arc::new(Ctx { cfg, rt, client });
    Ok(tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (acceptor, ctx) = (acceptor.clone(), ctx.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                // Only the API server may read logs, exec and forward ports
                // (kubelet's x509 authentication of `kube-apiserver-kubelet-client`).
                let apiserver = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|der| pki::subject(der.as_ref()))
                    .is_some_and(|(cn, _)| cn == pki::APISERVER_KUBELET_CLIENT);
                let svc = hyper::service::service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(handle(ctx, apiserver, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            });
        }
    }))
}

async fn handle(ctx: Arc<Ctx>, apiserver: bool, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        return text(200, "ok");
    }
    if path == "/metrics" {
        // The node's Service proxy metrics (kube-proxy's names).
        let mut r = text(200, proxy::metrics() + &l2::metrics());
        r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
        return r;
    }
    if !apiserver {
        return text(401, "Unauthorized");
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    match segs.as_slice() {
        ["containerLogs", ns, pod, container] => match logs(&ctx, ns, pod, container, &query).await {
            Ok(r) => r,
            Err((code, msg)) => text(code, msg),
        },
        ["exec", ns, pod, container] => exec(ctx.clone(), ns, pod, container, query, req).await,
        // The kubelet also takes the pod's uid as a last segment.
        ["portForward", ns, pod] | ["portForward", ns, pod, _] => port_forward(&ctx, ns, pod, &query, req).await,
        _ => text(404, "not found"),
    }
}

async fn port_forward(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    query: &[(String, String)],
    req: Request<Incoming>,
) -> Response<Body> {
    let (_, uid) = match pod_uid(ctx, ns, pod).await {
        Ok(x) => x,
        Err((c, m)) => return text(c, m),
    };
    if ctx.rt.sandbox(&uid).is_none() {
        return text(400, format!("pod {ns}/{pod} has no running sandbox on this node"));
    }
    crate::portforward::handle(ctx.rt.clone(), uid, query, req, text)
}

fn q<'a>(query: &'a [(String, String)], k: &str) -> Option<&'a str> {
    query.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
}

async fn pod_uid(ctx: &Ctx, ns: &str, name: &str) -> Result<(Pod, String), (u16, String)> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pod = api.get(name).await.map_err(|e| (404, format!("pod {ns}/{name}: {e}")))?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    Ok((pod, uid))
}

/// The newest log files of a container: (current, previous).
fn log_files(cfg: &AgentConfig, uid: &str, container: &str) -> (Option<PathBuf>, Option<PathBuf>) {
    let dir = container_log_path(&cfg.data_dir, uid, container, 0).parent().map(PathBuf::from).unwrap_or_default();
    let mut runs: Vec<(i32, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            let n = p.file_stem()?.to_str()?.parse::<i32>().ok()?;
            Some((n, p))
        })
        .collect();
    runs.sort();
    let cur = runs.last().map(|(_, p)| p.clone());
    let prev = runs.len().checked_sub(2).and_then(|i| runs.get(i)).map(|(_, p)| p.clone());
    (cur, prev)
}

/// One CRI log line (`<time> <stream> <tag> <message>`) as kubectl shows it.
fn render_line(line: &str, timestamps: bool) -> Option<String> {
    let mut parts = line.splitn(4, ' ');
    let (ts, _stream, tag) = (parts.next()?, parts.next()?, parts.next()?);
    let msg = parts.next().unwrap_or("");
    let nl = if tag == "P" { "" } else { "\n" };
    Some(if timestamps { format!("{ts} {msg}{nl}") } else { format!("{msg}{nl}") })
}

async fn logs(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    container: &str,
    query: &[(String, String)],
) -> Result<Response<Body>, (u16, String)> {
    let (_, uid) = pod_uid(ctx, ns, pod).await?;
    let (cur, mut prev) = log_files(&ctx.cfg, &uid, container);
    // While a crashed container waits to restart, its last run is the
    // "previous" one (what `kubectl logs --previous` shows in CrashLoopBackOff).
    let running =
        ctx.rt.container(&uid, container).is_some_and(|c| c.is_running() && Some(&c.log_path) == cur.as_ref());
    if !running {
        prev = cur.clone();
    }
    let previous = q(query, "previous") == Some("true");
    let timestamps = q(query, "timestamps") == Some("true");
    let follow = q(query, "follow") == Some("true") && !previous;
    let tail: Option<usize> = q(query, "tailLines").and_then(|v| v.parse().ok());
    let path = if previous {
        prev.ok_or((400, format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")))?
    } else {
        cur.ok_or((400, format!("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating")))?
    };
    let content =
        tokio::fs::read_to_string(&path).await.map_err(|e| (500, format!("reading {}: {e}", path.display())))?;
    let lines: Vec<&str> = content.lines().collect();
    let start = tail.map(|t| lines.len().saturating_sub(t)).unwrap_or(0);
    let initial: String = lines[start..].iter().filter_map(|l| render_line(l, timestamps)).collect();
    if !follow {
        let mut r = text(200, initial);
        r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return Ok(r);
    }
    // Follow: send what is there, then new lines as they are written, until
    // the container's run ends (a newer log file appears) or the client goes.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let offset = content.len() as u64;
    let (cfg, uid, container) = (ctx.cfg.clone(), uid.clone(), container.to_string());
    tokio::spawn(async move {
        if tx.send(Bytes::from(initial)).await.is_err() {
            return;
        }
        let Ok(mut f) = tokio::fs::File::open(&path).await else { return };
        use tokio::io::AsyncSeekExt;
        if f.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
            return;
        }
        let mut reader = tokio::io::BufReader::new(f);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) => {
                    if log_files(&cfg, &uid, &container).0.as_ref() != Some(&path) || tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Ok(_) if line.ends_with('\n') => {
                    if let Some(out) = render_line(line.trim_end_matches('\n'), timestamps) {
                        if tx.send(Bytes::from(out)).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                Err(_) => return,
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b)));
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(r)
}

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

async fn exec(
    ctx: Arc<Ctx>,
    ns: &str,
    pod: &str,
    container: &str,
    query: Vec<(String, String)>,
    req: Request<Incoming>,
) -> Response<Body> {
    let argv: Vec<String> = query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    if argv.is_empty() {
        return text(400, "you must specify at least one command for the container");
    }
    let tty = q(&query, "tty") == Some("true");
    let want_stdin = q(&query, "stdin") == Some("true");
    if !crate::upgrade::is_websocket(&req) {
        return text(400, "exec needs a WebSocket upgrade (v5.channel.k8s.io)");
    }
    let offered = crate::upgrade::websocket_protocols(&req);
    let Some(protocol) =
        ["v5.channel.k8s.io", "v4.channel.k8s.io"].into_iter().find(|p| offered.iter().any(|o| o == p))
    else {
        return text(400, format!("unsupported remote command protocols {offered:?}; this node speaks v5.channel.k8s.io and v4.channel.k8s.io"));
    };
    let (_, uid) = match pod_uid(&ctx, ns, pod).await {
        Ok(x) => x,
        Err((c, m)) => return text(c, m),
    };
    let Some(sandbox) = ctx.rt.sandbox(&uid) else {
        return text(400, format!("container {container} is not running in pod {pod}"));
    };
    let spec = ExecSpec { argv: argv.clone(), env: Vec::new(), tty, working_dir: None };
    let Some(resp) = crate::upgrade::accept_websocket(&req, Some(protocol)) else {
        return text(400, "exec needs a WebSocket upgrade (v5.channel.k8s.io)");
    };
    let v5 = protocol.starts_with("v5");
    let container = container.to_string();
    tokio::spawn(async move {
        let Some(ws) = crate::upgrade::websocket(req).await else { return };
        let status = match ctx.rt.exec_in(&sandbox, Some(&container), &spec).await {
            Ok(p) => bridge(ws, p, want_stdin, v5, &argv).await,
            Err(e) => {
                let mut ws = ws;
                let s = serde_json::json!({ "metadata": {}, "status": "Failure", "message": format!("failed to exec in container: {e}"), "reason": "InternalError" });
                let _ = ws.send(channel_msg(ERROR, s.to_string().as_bytes())).await;
                let _ = ws.send(normal_close()).await;
                let _ = ws.close(None).await;
                return;
            }
        };
        let _ = status;
    });
    resp
}

fn channel_msg(ch: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(ch);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

/// Pump the process's stdio over the WebSocket, then send the exit status.
async fn bridge<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    mut p: crate::runtime::ExecProcess,
    want_stdin: bool,
    v5: bool,
    argv: &[String],
) -> Option<i32>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(64);
    let mut pumps = Vec::new();
    for (ch, reader) in [(STDOUT, p.stdout.take()), (STDERR, p.stderr.take())] {
        let Some(mut reader) = reader else { continue };
        let tx = out_tx.clone();
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.send(channel_msg(ch, &buf[..n])).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }));
    }
    drop(out_tx);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return None;
            }
        }
        Some(sink)
    });
    let mut stdin = if want_stdin { p.stdin.take() } else { None };
    let resize = p.resizer();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = source.next().await {
            let data = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&ch, rest)) = data.split_first() else { continue };
            match ch {
                STDIN if !rest.is_empty() => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(rest).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                RESIZE => {
                    if let (Some(r), Ok(v)) = (&resize, serde_json::from_slice::<serde_json::Value>(rest)) {
                        let w = v.get("Width").and_then(|x| x.as_u64()).unwrap_or(80) as u16;
                        let h = v.get("Height").and_then(|x| x.as_u64()).unwrap_or(24) as u16;
                        r.resize(w, h);
                    }
                }
                CLOSE if v5 && rest.first() == Some(&STDIN) => stdin = None,
                _ => {}
            }
        }
    });
    let code = p.wait().await.ok();
    for pump in pumps {
        let _ = pump.await;
    }
    reader.abort();
    let mut sink = writer.await.ok().flatten()?;
    let status = match code {
        Some(0) => serde_json::json!({ "metadata": {}, "status": "Success" }),
        Some(c) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {argv:?}, exit code {c}"),
            "reason": "NonZeroExitCode",
            "details": { "causes": [{ "reason": "ExitCode", "message": c.to_string() }] },
        }),
        None => {
            serde_json::json!({ "metadata": {}, "status": "Failure", "message": "command ended abnormally", "reason": "InternalError" })
        }
    };
    let _ = sink.send(channel_msg(ERROR, status.to_string().as_bytes())).await;
    // client-go treats anything but a normal closure (1000) as an error.
    let _ = sink.send(normal_close()).await;
    let _ = sink.close().await;
    code
}

fn normal_close() -> Message {
    use tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))
}
