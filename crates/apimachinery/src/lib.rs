//! `apimachinery`: the pure rules of the Kubernetes API that do not depend on
//! storage or transport (the counterpart of k8s.io/apimachinery plus the
//! per-type logic of `pkg/apis`): field errors, table printing, strategic merge
//! patch, defaults and validation. No I/O; everything here is unit-tested.
//!
//! Depends on: serde_json, k8s-openapi. Used by `apiserver`.

pub mod allocator;
pub mod bootstrap_token;
pub mod certificates;
pub mod crd;
pub mod cron;
pub mod cronjob;
pub mod daemonset;
mod defaulting;
pub mod field;
pub mod job;
pub mod loadbalancer;
pub mod metallb;
pub mod names;
pub mod protobuf;
pub mod quantity;
pub mod rbac;
pub mod scale;
pub mod selector;
pub mod service;
pub mod serviceaccount;
pub mod smd;
pub mod statefulset;
pub mod strategic_merge;
pub mod table;
