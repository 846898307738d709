//! The Leases of the announcer (coordination.k8s.io/v1, namespace `kube-system`).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use std::net::Ipv4Addr;
use std::time::Duration;

pub const NAMESPACE: &str = "kube-system";
/// Label on every Lease of the announcer: `address` or `heartbeat`.
pub const LABEL: &str = "rkube.io/l2";
/// Annotation: the holder's lease duration in milliseconds (Lease has whole seconds only).
pub const DURATION_ANNOTATION: &str = "rkube.io/lease-duration-ms";
/// Annotation on an address Lease: the address.
pub const ADDRESS_ANNOTATION: &str = "rkube.io/address";

/// `rkube-lb-192-168-122-200`.
pub fn address_lease_name(ip: Ipv4Addr) -> String {
    format!("rkube-lb-{}", ip.to_string().replace('.', "-"))
}

/// `rkube-l2-<node>`.
pub fn heartbeat_name(node: &str) -> String {
    format!("rkube-l2-{node}")
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_millis().div_ceil(1000)).unwrap_or(i32::MAX).max(1)
}

/// The holder's lease duration (annotation, else `leaseDurationSeconds`, else `default`).
pub fn duration_of(lease: &Lease, default: Duration) -> Duration {
    let ms = lease.metadata.annotations.as_ref().and_then(|a| a.get(DURATION_ANNOTATION)).and_then(|v| v.parse().ok());
    match ms {
        Some(ms) => Duration::from_millis(ms),
        None => lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(default),
    }
}

/// The holder named by a Lease (empty means none).
pub fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()).filter(|h| !h.is_empty())
}

/// What changes when a heartbeat is renewed.
pub fn renew_marker(lease: &Lease) -> String {
    let spec = lease.spec.as_ref();
    format!("{:?}/{:?}", spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0), lease.metadata.resource_version)
}

fn meta(name: &str, kind: &str, duration: Duration) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(NAMESPACE.to_string()),
        labels: Some([(LABEL.to_string(), kind.to_string())].into()),
        annotations: Some([(DURATION_ANNOTATION.to_string(), duration.as_millis().to_string())].into()),
        ..Default::default()
    }
}

/// Renews (or creates) this node's heartbeat Lease.
pub async fn renew_heartbeat(api: &Api<Lease>, node: &str, duration: Duration) -> Result<(), kube::Error> {
    let name = heartbeat_name(node);
    let patch = serde_json::json!({
        "metadata": { "annotations": { DURATION_ANNOTATION: duration.as_millis().to_string() } },
        "spec": { "holderIdentity": node, "leaseDurationSeconds": seconds(duration), "renewTime": now() },
    });
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let lease = Lease {
                metadata: meta(&name, "heartbeat", duration),
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.to_string()),
                    lease_duration_seconds: Some(seconds(duration)),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 404)
}

/// Takes the address Lease for `node` (compare-and-swap on `current`'s
/// resourceVersion, or create). `Ok(false)`: another node won the race.
pub async fn acquire(
    api: &Api<Lease>,
    ip: Ipv4Addr,
    node: &str,
    duration: Duration,
    current: Option<&Lease>,
) -> Result<bool, kube::Error> {
    let name = address_lease_name(ip);
    let mut lease = match current {
        Some(l) => l.clone(),
        None => Lease { metadata: meta(&name, "address", duration), spec: None },
    };
    lease.metadata.annotations.get_or_insert_with(Default::default).insert(ADDRESS_ANNOTATION.into(), ip.to_string());
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(current.is_some());
    spec.holder_identity = Some(node.to_string());
    spec.lease_duration_seconds = Some(seconds(duration));
    spec.acquire_time = Some(now());
    spec.renew_time = Some(now());
    spec.lease_transitions = Some(transitions);
    let res = match current {
        Some(_) => api.replace(&name, &PostParams::default(), &lease).await.map(|_| ()),
        None => api.create(&PostParams::default(), &lease).await.map(|_| ()),
    };
    match res {
        Ok(()) => Ok(true),
        Err(e) if conflict(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the address Lease up (holder cleared), unless it changed meanwhile.
pub async fn release(api: &Api<Lease>, current: &Lease) -> Result<(), kube::Error> {
    let mut lease = current.clone();
    if let Some(s) = lease.spec.as_mut() {
        s.holder_identity = None;
        s.renew_time = Some(now());
    }
    let name = lease.metadata.name.clone().unwrap_or_default();
    match api.replace(&name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(e) if conflict(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes an address Lease whose address no Service uses any more.
pub async fn delete(api: &Api<Lease>, current: &Lease) -> Result<(), kube::Error> {
    let name = current.metadata.name.clone().unwrap_or_default();
    let dp = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: current.metadata.resource_version.clone(),
            uid: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => Ok(()),
        Err(e) if conflict(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_durations() {
        assert_eq!(address_lease_name(Ipv4Addr::new(192, 168, 122, 200)), "rkube-lb-192-168-122-200");
        assert_eq!(heartbeat_name("node2"), "rkube-l2-node2");
        assert_eq!(seconds(Duration::from_millis(600)), 1);
        assert_eq!(seconds(Duration::from_millis(2500)), 3);
        let l = Lease { metadata: meta("x", "heartbeat", Duration::from_millis(600)), spec: None };
        assert_eq!(duration_of(&l, Duration::from_secs(9)), Duration::from_millis(600));
        assert_eq!(duration_of(&Lease::default(), Duration::from_secs(9)), Duration::from_secs(9));
    }
}
