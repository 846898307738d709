//! Shared informers: one kube-rs `watcher` + `reflector` store per kind, built
//! once and shared by every controller (upstream: client-go's
//! `SharedInformerFactory`). Controllers read the stores and register change
//! handlers that map an object to the work-queue keys it affects.

use apimachinery::metallb::IPAddressPool;
use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, RwLock};
use tokio::task::JoinHandle;

/// A change handler: `(old, new)`; `new` is `None` for a deletion (then `old`
/// is the last state seen), `old` is `None` for an object seen for the first time.
pub type Handler<K> = Box<dyn Fn(Option<&K>, Option<&K>) + Send + Sync>;

/// Key of an object: namespace (empty for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: &str, name: &str) -> Self {
        Key { namespace: namespace.to_string(), name: name.to_string() }
    }

    pub fn of<K: Resource>(obj: &K) -> Self {
        let m = obj.meta();
        Key::new(m.namespace.as_deref().unwrap_or_default(), m.name.as_deref().unwrap_or_default())
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// The watch an informer follows (a typed watch, or a metadata-only one).
type Source<K> = Box<dyn Fn() -> BoxStream<'static, watcher::Result<watcher::Event<K>>> + Send + Sync>;

/// One watched kind: its reflector store and the handlers called on changes.
pub struct Informer<K>
where
    K: Resource + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash + Send + Sync,
{
    source: Source<K>,
    dyntype: K::DynamicType,
    store: Store<K>,
    writer: Mutex<Option<reflector::store::Writer<K>>>,
    handlers: RwLock<Vec<Handler<K>>>,
    /// Set once the first listing is in. (`Store::wait_until_ready` wakes only
    /// one of several waiters.)
    ready: tokio::sync::watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    pub fn new(api: Api<K>) -> Arc<Self> {
        Self::with_source((), Box::new(move || watcher(api.clone(), watcher::Config::default()).boxed()))
    }
}

/// Only the metadata of objects of a kind found at run time (the garbage
/// collector's other kinds, custom resources): client-go's metadata informers.
pub type MetadataInformer = Informer<PartialObjectMeta<DynamicObject>>;

impl MetadataInformer {
    pub fn metadata(client: &kube::Client, ar: &ApiResource) -> Arc<Self> {
        // Requests through this Api ask for PartialObjectMetadata.
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), ar);
        Self::with_source(ar.clone(), Box::new(move || watcher(api.clone(), watcher::Config::default()).boxed()))
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash + Send + Sync,
{
    fn with_source(dyntype: K::DynamicType, source: Source<K>) -> Arc<Self> {
        let writer = reflector::store::Writer::new(dyntype.clone());
        let store = writer.as_reader();
        let (ready, _) = tokio::sync::watch::channel(false);
        Arc::new(Informer {
            source,
            dyntype,
            store,
            writer: Mutex::new(Some(writer)),
            handlers: RwLock::new(Vec::new()),
            ready,
        })
    }

    /// Waits until the store holds its first full listing.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Registers a change handler (before [`Informer::spawn`], to see the
    /// initial listing too).
    pub fn on_change(&self, h: impl Fn(Option<&K>, Option<&K>) + Send + Sync + 'static) {
        self.handlers.write().unwrap_or_else(|e| e.into_inner()).push(Box::new(h));
    }

    /// Registers a handler of `target` that does not keep it alive (so that
    /// stopping the controllers frees them and the informers).
    pub fn on_change_weak<T: Send + Sync + 'static>(
        &self,
        target: &Arc<T>,
        f: impl Fn(&T, Option<&K>, Option<&K>) + Send + Sync + 'static,
    ) {
        let weak = Arc::downgrade(target);
        self.on_change(move |old, new| {
            if let Some(t) = weak.upgrade() {
                f(&t, old, new);
            }
        });
    }

    /// The object `namespace/name` (namespace empty for cluster-scoped kinds).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let mut r = ObjectRef::<K>::new_with(name, self.dyntype.clone());
        if !namespace.is_empty() {
            r = r.within(namespace);
        }
        self.store.get(&r)
    }

    pub fn get_key(&self, key: &Key) -> Option<Arc<K>> {
        self.get(&key.namespace, &key.name)
    }

    /// Every object of one namespace.
    pub fn list_ns(&self, namespace: &str) -> Vec<Arc<K>> {
        self.store.state_filter(|o| o.meta().namespace.as_deref() == Some(namespace))
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    fn notify(&self, old: Option<&K>, new: Option<&K>) {
        let handlers = self.handlers.read().unwrap_or_else(|e| e.into_inner());
        for h in handlers.iter() {
            h(old, new);
        }
    }

    /// Starts the watch; the store is ready once the first listing is in.
    pub fn spawn(self: &Arc<Self>) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.run().await })
    }

    async fn run(self: Arc<Self>) {
        let Some(mut writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let stream = (self.source)().default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut listed: Vec<K> = Vec::new();
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::debug!(kind = %K::kind(&self.dyntype), error = %e, "watch error");
                    continue;
                }
            };
            match &ev {
                watcher::Event::Init => {
                    listed.clear();
                    writer.apply_watcher_event(&ev);
                }
                watcher::Event::InitApply(o) => {
                    listed.push(o.clone());
                    writer.apply_watcher_event(&ev);
                }
                watcher::Event::InitDone => {
                    // The listing replaces the store at once: report what changed.
                    let before: HashMap<ObjectRef<K>, Arc<K>> = self
                        .store
                        .state()
                        .into_iter()
                        .map(|o| (ObjectRef::from_obj_with(&*o, self.dyntype.clone()), o))
                        .collect();
                    writer.apply_watcher_event(&ev);
                    let mut seen = HashSet::new();
                    for o in listed.drain(..) {
                        let r = ObjectRef::from_obj_with(&o, self.dyntype.clone());
                        let old = before.get(&r);
                        seen.insert(r);
                        if old.is_some_and(|old| old.meta().resource_version == o.meta().resource_version) {
                            continue;
                        }
                        self.notify(old.map(|o| &**o), Some(&o));
                    }
                    for (r, old) in &before {
                        if !seen.contains(r) {
                            self.notify(Some(old), None);
                        }
                    }
                    self.ready.send_replace(true);
                }
                watcher::Event::Apply(o) => {
                    let old = self.store.get(&ObjectRef::from_obj_with(o, self.dyntype.clone()));
                    writer.apply_watcher_event(&ev);
                    self.notify(old.as_deref(), Some(o));
                }
                watcher::Event::Delete(o) => {
                    writer.apply_watcher_event(&ev);
                    self.notify(Some(o), None);
                }
            }
        }
    }
}

/// How a kind is named among the metadata informers: `apiVersion/kind`.
pub fn kind_key(ar: &ApiResource) -> String {
    format!("{}/{}", ar.api_version, ar.kind)
}

/// An object seen only through its metadata.
pub trait HasMeta: Send + Sync {
    fn object_meta(&self) -> &ObjectMeta;
}

impl<K: Resource + Send + Sync> HasMeta for K {
    fn object_meta(&self) -> &ObjectMeta {
        self.meta()
    }
}

/// What a controller that needs only metadata (the garbage collector) reads of
/// a kind, whichever informer holds it.
pub trait MetaView: Send + Sync {
    /// Every object held now.
    fn metas(&self) -> Vec<Arc<dyn HasMeta>>;
    /// Calls `f` after every change.
    fn on_any_change(&self, f: Arc<dyn Fn() + Send + Sync>);
    /// Turns `true` once the first listing is in.
    fn ready(&self) -> tokio::sync::watch::Receiver<bool>;
}

impl<K> MetaView for Informer<K>
where
    K: Resource + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash + Send + Sync,
{
    fn metas(&self) -> Vec<Arc<dyn HasMeta>> {
        self.store.state().into_iter().map(|o| o as Arc<dyn HasMeta>).collect()
    }

    fn on_any_change(&self, f: Arc<dyn Fn() + Send + Sync>) {
        self.on_change(move |_, _| f());
    }

    fn ready(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ready.subscribe()
    }
}

/// The informers every controller shares.
pub struct Informers {
    pub pods: Arc<Informer<Pod>>,
    pub services: Arc<Informer<Service>>,
    pub endpoints: Arc<Informer<Endpoints>>,
    pub slices: Arc<Informer<EndpointSlice>>,
    pub nodes: Arc<Informer<Node>>,
    pub replicasets: Arc<Informer<ReplicaSet>>,
    pub deployments: Arc<Informer<Deployment>>,
    pub daemonsets: Arc<Informer<DaemonSet>>,
    pub jobs: Arc<Informer<Job>>,
    pub statefulsets: Arc<Informer<StatefulSet>>,
    pub cronjobs: Arc<Informer<CronJob>>,
    /// MetalLB `IPAddressPool`s (LoadBalancer address allocation).
    pub ip_pools: Arc<Informer<IPAddressPool>>,
    /// Node Leases in `kube-node-lease` (node lifecycle).
    pub leases: Arc<Informer<Lease>>,
    /// CertificateSigningRequests (approver and signer).
    pub csrs: Arc<Informer<CertificateSigningRequest>>,
    /// Secrets in `kube-system` (bootstrap token cleaner).
    pub system_secrets: Arc<Informer<Secret>>,
    /// Namespaces and ServiceAccounts (the `default` account of each namespace).
    pub namespaces: Arc<Informer<Namespace>>,
    pub serviceaccounts: Arc<Informer<ServiceAccount>>,
    /// ClusterRoles (aggregation).
    pub cluster_roles: Arc<Informer<k8s_openapi::api::rbac::v1::ClusterRole>>,
    /// CustomResourceDefinitions: the kinds the garbage collector and the
    /// namespace controller follow beyond the built-in ones.
    pub crds: Arc<Informer<CustomResourceDefinition>>,
    client: kube::Client,
    /// Metadata informers made on demand, one per kind ([`kind_key`]).
    metadata: Mutex<HashMap<String, Arc<MetadataInformer>>>,
}

impl Informers {
    /// The pods of `namespace` whose labels match a Service's `spec.selector`.
    pub fn pods_selected_by(
        &self,
        namespace: &str,
        selector: &std::collections::BTreeMap<String, String>,
    ) -> Vec<Arc<Pod>> {
        self.pods
            .list_ns(namespace)
            .into_iter()
            .filter(|p| crate::util::map_selector_matches(selector, p.metadata.labels.as_ref()))
            .collect()
    }

    pub fn new(client: &kube::Client) -> Arc<Self> {
        Arc::new(Informers {
            pods: Informer::new(Api::all(client.clone())),
            services: Informer::new(Api::all(client.clone())),
            endpoints: Informer::new(Api::all(client.clone())),
            slices: Informer::new(Api::all(client.clone())),
            nodes: Informer::new(Api::all(client.clone())),
            replicasets: Informer::new(Api::all(client.clone())),
            deployments: Informer::new(Api::all(client.clone())),
            daemonsets: Informer::new(Api::all(client.clone())),
            jobs: Informer::new(Api::all(client.clone())),
            statefulsets: Informer::new(Api::all(client.clone())),
            cronjobs: Informer::new(Api::all(client.clone())),
            ip_pools: Informer::new(Api::all(client.clone())),
            leases: Informer::new(Api::namespaced(client.clone(), "kube-node-lease")),
            csrs: Informer::new(Api::all(client.clone())),
            system_secrets: Informer::new(Api::namespaced(client.clone(), "kube-system")),
            namespaces: Informer::new(Api::all(client.clone())),
            serviceaccounts: Informer::new(Api::all(client.clone())),
            cluster_roles: Informer::new(Api::all(client.clone())),
            crds: Informer::new(Api::all(client.clone())),
            client: client.clone(),
            metadata: Mutex::new(HashMap::new()),
        })
    }

    pub fn spawn(&self) -> Vec<JoinHandle<()>> {
        vec![
            self.pods.spawn(),
            self.services.spawn(),
            self.endpoints.spawn(),
            self.slices.spawn(),
            self.nodes.spawn(),
            self.replicasets.spawn(),
            self.deployments.spawn(),
            self.daemonsets.spawn(),
            self.jobs.spawn(),
            self.statefulsets.spawn(),
            self.cronjobs.spawn(),
            self.ip_pools.spawn(),
            self.leases.spawn(),
            self.csrs.spawn(),
            self.system_secrets.spawn(),
            self.namespaces.spawn(),
            self.serviceaccounts.spawn(),
            self.cluster_roles.spawn(),
            self.crds.spawn(),
        ]
    }

    /// Waits until every store holds its first full listing.
    pub async fn wait_ready(&self) {
        self.pods.wait_ready().await;
        self.services.wait_ready().await;
        self.endpoints.wait_ready().await;
        self.slices.wait_ready().await;
        self.nodes.wait_ready().await;
        self.replicasets.wait_ready().await;
        self.deployments.wait_ready().await;
        self.daemonsets.wait_ready().await;
        self.jobs.wait_ready().await;
        self.statefulsets.wait_ready().await;
        self.cronjobs.wait_ready().await;
        self.ip_pools.wait_ready().await;
        self.leases.wait_ready().await;
        self.csrs.wait_ready().await;
        self.system_secrets.wait_ready().await;
        self.namespaces.wait_ready().await;
        self.serviceaccounts.wait_ready().await;
        self.cluster_roles.wait_ready().await;
        self.crds.wait_ready().await;
    }

    /// The metadata of every object of `ar`'s kind, cluster-wide: the typed
    /// informer when one watches the whole kind, else a metadata informer
    /// shared by everyone who asks (spawned by the first caller through
    /// [`Informers::metadata`]'s second value).
    pub fn meta_view(&self, ar: &ApiResource) -> (Arc<dyn MetaView>, Option<JoinHandle<()>>) {
        let typed: Option<Arc<dyn MetaView>> = match (ar.group.as_str(), ar.kind.as_str()) {
            ("", "Pod") => Some(self.pods.clone()),
            ("", "Service") => Some(self.services.clone()),
            ("", "Endpoints") => Some(self.endpoints.clone()),
            ("", "Node") => Some(self.nodes.clone()),
            ("", "Namespace") => Some(self.namespaces.clone()),
            ("", "ServiceAccount") => Some(self.serviceaccounts.clone()),
            ("discovery.k8s.io", "EndpointSlice") => Some(self.slices.clone()),
            ("apps", "ReplicaSet") => Some(self.replicasets.clone()),
            ("apps", "Deployment") => Some(self.deployments.clone()),
            ("apps", "DaemonSet") => Some(self.daemonsets.clone()),
            ("apps", "StatefulSet") => Some(self.statefulsets.clone()),
            ("batch", "Job") => Some(self.jobs.clone()),
            ("batch", "CronJob") => Some(self.cronjobs.clone()),
            _ => None,
        };
        match typed {
            Some(t) if ar.version == "v1" => (t, None),
            _ => {
                let (inf, task) = self.metadata(ar);
                (inf as Arc<dyn MetaView>, task)
            }
        }
    }

    /// The shared metadata informer of `ar`'s kind, and its task when this
    /// call made it (the caller owns that task: aborting it stops the watch).
    pub fn metadata(&self, ar: &ApiResource) -> (Arc<MetadataInformer>, Option<JoinHandle<()>>) {
        let key = kind_key(ar);
        let mut made = self.metadata.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(inf) = made.get(&key) {
            return (inf.clone(), None);
        }
        let inf = MetadataInformer::metadata(&self.client, ar);
        made.insert(key, inf.clone());
        let task = inf.spawn();
        (inf, Some(task))
    }

    /// Forget the metadata informer of a kind that is no longer served (its
    /// CRD was deleted); the caller aborts its task.
    pub fn drop_metadata(&self, ar: &ApiResource) {
        let key = kind_key(ar);
        self.metadata.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    }
}
