//! JSON Schema of `controller.toml`, generated from [`super::RawControllerFile`]
//! and the section types it names (see `outpost_probe::config::schema` for
//! how and what the schema does not say). `outpost-controller schema` prints
//! it; `deploy/schema/controller.schema.json` is the committed copy.

/// The schema as a JSON value.
pub fn controller() -> serde_json::Value {
    outpost_probe::config::schema::root_for::<super::RawControllerFile>(
        "outpost-controller configuration (controller.toml)",
    )
}

/// The schema as committed: pretty JSON with a final newline.
pub fn render() -> String {
    outpost_probe::config::schema::render(&controller())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_controller_schema_is_up_to_date() {
        let sync = outpost_probe::config::schema::check_committed(
            "deploy/schema/controller.schema.json",
            &controller(),
            "cargo run -q -p outpost-controller -- schema",
        );
        if let Err(e) = sync {
            panic!("{e}");
        }
    }

    #[test]
    fn sections_are_strict_and_secrets_are_references() {
        let s = controller();
        assert_eq!(s["additionalProperties"], false);
        for def in ["RawServer", "RawStore", "RawSink", "RawRoute", "RawCheck"] {
            assert_eq!(s["$defs"][def]["additionalProperties"], false, "{def}");
        }
        let url = &s["$defs"]["RawStore"]["properties"]["url"];
        assert_eq!(url["$ref"], "#/$defs/Secret", "{url}");
    }
}
