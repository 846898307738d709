//! `kubectl get controllerrevisions` (upstream `printControllerRevision`,
//! `controllerRevisionColumnDefinitions`): NAME, CONTROLLER, REVISION, AGE.

use super::*;

pub(super) fn columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Controller", "string", "", "Controller of the object", 0),
        col("Revision", "string", "", "Revision indicates the revision of the state represented by Data.", 0),
        age_col(),
    ]
}

pub(super) fn cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    // `<kind>.<group>/<name>` of the controlling owner, `<none>` without one.
    let controller = arr_at(obj, "/metadata/ownerReferences")
        .iter()
        .find(|o| bool_at(o, "/controller"))
        .map(|o| {
            let group = str_at(o, "/apiVersion").split_once('/').map(|(g, _)| g).unwrap_or_default();
            let kind = str_at(o, "/kind").to_lowercase();
            let gk = if group.is_empty() { kind } else { format!("{kind}.{group}") };
            format!("{gk}/{}", str_at(o, "/name"))
        })
        .unwrap_or_else(|| "<none>".into());
    vec![name(obj), s(controller), int(int_at(obj, "/revision").unwrap_or(0)), age(obj, now)]
}
