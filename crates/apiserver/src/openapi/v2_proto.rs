//! `/openapi/v2` in protobuf, the form client-go's `OpenAPISchema()` asks for
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): gnostic's
//! `openapi.v2.Document` (`github.com/google/gnostic-models/openapiv2/OpenAPIv2.proto`),
//! built from the Swagger JSON of [`super::v2::document`]. Maps are ordered
//! `Named*` pairs; defaults, enums, examples and vendor extensions are `Any`s
//! holding their YAML text (JSON is YAML), as gnostic writes them and
//! kube-openapi's `proto` package reads them.
//!
//! Only what the JSON document holds is encoded: info, paths (operations,
//! path/query/body parameters, responses) and definitions.

use prost::Message;
use serde_json::{Map, Value};

/// The type the document is served as: kube-openapi's `subTypeProtobuf`
/// (the `@` spelling clients may ask for is not a valid media type to Go's
/// `mime` package, which reads the answer's type).
pub const CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Whether `accept` asks for the protobuf document (both spellings upstream serves).
pub fn accepts(accept: &str) -> bool {
    accept.split(',').any(|a| {
        let t = a.split(';').next().unwrap_or_default().trim();
        matches!(
            t,
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
                | "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        )
    })
}

#[derive(Clone, PartialEq, Message)]
pub struct Document {
    #[prost(string, tag = "1")]
    pub swagger: String,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Info {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Paths {
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<PathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PathItem {
    #[prost(message, optional, tag = "2")]
    pub get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    pub put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    pub post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    pub delete: Option<Operation>,
    #[prost(message, optional, tag = "6")]
    pub options: Option<Operation>,
    #[prost(message, optional, tag = "7")]
    pub head: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    pub patch: Option<Operation>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Operation {
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "5")]
    pub operation_id: String,
    #[prost(string, repeated, tag = "6")]
    pub produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    pub responses: Option<Responses>,
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `ParametersItem { oneof { Parameter parameter = 1; JsonReference json_reference = 2; } }`:
/// only parameters are written.
#[derive(Clone, PartialEq, Message)]
pub struct ParametersItem {
    #[prost(message, optional, tag = "1")]
    pub parameter: Option<Parameter>,
}

/// `Parameter { oneof { BodyParameter body_parameter = 1; NonBodyParameter non_body_parameter = 2; } }`.
#[derive(Clone, PartialEq, Message)]
pub struct Parameter {
    #[prost(message, optional, tag = "1")]
    pub body_parameter: Option<BodyParameter>,
    #[prost(message, optional, tag = "2")]
    pub non_body_parameter: Option<NonBodyParameter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct BodyParameter {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(bool, tag = "4")]
    pub required: bool,
    #[prost(message, optional, tag = "5")]
    pub schema: Option<Schema>,
}

/// `NonBodyParameter`'s oneof: the query (3) and path (4) sub-schemas.
#[derive(Clone, PartialEq, Message)]
pub struct NonBodyParameter {
    #[prost(message, optional, tag = "3")]
    pub query_parameter_sub_schema: Option<QueryParameter>,
    #[prost(message, optional, tag = "4")]
    pub path_parameter_sub_schema: Option<PathParameter>,
}

/// The fields written of `QueryParameterSubSchema`.
#[derive(Clone, PartialEq, Message)]
pub struct QueryParameter {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "6")]
    pub r#type: String,
    #[prost(bool, tag = "20")]
    pub unique_items: bool,
}

/// The fields written of `PathParameterSubSchema` (numbered one lower than
/// the query one's after `name`: it has no `allow_empty_value`).
#[derive(Clone, PartialEq, Message)]
pub struct PathParameter {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub r#type: String,
    #[prost(bool, tag = "19")]
    pub unique_items: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct Responses {
    #[prost(message, repeated, tag = "1")]
    pub response_code: Vec<NamedResponseValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedResponseValue {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<ResponseValue>,
}

/// `ResponseValue { oneof { Response response = 1; JsonReference json_reference = 2; } }`.
#[derive(Clone, PartialEq, Message)]
pub struct ResponseValue {
    #[prost(message, optional, tag = "1")]
    pub response: Option<Response>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Response {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(message, optional, tag = "2")]
    pub schema: Option<SchemaItem>,
}

/// `SchemaItem { oneof { Schema schema = 1; FileSchema file_schema = 2; } }`.
#[derive(Clone, PartialEq, Message)]
pub struct SchemaItem {
    #[prost(message, optional, tag = "1")]
    pub schema: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedSchema {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Schema {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    pub format: String,
    #[prost(string, tag = "3")]
    pub title: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(message, optional, tag = "5")]
    pub default: Option<Any>,
    #[prost(double, tag = "6")]
    pub multiple_of: f64,
    #[prost(double, tag = "7")]
    pub maximum: f64,
    #[prost(bool, tag = "8")]
    pub exclusive_maximum: bool,
    #[prost(double, tag = "9")]
    pub minimum: f64,
    #[prost(bool, tag = "10")]
    pub exclusive_minimum: bool,
    #[prost(int64, tag = "11")]
    pub max_length: i64,
    #[prost(int64, tag = "12")]
    pub min_length: i64,
    #[prost(string, tag = "13")]
    pub pattern: String,
    #[prost(int64, tag = "14")]
    pub max_items: i64,
    #[prost(int64, tag = "15")]
    pub min_items: i64,
    #[prost(bool, tag = "16")]
    pub unique_items: bool,
    #[prost(int64, tag = "17")]
    pub max_properties: i64,
    #[prost(int64, tag = "18")]
    pub min_properties: i64,
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    #[prost(message, optional, boxed, tag = "21")]
    pub additional_properties: Option<Box<AdditionalPropertiesItem>>,
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    pub all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Properties>,
    #[prost(bool, tag = "27")]
    pub read_only: bool,
    #[prost(message, optional, tag = "30")]
    pub example: Option<Any>,
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `AdditionalPropertiesItem { oneof { Schema schema = 1; bool boolean = 2; } }`.
#[derive(Clone, PartialEq, Message)]
pub struct AdditionalPropertiesItem {
    #[prost(oneof = "AdditionalProperties", tags = "1, 2")]
    pub oneof: Option<AdditionalProperties>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum AdditionalProperties {
    #[prost(message, boxed, tag = "1")]
    Schema(Box<Schema>),
    #[prost(bool, tag = "2")]
    Boolean(bool),
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

/// gnostic's `Any`: only the YAML text is written.
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    #[prost(string, tag = "2")]
    pub yaml: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedAny {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

fn any(v: &Value) -> Any {
    // JSON is YAML; a string is written as a quoted scalar so it stays a string.
    Any { yaml: v.to_string() }
}

fn s(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn strings(v: &Value, k: &str) -> Vec<String> {
    v.get(k).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
}

fn extensions(m: &Map<String, Value>) -> Vec<NamedAny> {
    m.iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| NamedAny { name: k.clone(), value: Some(any(v)) })
        .collect()
}

/// One JSON schema as gnostic's `Schema`.
pub fn schema(v: &Value) -> Schema {
    let empty = Map::new();
    let m = v.as_object().unwrap_or(&empty);
    let f = |k: &str| m.get(k).and_then(Value::as_f64).unwrap_or_default();
    let i = |k: &str| m.get(k).and_then(Value::as_i64).unwrap_or_default();
    let b = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or_default();
    let named = |props: &Map<String, Value>| -> Vec<NamedSchema> {
        props.iter().map(|(k, p)| NamedSchema { name: k.clone(), value: Some(schema(p)) }).collect()
    };
    Schema {
        r#ref: s(v, "$ref"),
        format: s(v, "format"),
        title: s(v, "title"),
        description: s(v, "description"),
        default: m.get("default").map(any),
        multiple_of: f("multipleOf"),
        maximum: f("maximum"),
        exclusive_maximum: b("exclusiveMaximum"),
        minimum: f("minimum"),
        exclusive_minimum: b("exclusiveMinimum"),
        max_length: i("maxLength"),
        min_length: i("minLength"),
        pattern: s(v, "pattern"),
        max_items: i("maxItems"),
        min_items: i("minItems"),
        unique_items: b("uniqueItems"),
        max_properties: i("maxProperties"),
        min_properties: i("minProperties"),
        required: strings(v, "required"),
        r#enum: m.get("enum").and_then(Value::as_array).into_iter().flatten().map(any).collect(),
        additional_properties: m.get("additionalProperties").and_then(|a| match a {
            Value::Bool(x) => {
                Some(Box::new(AdditionalPropertiesItem { oneof: Some(AdditionalProperties::Boolean(*x)) }))
            }
            Value::Object(_) => Some(Box::new(AdditionalPropertiesItem {
                oneof: Some(AdditionalProperties::Schema(Box::new(schema(a)))),
            })),
            _ => None,
        }),
        r#type: match m.get("type") {
            Some(Value::String(t)) => Some(TypeItem { value: vec![t.clone()] }),
            Some(Value::Array(ts)) => {
                Some(TypeItem { value: ts.iter().filter_map(Value::as_str).map(String::from).collect() })
            }
            _ => None,
        },
        items: match m.get("items") {
            Some(Value::Array(is)) => Some(ItemsItem { schema: is.iter().map(schema).collect() }),
            Some(one @ Value::Object(_)) => Some(ItemsItem { schema: vec![schema(one)] }),
            _ => None,
        },
        all_of: m.get("allOf").and_then(Value::as_array).into_iter().flatten().map(schema).collect(),
        properties: m
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| Properties { additional_properties: named(p) }),
        read_only: b("readOnly"),
        example: m.get("example").map(any),
        vendor_extension: extensions(m),
    }
}

fn operation(op: &Value) -> Operation {
    let empty = Map::new();
    let m = op.as_object().unwrap_or(&empty);
    let parameters = op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let location = s(p, "in");
            let param = if location == "body" {
                Parameter {
                    body_parameter: Some(BodyParameter {
                        description: s(p, "description"),
                        name: s(p, "name"),
                        r#in: location,
                        required: p.get("required").and_then(Value::as_bool).unwrap_or_default(),
                        schema: p.get("schema").map(schema),
                    }),
                    non_body_parameter: None,
                }
            } else {
                let required = p.get("required").and_then(Value::as_bool).unwrap_or_default();
                let unique_items = p.get("uniqueItems").and_then(Value::as_bool).unwrap_or_default();
                let (description, name, r#type) = (s(p, "description"), s(p, "name"), s(p, "type"));
                let nb = if location == "path" {
                    NonBodyParameter {
                        query_parameter_sub_schema: None,
                        path_parameter_sub_schema: Some(PathParameter {
                            required: true,
                            r#in: location,
                            description,
                            name,
                            r#type,
                            unique_items,
                        }),
                    }
                } else {
                    NonBodyParameter {
                        query_parameter_sub_schema: Some(QueryParameter {
                            required,
                            r#in: location,
                            description,
                            name,
                            r#type,
                            unique_items,
                        }),
                        path_parameter_sub_schema: None,
                    }
                };
                Parameter { body_parameter: None, non_body_parameter: Some(nb) }
            };
            ParametersItem { parameter: Some(param) }
        })
        .collect();
    let responses = op.get("responses").and_then(Value::as_object).map(|rs| Responses {
        response_code: rs
            .iter()
            .map(|(code, r)| NamedResponseValue {
                name: code.clone(),
                value: Some(ResponseValue {
                    response: Some(Response {
                        description: s(r, "description"),
                        schema: r.get("schema").map(|x| SchemaItem { schema: Some(schema(x)) }),
                    }),
                }),
            })
            .collect(),
    });
    Operation {
        tags: strings(op, "tags"),
        description: s(op, "description"),
        operation_id: s(op, "operationId"),
        produces: strings(op, "produces"),
        consumes: strings(op, "consumes"),
        parameters,
        responses,
        vendor_extension: extensions(m),
    }
}

/// The Swagger JSON document as gnostic's `Document`, encoded.
pub fn encode(doc: &Value) -> Vec<u8> {
    let paths = doc.get("paths").and_then(Value::as_object).map(|ps| Paths {
        path: ps
            .iter()
            .map(|(p, item)| {
                let op = |verb: &str| item.get(verb).map(operation);
                NamedPathItem {
                    name: p.clone(),
                    value: Some(PathItem {
                        get: op("get"),
                        put: op("put"),
                        post: op("post"),
                        delete: op("delete"),
                        options: op("options"),
                        head: op("head"),
                        patch: op("patch"),
                    }),
                }
            })
            .collect(),
    });
    let definitions = doc.get("definitions").and_then(Value::as_object).map(|ds| Definitions {
        additional_properties: ds
            .iter()
            .map(|(k, d)| NamedSchema { name: k.clone(), value: Some(schema(d)) })
            .collect(),
    });
    let info = doc.get("info").map(|i| Info { title: s(i, "title"), version: s(i, "version") });
    Document { swagger: s(doc, "swagger"), info, paths, definitions }.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_round_trips_through_gnostic_messages() {
        let json = super::super::v2::document();
        let bytes = encode(&json);
        let doc = Document::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(doc.swagger, "2.0");
        let defs = doc.definitions.expect("definitions").additional_properties;
        let spec = defs.iter().find(|d| d.name == "io.k8s.api.core.v1.ServiceSpec").and_then(|d| d.value.clone());
        let spec = spec.expect("ServiceSpec");
        let ports = spec
            .properties
            .expect("properties")
            .additional_properties
            .into_iter()
            .find(|p| p.name == "ports")
            .and_then(|p| p.value)
            .expect("ports");
        assert_eq!(ports.r#type.expect("type").value, ["array"]);
        let merge_key = ports.vendor_extension.iter().find(|e| e.name == "x-kubernetes-patch-merge-key");
        assert_eq!(merge_key.and_then(|e| e.value.clone()).map(|a| a.yaml).as_deref(), Some("\"port\""));
        let item = &ports.items.expect("items").schema[0];
        assert_eq!(item.r#ref, "#/definitions/io.k8s.api.core.v1.ServicePort");
        let gvk = defs
            .iter()
            .find(|d| d.name == "io.k8s.api.apps.v1.Deployment")
            .and_then(|d| d.value.clone())
            .map(|s| s.vendor_extension.into_iter().any(|e| e.name == "x-kubernetes-group-version-kind"));
        assert_eq!(gvk, Some(true));
        let paths = doc.paths.expect("paths").path;
        let dep = paths.iter().find(|p| p.name == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}");
        let get = dep.and_then(|p| p.value.clone()).and_then(|v| v.get).expect("get deployment");
        assert!(!get.operation_id.is_empty());
        assert!(accepts("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"));
        assert!(!accepts("application/json"));
    }
}
