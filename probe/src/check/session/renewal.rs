//! One run of a session check: continue (or start) the session, renew it by
//! the policy, make the protected calls, and turn what happened into
//! findings, details and the run's result. See [`super`] for the policies and
//! codes, [`super::state`] for what is kept between runs.

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    LoginSpec, Renewal, SessionSpec,
    call::{self, CallResult, Credential},
    clock::{self, Expiry, Receipt},
    login::{self, Grant, Issued, LoginError},
    observed::Event,
    state::{self, CheckState, Session, ms},
};
use crate::{
    check::{
        Failure, KindResult, Phases, RunContext,
        failure::{Rejection, RenewalFailure},
    },
    clock::Clock,
    config::Secret,
};

pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(super) fn secs(d: time::Duration) -> f64 {
    (d.as_seconds_f64() * 1000.0).round() / 1000.0
}

/// What one run saw, accumulated as it goes.
pub(super) struct Run<'a> {
    pub(super) spec: &'a SessionSpec,
    pub(super) findings: Vec<Failure>,
    pub(super) events: Vec<Event>,
    /// (source, server − probe) estimates.
    pub(super) offsets: Vec<(&'static str, time::Duration)>,
    /// Every credential value seen, scrubbed from the output.
    pub(super) secrets: Vec<Secret>,
    pub(super) observed_lifetime: Option<time::Duration>,
    pub(super) previous_lifetime_ms: Option<i64>,
    pub(super) phases: Phases,
    /// The run's wall clock ([`RunContext::clock`]).
    pub(super) clock: Clock,
}

impl<'a> Run<'a> {
    fn new(spec: &'a SessionSpec, clock: Clock) -> Self {
        let mut secrets = Vec::new();
        match &spec.login {
            LoginSpec::ClientCredentials(o) => secrets.extend(o.client_secret.clone()),
            LoginSpec::RefreshToken(o, rt) => {
                secrets.extend(o.client_secret.clone());
                secrets.push(rt.clone());
            }
            LoginSpec::Script(s) => secrets.extend(s.request.secrets.values().cloned()),
            LoginSpec::CookieJar(r) => secrets.extend(r.secrets.values().cloned()),
        }
        Run {
            spec,
            findings: Vec::new(),
            events: Vec::new(),
            offsets: Vec::new(),
            secrets,
            observed_lifetime: None,
            previous_lifetime_ms: None,
            phases: Phases::default(),
            clock,
        }
    }

    fn finding(&mut self, failure: Failure) {
        if !self.findings.iter().any(|f| f.code() == failure.code()) {
            self.findings.push(failure);
        }
    }

    fn remember(&mut self, s: &Session) {
        self.secrets.extend(s.token.clone());
        self.secrets.extend(s.refresh_token.clone());
        self.secrets
            .extend(s.cookies.iter().map(|c| c.value.clone()));
    }

    fn add_phases(&mut self, p: &Phases) {
        self.phases.dns = crate::check::http::exchange::add(self.phases.dns, p.dns);
        self.phases.connect = crate::check::http::exchange::add(self.phases.connect, p.connect);
        self.phases.tls = crate::check::http::exchange::add(self.phases.tls, p.tls);
        self.phases.first_byte =
            crate::check::http::exchange::add(self.phases.first_byte, p.first_byte);
    }

    fn date(&mut self, r: &Receipt) {
        if let Some(d) = r.server_date {
            self.offsets.push(("date", clock::offset_from_date(d, r)));
        }
    }

    /// Records a login or renewal attempt.
    fn event(&mut self, kind: &str, res: &Result<Issued, LoginError>) {
        let at = rfc3339(self.clock.now_utc());
        let e = match res {
            Ok(i) => {
                self.add_phases(&i.phases);
                self.secrets.extend(i.token.clone());
                self.secrets.extend(i.refresh_token.clone());
                self.secrets
                    .extend(i.cookies.iter().map(|c| c.value.clone()));
                Event {
                    kind: kind.to_owned(),
                    at,
                    ok: true,
                    status: Some(i.status),
                    declared_lifetime_s: Some(i.expiry.map(|e| secs(e.lifetime))),
                    expiry_source: Some(i.expiry_source.to_owned()),
                    failure_code: None,
                    message: None,
                    phases_us: i.phases,
                }
            }
            Err(e) => {
                self.add_phases(&e.phases);
                Event {
                    kind: kind.to_owned(),
                    at,
                    ok: false,
                    status: e.status,
                    declared_lifetime_s: None,
                    expiry_source: None,
                    failure_code: Some(e.failure.code()),
                    message: Some(e.failure.to_string()),
                    phases_us: e.phases,
                }
            }
        };
        self.events.push(e);
    }

    /// Checks a new credential's declared lifetime and the server's clock.
    fn accept(&mut self, history: &mut state::History, i: &Issued) {
        if let Some(off) = i.iat_offset {
            self.offsets.push(("jwt_iat", off));
        }
        self.date(&i.receipt);
        let Some(e) = i.expiry else { return };
        let lt = e.lifetime;
        if let Some(prev_ms) = history.last_declared_lifetime_ms {
            let prev = time::Duration::milliseconds(prev_ms);
            if clock::lifetime_changed(prev, lt) {
                self.previous_lifetime_ms = Some(prev_ms);
                self.finding(Failure::SessionLifetimeChanged {
                    declared: lt.unsigned_abs(),
                    previous: Some(prev.unsigned_abs()),
                    expiry_source: i.expiry_source.to_owned(),
                    min: self.spec.lifetime_min,
                    max: self.spec.lifetime_max,
                });
            }
        }
        let lt_std = lt.unsigned_abs();
        let below = self.spec.lifetime_min.filter(|m| lt_std < *m);
        let above = self.spec.lifetime_max.filter(|m| lt_std > *m);
        if below.is_some() || above.is_some() {
            self.finding(Failure::SessionLifetimeChanged {
                declared: lt_std,
                previous: None,
                expiry_source: i.expiry_source.to_owned(),
                min: self.spec.lifetime_min,
                max: self.spec.lifetime_max,
            });
        }
        history
            .first_declared_lifetime_ms
            .get_or_insert(lt.whole_milliseconds() as i64);
        history.last_declared_lifetime_ms = Some(lt.whole_milliseconds() as i64);
    }
}

fn new_session(i: &Issued, now: OffsetDateTime) -> Session {
    let mut s = Session {
        id: uuid::Uuid::now_v7().to_string(),
        started_at: now,
        token: None,
        refresh_token: None,
        cookies: Vec::new(),
        bearer: true,
        issued_at: now,
        expires_at: None,
        declared_lifetime_ms: None,
        expiry_source: String::new(),
        renewals: 0,
        renewal_failures: 0,
        rejected_at: None,
    };
    apply(&mut s, i);
    s
}

/// Puts newly issued credentials into the session.
fn apply(s: &mut Session, i: &Issued) {
    s.token.clone_from(&i.token);
    if i.refresh_token.is_some() {
        // RFC 6749 §6: without a new refresh token the old one stays valid.
        s.refresh_token.clone_from(&i.refresh_token);
    }
    if !i.cookies.is_empty() || i.token.is_none() {
        s.cookies.clone_from(&i.cookies);
    }
    s.bearer = i.bearer;
    s.issued_at = i.expiry.map_or(i.receipt.received_at, |e| e.issued_at);
    s.expires_at = i.expiry.map(|e| e.expires_at);
    s.declared_lifetime_ms = i.expiry.map(|e| e.lifetime.whole_milliseconds() as i64);
    s.expiry_source = i.expiry_source.to_owned();
}

pub(super) fn renew_at(s: &Session, spec: &SessionSpec) -> Option<OffsetDateTime> {
    let expires_at = s.expires_at?;
    let e = Expiry {
        issued_at: s.issued_at,
        expires_at,
        lifetime: expires_at - s.issued_at,
    };
    Some(clock::renew_at(&e, spec.renew_when))
}

/// Renews `s`: by its refresh token when it has one (falling back to a
/// login, reported), else by a login.
async fn renew(
    spec: &SessionSpec,
    s: &Session,
    ctx: &RunContext,
    deadline: tokio::time::Instant,
    run: &mut Run<'_>,
    history: &mut state::History,
) -> Result<Issued, (Option<Failure>, Failure)> {
    if let Some(rt) = &s.refresh_token {
        let res = login::obtain(spec, Grant::Refresh(rt), ctx, deadline).await;
        run.event("refresh", &res);
        match res {
            Ok(i) => return Ok(i),
            Err(e) => {
                let res = login::obtain(spec, Grant::Login, ctx, deadline).await;
                run.event("login", &res);
                return match res {
                    Ok(i) => {
                        history.logins += 1;
                        run.finding(Failure::SessionRenewalFailed {
                            renewal: RenewalFailure::RefreshFailed { refresh: e.failure },
                        });
                        Ok(i)
                    }
                    Err(l) => Err((Some(*e.failure), *l.failure)),
                };
            }
        }
    }
    let res = login::obtain(spec, Grant::Login, ctx, deadline).await;
    run.event("login", &res);
    match res {
        Ok(i) => {
            history.logins += 1;
            Ok(i)
        }
        Err(e) => Err((None, *e.failure)),
    }
}

pub async fn run(
    spec: &SessionSpec,
    check_id: &str,
    timeout: Duration,
    ctx: &RunContext,
) -> KindResult {
    let deadline = tokio::time::Instant::now() + timeout;
    let dir = ctx.session_dir.as_deref();
    let mut st = state::lock(check_id, &spec.fingerprint, dir).await;
    let mut run = Run::new(spec, ctx.clock.clone());
    let mut requests: Vec<CallResult> = Vec::new();
    let now = ctx.clock.now_utc();
    if let Some(s) = &st.session {
        run.remember(s);
    }

    // 1. A session, renewed when due.
    let mut cred = Credential::Current;
    let mut skip_calls = false;
    let mut fresh = false;
    match st.session.take() {
        None => {
            let res = login::obtain(spec, Grant::Login, ctx, deadline).await;
            run.event("login", &res);
            match res {
                Ok(i) => {
                    st.history.logins += 1;
                    run.accept(&mut st.history, &i);
                    st.session = Some(new_session(&i, ctx.clock.now_utc()));
                    fresh = true;
                }
                Err(e) => {
                    run.finding(Failure::SessionLoginFailed { failure: e.failure });
                    skip_calls = true;
                }
            }
        }
        Some(mut s) => {
            let due = spec.renewal == Renewal::BeforeExpiry
                && renew_at(&s, spec).is_some_and(|at| now >= at);
            if due {
                let history = &mut st.history;
                match renew(spec, &s, ctx, deadline, &mut run, history).await {
                    Ok(i) => {
                        run.accept(history, &i);
                        apply(&mut s, &i);
                        s.renewals += 1;
                        s.renewal_failures = 0;
                        history.renewals += 1;
                        cred = Credential::Renewed;
                        fresh = true;
                    }
                    Err((refresh, login)) => {
                        s.renewal_failures += 1;
                        cred = Credential::Previous;
                        let now = ctx.clock.now_utc();
                        let previous_expired = s.expires_at.is_some_and(|e| now >= e);
                        skip_calls |= previous_expired;
                        run.finding(Failure::SessionRenewalFailed {
                            renewal: RenewalFailure::Failed {
                                attempt: u32::try_from(s.renewal_failures).unwrap_or(u32::MAX),
                                refresh: refresh.map(Box::new),
                                login: Box::new(login),
                                previous_expires_at: s.expires_at.map(rfc3339),
                                previous_expired,
                            },
                        });
                    }
                }
            }
            st.session = Some(s);
        }
    }

    // 2. The protected calls.
    if let (false, Some(s)) = (skip_calls, st.session.clone()) {
        let mut rejected = None;
        for u in &spec.requests {
            let r = call::call(u, &s, cred, false, spec, ctx, deadline).await;
            if let Some(rc) = &r.receipt {
                run.date(rc);
            }
            run.add_phases(&r.phases);
            let rej = r.rejected;
            requests.push(r);
            if rej {
                rejected = Some(requests.len() - 1);
                break;
            }
        }
        if let Some(i) = rejected {
            reject(
                spec,
                &mut st,
                &mut run,
                &mut requests,
                i,
                cred,
                fresh,
                ctx,
                deadline,
            )
            .await;
        }
    }

    // 3. The server's clock.
    for (source, off) in run.offsets.clone() {
        // `Date` has one-second resolution: allow for it.
        let slack = if source == "date" {
            Duration::from_millis(500)
        } else {
            Duration::ZERO
        };
        if clock::skewed(off, spec.clock_skew_tolerance + slack) {
            run.finding(Failure::ClockSkew {
                offset: off.unsigned_abs(),
                ahead: off.is_positive(),
                via: if source == "date" {
                    "Date header"
                } else {
                    "JWT iat"
                }
                .into(),
                tolerance: spec.clock_skew_tolerance,
            });
        }
    }

    // 4. Persist.
    if let Some(s) = &st.session {
        run.remember(s);
    }
    if let Some(d) = dir {
        match state::save(d, check_id, &st) {
            Ok(()) => st.persisted = true,
            Err(e) => tracing::warn!(check = check_id, error = %e, "cannot persist session state"),
        }
    }

    super::details::finish(spec, &st, run, &requests)
}

/// Handles the first rejected call (`requests[i]`) by the policy.
#[allow(clippy::too_many_arguments)]
async fn reject(
    spec: &SessionSpec,
    st: &mut CheckState,
    run: &mut Run<'_>,
    requests: &mut Vec<CallResult>,
    i: usize,
    cred: Credential,
    fresh: bool,
    ctx: &RunContext,
    deadline: tokio::time::Instant,
) {
    let Some(s) = st.session.clone() else { return };
    let r = &requests[i];
    let status = r.status.unwrap_or(401);
    // A `never` session rejected before keeps its first rejection: the
    // observed lifetime does not grow with each failing run.
    let rejected_at = s.rejected_at.unwrap_or(r.at);
    // Whole milliseconds, as persisted, so details agree across runs.
    let age = time::Duration::milliseconds(ms(rejected_at) - ms(s.issued_at));
    run.observed_lifetime = Some(age);
    st.history.last_observed_lifetime_ms = Some(ms(rejected_at) - ms(s.issued_at));
    let tolerance = spec.clock_skew_tolerance;
    let early_by = s
        .expires_at
        .map(|e| e - r.at)
        .filter(|left| left.unsigned_abs() > tolerance && left.is_positive());
    let declared_lifetime = s
        .declared_lifetime_ms
        .map(|l| time::Duration::milliseconds(l).unsigned_abs());
    if spec.renewal == Renewal::Never {
        let before_expiry = s
            .expires_at
            .map(|e| e - rejected_at)
            .filter(|left| left.unsigned_abs() > tolerance && left.is_positive());
        run.finding(Failure::SessionExpired {
            status,
            age: age.unsigned_abs(),
            declared_lifetime,
            before_expiry: before_expiry.map(|l| l.unsigned_abs()),
            kept: s.rejected_at.is_some(),
        });
        // The incident's client: it keeps the dead session, so every later
        // run fails too, until the login config changes (a new
        // fingerprint, `state::lock`) or the state is reset.
        if let Some(sess) = st.session.as_mut() {
            sess.rejected_at = Some(rejected_at);
        }
        return;
    }
    if let Some(left) = early_by {
        run.finding(Failure::SessionRejectedEarly {
            status,
            rejection: Rejection::BeforeExpiry {
                age: age.unsigned_abs(),
                left: left.unsigned_abs(),
                declared_lifetime,
                tolerance,
            },
        });
    } else if fresh {
        run.finding(Failure::SessionRejectedEarly {
            status,
            rejection: Rejection::Fresh {
                renewed: cred == Credential::Renewed,
            },
        });
    }
    // Log in again and retry the rejected call and the rest once.
    let res = login::obtain(spec, Grant::Login, ctx, deadline).await;
    run.event("relogin", &res);
    let i_new = match res {
        Ok(iss) => iss,
        Err(e) => {
            run.finding(Failure::SessionRenewalFailed {
                renewal: RenewalFailure::Relogin {
                    status,
                    login: e.failure,
                },
            });
            return;
        }
    };
    st.history.logins += 1;
    st.history.renewals += 1;
    run.accept(&mut st.history, &i_new);
    let Some(sess) = st.session.as_mut() else {
        return;
    };
    apply(sess, &i_new);
    sess.renewals += 1;
    let sess = sess.clone();
    run.remember(&sess);
    for u in &spec.requests[i..] {
        let r = call::call(u, &sess, Credential::Relogin, true, spec, ctx, deadline).await;
        if let Some(rc) = &r.receipt {
            run.date(rc);
        }
        run.add_phases(&r.phases);
        let rej = r.rejected;
        requests.push(r);
        if rej {
            run.finding(Failure::SessionRejectedEarly {
                status: requests.last().and_then(|r| r.status).unwrap_or(401),
                rejection: Rejection::AfterRelogin,
            });
            break;
        }
    }
}
