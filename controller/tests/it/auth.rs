//! Who may reach what over HTTP, against a real controller on loopback:
//! every route of the route table without credentials and with too low a
//! role, bearer tokens, the dashboard login over plain HTTP and HTTPS,
//! CSRF, the guess limit, revocation on reload, and the security headers.

#![allow(clippy::unwrap_used)] // helpers of tests: a panic is the failure

use std::net::SocketAddr;

use bytes::Bytes;
use outpost_controller::{api, auth::Access, auth::Role, config};
use outpost_testkit::{Pki, client};

use crate::support::{ANONYMOUS_VIEWER, API_CHECK, config_text, start, vars};

const VIEWER_TOKEN: &str = "viewer-token-0123456789abcdef0123456789";
const OPERATOR_TOKEN: &str = "operator-token-0123456789abcdef012345678";
const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef0123456789ab";
const PASSWORD: &str = "correct horse battery staple";

/// The routes anyone may call. Adding one to `api::public_routes()` must
/// be a decision: this list has to change with it.
const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/status"),
    // Heartbeat pings: the unguessable ping id is the credential.
    ("GET", "/ping/{id}"),
    ("POST", "/ping/{id}"),
    ("GET", "/ping/{id}/{signal}"),
    ("POST", "/ping/{id}/{signal}"),
];

fn auth_vars() -> Vec<(String, String)> {
    let mut v = vars();
    for (k, t) in [
        ("T_VIEWER", VIEWER_TOKEN),
        ("T_OPERATOR", OPERATOR_TOKEN),
        ("T_ADMIN", ADMIN_TOKEN),
    ] {
        v.push((k.into(), t.into()));
    }
    v
}

/// Tokens of each role (from the environment), and users `alice`
/// (admin) and `victor` (viewer) with [`PASSWORD`]; `extra_server` goes
/// into `[server]`.
fn auth_config(dir: &std::path::Path, extra_server: &str, users: &[(&str, &str)]) -> String {
    let base = config_text(&dir.join("o.db"), "http://127.0.0.1:9", API_CHECK).replacen(
        ANONYMOUS_VIEWER,
        extra_server,
        1,
    );
    let mut s = base;
    for (name, role, var) in [
        ("viewer-bot", "viewer", "T_VIEWER"),
        ("operator-bot", "operator", "T_OPERATOR"),
        ("admin-bot", "admin", "T_ADMIN"),
    ] {
        s.push_str(&format!(
            "[[auth.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken = {{ env = \"{var}\" }}\n"
        ));
    }
    for (name, role) in users {
        let phc = outpost_controller::auth::password::hash(PASSWORD.as_bytes()).unwrap();
        s.push_str(&format!(
            "[[auth.users]]\nname = \"{name}\"\nrole = \"{role}\"\npassword_hash = \"{phc}\"\n"
        ));
    }
    s
}

fn parse(text: &str) -> config::ControllerConfig {
    config::parse(text, "auth.toml", &auth_vars()).expect("test config is valid")
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> client::Response {
    client::http_with(addr, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
}

#[tokio::test]
async fn every_route_needs_credentials_except_the_public_set() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start_with(&auth_config(dir.path(), "", &[])).await;
    let http = ctl.http_addr();
    let (_, table) = api::all_routes().into_parts();
    assert!(table.len() >= 15, "route table looks incomplete: {table:?}");

    let public: Vec<(String, &str)> = table
        .iter()
        .filter(|r| r.access == Access::Public)
        .map(|r| (r.method.to_string(), r.path))
        .collect();
    let expected: Vec<(String, &str)> = PUBLIC.iter().map(|(m, p)| ((*m).into(), *p)).collect();
    assert_eq!(
        public, expected,
        "the public set changed: update PUBLIC on purpose"
    );

    let bearer = |t: &str| format!("Bearer {t}");
    let (viewer, operator) = (bearer(VIEWER_TOKEN), bearer(OPERATOR_TOKEN));
    let mut checked = 0;
    for r in &table {
        let method = r.method.as_str();
        let path = concrete(r.path);
        let Some(needed) = r.access.required(&r.method) else {
            let resp = call(http, method, &path, &[], b"").await;
            assert!(
                resp.status != 401 && resp.status != 403,
                "public {method} {path} answered {}",
                resp.status
            );
            continue;
        };
        // No credentials: 401, for every non-public route.
        let resp = call(http, method, &path, &[], b"").await;
        assert_eq!(resp.status, 401, "{method} {path} without credentials");
        // A wrong token: 401 too.
        let wrong = bearer("not-a-configured-token-000000000000000");
        let resp = call(http, method, &path, &[("authorization", &wrong)], b"").await;
        assert_eq!(resp.status, 401, "{method} {path} with a wrong token");
        // Too low a role: 403; enough: past the gate.
        for (role, auth) in [(Role::Viewer, &viewer), (Role::Operator, &operator)] {
            let resp = call(http, method, &path, &[("authorization", auth)], b"").await;
            if role < needed {
                assert_eq!(resp.status, 403, "{method} {path} as {role}");
            } else {
                assert!(
                    resp.status != 401 && resp.status != 403,
                    "{method} {path} as {role}: {}",
                    resp.status
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} protected routes");
    // Paths that are not routes answer 401 to strangers too (no probing of
    // what exists), and another method on a route is no way around it.
    for (method, path) in [("GET", "/nope"), ("DELETE", "/api/v1/checks"), ("PUT", "/")] {
        let resp = call(http, method, path, &[], b"").await;
        assert_eq!(resp.status, 401, "{method} {path}");
    }
    ctl.shutdown().await;
}

async fn start_with(text: &str) -> outpost_controller::RunningController {
    outpost_controller::start(parse(text))
        .await
        .expect("controller starts")
}

#[tokio::test]
async fn a_viewer_token_reads_but_cannot_change_state_and_an_admin_can() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start_with(&auth_config(dir.path(), "", &[])).await;
    let http = ctl.http_addr();
    let viewer = format!("Bearer {VIEWER_TOKEN}");
    let resp = call(
        http,
        "GET",
        "/api/v1/whoami",
        &[("authorization", &viewer)],
        b"",
    )
    .await;
    assert_eq!(resp.status, 200);
    let who: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(who["name"], "viewer-bot");
    assert_eq!(who["role"], "viewer");
    assert_eq!(who["via"], "token");
    let resp = call(http, "GET", "/metrics", &[("authorization", &viewer)], b"").await;
    assert_eq!(resp.status, 200, "Prometheus scrapes with a viewer token");

    for (method, path) in [
        ("POST", "/api/v1/reload"),
        ("DELETE", "/api/v1/sessions/alice"),
        ("GET", "/api/v1/sessions"),
    ] {
        for token in [VIEWER_TOKEN, OPERATOR_TOKEN] {
            let auth = format!("Bearer {token}");
            let resp = call(http, method, path, &[("authorization", &auth)], b"").await;
            assert_eq!(resp.status, 403, "{method} {path}");
        }
    }
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let resp = call(
        http,
        "GET",
        "/api/v1/sessions",
        &[("authorization", &admin)],
        b"",
    )
    .await;
    assert_eq!(resp.status, 200);
    // The config did not come from a file: the admin gets past the gate to a 409.
    let resp = call(
        http,
        "POST",
        "/api/v1/reload",
        &[("authorization", &admin)],
        b"",
    )
    .await;
    assert_eq!(resp.status, 409, "{}", resp.text());
    ctl.shutdown().await;
}

#[tokio::test]
async fn an_argon2_token_is_accepted_and_a_rotated_one_is_revoked_by_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (token, phc) = outpost_controller::auth::password::generate_token().unwrap();
    let entry = |phc: &str| {
        format!("[[auth.tokens]]\nname = \"scraper\"\nrole = \"viewer\"\nhash = \"{phc}\"\n")
    };
    let text = auth_config(dir.path(), "", &[]);
    let ctl = start_with(&format!("{text}{}", entry(&phc))).await;
    let http = ctl.http_addr();
    let auth = format!("Bearer {token}");
    for _ in 0..3 {
        let resp = call(
            http,
            "GET",
            "/api/v1/whoami",
            &[("authorization", &auth)],
            b"",
        )
        .await;
        assert_eq!(resp.status, 200);
        let who: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(who["name"], "scraper");
    }
    // Rotate: the config now holds another token's hash under that name.
    let (_, other) = outpost_controller::auth::password::generate_token().unwrap();
    ctl.reload(parse(&format!("{text}{}", entry(&other))));
    let resp = call(
        http,
        "GET",
        "/api/v1/whoami",
        &[("authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(
        resp.status, 401,
        "the cached verification must not outlive its hash"
    );
    ctl.shutdown().await;
}

/// The `Set-Cookie` pair (`name=value`) of a response.
fn cookie_of(resp: &client::Response) -> String {
    let v = resp
        .headers
        .get("set-cookie")
        .expect("set-cookie")
        .to_str()
        .unwrap();
    v.split(';').next().unwrap().to_owned()
}

fn csrf_in(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn login_body(user: &str, password: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("user", user)
        .append_pair("password", password)
        .append_pair("next", "/certificates")
        .finish()
}

#[tokio::test]
async fn login_cookie_csrf_and_logout_over_plain_loopback_http() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start_with(&auth_config(dir.path(), "", &[("alice", "admin")])).await;
    let http = ctl.http_addr();

    let resp = call(http, "GET", "/", &[], b"").await;
    assert_eq!(resp.status, 401);
    assert!(resp.text().contains("name=\"password\""), "the login form");

    let resp = call(
        http,
        "POST",
        "/login",
        &[FORM],
        login_body("alice", "wrong password!").as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 401);
    assert!(resp.headers.get("set-cookie").is_none());

    let resp = call(
        http,
        "POST",
        "/login",
        &[FORM],
        login_body("alice", PASSWORD).as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 303, "{}", resp.text());
    assert_eq!(resp.headers["location"], "/certificates");
    let set = resp.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.starts_with("outpost-session="), "{set}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: no Secure");
    let cookie = cookie_of(&resp);
    let with = [("cookie", cookie.as_str())];

    let resp = call(http, "GET", "/", &with, b"").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.headers["cache-control"], "no-store");
    let resp = call(http, "GET", "/api/v1/whoami", &with, b"").await;
    let who: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        (who["name"].as_str(), who["via"].as_str()),
        (Some("alice"), Some("session"))
    );

    // A state-changing POST with the cookie but without the CSRF token: refused.
    let resp = call(http, "POST", "/logout", &[with[0], FORM], b"").await;
    assert_eq!(resp.status, 403);
    let resp = call(http, "POST", "/logout", &[with[0], FORM], b"csrf=forged").await;
    assert_eq!(resp.status, 403);
    let resp = call(
        http,
        "POST",
        "/logout",
        &[with[0], ("x-csrf-token", "forged")],
        b"",
    )
    .await;
    assert_eq!(resp.status, 403);
    // The same from another site, even with the right token: refused.
    let page = call(http, "GET", "/logout", &with, b"").await.text();
    let csrf = csrf_in(&page);
    let body = format!("csrf={csrf}");
    let resp = call(
        http,
        "POST",
        "/logout",
        &[with[0], FORM, ("sec-fetch-site", "cross-site")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 403);
    // The session survived all that; the real form signs out.
    assert_eq!(call(http, "GET", "/", &with, b"").await.status, 200);
    let resp = call(http, "POST", "/logout", &[with[0], FORM], body.as_bytes()).await;
    assert_eq!(resp.status, 303);
    assert!(
        resp.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(call(http, "GET", "/", &with, b"").await.status, 401);
    ctl.shutdown().await;
}

#[tokio::test]
async fn login_page_logout_over_https_with_secure_cookie_and_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("outpost-test-root");
    let (cert, key) = pki
        .leaf(&["localhost"])
        .write_pem(dir.path(), "controller")
        .unwrap();
    let tls = format!(
        "http_tls = {{ cert_file = {:?}, key_file = {:?} }}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let ctl = start_with(&auth_config(dir.path(), &tls, &[("alice", "operator")])).await;
    let http = ctl.http_addr();
    let https = |method: &'static str,
                 path: &'static str,
                 headers: Vec<(&'static str, String)>,
                 body: String,
                 h2: bool| {
        let mut cfg = pki.client_config();
        cfg.alpn_protocols = vec![if h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        async move {
            let io = client::tls_connect(http, "localhost", cfg)
                .await
                .expect("TLS");
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            client::request_with(io, h2, method, "localhost", path, &h, Bytes::from(body))
                .await
                .expect("request")
        }
    };
    let form = (
        "content-type",
        "application/x-www-form-urlencoded".to_owned(),
    );

    let resp = https("GET", "/login", vec![], String::new(), false).await;
    assert_eq!(resp.status, 200);
    let h = &resp.headers;
    assert_eq!(h["strict-transport-security"], "max-age=31536000");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );

    let resp = https(
        "POST",
        "/login",
        vec![form.clone()],
        login_body("alice", PASSWORD),
        false,
    )
    .await;
    assert_eq!(resp.status, 303, "{}", resp.text());
    let set = resp.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.starts_with("__Host-outpost-session="), "{set}");
    assert!(
        set.contains("; Secure") && set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = ("cookie", cookie_of(&resp));

    // The page, over HTTP/2 this time.
    let resp = https("GET", "/", vec![cookie.clone()], String::new(), true).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.headers["cache-control"], "no-store");
    assert!(resp.text().contains("alice") || resp.text().contains("sign out"));
    let page = https("GET", "/logout", vec![cookie.clone()], String::new(), false)
        .await
        .text();
    let csrf = csrf_in(&page);
    let resp = https(
        "POST",
        "/logout",
        vec![cookie.clone(), form.clone()],
        format!("csrf={csrf}"),
        false,
    )
    .await;
    assert_eq!(resp.status, 303);
    let resp = https("GET", "/", vec![cookie], String::new(), false).await;
    assert_eq!(resp.status, 401);

    // Plain HTTP to the HTTPS listener gets no page.
    let plain = client::get(http, "/livez").await;
    assert!(plain.map(|r| r.status != 200).unwrap_or(true));
    ctl.shutdown().await;
}

#[tokio::test]
async fn repeated_wrong_passwords_from_one_address_get_429() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start_with(&auth_config(dir.path(), "", &[("alice", "admin")])).await;
    let http = ctl.http_addr();
    let mut statuses = Vec::new();
    for _ in 0..(outpost_controller::auth::ratelimit::BURST + 2) {
        let resp = call(
            http,
            "POST",
            "/login",
            &[FORM],
            login_body("alice", "guess guess guess").as_bytes(),
        )
        .await;
        statuses.push(resp.status);
        if resp.status == 429 {
            let retry: u64 = resp.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry >= 1);
        }
    }
    let burst = outpost_controller::auth::ratelimit::BURST as usize;
    assert!(statuses[..burst].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[burst..].iter().all(|s| *s == 429), "{statuses:?}");
    // Even the right password waits now.
    let resp = call(
        http,
        "POST",
        "/login",
        &[FORM],
        login_body("alice", PASSWORD).as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 429);
    ctl.shutdown().await;
}

#[tokio::test]
async fn removing_a_user_and_reloading_ends_their_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let with_users = auth_config(dir.path(), "", &[("alice", "admin"), ("victor", "viewer")]);
    let ctl = start_with(&with_users).await;
    let http = ctl.http_addr();
    let mut cookies = Vec::new();
    for user in ["alice", "victor"] {
        let resp = call(
            http,
            "POST",
            "/login",
            &[FORM],
            login_body(user, PASSWORD).as_bytes(),
        )
        .await;
        assert_eq!(resp.status, 303);
        cookies.push(cookie_of(&resp));
    }
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let resp = call(
        http,
        "GET",
        "/api/v1/sessions",
        &[("authorization", &admin)],
        b"",
    )
    .await;
    let sessions: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 2);
    // victor is a viewer: the admin list is not his.
    let resp = call(
        http,
        "GET",
        "/api/v1/sessions",
        &[("cookie", &cookies[1])],
        b"",
    )
    .await;
    assert_eq!(resp.status, 403);

    // Keep alice only (same hash string), reload.
    let alice_only: String = {
        let start = with_users.rfind("[[auth.users]]").unwrap();
        with_users[..start].to_owned()
    };
    ctl.reload(parse(&alice_only));
    assert_eq!(
        call(http, "GET", "/", &[("cookie", &cookies[1])], b"")
            .await
            .status,
        401
    );
    assert_eq!(
        call(http, "GET", "/", &[("cookie", &cookies[0])], b"")
            .await
            .status,
        200
    );
    // And an admin can end a user's sessions over the API.
    let resp = call(
        http,
        "DELETE",
        "/api/v1/sessions/alice",
        &[("authorization", &admin)],
        b"",
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        call(http, "GET", "/", &[("cookie", &cookies[0])], b"")
            .await
            .status,
        401
    );
    ctl.shutdown().await;
}

#[tokio::test]
async fn without_credentials_in_config_everything_but_the_public_set_is_401() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir.path().join("o.db"), "http://127.0.0.1:9", API_CHECK).replacen(
        ANONYMOUS_VIEWER,
        "",
        1,
    );
    let ctl = start(&text).await;
    let http = ctl.http_addr();
    assert_eq!(call(http, "GET", "/livez", &[], b"").await.status, 200);
    assert_eq!(call(http, "GET", "/readyz", &[], b"").await.status, 200);
    let resp = call(http, "GET", "/api/v1/checks", &[], b"").await;
    assert_eq!(resp.status, 401);
    assert!(
        resp.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(call(http, "GET", "/metrics", &[], b"").await.status, 401);
    ctl.shutdown().await;
}
