//! Service ClusterIP and NodePort allocation, synchronous in the request as in
//! upstream's `pkg/registry/core/service/storage`. The rules (defaults,
//! allocation, validation) are `apimachinery::service`; this module owns the
//! shared pools and makes each write's allocation all-or-nothing.

use crate::claims::{self, ClaimError, ClaimSink, Claimed};
use apimachinery::allocator::{IpAllocator, PortAllocator};
use apimachinery::field::FieldError;
use apimachinery::service::{self as rules, AllocateError, ServiceConfig};
use k8s_openapi::api::core::v1::Service;
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};
use store::Store;

type Errors = Vec<FieldError>;

struct Pools {
    ips: IpAllocator,
    ports: PortAllocator,
}

/// The cluster's IP and port pools: this server's bitmaps, rebuilt from the
/// stored Services at start and kept in step with every server's claims
/// (`claims.rs`); a value is only really taken once its claim is made.
pub struct ServiceAllocator {
    pools: Arc<Mutex<Pools>>,
    store: Arc<dyn Store>,
    pub config: ServiceConfig,
}

/// This server's bitmaps and the store the claims are made in.
type Shared = (Arc<Mutex<Pools>>, Arc<dyn Store>);

/// What one write took (given back if the write fails) and what it frees
/// (given back only once the write succeeded).
#[must_use]
pub struct Allocation {
    pools: Option<Shared>,
    taken: rules::Allocation,
    freed: rules::Allocation,
    /// `namespace/name/uid` of the Service, the holder of the claims.
    owner: String,
}

impl Allocation {
    pub fn none() -> Allocation {
        Allocation { pools: None, taken: Default::default(), freed: Default::default(), owner: String::new() }
    }

    /// Makes the claims on what was taken, before the write. On
    /// [`ClaimError::Taken`] the value stays marked here (another Service
    /// holds it); the caller gives back the rest with [`Allocation::release`]
    /// and allocates again.
    pub async fn claim(&mut self) -> Result<(), ClaimError> {
        let Some((_, store)) = &self.pools else { return Ok(()) };
        let values = claims::values(&self.taken);
        if values.is_empty() {
            return Ok(());
        }
        let res = claims::claim(store.as_ref(), &values, &self.owner).await;
        if let Err(ClaimError::Taken(v)) = &res {
            match v {
                Claimed::ClusterIp(ip) => self.taken.cluster_ips.retain(|i| i != ip),
                Claimed::NodePort(p) => self.taken.node_ports.retain(|i| i != p),
            }
        }
        res
    }

    /// The write happened: keep what was taken, free what was dropped.
    pub async fn commit(self) {
        if let Some((p, store)) = &self.pools {
            {
                let mut pools = lock(p);
                let Pools { ips, ports } = &mut *pools;
                self.freed.release(ips, ports);
            }
            claims::unclaim(store.as_ref(), &claims::values(&self.freed), &self.owner).await;
        }
    }

    /// The write failed: give back what was taken.
    pub async fn release(self) {
        if let Some((p, store)) = &self.pools {
            {
                let mut pools = lock(p);
                let Pools { ips, ports } = &mut *pools;
                self.taken.release(ips, ports);
            }
            claims::unclaim(store.as_ref(), &claims::values(&self.taken), &self.owner).await;
        }
    }

    /// A dry run: give back what was taken here; nothing was claimed.
    pub fn forget(self) {
        if let Some((p, _)) = &self.pools {
            let mut pools = lock(p);
            let Pools { ips, ports } = &mut *pools;
            self.taken.release(ips, ports);
        }
    }
}

fn lock(p: &Mutex<Pools>) -> MutexGuard<'_, Pools> {
    // The pools are bitmaps updated in single calls: a panic elsewhere while the
    // lock was held cannot leave them half-written.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bitmaps as the claims watch sees them.
pub struct PoolsSink(Arc<Mutex<Pools>>);

impl ClaimSink for PoolsSink {
    fn taken(&self, v: Claimed) {
        let mut p = lock(&self.0);
        // Values outside this server's ranges are not its business.
        let _ = match v {
            Claimed::ClusterIp(ip) => p.ips.allocate(ip),
            Claimed::NodePort(port) => p.ports.allocate(i64::from(port)),
        };
    }
    fn freed(&self, v: Claimed) {
        let mut p = lock(&self.0);
        match v {
            Claimed::ClusterIp(ip) => p.ips.release(ip),
            Claimed::NodePort(port) => p.ports.release(i64::from(port)),
        }
    }
}

fn to_typed(obj: &Value) -> Result<Service, Errors> {
    serde_json::from_value(obj.clone()).map_err(|e| vec![FieldError::invalid("spec", Value::Null, e.to_string())])
}

fn to_value(svc: &Service) -> Result<Value, Errors> {
    serde_json::to_value(svc).map_err(|e| vec![FieldError::internal("spec", e.to_string())])
}

/// The typed Service back into the request's object; a failure gives back what was taken.
fn write_back(svc: &Service, obj: &mut Value, alloc: Allocation) -> Result<Allocation, Errors> {
    match to_value(svc) {
        Ok(v) => {
            *obj = v;
            Ok(alloc)
        }
        Err(e) => {
            alloc.forget();
            Err(e)
        }
    }
}

fn alloc_errors(e: AllocateError) -> Errors {
    match e {
        AllocateError::Invalid(errs) => errs,
        AllocateError::Internal(msg) => vec![FieldError::internal("spec", msg)],
    }
}

impl ServiceAllocator {
    pub fn new(config: ServiceConfig, store: Arc<dyn Store>) -> ServiceAllocator {
        let pools = Pools {
            ips: IpAllocator::new(config.service_cidr),
            ports: PortAllocator::new(config.node_port_range.clone()),
        };
        ServiceAllocator { pools: Arc::new(Mutex::new(pools)), store, config }
    }

    /// What the claims watch updates.
    pub fn sink(&self) -> PoolsSink {
        PoolsSink(self.pools.clone())
    }

    fn allocation(&self, taken: rules::Allocation, freed: rules::Allocation, obj: &Value) -> Allocation {
        Allocation { pools: Some((self.pools.clone(), self.store.clone())), taken, freed, owner: claims::owner_of(obj) }
    }

    /// Mark what stored Services hold (at start-up).
    pub fn restore(&self, services: &[Value]) {
        let mut pools = lock(&self.pools);
        for s in services.iter().filter_map(|v| serde_json::from_value::<Service>(v.clone()).ok()) {
            let held = rules::allocated_resources(&s);
            for ip in held.cluster_ips {
                let _ = pools.ips.allocate(ip);
            }
            for p in held.node_ports {
                let _ = pools.ports.allocate(i64::from(p));
            }
        }
    }

    /// Create: defaults, allocation, validation (upstream order: the registry's
    /// `BeginCreate` allocates before `BeforeCreate` validates, so a LoadBalancer with
    /// `externalTrafficPolicy: Local` has its healthCheckNodePort when it is checked).
    /// A Service that fails validation after allocating gives everything back.
    pub fn prepare_create(&self, obj: &mut Value) -> Result<Allocation, Errors> {
        let mut svc = to_typed(obj)?;
        rules::set_defaults(&mut svc);
        rules::prepare_for_create(&mut svc);
        // Invalid input is reported as validation errors, not as allocation failures.
        let pre = rules::validate(&svc, &self.config);
        if pre.iter().any(|e| e.field != "spec.healthCheckNodePort") {
            return Err(pre);
        }
        let mut pools = lock(&self.pools);
        let Pools { ips, ports } = &mut *pools;
        let taken = rules::allocate_create(&mut svc, ips, ports).map_err(alloc_errors)?;
        drop(pools);
        let alloc = self.allocation(taken, Default::default(), obj);
        let errs = rules::validate(&svc, &self.config);
        if !errs.is_empty() {
            alloc.forget();
            return Err(errs);
        }
        write_back(&svc, obj, alloc)
    }

    /// Update: keep allocated values, allocate/release on type and port changes, validate.
    pub fn prepare_update(&self, obj: &mut Value, old: &Value) -> Result<Allocation, Errors> {
        let mut svc = to_typed(obj)?;
        let old = to_typed(old)?;
        rules::set_object_defaults(&mut svc);
        rules::prepare_for_update(&mut svc, &old);
        let mut pools = lock(&self.pools);
        let Pools { ips, ports } = &mut *pools;
        let update = rules::allocate_update(&mut svc, &old, ips, ports).map_err(alloc_errors)?;
        drop(pools);
        let alloc = self.allocation(update.allocated, update.to_release, obj);
        let errs = rules::validate_update(&svc, &old, &self.config);
        if !errs.is_empty() {
            alloc.forget();
            return Err(errs);
        }
        write_back(&svc, obj, alloc)
    }

    /// A Service was deleted: free its IP and ports, and their claims.
    pub async fn release_all(&self, obj: &Value) {
        if let Ok(svc) = serde_json::from_value::<Service>(obj.clone()) {
            {
                let mut pools = lock(&self.pools);
                let Pools { ips, ports } = &mut *pools;
                rules::release_all(&svc, ips, ports);
            }
            claims::unclaim(self.store.as_ref(), &claims::held_by(obj), &claims::owner_of(obj)).await;
        }
    }
}
