//! Server-side apply's field ownership, after
//! `sigs.k8s.io/structured-merge-diff` (v4/v6): field paths and sets with their
//! `FieldsV1` encoding ([`path`], [`set`]), the per-kind schema that says
//! which lists are associative and which values atomic ([`schema`]), the
//! operations on typed values ([`typed`]) and the managed-fields updater
//! ([`managed`]), and its conversion across the scale subresource ([`scale`]). Pure functions on `serde_json::Value`; the API server calls
//! them on every write.

pub mod managed;
pub mod path;
pub mod scale;
pub mod schema;
pub mod set;
pub mod typed;
