//! Tests only: every finding the unit tests make has its evidence checked against the types that
//! docs/schema/audit.json declares for its id, so that a field is always of one JSON type (a count
//! always an integer, a share always a float, a sysctl text always a string). The check runs on
//! every finding that passes through [`super::sort_findings`] in any unit test; the tests below
//! check the schema itself: one type per field name across ids, and a declaration for every id the
//! rules' source names.

use std::sync::OnceLock;

use serde_json::Value;

use super::Finding;

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::from_str(include_str!("../../docs/schema/audit.json")).expect("audit schema"))
}

/// The evidence schemas by id: `(const id or None for a pattern, pattern prefix, schema)`.
fn cases() -> Vec<(String, &'static Value)> {
    let cases = schema()["$defs"]["finding"]["allOf"].as_array().expect("allOf of finding");
    cases
        .iter()
        .map(|case| {
            let id = &case["if"]["properties"]["id"];
            let name = id["const"].as_str().map_or_else(
                || id["pattern"].as_str().expect("const or pattern").trim_start_matches('^').replace("\\.", "."),
                str::to_string,
            );
            (name, &case["then"]["properties"]["evidence"])
        })
        .collect()
}

/// The evidence schema of a finding id (`profile.` ids share one).
fn evidence_schema(id: &str) -> Option<&'static Value> {
    cases().into_iter().find(|(name, _)| name == id || (name.ends_with('.') && id.starts_with(name))).map(|(_, s)| s)
}

/// Whether `value` is of the JSON type `name`. An integer field must hold an integer and a number
/// field a float (serde writes a float with its `.0`), so that a field never switches between them.
fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_f64(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("unknown type {other}"),
    }
}

fn resolve(value: &'static Value) -> &'static Value {
    match value["$ref"].as_str() {
        Some(reference) => schema().pointer(reference.trim_start_matches('#')).expect("$ref within the schema"),
        None => value,
    }
}

/// What is wrong with `value` under `schema` (the keywords the evidence schemas use), if anything.
fn problems(value: &Value, schema: &'static Value, at: &str) -> Vec<String> {
    let schema = resolve(schema);
    if let Some(options) = schema["oneOf"].as_array() {
        return match options.iter().any(|o| problems(value, o, at).is_empty()) {
            true => Vec::new(),
            false => vec![format!("{at}: {value} matches none of {}", Value::from(options.clone()))],
        };
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return Vec::new(),
    };
    if !types.iter().any(|t| is_type(value, t)) {
        return vec![format!("{at}: {value} is not {types:?}")];
    }
    let mut found = Vec::new();
    if let (Value::Object(map), Some(properties)) = (value, schema["properties"].as_object()) {
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !map.contains_key(required) {
                found.push(format!("{at}: {required} is missing"));
            }
        }
        for (key, field) in map {
            match properties.get(key) {
                Some(field_schema) => found.extend(problems(field, field_schema, &format!("{at}.{key}"))),
                None => found.push(format!("{at}: {key} is not declared")),
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        items.iter().enumerate().for_each(|(i, item)| found.extend(problems(item, item_schema, &format!("{at}[{i}]"))));
    }
    found
}

/// Panics unless every finding's evidence has the fields and types its id declares.
pub(crate) fn check(findings: &[Finding]) {
    for f in findings {
        let schema =
            evidence_schema(&f.id).unwrap_or_else(|| panic!("{} has no evidence in docs/schema/audit.json", f.id));
        let found = problems(&Value::Object(f.evidence.clone()), schema, &f.id);
        assert!(found.is_empty(), "evidence of {} does not match docs/schema/audit.json:\n{}", f.id, found.join("\n"));
    }
}

#[test]
fn each_evidence_field_has_one_type_across_every_finding_id() {
    let mut types: std::collections::BTreeMap<String, (String, String)> = Default::default();
    for (id, evidence) in cases() {
        for (field, schema) in evidence["properties"].as_object().expect("evidence properties") {
            let schema = resolve(schema);
            let mut declared: Vec<&str> = match &schema["type"] {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => panic!("{id}.{field} declares no type"),
            };
            // Absent is `null`: a nullable field still has one type when it is present.
            declared.retain(|t| *t != "null");
            assert_eq!(declared.len(), 1, "{id}.{field} has {declared:?}");
            let (other_id, other) = types.entry(field.clone()).or_insert((id.clone(), declared[0].to_string()));
            assert_eq!(other, declared[0], "{field} is {} in {id} but {other} in {other_id}", declared[0]);
        }
    }
}

#[test]
fn every_finding_id_in_the_rules_source_has_evidence_declared() {
    let sources = [
        include_str!("mod.rs"),
        include_str!("churn.rs"),
        include_str!("conntrack.rs"),
        include_str!("persist.rs"),
        include_str!("syn.rs"),
        include_str!("../profile/mod.rs"),
    ];
    let mut ids = Vec::new();
    for source in sources {
        // Ids are the first argument of `finding(` (on its line or the next) or `id: "..."`.
        let mut rest = source;
        while let Some(at) = rest.find("finding(\n").or_else(|| rest.find("id: \"")) {
            rest = &rest[at..];
            let Some(open) = rest.find('"') else { break };
            let text = &rest[open + 1..];
            let id = &text[..text.find('"').unwrap_or(0)];
            if id.contains('.') && !id.contains(' ') {
                ids.push(id.to_string());
            }
            rest = &text[1..];
        }
    }
    assert!(ids.len() >= 25, "found only {ids:?}");
    for id in ids {
        assert!(evidence_schema(&id).is_some(), "{id} has no evidence declared in docs/schema/audit.json");
    }
    assert!(evidence_schema("profile.net.ipv4.tcp_tw_reuse").is_some());
}

#[test]
fn a_field_of_the_wrong_type_is_refused() {
    let schema = evidence_schema("tw-reuse.needs-timestamps").expect("declared");
    let found = problems(&serde_json::json!({ "tcp_tw_reuse": "1", "tcp_timestamps": 0 }), schema, "e");
    assert_eq!(found, vec!["e.tcp_tw_reuse: \"1\" is not [\"integer\"]".to_string()]);
    let found = problems(&serde_json::json!({ "tcp_tw_reuse": 1, "tcp_timestamps": 0.0 }), schema, "e");
    assert_eq!(found.len(), 1, "a float is not an integer: {found:?}");
    let found = problems(&serde_json::json!({ "tcp_tw_reuse": 1 }), schema, "e");
    assert_eq!(found, vec!["e: tcp_timestamps is missing".to_string()]);
}
