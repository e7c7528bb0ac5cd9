//! The HTTP surface: the JSON API, plus [`router`] which also mounts the
//! status page ([`crate::dashboard`]), `/metrics`, `/livez` and `/readyz`.
//! Tests call `router(controller)` without a socket.
//!
//! Every route is registered through the route table ([`route::Routes`]) in
//! one of three sets: [`public_routes`] (no credentials), by method
//! (GET → viewer, other methods → operator) and [`admin_routes`]; one auth
//! layer over the whole router ([`crate::auth::gate`]) enforces them, and
//! [`headers`] adds the security headers to every response.
//!
//! - `GET /api/v1/checks`: every check with its overall state and per-region state.
//! - `GET /api/v1/checks/{id}`: one check plus its 50 newest results and
//!   its 20 newest events. Each region carries `summary`, the newest
//!   result's details in one line (backends failing, session age, …).
//! - `GET /api/v1/alerts`: open alerts first, then recent ones.
//! - `GET /api/v1/alerts/{id}`: one alert with its notifications and its
//!   timeline ([`alerts`]).
//! - `GET /api/v1/alert-groups`, `GET /api/v1/alert-groups/{id}`: the
//!   notification groups of `group_by` routes with their members,
//!   notifications and delivery attempts ([`groups`]).
//! - `GET /api/v1/probes`: configured and seen probes, fresh or offline.
//! - `GET /api/v1/events?check=ID&limit=N`: DNS answer changes ([`events`]).
//! - `GET /api/v1/certificates`: the certificate inventory ([`certificates`]).
//! - `GET/POST /api/v1/silences`, `DELETE /api/v1/silences/{id}`:
//!   silences ([`silences`]; POST and DELETE need an operator).
//! - `GET /api/v1/whoami`, and for admins `GET /api/v1/sessions`,
//!   `DELETE /api/v1/sessions/{user}`, `POST /api/v1/reload` ([`admin`]).
//!
//! Result details come from the store typed (the probe's `Observed`, read
//! once per row) and leave serialized through [`crate::details::Redacted`]:
//! a key that looks like a token, secret, password, cookie or authorization
//! never shows its value, whatever a probe sent. Every body is a typed
//! struct; none is assembled from JSON values.

pub mod admin;
pub mod alerts;
pub mod certificates;
pub mod events;
pub mod groups;
pub mod headers;
pub mod route;
pub mod silences;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Path, State},
    http::{StatusCode, header},
    middleware::from_fn_with_state,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{
    Controller,
    alerting::{
        Action, AlertKind, AlertState, Severity, offline,
        rule::{self, RegionStatus},
        sink::NotificationState,
    },
    api::events::EventView,
    api::route::Routes,
    auth::{Gate, Role},
    config::CheckDef,
    details::Redacted,
    store::{AlertRow, NotificationRow, ProbeRow, RegionState, ResultRow, StoreError},
};

/// Reason shown for a region whose every probe is offline.
pub const REASON_PROBE_OFFLINE: &str = "probe offline";
/// Reason shown for a region without a result for 3 intervals.
pub const REASON_NO_RECENT_RESULT: &str = "no result for 3 intervals";

/// Results shown per check.
pub const RECENT_RESULTS: u32 = 50;
/// Events listed with a check.
pub const CHECK_EVENTS: u32 = 20;
/// Alerts listed.
pub const ALERTS_LISTED: u32 = 100;

/// Largest request body any route reads (forms, JSON).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Routes anyone may call: health and the dashboard's public pages
/// (login, the opt-in status page). Heartbeat pings (`/ping/{id}`) belong
/// here. Adding a route to this set makes it readable by anyone.
pub fn public_routes() -> Routes {
    Routes::public()
        .get("/livez", || async { "ok\n" })
        .get("/readyz", readyz)
        .merge(crate::dashboard::public_routes())
        .merge(crate::heartbeat::routes())
}

/// The JSON API, `/metrics` and the pages: GET → viewer, others → operator.
pub fn routes() -> Routes {
    Routes::by_method()
        .get("/api/v1/checks", list_checks)
        .get("/api/v1/checks/{id}", get_check)
        .get("/api/v1/alerts", list_alerts)
        .get("/api/v1/alerts/{id}", alerts::get_alert)
        .get("/api/v1/alert-groups", groups::list_groups)
        .get("/api/v1/alert-groups/{id}", groups::get_group)
        .get("/api/v1/probes", list_probes)
        .get("/api/v1/events", events::list_events)
        .get("/api/v1/certificates", certificates::list_certificates)
        .get("/api/v1/evaluator", crate::alerting::leader::status)
        .get("/api/v1/silences", silences::list_silences)
        .post("/api/v1/silences", silences::create_silence)
        .delete("/api/v1/silences/{id}", silences::delete_silence)
        .get("/api/v1/whoami", admin::whoami)
        .get("/metrics", metrics)
        .merge(crate::dashboard::routes())
        .merge(crate::dashboard::session_routes())
}

/// Routes only an admin may call, whatever the method.
pub fn admin_routes() -> Routes {
    Routes::at_least(Role::Admin)
        .get("/api/v1/sessions", admin::list_sessions)
        .delete("/api/v1/sessions/{user}", admin::end_sessions)
        .post("/api/v1/reload", admin::reload)
}

/// Every route of the HTTP listener, each with its access level.
pub fn all_routes() -> Routes {
    public_routes().merge(routes()).merge(admin_routes())
}

/// The whole HTTP app: every route, behind the auth gate, with the
/// security headers on every response.
pub fn router(ctl: Controller) -> Router {
    let (app, table) = all_routes().into_parts();
    let https = ctl.config().http_tls.is_some();
    let gate = Gate::new(ctl.clone(), &table, https);
    app.fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn_with_state(gate, crate::auth::gate))
        .layer(from_fn_with_state(https, headers::security_headers))
        .with_state(ctl)
}

/// A store failure as a 500 with a JSON body.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store query failed");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store unavailable".into(),
        )
    }
}

/// The body of an error: `{"error": "…"}`.
#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

/// One region of one check.
#[derive(Debug, Clone, Serialize)]
pub struct RegionView {
    /// Region.
    pub region: String,
    /// OK, FAILING, STALE or UNKNOWN.
    pub state: RegionStatus,
    /// Why a region is STALE: `probe offline` or `no result for 3 intervals`.
    pub reason: Option<&'static str>,
    /// Newest result time (unix ms).
    pub last_result_at_ms: Option<i64>,
    /// Age of the newest result.
    pub age_ms: Option<i64>,
    /// Newest failure code.
    pub code: Option<String>,
    /// Newest failure message.
    pub message: Option<String>,
    /// Failed runs in a row.
    pub consecutive_failures: u32,
    /// Passing runs in a row.
    pub consecutive_passes: u32,
    /// Probe that sent the newest result.
    pub probe: Option<String>,
    /// What the newest result's details say in one line, by kind:
    /// `1 of 2 backends failing (192.0.2.2:443)`, `session age 2 h 13 min,
    /// 14 renewals, declared lifetime 1 h, next renewal in 4 min 30 s`, `change
    /// propagating: 1 resolver lagging`, the TLS forecast.
    pub summary: Option<String>,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    /// Id.
    pub id: String,
    /// Kind (`http`).
    pub kind: &'static str,
    /// Target URL.
    pub target: Option<String>,
    /// Interval, e.g. `30s`.
    pub interval: String,
    /// Worst region state, FAILING when an alert is open, FLAPPING when
    /// flap detection holds it open, SUPPRESSED when its open alert is
    /// recorded but not paged (`suppressed_by` says why).
    pub state: RegionStatus,
    /// An alert is open.
    pub alert_open: bool,
    /// The open alert is flapping ([`crate::alerting::flap`]).
    pub flapping: bool,
    /// Why the open alert is recorded but not paged (`silence 3`,
    /// `maintenance nightly`: [`crate::alerting::silence`]).
    pub suppressed_by: Option<String>,
    /// Assigned regions.
    pub regions: Vec<RegionView>,
}

fn region_view(
    check: &CheckDef,
    region: &str,
    state: Option<&RegionState>,
    offline: bool,
    now: i64,
) -> RegionView {
    let status = rule::region_status(state, check.spec.interval, offline, now);
    let reason = match status {
        RegionStatus::Stale if offline => Some(REASON_PROBE_OFFLINE),
        RegionStatus::Stale => Some(REASON_NO_RECENT_RESULT),
        _ => None,
    };
    RegionView {
        region: region.to_owned(),
        state: status,
        reason,
        last_result_at_ms: state.map(|s| s.last_result_at_ms),
        age_ms: state.map(|s| now.saturating_sub(s.last_result_at_ms).max(0)),
        code: state.and_then(|s| s.last_code.clone()),
        message: state.and_then(|s| s.last_message.clone()),
        consecutive_failures: state.map(|s| s.consecutive_failures).unwrap_or(0),
        consecutive_passes: state.map(|s| s.consecutive_passes).unwrap_or(0),
        probe: state.map(|s| s.last_probe.clone()),
        summary: state.and_then(|s| crate::details::cell_summary(&s.last_details, now)),
    }
}

fn check_view(
    check: &CheckDef,
    states: &[RegionState],
    offline: &[String],
    alert: Option<&AlertRow>,
    now: i64,
) -> CheckView {
    let alert_open = alert.is_some();
    let flapping = alert.is_some_and(|a| a.flapping);
    let regions: Vec<RegionView> = check
        .regions
        .iter()
        .map(|r| {
            let st = states.iter().find(|s| &s.region == r);
            region_view(check, r, st, offline.contains(r), now)
        })
        .collect();
    let state = check_state(check, |r| newest_of(states, r), offline, alert, now);
    CheckView {
        id: check.raw.id.clone(),
        kind: check.spec.kind.name(),
        target: target(check),
        interval: outpost_probe::config::Dur(check.spec.interval).to_string(),
        state,
        alert_open,
        flapping,
        suppressed_by: alert
            .map(|a| a.suppressed_by.clone())
            .filter(|s| !s.is_empty()),
        regions,
    }
}

/// A check's state: SUPPRESSED, FLAPPING or FAILING by its open alert,
/// else the worst of its regions' ([`rule::region_status`]).
/// `newest` gives a region's newest result time and outcome.
pub fn check_state(
    check: &CheckDef,
    newest: impl Fn(&str) -> Option<(i64, bool)>,
    offline: &[String],
    alert: Option<&AlertRow>,
    now: i64,
) -> RegionStatus {
    match alert {
        Some(a) if !a.suppressed_by.is_empty() => RegionStatus::Suppressed,
        Some(a) if a.flapping => RegionStatus::Flapping,
        Some(_) => RegionStatus::Failing,
        None => check
            .regions
            .iter()
            .map(|r| rule::status_of(newest(r), check.spec.interval, offline.contains(r), now))
            .max()
            .unwrap_or(RegionStatus::Unknown),
    }
}

/// The newest result time and outcome of `region` among `states`.
fn newest_of(states: &[RegionState], region: &str) -> Option<(i64, bool)> {
    states
        .iter()
        .find(|s| s.region == region)
        .map(|s| (s.last_result_at_ms, s.last_ok))
}

/// What a check probes, for every kind: the URL (userinfo and secret
/// query values redacted), `name TYPE` for dns, `host:port` for tls, tcp
/// and grpc, the host for icmp, the first request for a session; `None`
/// for push checks (their ping id is a credential).
pub fn target(check: &CheckDef) -> Option<String> {
    use outpost_probe::check::CheckKind;
    match &check.spec.kind {
        CheckKind::Http(_) => check
            .raw
            .http
            .as_ref()
            .map(|h| outpost_probe::redact::url(&h.url).into_owned()),
        CheckKind::Dns(d) => Some(format!("{} {}", d.name, d.rtype)),
        CheckKind::Tls(t) => Some(format!("{}:{}", t.host, t.port)),
        CheckKind::Tcp(t) => Some(format!("{}:{}", t.target.host, t.target.port)),
        CheckKind::Grpc(g) => Some(format!("{}:{} {}", g.target.host, g.target.port, g.service)),
        CheckKind::Icmp(i) => Some(i.target.host.clone()),
        CheckKind::Session(s) => s
            .requests
            .first()
            .map(|r| outpost_probe::redact::url(&r.uri.to_string()).into_owned()),
        _ => None,
    }
}

/// Regions whose every probe is offline right now.
pub async fn offline_regions(ctl: &Controller, now: i64) -> Result<Vec<String>, StoreError> {
    let rows = ctl.store().probes().await?;
    Ok(offline::offline_regions(
        &ctl.config(),
        &rows,
        ctl.started_ms(),
        now,
    ))
}

/// What every check's view in one read shares: the regions whose probes
/// are offline and the open alerts (every kind: the status page's banner
/// lists them all), read once.
pub struct Basis {
    /// Regions whose every probe is offline.
    pub offline: Vec<String>,
    /// Every open alert.
    pub open: Vec<AlertRow>,
}

impl Basis {
    /// Reads both now.
    pub async fn load(ctl: &Controller, now: i64) -> Result<Basis, StoreError> {
        Ok(Basis {
            offline: offline_regions(ctl, now).await?,
            open: ctl.store().open_alerts().await?,
        })
    }

    /// The open `check_failing` alert of each check.
    fn check_alerts(&self) -> HashMap<&str, &AlertRow> {
        self.open
            .iter()
            .filter(|a| a.kind == AlertKind::CheckFailing)
            .map(|a| (a.check_id.as_str(), a))
            .collect()
    }
}

/// Every configured check's view, in config order.
pub async fn check_views(ctl: &Controller, now: i64) -> Result<Vec<CheckView>, StoreError> {
    let basis = Basis::load(ctl, now).await?;
    let states = ctl.store().region_states().await?;
    Ok(views_from(ctl, &basis, now, states, None))
}

/// Every configured check's id and [`check_state`], in config order, from
/// one read of the regions' times and outcomes: what the overview needs of
/// every check to count and order them before it renders one page.
pub async fn check_states(
    ctl: &Controller,
    basis: &Basis,
    now: i64,
) -> Result<Vec<(String, RegionStatus)>, StoreError> {
    let cfg = ctl.config();
    let bare = ctl.store().region_states_bare().await?;
    let by_check = bare.by_check()?;
    let open = basis.check_alerts();
    Ok(cfg
        .checks
        .iter()
        .map(|c| {
            let states = by_check
                .get(c.raw.id.as_str())
                .map_or(&[][..], Vec::as_slice);
            let newest = |r: &str| {
                states
                    .iter()
                    .find(|s| s.region == r)
                    .map(|s| (s.at_ms, s.ok))
            };
            let alert = open.get(c.raw.id.as_str()).copied();
            let state = check_state(c, newest, &basis.offline, alert, now);
            (c.raw.id.clone(), state)
        })
        .collect())
}

/// The views of the checks `ids` names, in that order (unknown ids are
/// left out).
pub async fn check_views_of(
    ctl: &Controller,
    basis: &Basis,
    ids: &[&str],
    now: i64,
) -> Result<Vec<CheckView>, StoreError> {
    let states = ctl.store().region_states_of(ids).await?;
    Ok(views_from(ctl, basis, now, states, Some(ids)))
}

fn views_from(
    ctl: &Controller,
    basis: &Basis,
    now: i64,
    states: Vec<RegionState>,
    only: Option<&[&str]>,
) -> Vec<CheckView> {
    let cfg = ctl.config();
    let by_check = crate::alerting::by_check(states);
    let open = basis.check_alerts();
    let view = |c: &CheckDef| {
        check_view(
            c,
            by_check.get(&c.raw.id).map(Vec::as_slice).unwrap_or(&[]),
            &basis.offline,
            open.get(c.raw.id.as_str()).copied(),
            now,
        )
    };
    match only {
        None => cfg.checks.iter().map(view).collect(),
        Some(ids) => ids
            .iter()
            .filter_map(|id| cfg.check(id))
            .map(view)
            .collect(),
    }
}

/// One check's view and its newest results; `None` if not configured.
pub async fn check_detail(
    ctl: &Controller,
    id: &str,
    now: i64,
) -> Result<Option<(CheckView, Vec<ResultRow>)>, StoreError> {
    let cfg = ctl.config();
    let Some(check) = cfg.check(id) else {
        return Ok(None);
    };
    let states = ctl.store().region_states_for(id).await?;
    let open = ctl.store().open_alert(id, AlertKind::CheckFailing).await?;
    let results = ctl.store().recent_results(id, RECENT_RESULTS).await?;
    let offline = offline_regions(ctl, now).await?;
    Ok(Some((
        check_view(check, &states, &offline, open.as_ref(), now),
        results,
    )))
}

/// `GET /api/v1/checks`.
#[derive(Serialize)]
struct ChecksBody {
    now_ms: i64,
    checks: Vec<CheckView>,
}

async fn list_checks(State(ctl): State<Controller>) -> Result<Json<ChecksBody>, ApiError> {
    let now = ctl.now_ms();
    let checks = check_views(&ctl, now).await?;
    Ok(Json(ChecksBody {
        now_ms: now,
        checks,
    }))
}

/// One stored result.
#[derive(Serialize)]
struct ResultView<'a> {
    result_id: &'a str,
    probe: &'a str,
    region: &'a str,
    sequence: i64,
    started_at_ms: i64,
    received_at_ms: i64,
    ok: bool,
    failure_code: Option<&'a str>,
    failure_message: Option<&'a str>,
    total_us: i64,
    first_byte_us: i64,
    /// What the run observed, redacted.
    details: Redacted<'a>,
}

fn result_view(r: &ResultRow) -> ResultView<'_> {
    ResultView {
        result_id: &r.result_id,
        probe: &r.probe,
        region: &r.region,
        sequence: r.sequence,
        started_at_ms: r.started_at_ms,
        received_at_ms: r.received_at_ms,
        ok: r.ok,
        failure_code: r.failure_code.as_deref(),
        failure_message: r.failure_message.as_deref(),
        total_us: r.total_us,
        first_byte_us: r.first_byte_us,
        details: Redacted(&r.details),
    }
}

/// `GET /api/v1/checks/{id}`.
#[derive(Serialize)]
struct CheckBody<'a> {
    now_ms: i64,
    check: CheckView,
    recent_results: Vec<ResultView<'a>>,
    events: Vec<EventView>,
}

async fn get_check(
    State(ctl): State<Controller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let now = ctl.now_ms();
    let Some((view, results)) = check_detail(&ctl, &id, now).await? else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no check with id {id:?}"),
        ));
    };
    let events = events::event_views(&ctl, Some(&id), CHECK_EVENTS).await?;
    let body = CheckBody {
        now_ms: now,
        check: view,
        recent_results: results.iter().map(result_view).collect(),
        events,
    };
    Ok(Json(body).into_response())
}

/// One notification of an alert.
#[derive(Serialize)]
struct NotificationView<'a> {
    id: i64,
    sink: &'a str,
    action: Action,
    state: NotificationState,
    attempts: u32,
    /// When the next attempt is due (pending only).
    next_attempt_ms: Option<i64>,
    last_error: Option<&'a str>,
    delivered_ms: Option<i64>,
}

fn notification_view(n: &NotificationRow) -> NotificationView<'_> {
    NotificationView {
        id: n.id,
        sink: &n.sink,
        action: n.action,
        state: n.state,
        attempts: n.attempts,
        next_attempt_ms: (n.state == NotificationState::Pending).then_some(n.next_attempt_ms),
        last_error: n.last_error.as_deref(),
        delivered_ms: n.delivered_ms,
    }
}

/// One alert with its notifications.
#[derive(Serialize)]
struct AlertView<'a> {
    id: i64,
    /// `null` for fleet-level alerts.
    check_id: Option<&'a str>,
    probe: Option<&'a str>,
    kind: AlertKind,
    dedup_key: &'a str,
    state: AlertState,
    severity: Severity,
    /// As it fired, then following the current state while open.
    summary: &'a str,
    /// Regions failing (live while open).
    regions: Vec<String>,
    /// Failure code of the first failing region (live while open).
    code: &'a str,
    opened_at_ms: i64,
    resolved_at_ms: Option<i64>,
    /// Held open by flap detection.
    flapping: bool,
    /// Recorded, not paged: the cause (`silence 3`, `maintenance nightly`).
    suppressed_by: Option<&'a str>,
    notifications: Vec<NotificationView<'a>>,
}

fn alert_view<'a>(a: &'a AlertRow, notifications: &'a [NotificationRow]) -> AlertView<'a> {
    AlertView {
        id: a.id,
        check_id: (!a.check_id.is_empty()).then_some(a.check_id.as_str()),
        probe: a.probe.as_deref(),
        kind: a.kind,
        dedup_key: &a.dedup_key,
        state: a.state,
        severity: a.severity,
        summary: &a.summary,
        regions: serde_json::from_str(&a.regions_json).unwrap_or_default(),
        code: &a.code,
        opened_at_ms: a.opened_at_ms,
        resolved_at_ms: a.resolved_at_ms,
        flapping: a.flapping,
        suppressed_by: (!a.suppressed_by.is_empty()).then_some(a.suppressed_by.as_str()),
        notifications: notifications.iter().map(notification_view).collect(),
    }
}

/// `GET /api/v1/alerts`.
#[derive(Serialize)]
struct AlertsBody<'a> {
    alerts: Vec<AlertView<'a>>,
}

async fn list_alerts(State(ctl): State<Controller>) -> Result<Response, ApiError> {
    let alerts = ctl.store().alerts(ALERTS_LISTED).await?;
    let mut notifications = Vec::with_capacity(alerts.len());
    for a in &alerts {
        notifications.push(ctl.store().notifications_for_alert(a.id).await?);
    }
    let body = AlertsBody {
        alerts: alerts
            .iter()
            .zip(&notifications)
            .map(|(a, n)| alert_view(a, n))
            .collect(),
    };
    Ok(Json(body).into_response())
}

/// A probe's liveness for the API and the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeStatus {
    /// Connected and heard from within `alerting.offline_after`.
    Fresh,
    /// No stream, but silent for less than `offline_after`: probably reconnecting.
    Disconnected,
    /// Silent longer, never seen, or no longer configured.
    Offline,
}

impl ProbeStatus {
    /// `fresh`, `disconnected` or `offline`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeStatus::Fresh => "fresh",
            ProbeStatus::Disconnected => "disconnected",
            ProbeStatus::Offline => "offline",
        }
    }

    /// The upper-case word on the status page.
    pub fn word(self) -> &'static str {
        match self {
            ProbeStatus::Fresh => "FRESH",
            ProbeStatus::Disconnected => "DISCONNECTED",
            ProbeStatus::Offline => "OFFLINE",
        }
    }

    /// The status page's CSS class: offline is as loud as a failing check,
    /// a reconnecting probe as a stale one.
    pub fn css_class(self) -> &'static str {
        match self {
            ProbeStatus::Fresh => RegionStatus::Ok.css_class(),
            ProbeStatus::Disconnected => RegionStatus::Stale.css_class(),
            ProbeStatus::Offline => RegionStatus::Failing.css_class(),
        }
    }
}

/// One probe for the API and the page.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeView {
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Agent version (empty before the first hello).
    pub version: String,
    /// Labels from the hello.
    pub labels: BTreeMap<String, String>,
    /// Last hello, heartbeat or batch.
    pub last_seen_ms: Option<i64>,
    /// A stream is open.
    pub connected: bool,
    /// `fresh` (connected, heard from within `alerting.offline_after`),
    /// `disconnected` (no stream, but silent for less than `offline_after`:
    /// probably reconnecting) or `offline` (silent longer, or never seen).
    pub state: ProbeStatus,
    /// How long the probe has been silent (counted from the controller's
    /// start at the earliest); `None` if never seen.
    pub silent_for_ms: Option<i64>,
    /// Results waiting on the probe for an ack, as of its last heartbeat.
    pub queued_results: u64,
    /// Results the probe dropped since it started, as of its last heartbeat.
    pub dropped_results: u64,
    /// The same by reason.
    pub dropped_by_reason: BTreeMap<String, u64>,
    /// Last heartbeat.
    pub heartbeat_at_ms: Option<i64>,
    /// Still in config.
    pub configured: bool,
}

/// Configured probes plus any stored ones no longer configured.
pub async fn probe_views(ctl: &Controller, now: i64) -> Result<Vec<ProbeView>, StoreError> {
    let cfg = ctl.config();
    let rows = ctl.store().probes().await?;
    let started = ctl.started_ms();
    let view = |name: &str, region: &str, row: Option<&ProbeRow>, configured: bool| {
        let connected = row.is_some_and(|r| r.connected);
        let off = row.is_none()
            || !configured
            || offline::is_offline(row, cfg.offline_after, started, now);
        let state = match (off, connected) {
            (true, _) => ProbeStatus::Offline,
            (false, true) => ProbeStatus::Fresh,
            (false, false) => ProbeStatus::Disconnected,
        };
        ProbeView {
            name: name.to_owned(),
            region: region.to_owned(),
            version: row.map(|r| r.version.clone()).unwrap_or_default(),
            labels: row
                .and_then(|r| serde_json::from_str(&r.labels_json).ok())
                .unwrap_or_default(),
            last_seen_ms: row.map(|r| r.last_seen_ms),
            connected,
            state,
            silent_for_ms: offline::silent_for_ms(row, started, now),
            queued_results: row.map(|r| r.queued_results).unwrap_or(0),
            dropped_results: row.map(|r| r.dropped_results).unwrap_or(0),
            dropped_by_reason: row
                .and_then(|r| serde_json::from_str(&r.dropped_json).ok())
                .unwrap_or_default(),
            heartbeat_at_ms: row.and_then(|r| r.heartbeat_at_ms),
            configured,
        }
    };
    let mut out: Vec<ProbeView> = cfg
        .probes
        .iter()
        .map(|p| {
            view(
                &p.name,
                &p.region,
                rows.iter().find(|r| r.name == p.name),
                true,
            )
        })
        .collect();
    for r in rows.iter().filter(|r| cfg.probe(&r.name).is_none()) {
        out.push(view(&r.name, &r.region, Some(r), false));
    }
    Ok(out)
}

/// `GET /api/v1/probes`.
#[derive(Serialize)]
struct ProbesBody {
    probes: Vec<ProbeView>,
}

async fn list_probes(State(ctl): State<Controller>) -> Result<Json<ProbesBody>, ApiError> {
    let probes = probe_views(&ctl, ctl.now_ms()).await?;
    Ok(Json(ProbesBody { probes }))
}

async fn readyz(State(ctl): State<Controller>) -> Response {
    match ctl.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}

/// Refreshes computed gauges, then renders the registry.
async fn metrics(State(ctl): State<Controller>) -> Result<Response, ApiError> {
    let m = ctl.metrics();
    ctl.update_connected_gauge();
    m.set(
        "outpost_alerts_open",
        &[],
        ctl.store().open_alerts().await?.len() as f64,
    );
    m.set(
        "outpost_notifications_pending",
        &[],
        ctl.store().notification_counts().await?.pending as f64,
    );
    let probes = probe_views(&ctl, ctl.now_ms()).await?;
    m.clear("outpost_probe_queued_results");
    m.clear("outpost_probe_outbox_dropped_total");
    m.clear("outpost_probe_offline");
    for p in &probes {
        m.set(
            "outpost_probe_queued_results",
            &[("probe", &p.name)],
            p.queued_results as f64,
        );
        m.set(
            "outpost_probe_offline",
            &[("probe", &p.name)],
            if p.state == ProbeStatus::Offline {
                1.0
            } else {
                0.0
            },
        );
        for (reason, n) in &p.dropped_by_reason {
            m.set(
                "outpost_probe_outbox_dropped_total",
                &[("probe", &p.name), ("reason", reason)],
                *n as f64,
            );
        }
    }
    let views = check_views(&ctl, ctl.now_ms()).await?;
    m.clear("outpost_check_state");
    for c in &views {
        for r in &c.regions {
            let state = r.state.as_str().to_ascii_lowercase();
            m.set(
                "outpost_check_state",
                &[("check", &c.id), ("region", &r.region), ("state", &state)],
                1.0,
            );
        }
    }
    let cfg = ctl.config();
    let configured: BTreeSet<&str> = cfg.checks.iter().map(|c| c.raw.id.as_str()).collect();
    let states = ctl.store().region_states().await?;
    let timings = ctl.store().latest_timings().await?;
    crate::blackbox::publish(m, &configured, &states, &timings);
    let body = m.render();
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_states_serialize_as_before_and_map_to_loud_classes() {
        for (state, word, class) in [
            (ProbeStatus::Fresh, "fresh", "OK"),
            (ProbeStatus::Disconnected, "disconnected", "STALE"),
            (ProbeStatus::Offline, "offline", "FAILING"),
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), word);
            assert_eq!(state.word(), word.to_ascii_uppercase());
            assert_eq!(state.css_class(), class);
        }
    }
}
