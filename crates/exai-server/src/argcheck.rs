//! A first look at tool arguments against the tool's own input schema, so that a wrong type or
//! a missing field is answered with the argument's name and what it should be. (The SDK's
//! deserialisation error alone says "expected u64" without saying which argument.) The typed
//! deserialisation that follows stays the authority; this only makes the common mistakes clear.

use serde_json::{Map, Value};

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    // Arguments are untrusted: cut on a character boundary, whatever the bytes.
    let shown = exai_core::text::clip_with_ellipsis(&value.to_string(), 40);
    format!("{kind} ({shown})")
}

/// `Err` with a readable message when `args` plainly do not fit `schema`.
pub fn check(
    tool: &str,
    schema: &Map<String, Value>,
    args: Option<&Map<String, Value>>,
) -> Result<(), String> {
    let empty = Map::new();
    let args = args.unwrap_or(&empty);
    let properties = schema.get("properties").and_then(Value::as_object);
    let mut problems = Vec::new();
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !args.contains_key(name) {
                problems.push(format!("`{name}` is required"));
            }
        }
    }
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (name, value) in args {
        let Some(prop) = properties
            .and_then(|p| p.get(name))
            .and_then(Value::as_object)
        else {
            if closed {
                let known: Vec<&str> = properties
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                problems.push(if known.is_empty() {
                    format!("`{name}` is not an argument of `{tool}`, which takes none")
                } else {
                    format!(
                        "`{name}` is not an argument of `{tool}` (it takes {})",
                        known.join(", ")
                    )
                });
            }
            continue;
        };
        let expected: Vec<&str> = match prop.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => continue,
        };
        if !expected.iter().any(|t| type_matches(t, value)) {
            let wanted = expected
                .iter()
                .filter(|t| **t != "null")
                .copied()
                .collect::<Vec<_>>()
                .join(" or ");
            problems.push(format!(
                "`{name}` must be {} {wanted}, not {}",
                article(&wanted),
                describe(value)
            ));
            continue;
        }
        if let (Some(min), Some(n)) = (prop.get("minimum").and_then(Value::as_f64), value.as_f64())
            && n < min
        {
            problems.push(format!("`{name}` must be at least {min}, not {n}"));
        }
        if let (Some(max), Some(n)) = (prop.get("maximum").and_then(Value::as_f64), value.as_f64())
            && n > max
        {
            problems.push(format!("`{name}` must be at most {max}, not {n}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "invalid arguments for `{tool}`: {}",
            problems.join("; ")
        ))
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn long_non_ascii_values_are_cut_on_a_character_boundary() {
        let schema = obj(json!({
            "type": "object",
            "properties": { "limit": {"type": ["integer", "null"]} }
        }));
        for n in 1..30 {
            let e = check("t", &schema, Some(&obj(json!({"limit": "é".repeat(n)})))).unwrap_err();
            assert!(e.contains("`limit` must be an integer"), "{e}");
        }
    }

    #[test]
    fn names_the_argument() {
        let schema = obj(json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["query"],
            "properties": {
                "query": {"type": "string"},
                "limit": {"type": ["integer", "null"], "minimum": 1, "maximum": 100},
                "flag": {"type": "boolean"}
            }
        }));
        assert!(check("t", &schema, Some(&obj(json!({"query": "x", "limit": 5})))).is_ok());
        assert!(
            check(
                "t",
                &schema,
                Some(&obj(json!({"query": "x", "limit": null})))
            )
            .is_ok()
        );
        let e = check(
            "t",
            &schema,
            Some(&obj(json!({"query": "x", "limit": "5"}))),
        )
        .unwrap_err();
        assert!(
            e.contains("`limit` must be an integer, not a string (\"5\")"),
            "{e}"
        );
        let e = check("t", &schema, Some(&obj(json!({"limit": 500})))).unwrap_err();
        assert!(
            e.contains("`query` is required") && e.contains("at most 100"),
            "{e}"
        );
        let e = check("t", &schema, Some(&obj(json!({"query": "x", "limt": 1})))).unwrap_err();
        assert!(
            e.contains("`limt` is not an argument") && e.contains("limit"),
            "{e}"
        );
        let e = check(
            "t",
            &schema,
            Some(&obj(json!({"query": "x", "limit": 1.5}))),
        )
        .unwrap_err();
        assert!(e.contains("fractional"), "{e}");
    }
}
