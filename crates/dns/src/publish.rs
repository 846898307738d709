//! Publishing the cluster DNS as the `kube-dns` Service in `kube-system`, as
//! kubeadm's CoreDNS addon does: a ClusterIP Service (`.10` of the service
//! range) with ports 53/UDP, 53/TCP and 9153/TCP, and Endpoints pointing at
//! where this server listens (the EndpointSlice is mirrored from them).

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::net::Ipv4Addr;

const NS: &str = "kube-system";
const NAME: &str = "kube-dns";

fn labels() -> serde_json::Value {
    json!({ "k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS" })
}

/// Create or refresh the `kube-dns` Service and its Endpoints.
pub async fn publish(
    client: &kube::Client,
    cluster_ip: Ipv4Addr,
    listen_ip: Ipv4Addr,
    dns_port: u16,
    metrics_port: u16,
) -> Result<(), kube::Error> {
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    if services.get_opt(NAME).await?.is_none() {
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": NAME, "namespace": NS, "labels": labels(), "annotations": { "prometheus.io/port": "9153", "prometheus.io/scrape": "true" } },
            "spec": {
                "clusterIP": cluster_ip.to_string(),
                "ports": [
                    { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": dns_port },
                    { "name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": dns_port },
                    { "name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": metrics_port },
                ],
            },
        }))
        .map_err(kube::Error::SerdeError)?;
        match services.create(&PostParams::default(), &svc).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), NS);
    let subsets = json!([{
        "addresses": [{ "ip": listen_ip.to_string() }],
        "ports": [
            { "name": "dns", "port": dns_port, "protocol": "UDP" },
            { "name": "dns-tcp", "port": dns_port, "protocol": "TCP" },
            { "name": "metrics", "port": metrics_port, "protocol": "TCP" },
        ],
    }]);
    if endpoints.get_opt(NAME).await?.is_none() {
        let ep: Endpoints = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": { "name": NAME, "namespace": NS, "labels": labels() },
            "subsets": subsets,
        }))
        .map_err(kube::Error::SerdeError)?;
        match endpoints.create(&PostParams::default(), &ep).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    endpoints.patch(NAME, &PatchParams::default(), &Patch::Merge(json!({ "subsets": subsets }))).await?;
    Ok(())
}
