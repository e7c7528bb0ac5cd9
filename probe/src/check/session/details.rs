//! A session run's result: the details JSON (shape in [`super`]), the
//! run's code chosen by priority, and the scrubbing that keeps every
//! credential value seen in the run out of both.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::{
    Renewal, SessionSpec,
    call::CallResult,
    renewal::{Run, renew_at, rfc3339, secs},
    state::CheckState,
};
use crate::{
    check::{Failure, FailureCode, KindResult},
    config::Secret,
};

/// The order in which findings decide the run's code.
const PRIORITY: [FailureCode; 6] = [
    FailureCode::SessionLoginFailed,
    FailureCode::SessionRejectedEarly,
    FailureCode::SessionExpired,
    FailureCode::SessionRenewalFailed,
    FailureCode::SessionLifetimeChanged,
    FailureCode::ClockSkew,
];

fn scrub_str(s: &str, secrets: &[Secret]) -> String {
    let mut out = s.to_owned();
    for sec in secrets {
        let v = sec.expose();
        if v.len() >= 4 && out.contains(v) {
            out = out.replace(v, "**REDACTED**");
        }
    }
    out
}

fn scrub(v: &mut Value, secrets: &[Secret]) {
    match v {
        Value::String(s) => *s = scrub_str(s, secrets),
        Value::Array(a) => a.iter_mut().for_each(|v| scrub(v, secrets)),
        Value::Object(o) => o.values_mut().for_each(|v| scrub(v, secrets)),
        _ => {}
    }
}

pub(super) fn finish(
    spec: &SessionSpec,
    st: &CheckState,
    run: Run<'_>,
    requests: &[CallResult],
) -> KindResult {
    let now = OffsetDateTime::now_utc();
    let mut d = Map::new();
    d.insert("renewal".into(), spec.renewal.as_str().into());
    d.insert("login_method".into(), spec.login.name().into());
    if let Some(s) = &st.session {
        d.insert("session_id".into(), s.id.clone().into());
        d.insert("session_started_at".into(), rfc3339(s.started_at).into());
        d.insert("session_age_s".into(), secs(now - s.started_at).into());
        d.insert("credential_issued_at".into(), rfc3339(s.issued_at).into());
        d.insert("credential_age_s".into(), secs(now - s.issued_at).into());
        d.insert("expires_at".into(), s.expires_at.map(rfc3339).into());
        d.insert(
            "expires_in_s".into(),
            s.expires_at.map(|e| secs(e - now)).into(),
        );
        d.insert("expiry_source".into(), s.expiry_source.clone().into());
        d.insert(
            "declared_lifetime_s".into(),
            s.declared_lifetime_ms
                .map(|l| secs(time::Duration::milliseconds(l)))
                .into(),
        );
        d.insert("session_renewals".into(), s.renewals.into());
        d.insert("renewal_failures".into(), s.renewal_failures.into());
        if spec.renewal == Renewal::BeforeExpiry {
            d.insert(
                "next_renewal_at".into(),
                renew_at(s, spec).map(rfc3339).into(),
            );
        }
    }
    let ms_s = |v: Option<i64>| v.map(|l| secs(time::Duration::milliseconds(l)));
    d.insert(
        "first_declared_lifetime_s".into(),
        ms_s(st.history.first_declared_lifetime_ms).into(),
    );
    if let Some(p) = run.previous_lifetime_ms {
        d.insert("previous_declared_lifetime_s".into(), ms_s(Some(p)).into());
    }
    if let Some(o) = run.observed_lifetime {
        d.insert("observed_lifetime_s".into(), secs(o).into());
    } else if let Some(o) = st.history.last_observed_lifetime_ms {
        d.insert("last_observed_lifetime_s".into(), ms_s(Some(o)).into());
    }
    d.insert("logins".into(), st.history.logins.into());
    d.insert("renewals".into(), st.history.renewals.into());
    // The most precise estimate: a fresh JWT's iat, else the last Date.
    let best = run
        .offsets
        .iter()
        .find(|(s, _)| *s == "jwt_iat")
        .or(run.offsets.last());
    if let Some((source, off)) = best {
        d.insert(
            "server_clock_offset_ms".into(),
            (off.whole_milliseconds() as i64).into(),
        );
        d.insert("server_clock_offset_source".into(), (*source).into());
    }
    d.insert("events".into(), Value::Array(run.events.clone()));
    d.insert(
        "requests".into(),
        requests
            .iter()
            .map(CallResult::to_json)
            .collect::<Vec<_>>()
            .into(),
    );
    d.insert(
        "findings".into(),
        run.findings
            .iter()
            .map(|f| json!({ "code": f.code().as_str(), "message": f.to_string() }))
            .collect::<Vec<_>>()
            .into(),
    );
    d.insert("persisted".into(), st.persisted.into());

    // The run's code: the first finding by priority, else the first failing
    // call that was not a session rejection handled above.
    let top = PRIORITY
        .iter()
        .find_map(|c| run.findings.iter().find(|f| f.code() == *c))
        .cloned()
        .or_else(|| {
            requests
                .iter()
                .filter(|r| !r.rejected)
                .find_map(|r| r.result.clone().err())
        });
    let result = match top {
        None => Ok(()),
        Some(f) => {
            let also: Vec<FailureCode> = run
                .findings
                .iter()
                .map(Failure::code)
                .filter(|c| *c != f.code())
                .collect();
            let f = if also.is_empty() {
                f
            } else {
                Failure::Also {
                    failure: Box::new(f),
                    also,
                }
            };
            Err(f.scrubbed(|m| scrub_str(m, &run.secrets)))
        }
    };
    let mut details = Value::Object(d);
    scrub(&mut details, &run.secrets);
    KindResult {
        phases: run.phases,
        result,
        details,
    }
}
