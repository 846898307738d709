//! Accepting HTTP upgrades on the agent API: WebSocket (exec, port-forward)
//! and SPDY/3.1 (port-forward's fallback), with upstream's checks and texts
//! (`httpstream.Handshake`, `spdy` `responseUpgrader.UpgradeResponse`).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio_tungstenite::tungstenite::{self, protocol::Role};
use tokio_tungstenite::WebSocketStream;

type Body = BoxBody<Bytes, Infallible>;

/// The WebSocket an accepted upgrade turns into.
pub(crate) type WebSocket = WebSocketStream<TokioIo<Upgraded>>;

fn values(h: &HeaderMap, name: impl http::header::AsHeaderName + Clone) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect()
}

fn switching(headers: &[(http::HeaderName, String)]) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().append(k, v);
        }
    }
    r
}

/// A WebSocket upgrade request (`Upgrade: websocket` with a key)?
pub(crate) fn is_websocket<B>(req: &Request<B>) -> bool {
    values(req.headers(), http::header::UPGRADE).iter().any(|u| u.eq_ignore_ascii_case("websocket"))
        && req.headers().contains_key(http::header::SEC_WEBSOCKET_KEY)
}

/// The subprotocols a WebSocket request offers, in its order.
pub(crate) fn websocket_protocols<B>(req: &Request<B>) -> Vec<String> {
    values(req.headers(), http::header::SEC_WEBSOCKET_PROTOCOL)
}

/// The 101 answer accepting a WebSocket with `protocol`; `None` without a key.
pub(crate) fn accept_websocket<B>(req: &Request<B>, protocol: Option<&str>) -> Option<Response<Body>> {
    let key = req.headers().get(http::header::SEC_WEBSOCKET_KEY)?;
    let mut h = vec![
        (http::header::UPGRADE, "websocket".to_string()),
        (http::header::CONNECTION, "Upgrade".to_string()),
        (http::header::SEC_WEBSOCKET_ACCEPT, tungstenite::handshake::derive_accept_key(key.as_bytes())),
    ];
    if let Some(p) = protocol {
        h.push((http::header::SEC_WEBSOCKET_PROTOCOL, p.to_string()));
    }
    Some(switching(&h))
}

/// Once the 101 went out: the request's connection as a server-side WebSocket.
pub(crate) async fn websocket(req: Request<Incoming>) -> Option<WebSocket> {
    let upgraded = hyper::upgrade::on(req).await.ok()?;
    Some(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await)
}

/// `X-Stream-Protocol-Version`, the header SPDY upgrades negotiate with.
pub(crate) const PROTOCOL_VERSION: &str = "X-Stream-Protocol-Version";
const ACCEPTED_PROTOCOL_VERSIONS: &str = "X-Accepted-Stream-Protocol-Versions";

/// Check a SPDY/3.1 upgrade and negotiate its protocol among `served`; the
/// 101 answer, or the error answer upstream gives.
pub(crate) fn accept_spdy<B>(req: &Request<B>, served: &[&str]) -> Result<Response<Body>, Box<Response<Body>>> {
    let text = |code: StatusCode, msg: String| {
        let mut r = Response::new(Full::new(Bytes::from(msg + "\n")).boxed());
        *r.status_mut() = code;
        r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        Box::new(r)
    };
    // httpstream.Handshake
    if !req.headers().contains_key(PROTOCOL_VERSION) {
        let n = req.headers().keys_len();
        return Err(text(
            StatusCode::BAD_REQUEST,
            format!("unable to upgrade: header {PROTOCOL_VERSION} does not exist in request with {n} headers"),
        ));
    }
    let offered = values(req.headers(), PROTOCOL_VERSION);
    if offered.is_empty() {
        return Err(text(StatusCode::BAD_REQUEST, format!("unable to upgrade: header {PROTOCOL_VERSION} is empty")));
    }
    let Some(chosen) = offered.iter().find(|p| served.contains(&p.as_str())).cloned() else {
        let mut r = text(
            StatusCode::FORBIDDEN,
            format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {served:?}"),
        );
        for s in served {
            if let Ok(v) = HeaderValue::from_str(s) {
                r.headers_mut().append(ACCEPTED_PROTOCOL_VERSIONS, v);
            }
        }
        return Err(r);
    };
    // responseUpgrader.UpgradeResponse
    let connection = values(req.headers(), http::header::CONNECTION).join(",").to_ascii_lowercase();
    let upgrade = values(req.headers(), http::header::UPGRADE).join(",").to_ascii_lowercase();
    if !connection.contains("upgrade") || !upgrade.contains(&httpstream::spdy::UPGRADE.to_ascii_lowercase()) {
        return Err(text(StatusCode::BAD_REQUEST, "unable to upgrade: missing upgrade headers in request".into()));
    }
    Ok(switching(&[
        (http::header::CONNECTION, "Upgrade".into()),
        (http::header::UPGRADE, httpstream::spdy::UPGRADE.into()),
        (http::HeaderName::from_static("x-stream-protocol-version"), chosen),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method("POST").uri("/portForward/default/web");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn spdy_upgrades_negotiate_as_upstream() {
        let served = ["portforward.k8s.io"];
        let ok = accept_spdy(
            &req(&[("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), (PROTOCOL_VERSION, "portforward.k8s.io")]),
            &served,
        )
        .unwrap();
        assert_eq!(ok.status(), 101);
        assert_eq!(ok.headers()["upgrade"], "SPDY/3.1");
        assert_eq!(ok.headers()["x-stream-protocol-version"], "portforward.k8s.io");
        let missing = accept_spdy(&req(&[("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]), &served).unwrap_err();
        assert_eq!(missing.status(), 400);
        let other = accept_spdy(
            &req(&[("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), (PROTOCOL_VERSION, "v4.channel.k8s.io")]),
            &served,
        )
        .unwrap_err();
        assert_eq!(other.status(), 403);
        assert_eq!(other.headers()[ACCEPTED_PROTOCOL_VERSIONS], "portforward.k8s.io");
        let no_upgrade = accept_spdy(&req(&[(PROTOCOL_VERSION, "portforward.k8s.io")]), &served).unwrap_err();
        assert_eq!(no_upgrade.status(), 400);
    }

    #[test]
    fn websocket_requests_and_protocols() {
        let r = req(&[
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Protocol", "SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io"),
        ]);
        assert!(is_websocket(&r));
        assert_eq!(websocket_protocols(&r), vec!["SPDY/3.1+portforward.k8s.io", "v4.channel.k8s.io"]);
        let a = accept_websocket(&r, Some("v4.channel.k8s.io")).unwrap();
        assert_eq!(a.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(!is_websocket(&req(&[("Upgrade", "SPDY/3.1")])));
    }
}
