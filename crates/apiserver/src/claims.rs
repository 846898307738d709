//! Claims that keep ClusterIPs and NodePorts unique across API servers that
//! share one store. A value is taken when its claim key is created: the
//! store's create is the compare-and-swap, as upstream's IPAddress objects
//! (`networking.k8s.io/v1`, `pkg/registry/core/service/ipallocator`) make
//! ClusterIPs unique. Each server's bitmaps are only its first guess, kept in
//! step with every server's claims by a watch ([`ClaimsView`]).
//!
//! Order, as upstream: claim, then write the Service; a failed write gives the
//! claims back. A server that dies in between leaves a claim no Service
//! holds; [`repair`] deletes it once two passes in a row found it unheld
//! (upstream's `ipallocator/controller/repairip.go`).

use apimachinery::service::Allocation;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use store::{Event, KeyValue, Store};

/// Where claims live (never served by the API).
pub const PREFIX: &str = "/registry/rkube.io/allocations/";
const IPS: &str = "serviceips/";
const PORTS: &str = "servicenodeports/";

/// One claimable value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Claimed {
    ClusterIp(Ipv4Addr),
    NodePort(u16),
}

impl Claimed {
    fn key(&self) -> String {
        match self {
            Claimed::ClusterIp(ip) => format!("{PREFIX}{IPS}{ip}"),
            Claimed::NodePort(p) => format!("{PREFIX}{PORTS}{p}"),
        }
    }

    /// The value a claim key names.
    pub fn from_key(key: &str) -> Option<Claimed> {
        let rest = key.strip_prefix(PREFIX)?;
        if let Some(ip) = rest.strip_prefix(IPS) {
            return ip.parse().ok().map(Claimed::ClusterIp);
        }
        rest.strip_prefix(PORTS)?.parse().ok().map(Claimed::NodePort)
    }
}

/// Every value of an allocation.
pub fn values(a: &Allocation) -> Vec<Claimed> {
    let ips = a.cluster_ips.iter().copied().map(Claimed::ClusterIp);
    ips.chain(a.node_ports.iter().copied().map(Claimed::NodePort)).collect()
}

/// Who holds a claim: `namespace/name/uid` of the Service.
pub fn owner_of(svc: &serde_json::Value) -> String {
    let m = |f: &str| svc.pointer(&format!("/metadata/{f}")).and_then(serde_json::Value::as_str).unwrap_or_default();
    format!("{}/{}/{}", m("namespace"), m("name"), m("uid"))
}

/// Why claiming failed.
#[derive(Debug)]
pub enum ClaimError {
    /// Another Service (perhaps through another API server) holds it.
    Taken(Claimed),
    Store(store::Error),
}

/// Claims every value for `owner`, all or none.
pub async fn claim(store: &dyn Store, values: &[Claimed], owner: &str) -> Result<(), ClaimError> {
    let mut made: Vec<Claimed> = Vec::new();
    for v in values {
        match store.create(&v.key(), owner.as_bytes().to_vec()).await {
            Ok(_) => made.push(*v),
            Err(e) => {
                unclaim(store, &made, owner).await;
                return Err(match e {
                    store::Error::AlreadyExists { .. } => ClaimError::Taken(*v),
                    other => ClaimError::Store(other),
                });
            }
        }
    }
    Ok(())
}

/// Gives back the claims `owner` holds on `values` (a claim someone else holds
/// now is left alone). Failures are logged: the repair pass removes what stays.
pub async fn unclaim(store: &dyn Store, values: &[Claimed], owner: &str) {
    for v in values {
        let key = v.key();
        match store.get(&key, None).await {
            Ok(Some(kv)) if kv.value == owner.as_bytes() => match store.delete(&key, Some(kv.mod_revision)).await {
                Ok(_) | Err(store::Error::NotFound { .. }) | Err(store::Error::Conflict { .. }) => {}
                Err(e) => tracing::warn!(claim = %key, error = %e, "giving back a claim"),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(claim = %key, error = %e, "reading a claim to give it back"),
        }
    }
}

/// A Service's held values as stored (for restoring claims and repairing).
pub fn held_by(svc: &serde_json::Value) -> Vec<Claimed> {
    match serde_json::from_value::<k8s_openapi::api::core::v1::Service>(svc.clone()) {
        Ok(s) => values(&apimachinery::service::allocated_resources(&s)),
        Err(_) => Vec::new(),
    }
}

/// What a server's bitmaps learn from the claims of every server.
pub trait ClaimSink: Send + Sync + 'static {
    fn taken(&self, v: Claimed);
    fn freed(&self, v: Claimed);
}

/// The [`crate::store_view::StoreView`] of the claims prefix.
pub struct ClaimsView<S: ClaimSink>(pub S);

impl<S: ClaimSink> crate::store_view::StoreView for ClaimsView<S> {
    fn reset(&self, kvs: &[KeyValue]) {
        // Only marks: a value freed while the watch was down is found free
        // by its next claim attempt, never the other way round.
        for v in kvs.iter().filter_map(|kv| Claimed::from_key(&kv.key)) {
            self.0.taken(v);
        }
    }
    fn apply(&self, ev: &Event) {
        let Some(v) = Claimed::from_key(ev.key()) else { return };
        match ev {
            Event::Put { .. } => self.0.taken(v),
            Event::Delete { .. } => self.0.freed(v),
        }
    }
}

/// Claims for values stored Services hold but nobody claimed (a store
/// written before claims existed). Returns how many were made.
pub async fn restore(store: &dyn Store, services: &[serde_json::Value]) -> Result<usize, store::Error> {
    let (kvs, _) = crate::store_view::list_all(store, PREFIX).await?;
    let claimed: BTreeSet<String> = kvs.into_iter().map(|kv| kv.key).collect();
    let mut made = 0;
    for svc in services {
        let owner = owner_of(svc);
        for v in held_by(svc) {
            if claimed.contains(&v.key()) {
                continue;
            }
            match store.create(&v.key(), owner.as_bytes().to_vec()).await {
                Ok(_) => made += 1,
                Err(store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(made)
}

/// Claims seen unheld on the previous pass: key -> mod_revision then.
pub type Suspects = BTreeMap<String, i64>;

/// One repair pass: deletes claims that no stored Service holds and that
/// were already unheld, unchanged, on the previous pass (so a claim made just
/// before its Service is written is never taken). Returns the new suspects
/// and how many claims were deleted.
pub async fn repair(
    store: &dyn Store,
    services_prefix: &str,
    previous: &Suspects,
) -> Result<(Suspects, usize), store::Error> {
    // Claims first: a Service written after this listing had its claim
    // made before it, so it can only be a suspect, not deleted, this pass.
    let (claims, _) = crate::store_view::list_all(store, PREFIX).await?;
    let (services, _) = crate::store_view::list_all(store, services_prefix).await?;
    let mut held: BTreeSet<String> = BTreeSet::new();
    for kv in &services {
        if let Ok(svc) = serde_json::from_slice::<serde_json::Value>(&kv.value) {
            held.extend(held_by(&svc).iter().map(Claimed::key));
        }
    }
    let mut suspects = Suspects::new();
    let mut deleted = 0;
    for kv in claims.iter().filter(|kv| !held.contains(&kv.key)) {
        if previous.get(&kv.key) == Some(&kv.mod_revision) {
            match store.delete(&kv.key, Some(kv.mod_revision)).await {
                Ok(_) => {
                    deleted += 1;
                    tracing::info!(claim = %kv.key, "deleted a claim no Service holds");
                }
                Err(store::Error::NotFound { .. }) | Err(store::Error::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        } else {
            suspects.insert(kv.key.clone(), kv.mod_revision);
        }
    }
    Ok((suspects, deleted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for v in [Claimed::ClusterIp(Ipv4Addr::new(10, 96, 0, 10)), Claimed::NodePort(31111)] {
            assert_eq!(Claimed::from_key(&v.key()), Some(v));
        }
        assert_eq!(Claimed::from_key("/registry/core/services/default/x"), None);
        assert_eq!(Claimed::from_key(&format!("{PREFIX}serviceips/nope")), None);
    }

    fn service(name: &str, ip: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}") },
            "spec": { "type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ports": [{ "port": 80 }] },
        })
    }

    /// Claims are all-or-nothing and name their holder; a leaked claim goes on
    /// the second repair pass, a held one stays, and a claim made again in
    /// between (a new revision) is not taken on the strength of the old one.
    #[tokio::test]
    async fn claim_unclaim_and_repair() -> Result<(), Box<dyn std::error::Error>> {
        let store = store::SqliteStore::open_in_memory()?;
        let ip = |s: &str| -> Claimed { Claimed::ClusterIp(s.parse().expect("ip")) };
        claim(&store, &[ip("10.96.0.5"), Claimed::NodePort(30001)], "default/a/uid-a")
            .await
            .map_err(|e| format!("{e:?}"))?;
        // One of two taken: nothing of the second request stays.
        let res = claim(&store, &[ip("10.96.0.6"), ip("10.96.0.5")], "default/b/uid-b").await;
        assert!(matches!(res, Err(ClaimError::Taken(v)) if v == ip("10.96.0.5")));
        assert!(store.get(&ip("10.96.0.6").key(), None).await?.is_none());
        // Only the holder gives a claim back.
        unclaim(&store, &[Claimed::NodePort(30001)], "default/b/uid-b").await;
        assert!(store.get(&Claimed::NodePort(30001).key(), None).await?.is_some());
        unclaim(&store, &[Claimed::NodePort(30001)], "default/a/uid-a").await;
        assert!(store.get(&Claimed::NodePort(30001).key(), None).await?.is_none());

        // Service a holds .5; .7 is claimed by nobody's Service.
        let svc_prefix = "/registry/core/services/";
        store.create(&format!("{svc_prefix}default/a"), service("a", "10.96.0.5").to_string().into_bytes()).await?;
        claim(&store, &[ip("10.96.0.7"), ip("10.96.0.8")], "default/gone/uid-x").await.map_err(|e| format!("{e:?}"))?;
        let (suspects, deleted) = repair(&store, svc_prefix, &Suspects::new()).await?;
        assert_eq!((deleted, suspects.len()), (0, 2), "first pass only suspects");
        // .8 is claimed again meanwhile (a new revision): not deleted on this pass.
        unclaim(&store, &[ip("10.96.0.8")], "default/gone/uid-x").await;
        claim(&store, &[ip("10.96.0.8")], "default/new/uid-n").await.map_err(|e| format!("{e:?}"))?;
        let (suspects, deleted) = repair(&store, svc_prefix, &suspects).await?;
        assert_eq!(deleted, 1);
        assert!(store.get(&ip("10.96.0.7").key(), None).await?.is_none());
        assert!(store.get(&ip("10.96.0.8").key(), None).await?.is_some());
        assert!(store.get(&ip("10.96.0.5").key(), None).await?.is_some(), "a held claim stays");
        assert_eq!(suspects.len(), 1);
        // restore() claims what a stored Service holds and nobody claimed.
        store.create(&format!("{svc_prefix}default/c"), service("c", "10.96.0.9").to_string().into_bytes()).await?;
        let made = restore(&store, &[service("a", "10.96.0.5"), service("c", "10.96.0.9")]).await?;
        assert_eq!(made, 1);
        Ok(())
    }
}
