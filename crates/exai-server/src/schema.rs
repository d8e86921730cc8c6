//! Tool input schemas as `tools/list` shows them: the same arguments in fewer tokens.
//!
//! The schemas derived from the argument structs are exact for exai's own argument check (which
//! keeps using them), but they spell things a client's model does not need: the `$schema` URL,
//! `$defs` with references for two-line enums, `null` as a type of every optional field, integer
//! formats, `additionalProperties: false` (exai refuses unknown arguments with a clear error
//! anyway). Every tool definition sits in the agent's context for the whole session, so what is
//! listed is the lean form: references inlined, optional fields typed by what they hold (a field
//! is optional by being absent from `required`), bookkeeping keys dropped.

use rmcp::model::{JsonObject, Tool};
use serde_json::{Map, Value};

/// Keys that cost tokens and tell a model nothing it acts on.
const DROPPED: &[&str] = &["$schema", "$defs", "format", "additionalProperties"];

/// `tool` with its input schema in the lean form.
pub fn lean_tool(tool: &Tool) -> Tool {
    let mut lean = tool.clone();
    lean.input_schema = std::sync::Arc::new(lean_schema(&tool.input_schema));
    lean
}

/// The lean form of one JSON schema (an object schema with `$defs`, as schemars derives).
pub fn lean_schema(schema: &JsonObject) -> JsonObject {
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    match lean_value(&Value::Object(schema.clone()), &defs, 0) {
        Value::Object(map) => map,
        _ => schema.clone(),
    }
}

/// Deep enough for any argument struct; a reference cycle stops here instead of recursing on.
const MAX_DEPTH: usize = 32;

fn lean_value(node: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    match node {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| lean_value(v, defs, depth + 1))
                .collect(),
        ),
        Value::Object(map) if depth < MAX_DEPTH => lean_object(map, defs, depth),
        other => other.clone(),
    }
}

fn lean_object(map: &Map<String, Value>, defs: &Map<String, Value>, depth: usize) -> Value {
    if let Some(target) = map
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| defs.get(name))
        .and_then(Value::as_object)
    {
        // The referring node's own keys (a description) win over the definition's.
        let mut merged = target.clone();
        for (k, v) in map.iter().filter(|(k, _)| k.as_str() != "$ref") {
            merged.insert(k.clone(), v.clone());
        }
        return lean_object(&merged, defs, depth + 1);
    }
    let mut out = Map::new();
    for (key, value) in map {
        if DROPPED.contains(&key.as_str()) || (key == "minimum" && is_unsigned_floor(map, value)) {
            continue;
        }
        match key.as_str() {
            "type" => {
                out.insert(key.clone(), without_null_type(value));
            }
            "anyOf" => match without_null_branch(value) {
                // `T or null`: the field is just a T.
                Some(only) => {
                    if let Value::Object(inner) = lean_value(only, defs, depth + 1) {
                        for (k, v) in inner {
                            out.entry(k).or_insert(v);
                        }
                    }
                }
                None => {
                    out.insert(key.clone(), lean_value(value, defs, depth + 1));
                }
            },
            "properties" => {
                let props = value
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(name, s)| (name.clone(), lean_value(s, defs, depth + 1)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(props));
            }
            _ => {
                out.insert(key.clone(), lean_value(value, defs, depth + 1));
            }
        }
    }
    Value::Object(out)
}

/// `"minimum": 0` on an unsigned integer says what the type already says.
fn is_unsigned_floor(map: &Map<String, Value>, value: &Value) -> bool {
    value.as_f64() == Some(0.0)
        && map
            .get("format")
            .and_then(Value::as_str)
            .is_some_and(|f| f.starts_with("uint"))
}

/// `["string", "null"]` → `"string"`; other types unchanged.
fn without_null_type(value: &Value) -> Value {
    let Some(types) = value.as_array() else {
        return value.clone();
    };
    let kept: Vec<&Value> = types
        .iter()
        .filter(|t| t.as_str() != Some("null"))
        .collect();
    match kept.as_slice() {
        [one] => (*one).clone(),
        _ => Value::Array(kept.into_iter().cloned().collect()),
    }
}

/// The one non-null branch of `anyOf: [X, {"type": "null"}]`.
fn without_null_branch(value: &Value) -> Option<&Value> {
    let branches = value.as_array()?;
    let is_null = |b: &Value| b.get("type").and_then(Value::as_str) == Some("null");
    let kept: Vec<&Value> = branches.iter().filter(|b| !is_null(b)).collect();
    (kept.len() == 1 && branches.len() == 2).then(|| kept[0])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn lean(v: Value) -> Value {
        Value::Object(lean_schema(v.as_object().unwrap()))
    }

    #[test]
    fn optional_fields_references_and_bookkeeping_go() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": { "Mode": { "type": "string", "enum": ["a", "b"], "description": "How." } },
            "additionalProperties": false,
            "type": "object",
            "properties": {
                "query": { "type": "string", "description": "What." },
                "limit": { "type": ["integer", "null"], "format": "uint32", "minimum": 0, "maximum": 100 },
                "step_number": { "type": "integer", "format": "uint32", "minimum": 1 },
                "mode": { "anyOf": [{ "$ref": "#/$defs/Mode" }, { "type": "null" }], "description": "Mode." },
                "tags": { "type": ["array", "null"], "items": { "type": "string" } },
                "format": { "type": "string", "description": "a property named like a dropped key stays" }
            },
            "required": ["query"]
        });
        assert_eq!(
            lean(schema),
            json!({
                "type": "object",
                "properties": {
                    "query": { "type": "string", "description": "What." },
                    "limit": { "type": "integer", "maximum": 100 },
                    "step_number": { "type": "integer", "minimum": 1 },
                    "mode": { "type": "string", "enum": ["a", "b"], "description": "Mode." },
                    "tags": { "type": "array", "items": { "type": "string" } },
                    "format": { "type": "string", "description": "a property named like a dropped key stays" }
                },
                "required": ["query"]
            })
        );
    }

    #[test]
    fn a_reference_cycle_stops() {
        let schema = json!({
            "$defs": { "Node": { "type": "object", "properties": { "next": { "$ref": "#/$defs/Node" } } } },
            "type": "object",
            "properties": { "root": { "$ref": "#/$defs/Node" } }
        });
        let out = serde_json::to_string(&lean(schema)).unwrap();
        assert!(out.len() < 10_000, "{}", out.len());
    }
}
