//! Generic storage of API objects: create, read, update, delete with upstream's
//! server-set fields (uid, creationTimestamp, generation, resourceVersion,
//! deletionTimestamp + finalizers). Per-resource rules live in `strategy`.
//! (Upstream: `k8s.io/apiserver/pkg/registry/generic/registry/store.go`.)

use crate::claims::ClaimError;
use crate::error::{ApiError, ApiResult, Subject};
use crate::fieldmanager::{self, Tracking};
use crate::object;
use crate::resources::Resource;
use crate::services::Allocation;
use crate::strategy::Strategies;
use serde_json::{json, Value};
use std::sync::Arc;
use store::{KeyValue, ListOptions, Revision, Store};

/// A stored object: its JSON (with resourceVersion) and revision.
#[derive(Clone, Debug)]
pub struct Stored {
    pub object: Value,
    pub revision: Revision,
}

/// Options of a delete request (`metav1.DeleteOptions`).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub propagation: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    pub fn from_json(v: &Value) -> DeleteOptions {
        DeleteOptions {
            propagation: v.get("propagationPolicy").and_then(Value::as_str).map(String::from),
            grace_period_seconds: v.get("gracePeriodSeconds").and_then(Value::as_i64),
            precondition_uid: v.pointer("/preconditions/uid").and_then(Value::as_str).map(String::from),
            precondition_rv: v.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(String::from),
            dry_run: v.get("dryRun").and_then(Value::as_array).is_some_and(|a| !a.is_empty()),
        }
    }
}

/// Result of a delete: the object is gone, or it waits for finalizers / grace.
pub enum Deleted {
    Gone(Value),
    Pending(Value),
}

pub struct Registry {
    pub store: Arc<dyn Store>,
    pub strategies: Strategies,
    /// One store watch per resource, shared by every client watch (`None`
    /// with `--watch-cache=false`: each client watch reads the store).
    pub watch_cache: Option<crate::watch_cache::WatchCache>,
}

pub fn subject<'a>(r: &'a Resource, name: &'a str) -> Subject<'a> {
    Subject { group: r.group, plural: r.plural, kind: r.kind, name }
}

/// `2026-11-25T23:18:53Z`, the format of `metav1.Time`.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

const GENERATE_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `generateName` + 5 random characters, as upstream's `SimpleNameGenerator`.
pub fn generate_name(base: &str) -> String {
    use rand::Rng;
    let base = if base.len() > 58 { &base[..58] } else { base };
    let mut rng = rand::rng();
    let suffix: String = (0..5).map(|_| GENERATE_CHARS[rng.random_range(0..GENERATE_CHARS.len())] as char).collect();
    format!("{base}{suffix}")
}

fn is_crd(r: &Resource) -> bool {
    r.group == "apiextensions.k8s.io" && r.plural == "customresourcedefinitions"
}

impl Registry {
    /// Serve the custom resources of every stored CRD (at start and after
    /// each CRD write).
    pub async fn reload_crds(&self) -> ApiResult<()> {
        let r = crate::resources::find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .ok_or_else(|| ApiError::internal("no customresourcedefinitions resource"))?;
        let page = self.store.list(&r.key_prefix(), ListOptions::default()).await?;
        let mut crds = Vec::with_capacity(page.kvs.len());
        for kv in &page.kvs {
            crds.push(self.decode(kv)?.object);
        }
        crate::crd::sync(&crds);
        Ok(())
    }

    /// After a write of `r`: CRD changes change what is served.
    async fn after_write(&self, r: &Resource) {
        if is_crd(r) {
            if let Err(e) = self.reload_crds().await {
                tracing::warn!(error = %e, "reloading custom resource definitions");
            }
        }
    }

    /// Deleting a CRD deletes its objects (upstream's `customresourcecleanup`
    /// finalizer does this before the CRD goes).
    async fn delete_custom_objects(&self, crd: &Value) -> ApiResult<()> {
        let Some(prefix) = crate::crd::key_prefix_of(crd) else { return Ok(()) };
        let page = self.store.list(&prefix, ListOptions::default()).await?;
        for kv in &page.kvs {
            match self.store.delete(&kv.key, None).await {
                Ok(_) | Err(store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn decode(&self, kv: &KeyValue) -> ApiResult<Stored> {
        let object = object::decode(&kv.value, kv.mod_revision)
            .map_err(|e| ApiError::internal(format!("decoding stored object {}: {e}", kv.key)))?;
        Ok(Stored { object, revision: kv.mod_revision })
    }

    pub async fn get(&self, r: &'static Resource, ns: Option<&str>, name: &str) -> ApiResult<Stored> {
        match self.store.get(&r.key(ns, name), None).await? {
            Some(kv) => self.decode(&kv),
            None => Err(ApiError::not_found(subject(r, name))),
        }
    }

    /// Raw list of keys under a prefix (the caller filters and encodes).
    pub async fn list_raw(&self, prefix: &str, opts: ListOptions) -> ApiResult<store::ListResult> {
        Ok(self.store.list(prefix, opts).await?)
    }

    /// Create an object: server-set metadata, defaults, validation, allocation.
    pub async fn create(
        &self,
        r: &'static Resource,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
        tracking: &Tracking,
    ) -> ApiResult<Stored> {
        {
            let meta =
                object::meta_mut(&mut obj).ok_or_else(|| ApiError::bad_request("the object is not a JSON object"))?;
            let name = meta.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            if name.is_empty() {
                if let Some(base) = meta.get("generateName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    meta.insert("name".into(), json!(generate_name(base)));
                }
            }
            if r.namespaced {
                if let Some(ns) = ns {
                    meta.insert("namespace".into(), json!(ns));
                }
            } else {
                meta.remove("namespace");
            }
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
            meta.remove("resourceVersion");
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            meta.remove("selfLink");
            if self.strategies.has_generation(r) {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
        }
        let name = object::name(&obj).to_string();
        if name.is_empty() {
            return Err(ApiError::invalid(
                subject(r, ""),
                &[apimachinery::field::FieldError::required("metadata.name", "name or generateName is required")],
            ));
        }
        if r.namespaced {
            self.check_namespace_open(ns.unwrap_or_default(), r, &name).await?;
        }
        let (mut obj, alloc) =
            self.allocate(r, &name, obj, dry_run, |obj| self.strategies.prepare_create(r, obj)).await?;
        match tracking {
            Tracking::Update(manager) => fieldmanager::track_update(r, manager, None, None, &mut obj),
            Tracking::Applied => {}
            Tracking::Untracked => fieldmanager::set_entries(&mut obj, &[]),
        }
        if dry_run {
            alloc.forget();
            return Ok(Stored { object: obj, revision: 0 });
        }
        let key = r.key(ns, &name);
        match self.store.create(&key, object::encode(&obj)).await {
            Ok(kv) => {
                alloc.commit().await;
                object::set_resource_version(&mut obj, kv.mod_revision);
                self.after_write(r).await;
                Ok(Stored { object: obj, revision: kv.mod_revision })
            }
            Err(store::Error::AlreadyExists { .. }) => {
                alloc.release().await;
                Err(ApiError::already_exists(subject(r, &name)))
            }
            Err(e) => {
                alloc.release().await;
                Err(e.into())
            }
        }
    }

    /// Runs `prepare` (defaults, allocation, validation) and claims what it
    /// allocated; when another API server claimed a value first, allocates
    /// again from a fresh copy of `obj` (the value stays marked, so a value
    /// the client asked for is then refused as upstream refuses it).
    async fn allocate<F>(
        &self,
        r: &Resource,
        name: &str,
        obj: Value,
        dry_run: bool,
        prepare: F,
    ) -> ApiResult<(Value, Allocation)>
    where
        F: Fn(&mut Value) -> Result<Allocation, Vec<apimachinery::field::FieldError>>,
    {
        const ATTEMPTS: usize = 8;
        for _ in 0..ATTEMPTS {
            let mut candidate = obj.clone();
            let mut alloc = prepare(&mut candidate).map_err(|errs| ApiError::invalid(subject(r, name), &errs))?;
            if dry_run {
                return Ok((candidate, alloc));
            }
            match alloc.claim().await {
                Ok(()) => return Ok((candidate, alloc)),
                Err(ClaimError::Taken(v)) => {
                    tracing::debug!(value = ?v, "claimed by another API server; allocating again");
                    alloc.release().await;
                }
                Err(ClaimError::Store(e)) => {
                    alloc.release().await;
                    return Err(e.into());
                }
            }
        }
        Err(ApiError::internal(format!(
            "could not allocate for {} {name}: every value tried was claimed by another API server",
            r.kind
        )))
    }

    async fn check_namespace_open(&self, ns: &str, r: &Resource, name: &str) -> ApiResult<()> {
        let nsr = crate::resources::find("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("no namespaces resource"))?;
        match self.store.get(&nsr.key(None, ns), None).await? {
            None => Err(ApiError::not_found(subject(nsr, ns))),
            Some(kv) => {
                let v = self.decode(&kv)?.object;
                if v.pointer("/metadata/deletionTimestamp").is_some() {
                    return Err(ApiError::forbidden(
                        subject(r, name),
                        &format!("unable to create new content in namespace {ns} because it is being terminated"),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Replace an object (PUT), or its `status` subresource. `obj` carries the
    /// client's resourceVersion; empty means unconditional (as upstream allows).
    #[allow(clippy::too_many_arguments)]
    pub async fn update(
        &self,
        r: &'static Resource,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        sub: Option<&str>,
        dry_run: bool,
        tracking: &Tracking,
    ) -> ApiResult<Stored> {
        let key = r.key(ns, name);
        let cur = self.store.get(&key, None).await?.ok_or_else(|| ApiError::not_found(subject(r, name)))?;
        let old = self.decode(&cur)?;
        let wanted_rv = object::meta_str(&obj, "resourceVersion").map(String::from);
        if let Some(rv) = &wanted_rv {
            if rv.parse::<i64>().ok() != Some(cur.mod_revision) {
                return Err(ApiError::modified(subject(r, name)));
            }
        }
        self.write_update(r, ns, name, old, obj, sub, dry_run, tracking).await
    }

    /// Read-modify-write with retries on conflict (PATCH and internal updates).
    #[allow(clippy::too_many_arguments)]
    pub async fn modify<F>(
        &self,
        r: &'static Resource,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        dry_run: bool,
        tracking: &Tracking,
        mut f: F,
    ) -> ApiResult<Stored>
    where
        F: FnMut(&Value) -> ApiResult<Value>,
    {
        for _ in 0..16 {
            let old = self.get(r, ns, name).await?;
            let new = f(&old.object)?;
            // A patch may carry a resourceVersion precondition.
            if let Some(rv) = object::meta_str(&new, "resourceVersion") {
                if rv.parse::<i64>().ok() != Some(old.revision) {
                    return Err(ApiError::modified(subject(r, name)));
                }
            }
            match self.write_update(r, ns, name, old, new, sub, dry_run, tracking).await {
                Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
                other => return other,
            }
        }
        Err(ApiError::modified(subject(r, name)))
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_update(
        &self,
        r: &'static Resource,
        ns: Option<&str>,
        name: &str,
        old: Stored,
        mut obj: Value,
        sub: Option<&str>,
        dry_run: bool,
        tracking: &Tracking,
    ) -> ApiResult<Stored> {
        if object::name(&obj) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                object::name(&obj)
            )));
        }
        // Server-owned metadata comes from the stored object.
        {
            let old_meta = old.object.get("metadata").cloned().unwrap_or_else(|| json!({}));
            let meta =
                object::meta_mut(&mut obj).ok_or_else(|| ApiError::bad_request("the object is not a JSON object"))?;
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
            ] {
                match old_meta.get(f) {
                    Some(v) => meta.insert(f.into(), v.clone()),
                    None => meta.remove(f),
                };
            }
            meta.remove("selfLink");
        }
        // Preconditions were checked by the caller; validation sees the current version.
        object::set_resource_version(&mut obj, old.revision);
        let (mut obj, alloc) = self
            .allocate(r, name, obj, dry_run, |obj| self.strategies.prepare_update(r, obj, &old.object, sub))
            .await?;
        if self.strategies.has_generation(r) && obj.get("spec") != old.object.get("spec") {
            let g = old.object.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            if let Some(m) = object::meta_mut(&mut obj) {
                m.insert("generation".into(), json!(g));
            }
        }
        match tracking {
            Tracking::Update(manager) => fieldmanager::track_update(r, manager, sub, Some(&old.object), &mut obj),
            Tracking::Applied => {}
            Tracking::Untracked => {
                let live = old.object.pointer("/metadata/managedFields").cloned();
                if let Some(m) = object::meta_mut(&mut obj) {
                    match live {
                        Some(v) => m.insert("managedFields".into(), v),
                        None => m.remove("managedFields"),
                    };
                }
            }
        }
        // Deleting objects whose last finalizer went away are removed now.
        let deleting = obj.pointer("/metadata/deletionTimestamp").is_some();
        let unchanged = {
            let mut a = obj.clone();
            let mut b = old.object.clone();
            object::set_resource_version(&mut a, 0);
            object::set_resource_version(&mut b, 0);
            a == b
        };
        if dry_run {
            alloc.forget();
            return Ok(Stored { object: obj, revision: old.revision });
        }
        let key = r.key(ns, name);
        if deleting && object::finalizers(&obj).is_empty() && !self.strategies.blocks_deletion(r, &obj) {
            if is_crd(r) {
                self.delete_custom_objects(&obj).await?;
            }
            return match self.store.delete(&key, Some(old.revision)).await {
                Ok((_, rev)) => {
                    alloc.commit().await;
                    self.strategies.released(r, &obj).await;
                    object::set_resource_version(&mut obj, rev);
                    self.after_write(r).await;
                    Ok(Stored { object: obj, revision: rev })
                }
                Err(e) => {
                    alloc.release().await;
                    Err(self.write_error(r, name, e))
                }
            };
        }
        if unchanged {
            // No-op updates do not bump the resourceVersion (upstream behaviour).
            alloc.release().await;
            return Ok(old);
        }
        match self.store.update(&key, object::encode(&obj), old.revision).await {
            Ok(kv) => {
                alloc.commit().await;
                object::set_resource_version(&mut obj, kv.mod_revision);
                self.after_write(r).await;
                Ok(Stored { object: obj, revision: kv.mod_revision })
            }
            Err(e) => {
                alloc.release().await;
                Err(self.write_error(r, name, e))
            }
        }
    }

    fn write_error(&self, r: &Resource, name: &str, e: store::Error) -> ApiError {
        match e {
            store::Error::Conflict { .. } => ApiError::modified(subject(r, name)),
            store::Error::NotFound { .. } => ApiError::not_found(subject(r, name)),
            other => other.into(),
        }
    }

    /// Delete with upstream's graceful semantics: finalizers (and the
    /// propagation policy's own finalizer) keep the object with a
    /// deletionTimestamp; otherwise it is removed from the store.
    pub async fn delete(
        &self,
        r: &'static Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        for _ in 0..16 {
            let cur = self.get(r, ns, name).await?;
            let mut obj = cur.object.clone();
            if let Some(uid) = &opts.precondition_uid {
                let actual = object::meta_str(&obj, "uid").unwrap_or_default();
                if uid != actual {
                    return Err(ApiError::conflict(
                        subject(r, name),
                        &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_rv {
                if rv.parse::<i64>().ok() != Some(cur.revision) {
                    return Err(ApiError::conflict(
                        subject(r, name),
                        &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", cur.revision),
                    ));
                }
            }
            let mut finalizers = object::finalizers(&obj);
            let policy = opts.propagation.as_deref().or(self.strategies.default_propagation(r));
            let policy_finalizer = match policy {
                Some("Foreground") => Some("foregroundDeletion"),
                Some("Orphan") => Some("orphan"),
                _ => None,
            };
            let already_deleting = obj.pointer("/metadata/deletionTimestamp").is_some();
            if let Some(f) = policy_finalizer {
                if !finalizers.iter().any(|x| x == f) && (!already_deleting || f == "foregroundDeletion") {
                    finalizers.push(f.to_string());
                }
            }
            let grace = self.strategies.grace_period(r, &obj, opts.grace_period_seconds);
            if grace.is_none() {
                // A delete with grace 0 (the node agent's final delete) ends any
                // grace period a previous delete started.
                if let Some(m) = object::meta_mut(&mut obj) {
                    if m.contains_key("deletionGracePeriodSeconds") {
                        m.insert("deletionGracePeriodSeconds".into(), json!(0));
                    }
                }
            }
            self.strategies.before_delete(r, &mut obj);
            if finalizers.is_empty() && grace.is_none() && !self.strategies.blocks_deletion(r, &obj) {
                if opts.dry_run {
                    return Ok(Deleted::Gone(obj));
                }
                if is_crd(r) {
                    self.delete_custom_objects(&obj).await?;
                }
                match self.store.delete(&r.key(ns, name), Some(cur.revision)).await {
                    Ok((_, rev)) => {
                        self.strategies.released(r, &obj).await;
                        object::set_resource_version(&mut obj, rev);
                        self.after_write(r).await;
                        return Ok(Deleted::Gone(obj));
                    }
                    Err(store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(self.write_error(r, name, e)),
                }
            }
            if let Some(meta) = object::meta_mut(&mut obj) {
                if !already_deleting {
                    let when = match grace {
                        Some(secs) if secs > 0 => jiff::Timestamp::now()
                            .checked_add(jiff::SignedDuration::from_secs(secs))
                            .unwrap_or_else(|_| jiff::Timestamp::now())
                            .strftime("%Y-%m-%dT%H:%M:%SZ")
                            .to_string(),
                        _ => now_rfc3339(),
                    };
                    meta.insert("deletionTimestamp".into(), json!(when));
                    meta.insert("deletionGracePeriodSeconds".into(), json!(grace.unwrap_or(0)));
                } else if let Some(secs) = grace {
                    // A shorter grace period may replace a longer one.
                    let old = meta.get("deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(i64::MAX);
                    if secs < old {
                        meta.insert("deletionGracePeriodSeconds".into(), json!(secs));
                    }
                }
                if finalizers.is_empty() {
                    meta.remove("finalizers");
                } else {
                    meta.insert("finalizers".into(), json!(finalizers));
                }
            }
            if obj == cur.object {
                return Ok(Deleted::Pending(obj));
            }
            if opts.dry_run {
                return Ok(Deleted::Pending(obj));
            }
            match self.store.update(&r.key(ns, name), object::encode(&obj), cur.revision).await {
                Ok(kv) => {
                    object::set_resource_version(&mut obj, kv.mod_revision);
                    self.after_write(r).await;
                    return Ok(Deleted::Pending(obj));
                }
                Err(store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(self.write_error(r, name, e)),
            }
        }
        Err(ApiError::modified(subject(r, name)))
    }
}
