//! Custom resources: how an object is checked against its
//! CustomResourceDefinition's structural schema (`openAPIV3Schema`). Pruning of
//! unknown fields, defaulting and validation, in upstream's order and with
//! upstream's messages (`k8s.io/apiextensions-apiserver/pkg/apiserver/schema`
//! {pruning,defaulting}, `.../apiserver/validation`, kube-openapi
//! `pkg/validation`).

pub mod cel_library;
pub mod columns;
pub mod definition;
pub mod rules;
pub mod schema;
pub mod shape;
