//! The HTTPS server: TLS, authentication, routing and response encoding.

use crate::authn::{self, User};
use crate::error::ApiError;
use crate::handlers::{self, Ctx, Reply};
use crate::metrics::Metrics;
use crate::negotiate;
use crate::registry::Registry;
use crate::request::{self, DiscoveryPath, Query, Target};
use crate::{authz, discovery, openapi};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub type Body = BoxBody<Bytes, Infallible>;

/// Everything a request handler needs.
pub struct State {
    pub registry: Registry,
    /// Signs and checks ServiceAccount tokens.
    pub sa_tokens: crate::serviceaccount::Tokens,
    /// The RBAC objects the authorizer judges by.
    pub rbac: Arc<crate::rbac::RbacCache>,
    /// What each node's pods reference (the Node authorizer's graph).
    pub node_graph: Arc<crate::node_graph::NodeGraph>,
    pub token: String,
    /// The cluster CA (served at `/cacerts`).
    pub ca_pem: String,
    /// `host:port` clients are told to use (discovery).
    pub server_address: String,
    pub metrics: Metrics,
    pub ready: AtomicBool,
    pub nodes: crate::node_proxy::NodeClient,
}

fn full(code: u16, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    resp
}

fn json_reply(code: u16, v: &serde_json::Value) -> Response<Body> {
    full(code, "application/json", serde_json::to_vec(v).unwrap_or_default())
}

fn error_reply(e: &ApiError) -> Response<Body> {
    json_reply(e.code, &e.to_status())
}

/// Serve one HTTP request.
///
/// `cert_user` is who the connection's verified client certificate names.
pub async fn handle(
    state: Arc<State>,
    cert_user: Option<Arc<User>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let target = request::parse_path(&path);
    let verb_label = method.as_str().to_string();
    let resp = route(&state, cert_user.as_deref(), req, target).await;
    let code = resp.status().as_u16();
    state.metrics.observe(&verb_label, code, start.elapsed());
    tracing::debug!(%method, %path, code, elapsed_us = start.elapsed().as_micros() as u64, "request");
    Ok(resp)
}

async fn route(state: &Arc<State>, cert_user: Option<&User>, req: Request<Incoming>, target: Target) -> Response<Body> {
    match &target {
        Target::Health(which) => {
            let ok = *which != "readyz" || state.ready.load(Ordering::Relaxed);
            return if ok {
                full(200, "text/plain; charset=utf-8", b"ok".to_vec())
            } else {
                full(500, "text/plain; charset=utf-8", b"not ready".to_vec())
            };
        }
        Target::Version => return json_reply(200, &crate::version_info()),
        Target::CaCerts => return full(200, "text/plain; charset=utf-8", state.ca_pem.clone().into_bytes()),
        _ => {}
    }
    let header = req.headers().get(http::header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    let Some(user) = authn::authenticate(&state.registry, &state.token, &state.sa_tokens, cert_user, header).await
    else {
        return error_reply(&ApiError::unauthorized());
    };
    let user = match impersonate(&user, req.headers(), &state.rbac.policy()) {
        Ok(u) => u,
        Err(e) => return error_reply(&e),
    };
    let query = Query::parse(req.uri().query());
    if let Target::Resource(rr) = &target {
        let attrs = authz::Attributes {
            verb: authz::verb(req.method(), rr.name.is_some(), query.flag("watch")),
            group: rr.resource.group,
            resource: rr.resource.plural,
            subresource: rr.subresource.as_deref(),
            namespace: rr.namespace.as_deref(),
            name: rr.name.as_deref(),
        };
        if let Err(message) = authz::authorize(&user, &attrs, &state.rbac.policy(), Some(&state.node_graph)) {
            // The graph follows the store a moment behind: a node that just got a
            // pod may ask for its Secret first, so a miss is checked in the store.
            if !authz::node_reference_in_store(&user, &attrs, state.registry.store.as_ref()).await {
                return error_reply(&ApiError::forbidden_message(rr.resource, rr.name.as_deref(), message));
            }
        }
    }
    match target {
        Target::Metrics if !authz::authorize_path(&user, "get", "/metrics", &state.rbac.policy()) => {
            error_reply(&ApiError::forbidden_non_resource(&user.name, "get", "/metrics"))
        }
        Target::Metrics => {
            let mut text = state.metrics.render();
            if let Some(cache) = &state.registry.watch_cache {
                text.push_str(&crate::watch_cache::render_metrics(&cache.stats().await));
            }
            full(200, "text/plain; version=0.0.4", text.into_bytes())
        }
        Target::OpenIdConfiguration => json_reply(200, &state.sa_tokens.openid_configuration()),
        Target::Jwks => {
            let mut resp = json_reply(200, &state.sa_tokens.jwks());
            resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
            resp
        }
        Target::Discovery(d) => {
            let accept = req.headers().get(http::header::ACCEPT).and_then(|h| h.to_str().ok()).unwrap_or_default();
            if matches!(d, DiscoveryPath::Api | DiscoveryPath::Apis) && discovery::wants_aggregated(accept) {
                let doc = discovery::aggregated(matches!(d, DiscoveryPath::Api));
                let mut resp = full(200, discovery::AGGREGATED_V2, serde_json::to_vec(&doc).unwrap_or_default());
                resp.headers_mut().insert(http::header::VARY, HeaderValue::from_static("Accept"));
                return resp;
            }
            let doc = match d {
                DiscoveryPath::Api => Some(discovery::api_versions(&state.server_address)),
                DiscoveryPath::Apis => Some(discovery::api_group_list()),
                DiscoveryPath::CoreVersion(v) => discovery::api_resource_list("", &v),
                DiscoveryPath::Group(g) => discovery::api_group(&g),
                DiscoveryPath::GroupVersion(g, v) => discovery::api_resource_list(&g, &v),
            };
            match doc {
                Some(d) => json_reply(200, &d),
                None => error_reply(&ApiError::path_not_found()),
            }
        }
        Target::OpenApi(p) if p == "v2" => {
            let accept = req.headers().get(http::header::ACCEPT).and_then(|h| h.to_str().ok()).unwrap_or_default();
            if openapi::v2_proto::accepts(accept) {
                full(200, openapi::v2_proto::CONTENT_TYPE, openapi::v2_proto::encode(&openapi::v2::document()))
            } else if openapi::v2::accepts_json(accept) {
                json_reply(200, &openapi::v2::document())
            } else {
                error_reply(&ApiError::not_acceptable())
            }
        }
        Target::OpenApi(p) => {
            let doc = match p.as_str() {
                "v3" => Some(openapi::root()),
                other => other.strip_prefix("v3/").and_then(openapi::gv_doc),
            };
            match doc {
                Some(d) => json_reply(200, &d),
                None => error_reply(&ApiError::path_not_found()),
            }
        }
        Target::Resource(rr)
            if rr.resource.plural == "pods"
                && matches!(rr.subresource.as_deref(), Some("log" | "exec" | "portforward")) =>
        {
            match crate::node_proxy::forward(&state.registry, &state.nodes, &rr, req).await {
                Ok(resp) => resp,
                Err(e) => error_reply(&e),
            }
        }
        Target::Resource(rr) => {
            let accept = req
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("application/json")
                .to_string();
            let content_type =
                req.headers().get(http::header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
            let user_agent =
                req.headers().get(http::header::USER_AGENT).and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
            let method = req.method().clone();
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(e) => return error_reply(&e),
            };
            let ctx = Ctx {
                registry: &state.registry,
                sa_tokens: &state.sa_tokens,
                req: &rr,
                query: &query,
                shape: negotiate::shape(&accept, &query),
                user_agent: &user_agent,
                user: &user,
                policy: state.rbac.policy(),
            };
            let review = crate::access_review::is_review(rr.resource.group, rr.resource.plural);
            let result = match (&method, rr.name.is_some()) {
                (&Method::POST, false) if review => crate::decode::parse_body(&content_type, &body)
                    .and_then(|b| {
                        let policy = state.rbac.policy();
                        crate::access_review::answer(&user, &policy, rr.resource.plural, rr.namespace.as_deref(), b)
                    })
                    .map(|v| ctx.render(201, &v)),
                _ if review => Err(ApiError::method_not_supported(rr.resource.plural, method.as_str())),
                (&Method::GET, true) => handlers::get(&ctx).await,
                (&Method::GET, false) if query.flag("watch") => handlers::watch(&ctx).await,
                (&Method::GET, false) => handlers::list(&ctx).await,
                (&Method::POST, true) => handlers::post_named(&ctx, &content_type, &body).await,
                (&Method::POST, false) => handlers::create(&ctx, &content_type, &body).await,
                (&Method::PUT, true) => handlers::update(&ctx, &content_type, &body).await,
                (&Method::PATCH, true) => handlers::patch(&ctx, &content_type, &body).await,
                (&Method::DELETE, true) => handlers::delete(&ctx, &content_type, &body).await,
                (&Method::DELETE, false) => handlers::delete_collection(&ctx, &content_type, &body).await,
                _ => Err(ApiError::method_not_supported(rr.resource.plural, method.as_str())),
            };
            match result {
                Ok(Reply::Json { code, body, warnings }) => {
                    let mut resp = full(code, "application/json", body);
                    for w in warnings {
                        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "\\\""))) {
                            resp.headers_mut().append(http::header::WARNING, v);
                        }
                    }
                    resp
                }
                Ok(Reply::Stream(rx)) => {
                    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
                    let body =
                        StreamBody::new(futures::StreamExt::map(stream, |b| Ok::<_, Infallible>(Frame::data(b))));
                    let mut resp = Response::new(BodyExt::boxed(body));
                    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    resp.headers_mut()
                        .insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
                    resp
                }
                Err(e) => error_reply(&e),
            }
        }
        Target::Health(_) | Target::Version | Target::CaCerts | Target::NotFound => {
            error_reply(&ApiError::path_not_found())
        }
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut discarded = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() + data.len() <= crate::decode::MAX_BODY && discarded == 0 {
            buf.extend_from_slice(&data);
        } else {
            // Too large: read the rest so the client gets the 413 rather than a
            // broken pipe, up to a bound that keeps a hostile client cheap.
            discarded += data.len();
            if discarded > 16 * crate::decode::MAX_BODY {
                break;
            }
        }
    }
    if discarded > 0 {
        return Err(ApiError::too_large());
    }
    Ok(buf.freeze())
}

/// Acting as another user (`Impersonate-User`, `Impersonate-Group`,
/// `Impersonate-Uid`; upstream `endpoints/filters/impersonation.go`): the
/// requester must be allowed `impersonate` on each, and the request then
/// runs as that user, in `system:authenticated` (and a ServiceAccount's
/// groups when none are given).
fn impersonate(user: &User, headers: &http::HeaderMap, policy: &apimachinery::rbac::Policy) -> Result<User, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    };
    let (names, groups, uids) = (values("impersonate-user"), values("impersonate-group"), values("impersonate-uid"));
    let Some(name) = names.first() else {
        if groups.is_empty() && uids.is_empty() {
            return Ok(user.clone());
        }
        return Err(ApiError::new(
            500,
            "InternalError",
            "requested impersonation is not allowed: impersonating groups or a UID needs a user",
        ));
    };
    let check = |verb: &str, group: &str, resource: &str, ns: Option<&str>, obj: &str| -> Result<(), ApiError> {
        let a = authz::Attributes { verb, group, resource, subresource: None, namespace: ns, name: Some(obj) };
        authz::authorize(user, &a, policy, None).map(|_| ()).map_err(|_| {
            let scope = ns.map(|n| format!("in the namespace {n:?}")).unwrap_or_else(|| "at the cluster scope".into());
            ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{resource} {obj:?} is forbidden: User {:?} cannot impersonate resource {resource:?} in API group {group:?} {scope}",
                    user.name
                ),
            )
        })
    };
    let sa = name.strip_prefix(apimachinery::serviceaccount::USERNAME_PREFIX).and_then(|r| r.split_once(':'));
    match sa {
        Some((ns, sa_name)) => check("impersonate", "", "serviceaccounts", Some(ns), sa_name)?,
        None => check("impersonate", "", "users", None, name)?,
    }
    for g in &groups {
        check("impersonate", "", "groups", None, g)?;
    }
    for u in &uids {
        check("impersonate", "authentication.k8s.io", "uids", None, u)?;
    }
    let mut all_groups = groups.clone();
    if groups.is_empty() {
        if let Some((ns, _)) = sa {
            all_groups = apimachinery::serviceaccount::groups(ns);
        }
    }
    let mut out = User::new(name.clone(), all_groups);
    out.uid = uids.first().cloned().unwrap_or_default();
    Ok(out)
}
