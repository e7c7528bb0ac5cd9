//! Redaction of secrets in URLs, wherever a URL is shown, stored or sent.
//!
//! A target URL may carry credentials: `https://user:pass@host/`, or a query
//! parameter such as `?access_token=…`, `&sig=…`, `X-Amz-Signature=…`. The
//! probe passes every string it records through [`text`] once (with
//! [`crate::bound`], in [`crate::outbox::to_wire`]): the details' URL fields
//! (`url`, hops, `location`, flow steps) and the failure message. The
//! controller uses [`url`] where it shows a check's configured URL (API,
//! pages, pager and webhook payloads).
//!
//! Secret values the probe resolved are scrubbed from the same text
//! ([`remember`], [`scrub`]).
//!
//! What is redacted: the whole userinfo (`***@host`), and the value of every
//! query parameter whose lowercased name contains one of [`SECRET_NAMES`]
//! (`token`, `key`, `secret`, `password`, `passwd`, `signature`, `auth`,
//! `credential`, `session`) or is exactly `sig` or `pwd`; the value becomes
//! `REDACTED`. Matching by containment errs on the side of hiding
//! (`api_key`, `access_token`, `X-Amz-Credential` all match).

use std::{borrow::Cow, collections::BTreeSet, sync::RwLock};

/// Secret values this process resolved (check credentials, the probe
/// token, basic-auth header forms): [`scrub`] removes them from anything
/// recorded, so a target that echoes a bearer token back in its body does
/// not get it stored or shown.
static SECRETS: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// Shorter values are not scrubbed: they would mangle ordinary text.
pub const MIN_SCRUB_LEN: usize = 6;

/// Remembers a resolved secret value for [`scrub`].
pub fn remember(value: &str) {
    if value.len() < MIN_SCRUB_LEN {
        return;
    }
    let mut set = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !set.contains(value) {
        set.insert(value.to_owned());
        // As it appears inside JSON text (quotes, backslashes escaped).
        let escaped = serde_json::to_string(value).unwrap_or_default();
        let inner = escaped.trim_matches('"');
        if inner != value && inner.len() >= MIN_SCRUB_LEN {
            set.insert(inner.to_owned());
        }
    }
}

/// Remembers the values of `u`'s secret-looking query parameters (as
/// written and percent-decoded) for [`scrub`].
pub fn remember_query_secrets(u: &str) {
    let Some((_, query)) = u.split_once('?') else {
        return;
    };
    let query = query.split('#').next().unwrap_or_default();
    for pair in query.split('&') {
        if let Some((name, value)) = pair.split_once('=')
            && secret_name(name)
        {
            remember(value);
            if let Ok(decoded) = percent_decode(value) {
                remember(&decoded);
            }
        }
    }
}

fn percent_decode(s: &str) -> Result<String, ()> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).map_err(|_| ())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// `s` with every remembered secret value replaced by [`REDACTED`].
pub fn scrub(s: &str) -> Cow<'_, str> {
    let set = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out: Cow<'_, str> = Cow::Borrowed(s);
    // Longest first, so a value containing another is replaced whole.
    let mut values: Vec<&String> = set.iter().filter(|v| out.contains(v.as_str())).collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        if out.contains(v.as_str()) {
            out = Cow::Owned(out.replace(v.as_str(), REDACTED));
        }
    }
    out
}

/// Substrings of a query parameter name that mark its value secret.
pub const SECRET_NAMES: &[&str] = &[
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "signature",
    "auth",
    "credential",
    "session",
];
/// Names that are secret only as a whole (too short to match inside others).
pub const SECRET_EXACT: &[&str] = &["sig", "pwd", "pass"];
/// What replaces a secret.
pub const REDACTED: &str = "REDACTED";

fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_EXACT.contains(&n.as_str()) || SECRET_NAMES.iter().any(|s| n.contains(s))
}

/// `u` with its userinfo and secret query values redacted; unchanged (and
/// borrowed) when there is nothing to hide or it is not a URL.
pub fn url(u: &str) -> Cow<'_, str> {
    let Some(scheme_end) = u.find("://") else {
        return Cow::Borrowed(u);
    };
    let rest_at = scheme_end + 3;
    let rest = &u[rest_at..];
    let auth_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_len];
    let mut out = String::with_capacity(u.len());
    let mut changed = false;
    out.push_str(&u[..rest_at]);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str("***");
            out.push_str(&authority[at..]);
            changed = true;
        }
        None => out.push_str(authority),
    }
    let tail = &rest[auth_len..];
    let (before_frag, frag) = match tail.find('#') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    match before_frag.find('?') {
        Some(q) => {
            out.push_str(&before_frag[..=q]);
            let query = &before_frag[q + 1..];
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((name, value)) if secret_name(name) && !value.is_empty() => {
                        out.push_str(name);
                        out.push('=');
                        out.push_str(REDACTED);
                        changed = true;
                    }
                    _ => out.push_str(pair),
                }
            }
        }
        None => out.push_str(before_frag),
    }
    out.push_str(frag);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(u)
    }
}

/// `s` with every `http://`/`https://` (and `ws`, `grpc`…) URL in it
/// redacted by [`url`]. A URL ends at whitespace, a quote, `<`, `>` or a
/// closing bracket.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.contains("://") {
        return Cow::Borrowed(s);
    }
    let ends = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']' | '`');
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        // The scheme: the letters before "://".
        let start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
            .map_or(0, |j| j + 1);
        let end = rest[i..].find(ends).map_or(rest.len(), |j| i + j);
        out.push_str(&rest[..start]);
        let r = url(&rest[start..end]);
        changed |= matches!(r, Cow::Owned(_));
        out.push_str(&r);
        rest = &rest[end..];
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(s)
    }
}

/// Redacts every string in a JSON value with [`text`]; true when any changed.
pub fn json(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => match text(s) {
            Cow::Owned(r) => {
                *s = r;
                true
            }
            Cow::Borrowed(_) => false,
        },
        Value::Array(items) => items.iter_mut().fold(false, |any, i| json(i) | any),
        Value::Object(map) => map.values_mut().fold(false, |any, i| json(i) | any),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn userinfo_and_secret_query_values_are_redacted() {
        assert_eq!(
            url("https://alice:s3cret@api.example.net:8443/x?a=1&access_token=abc&sig=zz#f"),
            "https://***@api.example.net:8443/x?a=1&access_token=REDACTED&sig=REDACTED#f"
        );
        assert_eq!(
            url("https://s3.example/o?X-Amz-Credential=AK&X-Amz-Signature=ff&page=2"),
            "https://s3.example/o?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&page=2"
        );
        assert!(matches!(
            url("https://api.example.net/health?page=2"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(url("not a url"), Cow::Borrowed(_)));
    }

    #[test]
    fn remembered_secrets_are_scrubbed_longest_first() {
        remember("echoed-bearer-0123456789");
        remember("echoed-bearer-0123456789-and-more");
        remember("tiny");
        let body = r#"{"echo":"Bearer echoed-bearer-0123456789-and-more","again":"echoed-bearer-0123456789","tiny":"tiny"}"#;
        assert_eq!(
            scrub(body),
            r#"{"echo":"Bearer REDACTED","again":"REDACTED","tiny":"tiny"}"#
        );
    }

    #[test]
    fn urls_inside_text_are_redacted() {
        let m = "redirected to https://x.example/cb?code=1&api_key=K (302), then \"http://u:p@y/\"";
        assert_eq!(
            text(m),
            "redirected to https://x.example/cb?code=1&api_key=REDACTED (302), then \"http://***@y/\""
        );
        let mut v = serde_json::json!({ "hops": [{ "url": "https://h/?token=T" }], "n": 1 });
        assert!(json(&mut v));
        assert_eq!(v["hops"][0]["url"], "https://h/?token=REDACTED");
    }
}
