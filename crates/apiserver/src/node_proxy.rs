//! `pods/log`, `pods/exec` and `pods/portforward`: forwarded to the node agent
//! that runs the pod, as kube-apiserver forwards them to the kubelet. Exec is
//! a WebSocket (`v5.channel.k8s.io`); port-forward a WebSocket (tunnelled SPDY
//! or channels) or a SPDY/3.1 upgrade. The upgrade is passed through and the
//! two upgraded streams are spliced; the agent speaks the protocols.

use crate::error::ApiError;
use crate::registry::{subject, Registry};
use crate::request::ResourceRequest;
use crate::resources;
use crate::server::Body;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;

/// How the API server reaches node agents.
pub struct NodeClient {
    pub tls: Arc<rustls::ClientConfig>,
    /// The client certificate agents accept (`kube-apiserver-kubelet-client`).
    pub identity: crate::tls::Identity,
}

const KUBELET_DEFAULT_PORT: u16 = 10250;

/// Node annotation with the SHA-256 of a self-signed agent serving certificate
/// (agents that joined from another machine cannot get one signed by the CA).
pub const SERVING_CERT_PIN: &str = "rkube.io/serving-cert-sha256";

/// Where and how to reach a pod's node agent.
struct Target {
    address: String,
    port: u16,
    container: String,
    pin: Option<String>,
}

/// Where the pod runs: node address, kubelet port and the container (resolved
/// only when `with_container`; port-forward has none).
async fn locate(
    reg: &Registry,
    rr: &ResourceRequest,
    container: Option<&str>,
    with_container: bool,
) -> Result<Target, ApiError> {
    let pods = rr.resource;
    let name = rr.name.as_deref().unwrap_or_default();
    let pod = reg.get(pods, rr.namespace.as_deref(), name).await?.object;
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
        .collect();
    let init: Vec<String> = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
        .collect();
    let container = match container {
        _ if !with_container => String::new(),
        Some(c) if containers.iter().chain(&init).any(|x| x == c) => c.to_string(),
        Some(c) => return Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}"))),
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )))
        }
    };
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))?;
    let nodes = resources::find("", "v1", "nodes").ok_or_else(|| ApiError::internal("nodes resource missing"))?;
    let node =
        reg.get(nodes, None, node_name).await.map_err(|_| ApiError::not_found(subject(nodes, node_name)))?.object;
    let address = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .and_then(|a| a.get("address").and_then(Value::as_str))
        .ok_or_else(|| ApiError::internal(format!("node {node_name} has no InternalIP address")))?
        .to_string();
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(KUBELET_DEFAULT_PORT);
    let pin = node
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SERVING_CERT_PIN))
        .and_then(Value::as_str)
        .map(String::from);
    Ok(Target { address, port, container, pin })
}

async fn connect(
    nc: &NodeClient,
    address: &str,
    port: u16,
    pin: Option<&str>,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, ApiError> {
    let unreachable = |e: String| ApiError::new(502, "InternalError", format!("error dialing backend: {e}"));
    let tls_config = match pin {
        Some(p) => crate::tls::pinned_client_config(p, Some(&nc.identity)).map_err(|e| unreachable(e.to_string()))?,
        None => nc.tls.clone(),
    };
    let tcp = tokio::net::TcpStream::connect((address, port))
        .await
        .map_err(|e| unreachable(format!("dial tcp {address}:{port}: {e}")))?;
    let server_name =
        rustls_pki_types::ServerName::try_from(address.to_string()).map_err(|e| unreachable(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(tls_config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| unreachable(format!("tls: {e}")))?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "node connection ended");
        }
    });
    Ok(sender)
}

/// `PodPortForwardOptions` from the query (`ports`, repeated or comma-separated,
/// as `Convert_Slice_string_To_Slice_int32`) become the kubelet's `port`
/// parameters (`pod/strategy.go` `PortForwardLocation`).
fn kubelet_port_query(params: &[(String, String)]) -> Result<String, ApiError> {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (_, v) in params.iter().filter(|(k, _)| k == "ports") {
        for p in v.split(',').filter(|p| !p.is_empty()) {
            let n: i32 = p.trim().parse().map_err(|_| {
                ApiError::bad_request(format!("strconv.ParseInt: parsing {:?}: invalid syntax", p.trim()))
            })?;
            out.append_pair("port", &n.to_string());
        }
    }
    Ok(out.finish())
}

/// Forward `pods/<name>/{log,exec,portforward}` to the pod's node agent.
pub async fn forward(
    reg: &Registry,
    nc: &NodeClient,
    rr: &ResourceRequest,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let mut query = req.uri().query().unwrap_or("").to_string();
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let container = params.iter().find(|(k, _)| k == "container").map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let port_forward = rr.subresource.as_deref() == Some("portforward");
    let Target { address, port, container, pin } = locate(reg, rr, container, !port_forward).await?;
    let ns = rr.namespace.as_deref().unwrap_or("default");
    let name = rr.name.as_deref().unwrap_or_default();
    let path = match rr.subresource.as_deref() {
        Some("log") => format!("/containerLogs/{ns}/{name}/{container}"),
        Some("exec") => format!("/exec/{ns}/{name}/{container}"),
        Some("portforward") => {
            query = kubelet_port_query(&params)?;
            format!("/portForward/{ns}/{name}")
        }
        _ => return Err(ApiError::path_not_found()),
    };
    let mut sender = connect(nc, &address, port, pin.as_deref()).await?;
    let mut out = Request::builder().method(req.method()).uri(format!("{path}?{query}"));
    for h in [
        http::header::UPGRADE,
        http::header::CONNECTION,
        http::header::SEC_WEBSOCKET_KEY,
        http::header::SEC_WEBSOCKET_VERSION,
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::header::SEC_WEBSOCKET_EXTENSIONS,
        http::HeaderName::from_static("x-stream-protocol-version"),
    ] {
        for v in req.headers().get_all(&h) {
            out = out.header(&h, v);
        }
    }
    let out = out
        .header(http::header::HOST, format!("{address}:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = sender
        .send_request(out)
        .await
        .map_err(|e| ApiError::new(502, "InternalError", format!("error talking to the node: {e}")))?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let mut client_resp = Response::new(Empty::new().map_err(|e: Infallible| match e {}).boxed());
        *client_resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        for (k, v) in resp.headers() {
            client_resp.headers_mut().append(k, v.clone());
        }
        tokio::spawn(async move {
            match tokio::try_join!(hyper::upgrade::on(req), hyper::upgrade::on(resp)) {
                Ok((client, node)) => {
                    let (mut a, mut b) = (TokioIo::new(client), TokioIo::new(node));
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrade to the node failed"),
            }
        });
        return Ok(client_resp);
    }
    let status = resp.status();
    if !status.is_success() {
        // The agent explains itself in plain text; clients expect a Status.
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let reason = match status.as_u16() {
            400 => "BadRequest",
            401 => "Unauthorized",
            404 => "NotFound",
            _ => "InternalError",
        };
        return Err(ApiError::new(status.as_u16(), reason, String::from_utf8_lossy(&body).trim().to_string()));
    }
    // Stream the answer through.
    let content_type = resp.headers().get(http::header::CONTENT_TYPE).cloned();
    let stream = BodyStream::new(resp.into_body()).take_while(|f| futures::future::ready(f.is_ok())).filter_map(|f| {
        futures::future::ready(f.ok().and_then(|f| f.into_data().ok()).map(|d| Ok::<_, Infallible>(Frame::data(d))))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, content_type.unwrap_or(HeaderValue::from_static("text/plain")));
    Ok(r)
}
