//! Events (core/v1) recorded by the controllers, as client-go's legacy
//! `record.EventRecorder` writes them: name `<object>.<hex nanoseconds>`,
//! `source.component` and `reportingComponent` the controller's name, events
//! on cluster-scoped objects in `default`. Repeats of the same event (same
//! object, type, reason and message) bump `count` and `lastTimestamp`, as the
//! upstream `EventCorrelator` does. Best effort: failures are only logged.

use crate::util;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Resource;
use serde_json::json;
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// Upstream's correlator cache size (`maxLruCacheEntries`).
const CACHE_ENTRIES: usize = 4096;

struct Request {
    involved: ObjectReference,
    type_: &'static str,
    reason: String,
    message: String,
}

/// Records events for one component; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Request>,
}

impl Recorder {
    /// A recorder for `component` and the task that writes its events.
    pub fn new(client: kube::Client, component: &'static str) -> (Recorder, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(client, component, rx));
        (Recorder { tx }, task)
    }

    pub fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, type_: &'static str, reason: &str, message: String) {
        self.event_ref(obj.object_ref(&()), type_, reason, message);
    }

    pub fn event_ref(&self, involved: ObjectReference, type_: &'static str, reason: &str, message: String) {
        let _ = self.tx.send(Request { involved, type_, reason: reason.to_string(), message });
    }
}

/// (object uid or name, type, reason, message)
type EventKey = (String, &'static str, String, String);

async fn run(client: kube::Client, component: &'static str, mut rx: mpsc::UnboundedReceiver<Request>) {
    // What was recorded: namespace, event name, count.
    let mut seen: HashMap<EventKey, (String, String, i32)> = HashMap::new();
    while let Some(req) = rx.recv().await {
        let id = req.involved.uid.clone().or_else(|| req.involved.name.clone()).unwrap_or_default();
        let cache_key = (id, req.type_, req.reason.clone(), req.message.clone());
        let now = util::now();
        if let Some((ns, name, count)) = seen.get_mut(&cache_key) {
            let api: Api<Event> = Api::namespaced(client.clone(), ns);
            let patch = json!({ "count": *count + 1, "lastTimestamp": now });
            if api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                *count += 1;
                continue;
            }
            seen.remove(&cache_key);
        }
        let ns = req.involved.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".to_string());
        let nanos = k8s_openapi::jiff::Timestamp::now().as_nanosecond().max(0);
        let name = format!("{}.{:x}", req.involved.name.as_deref().unwrap_or("unknown"), nanos);
        let ev = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(ns.clone()), ..Default::default() },
            involved_object: req.involved,
            reason: Some(req.reason),
            message: Some(req.message),
            type_: Some(req.type_.to_string()),
            source: Some(EventSource { component: Some(component.to_string()), host: None }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(component.to_string()),
            reporting_instance: Some(String::new()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => {
                if seen.len() >= CACHE_ENTRIES {
                    seen.clear();
                }
                seen.insert(cache_key, (ns, name, 1));
            }
            Err(e) => tracing::debug!(component, error = %e, "could not record event"),
        }
    }
}
