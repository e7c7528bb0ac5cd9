//! Obtaining credentials: the OAuth2 token endpoint (client credentials and
//! refresh token grants), a scripted login (token by JSONPath, header or
//! cookie) and a cookie jar; and reading what the response declares about
//! the credential's expiry (`expires_in`, `expires_at`, a JWT's `exp`/`iat`,
//! a cookie's `Max-Age`/`Expires`).
//!
//! Nothing here puts a credential into a message: failures name the
//! endpoint, the status and the OAuth2 `error` code only.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use time::OffsetDateTime;

use super::{
    ClientAuth, LoginSpec, OAuth2Spec, SessionSpec, TokenSource,
    call::{self, Exchanged},
    clock::{self, Declared, Expiry, Receipt},
    state::Cookie,
};
use crate::{
    check::{
        Failure, Phases, RunContext,
        failure::{HeaderExpectation, JsonProblem},
        http::request::{base64, form_body, form_encode},
    },
    config::Secret,
};

/// Credentials from one login or renewal.
#[derive(Debug)]
pub struct Issued {
    /// Access token (or the token of a scripted login).
    pub token: Option<Secret>,
    /// Refresh token, when the server issued one.
    pub refresh_token: Option<Secret>,
    /// Cookies to send with protected requests.
    pub cookies: Vec<Cookie>,
    /// Send the token as a bearer token.
    pub bearer: bool,
    /// Validity, when declared.
    pub expiry: Option<Expiry>,
    /// Where the expiry came from (`expires_in`, `jwt_exp`, `cookie_max_age`…, `none`).
    pub expiry_source: &'static str,
    /// The exchange's times and `Date`.
    pub receipt: Receipt,
    /// Server − probe from `Date`.
    pub date_offset: Option<time::Duration>,
    /// Server − probe from the fresh JWT's `iat`.
    pub iat_offset: Option<time::Duration>,
    /// Response status.
    pub status: u16,
    /// Timings.
    pub phases: Phases,
}

/// What to ask for.
#[derive(Debug, Clone, Copy)]
pub enum Grant<'a> {
    /// A full login by the configured method.
    Login,
    /// An OAuth2 refresh with this refresh token.
    Refresh(&'a Secret),
}

/// A failed attempt: the failure (code of the cause) and what was seen.
#[derive(Debug)]
pub struct LoginError {
    /// Cause (transport code, `unexpected_status`, `json_path_mismatch`…).
    pub failure: Box<Failure>,
    /// Status, when a response came.
    pub status: Option<u16>,
    /// Timings.
    pub phases: Phases,
}

/// A problem with a JSON value of the scripted login's response.
fn login_response(problem: JsonProblem, path: String) -> Failure {
    Failure::JsonPathMismatch {
        path,
        problem,
        response: Some("the login response"),
    }
}

fn fail(failure: Failure, resp: Option<&Exchanged>) -> LoginError {
    LoginError {
        failure: Box::new(failure),
        status: resp.map(|r| r.status.as_u16()),
        phases: resp.map(|r| r.phases).unwrap_or_default(),
    }
}

/// Obtains credentials by `grant` within `deadline`.
pub async fn obtain(
    spec: &SessionSpec,
    grant: Grant<'_>,
    ctx: &RunContext,
    deadline: tokio::time::Instant,
) -> Result<Issued, LoginError> {
    match (&spec.login, grant) {
        (LoginSpec::ClientCredentials(o), Grant::Login) => {
            let mut form = vec![("grant_type", "client_credentials".to_owned())];
            if let Some(a) = &o.audience {
                form.push(("audience", a.clone()));
            }
            oauth2(spec, o, form, ctx, deadline).await
        }
        (LoginSpec::RefreshToken(o, configured), Grant::Login) => {
            let form = vec![
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", configured.expose().to_owned()),
            ];
            oauth2(spec, o, form, ctx, deadline).await
        }
        (LoginSpec::ClientCredentials(o) | LoginSpec::RefreshToken(o, _), Grant::Refresh(rt)) => {
            let form = vec![
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", rt.expose().to_owned()),
            ];
            oauth2(spec, o, form, ctx, deadline).await
        }
        (LoginSpec::Script(s), _) => {
            let (headers, body) = s.request.render();
            let resp = send(
                spec,
                &s.request.uri,
                &s.request.method,
                &headers,
                body,
                ctx,
                deadline,
            )
            .await?;
            expect_status(&resp, &s.request.expected, "login")?;
            scripted(spec, s, &resp)
        }
        (LoginSpec::CookieJar(r), _) => {
            let (headers, body) = r.render();
            let resp = send(spec, &r.uri, &r.method, &headers, body, ctx, deadline).await?;
            expect_status(&resp, &r.expected, "login")?;
            let date_offset = resp
                .receipt
                .server_date
                .map(|d| clock::offset_from_date(d, &resp.receipt));
            let correction = correction(spec, date_offset);
            let cookies = cookies(&resp.headers, &resp.receipt, correction);
            if cookies.is_empty() {
                return Err(fail(
                    Failure::HeaderMismatch {
                        header: "set-cookie".into(),
                        expected: HeaderExpectation::Cookie { name: None },
                        got: Vec::new(),
                    },
                    Some(&resp),
                ));
            }
            let (expiry, source) =
                cookie_expiry(&cookies, &resp.headers, None, &resp.receipt, correction);
            Ok(issued(
                &resp,
                None,
                None,
                cookies,
                false,
                expiry,
                source,
                date_offset,
                None,
            ))
        }
    }
}

/// The offset used to convert the server's absolute times to the probe's
/// clock: the `Date` estimate when the clocks differ by more than the
/// tolerance (then `clock_skew` is reported too). Within it the clocks are
/// taken as agreeing: `Date`'s one-second resolution would add more error
/// than it removes.
fn correction(spec: &SessionSpec, date_offset: Option<time::Duration>) -> Option<time::Duration> {
    date_offset.filter(|o| clock::skewed(*o, spec.clock_skew_tolerance))
}

async fn send(
    spec: &SessionSpec,
    uri: &http::Uri,
    method: &http::Method,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
    ctx: &RunContext,
    deadline: tokio::time::Instant,
) -> Result<Exchanged, LoginError> {
    call::exchange(uri, method, headers, body, spec, ctx, deadline)
        .await
        .map_err(|(failure, phases)| LoginError {
            failure: Box::new(failure),
            status: None,
            phases,
        })
}

fn expect_status(resp: &Exchanged, expected: &[(u16, u16)], what: &str) -> Result<(), LoginError> {
    let code = resp.status.as_u16();
    if expected.iter().any(|(a, b)| (*a..=*b).contains(&code)) {
        return Ok(());
    }
    // The OAuth2 error code (RFC 6749 §5.2) is a short ASCII token; nothing else of the body is repeated.
    let oauth_error = serde_json::from_slice::<Value>(&resp.body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    Err(fail(
        Failure::UnexpectedStatus {
            got: code,
            expected: crate::check::assertion::status_text(expected),
            responder: Some(what.to_owned()),
            oauth_error,
            session_rejected: false,
        },
        Some(resp),
    ))
}

async fn oauth2(
    spec: &SessionSpec,
    o: &OAuth2Spec,
    mut form: Vec<(&'static str, String)>,
    ctx: &RunContext,
    deadline: tokio::time::Instant,
) -> Result<Issued, LoginError> {
    if let Some(s) = &o.scope {
        form.push(("scope", s.clone()));
    }
    let mut headers = vec![
        (
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        ),
        (
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        ),
    ];
    match (&o.client_secret, o.client_auth) {
        (Some(secret), ClientAuth::Basic) => {
            // RFC 6749 §2.3.1: id and secret are form-encoded before base64.
            let creds = base64(
                format!(
                    "{}:{}",
                    form_encode(&o.client_id),
                    form_encode(secret.expose())
                )
                .as_bytes(),
            );
            if let Ok(mut v) = HeaderValue::try_from(format!("Basic {creds}")) {
                v.set_sensitive(true);
                headers.push((http::header::AUTHORIZATION, v));
            }
        }
        (secret, _) => {
            form.push(("client_id", o.client_id.clone()));
            if let Some(s) = secret {
                form.push(("client_secret", s.expose().to_owned()));
            }
        }
    }
    let body = form_body(form.iter().map(|(k, v)| (*k, v.as_str())));
    let resp = send(
        spec,
        &o.token_url,
        &http::Method::POST,
        &headers,
        Bytes::from(body),
        ctx,
        deadline,
    )
    .await?;
    expect_status(&resp, &[(200, 299)], "the token endpoint")?;
    let token_response = |problem, path: &str| Failure::JsonPathMismatch {
        path: path.to_owned(),
        problem,
        response: Some("the token response"),
    };
    let doc: Value = serde_json::from_slice(&resp.body).map_err(|e| {
        fail(
            token_response(
                JsonProblem::NotJson {
                    error: Some(e.to_string()),
                },
                "$",
            ),
            Some(&resp),
        )
    })?;
    let Some(token) = doc
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        return Err(fail(
            token_response(JsonProblem::NotAString, "$.access_token"),
            Some(&resp),
        ));
    };
    let refresh = doc
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    let date_offset = resp
        .receipt
        .server_date
        .map(|d| clock::offset_from_date(d, &resp.receipt));
    let correction = correction(spec, date_offset);
    let jwt = jwt_times(token);
    let iat_offset = jwt
        .and_then(|(iat, _)| iat)
        .map(|iat| clock::offset_from_iat(iat, &resp.receipt));
    let declared = match doc.get("expires_in") {
        Some(v) => match clock::seconds_value(v) {
            Some(s) => Some(Declared::ExpiresIn(s)),
            None => {
                return Err(fail(
                    token_response(JsonProblem::NotSeconds, "$.expires_in"),
                    Some(&resp),
                ));
            }
        },
        None => jwt.and_then(|(iat, exp)| exp.map(|exp| Declared::Jwt { iat, exp })),
    };
    let expiry = declared
        .map(|d| clock::expiry(d, &resp.receipt, spec.base, correction))
        .transpose()
        .map_err(|e| {
            fail(
                token_response(
                    JsonProblem::Invalid {
                        reason: e.to_string(),
                    },
                    "$.expires_in",
                ),
                Some(&resp),
            )
        })?;
    let source = declared.map_or("none", |d| d.source());
    Ok(issued(
        &resp,
        Some(Secret::new(token)),
        refresh,
        Vec::new(),
        true,
        expiry,
        source,
        date_offset,
        iat_offset,
    ))
}

#[allow(clippy::too_many_arguments)]
fn issued(
    resp: &Exchanged,
    token: Option<Secret>,
    refresh_token: Option<Secret>,
    cookies: Vec<Cookie>,
    bearer: bool,
    expiry: Option<Expiry>,
    expiry_source: &'static str,
    date_offset: Option<time::Duration>,
    iat_offset: Option<time::Duration>,
) -> Issued {
    Issued {
        token,
        refresh_token,
        cookies,
        bearer,
        expiry,
        expiry_source,
        receipt: resp.receipt,
        date_offset,
        iat_offset,
        status: resp.status.as_u16(),
        phases: resp.phases,
    }
}

fn scripted(
    spec: &SessionSpec,
    s: &super::ScriptSpec,
    resp: &Exchanged,
) -> Result<Issued, LoginError> {
    let needs_json =
        matches!(s.token, TokenSource::Json(_)) || s.expires_at.is_some() || s.expires_in.is_some();
    let doc: Option<Value> = if needs_json {
        Some(serde_json::from_slice(&resp.body).map_err(|e| {
            fail(
                login_response(
                    JsonProblem::NotJson {
                        error: Some(e.to_string()),
                    },
                    "$".into(),
                ),
                Some(resp),
            )
        })?)
    } else {
        None
    };
    let first =
        |p: &serde_json_path::JsonPath| doc.as_ref().and_then(|d| p.query(d).first().cloned());
    let date_offset = resp
        .receipt
        .server_date
        .map(|d| clock::offset_from_date(d, &resp.receipt));
    let correction = correction(spec, date_offset);
    let cookies = cookies(&resp.headers, &resp.receipt, correction);
    let (token, bearer, cookie_name) = match &s.token {
        TokenSource::Json(p) => match first(p) {
            Some(Value::String(t)) if !t.is_empty() => (t, true, None),
            _ => {
                return Err(fail(
                    login_response(JsonProblem::NotAString, p.to_string()),
                    Some(resp),
                ));
            }
        },
        TokenSource::Header(h) => match resp.headers.get(h).and_then(|v| v.to_str().ok()) {
            Some(v) if !v.trim().is_empty() => {
                let v = v.trim();
                let v = v
                    .strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
                    .unwrap_or(v);
                (v.to_owned(), true, None)
            }
            _ => {
                return Err(fail(
                    Failure::HeaderMismatch {
                        header: h.to_string(),
                        expected: HeaderExpectation::Present,
                        got: Vec::new(),
                    },
                    Some(resp),
                ));
            }
        },
        TokenSource::Cookie(name) => match cookies.iter().find(|c| &c.name == name) {
            Some(c) => (c.value.expose().to_owned(), false, Some(name.as_str())),
            None => {
                return Err(fail(
                    Failure::HeaderMismatch {
                        header: "set-cookie".into(),
                        expected: HeaderExpectation::Cookie {
                            name: Some(name.clone()),
                        },
                        got: Vec::new(),
                    },
                    Some(resp),
                ));
            }
        },
    };
    let jwt = jwt_times(&token);
    let iat_offset = jwt
        .and_then(|(iat, _)| iat)
        .map(|iat| clock::offset_from_iat(iat, &resp.receipt));
    let bad = |problem, p: &serde_json_path::JsonPath| {
        fail(login_response(problem, p.to_string()), Some(resp))
    };
    let nothing = || JsonProblem::Nothing { expected: None };
    let declared = if let Some(p) = &s.expires_in {
        let v = first(p).ok_or_else(|| bad(nothing(), p))?;
        Some(Declared::ExpiresIn(
            clock::seconds_value(&v).ok_or_else(|| bad(JsonProblem::NotSeconds, p))?,
        ))
    } else if let Some(p) = &s.expires_at {
        let v = first(p).ok_or_else(|| bad(nothing(), p))?;
        Some(Declared::ExpiresAt(
            clock::timestamp(&v).ok_or_else(|| bad(JsonProblem::NotTimestamp, p))?,
        ))
    } else {
        jwt.and_then(|(iat, exp)| exp.map(|exp| Declared::Jwt { iat, exp }))
    };
    let (expiry, source) = match declared {
        Some(d) => (
            Some(
                clock::expiry(d, &resp.receipt, spec.base, correction).map_err(|e| {
                    fail(
                        login_response(
                            JsonProblem::Invalid {
                                reason: e.to_string(),
                            },
                            s.expires_in
                                .as_ref()
                                .or(s.expires_at.as_ref())
                                .map_or_else(|| "$".to_owned(), ToString::to_string),
                        ),
                        Some(resp),
                    )
                })?,
            ),
            d.source(),
        ),
        None => cookie_expiry(
            &cookies,
            &resp.headers,
            cookie_name,
            &resp.receipt,
            correction,
        ),
    };
    Ok(issued(
        resp,
        Some(Secret::new(token)),
        None,
        cookies,
        bearer,
        expiry,
        source,
        date_offset,
        iat_offset,
    ))
}

/// One `Set-Cookie` value: name, value, `Max-Age`, `Expires`.
pub fn parse_set_cookie(v: &str) -> Option<(String, String, Option<i64>, Option<OffsetDateTime>)> {
    let mut parts = v.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let (mut max_age, mut expires) = (None, None);
    for a in parts {
        let (k, val) = a.split_once('=').unwrap_or((a, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "max-age" => max_age = val.trim().parse::<i64>().ok(),
            "expires" => expires = crate::check::assertion::freshness::parse_http_date(val.trim()),
            _ => {}
        }
    }
    Some((
        name.to_owned(),
        value.trim().trim_matches('"').to_owned(),
        max_age,
        expires,
    ))
}

fn cookie_declared(max_age: Option<i64>, expires: Option<OffsetDateTime>) -> Option<Declared> {
    // RFC 6265 §5.3: Max-Age wins over Expires.
    match (max_age, expires) {
        (Some(m), _) => Some(Declared::ExpiresIn(m.max(0) as f64)),
        (None, Some(e)) => Some(Declared::ExpiresAt(e)),
        _ => None,
    }
}

fn cookies(headers: &HeaderMap, r: &Receipt, offset: Option<time::Duration>) -> Vec<Cookie> {
    let mut out: Vec<Cookie> = Vec::new();
    for v in headers.get_all(http::header::SET_COOKIE).iter().take(50) {
        let Some((name, value, max_age, expires)) = v.to_str().ok().and_then(parse_set_cookie)
        else {
            continue;
        };
        let expires_at = cookie_declared(max_age, expires)
            .and_then(|d| clock::expiry(d, r, clock::Base::Receipt, offset).ok())
            .map(|e| e.expires_at);
        out.retain(|c| c.name != name);
        if value.is_empty() || max_age.is_some_and(|m| m <= 0) {
            continue; // a deletion
        }
        out.push(Cookie {
            name,
            value: Secret::new(value),
            expires_at,
        });
    }
    out
}

/// The expiry of a cookie session: the named cookie's, else the earliest.
fn cookie_expiry(
    jar: &[Cookie],
    headers: &HeaderMap,
    name: Option<&str>,
    r: &Receipt,
    offset: Option<time::Duration>,
) -> (Option<Expiry>, &'static str) {
    let mut best: Option<(Expiry, &'static str)> = None;
    for v in headers.get_all(http::header::SET_COOKIE).iter() {
        let Some((n, _, max_age, expires)) = v.to_str().ok().and_then(parse_set_cookie) else {
            continue;
        };
        if name.is_some_and(|want| want != n) || !jar.iter().any(|c| c.name == n) {
            continue;
        }
        let Some(d) = cookie_declared(max_age, expires) else {
            continue;
        };
        let source = if max_age.is_some() {
            "cookie_max_age"
        } else {
            "cookie_expires"
        };
        if let Ok(e) = clock::expiry(d, r, clock::Base::Receipt, offset)
            && best.is_none_or(|(b, _)| e.expires_at < b.expires_at)
        {
            best = Some((e, source));
        }
    }
    match best {
        Some((e, s)) => (Some(e), s),
        None => (None, "none"),
    }
}

/// `iat` and `exp` of a JWT (claims decoded, signature not checked: the
/// probe is not the audience). `None` when `token` is not a JWT.
pub fn jwt_times(token: &str) -> Option<(Option<OffsetDateTime>, Option<OffsetDateTime>)> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (_, claims, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    if claims.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let t = |k: &str| v.get(k).and_then(Value::as_f64).and_then(clock::epoch);
    Some((t("iat"), t("exp")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn set_cookie_attributes_parse() {
        let (n, v, m, e) = parse_set_cookie("session=abc; Max-Age=3600; Path=/; HttpOnly").unwrap();
        assert_eq!((n.as_str(), v.as_str(), m), ("session", "abc", Some(3600)));
        assert_eq!(e, None);
        let (_, _, m, e) = parse_set_cookie("s=1; Expires=Thu, 30 Jan 2025 21:21:00 GMT").unwrap();
        assert_eq!(m, None);
        assert_eq!(e, Some(time::macros::datetime!(2025-01-30 21:21:00 UTC)));
        assert!(parse_set_cookie("garbage").is_none());
    }

    #[test]
    fn jwt_claims_decode_with_seconds_or_milliseconds() {
        use base64::Engine as _;
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let tok = format!(
            "{}.{}.sig",
            enc("{\"alg\":\"HS256\"}"),
            enc("{\"iat\":1738268460,\"exp\":1738272060000}")
        );
        let (iat, exp) = jwt_times(&tok).unwrap();
        assert_eq!(exp.unwrap() - iat.unwrap(), time::Duration::hours(1));
        assert!(jwt_times("opaque-token").is_none());
        assert!(jwt_times("a.b.c.d").is_none());
    }
}
