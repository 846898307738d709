//! Server-side strategic merge patch (`application/strategic-merge-patch+json`).
//!
//! A port of the apply half of kubernetes
//! `staging/src/k8s.io/apimachinery/pkg/util/strategicpatch/patch.go`:
//! `StrategicMergeMapPatch` with the options kube-apiserver uses
//! (`MergeParallelList: true, IgnoreUnmatchedNulls: true`), i.e. `mergeMap`,
//! `mergeSlice`, `mergeSliceWithSpecialElements`, `mergePatchIntoOriginal`
//! (`$setElementOrder`), `normalizeElementOrder`, `applyRetainKeysDirective`,
//! `$deleteFromPrimitiveList`, `removeDirectives` and
//! `discardNullValuesFromPatch`. The per-type patch metadata (Go struct tags)
//! lives in [`schema`].
//!
//! Two Go details are reproduced because they decide list order:
//! * `normalizeSliceOrder` sorts with `sort.SliceStable` and a comparator that
//!   is not a strict weak ordering, so [`gosort`] ports Go's algorithm.
//! * `mergePatchIntoOriginal` orders server-only items by the *original* list
//!   after `mergeSlice` ran, and `mergeSlice` edits that list's backing array in
//!   place (`$patch: delete` shifts elements left, new elements are appended
//!   into spare capacity). The original list is assumed to have the capacity a
//!   JSON decoder gives it (grown by `append`, one element at a time), which is
//!   what upstream's own tests exercise.

use serde_json::{Map, Value};

mod gosort;
mod schema;
#[cfg(test)]
mod tests;

use schema::{Schema, Strategy};

type JsonMap = Map<String, Value>;

const DIRECTIVE_MARKER: &str = "$patch";
const DELETE_DIRECTIVE: &str = "delete";
const REPLACE_DIRECTIVE: &str = "replace";
const MERGE_DIRECTIVE: &str = "merge";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";

/// Go's `reflect.TypeOf` name of the values of a decoded JSON map.
const GO_MAP_TYPE: &str = "map[string]interface {}";
const GO_SLICE_TYPE: &str = "[]interface {}";

/// Why a strategic merge patch could not be applied. Messages are upstream's
/// (`k8s.io/apimachinery/pkg/util/mergepatch/errors.go` and `patch.go`); maps
/// and lists inside them are printed the way Go's `%v` prints them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The original object or the patch is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    #[error("lists of lists are not supported")]
    NoListOfLists,
    #[error("invalid patch format of primitive list")]
    BadPatchFormatForPrimitiveList,
    #[error("invalid patch format of retainKeys")]
    BadPatchFormatForRetainKeys,
    #[error("invalid patch format of setElementOrder list")]
    BadPatchFormatForSetElementOrderList,
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType { expected: &'static str, actual: &'static str },
    /// An unknown `$patch` directive (`delete`, `replace` and, in lists of
    /// objects, `merge` are known).
    #[error("unknown patch type: {directive} in map: {map}")]
    BadPatchType { directive: String, map: String },
    /// Any other upstream error (`fmt.Errorf` in `patch.go`).
    #[error("{0}")]
    Invalid(String),
}

/// One field with patch metadata, as OpenAPI publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchField {
    /// Field names from the object's root (list elements are passed through).
    pub path: Vec<&'static str>,
    /// `x-kubernetes-patch-strategy`: `merge`, `retainKeys`, `merge,retainKeys`, `replace`.
    pub strategy: String,
    /// `x-kubernetes-patch-merge-key`, empty when none.
    pub merge_key: &'static str,
}

/// Every field of `(group, kind)` that carries a patch strategy.
pub fn patch_fields(group: &str, kind: &str) -> Vec<PatchField> {
    fn walk(s: &'static schema::Schema, prefix: &mut Vec<&'static str>, out: &mut Vec<PatchField>) {
        if let schema::Schema::Struct(fields) = s {
            for f in fields.iter() {
                prefix.push(f.name);
                let strategy = match (f.strategy, f.retain_keys) {
                    (schema::Strategy::Merge, true) => "merge,retainKeys",
                    (schema::Strategy::Merge, false) => "merge",
                    (schema::Strategy::Replace, _) => "replace",
                    (schema::Strategy::None, true) => "retainKeys",
                    (schema::Strategy::None, false) => "",
                };
                if !strategy.is_empty() {
                    out.push(PatchField { path: prefix.clone(), strategy: strategy.into(), merge_key: f.merge_key });
                }
                walk(f.schema, prefix, out);
                prefix.pop();
            }
        }
    }
    let mut out = Vec::new();
    walk(schema::for_kind(group, kind), &mut Vec::new(), &mut out);
    out
}

/// Apply a strategic merge patch to `original`, a JSON object of kind `kind` in
/// API group `group` (`""` for the core group), exactly as kube-apiserver does
/// for built-in types. Kinds without patch metadata behave as a JSON merge patch
/// for objects and replace lists.
///
/// The result may still carry directive keys that upstream leaves in place
/// (e.g. `$setElementOrder/...` inside a map that the original did not have);
/// kube-apiserver drops them when it converts the result to the typed object, and
/// so does decoding the result into a `k8s-openapi` type.
pub fn apply(group: &str, kind: &str, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    apply_with_schema(schema::for_kind(group, kind), original, patch)
}

pub(crate) fn apply_with_schema(schema: &'static Schema, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let original = to_object(original)?;
    let patch = to_object(patch)?;
    merge_map(original, patch, schema).map(Value::Object)
}

/// `handleUnmarshal`: a JSON `null` document is an empty map; anything but an
/// object is not a valid document.
fn to_object(v: &Value) -> Result<JsonMap, PatchError> {
    match v {
        Value::Object(m) => Ok(m.clone()),
        Value::Null => Ok(Map::new()),
        _ => Err(PatchError::BadJsonDoc),
    }
}

// --- maps ----------------------------------------------------------------------

/// `mergeMap`.
fn merge_map(mut original: JsonMap, mut patch: JsonMap, schema: &'static Schema) -> Result<JsonMap, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE_MARKER) {
        let directive = directive.clone();
        return handle_directive_in_merge_map(&directive, patch);
    }

    apply_retain_keys_directive(&mut original, &mut patch)?;
    merge_patch_into_original(&mut original, &mut patch, schema)?;

    for (key, patch_v) in patch {
        // preprocessDeletionListForMerging
        let (k, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            let original_key = extract_key(&key, DELETE_FROM_PRIMITIVE_LIST_PREFIX)?;
            if original_key.is_empty() {
                (key, true)
            } else {
                (original_key, true)
            }
        } else {
            (key, false)
        };

        // A null deletes the key; unmatched nulls are ignored.
        if patch_v.is_null() {
            original.remove(&k);
            continue;
        }

        let Some(slot) = original.get_mut(&k) else {
            // Not in the original document: take the patch value.
            if !is_delete_list {
                set_from_patch(&mut original, k, patch_v);
            }
            continue;
        };

        if go_kind(slot) != go_kind(&patch_v) {
            if !is_delete_list {
                set_from_patch(&mut original, k, patch_v);
            }
            continue;
        }

        match patch_v {
            Value::Object(patch_m) => {
                let (sub, strategy, _) = schema.lookup(&k);
                let merged = if strategy == Strategy::Replace {
                    patch_m
                } else {
                    let Value::Object(orig_m) = std::mem::take(slot) else {
                        return Err(internal("original value changed type"));
                    };
                    merge_map(orig_m, patch_m, sub)?
                };
                *slot = Value::Object(merged);
            }
            Value::Array(patch_l) => {
                let (sub, strategy, merge_key) = schema.lookup(&k);
                // Delete lists are handled the same way whatever the field's
                // strategy is.
                let merged = if strategy == Strategy::Merge || is_delete_list {
                    let Value::Array(orig_l) = std::mem::take(slot) else {
                        return Err(internal("original value changed type"));
                    };
                    merge_slice(orig_l, patch_l, sub, merge_key, is_delete_list)?.merged
                } else {
                    patch_l
                };
                *slot = Value::Array(merged);
            }
            scalar => *slot = scalar,
        }
    }
    Ok(original)
}

/// The patch value for a key the original lacks (or holds with another type):
/// nulls inside it are discarded and elements carrying `$patch` are removed.
fn set_from_patch(original: &mut JsonMap, key: String, mut patch_v: Value) {
    discard_null_values_from_patch(&mut patch_v);
    match remove_directives(patch_v) {
        Some(v) => {
            original.insert(key, v);
        }
        None => {
            original.remove(&key);
        }
    }
}

/// `handleDirectiveInMergeMap`.
fn handle_directive_in_merge_map(directive: &Value, mut patch: JsonMap) -> Result<JsonMap, PatchError> {
    match directive.as_str() {
        Some(REPLACE_DIRECTIVE) => {
            // Use the patch as is, without the directive.
            patch.remove(DIRECTIVE_MARKER);
            Ok(patch)
        }
        Some(DELETE_DIRECTIVE) => Ok(Map::new()),
        _ => Err(bad_patch_type(directive, &patch)),
    }
}

/// `applyRetainKeysDirective`: drop every key of `original` that the patch's
/// `$retainKeys` list does not name, after checking that the patch itself only
/// sets listed keys.
fn apply_retain_keys_directive(original: &mut JsonMap, patch: &mut JsonMap) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadPatchFormatForRetainKeys);
    };
    let retained = |k: &str| retain.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) || k.starts_with(SET_ELEMENT_ORDER_PREFIX) {
            continue;
        }
        if !retained(k) {
            return Err(PatchError::BadPatchFormatForRetainKeys);
        }
    }
    original.retain(|k, _| retained(k));
    Ok(())
}

/// `mergePatchIntoOriginal`: process each `$setElementOrder/<list>` together
/// with the patch's `<list>`, merge them into the original and order the result.
/// The processed keys are removed from `patch`.
fn merge_patch_into_original(
    original: &mut JsonMap,
    patch: &mut JsonMap,
    schema: &'static Schema,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX)).cloned().collect();
    for key in keys {
        let Some(set_order) = patch.remove(&key) else {
            continue;
        };
        let Value::Array(set_order) = set_order else {
            return Err(bad_arg_type(GO_SLICE_TYPE, &set_order));
        };
        let list_key = extract_key(&key, SET_ELEMENT_ORDER_PREFIX)?;

        let original_list = match original.get_mut(&list_key) {
            None => None,
            Some(Value::Array(l)) => Some(std::mem::take(l)),
            Some(other) => return Err(bad_arg_type(GO_SLICE_TYPE, other)),
        };
        let patch_list = match patch.remove(&list_key) {
            None => None,
            Some(Value::Array(l)) => Some(l),
            Some(other) => return Err(bad_arg_type(GO_SLICE_TYPE, &other)),
        };

        let (sub, strategy, merge_key) = schema.lookup(&list_key);
        validate_patch_with_set_order_list(patch_list.as_deref().unwrap_or_default(), &set_order, merge_key)?;
        // Only the element types of the patch list matter below.
        let patch_kinds: Vec<Value> =
            patch_list.as_deref().unwrap_or_default().iter().map(|v| order_key(v, merge_key)).collect();

        let (merged, server_order) = match (original_list, patch_list) {
            (Some(orig), None) => {
                let server_order = order_keys(&orig, merge_key);
                (orig, server_order)
            }
            (None, Some(patch_l)) => {
                let merged = match remove_directives(Value::Array(patch_l)) {
                    Some(Value::Array(l)) => l,
                    _ => Vec::new(),
                };
                (merged, Vec::new())
            }
            (Some(orig), Some(patch_l)) => {
                if strategy == Strategy::Merge {
                    let r = merge_slice(orig, patch_l, sub, merge_key, false)?;
                    (r.merged, r.original_view)
                } else {
                    let server_order = order_keys(&orig, merge_key);
                    (patch_l, server_order)
                }
            }
            (None, None) => continue,
        };

        // Split into patch items and server-only items, then enforce the order.
        let (patch_items, server_only) = if merge_key.is_empty() {
            partition_primitives_by_present_in_list(merged, &set_order)
        } else {
            partition_maps_by_present_in_list(merged, &set_order, merge_key)?
        };
        let kind = slice_element_type(&[&server_order, &patch_kinds])?;
        let both = normalize_element_order(patch_items, server_only, &set_order, &server_order, merge_key, kind)?;
        original.insert(list_key, Value::Array(both));
    }
    Ok(())
}

// --- lists ---------------------------------------------------------------------

/// The result of `mergeSlice`.
struct SliceMerge {
    merged: Vec<Value>,
    /// What the caller's view of the original list (its first `len` slots)
    /// holds after Go's in-place edits, reduced to what ordering looks at (see
    /// [`order_key`]).
    original_view: Vec<Value>,
}

/// `mergeSlice` (reached through `mergeSliceHandler`).
fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    schema: &'static Schema,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<SliceMerge, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(SliceMerge { merged: original, original_view: Vec::new() });
    }
    let kind = slice_element_type(&[&original, &patch])?;
    let n = original.len();
    let cap = go_decoded_cap(n);

    if kind != GoKind::Map {
        if is_delete_list {
            let original_view = order_keys(&original, merge_key);
            return Ok(SliceMerge { merged: delete_from_slice(original, &patch), original_view });
        }
        // both := append(original, patch...); merged = deduplicateScalars(both).
        // When the append fits the original's capacity it reuses its backing
        // array, and the caller's `original` then sees deduplicateScalars' writes.
        let in_place = n + patch.len() <= cap;
        let view_if_copied = (!in_place).then(|| order_keys(&original, merge_key));
        let mut both = original;
        both.extend(patch.iter().cloned());
        let len = deduplicate_scalars(&mut both);
        let view = match view_if_copied {
            Some(view) => view,
            None => order_keys(&both[..n], merge_key),
        };
        both.truncate(len);
        let (patch_items, server_only) = if merge_key.is_empty() {
            partition_primitives_by_present_in_list(both, &patch)
        } else {
            partition_maps_by_present_in_list(both, &patch, merge_key)?
        };
        let merged = normalize_element_order(patch_items, server_only, &patch, &view, merge_key, kind)?;
        Ok(SliceMerge { merged, original_view: view })
    } else {
        merge_slice_of_maps(original, patch, schema, merge_key, kind, cap)
    }
}

/// The part of `mergeSlice` for lists of objects, with Go's slice aliasing
/// emulated for the caller's view of `original`.
fn merge_slice_of_maps(
    original: Vec<Value>,
    patch: Vec<Value>,
    schema: &'static Schema,
    merge_key: &str,
    kind: GoKind,
    cap: usize,
) -> Result<SliceMerge, PatchError> {
    if merge_key.is_empty() {
        return Err(PatchError::Invalid("cannot merge lists without merge key for struct".to_string()));
    }
    // `view` is the original backing array's first `len(original)` slots;
    // `aliased` says whether `cur` still lives in that array.
    let mut view = order_keys(&original, merge_key);
    let mut cur = original;
    let mut aliased = true;

    // mergeSliceWithSpecialElements
    let mut patch_without_special = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        let Value::Object(m) = &v else {
            return Err(bad_arg_type(GO_MAP_TYPE, &v));
        };
        let Some(directive) = m.get(DIRECTIVE_MARKER) else {
            patch_without_special.push(v);
            continue;
        };
        match directive.as_str() {
            Some(DELETE_DIRECTIVE) => {
                let Some(merge_value) = m.get(merge_key) else {
                    return Err(no_merge_key(m, merge_key));
                };
                // deleteMatchingEntries: append(original[:i], original[i+1:]...)
                while let Some(i) = find_map_in_slice(&cur, merge_key, merge_value)? {
                    let old_len = cur.len();
                    cur.remove(i);
                    if aliased {
                        for idx in i..old_len - 1 {
                            if idx + 1 < view.len() {
                                view[idx] = view[idx + 1].clone();
                            }
                        }
                    }
                }
            }
            // Keep going to prune any other $patch elements.
            Some(REPLACE_DIRECTIVE) => replace = true,
            Some(MERGE_DIRECTIVE) => {
                return Err(PatchError::Invalid("merging lists cannot yet be specified in the patch".to_string()));
            }
            _ => return Err(bad_patch_type(directive, m)),
        }
    }
    let patch = if replace {
        cur = patch_without_special;
        aliased = false;
        Vec::new()
    } else {
        patch_without_special
    };
    // mergeSlice's `original` from here on: its order decides server-only items.
    let server_order = order_keys(&cur, merge_key);
    let patch_order: Vec<Value> = patch.iter().map(|v| order_key(v, merge_key)).collect();

    // mergeSliceWithoutSpecialElements
    for v in patch {
        let Value::Object(m) = v else {
            return Err(bad_arg_type(GO_MAP_TYPE, &v));
        };
        let Some(merge_value) = m.get(merge_key) else {
            return Err(no_merge_key(&m, merge_key));
        };
        match find_map_in_slice(&cur, merge_key, merge_value)? {
            Some(i) => {
                let Value::Object(orig_m) = std::mem::take(&mut cur[i]) else {
                    return Err(internal("matched list element is not a map"));
                };
                cur[i] = Value::Object(merge_map(orig_m, m, schema)?);
            }
            None => {
                let v = Value::Object(m);
                if aliased {
                    let len = cur.len();
                    if len < cap {
                        // append writes into the shared backing array.
                        if len < view.len() {
                            view[len] = order_key(&v, merge_key);
                        }
                    } else {
                        aliased = false;
                    }
                }
                cur.push(v);
            }
        }
    }

    let (patch_items, server_only) = partition_maps_by_present_in_list(cur, &patch_order, merge_key)?;
    let merged = normalize_element_order(patch_items, server_only, &patch_order, &server_order, merge_key, kind)?;
    Ok(SliceMerge { merged, original_view: view })
}

/// The capacity Go's JSON decoder leaves on a decoded array of `n` elements: it
/// starts from `make([]any, 0)` and appends one element at a time
/// (`runtime.growslice` with 16-byte elements and malloc size classes).
fn go_decoded_cap(n: usize) -> usize {
    let mut cap = 0usize;
    for len in 0..n {
        if len == cap {
            cap = go_grow_cap(cap, len + 1);
        }
    }
    cap
}

/// `runtime.nextslicecap` followed by `roundupsize` for 16-byte elements.
fn go_grow_cap(old_cap: usize, new_len: usize) -> usize {
    const THRESHOLD: usize = 256;
    let double = old_cap * 2;
    let mut new_cap = if new_len > double {
        new_len
    } else if old_cap < THRESHOLD {
        double
    } else {
        let mut c = old_cap;
        while c < new_len {
            c += (c + 3 * THRESHOLD) >> 2;
        }
        c
    };
    // Malloc size classes up to 32 KiB (runtime/sizeclasses.go); larger
    // allocations are rounded up to whole 8 KiB pages.
    const SIZE_CLASSES: [usize; 67] = [
        0, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 352, 384, 416,
        448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456,
        4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432,
        19072, 20480, 21760, 24576, 27264, 28672,
    ];
    let bytes = new_cap * 16;
    let rounded = if bytes <= 32768 {
        SIZE_CLASSES.iter().copied().find(|&c| c >= bytes).unwrap_or(32768)
    } else {
        bytes.div_ceil(8192) * 8192
    };
    new_cap = rounded / 16;
    new_cap
}

/// `deduplicateScalars`, in place: returns the new length. Like Go, slots past
/// the new length keep whatever was last written to them.
fn deduplicate_scalars(s: &mut [Value]) -> usize {
    if s.is_empty() {
        return 0;
    }
    let mut length = s.len() - 1;
    let mut i = 0;
    while i < length {
        let mut j = i + 1;
        while j <= length {
            if s[i] == s[j] {
                s[j] = s[length].clone();
                length -= 1;
                // j-- then j++: look at the same slot again.
            } else {
                j += 1;
            }
        }
        i += 1;
    }
    length + 1
}

/// `deleteFromSlice`.
fn delete_from_slice(current: Vec<Value>, to_delete: &[Value]) -> Vec<Value> {
    current.into_iter().filter(|v| !to_delete.contains(v)).collect()
}

/// `findMapInSliceBasedOnKeyValue`: the index of the first map whose `key` is
/// `value`.
fn find_map_in_slice(list: &[Value], key: &str, value: &Value) -> Result<Option<usize>, PatchError> {
    for (i, v) in list.iter().enumerate() {
        let Value::Object(m) = v else {
            return Err(PatchError::Invalid(format!("value for key {i} is not a map")));
        };
        if m.get(key) == Some(value) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

// --- ordering --------------------------------------------------------------------

/// What ordering needs of a list element: for lists of objects only whether it
/// is an object and its merge key, so objects are reduced to `{mergeKey: value}`
/// (or `{}`); primitives are kept.
fn order_key(v: &Value, merge_key: &str) -> Value {
    match v {
        Value::Object(m) if !merge_key.is_empty() => {
            let mut key_only = Map::new();
            if let Some(k) = m.get(merge_key) {
                key_only.insert(merge_key.to_string(), k.clone());
            }
            Value::Object(key_only)
        }
        other => other.clone(),
    }
}

fn order_keys(list: &[Value], merge_key: &str) -> Vec<Value> {
    list.iter().map(|v| order_key(v, merge_key)).collect()
}

/// `normalizeElementOrder`: sort the patch items by `patch_order` and the
/// server-only items by `server_order`, then interleave them.
fn normalize_element_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: GoKind,
) -> Result<Vec<Value>, PatchError> {
    let patch = normalize_slice_order(patch, patch_order, merge_key, kind)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, kind)?;
    Ok(merge_sorted_slice(server_only, patch, server_order, merge_key, kind))
}

/// `mergeSortedSlice`: insert the items of `left` (server-only) into `right`
/// (patch items), keeping both relative orders; a left item goes first only when
/// both items are in `server_order` and it comes earlier there.
fn merge_sorted_slice(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    kind: GoKind,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    while let (Some(l), Some(r)) = (left.peek(), right.peek()) {
        let li = index(server_order, l, merge_key, kind);
        let ri = index(server_order, r, merge_key, kind);
        let next = if li >= 0 && ri >= 0 && li < ri { left.next() } else { right.next() };
        out.extend(next);
    }
    out.extend(left);
    out.extend(right);
    out
}

/// `index`: position of `val` in `list`, comparing merge-key values for lists of
/// objects (a missing key compares equal to a missing key, as Go's nil does).
fn index(list: &[Value], val: &Value, merge_key: &str, kind: GoKind) -> isize {
    let wanted = order_value(val, merge_key, kind);
    list.iter().position(|v| order_value(v, merge_key, kind) == wanted).map_or(-1, |i| i as isize)
}

/// `getValFn` of `index`: the merge-key value of an object (`None` when it is
/// missing or the item is not an object), the item itself for primitives.
fn order_value<'a>(item: &'a Value, merge_key: &str, kind: GoKind) -> Option<&'a Value> {
    if kind == GoKind::Map {
        item.as_object().and_then(|m| m.get(merge_key))
    } else {
        Some(item)
    }
}

/// `normalizeSliceOrder`: sort `to_sort` by `order`; for objects, items carrying
/// `$patch: delete` go last.
fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: GoKind,
) -> Result<Vec<Value>, PatchError> {
    let (to_sort, to_delete) = if kind == GoKind::Map {
        validate_merge_key_in_lists(merge_key, &[&to_sort, order])?;
        extract_to_delete_items(to_sort)?
    } else {
        (to_sort, Vec::new())
    };
    let mut indexed: Vec<(isize, Value)> =
        to_sort.into_iter().map(|v| (index(order, &v, merge_key, kind), v)).collect();
    gosort::slice_stable(&mut indexed, |a, b| if a.0 >= 0 && b.0 >= 0 { a.0 < b.0 } else { true });
    let mut sorted: Vec<Value> = indexed.into_iter().map(|(_, v)| v).collect();
    sorted.extend(to_delete);
    Ok(sorted)
}

/// `validateMergeKeyInLists`.
fn validate_merge_key_in_lists(merge_key: &str, lists: &[&[Value]]) -> Result<(), PatchError> {
    for list in lists {
        for item in list.iter() {
            let Value::Object(m) = item else {
                return Err(bad_arg_type(GO_MAP_TYPE, item));
            };
            if !m.contains_key(merge_key) {
                return Err(no_merge_key(m, merge_key));
            }
        }
    }
    Ok(())
}

/// `extractToDeleteItems`: split off the items carrying `$patch: delete`.
fn extract_to_delete_items(list: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    for v in list {
        let Value::Object(m) = &v else {
            return Err(bad_arg_type(GO_MAP_TYPE, &v));
        };
        if m.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some(DELETE_DIRECTIVE) {
            delete.push(v);
        } else {
            keep.push(v);
        }
    }
    Ok((keep, delete))
}

/// `partitionPrimitivesByPresentInList`.
fn partition_primitives_by_present_in_list(list: Vec<Value>, partition_by: &[Value]) -> (Vec<Value>, Vec<Value>) {
    list.into_iter().partition(|v| partition_by.contains(v))
}

/// `partitionMapsByPresentInList`.
fn partition_maps_by_present_in_list(
    list: Vec<Value>,
    partition_by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut present = Vec::with_capacity(list.len());
    let mut server_only = Vec::new();
    for v in list {
        let Value::Object(m) = &v else {
            return Err(bad_arg_type(GO_MAP_TYPE, &v));
        };
        let Some(merge_value) = m.get(merge_key) else {
            return Err(no_merge_key(m, merge_key));
        };
        if find_map_in_slice(partition_by, merge_key, merge_value)?.is_some() {
            present.push(v);
        } else {
            server_only.push(v);
        }
    }
    Ok((present, server_only))
}

/// `validatePatchWithSetOrderList`: the patch list (deletions aside) must be a
/// subsequence of the `$setElementOrder` list.
fn validate_patch_with_set_order_list(
    patch_list: &[Value],
    set_order: &[Value],
    merge_key: &str,
) -> Result<(), PatchError> {
    if set_order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = if merge_key.is_empty() {
        patch_list.iter().collect()
    } else {
        let mut keep = Vec::new();
        for v in patch_list {
            let Value::Object(m) = v else {
                return Err(bad_arg_type(GO_MAP_TYPE, v));
            };
            if m.get(DIRECTIVE_MARKER).and_then(Value::as_str) != Some(DELETE_DIRECTIVE) {
                keep.push(v);
            }
        }
        keep
    };

    let (mut pi, mut si) = (0, 0);
    while pi < non_delete.len() && si < set_order.len() {
        if non_delete[pi].as_object().is_some_and(|m| m.contains_key(DIRECTIVE_MARKER)) {
            pi += 1;
            continue;
        }
        if merge_key_value_equal(non_delete[pi], &set_order[si], merge_key)? {
            pi += 1;
        }
        si += 1;
    }
    if pi < non_delete.len() && si >= set_order.len() {
        return Err(PatchError::Invalid(format!(
            "the order in patch list:\n{}\n doesn't match {} list:\n{}",
            go_fmt_list(patch_list),
            SET_ELEMENT_ORDER_PREFIX,
            go_fmt_list(set_order)
        )));
    }
    Ok(())
}

/// `mergeKeyValueEqual`.
fn merge_key_value_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool, PatchError> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    let Value::Object(l) = left else {
        return Err(bad_arg_type(GO_MAP_TYPE, left));
    };
    let Value::Object(r) = right else {
        return Err(bad_arg_type(GO_MAP_TYPE, right));
    };
    let Some(lv) = l.get(merge_key) else {
        return Err(no_merge_key(l, merge_key));
    };
    let Some(rv) = r.get(merge_key) else {
        return Err(no_merge_key(r, merge_key));
    };
    Ok(lv == rv)
}

// --- directives -------------------------------------------------------------------

/// `extractKey`: `<prefix>/<key>` -> `<key>`.
fn extract_key(s: &str, prefix: &str) -> Result<String, PatchError> {
    match s.split_once('/') {
        Some((p, key)) if p == prefix => Ok(key.to_string()),
        _ => Err(match prefix {
            DELETE_FROM_PRIMITIVE_LIST_PREFIX => PatchError::BadPatchFormatForPrimitiveList,
            SET_ELEMENT_ORDER_PREFIX => PatchError::BadPatchFormatForSetElementOrderList,
            _ => PatchError::Invalid(format!("fail to find unknown prefix {prefix:?} in {s}")),
        }),
    }
}

/// `removeDirectives`: drop every object carrying `$patch` (as a map value or a
/// list element); `None` when `v` itself carries one.
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE_MARKER) {
                return None;
            }
            let mut out = Map::new();
            for (k, v) in m {
                if let Some(v) = remove_directives(v) {
                    out.insert(k, v);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(l) => Some(Value::Array(l.into_iter().filter_map(remove_directives).collect())),
        other => Some(other),
    }
}

/// `discardNullValuesFromPatch`: drop null-valued keys of every object inside.
fn discard_null_values_from_patch(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            for v in m.values_mut() {
                discard_null_values_from_patch(v);
            }
        }
        Value::Array(l) => l.iter_mut().for_each(discard_null_values_from_patch),
        _ => {}
    }
}

// --- Go's view of JSON values -------------------------------------------------------

/// The Go type a decoded JSON value has (`k8s.io/apimachinery/pkg/util/json`
/// keeps integers as `int64`, other numbers are `float64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GoKind {
    Nil,
    Bool,
    Int64,
    Float64,
    String,
    Slice,
    Map,
}

fn go_kind(v: &Value) -> GoKind {
    match v {
        Value::Null => GoKind::Nil,
        Value::Bool(_) => GoKind::Bool,
        Value::Number(n) if n.is_i64() => GoKind::Int64,
        Value::Number(_) => GoKind::Float64,
        Value::String(_) => GoKind::String,
        Value::Array(_) => GoKind::Slice,
        Value::Object(_) => GoKind::Map,
    }
}

fn go_type_name(v: &Value) -> &'static str {
    match go_kind(v) {
        GoKind::Nil => "%!s(<nil>)",
        GoKind::Bool => "bool",
        GoKind::Int64 => "int64",
        GoKind::Float64 => "float64",
        GoKind::String => "string",
        GoKind::Slice => GO_SLICE_TYPE,
        GoKind::Map => GO_MAP_TYPE,
    }
}

/// `sliceElementType`: all elements of all lists must have one Go type, which
/// is not a list.
fn slice_element_type(lists: &[&[Value]]) -> Result<GoKind, PatchError> {
    let mut prev: Option<GoKind> = None;
    for list in lists {
        for v in list.iter() {
            let cur = go_kind(v);
            match prev {
                None => {
                    if cur == GoKind::Slice {
                        return Err(PatchError::NoListOfLists);
                    }
                    if cur == GoKind::Nil {
                        // Go dereferences a nil reflect.Type here and panics.
                        return Err(PatchError::Invalid("list element must not be null".to_string()));
                    }
                    prev = Some(cur);
                }
                Some(p) if p != cur => {
                    let lists: Vec<String> = lists.iter().map(|l| go_fmt_list(l)).collect();
                    return Err(PatchError::Invalid(format!(
                        "list element types are not identical: [{}]",
                        lists.join(" ")
                    )));
                }
                Some(_) => {}
            }
        }
    }
    prev.ok_or_else(|| PatchError::Invalid("no elements in any of the given slices".to_string()))
}

/// Go's `%v` of a decoded JSON value.
fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else {
                go_fmt_float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(l) => go_fmt_list(l),
        Value::Object(m) => go_fmt_map(m),
    }
}

fn go_fmt_list(l: &[Value]) -> String {
    let items: Vec<String> = l.iter().map(go_fmt).collect();
    format!("[{}]", items.join(" "))
}

fn go_fmt_map(m: &JsonMap) -> String {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    let items: Vec<String> =
        keys.into_iter().map(|k| format!("{k}:{}", m.get(k).map(go_fmt).unwrap_or_default())).collect();
    format!("map[{}]", items.join(" "))
}

/// `%v` of a float64: shortest representation, exponent form below 1e-4 and
/// from 1e21 on.
fn go_fmt_float(f: f64) -> String {
    let abs = f.abs();
    if f != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = match exp.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', exp),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else {
        format!("{f}")
    }
}

/// Go's `%s` of a directive value.
fn go_fmt_s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "%!s(<nil>)".to_string(),
        Value::Array(_) | Value::Object(_) => go_fmt(v),
        other => format!("%!s({}={})", go_type_name(other), go_fmt(other)),
    }
}

fn bad_arg_type(expected: &'static str, actual: &Value) -> PatchError {
    PatchError::BadArgType { expected, actual: go_type_name(actual) }
}

fn no_merge_key(m: &JsonMap, key: &str) -> PatchError {
    PatchError::NoMergeKey { map: go_fmt_map(m), key: key.to_string() }
}

fn bad_patch_type(directive: &Value, m: &JsonMap) -> PatchError {
    PatchError::BadPatchType { directive: go_fmt_s(directive), map: go_fmt_map(m) }
}

/// A broken invariant of this module (never expected; returned rather than
/// panicking).
fn internal(what: &str) -> PatchError {
    PatchError::Invalid(format!("strategic merge patch: internal error: {what}"))
}
