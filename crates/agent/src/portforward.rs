//! The kubelet's `/portForward/{namespace}/{pod}` on the agent API: the three
//! ways clients forward ports (`kubelet/pkg/cri/streaming/portforward`), all
//! reaching `localhost:<port>` in the pod's network namespace:
//! - WebSocket with `SPDY/3.1+portforward.k8s.io` (kubectl 1.31+): the SPDY
//!   session is tunnelled in the WebSocket. Upstream the API server unwraps
//!   the tunnel and speaks SPDY to the kubelet; here the API server splices
//!   bytes and the agent unwraps it, with the same result for the client;
//! - a SPDY/3.1 upgrade (kubectl's fallback and older kubectl);
//! - WebSocket channels (`v4.channel.k8s.io`, the Python client) for the
//!   ports in the `port` query parameters.

use crate::upgrade;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use httpstream::portforward::{channels, over_spdy, Dial, Target, PROTOCOL_V1};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;

type Body = BoxBody<Bytes, Infallible>;

/// Answer a port-forward request for the pod `uid` (its sandbox must exist).
pub(crate) fn handle(
    rt: crate::runtime::Runtime,
    uid: String,
    query: &[(String, String)],
    req: Request<Incoming>,
    text: impl Fn(u16, String) -> Response<Body>,
) -> Response<Body> {
    let dial: Dial = {
        let (rt, uid) = (rt.clone(), uid.clone());
        Arc::new(move |port| {
            let (rt, uid) = (rt.clone(), uid.clone());
            Box::pin(async move { rt.connect_in_pod(&uid, port).await })
        })
    };
    // The CRI server names the sandbox and leaves the uid empty.
    let target = Target { pod: uid, uid: String::new() };
    if upgrade::is_websocket(&req) {
        let offered = upgrade::websocket_protocols(&req);
        let tunnel = format!("{}{PROTOCOL_V1}", httpstream::tunnel::PREFIX);
        if offered.contains(&tunnel) {
            let Some(resp) = upgrade::accept_websocket(&req, Some(&tunnel)) else {
                return text(400, "missing Sec-WebSocket-Key".into());
            };
            tokio::spawn(async move {
                if let Some(ws) = upgrade::websocket(req).await {
                    over_spdy::serve(httpstream::tunnel::byte_stream(ws), target, dial).await;
                }
            });
            return resp;
        }
        let ports: Vec<String> = query.iter().filter(|(k, _)| k == "port").map(|(_, v)| v.clone()).collect();
        let ports = match channels::ports_from_query(&ports) {
            Ok(p) => p,
            Err(e) => return text(400, e),
        };
        let (protocol, framing) = match channels::negotiate(&offered) {
            Ok(x) => x,
            Err(e) => return text(400, format!("unable to upgrade websocket connection: {e}")),
        };
        let Some(resp) = upgrade::accept_websocket(&req, protocol) else {
            return text(400, "missing Sec-WebSocket-Key".into());
        };
        tokio::spawn(async move {
            if let Some(ws) = upgrade::websocket(req).await {
                channels::serve(ws, ports, framing, target, dial).await;
            }
        });
        return resp;
    }
    match upgrade::accept_spdy(&req, &[PROTOCOL_V1]) {
        Ok(resp) => {
            tokio::spawn(async move {
                match hyper::upgrade::on(req).await {
                    Ok(io) => over_spdy::serve(TokioIo::new(io), target, dial).await,
                    Err(e) => tracing::debug!(error = %e, "port-forward upgrade failed"),
                }
            });
            resp
        }
        Err(resp) => *resp,
    }
}
