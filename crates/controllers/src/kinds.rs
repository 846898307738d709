//! The kinds the controllers know, as kube-rs `ApiResource`s.

use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, coordination::v1 as coord, core::v1 as core, discovery::v1 as disc,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::discovery::ApiResource;

/// A kind and whether it is namespaced.
pub struct Kind {
    pub ar: ApiResource,
    pub namespaced: bool,
}

fn k<K: kube::Resource<DynamicType = ()>>(namespaced: bool) -> Kind {
    Kind { ar: ApiResource::erase::<K>(&()), namespaced }
}

/// Kinds that can be owners or dependents in the garbage collector's graph.
pub fn all() -> Vec<Kind> {
    vec![
        k::<core::Pod>(true),
        k::<core::Service>(true),
        k::<core::Endpoints>(true),
        k::<core::ConfigMap>(true),
        k::<core::Secret>(true),
        k::<core::ServiceAccount>(true),
        k::<core::Event>(true),
        k::<core::Node>(false),
        k::<apps::ReplicaSet>(true),
        k::<apps::Deployment>(true),
        k::<apps::DaemonSet>(true),
        k::<apps::ControllerRevision>(true),
        k::<batch::Job>(true),
        k::<apps::StatefulSet>(true),
        k::<batch::CronJob>(true),
        k::<disc::EndpointSlice>(true),
        k::<coord::Lease>(true),
    ]
}

/// The kind a CRD serves, at its storage version (`None` for a CRD being
/// deleted or without a storage version).
pub fn of_crd(crd: &CustomResourceDefinition) -> Option<Kind> {
    if crd.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let spec = &crd.spec;
    let version = spec.versions.iter().find(|v| v.storage)?;
    let api_version = format!("{}/{}", spec.group, version.name);
    Some(Kind {
        ar: ApiResource {
            group: spec.group.clone(),
            version: version.name.clone(),
            api_version,
            kind: spec.names.kind.clone(),
            plural: spec.names.plural.clone(),
        },
        namespaced: spec.scope == "Namespaced",
    })
}
