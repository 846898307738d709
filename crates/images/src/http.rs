//! HTTP/1.1 serving (plain or TLS) with graceful shutdown, a self-signed TLS
//! configuration, and the small HTTP client netexec's `/dial` uses.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub(crate) type Resp = Response<Full<Bytes>>;

/// A handler's outcome: a response, or `Err` to drop the connection without
/// answering (what a Go handler that calls `os.Exit` or panics looks like).
pub(crate) type HandlerResult = Result<Resp, std::io::Error>;

/// A request handler: the request with its body read, and the client's address.
pub(crate) type Handler =
    Arc<dyn Fn(Req, SocketAddr) -> Pin<Box<dyn Future<Output = HandlerResult> + Send>> + Send + Sync>;

/// A request whose body has been read (at most 10 MiB, Go's form limit).
pub(crate) struct Req {
    pub method: hyper::Method,
    pub uri: hyper::Uri,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Req {
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// Go's `Request.FormValue`: the first value of `key` in a urlencoded body
    /// (POST/PUT/PATCH), then in the query string; `""` if absent.
    pub fn form_value(&self, key: &str) -> String {
        let is_form = self
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let body_method = matches!(self.method, hyper::Method::POST | hyper::Method::PUT | hyper::Method::PATCH);
        if is_form && body_method {
            if let Some((_, v)) = url::form_urlencoded::parse(&self.body).find(|(k, _)| k == key) {
                return v.into_owned();
            }
        }
        let query = self.uri.query().unwrap_or("");
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }
}

/// A response with Go's headers for a text body.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let body: Bytes = body.into();
    let mut builder = Response::builder().status(status);
    if !body.is_empty() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8");
    }
    builder.body(Full::new(body)).unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Go's `http.Error`.
pub(crate) fn go_error(status: StatusCode, msg: &str) -> Resp {
    let mut resp = text(status, format!("{msg}\n"));
    resp.headers_mut().insert("x-content-type-options", hyper::header::HeaderValue::from_static("nosniff"));
    resp
}

/// Serve connections from `listener` until `stop` turns true, then let open
/// connections finish their current request (graceful shutdown) and return.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Handler,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    // False once the stop sender is gone: nobody can stop us any more.
    let mut stoppable = true;
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            changed = stop.changed(), if stoppable => stoppable = changed.is_ok(),
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    conns.spawn(serve_conn(stream, remote, tls.clone(), handler.clone(), stop.clone()));
                }
                // EMFILE and friends: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

async fn serve_conn(
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    handler: Handler,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => drive(stream, remote, handler, stop).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
            if let Ok(Ok(tls_stream)) = handshake {
                drive(tls_stream, remote, handler, stop).await
            }
        }
    }
}

async fn drive<S>(io: S, remote: SocketAddr, handler: Handler, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = match Limited::new(body, 10 << 20).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => return Ok(go_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")),
            };
            let req = Req { method: parts.method, uri: parts.uri, headers: parts.headers, body };
            handler(req, remote).await
        }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    if !*stop.borrow() {
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = stop.changed() => {
                if changed.is_err() {
                    let _ = conn.as_mut().await;
                    return;
                }
            }
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Bind a TCP listener with `SO_REUSEADDR` (as Go and node do).
pub(crate) fn listen_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A TLS server configuration for a self-signed certificate generated now,
/// for `names` (DNS names or IP addresses).
pub(crate) fn self_signed_tls(names: Vec<String>) -> Result<TlsAcceptor, String> {
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| format!("generating a certificate: {e}"))?;
    let cert = rustls_pki_types::CertificateDer::from(certified.cert.der().to_vec());
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    tls_acceptor(vec![cert], key)
}

/// A TLS server configuration from PEM files (Go's `ListenAndServeTLS`).
pub(crate) fn pem_tls(cert_file: &str, key_file: &str) -> Result<TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    let chain = rustls_pki_types::CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("open {cert_file}: {e}"))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key_file).map_err(|e| format!("open {key_file}: {e}"))?;
    tls_acceptor(chain, key)
}

fn tls_acceptor(
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// `GET http://{addr}/{request}` with a deadline, as netexec's `dialHTTP`
/// (Go's http.Client with a 5 s timeout): the response body, or Go-like error text.
pub(crate) async fn get(addr: SocketAddr, request: &str, timeout: Duration) -> Result<String, String> {
    let url = format!("http://{addr}/{request}");
    let attempt = async {
        let mut stream =
            TcpStream::connect(addr).await.map_err(|e| format!("dial tcp {addr}: connect: {}", go_errno_text(&e)))?;
        let target = format!("/{}", request.replace(' ', "%20"));
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
        parse_response(&raw).map(|(_, body)| String::from_utf8_lossy(&body).into_owned())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => Err(format!("Get \"{url}\": {e}")),
        Err(_) => {
            Err(format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"))
        }
    }
}

/// How Go names a listen address in errors: `:8080` for the any-address.
pub(crate) fn go_listen_addr(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!(":{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// Go's text for common socket errors (`connection refused`, ...).
pub(crate) fn go_errno_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => {
            let s = e.to_string();
            // "No route to host (os error 113)" -> "no route to host"
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut chars = s.chars();
            chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or(s)
        }
    }
}

/// Split a complete HTTP/1.x response into (status, body), decoding
/// `Content-Length` and `chunked` bodies.
pub(crate) fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("malformed HTTP status line")?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse::<usize>().ok();
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    if chunked {
        let mut body = Vec::new();
        let mut rest = rest;
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or("malformed chunk")?;
            let size_text = String::from_utf8_lossy(&rest[..eol]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| "malformed chunk size")?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            let chunk = rest.get(..size).ok_or("truncated chunk")?;
            body.extend_from_slice(chunk);
            rest = rest.get(size + 2..).unwrap_or_default();
        }
        return Ok((status, body));
    }
    let body = match length {
        Some(n) => rest.get(..n).ok_or("unexpected EOF")?.to_vec(),
        None => rest.to_vec(),
    };
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_response(raw), Ok((200, b"hello".to_vec())));
        let raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw), Ok((404, b"abcde".to_vec())));
        let raw = b"HTTP/1.0 200 OK\r\n\r\nuntil eof";
        assert_eq!(parse_response(raw), Ok((200, b"until eof".to_vec())));
        assert!(parse_response(b"garbage").is_err());
    }
}
