//! Spec values as the experiment layer and the published-claims check read them: TOML scalars as
//! strings, and typed cell-kind params whose errors name the param. A leaf: it imports only the
//! error type.

use crate::error::{Error, Result};

/// A spec value as the string grid points are compared with: strings as written, numbers and
/// booleans formatted; `None` for tables and arrays.
pub fn toml_scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A value or a list of values (as in `[[exclude]]` and `[[published]] at`) as strings; `None`
/// when any of them is not a scalar.
pub fn toml_scalars(v: &toml::Value) -> Option<Vec<String>> {
    match v {
        toml::Value::Array(items) => items.iter().map(toml_scalar).collect(),
        one => toml_scalar(one).map(|s| vec![s]),
    }
}

/// A spec param as an integer of at least `min` (0 or 1); the error names the param.
pub fn param_usize(key: &str, v: &toml::Value, min: usize) -> Result<usize> {
    let want = if min == 0 {
        "a non-negative"
    } else {
        "a positive"
    };
    v.as_integer()
        .filter(|i| *i >= min as i64)
        .map(|i| i as usize)
        .ok_or_else(|| Error::invalid(key, v, format!("expected {want} integer")))
}

/// A spec param as a number (integers accepted); the error names the param.
pub fn param_f64(key: &str, v: &toml::Value) -> Result<f64> {
    v.as_float()
        .or_else(|| v.as_integer().map(|i| i as f64))
        .ok_or_else(|| Error::invalid(key, v, "expected a number"))
}

/// A spec param as a string; the error names the param.
pub fn param_str<'a>(key: &str, v: &'a toml::Value) -> Result<&'a str> {
    v.as_str()
        .ok_or_else(|| Error::invalid(key, v, "expected a string"))
}
