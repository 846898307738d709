//! The kinds the controllers know, as kube-rs `ApiResource`s.

use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, coordination::v1 as coord, core::v1 as core, discovery::v1 as disc,
};
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
