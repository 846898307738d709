//! Field errors as upstream's `k8s.io/apimachinery/pkg/util/validation/field`
//! prints them: `spec.ports[0].name: Required value`.

use std::fmt;

/// The kind of a field error (upstream `field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    TypeInvalid,
}

impl ErrorType {
    /// Human text, e.g. `Invalid value`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
            ErrorType::TypeInvalid => "Invalid value",
        }
    }
    /// `metav1.CauseType`, e.g. `FieldValueInvalid`.
    pub fn cause_type(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }
}

/// One invalid field: `field: <type>: <value>: <detail>`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub kind: ErrorType,
    /// Path like `spec.ports[0].nodePort`.
    pub field: String,
    /// The offending value, if the error type shows one.
    pub value: Option<serde_json::Value>,
    pub detail: String,
}

impl FieldError {
    fn new(
        kind: ErrorType,
        field: impl Into<String>,
        value: Option<serde_json::Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError { kind, field: field.into(), value, detail: detail.into() }
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, field, None, detail)
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, field, None, detail)
    }
    pub fn invalid(field: impl Into<String>, value: impl Into<serde_json::Value>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, field, Some(value.into()), detail)
    }
    pub fn duplicate(field: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        Self::new(ErrorType::Duplicate, field, Some(value.into()), "")
    }
    pub fn not_found(field: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        Self::new(ErrorType::NotFound, field, Some(value.into()), "")
    }
    /// `Unsupported value: "X": supported values: "A", "B"`.
    pub fn not_supported(field: impl Into<String>, value: impl Into<serde_json::Value>, valid: &[&str]) -> Self {
        let quoted: Vec<String> = valid.iter().map(|v| format!("{v:?}")).collect();
        let detail = if quoted.is_empty() { String::new() } else { format!("supported values: {}", quoted.join(", ")) };
        Self::new(ErrorType::NotSupported, field, Some(value.into()), detail)
    }
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self::new(ErrorType::TooLong, field, None, format!("must have at most {max} bytes"))
    }
    /// `Too many: <actual>: must have at most <max> items`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        Self::new(ErrorType::TooMany, field, Some(actual.into()), format!("must have at most {max} items"))
    }
    /// `Invalid value: <value>: <detail>` for a value of the wrong type.
    pub fn type_invalid(
        field: impl Into<String>,
        value: impl Into<serde_json::Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(ErrorType::TypeInvalid, field, Some(value.into()), detail)
    }
    pub fn internal(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, field, None, detail)
    }

    /// Everything after `field: ` (upstream `ErrorBody`), used as the cause message.
    pub fn body(&self) -> String {
        let mut s = match self.kind {
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal => {
                self.kind.as_str().to_string()
            }
            _ => format!("{}: {}", self.kind.as_str(), format_value(self.value.as_ref())),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

/// Values print as Go's `%#v` would for the simple types: strings quoted, numbers bare.
fn format_value(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "null".to_string(),
        Some(serde_json::Value::String(s)) => format!("{s:?}"),
        Some(other) => other.to_string(),
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Upstream's aggregate: one error alone, several as `[a, b]`.
pub fn aggregate(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => format!("[{}]", many.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_upstream() {
        assert_eq!(FieldError::required("spec.ports[1].name", "").to_string(), "spec.ports[1].name: Required value");
        assert_eq!(
            FieldError::invalid("spec.ports[0].nodePort", 31111, "provided port is already allocated").to_string(),
            "spec.ports[0].nodePort: Invalid value: 31111: provided port is already allocated"
        );
        assert_eq!(
            FieldError::not_supported("spec.type", "Foo", &["ClusterIP", "NodePort"]).to_string(),
            "spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"NodePort\""
        );
        let two = [FieldError::required("a", ""), FieldError::duplicate("b", "x")];
        assert_eq!(aggregate(&two), "[a: Required value, b: Duplicate value: \"x\"]");
    }
}
