//! CEL validation rules of a structural schema (`x-kubernetes-validations`),
//! as upstream's `apiextensions-apiserver/pkg/apiserver/schema/cel/validation.go`
//! evaluates them: each rule runs with `self` bound to the value at its schema
//! node (and `oldSelf` to the correlated old value on an update), a rule that
//! is not `true` fails with its `message`, `messageExpression` or
//! `failed rule: <rule>`, at its node's path plus `fieldPath`, as the error
//! type its `reason` names. Transition rules (those that use `oldSelf`) run
//! only where an old value correlates, unless `optionalOldSelf`; an error of
//! an unchanged value is dropped (CRD validation ratcheting, GA in 1.30).
//!
//! [`check_schema`] is the CRD-side half: every rule and messageExpression
//! must compile, reasons and field paths must be valid.
//!
//! Not done: upstream's static type checking and cost budgets (a rule is
//! typed at run time, against the values it meets); the Kubernetes libraries
//! there are are in [`super::cel_library`].

use super::schema::{child_path, ROOT_FIELDS};
use crate::field::FieldError;
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, Program, Value as Cel};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

const RULES: &str = "x-kubernetes-validations";
const REASONS: &[&str] = &["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"];
/// Upstream's `MaxEvaluatedMessageExpressionSizeBytes`.
const MAX_MESSAGE_BYTES: usize = 5 * 1024;

/// One entry of `x-kubernetes-validations`.
struct Rule<'a> {
    raw: &'a Value,
    rule: &'a str,
    message: &'a str,
    message_expression: &'a str,
    reason: Option<&'a str>,
    field_path: &'a str,
    optional_old_self: bool,
}

impl<'a> Rule<'a> {
    fn parse(raw: &'a Value) -> Rule<'a> {
        let s = |k: &str| raw.get(k).and_then(Value::as_str).unwrap_or_default();
        Rule {
            raw,
            rule: s("rule"),
            message: s("message"),
            message_expression: s("messageExpression"),
            reason: raw.get("reason").and_then(Value::as_str),
            field_path: s("fieldPath"),
            optional_old_self: raw.get("optionalOldSelf").and_then(Value::as_bool) == Some(true),
        }
    }

    /// `ruleErrorString`: the message if there is one, else the rule.
    fn error_string(&self) -> &str {
        if self.message.trim().is_empty() {
            self.rule.trim()
        } else {
            self.message.trim()
        }
    }

    /// `ruleMessageOrDefault`.
    fn message_or_default(&self) -> String {
        if self.message.trim().is_empty() {
            format!("failed rule: {}", self.rule.trim())
        } else {
            self.message.trim().to_string()
        }
    }
}

fn rules_of(schema: &Value) -> impl Iterator<Item = Rule<'_>> {
    schema.get(RULES).and_then(Value::as_array).into_iter().flatten().map(Rule::parse)
}

/// The environment rules compile and run in: CEL's standard library with the
/// `strings` and `math` extensions Kubernetes also enables (its own
/// libraries are added per evaluation: [`super::cel_library`]).
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // An extension clashing with the standard library would be a bug in
        // the crate; the unit tests use both, so a failure shows there.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::math);
        Arc::new(env)
    })
}

/// Compiled programs by source: the same few rules run for every write.
fn compile(source: &str) -> Result<Arc<Program>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Program>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(source) {
        return Ok(p.clone());
    }
    let program = Arc::new(env().compile(source).map_err(|e| e.to_string())?);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    // Bounded: sources come from CRDs, which users write.
    if cache.len() >= 4096 {
        cache.clear();
    }
    cache.insert(source.to_string(), program.clone());
    Ok(program)
}

fn uses_old_self(program: &Program) -> bool {
    program.references().has_variable("oldSelf")
}

thread_local! {
    /// The libraries' functions, registered once per thread: each evaluation
    /// binds `self`/`oldSelf` in a child scope of it.
    static BASE: Context<'static, 'static> = {
        let mut ctx = Context::with_env(env().clone());
        super::cel_library::add(&mut ctx);
        ctx
    };
}

/// Run `f` in a context where `self` (and `oldSelf`) are bound.
fn with_context<R>(self_value: Cel, old: Option<OldSelf>, f: impl FnOnce(&Context<'_, '_>) -> R) -> R {
    BASE.with(|base| {
        let mut ctx = base.new_inner_scope();
        ctx.add_variable_from_value("self", self_value);
        match old {
            None => {}
            Some(OldSelf::Plain(v)) => ctx.add_variable_from_value("oldSelf", v),
            Some(OldSelf::Optional(v)) => {
                let inner = v.and_then(|v| Box::<dyn cel::common::value::Val>::try_from(v).ok());
                let opt = match inner {
                    Some(b) => cel::common::types::CelOptional::of(b),
                    None => cel::common::types::CelOptional::none(),
                };
                ctx.add_variable_as_val("oldSelf", Box::new(opt));
            }
        }
        f(&ctx)
    })
}

/// What one evaluation of a rule came to.
enum Outcome {
    Holds,
    /// False; the messageExpression's text when it gave one.
    Fails(Option<String>),
    /// The detail of an evaluation error.
    Error(String),
}

enum OldSelf {
    Plain(Cel),
    /// `optionalOldSelf`: `oldSelf` is `optional.of(old)` or `optional.none()`.
    Optional(Option<Cel>),
}

/// The schema's type as upstream prints it as the "value" of a rule's error.
fn schema_type(schema: &Value) -> &str {
    schema.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// A JSON value as CEL sees it, typed by its schema (`UnstructuredToVal`):
/// `integer` fields are ints, `number` fields doubles, `format: byte` strings
/// bytes. At a resource root only `apiVersion`, `kind` and
/// `metadata.name`/`generateName` are visible (`WithTypeAndObjectMeta`).
fn to_cel(v: &Value, schema: Option<&Value>, root: bool) -> Cel {
    let ty = schema.map(schema_type).unwrap_or_default();
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (ty, n.as_i64()) {
            ("number", _) => Cel::Float(n.as_f64().unwrap_or_default()),
            (_, Some(i)) => Cel::Int(i),
            _ => match n.as_u64() {
                Some(u) => Cel::UInt(u),
                None => Cel::Float(n.as_f64().unwrap_or_default()),
            },
        },
        Value::String(s) => {
            let format = schema.and_then(|s| s.get("format")).and_then(Value::as_str);
            if format == Some("byte") {
                use base64::Engine;
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s) {
                    return Cel::Bytes(Arc::new(bytes));
                }
            }
            Cel::String(Arc::new(s.clone()))
        }
        Value::Array(items) => {
            let item_schema = schema.and_then(|s| s.get("items"));
            Cel::List(Arc::new(items.iter().map(|i| to_cel(i, item_schema, false)).collect()))
        }
        Value::Object(m) => {
            let mut out = HashMap::with_capacity(m.len());
            for (k, child) in m {
                if root && ROOT_FIELDS.contains(&k.as_str()) {
                    if k == "metadata" {
                        let mut meta = HashMap::new();
                        for f in ["name", "generateName"] {
                            if let Some(Value::String(s)) = child.get(f) {
                                meta.insert(Key::String(Arc::new(f.to_string())), Cel::String(Arc::new(s.clone())));
                            }
                        }
                        out.insert(Key::String(Arc::new(k.clone())), Cel::Map(Map { map: Arc::new(meta) }));
                    } else {
                        out.insert(Key::String(Arc::new(k.clone())), to_cel(child, None, false));
                    }
                    continue;
                }
                out.insert(Key::String(Arc::new(k.clone())), to_cel(child, child_schema(schema, k), false));
            }
            Cel::Map(Map { map: Arc::new(out) })
        }
    }
}

fn child_schema<'s>(schema: Option<&'s Value>, key: &str) -> Option<&'s Value> {
    let schema = schema?;
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

/// Evaluate every rule of `schema` on `obj` (and, on an update, `old`);
/// field paths as upstream prints them.
pub fn validate(obj: &Value, old: Option<&Value>, schema: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if has_rules(schema) {
        node(obj, old, schema, "", true, &mut errs);
    }
    errs
}

/// Whether any node of `schema` has rules (most CRDs have none: skip the walk).
fn has_rules(schema: &Value) -> bool {
    if schema.get(RULES).and_then(Value::as_array).is_some_and(|r| !r.is_empty()) {
        return true;
    }
    schema.get("properties").and_then(Value::as_object).is_some_and(|p| p.values().any(has_rules))
        || schema.get("items").filter(|i| i.is_object()).is_some_and(has_rules)
        || schema.get("additionalProperties").filter(|a| a.is_object()).is_some_and(has_rules)
}

fn node(v: &Value, old: Option<&Value>, schema: &Value, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    // Only non-null values are validated (upstream: rules that care about
    // null or absence are written on the enclosing object).
    if v.is_null() {
        return;
    }
    let old = old.filter(|o| !o.is_null());
    for rule in rules_of(schema) {
        if let Some(e) = evaluate(&rule, v, old, schema, path, root) {
            errs.push(e);
        }
    }
    match v {
        Value::Object(m) => {
            // Objects correlate by key unless the map is atomic.
            let correlates = schema.get("x-kubernetes-map-type").and_then(Value::as_str) != Some("atomic");
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in m {
                if root && ROOT_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let Some(sub) = props.and_then(|p| p.get(k)).or(additional) else { continue };
                let old_child = old.filter(|_| correlates).and_then(|o| o.get(k));
                node(child, old_child, sub, &child_path(path, k), false, errs);
            }
        }
        Value::Array(items) => {
            let Some(sub) = schema.get("items").filter(|i| i.is_object()) else { return };
            // Only map-lists correlate, by their keys (`makeMapList`).
            let keys: Vec<&str> = if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
                schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect()
            } else {
                Vec::new()
            };
            let old_items = old.and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                let old_item = if keys.is_empty() {
                    None
                } else {
                    old_items.and_then(|olds| olds.iter().find(|o| keys.iter().all(|k| o.get(*k) == item.get(*k))))
                };
                node(item, old_item, sub, &format!("{path}[{i}]"), false, errs);
            }
        }
        _ => {}
    }
}

/// One rule on one value: `None` when it holds (or does not apply).
fn evaluate(
    rule: &Rule<'_>,
    v: &Value,
    old: Option<&Value>,
    schema: &Value,
    path: &str,
    root: bool,
) -> Option<FieldError> {
    if rule.rule.trim().is_empty() {
        return None;
    }
    let ty = Value::String(schema_type(schema).to_string());
    // Upstream validates the root with a nil field path, printed `<nil>`.
    let path = if path.is_empty() { "<nil>" } else { path };
    let program = match compile(rule.rule) {
        Ok(p) => p,
        // Checked when the CRD was written; a CRD stored before that check
        // existed still gets an answer.
        Err(e) => return Some(FieldError::invalid(path, ty, format!("rule compile error: {e}"))),
    };
    let transition = uses_old_self(&program);
    if transition && old.is_none() && !rule.optional_old_self {
        return None;
    }
    let old_self = match (transition, rule.optional_old_self) {
        (false, _) => None,
        (true, false) => old.map(|o| OldSelf::Plain(to_cel(o, Some(schema), root))),
        (true, true) => Some(OldSelf::Optional(old.map(|o| to_cel(o, Some(schema), root)))),
    };
    let outcome = with_context(to_cel(v, Some(schema), root), old_self, |ctx| {
        match program.execute(ctx) {
        Ok(Cel::Bool(true)) => Outcome::Holds,
        // Ratcheting: a rule without oldSelf that fails on a value the update
        // left as it was does not block the update.
        Ok(Cel::Bool(false)) if !transition && old == Some(v) => Outcome::Holds,
        Ok(Cel::Bool(false)) => Outcome::Fails(if rule.message_expression.trim().is_empty() {
            None
        } else {
            message_expression(rule.message_expression, ctx)
        }),
        Ok(other) => Outcome::Error(format!(
            "rule did not evaluate to a bool ({}) evaluating rule: {}",
            kind_of(&other),
            rule.error_string()
        )),
        Err(e @ ExecutionError::NoSuchOverload(_)) => Outcome::Error(format!(
            "'no such overload: {e}': call arguments did not match a supported operator, function or macro signature for rule: {}",
            rule.error_string()
        )),
        Err(e) => Outcome::Error(format!("{} evaluating rule: {}", execution_error(&e), rule.error_string())),
    }
    });
    let detail = match outcome {
        Outcome::Holds => return None,
        Outcome::Error(detail) => return Some(FieldError::invalid(path, ty, detail)),
        Outcome::Fails(message) => message.unwrap_or_else(|| rule.message_or_default()),
    };
    let at = match normalized_field_path(rule.field_path) {
        Some(rel) if !rel.is_empty() => {
            if path == "<nil>" {
                rel.trim_start_matches('.').to_string()
            } else {
                format!("{path}{rel}")
            }
        }
        _ => path.to_string(),
    };
    Some(match rule.reason.unwrap_or("FieldValueInvalid") {
        "FieldValueForbidden" => FieldError::forbidden(at, detail),
        "FieldValueRequired" => FieldError::required(at, detail),
        "FieldValueDuplicate" => FieldError::duplicate(at, ty),
        _ => FieldError::invalid(at, ty, detail),
    })
}

/// `evalMessageExpression`: a non-empty single-line string, else `None` (the
/// rule's message is used, as upstream does after logging the failure).
fn message_expression(source: &str, ctx: &Context<'_, '_>) -> Option<String> {
    let program = compile(source).ok()?;
    match program.execute(ctx) {
        Ok(Cel::String(s)) => {
            let s = s.trim();
            (!s.is_empty() && !s.contains('\n') && s.len() <= MAX_MESSAGE_BYTES).then(|| s.to_string())
        }
        _ => None,
    }
}

/// Runtime errors in cel-go's words where they differ (`no such key: x`).
fn execution_error(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::DivisionByZero(_) => "division by zero".to_string(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_string(),
        ExecutionError::Overflow(..) => "integer overflow".to_string(),
        ExecutionError::IndexOutOfBounds(i) => format!("index out of bounds: {}", cel_text(i)),
        other => other.to_string(),
    }
}

fn cel_text(v: &Cel) -> String {
    match v {
        Cel::Int(i) => i.to_string(),
        Cel::UInt(u) => u.to_string(),
        Cel::String(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}

fn kind_of(v: &Cel) -> &'static str {
    match v {
        Cel::List(_) => "list",
        Cel::Map(_) => "map",
        Cel::Int(_) => "int",
        Cel::UInt(_) => "uint",
        Cel::Float(_) => "double",
        Cel::String(_) => "string",
        Cel::Bytes(_) => "bytes",
        Cel::Null => "null_type",
        _ => "dyn",
    }
}

/// `fieldPath` as a path suffix (`.spec.x['y']` -> `.spec.x[y]`), or `None`
/// when it does not parse (`ValidFieldPath`'s tokens: `.name`, `['key']`).
fn normalized_field_path(field_path: &str) -> Option<String> {
    Some(field_path_segments(field_path)?.iter().map(|s| format!(".{s}")).collect())
}

fn field_path_segments(field_path: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = field_path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']")?;
            out.push(r[..end].to_string());
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            out.push(r[..end].to_string());
            rest = &r[end..];
        } else {
            return None;
        }
    }
    Some(out)
}

/// Whether `field_path` names a field of `schema` (upstream's
/// `ValidFieldPath`: each step a property, or a key of additionalProperties).
fn field_path_resolves(field_path: &str, schema: &Value) -> Result<(), &'static str> {
    let segments = field_path_segments(field_path).ok_or("expected [ or . but got something else")?;
    let mut at = schema;
    for s in segments {
        at = if let Some(props) = at.get("properties").and_then(Value::as_object) {
            props.get(&s).ok_or("does not refer to a valid field")?
        } else if let Some(add) = at.get("additionalProperties").filter(|a| a.is_object()) {
            add
        } else {
            return Err("does not refer to a valid field");
        };
    }
    Ok(())
}

/// The CRD-side checks of one schema node's rules (`ValidateCustomResourceDefinitionOpenAPISchema`):
/// rules and messageExpressions compile, a rule is not empty, message and
/// messageExpression have no line breaks, `reason` is a known one, `fieldPath`
/// refers to a field. `path` is the node's (`spec.versions[0].schema.openAPIV3Schema.properties[spec]`).
pub fn check_schema(schema: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(rules) = schema.get(RULES) else { return errs };
    let Some(rules) = rules.as_array() else {
        errs.push(FieldError::invalid(format!("{path}.{RULES}"), rules.clone(), "must be a list of rules"));
        return errs;
    };
    for (i, raw) in rules.iter().enumerate() {
        let at = format!("{path}.{RULES}[{i}]");
        let rule = Rule::parse(raw);
        if rule.rule.trim().is_empty() {
            errs.push(FieldError::required(format!("{at}.rule"), ""));
            continue;
        }
        if let Err(e) = compile(rule.rule) {
            errs.push(FieldError::invalid(format!("{at}.rule"), rule.raw.clone(), format!("compilation failed: {e}")));
        }
        if rule.message.contains('\n') {
            errs.push(FieldError::invalid(
                format!("{at}.message"),
                rule.message,
                "message must not contain line breaks",
            ));
        }
        if !rule.message_expression.trim().is_empty() {
            if let Err(e) = compile(rule.message_expression) {
                errs.push(FieldError::invalid(
                    format!("{at}.messageExpression"),
                    rule.raw.clone(),
                    format!("messageExpression compilation failed: {e}"),
                ));
            }
        }
        if let Some(reason) = rule.reason.filter(|r| !REASONS.contains(r)) {
            errs.push(FieldError::not_supported(format!("{at}.reason"), reason, REASONS));
        }
        if !rule.field_path.is_empty() {
            if let Err(why) = field_path_resolves(rule.field_path, schema) {
                errs.push(FieldError::invalid(
                    format!("{at}.fieldPath"),
                    rule.field_path,
                    format!("fieldPath must be a valid path: {why}"),
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.metadata.name.startsWith('w-')", "message": "name must start with w-"}
            ],
            "properties": {
                "spec": {
                    "type": "object",
                    "x-kubernetes-validations": [
                        {"rule": "self.replicas <= self.maxReplicas", "message": "replicas must not exceed maxReplicas"},
                        {"rule": "!has(self.mode) || self.mode.lowerAscii() == self.mode", "fieldPath": ".mode",
                         "messageExpression": "'mode ' + self.mode + ' must be lower case'"},
                        {"rule": "self.replicas >= oldSelf.replicas || self.allowShrink", "reason": "FieldValueForbidden",
                         "message": "replicas may not shrink"},
                        {"rule": "self.ratio > 0.5"}
                    ],
                    "properties": {
                        "replicas": {"type": "integer"},
                        "maxReplicas": {"type": "integer"},
                        "mode": {"type": "string"},
                        "allowShrink": {"type": "boolean"},
                        "ratio": {"type": "number"},
                        "ports": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "x-kubernetes-validations": [{"rule": "self.map(p, p.port).isSorted()", "message": "ports sorted"}],
                            "items": {
                                "type": "object",
                                "x-kubernetes-validations": [
                                    {"rule": "self.port == oldSelf.port", "message": "port is immutable"}
                                ],
                                "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}
                            }
                        },
                        "immutable": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "Value is immutable"}]}
                    }
                }
            }
        })
    }

    fn obj(spec: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w-1", "uid": "x"}, "spec": spec})
    }

    /// Every error, in brackets even when alone.
    fn text(errs: &[FieldError]) -> String {
        format!("[{}]", errs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
    }

    #[test]
    fn rules_hold_or_fail_with_upstreams_messages() {
        let good = obj(json!({"replicas": 2, "maxReplicas": 3, "mode": "fast", "ratio": 1, "allowShrink": false}));
        assert_eq!(validate(&good, None, &schema()), vec![]);
        let bad = obj(json!({"replicas": 4, "maxReplicas": 3, "mode": "Fast", "ratio": 0.25}));
        assert_eq!(
            text(&validate(&bad, None, &schema())),
            "[spec: Invalid value: \"object\": replicas must not exceed maxReplicas, \
             spec.mode: Invalid value: \"object\": mode Fast must be lower case, \
             spec: Invalid value: \"object\": failed rule: self.ratio > 0.5]"
        );
        let mut named = good.clone();
        named["metadata"]["name"] = json!("x");
        assert_eq!(
            text(&validate(&named, None, &schema())),
            "[<nil>: Invalid value: \"object\": name must start with w-]"
        );
    }

    #[test]
    fn missing_fields_are_runtime_errors() {
        let errs = validate(&obj(json!({"replicas": 1, "ratio": 1})), None, &schema());
        assert_eq!(
            text(&errs),
            "[spec: Invalid value: \"object\": no such key: maxReplicas evaluating rule: replicas must not exceed maxReplicas]"
        );
    }

    #[test]
    fn transition_rules_run_only_on_updates_with_an_old_value() {
        let old = obj(json!({"replicas": 3, "maxReplicas": 5, "ratio": 1, "allowShrink": false, "immutable": "a",
            "ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]}));
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(2);
        new["spec"]["immutable"] = json!("b");
        new["spec"]["ports"] = json!([{"name": "a", "port": 1}, {"name": "b", "port": 3}, {"name": "c", "port": 4}]);
        assert_eq!(
            text(&validate(&new, Some(&old), &schema())),
            "[spec: Forbidden: replicas may not shrink, \
             spec.immutable: Invalid value: \"string\": Value is immutable, \
             spec.ports[1]: Invalid value: \"object\": port is immutable]"
        );
        // A create has no oldSelf: the transition rules do not run.
        assert_eq!(validate(&new, None, &schema()), vec![]);
    }

    #[test]
    fn unchanged_values_ratchet() {
        let old = obj(json!({"replicas": 4, "maxReplicas": 3, "ratio": 1, "allowShrink": true}));
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({"a": "b"});
        assert_eq!(validate(&new, Some(&old), &schema()), vec![]);
        new["spec"]["replicas"] = json!(5);
        assert_eq!(
            text(&validate(&new, Some(&old), &schema())),
            "[spec: Invalid value: \"object\": replicas must not exceed maxReplicas]"
        );
    }

    #[test]
    fn lists_library_and_optional_old_self() {
        let s = schema();
        let unsorted = obj(json!({"replicas": 1, "maxReplicas": 1, "ratio": 1, "allowShrink": true,
            "ports": [{"name": "a", "port": 2}, {"name": "b", "port": 1}]}));
        assert_eq!(text(&validate(&unsorted, None, &s)), "[spec.ports: Invalid value: \"array\": ports sorted]");
        let opt = json!({"type": "object", "properties": {"v": {"type": "string", "x-kubernetes-validations": [
            {"rule": "oldSelf.hasValue() || self == 'first'", "optionalOldSelf": true, "message": "new values start at first"}
        ]}}});
        assert_eq!(
            text(&validate(&json!({"v": "x"}), None, &opt)),
            "[v: Invalid value: \"string\": new values start at first]"
        );
        assert_eq!(validate(&json!({"v": "first"}), None, &opt), vec![]);
        assert_eq!(validate(&json!({"v": "x"}), Some(&json!({"v": "first"})), &opt), vec![]);
        let sums = json!({"type": "object", "properties": {"l": {"type": "array", "items": {"type": "integer"},
            "x-kubernetes-validations": [{"rule": "self.sum() == 6 && self.min() == 1 && self.max() == 3 && math.greatest(self) == 3"}]}}});
        assert_eq!(validate(&json!({"l": [1, 2, 3]}), None, &sums), vec![]);
        assert_eq!(
            text(&validate(&json!({"l": [1, 2]}), None, &sums)),
            "[l: Invalid value: \"array\": failed rule: self.sum() == 6 && self.min() == 1 && self.max() == 3 && math.greatest(self) == 3]"
        );
    }

    #[test]
    fn crd_side_checks() {
        let s = json!({"type": "object", "properties": {"a": {"type": "string"}}, "x-kubernetes-validations": [
            {"rule": "self.a == "},
            {"rule": "self.a == 'x'", "reason": "Nope"},
            {"rule": "self.a == 'x'", "fieldPath": ".b"},
            {"rule": "self.a == 'x'", "fieldPath": ".a", "messageExpression": "'a' +"},
            {"rule": ""},
            {"rule": "self.a == 'x'", "reason": "FieldValueRequired", "fieldPath": "['a']"}
        ]});
        let errs = check_schema(&s, "spec.versions[0].schema.openAPIV3Schema");
        let t: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(t.len(), 5, "{t:?}");
        assert!(
            t[0].starts_with(
                "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations[0].rule: Invalid value: "
            ),
            "{t:?}"
        );
        assert!(t[0].contains("compilation failed: "), "{t:?}");
        assert!(t[1].starts_with("spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations[1].reason: Unsupported value: \"Nope\""), "{t:?}");
        assert_eq!(
            t[2],
            "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations[2].fieldPath: Invalid value: \".b\": fieldPath must be a valid path: does not refer to a valid field"
        );
        assert!(t[3].contains("x-kubernetes-validations[3].messageExpression: Invalid value"), "{t:?}");
        assert_eq!(t[4], "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations[4].rule: Required value");
    }

    #[test]
    fn field_paths_normalize() {
        assert_eq!(normalized_field_path(".spec.x['a.b']").as_deref(), Some(".spec.x.a.b"));
        assert_eq!(normalized_field_path("spec"), None);
        assert_eq!(normalized_field_path("").as_deref(), Some(""));
    }
}
