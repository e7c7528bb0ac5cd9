//! A session run's result: its [`Observed`] (shape in [`super`]), the
//! run's code chosen by priority, and the scrubbing that keeps every
//! credential value seen in the run out of both.

use super::{
    Renewal, SessionSpec,
    call::CallResult,
    observed::{Finding, Observed, RunFacts, SessionFacts},
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

pub(super) fn finish(
    spec: &SessionSpec,
    st: &CheckState,
    run: Run<'_>,
    requests: &[CallResult],
) -> KindResult {
    let now = run.clock.now_utc();
    let ms_s = |v: Option<i64>| v.map(|l| secs(time::Duration::milliseconds(l)));
    let session = st.session.as_ref().map(|s| SessionFacts {
        session_id: s.id.clone(),
        session_started_at: rfc3339(s.started_at),
        session_age_s: secs(now - s.started_at),
        credential_issued_at: rfc3339(s.issued_at),
        credential_age_s: secs(now - s.issued_at),
        expires_at: s.expires_at.map(rfc3339),
        expires_in_s: s.expires_at.map(|e| secs(e - now)),
        expiry_source: s.expiry_source.clone(),
        declared_lifetime_s: ms_s(s.declared_lifetime_ms),
        session_renewals: s.renewals,
        renewal_failures: s.renewal_failures,
        next_renewal_at: (spec.renewal == Renewal::BeforeExpiry)
            .then(|| renew_at(s, spec).map(rfc3339)),
    });
    // The most precise estimate: a fresh JWT's iat, else the last Date.
    let best = run
        .offsets
        .iter()
        .find(|(s, _)| *s == "jwt_iat")
        .or(run.offsets.last());
    let facts = RunFacts {
        first_declared_lifetime_s: ms_s(st.history.first_declared_lifetime_ms),
        previous_declared_lifetime_s: ms_s(run.previous_lifetime_ms),
        observed_lifetime_s: run.observed_lifetime.map(secs),
        last_observed_lifetime_s: match run.observed_lifetime {
            Some(_) => None,
            None => ms_s(st.history.last_observed_lifetime_ms),
        },
        logins: st.history.logins,
        renewals: st.history.renewals,
        server_clock_offset_ms: best.map(|(_, off)| off.whole_milliseconds() as i64),
        server_clock_offset_source: best.map(|(source, _)| (*source).to_owned()),
        events: run.events.clone(),
        requests: requests.iter().map(CallResult::record).collect(),
        findings: run
            .findings
            .iter()
            .map(|f| Finding {
                code: Some(f.code()),
                message: f.to_string(),
            })
            .collect(),
        persisted: st.persisted,
    };
    let mut observed = Observed {
        renewal: spec.renewal.as_str().to_owned(),
        login_method: spec.login.name().to_owned(),
        session,
        run: Some(facts),
    };

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
    observed.scrub(&|t| scrub_str(t, &run.secrets));
    KindResult {
        phases: run.phases,
        result,
        observed: crate::check::Observed::Session(Box::new(observed)),
    }
}
