//! Request parameters: a JSON object from a POST body, or the flattened
//! form (`InstanceIds.0=…`, `Filters.0.Values.1=…`) of a GET query, with
//! typed accessors that answer the API's validation errors.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::ApiError;
use crate::state::parse_api_time;

/// One PostgreSQL `Filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) name: String,
    pub(crate) values: Vec<String>,
}

/// The parameters of one call.
#[derive(Debug)]
pub(crate) struct Params {
    map: Map<String, Value>,
    /// Values came from a form: numbers and booleans arrive as strings.
    form: bool,
    /// The product's code for a bad value.
    invalid_code: &'static str,
}

fn invalid_parameter(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidParameter", message)
}

impl Params {
    /// Parse a POST body. An empty body is an empty object.
    pub(crate) fn from_json(body: &[u8], invalid_code: &'static str) -> Result<Self, ApiError> {
        let map = if body.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => map,
                Ok(_) => return Err(invalid_parameter("the request body is not a JSON object")),
                Err(e) => {
                    return Err(invalid_parameter(format!(
                        "the request body is not valid JSON: {e}"
                    )))
                }
            }
        };
        Ok(Self {
            map,
            form: false,
            invalid_code,
        })
    }

    /// Parse a GET query in the SDKs' flattened form.
    pub(crate) fn from_query(query: &str, invalid_code: &'static str) -> Result<Self, ApiError> {
        let mut root = Value::Object(Map::new());
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let path: Vec<&str> = key.split('.').collect();
            insert_path(&mut root, &path, Value::String(value.into_owned()))
                .map_err(|why| invalid_parameter(format!("query parameter {key}: {why}")))?;
        }
        let map = match root {
            Value::Object(map) => map,
            // `root` starts as an object and `insert_path` never replaces it.
            _ => unreachable!("the root of the query is an object"),
        };
        Ok(Self {
            map,
            form: true,
            invalid_code,
        })
    }

    /// The parameters as one JSON object (what the request carried).
    pub(crate) fn to_json(&self) -> Value {
        Value::Object(self.map.clone())
    }

    fn bad_value(&self, message: String) -> ApiError {
        ApiError::new(self.invalid_code, message)
    }

    /// Refuse any top-level field not in `known` with `UnknownParameter`.
    pub(crate) fn check_known(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(name) => Err(ApiError::new(
                "UnknownParameter",
                format!("The parameter `{name}` is not recognized."),
            )),
            None => Ok(()),
        }
    }

    /// Whether the field was sent (and is not JSON null).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.map.get(name).is_some_and(|v| !v.is_null())
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// A field as raw JSON (nested objects), when sent.
    pub(crate) fn raw(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.bad_value(format!(
                "The value type of parameter `{name}` is incorrect: expected a string, got {other}."
            ))),
        }
    }

    /// A string that must be present and non-empty (`MissingParameter`).
    pub(crate) fn required_string(&self, name: &str) -> Result<String, ApiError> {
        match self.string(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(ApiError::new(
                "MissingParameter",
                format!("The request is missing a required parameter `{name}`."),
            )),
        }
    }

    fn value_as_int(&self, name: &str, value: &Value) -> Result<i64, ApiError> {
        let parsed = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) if self.form => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        parsed.ok_or_else(|| {
            self.bad_value(format!(
                "The value type of parameter `{name}` is incorrect: expected an integer, got {value}."
            ))
        })
    }

    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| self.value_as_int(name, v))
            .transpose()
    }

    /// `Offset` and `Limit`, as `(offset, limit)`. An absent `Limit` (or 0
    /// where `zero_is_default`) is `default`, any other must be in
    /// 1..=`max`; `Offset` counts items and must not be negative.
    pub(crate) fn paging(
        &self,
        default: i64,
        max: i64,
        zero_is_default: bool,
    ) -> Result<(usize, usize), ApiError> {
        let limit = match self.int("Limit")? {
            None => default,
            Some(0) if zero_is_default => default,
            Some(l) if (1..=max).contains(&l) => l,
            Some(l) => {
                return Err(self.bad_value(format!("Limit must be between 1 and {max}, got {l}.")))
            }
        };
        let offset = self.int("Offset")?.unwrap_or(0);
        if offset < 0 {
            return Err(self.bad_value(format!("Offset must not be negative, got {offset}.")));
        }
        // Both are non-negative and bounded by i64, which fits usize on 64-bit.
        Ok((
            usize::try_from(offset).unwrap_or(usize::MAX),
            limit as usize,
        ))
    }

    /// An API time (`YYYY-MM-DD hh:mm:ss`, UTC+8), when sent.
    pub(crate) fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.string(name)?
            .map(|text| {
                parse_api_time(&text).ok_or_else(|| {
                    self.bad_value(format!("{name} must be YYYY-MM-DD hh:mm:ss, got {text:?}."))
                })
            })
            .transpose()
    }

    fn list(&self, name: &str) -> Result<Option<&Vec<Value>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(self.bad_value(format!(
                "The value type of parameter `{name}` is incorrect: expected a list, got {other}."
            ))),
        }
    }

    pub(crate) fn string_list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        let Some(items) = self.list(name)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.bad_value(format!(
                    "The value type of parameter `{name}` is incorrect: expected strings, got {other}."
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub(crate) fn int_list(&self, name: &str) -> Result<Option<Vec<i64>>, ApiError> {
        let Some(items) = self.list(name)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| self.value_as_int(name, v))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// `Filters`: a list of `{Name, Values}`; other fields are `UnknownParameter`.
    pub(crate) fn filters(&self) -> Result<Vec<Filter>, ApiError> {
        let Some(items) = self.list("Filters")? else {
            return Ok(Vec::new());
        };
        let mut filters = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Value::Object(obj) = item else {
                return Err(self.bad_value(format!(
                    "The value type of parameter `Filters.{i}` is incorrect: expected an object."
                )));
            };
            if let Some(extra) = obj.keys().find(|k| *k != "Name" && *k != "Values") {
                return Err(ApiError::new(
                    "UnknownParameter",
                    format!("The parameter `Filters.{i}.{extra}` is not recognized."),
                ));
            }
            let name = match obj.get("Name") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => {
                    return Err(ApiError::new(
                        "MissingParameter",
                        format!("The request is missing a required parameter `Filters.{i}.Name`."),
                    ))
                }
            };
            let values = match obj.get("Values") {
                Some(Value::Array(values)) => values
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(self.bad_value(format!(
                            "The value type of parameter `Filters.{i}.Values` is incorrect: expected strings, got {other}."
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                None | Some(Value::Null) => Vec::new(),
                Some(other) => {
                    return Err(self.bad_value(format!(
                        "The value type of parameter `Filters.{i}.Values` is incorrect: expected a list, got {other}."
                    )))
                }
            };
            filters.push(Filter { name, values });
        }
        Ok(filters)
    }
}

/// Put `value` at `path` inside `node`, creating objects, and arrays for
/// numeric segments.
fn insert_path(node: &mut Value, path: &[&str], value: Value) -> Result<(), &'static str> {
    let Some((first, rest)) = path.split_first() else {
        return Err("empty name");
    };
    if first.is_empty() {
        return Err("empty name segment");
    }
    let next_is_index = rest.first().is_some_and(|s| s.parse::<usize>().is_ok());
    let fresh = || {
        if next_is_index {
            Value::Array(Vec::new())
        } else {
            Value::Object(Map::new())
        }
    };
    let slot: &mut Value = match node {
        Value::Object(map) => {
            if rest.is_empty() {
                map.insert((*first).to_string(), value);
                return Ok(());
            }
            map.entry((*first).to_string()).or_insert_with(fresh)
        }
        Value::Array(items) => {
            let index: usize = first.parse().map_err(|_| "mixed list and field names")?;
            // The SDKs number items from 0 without gaps; refuse absurd indexes
            // so that one parameter cannot allocate a huge list.
            if index > items.len() + 1000 {
                return Err("list index out of range");
            }
            while items.len() <= index {
                items.push(Value::Null);
            }
            if rest.is_empty() {
                items[index] = value;
                return Ok(());
            }
            let slot = &mut items[index];
            if slot.is_null() {
                *slot = fresh();
            }
            slot
        }
        _ => return Err("a name is used both as a value and as a group"),
    };
    insert_path(slot, rest, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_query_becomes_nested_json() {
        let p = Params::from_query(
            "Limit=20&Offset=0&InstanceIds.0=crs-a&InstanceIds.1=crs-b&SearchKey=prod+cache&Filters.0.Name=db-instance-id&Filters.0.Values.0=postgres-x",
            "InvalidParameterValue",
        )
        .expect("parses");
        assert_eq!(p.int("Limit").expect("int"), Some(20));
        assert_eq!(
            p.string_list("InstanceIds").expect("list"),
            Some(vec!["crs-a".to_string(), "crs-b".to_string()])
        );
        assert_eq!(
            p.string("SearchKey").expect("s"),
            Some("prod cache".to_string())
        );
        let f = p.filters().expect("filters");
        assert_eq!(f[0].name, "db-instance-id");
        assert_eq!(f[0].values, vec!["postgres-x".to_string()]);
    }

    #[test]
    fn json_types_are_strict() {
        let p = Params::from_json(
            br#"{"Limit": "20", "InstanceId": 5}"#,
            "InvalidParameterValue",
        )
        .expect("parses");
        assert_eq!(
            p.int("Limit").expect_err("string").code,
            "InvalidParameterValue"
        );
        assert_eq!(
            p.string("InstanceId").expect_err("number").code,
            "InvalidParameterValue"
        );
        assert_eq!(
            p.required_string("BackupId").expect_err("missing").code,
            "MissingParameter"
        );
        assert_eq!(
            p.check_known(&["Limit"]).expect_err("unknown").code,
            "UnknownParameter"
        );
        assert!(Params::from_json(b"[1]", "X").is_err());
        assert!(Params::from_json(b"", "X").is_ok());
    }

    #[test]
    fn paging_and_times_answer_the_services_code() {
        let params = |body: &str| Params::from_json(body.as_bytes(), "Svc.Bad").expect("parses");
        assert_eq!(params("{}").paging(20, 100, false).expect("ok"), (0, 20));
        let zero = params(r#"{"Limit": 0, "Offset": 30}"#);
        assert_eq!(zero.paging(10, 100, true).expect("ok"), (30, 10));
        let err = zero
            .paging(10, 100, false)
            .expect_err("0 is no default here");
        assert_eq!(err.code, "Svc.Bad");
        assert_eq!(err.message, "Limit must be between 1 and 100, got 0.");
        let err = params(r#"{"Offset": -1}"#)
            .paging(10, 100, false)
            .expect_err("negative");
        assert_eq!(err.message, "Offset must not be negative, got -1.");

        let p = params(r#"{"Begin": "2019-02-26 00:44:25", "End": "yesterday"}"#);
        assert_eq!(
            p.time("Begin").expect("ok"),
            DateTime::from_timestamp(1551113065, 0)
        );
        assert_eq!(p.time("Missing").expect("ok"), None);
        let err = p.time("End").expect_err("bad");
        assert_eq!(err.code, "Svc.Bad");
        assert_eq!(
            err.message,
            "End must be YYYY-MM-DD hh:mm:ss, got \"yesterday\"."
        );
    }
}
