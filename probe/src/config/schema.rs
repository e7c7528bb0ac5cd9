//! JSON Schema of the config files, generated from the `Raw*` types with
//! `schemars`: doc comments become descriptions, `deny_unknown_fields`
//! becomes `additionalProperties: false`, and the types serde reads with
//! their own code ([`super::Dur`], [`super::Size`], [`super::RawSecret`])
//! describe the strings and tables they really accept.
//!
//! `outpost-probe schema` prints [`probe`], `outpost-controller schema` the
//! controller's; both are committed under `deploy/schema/` and a test fails
//! when a committed file differs from what the types generate. TOML has no
//! null, so an optional key is just not required (no `"null"` type).
//!
//! The schema is for editors (completion, hover docs, typos underlined):
//! it describes shapes, not every rule. `check-config` stays the judge:
//! cross-field rules (exactly one kind table per check, `url` or `urls`,
//! token lengths, files that must exist) live in `validate()`.

use schemars::{JsonSchema, Schema, generate::SchemaSettings, transform::RecursiveTransform};

/// The schema of `T` as a root document titled `title`.
pub fn root_for<T: JsonSchema>(title: &str) -> serde_json::Value {
    let settings = SchemaSettings::draft2020_12()
        .for_deserialize()
        .with_transform(RecursiveTransform(drop_null));
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("title".into(), title.into());
    }
    value
}

/// TOML has no null: an `Option` is a key left out, so `"null"` is taken out
/// of `type` lists and `anyOf` alternatives, and `"default": null` (an
/// optional key's) goes; the field's description says its real default.
fn drop_null(schema: &mut Schema) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if obj.get("default").is_some_and(serde_json::Value::is_null) {
        obj.remove("default");
    }
    if let Some(serde_json::Value::Array(types)) = obj.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            obj.insert("type".into(), only);
        }
    }
    let is_null = |v: &serde_json::Value| v.get("type").is_some_and(|t| t == "null");
    if let Some(serde_json::Value::Array(alts)) = obj.get_mut("anyOf")
        && alts.iter().any(is_null)
    {
        alts.retain(|a| !is_null(a));
        if alts.len() == 1
            && let Some(serde_json::Value::Object(only)) = alts.pop()
        {
            obj.remove("anyOf");
            for (k, v) in only {
                obj.entry(k).or_insert(v);
            }
        }
    }
}

/// Pretty JSON with a final newline, as committed under `deploy/schema/`.
pub fn render(schema: &serde_json::Value) -> String {
    // Serializing a `Value` cannot fail: every key is a string.
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

/// The schema of `probe.toml` (and of a standalone checks file for
/// `outpost-probe once`: the same root with only `[[checks]]`).
pub fn probe() -> serde_json::Value {
    root_for::<super::RawProbeFile>("outpost-probe configuration (probe.toml)")
}

/// Compares `committed` (a path relative to the workspace root) with
/// `generated`; the error names the command that regenerates it. For the
/// sync tests of both crates.
pub fn check_committed(
    committed: &str,
    generated: &serde_json::Value,
    command: &str,
) -> Result<(), String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(committed);
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk == render(generated) {
        Ok(())
    } else {
        Err(format!(
            "{committed} is out of date with the config types: regenerate it with `{command} > {committed}`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_probe_schema_is_up_to_date() {
        let sync = check_committed(
            "deploy/schema/probe.schema.json",
            &probe(),
            "cargo run -q -p outpost-probe -- schema",
        );
        if let Err(e) = sync {
            panic!("{e}");
        }
    }

    #[test]
    fn strict_tables_forbid_unknown_keys_and_docs_become_descriptions() {
        let s = probe();
        assert_eq!(s["additionalProperties"], false);
        let controller = &s["$defs"]["RawController"];
        assert_eq!(controller["additionalProperties"], false);
        let url = controller["properties"]["url"]["description"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("gRPC URL of the controller"), "{url}");
        // Optional keys are not required and never `null` (TOML has none).
        assert!(controller.get("required").is_none());
        assert!(!render(&s).contains("\"null\""));
        let check = &s["$defs"]["RawCheck"];
        assert_eq!(check["additionalProperties"], false);
        assert_eq!(check["required"], serde_json::json!(["id"]));
    }

    #[test]
    fn durations_sizes_and_secrets_are_described_as_written() {
        let s = probe();
        let defs = &s["$defs"];
        assert_eq!(defs["Duration"]["type"], "string");
        assert_eq!(
            defs["Duration"]["pattern"],
            super::super::duration::DURATION_PATTERN
        );
        assert_eq!(defs["Size"]["type"], "string");
        let secret = &defs["Secret"];
        assert_eq!(secret["additionalProperties"], false);
        assert_eq!(secret["minProperties"], 1);
        assert_eq!(secret["maxProperties"], 1);
        let token = &defs["RawController"]["properties"]["token"];
        assert_eq!(token["$ref"], "#/$defs/Secret", "{token}");
        let interval = &defs["RawCheck"]["properties"]["interval"];
        assert_eq!(interval["$ref"], "#/$defs/Duration", "{interval}");
    }
}
