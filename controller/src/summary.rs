//! A plain-text summary of a controller's state: every check with its state
//! per region, then every alert raised. Printed by `outpost-demo --for` at exit; also
//! handy in tests and bug reports.

use std::fmt::Write;

use crate::{RunningController, alerting::rule::RegionStatus, api, format, store::AlertRow};

/// Renders the summary. Store errors are reported inline, never panics.
pub async fn render(running: &RunningController) -> String {
    let ctl = running.controller();
    let now = ctl.now_ms();
    let mut out = String::from("Checks (state per region):\n");
    match api::check_views(ctl, now).await {
        Ok(views) => {
            let width = views.iter().map(|v| v.id.len()).max().unwrap_or(0);
            for v in &views {
                let _ = write!(out, "  {:<width$}  {:<8}", v.id, v.state);
                for r in &v.regions {
                    let _ = write!(out, "  {}={}", r.region, r.state);
                    if let Some(code) = r
                        .code
                        .as_deref()
                        .filter(|_| r.state == RegionStatus::Failing)
                    {
                        let _ = write!(out, " ({code})");
                    }
                    if r.state == RegionStatus::Stale {
                        let _ = write!(
                            out,
                            " (no result for {})",
                            format::ms(r.age_ms.unwrap_or(0))
                        );
                    }
                }
                out.push('\n');
            }
            failure_messages(&mut out, &views);
        }
        Err(e) => {
            let _ = writeln!(out, "  (cannot read check state: {e})");
        }
    }
    out.push_str("Alerts raised:\n");
    match ctl.store().alerts(u32::MAX).await {
        Ok(alerts) if alerts.is_empty() => out.push_str("  none\n"),
        Ok(alerts) => alerts.iter().for_each(|a| alert_line(&mut out, a, now)),
        Err(e) => {
            let _ = writeln!(out, "  (cannot read alerts: {e})");
        }
    }
    out
}

/// What the failing regions saw, one line per distinct message.
fn failure_messages(out: &mut String, views: &[api::CheckView]) {
    let mut header = false;
    for v in views.iter().filter(|v| {
        matches!(
            v.state,
            RegionStatus::Failing | RegionStatus::Flapping | RegionStatus::Suppressed
        )
    }) {
        let mut seen: Vec<(&str, Vec<&str>)> = Vec::new();
        for r in v
            .regions
            .iter()
            .filter(|r| r.state == RegionStatus::Failing)
        {
            let Some(msg) = r.message.as_deref() else {
                continue;
            };
            match seen.iter_mut().find(|(m, _)| *m == msg) {
                Some((_, regions)) => regions.push(&r.region),
                None => seen.push((msg, vec![&r.region])),
            }
        }
        for (msg, regions) in seen {
            if !header {
                out.push_str("What the failing regions saw:\n");
                header = true;
            }
            let _ = writeln!(out, "  {} [{}]: {msg}", v.id, regions.join(", "));
        }
    }
}

fn alert_line(out: &mut String, a: &AlertRow, now: i64) {
    let state = match a.resolved_at_ms {
        Some(t) => format!("resolved after {}", format::ms(t - a.opened_at_ms)),
        None => format!("OPEN for {}", format::ms(now - a.opened_at_ms)),
    };
    let _ = writeln!(out, "  [{}] {} ({state})", a.severity, a.summary);
}
