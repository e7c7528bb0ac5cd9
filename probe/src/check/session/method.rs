//! The login methods as configured (`login = { … }`): the raw tables, their
//! validation, and the validated [`LoginSpec`]. Secrets are resolved at
//! validation; `{{name}}` placeholders in a login request are filled at run
//! time ([`LoginRequest::render`]). Obtaining credentials is [`super::login`].

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json_path::JsonPath;

use super::{check_names, headers, jsonpath, method, render, secret, statuses, url};
use crate::{
    check::{
        assertion::{self, StatusMatch},
        http::request::{form_body, opt_secret_ref, secret_ref},
    },
    config::{Problems, RawSecret, Secret},
};

/// `login`: exactly one method.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    /// OAuth2 client credentials grant (RFC 6749 §4.4). When the server also
    /// issues a refresh token, renewals use it (`grant_type=refresh_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2_client_credentials: Option<RawOAuth2>,
    /// OAuth2 refresh token grant (RFC 6749 §6) from a provisioned refresh
    /// token; rotated tokens the server returns are kept in the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<RawRefreshLogin>,
    /// A scripted login: one request whose response yields the token (JSONPath,
    /// header or cookie) and its expiry; the token is `{{token}}` in `use`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<RawScript>,
    /// A cookie-jar session: the login response's `Set-Cookie` cookies are
    /// sent with every protected request; the expiry is the cookies' earliest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_jar: Option<RawCookieJar>,
}

/// How the client authenticates to the token endpoint.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP basic auth (`client_secret_basic`, the RFC 6749 default).
    #[default]
    Basic,
    /// `client_id` / `client_secret` in the form body (`client_secret_post`).
    Form,
}

/// `oauth2_client_credentials = { … }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth2 {
    /// Token endpoint. Example: `"https://auth.example.com/oauth/token"`.
    pub token_url: String,
    /// Client id (not secret). Example: `"outpost"`.
    pub client_id: String,
    /// Client secret: `{ env = "NAME" }` or `{ file = "/path" }`.
    #[serde(serialize_with = "secret_ref")]
    pub client_secret: RawSecret,
    /// Space-separated scopes requested. Example: `"telemetry:read"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `audience` parameter (Auth0, Okta and others). Example: `"https://api.example.com"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// `"basic"` (default) or `"form"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

/// `refresh_token = { … }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRefreshLogin {
    /// Token endpoint. Example: `"https://auth.example.com/oauth/token"`.
    pub token_url: String,
    /// Client id (not secret).
    pub client_id: String,
    /// Client secret, for confidential clients: `{ env = "NAME" }` or `{ file = "/path" }`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_secret_ref"
    )]
    pub client_secret: Option<RawSecret>,
    /// The provisioned refresh token: `{ env = "NAME" }` or `{ file = "/path" }`.
    #[serde(serialize_with = "secret_ref")]
    pub refresh_token: RawSecret,
    /// Space-separated scopes requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `"basic"` (default) or `"form"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

/// The login request of `script` and `cookie_jar`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLoginRequest {
    /// Absolute URL. Example: `"https://vendor-b.example.com/api/login"`.
    pub url: String,
    /// Method. Default `"POST"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers; `{{name}}` is replaced by the secret `name` of `secrets`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Body sent as is. At most one of `body`, `json_body`, `form`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// JSON body (`content-type: application/json`); string values may hold
    /// `{{name}}`. Example: `{ username = "outpost", password = "{{password}}" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_body: Option<Value>,
    /// Form body (`application/x-www-form-urlencoded`); values may hold `{{name}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<BTreeMap<String, String>>,
    /// Secrets for `{{name}}` placeholders. Example: `{ password = { env = "VENDOR_B_PASSWORD" } }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, RawSecretRef>,
    /// Statuses that count as a successful login. Default `["2xx"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_status: Option<Vec<StatusMatch>>,
}

/// A [`RawSecret`] that serializes as its reference (env name or path).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(transparent)]
pub struct RawSecretRef(#[serde(serialize_with = "secret_ref")] pub RawSecret);

/// `script = { request = { … }, extract = { … } }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScript {
    /// The login request.
    pub request: RawLoginRequest,
    /// Where the token and its expiry are in the response.
    pub extract: RawExtract,
}

/// `extract = { token = "$.token", expires_at = "$.expires_at" }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RawLoginExtract")]
pub struct RawExtract {
    /// The token: a JSONPath into the body (`"$.token"`), `{ header = "x-auth-token" }`
    /// or `{ cookie = "session" }` (then the cookie is also sent with `use`).
    pub token: RawTokenSource,
    /// JSONPath to the absolute expiry: RFC 3339 with an offset, epoch
    /// seconds or milliseconds. Not with `expires_in`. Example: `"$.expires_at"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// JSONPath to the lifetime in seconds. Example: `"$.expires_in"`.
    /// Without either, a JWT's `exp` or the cookie's `Max-Age`/`Expires` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

/// Where a scripted login's token is.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RawTokenSource {
    /// A JSONPath into the JSON body.
    Json(String),
    /// A response header or a cookie.
    Other(RawTokenPlace),
}

/// `{ header = "…" }` or `{ cookie = "…" }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTokenPlace {
    /// Response header holding the token (a `Bearer ` prefix is removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Name of the `Set-Cookie` cookie holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

/// `cookie_jar = { request = { … } }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCookieJar {
    /// The login request; its `Set-Cookie` cookies form the session.
    pub request: RawLoginRequest,
}

/// A validated login method.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginSpec {
    /// Client credentials grant.
    ClientCredentials(OAuth2Spec),
    /// Refresh token grant from a provisioned refresh token.
    RefreshToken(OAuth2Spec, Secret),
    /// Scripted login.
    Script(ScriptSpec),
    /// Cookie jar.
    CookieJar(LoginRequest),
}

impl LoginSpec {
    /// Name in details.
    pub fn name(&self) -> &'static str {
        match self {
            LoginSpec::ClientCredentials(_) => "oauth2_client_credentials",
            LoginSpec::RefreshToken(..) => "refresh_token",
            LoginSpec::Script(_) => "script",
            LoginSpec::CookieJar(_) => "cookie_jar",
        }
    }
}

/// A validated token endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2Spec {
    /// Token endpoint.
    pub token_url: Uri,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Option<Secret>,
    /// Scopes.
    pub scope: Option<String>,
    /// Audience.
    pub audience: Option<String>,
    /// Client authentication.
    pub client_auth: ClientAuth,
}

/// A validated login request (templates resolved at run time).
#[derive(Debug, Clone, PartialEq)]
pub struct LoginRequest {
    /// URL.
    pub uri: Uri,
    /// Method.
    pub method: http::Method,
    /// Header templates.
    pub headers: Vec<(HeaderName, String)>,
    /// Body template and its content type.
    pub body: Option<(BodyTemplate, Option<&'static str>)>,
    /// Secrets for placeholders.
    pub secrets: BTreeMap<String, Secret>,
    /// Statuses that count as success.
    pub expected: Vec<(u16, u16)>,
}

/// A body with `{{name}}` placeholders.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyTemplate {
    /// Text.
    Text(String),
    /// JSON; placeholders in string values.
    Json(Value),
    /// Form pairs; placeholders in values.
    Form(BTreeMap<String, String>),
}

/// A validated scripted login.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptSpec {
    /// The request.
    pub request: LoginRequest,
    /// Where the token is.
    pub token: TokenSource,
    /// JSONPath to an absolute expiry.
    pub expires_at: Option<JsonPath>,
    /// JSONPath to a lifetime in seconds.
    pub expires_in: Option<JsonPath>,
}

/// Where a scripted login's token is.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    /// JSONPath into the body.
    Json(JsonPath),
    /// Response header.
    Header(HeaderName),
    /// Cookie name.
    Cookie(String),
}

fn json_strings(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|v| json_strings(v, f)),
        Value::Object(o) => o.values().for_each(|v| json_strings(v, f)),
        _ => {}
    }
}

impl RawLoginRequest {
    fn validate(&self, path: &str, problems: &mut Problems) -> Option<LoginRequest> {
        let before = problems.len();
        let uri = url(&self.url, format!("{path}.url"), problems);
        let method = method(
            self.method.as_deref(),
            "POST",
            format!("{path}.method"),
            problems,
        );
        let mut secrets = BTreeMap::new();
        for (name, s) in &self.secrets {
            if let Some(v) = secret(&s.0, format!("{path}.secrets.{name}"), problems) {
                secrets.insert(name.clone(), v);
            }
        }
        let allowed = |n: &str| self.secrets.contains_key(n);
        let headers = headers(&self.headers, &allowed, path, problems);
        let n = [
            self.body.is_some(),
            self.json_body.is_some(),
            self.form.is_some(),
        ];
        if n.iter().filter(|b| **b).count() > 1 {
            problems.push(
                path.to_owned(),
                "set at most one of `body`, `json_body` or `form`",
            );
        }
        let body = if let Some(b) = &self.body {
            check_names(b, &allowed, &format!("{path}.body"), problems);
            Some((BodyTemplate::Text(b.clone()), None))
        } else if let Some(j) = &self.json_body {
            json_strings(j, &mut |s| {
                check_names(s, &allowed, &format!("{path}.json_body"), problems)
            });
            Some((BodyTemplate::Json(j.clone()), Some("application/json")))
        } else {
            self.form.as_ref().map(|f| {
                for v in f.values() {
                    check_names(v, &allowed, &format!("{path}.form"), problems);
                }
                (
                    BodyTemplate::Form(f.clone()),
                    Some("application/x-www-form-urlencoded"),
                )
            })
        };
        let expected = statuses(self.expected_status.as_ref(), path, problems);
        if problems.len() != before {
            return None;
        }
        Some(LoginRequest {
            uri: uri?,
            method: method?,
            headers,
            body,
            secrets,
            expected,
        })
    }
}

impl LoginRequest {
    /// Headers and body with placeholders replaced (credentials marked sensitive).
    pub fn render(&self) -> (Vec<(HeaderName, HeaderValue)>, Bytes) {
        let vars = |n: &str| self.secrets.get(n).map(|s| s.expose().to_owned());
        let mut headers = Vec::new();
        for (k, v) in &self.headers {
            if let Ok(mut hv) = HeaderValue::try_from(render(v, &vars)) {
                hv.set_sensitive(true);
                headers.push((k.clone(), hv));
            }
        }
        let body = match &self.body {
            None => Bytes::new(),
            Some((t, ct)) => {
                if let Some(ct) = ct
                    && !self
                        .headers
                        .iter()
                        .any(|(k, _)| k == http::header::CONTENT_TYPE)
                {
                    headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static(ct)));
                }
                match t {
                    BodyTemplate::Text(s) => Bytes::from(render(s, &vars)),
                    BodyTemplate::Json(j) => Bytes::from(render_json(j, &vars).to_string()),
                    BodyTemplate::Form(f) => {
                        let rendered: Vec<(&str, String)> = f
                            .iter()
                            .map(|(k, v)| (k.as_str(), render(v, &vars)))
                            .collect();
                        Bytes::from(form_body(rendered.iter().map(|(k, v)| (*k, v.as_str()))))
                    }
                }
            }
        };
        (headers, body)
    }
}

fn render_json(v: &Value, vars: &dyn Fn(&str) -> Option<String>) -> Value {
    match v {
        Value::String(s) => Value::String(render(s, vars)),
        Value::Array(a) => Value::Array(a.iter().map(|v| render_json(v, vars)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), render_json(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

// The two OAuth2 tables share these fields but not their shape.
#[allow(clippy::too_many_arguments)]
fn oauth2(
    token_url: &str,
    client_id: &str,
    client_secret: Option<&RawSecret>,
    scope: Option<&String>,
    audience: Option<&String>,
    client_auth: Option<ClientAuth>,
    path: &str,
    problems: &mut Problems,
) -> Option<OAuth2Spec> {
    let before = problems.len();
    let token_url = url(token_url, format!("{path}.token_url"), problems);
    if client_id.is_empty()
        || client_id.contains(':') && client_auth.unwrap_or_default() == ClientAuth::Basic
    {
        problems.push(
            format!("{path}.client_id"),
            "client_id must be non-empty (and without ':' for basic auth)",
        );
    }
    let client_secret =
        client_secret.and_then(|s| secret(s, format!("{path}.client_secret"), problems));
    if problems.len() != before {
        return None;
    }
    Some(OAuth2Spec {
        token_url: token_url?,
        client_id: client_id.to_owned(),
        client_secret,
        scope: scope.cloned(),
        audience: audience.cloned(),
        client_auth: client_auth.unwrap_or_default(),
    })
}

impl RawLogin {
    /// Validates; problems are recorded under `path` (`checks[0].session.login`).
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<LoginSpec> {
        let n = [
            self.oauth2_client_credentials.is_some(),
            self.refresh_token.is_some(),
            self.script.is_some(),
            self.cookie_jar.is_some(),
        ];
        if n.iter().filter(|b| **b).count() != 1 {
            problems.push(
                path.to_owned(),
                "set exactly one login method: oauth2_client_credentials, refresh_token, script or cookie_jar",
            );
            return None;
        }
        if let Some(o) = &self.oauth2_client_credentials {
            let p = format!("{path}.oauth2_client_credentials");
            let s = oauth2(
                &o.token_url,
                &o.client_id,
                Some(&o.client_secret),
                o.scope.as_ref(),
                o.audience.as_ref(),
                o.client_auth,
                &p,
                problems,
            );
            return s.map(LoginSpec::ClientCredentials);
        }
        if let Some(r) = &self.refresh_token {
            let p = format!("{path}.refresh_token");
            let rt = secret(&r.refresh_token, format!("{p}.refresh_token"), problems);
            let s = oauth2(
                &r.token_url,
                &r.client_id,
                r.client_secret.as_ref(),
                r.scope.as_ref(),
                None,
                r.client_auth,
                &p,
                problems,
            );
            return Some(LoginSpec::RefreshToken(s?, rt?));
        }
        if let Some(s) = &self.script {
            let p = format!("{path}.script");
            let request = s.request.validate(&format!("{p}.request"), problems);
            let e = &s.extract;
            let ep = format!("{p}.extract");
            let token = match &e.token {
                RawTokenSource::Json(j) => {
                    jsonpath(j, format!("{ep}.token"), problems).map(TokenSource::Json)
                }
                RawTokenSource::Other(RawTokenPlace {
                    header: Some(h),
                    cookie: None,
                }) => assertion::header::header_name(h, format!("{ep}.token.header"), problems)
                    .map(TokenSource::Header),
                RawTokenSource::Other(RawTokenPlace {
                    header: None,
                    cookie: Some(c),
                }) if !c.is_empty() => Some(TokenSource::Cookie(c.clone())),
                RawTokenSource::Other(_) => {
                    problems.push(format!("{ep}.token"), "give one of a JSONPath (\"$.token\"), { header = \"…\" } or { cookie = \"…\" }");
                    None
                }
            };
            if e.expires_at.is_some() && e.expires_in.is_some() {
                problems.push(
                    ep.clone(),
                    "set at most one of `expires_at` or `expires_in`",
                );
            }
            let expires_at = e
                .expires_at
                .as_ref()
                .and_then(|j| jsonpath(j, format!("{ep}.expires_at"), problems));
            let expires_in = e
                .expires_in
                .as_ref()
                .and_then(|j| jsonpath(j, format!("{ep}.expires_in"), problems));
            return Some(LoginSpec::Script(ScriptSpec {
                request: request?,
                token: token?,
                expires_at,
                expires_in,
            }));
        }
        let c = self.cookie_jar.as_ref()?;
        c.request
            .validate(&format!("{path}.cookie_jar.request"), problems)
            .map(LoginSpec::CookieJar)
    }
}
