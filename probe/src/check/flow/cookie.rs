//! A flow's cookie jar (RFC 6265, the parts machine clients use): cookies set
//! by any hop of any step are sent on later requests whose host and path
//! match — host-only cookies to their host, `Domain` cookies to it and its
//! subdomains, `Secure` ones over https only; `Max-Age`/`Expires` in the
//! past delete. Values are credentials: only names leave the jar (details).
//! Bounded: at most [`MAX_COOKIES`] cookies, 4 KiB each.

use http::{HeaderMap, HeaderValue, Uri};
use time::OffsetDateTime;

use crate::{check::redirect::Jar, config::Secret};

/// Most cookies held.
pub const MAX_COOKIES: usize = 64;
const MAX_COOKIE_BYTES: usize = 4096;

#[derive(Debug, Clone)]
struct Cookie {
    name: String,
    value: Secret,
    domain: String,
    host_only: bool,
    path: String,
    secure: bool,
    expires: Option<OffsetDateTime>,
}

/// The jar of one flow run.
#[derive(Debug, Default)]
pub struct CookieJar {
    cookies: Vec<Cookie>,
    /// Names set, in order of first arrival (for the details).
    set_names: Vec<String>,
}

fn default_path(uri: &Uri) -> String {
    let p = uri.path();
    match p.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => p[..i].to_owned(),
    }
}

fn path_matches(cookie: &str, request: &str) -> bool {
    request == cookie
        || (request.starts_with(cookie)
            && (cookie.ends_with('/') || request.as_bytes().get(cookie.len()) == Some(&b'/')))
}

fn domain_matches(cookie: &Cookie, host: &str) -> bool {
    if cookie.host_only {
        host.eq_ignore_ascii_case(&cookie.domain)
    } else {
        let h = host.to_ascii_lowercase();
        h == cookie.domain || h.ends_with(&format!(".{}", cookie.domain))
    }
}

impl CookieJar {
    /// Names of the cookies set so far, in arrival order.
    pub fn names(&self) -> &[String] {
        &self.set_names
    }

    /// The values held (to scrub from details and messages).
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.cookies.iter().map(|c| c.value.expose())
    }

    /// The value of cookie `name` (a flow's `cookie` extraction).
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.cookies
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.value)
    }

    fn store(&mut self, uri: &Uri, line: &str, now: OffsetDateTime) {
        if line.len() > MAX_COOKIE_BYTES {
            return;
        }
        let mut parts = line.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim(), value.trim().trim_matches('"'));
        if name.is_empty() {
            return;
        }
        let host = uri
            .host()
            .unwrap_or("")
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        let mut c = Cookie {
            name: name.to_owned(),
            value: Secret::new(value),
            domain: host.clone(),
            host_only: true,
            path: default_path(uri),
            secure: false,
            expires: None,
        };
        let mut max_age = None;
        for attr in parts {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "domain" if !v.is_empty() => {
                    let d = v.trim_start_matches('.').to_ascii_lowercase();
                    // A server may not set cookies for another site.
                    if host != d && !host.ends_with(&format!(".{d}")) {
                        return;
                    }
                    c.domain = d;
                    c.host_only = false;
                }
                "path" if v.starts_with('/') => c.path = v.to_owned(),
                "secure" => c.secure = true,
                "max-age" => max_age = v.parse::<i64>().ok(),
                "expires" if max_age.is_none() => {
                    c.expires = httpdate::parse_http_date(v).ok().map(OffsetDateTime::from);
                }
                _ => {}
            }
        }
        if let Some(s) = max_age {
            c.expires = Some(now + time::Duration::seconds(s));
        }
        self.cookies
            .retain(|o| !(o.name == c.name && o.domain == c.domain && o.path == c.path));
        if c.expires.is_some_and(|e| e <= now) {
            return;
        }
        if !self.set_names.contains(&c.name) && self.set_names.len() < MAX_COOKIES {
            self.set_names.push(c.name.clone());
        }
        if self.cookies.len() >= MAX_COOKIES {
            self.cookies.remove(0);
        }
        self.cookies.push(c);
    }
}

impl Jar for CookieJar {
    fn outgoing(&self, uri: &Uri) -> Option<HeaderValue> {
        let now = OffsetDateTime::now_utc();
        let host = uri.host().unwrap_or("").trim_matches(['[', ']']);
        let https = uri.scheme_str() == Some("https");
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|c| domain_matches(c, host) && path_matches(&c.path, uri.path()))
            .filter(|c| https || !c.secure)
            .filter(|c| c.expires.is_none_or(|e| e > now))
            .map(|c| format!("{}={}", c.name, c.value.expose()))
            .collect();
        if pairs.is_empty() {
            return None;
        }
        let mut v = HeaderValue::try_from(pairs.join("; ")).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    fn incoming(&mut self, uri: &Uri, headers: &HeaderMap) {
        let now = OffsetDateTime::now_utc();
        for v in headers.get_all(http::header::SET_COOKIE) {
            if let Ok(line) = v.to_str() {
                self.store(uri, line, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(jar: &mut CookieJar, url: &str, line: &str) {
        let mut h = HeaderMap::new();
        h.append(
            http::header::SET_COOKIE,
            HeaderValue::from_str(line).unwrap(),
        );
        jar.incoming(&url.parse().unwrap(), &h);
    }

    fn sent(jar: &CookieJar, url: &str) -> Option<String> {
        jar.outgoing(&url.parse().unwrap())
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn cookies_follow_host_domain_path_and_secure() {
        let mut jar = CookieJar::default();
        set(
            &mut jar,
            "https://shop.test/login",
            "sid=abc; Path=/; HttpOnly",
        );
        set(&mut jar, "https://shop.test/api/x", "api=1");
        set(
            &mut jar,
            "https://shop.test/",
            "wide=2; Domain=shop.test; Secure",
        );
        set(&mut jar, "https://shop.test/", "evil=3; Domain=other.test");
        assert_eq!(
            sent(&jar, "https://shop.test/"),
            Some("sid=abc; wide=2".into())
        );
        assert_eq!(
            sent(&jar, "https://shop.test/api/orders"),
            Some("sid=abc; api=1; wide=2".into())
        );
        assert_eq!(sent(&jar, "http://shop.test/"), Some("sid=abc".into()));
        assert_eq!(sent(&jar, "https://a.shop.test/"), Some("wide=2".into()));
        assert_eq!(sent(&jar, "https://other.test/"), None);
        assert_eq!(jar.names(), ["sid", "api", "wide"]);
        assert!(!format!("{jar:?}").contains("abc"), "values stay redacted");
        // Max-Age=0 deletes.
        set(
            &mut jar,
            "https://shop.test/login",
            "sid=; Path=/; Max-Age=0",
        );
        assert_eq!(sent(&jar, "http://shop.test/"), None);
    }
}
