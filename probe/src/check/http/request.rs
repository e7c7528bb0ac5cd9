//! What a check sends: headers, a body (text, JSON or form), and credentials
//! from secrets. Secrets are resolved at validation and only leave the
//! process as a request header marked sensitive; they never enter `details`
//! or logs.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize, Serializer};

use super::RawHttp;
use crate::config::{Problems, RawSecret, Secret};

/// `basic_auth = { username = "probe", password = { env = "API_PASSWORD" } }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    /// User name (not secret). Example: `"outpost"`.
    pub username: String,
    /// The password: `{ env = "NAME" }` or `{ file = "/path" }`, never a literal.
    #[serde(serialize_with = "secret_ref")]
    pub password: RawSecret,
}

/// Serializes where a secret comes from (env name or path), never its value:
/// the controller ships check definitions to probes, which resolve them.
pub fn secret_ref<S: Serializer>(s: &RawSecret, ser: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Ref<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        env: Option<&'a String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        file: Option<&'a std::path::PathBuf>,
        #[serde(skip_serializing_if = "Option::is_none")]
        credential: Option<&'a String>,
    }
    Ref {
        env: s.env.as_ref(),
        file: s.file.as_ref(),
        credential: s.credential.as_ref(),
    }
    .serialize(ser)
}

/// `Option<RawSecret>` variant of [`secret_ref`].
pub fn opt_secret_ref<S: Serializer>(s: &Option<RawSecret>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => secret_ref(s, ser),
        None => ser.serialize_none(),
    }
}

/// The validated request headers (credentials included) and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Headers in order: configured, then content-type, then authorization.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body, if any.
    pub body: Option<Bytes>,
}

fn credential(value: String) -> Option<HeaderValue> {
    let mut v = HeaderValue::try_from(value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn resolve(s: &RawSecret, path: String, problems: &mut Problems) -> Option<Secret> {
    problems.secret(s, path)
}

/// Builds headers and body from the request keys of `[checks.http]`.
pub fn prepare(raw: &RawHttp, path: &str, problems: &mut Problems) -> Prepared {
    let mut headers = Vec::new();
    for (k, v) in &raw.headers {
        match (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            (Ok(n), Ok(_)) if n == http::header::HOST => problems.push(
                format!("{path}.headers.{k}"),
                "the Host header comes from the url; remove it",
            ),
            (Ok(n), Ok(mut v)) => {
                if n == http::header::AUTHORIZATION || n == http::header::COOKIE {
                    v.set_sensitive(true);
                }
                headers.push((n, v));
            }
            _ => problems.push(
                format!("{path}.headers.{k}"),
                format!("invalid header {k:?}"),
            ),
        }
    }
    let has = |name: &str| raw.headers.keys().any(|k| k.eq_ignore_ascii_case(name));
    let bodies = [
        raw.body.is_some(),
        raw.json_body.is_some(),
        raw.form.is_some(),
    ];
    if bodies.iter().filter(|b| **b).count() > 1 {
        problems.push(
            path.to_owned(),
            "set at most one of `body`, `json_body` or `form`",
        );
    }
    let mut content_type = None;
    let body = if let Some(b) = &raw.body {
        Some(Bytes::from(b.clone()))
    } else if let Some(j) = &raw.json_body {
        content_type = Some("application/json");
        Some(Bytes::from(j.to_string()))
    } else if let Some(f) = &raw.form {
        content_type = Some("application/x-www-form-urlencoded");
        Some(Bytes::from(form_body(
            f.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )))
    } else {
        None
    };
    if let Some(ct) = content_type
        && !has("content-type")
    {
        headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static(ct)));
    }
    let auths = [
        has("authorization"),
        raw.basic_auth.is_some(),
        raw.bearer_token.is_some(),
    ];
    if auths.iter().filter(|a| **a).count() > 1 {
        problems.push(
            path.to_owned(),
            "set at most one of `basic_auth`, `bearer_token` or an authorization header",
        );
    }
    if let Some(b) = &raw.basic_auth {
        if b.username.contains(':') {
            problems.push(
                format!("{path}.basic_auth.username"),
                "a basic-auth username cannot contain ':'",
            );
        }
        if let Some(pw) = resolve(&b.password, format!("{path}.basic_auth.password"), problems) {
            let token = base64(format!("{}:{}", b.username, pw.expose()).as_bytes());
            crate::redact::remember(&token);
            match credential(format!("Basic {token}")) {
                Some(v) => headers.push((http::header::AUTHORIZATION, v)),
                None => problems.push(
                    format!("{path}.basic_auth"),
                    "credentials are not valid header text",
                ),
            }
        }
    }
    if let Some(t) = &raw.bearer_token
        && let Some(tok) = resolve(t, format!("{path}.bearer_token"), problems)
    {
        match credential(format!("Bearer {}", tok.expose())) {
            Some(v) => headers.push((http::header::AUTHORIZATION, v)),
            None => problems.push(
                format!("{path}.bearer_token"),
                "the token is not valid header text (newline or control character?)",
            ),
        }
    }
    Prepared { headers, body }
}

/// `application/x-www-form-urlencoded` encoding of one name or value
/// (space as `+`, everything but `*-._` and alphanumerics percent-encoded).
pub fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A form body of `pairs`, in order.
pub fn form_body<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Standard base64 with padding (RFC 4648), for basic auth.
pub fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn form_values_are_urlencoded() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(form_encode("*-._~!"), "*-._%7E%21");
        assert_eq!(
            form_body([("grant_type", "client_credentials"), ("scope", "a b")]),
            "grant_type=client_credentials&scope=a+b"
        );
    }
}
