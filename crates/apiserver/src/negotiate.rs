//! Response shape negotiation: plain JSON, or `meta.k8s.io/v1` Table (what
//! `kubectl get` asks for), or PartialObjectMetadata.

use crate::request::Query;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Json,
    /// Table, with `includeObject` None / Metadata / Object.
    Table(Include),
    PartialMetadata,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

/// Pick the first acceptable media type of the `Accept` header.
pub fn shape(accept: &str, query: &Query) -> Shape {
    for part in accept.split(',') {
        let mut media = "";
        let (mut as_, mut g) = ("", "");
        for (i, p) in part.split(';').map(str::trim).enumerate() {
            if i == 0 {
                media = p;
            } else if let Some(v) = p.strip_prefix("as=") {
                as_ = v;
            } else if let Some(v) = p.strip_prefix("g=") {
                g = v;
            }
        }
        if !matches!(media, "application/json" | "*/*" | "application/*" | "") {
            continue;
        }
        match (as_, g) {
            ("Table", "meta.k8s.io") => {
                let include = match query.get("includeObject") {
                    Some("None") => Include::None,
                    Some("Object") => Include::Object,
                    _ => Include::Metadata,
                };
                return Shape::Table(include);
            }
            ("PartialObjectMetadata" | "PartialObjectMetadataList", "meta.k8s.io") => return Shape::PartialMetadata,
            ("", _) => return Shape::Json,
            _ => continue,
        }
    }
    Shape::Json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let q = Query::default();
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(shape(accept, &q), Shape::Table(Include::Metadata));
        assert_eq!(shape("application/json", &q), Shape::Json);
        assert_eq!(shape("application/vnd.kubernetes.protobuf, */*", &q), Shape::Json);
        assert_eq!(shape("application/json;as=Foo;g=x.io,application/json", &q), Shape::Json);
    }
}
