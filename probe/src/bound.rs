//! Bounds on what the probe records from a target.
//!
//! A hostile or broken target decides the text a check sees: a 60 KB
//! `Location`, a header value, a body excerpt, an error string. Everything a
//! result carries passes through here once, where the probe serializes it
//! for its outbox ([`crate::outbox::to_wire`]: [`clip_details`] for the
//! details, [`clip`] for the failure message):
//!
//! - every string value in the details: at most [`MAX_VALUE`] (1 KiB);
//! - the failure message: at most [`MAX_MESSAGE`] (2 KiB).
//!
//! A clipped value keeps its first bytes (cut on a character boundary) and
//! ends with `… (N bytes)`, N the original length, so a reader knows it was
//! cut and by how much. The controller refuses a failure message over
//! `server.probe_limits.max_failure_message` (default 8 KiB), well above.

use std::borrow::Cow;

use serde_json::Value;

/// Bytes kept of one recorded value (a header, a Location, an excerpt).
pub const MAX_VALUE: usize = 1024;
/// Bytes kept of a failure message.
pub const MAX_MESSAGE: usize = 2048;

/// `s` unchanged when it fits in `max` bytes, else its first bytes (on a
/// character boundary) followed by `… (N bytes)`.
pub fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let cut = (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    Cow::Owned(format!("{}… ({} bytes)", &s[..cut], s.len()))
}

/// The wire form of a probe's observation with every remembered secret
/// scrubbed and every URL redacted ([`crate::redact`]), and every string
/// value clipped to [`MAX_VALUE`] (unchanged, key order included, when
/// none of it applies).
pub fn clip_details(observed: &crate::check::observed::Observed) -> String {
    let wire = observed.to_wire();
    let text = crate::redact::scrub(&wire).into_owned();
    if text.len() <= MAX_VALUE && !text.contains("://") {
        return text; // no string in it can be longer, nor hold a URL
    }
    let Ok(mut v) = serde_json::from_str::<Value>(&text) else {
        return text;
    };
    let redacted = crate::redact::json(&mut v);
    if !clip_json(&mut v, MAX_VALUE) && !redacted {
        return text;
    }
    serde_json::to_string(&v).unwrap_or(text)
}

/// Clips every string in `v` (object values, array items; not keys, which
/// are the schema's) to `max` bytes. True when anything was clipped.
pub fn clip_json(v: &mut Value, max: usize) -> bool {
    match v {
        Value::String(s) if s.len() > max => {
            *s = clip(s, max).into_owned();
            true
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, item| clip_json(item, max) | any),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |any, item| clip_json(item, max) | any),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn short_values_pass_long_ones_keep_a_prefix_and_their_length() {
        assert_eq!(clip("ok", 4), "ok");
        let long = "x".repeat(60_000);
        let c = clip(&long, MAX_VALUE);
        assert!(c.starts_with(&"x".repeat(MAX_VALUE)));
        assert!(c.ends_with("… (60000 bytes)"), "{c}");
        assert!(c.len() < MAX_VALUE + 32);
        // A cut never splits a character.
        assert_eq!(clip("ééé", 3), "é… (6 bytes)");
    }

    #[test]
    fn json_strings_are_clipped_at_any_depth() {
        let mut v = serde_json::json!({
            "location": "y".repeat(5000),
            "hops": [{ "header": "z".repeat(3000), "status": 302 }],
            "short": "fine",
        });
        assert!(clip_json(&mut v, MAX_VALUE));
        let text = v.to_string();
        assert!(text.len() < 4 * MAX_VALUE, "{}", text.len());
        assert_eq!(v["short"], "fine");
        assert_eq!(v["hops"][0]["status"], 302);
        assert!(v["location"].as_str().unwrap().ends_with("(5000 bytes)"));
    }
}
