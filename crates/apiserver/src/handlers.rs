//! The REST verbs on resources: get, list, watch, create, update, patch,
//! delete, deletecollection, and the status/scale/finalize subresources.

use crate::decode::{self, FieldValidation};
use crate::error::{ApiError, ApiResult};
use crate::fieldmanager::{self, Tracking};
use crate::negotiate::{Include, Shape};
use crate::object;
use crate::registry::{subject, DeleteOptions, Deleted, Registry};
use crate::request::{Query, ResourceRequest};
use crate::resources::Resource;
use crate::watch;
use apimachinery::scale::ScalePaths;
use apimachinery::selector::{FieldSelector, LabelSelector};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use store::ListOptions;
use tokio::sync::mpsc;

/// What a handler answers: a JSON body with a status code and warnings, or a stream.
pub enum Reply {
    Json { code: u16, body: Vec<u8>, warnings: Vec<String> },
    Stream(mpsc::Receiver<Bytes>),
}

impl Reply {
    pub fn json(code: u16, v: &Value) -> Reply {
        Reply::Json { code, body: serde_json::to_vec(v).unwrap_or_default(), warnings: vec![] }
    }
    fn with_warnings(self, w: Vec<String>) -> Reply {
        match self {
            Reply::Json { code, body, .. } => Reply::Json { code, body, warnings: w },
            other => other,
        }
    }
}

/// Fields each resource can be selected by, besides metadata.name/namespace
/// (upstream: each strategy's `GetAttrs`/field label conversion funcs).
fn selectable_fields(r: &Resource) -> &'static [&'static str] {
    match r.plural {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "secrets" => &["type"],
        "namespaces" => &["status.phase"],
        "nodes" => &["spec.unschedulable"],
        "replicasets" => &["status.replicas"],
        "jobs" => &["status.successful"],
        _ => &[],
    }
}

pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub sa_tokens: &'a crate::serviceaccount::Tokens,
    pub req: &'a ResourceRequest,
    pub query: &'a Query,
    pub shape: Shape,
    /// The request's `User-Agent`, which names the field manager of updates
    /// without `?fieldManager=`.
    pub user_agent: &'a str,
    /// Who is asking (authenticated and authorized already).
    pub user: &'a crate::authn::User,
    /// The RBAC policy the request was authorized by (escalation checks).
    pub policy: std::sync::Arc<apimachinery::rbac::Policy>,
}

impl Ctx<'_> {
    fn r(&self) -> &'static Resource {
        self.req.resource
    }
    fn ns(&self) -> Option<&str> {
        self.req.namespace.as_deref()
    }
    fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some()
    }
    /// Field ownership of a non-apply write (`?fieldManager=` or the user agent).
    fn tracking(&self) -> ApiResult<Tracking> {
        Ok(Tracking::Update(fieldmanager::manager_name(self.query.get("fieldManager"), self.user_agent)?))
    }
    fn name(&self) -> ApiResult<&str> {
        self.req.name.as_deref().ok_or_else(|| ApiError::method_not_supported(self.r().plural, "this verb"))
    }

    /// Render one object in the negotiated shape.
    pub(crate) fn render(&self, code: u16, obj: &Value) -> Reply {
        match self.shape {
            Shape::Json => Reply::json(code, obj),
            Shape::Table(include) => Reply::json(code, &self.table(std::slice::from_ref(obj), include, None)),
            Shape::PartialMetadata => Reply::json(code, &partial(obj)),
        }
    }

    fn table(&self, objs: &[Value], include: Include, list_meta: Option<Value>) -> Value {
        table(self.r(), objs, include, list_meta)
    }
}

/// A `meta.k8s.io/v1` Table of `objs` with the resource's columns.
fn table(r: &Resource, objs: &[Value], include: Include, list_meta: Option<Value>) -> Value {
    let now = jiff::Timestamp::now();
    if let Some(c) = crate::crd::custom(r) {
        // additionalPrinterColumns (apiextensions `tableconvertor`).
        let cols = &c.version.printer_columns;
        let rows: Vec<Value> = objs
            .iter()
            .map(|o| {
                let mut row = json!({ "cells": apimachinery::crd::columns::cells(cols, o, now) });
                match include {
                    Include::None => {}
                    Include::Metadata => row["object"] = partial(o),
                    Include::Object => row["object"] = o.clone(),
                }
                row
            })
            .collect();
        return json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta.unwrap_or_else(|| json!({})),
            "columnDefinitions": apimachinery::crd::columns::columns(cols),
            "rows": rows,
        });
    }
    let columns = apimachinery::table::columns(r.group, r.plural).unwrap_or_else(apimachinery::table::default_columns);
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut row = json!({ "cells": apimachinery::table::cells(r.group, r.plural, o, now) });
            match include {
                Include::None => {}
                Include::Metadata => row["object"] = partial(o),
                Include::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta.unwrap_or_else(|| json!({})),
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn partial(obj: &Value) -> Value {
    json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or_default() })
}

/// Custom objects of every version share one storage key; they are served as
/// the version asked for (a CRD's `conversion.strategy: None` only changes
/// `apiVersion`).
fn served_as(r: &Resource, obj: &mut Value) {
    if crate::crd::custom(r).is_some() {
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), json!(r.api_version()));
        }
    }
}

pub async fn get(ctx: &Ctx<'_>) -> ApiResult<Reply> {
    let name = ctx.name()?;
    let mut stored = ctx.registry.get(ctx.r(), ctx.ns(), name).await?;
    served_as(ctx.r(), &mut stored.object);
    match ctx.req.subresource.as_deref() {
        None | Some("status") => Ok(ctx.render(200, &stored.object)),
        Some("scale") if ctx.r().scale => Ok(Reply::json(200, &scale_of(ctx.r(), &stored.object)?)),
        Some(other) => Err(ApiError::path_not_found_for(other)),
    }
}

impl ApiError {
    fn path_not_found_for(sub: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("the server could not find the requested resource ({sub})"))
    }
}

/// The fields the Scale of `r` maps to: `.spec.replicas` for the built-in
/// kinds, the CRD's paths for a custom resource.
fn scale_paths(r: &Resource) -> ScalePaths {
    match crate::crd::custom(r).and_then(|c| c.version.scale) {
        Some((spec, status, selector)) => ScalePaths::custom(&spec, &status, selector.as_deref()),
        None => ScalePaths::builtin(),
    }
}

/// The autoscaling/v1 Scale of a stored object (upstream's `ScaleREST.Get`;
/// a custom resource without its spec replicas field has none).
fn scale_of(r: &Resource, obj: &Value) -> ApiResult<Value> {
    let paths = scale_paths(r);
    let scale = apimachinery::scale::scale_of(obj, &paths).map_err(ApiError::internal)?;
    if !scale.spec_replicas_found && crate::crd::custom(r).is_some() {
        return Err(ApiError::internal(format!("the spec replicas field {:?} does not exist", paths.spec_replicas)));
    }
    let mut out = scale.object;
    let entries = fieldmanager::scale_entries(obj, &paths.spec_replicas);
    fieldmanager::set_entries(&mut out, &entries);
    Ok(out)
}

/// `obj` with its spec replicas field set from a Scale write; the replicas
/// must not be negative (`ValidateScale`), and the write is not
/// conditional on the parent's resourceVersion.
fn scaled(name: &str, obj: &Value, paths: &ScalePaths, replicas: i64) -> ApiResult<Value> {
    if replicas < 0 {
        return Err(ApiError::invalid(
            crate::error::Subject { group: "autoscaling", plural: "scale", kind: "Scale", name },
            &[apimachinery::field::FieldError::invalid(
                "spec.replicas",
                replicas,
                "must be greater than or equal to 0",
            )],
        ));
    }
    let mut obj = obj.clone();
    apimachinery::scale::set_spec_replicas(&mut obj, paths, replicas).map_err(ApiError::bad_request)?;
    if let Some(m) = object::meta_mut(&mut obj) {
        m.remove("resourceVersion");
    }
    Ok(obj)
}

/// Server-side apply to `/scale`: the configuration is a Scale, its
/// conflicts are with the Scale's managers (the parent's owners of the
/// replicas field), and the result goes back to the parent's managedFields
/// (upstream `ScaleREST` with its `ScaleHandler`).
async fn apply_scale(ctx: &Ctx<'_>, name: &str, body: Value) -> ApiResult<Reply> {
    let r = ctx.r();
    if !r.scale {
        return Err(ApiError::path_not_found_for("scale"));
    }
    let manager = fieldmanager::apply_manager(ctx.query.get("fieldManager"))?;
    let force = ctx.query.flag("force");
    let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    // `versionCheckManager`: the configuration is of the endpoint's kind.
    if api_version != "autoscaling/v1" || kind != "Scale" {
        return Err(ApiError::bad_request(format!("invalid object type: {api_version}, Kind={kind}")));
    }
    let paths = scale_paths(r);
    let stored = ctx
        .registry
        .modify(r, ctx.ns(), name, Some("scale"), ctx.dry_run(), &Tracking::Applied, |obj| {
            let live = apimachinery::scale::scale_of(obj, &paths).map_err(ApiError::internal)?.object;
            let (merged, entries) =
                fieldmanager::apply_scale(r, obj, &live, &body, &manager, force, &paths.spec_replicas)?;
            let replicas = merged
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .ok_or_else(|| ApiError::bad_request("spec.replicas must be an integer"))?;
            let mut obj = scaled(name, obj, &paths, replicas)?;
            fieldmanager::set_entries(&mut obj, &entries);
            Ok(obj)
        })
        .await?;
    Ok(Reply::json(200, &scale_of(r, &stored.object)?))
}

struct ListParams {
    label: LabelSelector,
    field: FieldSelector,
}

fn list_params(ctx: &Ctx<'_>) -> ApiResult<ListParams> {
    let label = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let field = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or_default(), selectable_fields(ctx.r()))
        .map_err(ApiError::bad_request)?;
    Ok(ListParams { label, field })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    v: String,
    rv: i64,
    start: String,
}

/// Which state a list reads, from its `resourceVersion` and
/// `resourceVersionMatch` (upstream's semantics for get and list,
/// https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-get-and-list).
#[derive(Clone, Copy, Debug, PartialEq)]
enum ListRead {
    /// No resourceVersion: the latest state, as a quorum read would see it.
    Consistent,
    /// `resourceVersion=N` (`0`: any state): a state not older than N.
    NotOlderThan(i64),
    /// Exactly the state at N (`resourceVersionMatch=Exact`, or a legacy
    /// `resourceVersion=N` with `limit`).
    Exact(i64),
}

fn parse_resource_version(v: &str) -> ApiResult<i64> {
    v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {v:?}")))
}

fn list_read(ctx: &Ctx<'_>, has_limit: bool) -> ApiResult<ListRead> {
    match (ctx.query.get("resourceVersion"), ctx.query.get("resourceVersionMatch")) {
        (None, Some(m)) => Err(ApiError::bad_request(format!(
            "resourceVersionMatch \"{m}\" is forbidden unless resourceVersion is provided"
        ))),
        (None, None) => Ok(ListRead::Consistent),
        (Some("0"), Some("Exact")) => {
            Err(ApiError::bad_request("resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""))
        }
        (Some(v), Some("Exact")) => Ok(ListRead::Exact(parse_resource_version(v)?)),
        (Some(v), Some("NotOlderThan")) => Ok(ListRead::NotOlderThan(parse_resource_version(v)?)),
        (Some(_), Some(m)) => Err(ApiError::bad_request(format!(
            "resourceVersionMatch: Unsupported value: \"{m}\": supported values: \"Exact\", \"NotOlderThan\", \"\""
        ))),
        (Some(v), None) => {
            let n = parse_resource_version(v)?;
            Ok(if has_limit && n != 0 { ListRead::Exact(n) } else { ListRead::NotOlderThan(n) })
        }
    }
}

/// Where a list's pages come from: the store, or one snapshot of the watch cache.
enum ListSource {
    Store,
    Cache { kvs: std::vec::IntoIter<store::KeyValue>, revision: i64 },
}

impl ListSource {
    async fn page(&mut self, ctx: &Ctx<'_>, prefix: &str, opts: ListOptions) -> ApiResult<store::ListResult> {
        match self {
            ListSource::Store => ctx.registry.list_raw(prefix, opts).await,
            // The snapshot is in key order; each page takes up where the last stopped.
            ListSource::Cache { kvs, revision } => {
                let page: Vec<store::KeyValue> = kvs.by_ref().take(opts.limit.unwrap_or(usize::MAX)).collect();
                let remaining = kvs.len() as u64;
                Ok(store::ListResult { kvs: page, revision: *revision, more: remaining > 0, remaining })
            }
        }
    }
}

/// How long a list waits for the watch cache to catch up (upstream's
/// `blockTimeout` in `watch_cache.go` is 3 s).
const CACHE_FRESH_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves a list from the watch cache as kube-apiserver's cacher does
/// (`storage/cacher/delegator.go`): any state (`resourceVersion=0`) as the
/// cache holds it; a state not older than N, or the latest one (the store's
/// current revision), once the cache has caught up with it. Exact revisions
/// and continue tokens, and a cache that does not catch up in time, go to the store.
async fn list_source(ctx: &Ctx<'_>, read: ListRead, prefix: &str) -> ApiResult<ListSource> {
    if let ListRead::NotOlderThan(n) = read {
        let current = ctx.registry.store.current_revision().await?;
        if n > current {
            return Err(ApiError::timeout(format!("Too large resource version: {n}, current: {current}")));
        }
    }
    let Some(cache) = &ctx.registry.watch_cache else { return Ok(ListSource::Store) };
    let wanted = match read {
        ListRead::Exact(_) => return Ok(ListSource::Store),
        ListRead::NotOlderThan(n) => n,
        ListRead::Consistent => ctx.registry.store.current_revision().await?,
    };
    let cacher = match cache.cacher(&ctx.r().key_prefix()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "watch cache unavailable; listing from the store");
            return Ok(ListSource::Store);
        }
    };
    let fresh = cacher.wait_fresh(wanted, CACHE_FRESH_TIMEOUT).await;
    cacher.count_list(fresh);
    if !fresh {
        return Ok(ListSource::Store);
    }
    let (kvs, revision) = cacher.list(prefix);
    Ok(ListSource::Cache { kvs: kvs.into_iter(), revision })
}

pub async fn list(ctx: &Ctx<'_>) -> ApiResult<Reply> {
    let r = ctx.r();
    let params = list_params(ctx)?;
    let limit = ctx.query.int("limit").filter(|l| *l > 0).map(|l| l as usize);
    let read = list_read(ctx, limit.is_some())?;
    let prefix = r.namespace_prefix(ctx.ns());
    let mut revision = match read {
        ListRead::Exact(n) => Some(n),
        _ => None,
    };
    let mut start_after = None;
    if let Some(token) = ctx.query.get("continue") {
        let c: Continue = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ApiError::bad_request("continue key is not valid: illegal base64 data"))?;
        revision = Some(c.rv);
        start_after = Some(format!("{prefix}{}", c.start));
    }
    let mut source = match start_after {
        Some(_) => ListSource::Store,
        None => list_source(ctx, read, &prefix).await?,
    };
    // One named object (kubectl's `delete --wait`, `get -w NAME`).
    let exact = params.field.single_name().map(|n| r.key(ctx.ns(), n));

    let filtering = !params.label.is_empty() || !params.field.is_empty();
    // Custom objects are decoded to be served as the requested version.
    let custom = crate::crd::custom(r).is_some();
    let mut items: Vec<Value> = Vec::new();
    let mut raw: Vec<Vec<u8>> = Vec::new();
    let mut read_rev;
    let mut more;
    let mut remaining;
    let mut last_key: Option<String> = None;
    loop {
        let page = source
            .page(ctx, &prefix, ListOptions { revision, limit, start_after: start_after.clone() })
            .await
            .map_err(|e| if e.code == 410 && ctx.query.get("continue").is_some() {
                ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
            } else { e })?;
        read_rev = page.revision;
        revision = Some(page.revision);
        more = page.more;
        remaining = page.remaining;
        let mut full = false;
        for kv in &page.kvs {
            if limit.is_some_and(|l| items.len() + raw.len() >= l) {
                // The page is full: what is left of this store page comes next time.
                full = true;
                break;
            }
            last_key = Some(kv.key.clone());
            if exact.as_deref().is_some_and(|k| k != kv.key) {
                continue;
            }
            // Keys of other namespaces share no prefix, but a cluster-wide list of
            // `<prefix><ns>/<name>` keys is fine as is.
            let needs_object = filtering || !matches!(ctx.shape, Shape::Json) || custom;
            if needs_object {
                let mut obj = object::decode(&kv.value, kv.mod_revision)
                    .map_err(|e| ApiError::internal(format!("decoding {}: {e}", kv.key)))?;
                served_as(r, &mut obj);
                if params.label.matches_object(&obj) && params.field.matches_object(&obj) {
                    items.push(obj);
                }
            } else {
                raw.push(object::with_resource_version(&kv.value, kv.mod_revision));
            }
        }
        if full {
            more = true;
            break;
        }
        let have = items.len() + raw.len();
        match limit {
            Some(l) if more && have < l => {
                start_after = last_key.clone();
                continue;
            }
            _ => break,
        }
    }
    let mut meta = json!({ "resourceVersion": read_rev.to_string() });
    if more {
        if let Some(k) = &last_key {
            let c = Continue {
                v: "meta.k8s.io/v1".into(),
                rv: read_rev,
                start: k.strip_prefix(&prefix).unwrap_or(k).to_string(),
            };
            let token = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&c).unwrap_or_default());
            meta["continue"] = json!(token);
            if !filtering {
                meta["remainingItemCount"] = json!(remaining);
            }
        }
    }
    match ctx.shape {
        Shape::Table(include) => Ok(Reply::json(200, &ctx.table(&items, include, Some(meta)))),
        Shape::PartialMetadata => {
            let items: Vec<Value> = items.iter().map(partial).collect();
            Ok(Reply::json(
                200,
                &json!({ "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items }),
            ))
        }
        Shape::Json => {
            // Assemble the list without re-encoding stored objects.
            let mut body = Vec::with_capacity(raw.iter().map(Vec::len).sum::<usize>() + 256);
            body.extend_from_slice(
                format!("{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":", r.list_kind(), r.api_version())
                    .as_bytes(),
            );
            body.extend_from_slice(&serde_json::to_vec(&meta).unwrap_or_default());
            body.extend_from_slice(b",\"items\":[");
            let mut first = true;
            for item in items.iter().map(|o| serde_json::to_vec(o).unwrap_or_default()).chain(raw) {
                if !first {
                    body.push(b',');
                }
                first = false;
                body.extend_from_slice(&item);
            }
            body.extend_from_slice(b"]}");
            Ok(Reply::Json { code: 200, body, warnings: vec![] })
        }
    }
}

pub async fn watch(ctx: &Ctx<'_>) -> ApiResult<Reply> {
    let r = ctx.r();
    let params = list_params(ctx)?;
    let store = ctx.registry.store.clone();
    let prefix = r.namespace_prefix(ctx.ns());
    let exact_key = params.field.single_name().map(|n| r.key(ctx.ns(), n));
    let filter = watch::Filter { label: params.label, field: params.field, exact_key };
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let timeout = ctx.query.int("timeoutSeconds").filter(|t| *t > 0).map(|t| Duration::from_secs(t as u64));
    let send_initial = ctx.query.flag("sendInitialEvents");
    let (tx, rx) = mpsc::channel::<Bytes>(256);

    // Where to start: an explicit revision streams changes after it; none or
    // "0" first sends the current state as ADDED events. Both come from the
    // watch cache when it can serve them, else from the store.
    let rv = ctx.query.get("resourceVersion");
    let explicit = match rv {
        Some(v) if v != "0" && !send_initial => Some(parse_resource_version(v)?),
        _ => None,
    };
    let cacher = match &ctx.registry.watch_cache {
        None => None,
        Some(cache) => match cache.cacher(&r.key_prefix()).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "watch cache unavailable; watching the store");
                None
            }
        },
    };
    // A compacted revision is 410 Gone even while the window still holds it,
    // so the answer does not depend on which server or cache serves it.
    let compacted = match explicit {
        Some(_) => store.compacted_revision().await?,
        None => 0,
    };
    let cached = cacher.as_ref().and_then(|c| match explicit {
        Some(n) if n < compacted => None,
        Some(n) => c.watch_from(&prefix, n),
        None => Some(c.watch_current(&prefix)),
    });
    let mut initial = Vec::new();
    let (after, stream): (i64, Option<EventStream>) = match (cached, explicit) {
        (Some(cw), None) => {
            for ev in &cw.replay {
                if let store::Event::Put { kv, .. } = &**ev {
                    if filter.exact_key.as_deref().is_some_and(|k| k != kv.key) {
                        continue;
                    }
                    let obj =
                        object::decode(&kv.value, kv.mod_revision).map_err(|e| ApiError::internal(e.to_string()))?;
                    if filter.matches(&obj) {
                        initial.push(obj);
                    }
                }
            }
            (cw.revision, Some(cached_stream(Vec::new(), cw.live, prefix.clone())))
        }
        (Some(cw), Some(n)) => (n, Some(cached_stream(cw.replay, cw.live, prefix.clone()))),
        (None, explicit) => {
            let after = match explicit {
                Some(n) => n,
                None => {
                    let page = store.list(&prefix, ListOptions::default()).await?;
                    for kv in &page.kvs {
                        if filter.exact_key.as_deref().is_some_and(|k| k != kv.key) {
                            continue;
                        }
                        let obj = object::decode(&kv.value, kv.mod_revision)
                            .map_err(|e| ApiError::internal(e.to_string()))?;
                        if filter.matches(&obj) {
                            initial.push(obj);
                        }
                    }
                    page.revision
                }
            };
            match store.watch(&prefix, after).await {
                Ok(s) => (after, Some(Box::pin(s.map(|ev| ev.map(Arc::new))))),
                Err(store::Error::Compacted { requested, compacted }) => {
                    // Upstream answers 200 and an ERROR event with a 410 Status.
                    let _ = tx.try_send(Bytes::from(watch::error_line(&ApiError::expired(format!(
                        "too old resource version: {requested} ({compacted})"
                    )))));
                    (after, None)
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let shape = ctx.shape;
    // Under a Table watch every event carries a one-row Table; under a
    // metadata watch (client-go's metadata informers) a PartialObjectMetadata.
    let custom = crate::crd::custom(r).is_some();
    let render = move |mut obj: Value| -> Value {
        served_as(r, &mut obj);
        match shape {
            Shape::Json => obj,
            Shape::PartialMetadata => partial(&obj),
            Shape::Table(include) => {
                let meta = json!({ "resourceVersion": object::meta_str(&obj, "resourceVersion") });
                table(r, std::slice::from_ref(&obj), include, Some(meta))
            }
        }
    };
    let (api_version, kind) = (r.api_version(), r.kind);
    tokio::spawn(async move {
        use futures::StreamExt;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        for obj in initial {
            if tx.send(Bytes::from(watch::event_line("ADDED", &render(obj)))).await.is_err() {
                return;
            }
        }
        if send_initial && bookmarks {
            let line = watch::event_line(
                "BOOKMARK",
                &json!({ "kind": kind, "apiVersion": api_version, "metadata": { "resourceVersion": after.to_string(), "annotations": { "k8s.io/initial-events-end": "true" } } }),
            );
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
        }
        let Some(mut stream) = stream else { return };
        let mut last_rev = after;
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.tick().await;
        loop {
            let sleep_until =
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400 * 365));
            tokio::select! {
                ev = stream.next() => {
                    let line = match ev {
                        None => return,
                        Some(Err(store::Error::Compacted { requested, compacted })) => {
                            watch::error_line(&ApiError::expired(format!("too old resource version: {requested} ({compacted})")))
                        }
                        // A lagging watcher is closed; the client re-watches from its last revision.
                        Some(Err(_)) => return,
                        Some(Ok(ev)) => {
                            let ev: &store::Event = &ev;
                            last_rev = ev.revision();
                            // Plain JSON without selectors: splice the stored bytes.
                            let raw = if shape == Shape::Json && !custom { watch::raw_line(ev, &filter) } else { None };
                            if let Some(line) = raw {
                                if tx.send(Bytes::from(line)).await.is_err() {
                                    return;
                                }
                                continue;
                            }
                            match watch::translate(ev, &filter) {
                                Ok(Some((t, obj))) => watch::event_line(t, &render(obj)),
                                Ok(None) => continue,
                                Err(e) => watch::error_line(&e),
                            }
                        }
                    };
                    if tx.send(Bytes::from(line)).await.is_err() {
                        return;
                    }
                }
                _ = tick.tick(), if bookmarks => {
                    if tx.send(Bytes::from(watch::bookmark(&api_version, kind, last_rev))).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
                _ = tokio::time::sleep_until(sleep_until) => return,
            }
        }
    });
    Ok(Reply::Stream(rx))
}

/// Watch events from the store or from the watch cache.
type EventStream = std::pin::Pin<Box<dyn futures::Stream<Item = store::Result<Arc<store::Event>>> + Send>>;

/// A watch-cache watch as a stream: the replay, then live events under
/// `prefix`. It ends when the cache re-lists or this watch fell too far
/// behind; the client re-watches from its last revision (upstream closes
/// slow watchers the same way).
fn cached_stream(
    replay: Vec<Arc<store::Event>>,
    live: tokio::sync::broadcast::Receiver<crate::watch_cache::Message>,
    prefix: String,
) -> EventStream {
    use crate::watch_cache::Message;
    use tokio::sync::broadcast::error::RecvError;
    let live = futures::stream::unfold((live, prefix), |(mut rx, prefix)| async move {
        loop {
            match rx.recv().await {
                Ok(Message::Event(ev)) if ev.key().starts_with(&prefix) => return Some((Ok(ev), (rx, prefix))),
                Ok(Message::Event(_)) => continue,
                Ok(Message::Reset) | Err(RecvError::Closed) => return None,
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "closing a watch too slow for the watch cache");
                    return None;
                }
            }
        }
    });
    Box::pin(futures::stream::iter(replay.into_iter().map(Ok)).chain(live))
}

fn field_validation(ctx: &Ctx<'_>) -> ApiResult<FieldValidation> {
    FieldValidation::parse(ctx.query.get("fieldValidation"))
}

pub async fn create(ctx: &Ctx<'_>, content_type: &str, body: &[u8]) -> ApiResult<Reply> {
    let r = ctx.r();
    if ctx.req.name.is_some() {
        return Err(ApiError::method_not_supported(r.plural, "create"));
    }
    let obj = decode::parse_body(content_type, body)?;
    let (obj, warnings) = decode::check_object(r, obj, field_validation(ctx)?)?;
    if let (Some(ns), Some(body_ns)) = (ctx.ns(), object::meta_str(&obj, "namespace")) {
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    if r.namespaced && ctx.ns().is_none() {
        return Err(ApiError::method_not_supported(r.plural, "create"));
    }
    let tracking = ctx.tracking()?;
    let obj = admit_create(ctx, obj).await?;
    let stored = ctx.registry.create(r, ctx.ns(), obj, ctx.dry_run(), &tracking).await?;
    Ok(ctx.render(201, &stored.object).with_warnings(warnings))
}

/// What a create goes through before the strategy: the requester of a CSR,
/// the ServiceAccount of a pod.
async fn admit_create(ctx: &Ctx<'_>, obj: Value) -> ApiResult<Value> {
    crate::escalation::check(ctx.user, &ctx.policy, ctx.r(), ctx.ns(), &obj)?;
    let name = object::name(&obj).to_string();
    if let Err(reason) = crate::authz::node_create_allowed(ctx.user, ctx.r().group, ctx.r().plural, ctx.ns(), &name) {
        let r = ctx.r();
        let what = if r.group.is_empty() { r.plural.to_string() } else { format!("{}.{}", r.plural, r.group) };
        return Err(ApiError::forbidden_message(r, Some(&name), format!("{what} {name:?} is forbidden: {reason}")));
    }
    let mut obj = stamp_requester(ctx, obj);
    if ctx.r().group.is_empty() && ctx.r().plural == "pods" && ctx.req.subresource.is_none() {
        if let Some(ns) = ctx.ns() {
            crate::serviceaccount::admit_pod(ctx.registry, ns, &mut obj).await?;
        }
    }
    Ok(obj)
}

/// A CertificateSigningRequest records who asked (`csrStrategy.PrepareForCreate`).
fn stamp_requester(ctx: &Ctx<'_>, mut obj: Value) -> Value {
    if ctx.r().group == "certificates.k8s.io" && ctx.r().plural == "certificatesigningrequests" {
        let who = apimachinery::certificates::Requester {
            username: ctx.user.name.clone(),
            uid: ctx.user.uid.clone(),
            groups: ctx.user.groups.clone(),
        };
        apimachinery::certificates::prepare_create(&mut obj, &who);
    }
    obj
}

pub async fn update(ctx: &Ctx<'_>, content_type: &str, body: &[u8]) -> ApiResult<Reply> {
    let r = ctx.r();
    let name = ctx.name()?.to_string();
    let obj = decode::parse_body(content_type, body)?;
    if ctx.req.subresource.as_deref() == Some("scale") {
        return update_scale(ctx, &name, |_| Ok(obj.clone())).await;
    }
    check_sub(ctx)?;
    let (obj, warnings) = decode::check_object(r, obj, field_validation(ctx)?)?;
    crate::escalation::check(ctx.user, &ctx.policy, r, ctx.ns(), &obj)?;
    let tracking = ctx.tracking()?;
    let stored =
        ctx.registry.update(r, ctx.ns(), &name, obj, ctx.req.subresource.as_deref(), ctx.dry_run(), &tracking).await?;
    Ok(ctx.render(200, &stored.object).with_warnings(warnings))
}

fn check_sub(ctx: &Ctx<'_>) -> ApiResult<()> {
    match ctx.req.subresource.as_deref() {
        None => Ok(()),
        Some("status") if ctx.r().status => Ok(()),
        Some("finalize") if ctx.r().plural == "namespaces" => Ok(()),
        Some("approval") if ctx.r().plural == "certificatesigningrequests" => Ok(()),
        Some(other) => Err(ApiError::path_not_found_for(other)),
    }
}

/// Apply a change to the Scale of an object and write its spec replicas field
/// (upstream `scaleUpdatedObjectInfo.UpdatedObject`).
async fn update_scale<F>(ctx: &Ctx<'_>, name: &str, mut change: F) -> ApiResult<Reply>
where
    F: FnMut(&Value) -> ApiResult<Value>,
{
    // Marks a spec replicas field that did not exist: a patch that leaves it
    // alone cannot scale (smallest int32, as upstream).
    const UNSET: i64 = i32::MIN as i64;
    let r = ctx.r();
    if !r.scale {
        return Err(ApiError::path_not_found_for("scale"));
    }
    let paths = scale_paths(r);
    let tracking = ctx.tracking()?;
    let stored = ctx
        .registry
        .modify(r, ctx.ns(), name, Some("scale"), ctx.dry_run(), &tracking, |obj| {
            let current = apimachinery::scale::scale_of(obj, &paths).map_err(ApiError::internal)?;
            let mut scale = current.object;
            if !current.spec_replicas_found {
                scale["spec"]["replicas"] = json!(UNSET);
            }
            let wanted = change(&scale)?;
            if let Some(rv) = object::meta_str(&wanted, "resourceVersion") {
                if Some(rv) != object::meta_str(obj, "resourceVersion") {
                    return Err(ApiError::modified(subject(r, name)));
                }
            }
            // A Scale body without spec.replicas decodes as 0.
            let replicas = match wanted.pointer("/spec/replicas") {
                None | Some(Value::Null) => 0,
                Some(v) => v.as_i64().ok_or_else(|| ApiError::bad_request("spec.replicas must be an integer"))?,
            };
            if replicas == UNSET {
                return Err(ApiError::bad_request(format!(
                    "the spec replicas field {:?} cannot be empty",
                    paths.spec_replicas
                )));
            }
            scaled(name, obj, &paths, replicas)
        })
        .await?;
    Ok(Reply::json(200, &scale_of(r, &stored.object)?))
}

pub async fn patch(ctx: &Ctx<'_>, content_type: &str, body: &[u8]) -> ApiResult<Reply> {
    let r = ctx.r();
    let name = ctx.name()?.to_string();
    let ct = content_type.split(';').next().unwrap_or_default().trim().to_string();
    let patch_doc = decode::parse_body(&ct, body)?;
    let apply = |orig: &Value, group: &str, kind: &str| -> ApiResult<Value> {
        match ct.as_str() {
            "application/json-patch+json" => {
                let p: json_patch::Patch = serde_json::from_value(patch_doc.clone()).map_err(|e| {
                    ApiError::bad_request(format!(
                        "the server rejected our request due to an error in our request: {e}"
                    ))
                })?;
                let mut v = orig.clone();
                json_patch::patch(&mut v, &p).map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
                Ok(v)
            }
            "application/merge-patch+json" => {
                let mut v = orig.clone();
                json_patch::merge(&mut v, &patch_doc);
                Ok(v)
            }
            "application/strategic-merge-patch+json" => {
                apimachinery::strategic_merge::apply(group, kind, orig, &patch_doc)
                    .map_err(|e| ApiError::bad_request(e.to_string()))
            }
            other => Err(ApiError::unsupported_media_type(other)),
        }
    };
    let is_apply = ct == "application/apply-patch+yaml";
    fieldmanager::check_force_only_for_apply(ctx.query.get("force"), is_apply)?;
    if ctx.req.subresource.as_deref() == Some("scale") {
        if is_apply {
            return apply_scale(ctx, &name, patch_doc).await;
        }
        return update_scale(ctx, &name, |scale| apply(scale, "autoscaling", "Scale")).await;
    }
    check_sub(ctx)?;
    if is_apply {
        return apply_patch(ctx, &name, patch_doc).await;
    }
    let mode = field_validation(ctx)?;
    let tracking = ctx.tracking()?;
    let mut warnings = Vec::new();
    let stored = ctx
        .registry
        .modify(r, ctx.ns(), &name, ctx.req.subresource.as_deref(), ctx.dry_run(), &tracking, |orig| {
            let orig_rv = object::meta_str(orig, "resourceVersion").map(String::from);
            let patched = apply(orig, r.group, r.kind)?;
            let (mut obj, w) = decode::check_object(r, patched, mode)?;
            crate::escalation::check(ctx.user, &ctx.policy, r, ctx.ns(), &obj)?;
            warnings = w;
            // The patch's own resourceVersion (if any) is a precondition; otherwise
            // none, so the registry retries on conflicts.
            if object::meta_str(&obj, "resourceVersion") == orig_rv.as_deref() {
                if let Some(m) = object::meta_mut(&mut obj) {
                    m.remove("resourceVersion");
                }
            }
            Ok(obj)
        })
        .await?;
    Ok(ctx.render(200, &stored.object).with_warnings(warnings))
}

/// Server-side apply (`application/apply-patch+yaml`): merge the applied
/// configuration into the live object, or create it when absent
/// (upstream `handlers/patch.go` `applyPatcher`).
async fn apply_patch(ctx: &Ctx<'_>, name: &str, body: Value) -> ApiResult<Reply> {
    let r = ctx.r();
    let manager = fieldmanager::apply_manager(ctx.query.get("fieldManager"))?;
    let force = ctx.query.flag("force");
    let sub = ctx.req.subresource.as_deref();
    let mut cfg = fieldmanager::apply_config(r, name, ctx.ns(), body, field_validation(ctx)?, sub)?;
    if let Some(m) = object::meta_mut(&mut cfg.object) {
        m.insert("name".into(), json!(name));
    }
    for _ in 0..4 {
        match ctx.registry.get(r, ctx.ns(), name).await {
            Err(e) if e.code == 404 && sub.is_none() => {
                if r.namespaced && ctx.ns().is_none() {
                    return Err(ApiError::method_not_supported(r.plural, "create"));
                }
                let obj = fieldmanager::apply(r, None, &cfg.object, &manager, None, force)?;
                let obj = admit_create(ctx, obj).await?;
                match ctx.registry.create(r, ctx.ns(), obj, ctx.dry_run(), &Tracking::Applied).await {
                    Ok(stored) => return Ok(ctx.render(201, &stored.object).with_warnings(cfg.warnings)),
                    // Created meanwhile: apply to it.
                    Err(e) if e.reason == "AlreadyExists" => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
            Ok(_) => {
                let stored = ctx
                    .registry
                    .modify(r, ctx.ns(), name, sub, ctx.dry_run(), &Tracking::Applied, |orig| {
                        let obj = fieldmanager::apply(r, Some(orig), &cfg.object, &manager, sub, force)?;
                        crate::escalation::check(ctx.user, &ctx.policy, r, ctx.ns(), &obj)?;
                        Ok(obj)
                    })
                    .await?;
                return Ok(ctx.render(200, &stored.object).with_warnings(cfg.warnings));
            }
        }
    }
    Err(ApiError::modified(subject(r, name)))
}

pub async fn delete(ctx: &Ctx<'_>, content_type: &str, body: &[u8]) -> ApiResult<Reply> {
    let r = ctx.r();
    let name = ctx.name()?.to_string();
    let mut opts = delete_options(ctx, content_type, body)?;
    opts.dry_run |= ctx.dry_run();
    match ctx.registry.delete(r, ctx.ns(), &name, &opts).await? {
        Deleted::Gone(obj) => {
            let details = json!({ "name": name, "kind": r.plural, "uid": object::meta_str(&obj, "uid") });
            let mut details = details;
            if !r.group.is_empty() {
                details["group"] = json!(r.group);
            }
            if r.plural == "pods" || r.plural == "services" || r.plural == "namespaces" {
                Ok(ctx.render(200, &obj))
            } else {
                Ok(Reply::json(
                    200,
                    &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details }),
                ))
            }
        }
        Deleted::Pending(obj) => Ok(ctx.render(200, &obj)),
    }
}

/// The body's `DeleteOptions`: JSON, YAML or protobuf (client-go's typed
/// clients, e.g. helm's, send protobuf).
fn delete_options(ctx: &Ctx<'_>, content_type: &str, body: &[u8]) -> ApiResult<DeleteOptions> {
    let mut opts = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        let v = decode::parse_body(content_type, body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {}", e.message)))?;
        DeleteOptions::from_json(&v)
    };
    if let Some(p) = ctx.query.get("propagationPolicy") {
        opts.propagation = Some(p.to_string());
    }
    if let Some(g) = ctx.query.int("gracePeriodSeconds") {
        opts.grace_period_seconds = Some(g);
    }
    if let Some(p) = &opts.propagation {
        if !matches!(p.as_str(), "Foreground" | "Background" | "Orphan") {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!("DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""),
            ));
        }
    }
    Ok(opts)
}

pub async fn delete_collection(ctx: &Ctx<'_>, content_type: &str, body: &[u8]) -> ApiResult<Reply> {
    let r = ctx.r();
    let params = list_params(ctx)?;
    let opts = delete_options(ctx, content_type, body)?;
    let page = ctx.registry.list_raw(&r.namespace_prefix(ctx.ns()), ListOptions::default()).await?;
    let mut deleted = Vec::new();
    for kv in &page.kvs {
        let obj = object::decode(&kv.value, kv.mod_revision).map_err(|e| ApiError::internal(e.to_string()))?;
        if !(params.label.matches_object(&obj) && params.field.matches_object(&obj)) {
            continue;
        }
        let ns = object::meta_str(&obj, "namespace").map(String::from);
        match ctx.registry.delete(r, ns.as_deref(), object::name(&obj), &opts).await {
            Ok(Deleted::Gone(o) | Deleted::Pending(o)) => deleted.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let meta = json!({ "resourceVersion": ctx.registry.store.current_revision().await?.to_string() });
    Ok(Reply::json(
        200,
        &json!({ "kind": r.list_kind(), "apiVersion": r.api_version(), "metadata": meta, "items": deleted }),
    ))
}

/// `POST` to a named object: the subresources that create something.
pub async fn post_named(ctx: &Ctx<'_>, content_type: &str, body: &[u8]) -> ApiResult<Reply> {
    match ctx.req.subresource.as_deref() {
        Some("eviction") if ctx.r().plural == "pods" => evict(ctx, content_type, body).await,
        Some("token") if ctx.r().plural == "serviceaccounts" => {
            let ns = ctx.ns().ok_or_else(|| ApiError::bad_request("a ServiceAccount token needs a namespace"))?;
            let out =
                crate::serviceaccount::token_request(ctx.registry, ctx.sa_tokens, ns, ctx.name()?, content_type, body)
                    .await?;
            Ok(Reply::json(201, &out))
        }
        _ => bind(ctx, content_type, body).await,
    }
}

/// `POST pods/<name>/eviction`, what `kubectl drain` sends (policy/v1
/// Eviction; upstream `pkg/registry/core/pod/storage/eviction.go`). No
/// PodDisruptionBudgets are served, so nothing blocks an eviction: a pod not
/// yet terminal gets the `DisruptionTarget` condition, then is deleted with
/// the Eviction's `deleteOptions`.
async fn evict(ctx: &Ctx<'_>, content_type: &str, body: &[u8]) -> ApiResult<Reply> {
    let r = ctx.r();
    let name = ctx.name()?.to_string();
    let eviction = decode::parse_body(content_type, body)?;
    if let Some(kind) = eviction.get("kind").and_then(Value::as_str).filter(|k| *k != "Eviction") {
        return Err(ApiError::bad_request(format!("{kind} is not an Eviction")));
    }
    if eviction.pointer("/metadata/name").and_then(Value::as_str) != Some(name.as_str()) {
        return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
    }
    let mut opts = eviction.get("deleteOptions").map(DeleteOptions::from_json).unwrap_or_default();
    opts.dry_run |= ctx.dry_run();
    let pod = ctx.registry.get(r, ctx.ns(), &name).await?;
    let terminal = matches!(pod.object.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
    if !opts.dry_run && !terminal {
        let tracking = ctx.tracking()?;
        ctx.registry
            .modify(r, ctx.ns(), &name, Some("status"), false, &tracking, |pod| {
                let mut pod = pod.clone();
                set_pod_condition(
                    &mut pod,
                    "DisruptionTarget",
                    "True",
                    "EvictionByEvictionAPI",
                    "Eviction API: evicting",
                );
                Ok(pod)
            })
            .await?;
    }
    ctx.registry.delete(r, ctx.ns(), &name, &opts).await?;
    Ok(Reply::json(
        201,
        &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 }),
    ))
}

/// Set a pod condition (upstream `podutil.UpdatePodCondition`: the transition
/// time moves only when the status changes).
fn set_pod_condition(pod: &mut Value, type_: &str, status: &str, reason: &str, message: &str) {
    let now = crate::registry::now_rfc3339();
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let Some(conds) = pod["status"]["conditions"].as_array_mut() else { return };
    let cond = json!({ "type": type_, "status": status, "reason": reason, "message": message, "lastProbeTime": null, "lastTransitionTime": now });
    match conds.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some(type_)) {
        Some(c) => {
            let since = if c.get("status").and_then(Value::as_str) == Some(status) {
                c.get("lastTransitionTime").cloned().unwrap_or_else(|| json!(now))
            } else {
                json!(now)
            };
            *c = cond;
            c["lastTransitionTime"] = since;
        }
        None => conds.push(cond),
    }
}

/// `POST pods/<name>/binding`: the scheduler's assignment of a pod to a node
/// (upstream `pkg/registry/core/pod/storage` BindingREST).
pub async fn bind(ctx: &Ctx<'_>, content_type: &str, body: &[u8]) -> ApiResult<Reply> {
    let r = ctx.r();
    let name = ctx.name()?.to_string();
    if r.plural != "pods" || ctx.req.subresource.as_deref() != Some("binding") {
        return Err(ApiError::method_not_supported(r.plural, "create"));
    }
    let binding = decode::parse_body(content_type, body)?;
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("binding target name is required"))?
        .to_string();
    ctx.registry
        .modify(r, ctx.ns(), &name, Some("binding"), ctx.dry_run(), &Tracking::Untracked, |pod| {
            if pod.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(ApiError::conflict(subject(r, &name), "pod is being deleted, cannot be assigned to a host"));
            }
            if let Some(cur) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict(subject(r, &name), &format!("pod {name} is already assigned to node \"{cur}\"")));
            }
            let mut pod = pod.clone();
            pod["spec"]["nodeName"] = json!(node);
            let cond = json!({ "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": crate::registry::now_rfc3339() });
            let conds = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conds: Vec<Value> = conds.into_iter().filter(|c| c.get("type") != Some(&json!("PodScheduled"))).collect();
            conds.push(cond);
            pod["status"]["conditions"] = json!(conds);
            if let Some(m) = object::meta_mut(&mut pod) {
                m.remove("resourceVersion");
            }
            Ok(pod)
        })
        .await?;
    Ok(Reply::json(
        201,
        &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 }),
    ))
}
