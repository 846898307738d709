//! The `portforward.k8s.io` protocol, the kubelet's side of `kubectl
//! port-forward` (`kubelet/pkg/cri/streaming/portforward`):
//! - [`over_spdy`]: each forwarded connection is a pair of SPDY streams, an
//!   error stream and a data stream, matched by their `requestID` header;
//! - [`channels`]: the WebSocket channel protocol (`v4.channel.k8s.io`, used
//!   by the official Python client): a data and an error channel per port
//!   named in the `port` query parameters.
//!
//! What a forwarded connection reaches is the caller's [`Dial`]: the node agent
//! connects to `localhost:<port>` inside the pod's network namespace.

pub mod channels;
pub mod copy;
pub mod over_spdy;

use futures::future::BoxFuture;
use std::sync::Arc;
use tokio::net::TcpStream;

/// The subprotocol (`X-Stream-Protocol-Version`) of port forwarding.
pub const PROTOCOL_V1: &str = "portforward.k8s.io";

/// Stream headers (`k8s.io/api/core/v1` `PortHeader`, `StreamType`, ...).
pub const HEADER_PORT: &str = "port";
pub const HEADER_STREAM_TYPE: &str = "streamType";
pub const HEADER_REQUEST_ID: &str = "requestID";
pub const STREAM_TYPE_DATA: &str = "data";
pub const STREAM_TYPE_ERROR: &str = "error";

/// Connects a forwarded connection to the pod's `port`; the error is the
/// text the client is shown after "error forwarding port N to pod ...".
pub type Dial = Arc<dyn Fn(u16) -> BoxFuture<'static, Result<TcpStream, String>> + Send + Sync>;

/// Names the pod in error texts, as the kubelet's CRI streaming server does
/// (`pod <sandbox id>, uid <uid>`).
#[derive(Debug, Clone)]
pub struct Target {
    pub pod: String,
    pub uid: String,
}

impl Target {
    /// `httpstream.go` / `websocket.go` `portForward`: the text written to the
    /// error stream when forwarding fails.
    pub fn forwarding_error(&self, port: u16, err: &str) -> String {
        format!("error forwarding port {port} to pod {}, uid {}: {err}", self.pod, self.uid)
    }
}

/// Parse a port as the kubelet does (`strconv.ParseUint(s, 10, 16)`, > 0).
pub fn parse_port(s: &str) -> Result<u16, String> {
    let port: u16 = s.parse().map_err(|_| format!("unable to parse {s:?} as a port: invalid syntax"))?;
    if port < 1 {
        return Err(format!("port {s:?} must be > 0"));
    }
    Ok(port)
}
