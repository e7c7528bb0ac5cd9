//! The redirect contract: whether a check follows redirects, how each hop's
//! request is derived from the last, and the assertions on the chain.
//!
//! Method semantics are those real clients apply (RFC 9110 §15.4, Fetch):
//! 307 and 308 keep the method and body; 303 turns anything but GET/HEAD into
//! GET; 301 and 302 turn POST into GET. Turning into GET drops the body and
//! the `content-*` headers. Other 3xx (300, 304, …) are final responses.
//!
//! Every hop is a fresh connection with its own DNS/connect/TLS timings and
//! full TLS verification. A hop to the check's own host name stays on the
//! address under test (so `addresses = "all"` follows each backend's own
//! http → https redirect); other hosts are resolved normally.
//!
//! Credentials (`authorization`, `proxy-authorization`, `cookie`) are
//! withheld from every hop whose origin (scheme, host, port — RFC 6454)
//! differs from the check's URL, unless `forward_credentials_cross_origin`;
//! once withheld they stay withheld, like curl and browsers.
//!
//! Rule violations, each with its code: a loop (`redirect_loop`, a (method,
//! URL) requested twice), too many hops (`redirect_limit`), https → http
//! (`redirect_downgrade`), a non-GET turned into GET
//! (`redirect_method_changed`). A check stops at the first one; the
//! `outpost-probe check` command records them per hop and follows anyway
//! (`report_only`), except loops and the limit, which always stop.

use std::{collections::HashSet, net::SocketAddr};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use serde_json::json;

use super::{
    Failure, FailureCode, RunContext,
    assertion::Checked,
    failure::ProtocolProblem,
    http::{
        HttpSpec, RawHttp,
        exchange::{self, Hop, HopRequest, Target, host_port},
    },
};
use crate::config::Problems;

/// Default `max_hops`.
pub const DEFAULT_MAX_HOPS: u32 = 10;
/// Largest accepted `max_hops`.
pub const MAX_MAX_HOPS: u32 = 50;

/// A validated redirect policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Follow 301/302/303/307/308 with a Location.
    pub follow: bool,
    /// Redirects followed at most.
    pub max_hops: u32,
    /// Expected statuses over the whole chain, e.g. `[308, 200]`.
    pub statuses: Option<Vec<u16>>,
    /// The final URL must be https.
    pub require_https: bool,
    /// Permit https → http hops.
    pub allow_downgrade: bool,
    /// Permit a non-GET request turning into GET.
    pub allow_method_change: bool,
    /// Send credentials to other origins.
    pub forward_credentials_cross_origin: bool,
    /// Record violations per hop and keep following (the `check` command).
    /// Not configurable: a check always enforces its policy.
    pub report_only: bool,
}

impl Policy {
    /// Validates the redirect keys of `[checks.http]`.
    pub fn from_raw(raw: &RawHttp, path: &str, problems: &mut Problems) -> Policy {
        let follow = raw.follow_redirects.unwrap_or(false);
        let max_hops = raw.max_hops.unwrap_or(DEFAULT_MAX_HOPS);
        if !(1..=MAX_MAX_HOPS).contains(&max_hops) {
            problems.push(
                format!("{path}.max_hops"),
                format!("max_hops must be between 1 and {MAX_MAX_HOPS}, got {max_hops}; to stop at the first redirect, set follow_redirects = false"),
            );
        } else if raw.max_hops.is_some() && !follow {
            problems.push(
                format!("{path}.max_hops"),
                "max_hops needs follow_redirects = true",
            );
        }
        if let Some(s) = &raw.redirect_statuses {
            let p = format!("{path}.redirect_statuses");
            if !follow {
                problems.push(p.clone(), "redirect_statuses needs follow_redirects = true; without it, list the redirect in expected_status");
            }
            if s.is_empty() {
                problems.push(
                    p.clone(),
                    "redirect_statuses is empty: list the statuses, e.g. [308, 200]",
                );
            }
            for (i, c) in s.iter().enumerate() {
                if !(100..=599).contains(c) {
                    problems.push(
                        format!("{p}[{i}]"),
                        format!("invalid status {c}: use 100–599"),
                    );
                }
            }
            if s.len() > max_hops as usize + 1 {
                problems.push(
                    p,
                    format!(
                        "{} statuses need {} redirects but max_hops is {max_hops}",
                        s.len(),
                        s.len() - 1
                    ),
                );
            }
        }
        Policy {
            follow,
            max_hops,
            statuses: raw.redirect_statuses.clone(),
            require_https: raw.require_https.unwrap_or(false),
            allow_downgrade: raw.allow_downgrade.unwrap_or(false),
            allow_method_change: raw.allow_method_change.unwrap_or(false),
            forward_credentials_cross_origin: raw.forward_credentials_cross_origin.unwrap_or(false),
            report_only: false,
        }
    }
}

/// The end of a chain: the final response, its body and URL.
#[derive(Debug)]
pub struct Final {
    /// Final status.
    pub status: StatusCode,
    /// Final headers.
    pub headers: http::HeaderMap,
    /// Body, kept only when an assertion needs it.
    pub body: Bytes,
    /// The URL that answered.
    pub uri: Uri,
    /// The final response's Location, resolved (an unfollowed redirect).
    pub location: Option<String>,
}

/// The method and whether the body is kept after `status` (RFC 9110 as
/// clients implement it).
pub fn redirected_method(status: u16, method: &Method) -> (Method, bool) {
    match status {
        303 if *method != Method::GET && *method != Method::HEAD => (Method::GET, false),
        301 | 302 if *method == Method::POST => (Method::GET, false),
        _ => (method.clone(), true),
    }
}

/// (scheme, host, port) of an absolute URL (RFC 6454 origin).
pub fn origin(uri: &Uri) -> (String, String, u16) {
    let (host, port) = host_port(uri);
    (
        uri.scheme_str().unwrap_or("").to_ascii_lowercase(),
        host.to_ascii_lowercase(),
        port,
    )
}

fn is_credential(name: &HeaderName) -> bool {
    name == http::header::AUTHORIZATION
        || name == http::header::PROXY_AUTHORIZATION
        || name == http::header::COOKIE
}

/// Prefixes a hop failure with the hop when the chain has more than one.
pub fn name_hop(f: Failure, idx: usize, uri: &Uri) -> Failure {
    if idx == 0 {
        return f;
    }
    Failure::OnHop {
        hop: idx + 1,
        url: uri.to_string(),
        failure: Box::new(f),
    }
}

/// A cookie store the chain consults on every hop (a flow's jar): cookies
/// are matched by domain and path per hop, not by origin, so they are not
/// subject to the cross-origin credential rule.
pub trait Jar: Send {
    /// The `Cookie` header for a request to `uri`, if any cookie matches.
    fn outgoing(&self, uri: &Uri) -> Option<HeaderValue>;
    /// Takes the `Set-Cookie` headers of the answer from `uri`.
    fn incoming(&mut self, uri: &Uri, headers: &http::HeaderMap);
}

/// Runs the chain from `spec.uri`, the first hop on `first`. Hops are pushed
/// to `hops` as they start, so a deadline that interrupts leaves them visible.
pub async fn follow(
    spec: &HttpSpec,
    first: SocketAddr,
    keep_body: bool,
    ctx: &RunContext,
    hops: &mut Vec<Hop>,
) -> Result<Final, Failure> {
    follow_with(spec, first, keep_body, ctx, hops, None).await
}

/// [`follow`] with a cookie jar consulted and fed on every hop.
pub async fn follow_with(
    spec: &HttpSpec,
    first: SocketAddr,
    keep_body: bool,
    ctx: &RunContext,
    hops: &mut Vec<Hop>,
    mut jar: Option<&mut dyn Jar>,
) -> Result<Final, Failure> {
    let policy = &spec.redirect;
    let origin0 = origin(&spec.uri);
    let mut uri = spec.uri.clone();
    let mut method = spec.method.clone();
    let mut body = spec.body.clone();
    let mut headers: Vec<(HeaderName, HeaderValue)> = spec.headers.clone();
    let mut dropped = false;
    let mut visited: HashSet<(Method, String)> = HashSet::new();
    loop {
        visited.insert((method.clone(), uri.to_string()));
        let idx = hops.len();
        let (host, port) = host_port(&uri);
        let target = if idx == 0 {
            Target::Pinned(first)
        } else if host.eq_ignore_ascii_case(&spec.host) {
            Target::Pinned(SocketAddr::new(first.ip(), port))
        } else {
            Target::Resolve
        };
        hops.push(Hop {
            url: uri.to_string(),
            method: method.to_string(),
            scheme: if uri.scheme_str() == Some("https") {
                "https"
            } else {
                "http"
            }
            .into(),
            body_kept: spec.body.as_ref().map(|_| body.is_some()),
            credentials_dropped: dropped,
            ..Hop::default()
        });
        let hop = &mut hops[idx];
        let started = std::time::Instant::now();
        let with_cookies;
        let hop_headers = match jar.as_deref().and_then(|j| j.outgoing(&uri)) {
            Some(cookie) if !headers.iter().any(|(k, _)| k == http::header::COOKIE) => {
                with_cookies = headers
                    .iter()
                    .cloned()
                    .chain(std::iter::once((http::header::COOKIE, cookie)))
                    .collect::<Vec<_>>();
                &with_cookies
            }
            _ => &headers,
        };
        let req = HopRequest {
            uri: &uri,
            method: &method,
            headers: hop_headers,
            body: body.clone().unwrap_or_default(),
        };
        let sent = exchange::send(&req, target, spec.limits(), ctx, hop).await;
        hop.phases_us.total = started.elapsed();
        let mut resp = match sent {
            Ok(r) => r,
            Err(f) => {
                hop.error = Some(f.code());
                return Err(name_hop(f, idx, &uri));
            }
        };
        if let Some(j) = jar.as_deref_mut() {
            j.incoming(&uri, &resp.headers);
        }
        let status = resp.status.as_u16();
        let location = match resp.headers.get(http::header::LOCATION) {
            None => None,
            Some(v) => match v.to_str() {
                Ok(l) => Some(resolve_location(&uri, l)),
                Err(_) => {
                    hop.error = Some(FailureCode::ProtocolError);
                    return Err(name_hop(
                        Failure::ProtocolError {
                            problem: ProtocolProblem::LocationNotText { status },
                        },
                        idx,
                        &uri,
                    ));
                }
            },
        };
        hop.location.clone_from(&location);
        let next = match &location {
            Some(l) if policy.follow && matches!(status, 301 | 302 | 303 | 307 | 308) => l,
            _ => {
                let body = resp.read_body(spec.max_body, keep_body, hop).await;
                hop.phases_us.total = started.elapsed();
                let body = match body {
                    Ok(b) => b,
                    Err(f) => {
                        hop.error = Some(f.code());
                        return Err(name_hop(f, idx, &uri));
                    }
                };
                return Ok(Final {
                    status: resp.status,
                    headers: std::mem::take(&mut resp.headers),
                    body,
                    uri,
                    location,
                });
            }
        };
        // The redirect body is never read: the next hop is a new connection.
        drop(resp);
        let next_uri = match next.parse::<Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => u,
            _ => {
                hop.error = Some(FailureCode::ProtocolError);
                return Err(name_hop(
                    Failure::ProtocolError {
                        problem: ProtocolProblem::LocationNotHttp {
                            status,
                            location: next.clone(),
                        },
                    },
                    idx,
                    &uri,
                ));
            }
        };
        let (next_method, keep) = redirected_method(status, &method);
        let (hop_no, url) = (idx + 1, uri.to_string());
        if visited.contains(&(next_method.clone(), next_uri.to_string())) {
            hop.violations.push(FailureCode::RedirectLoop);
            return Err(Failure::RedirectLoop {
                hop: hop_no,
                url,
                status,
                method: next_method.to_string(),
                location: next_uri.to_string(),
            });
        }
        if idx as u32 >= policy.max_hops {
            hop.violations.push(FailureCode::RedirectLimit);
            return Err(Failure::RedirectLimit {
                max_hops: policy.max_hops,
                hop: hop_no,
                url,
                status,
                location: next_uri.to_string(),
            });
        }
        let mut violations = Vec::new();
        if uri.scheme_str() == Some("https")
            && next_uri.scheme_str() == Some("http")
            && !policy.allow_downgrade
        {
            violations.push(Failure::RedirectDowngrade {
                hop: hop_no,
                url: url.clone(),
                status,
                location: next_uri.to_string(),
            });
        }
        if next_method != method && !policy.allow_method_change {
            violations.push(Failure::RedirectMethodChanged {
                hop: hop_no,
                url,
                status,
                from: method.to_string(),
                to: next_method.to_string(),
            });
        }
        hop.violations = violations.iter().map(Failure::code).collect();
        if !policy.report_only
            && let Some(v) = violations.into_iter().next()
        {
            return Err(v);
        }
        if !policy.forward_credentials_cross_origin
            && origin(&next_uri) != origin0
            && headers.iter().any(|(k, _)| is_credential(k))
        {
            headers.retain(|(k, _)| !is_credential(k));
            dropped = true;
        }
        if !keep {
            body = None;
            headers.retain(|(k, _)| !k.as_str().starts_with("content-"));
        }
        method = next_method;
        uri = next_uri;
    }
}

/// Assertions on a completed chain: the status sequence and the final scheme.
pub fn chain_assertions(policy: &Policy, hops: &[Hop], final_uri: &Uri) -> Vec<Checked> {
    let mut out = Vec::new();
    if let Some(want) = &policy.statuses {
        let got: Vec<u16> = hops.iter().filter_map(|h| h.status).collect();
        let failure = (&got != want).then(|| Failure::RedirectSequenceMismatch {
            got: got.clone(),
            expected: want.clone(),
        });
        out.push(Checked::new(
            "redirect_statuses",
            "redirect",
            json!(want),
            json!(got),
            failure,
        ));
    }
    if policy.require_https {
        let ok = final_uri.scheme_str() == Some("https");
        out.push(Checked::new(
            "require_https",
            "redirect",
            json!("https"),
            json!(final_uri.scheme_str()),
            (!ok).then(|| Failure::RedirectScheme {
                url: final_uri.to_string(),
            }),
        ));
    }
    out
}

/// Resolves a Location header against the request URL (RFC 3986 §5.2:
/// absolute, scheme-relative, absolute-path, query-only and relative
/// references, with dot segments removed). The fragment is dropped: it is
/// never sent.
pub fn resolve_location(base: &Uri, location: &str) -> String {
    let location = location.trim();
    let location = location.split_once('#').map_or(location, |(l, _)| l);
    let has_scheme = location.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            && s.as_bytes()[0].is_ascii_alphabetic()
    });
    if has_scheme {
        return location.to_owned();
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    let (loc_path, query) = match location.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (location, None),
    };
    let path = if loc_path.is_empty() {
        base.path().to_owned()
    } else if loc_path.starts_with('/') {
        remove_dots(loc_path)
    } else {
        let dir = base.path().rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        remove_dots(&format!("{dir}/{loc_path}"))
    };
    let query = match (query, loc_path.is_empty()) {
        (Some(q), _) => format!("?{q}"),
        (None, true) => base.query().map(|q| format!("?{q}")).unwrap_or_default(),
        (None, false) => String::new(),
    };
    format!("{scheme}://{authority}{path}{query}")
}

fn remove_dots(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn locations_resolve_against_the_request() {
        let base: Uri = "http://a.test:8080/x/y?q=1".parse().unwrap();
        let r = |l| resolve_location(&base, l);
        assert_eq!(r("https://b.test/z"), "https://b.test/z");
        assert_eq!(r("//c.test/z"), "http://c.test/z");
        assert_eq!(r("/z"), "http://a.test:8080/z");
        assert_eq!(r("z"), "http://a.test:8080/x/z");
        assert_eq!(r("../z?k=v#frag"), "http://a.test:8080/z?k=v");
        assert_eq!(r("?p=2"), "http://a.test:8080/x/y?p=2");
        assert_eq!(r("./"), "http://a.test:8080/x/");
        assert_eq!(r("/a/./b/../c"), "http://a.test:8080/a/c");
    }

    #[test]
    fn methods_change_as_clients_do() {
        let post = Method::POST;
        assert_eq!(redirected_method(301, &post), (Method::GET, false));
        assert_eq!(redirected_method(302, &post), (Method::GET, false));
        assert_eq!(redirected_method(303, &post), (Method::GET, false));
        assert_eq!(redirected_method(307, &post), (Method::POST, true));
        assert_eq!(redirected_method(308, &post), (Method::POST, true));
        assert_eq!(redirected_method(301, &Method::PUT), (Method::PUT, true));
        assert_eq!(redirected_method(303, &Method::PUT), (Method::GET, false));
        assert_eq!(redirected_method(303, &Method::HEAD), (Method::HEAD, true));
    }

    #[test]
    fn origins_include_scheme_and_default_port() {
        let o = |s: &str| origin(&s.parse().unwrap());
        assert_eq!(o("https://A.test/x"), o("https://a.test:443/y"));
        assert_ne!(o("http://a.test/"), o("https://a.test/"));
        assert_ne!(o("http://a.test:8080/"), o("http://a.test/"));
    }
}
