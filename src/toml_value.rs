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

/// A spec param as a string; the error names the param.
pub fn param_str<'a>(key: &str, v: &'a toml::Value) -> Result<&'a str> {
    v.as_str()
        .ok_or_else(|| Error::invalid(key, v, "expected a string"))
}

/// A cell kind's `[params]` read into its serde struct (`#[serde(default, deny_unknown_fields)]`,
/// so the defaults are the struct's): an unknown key or a wrong type is one error naming the key
/// (and for an unknown key, the fields it has).
pub fn from_params<T: serde::de::DeserializeOwned>(
    params: &indexmap::IndexMap<String, toml::Value>,
) -> Result<T> {
    let table: toml::Table = params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            let why = e.to_string().trim().replace('\n', " ");
            Error::invalid("params", "[params]", why)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct P {
        draws: usize,
        rate: f64,
    }

    impl Default for P {
        fn default() -> Self {
            P {
                draws: 10,
                rate: 0.5,
            }
        }
    }

    fn read(text: &str) -> Result<P> {
        from_params(&text.parse::<toml::Table>().unwrap().into_iter().collect())
    }

    #[test]
    fn params_take_defaults_integers_as_numbers_and_name_bad_keys() {
        assert_eq!(read("").unwrap(), P::default());
        assert_eq!(
            read("rate = 1").unwrap(),
            P {
                draws: 10,
                rate: 1.0
            }
        );
        let e = read("drawz = 3").unwrap_err().to_string();
        assert!(
            e.contains("drawz") && e.contains("draws") && e.contains("rate"),
            "{e}"
        );
        let e = read("draws = -1").unwrap_err().to_string();
        assert!(e.contains("draws") && !e.contains('\n'), "{e}");
    }
}
