//! Console sink: one log line per notification (WARN for a trigger, INFO
//! for a resolve or an event's info notification). Always succeeds.

use serde::Deserialize;

use super::Delivery;
use crate::alerting::{Action, AlertEvent};

/// `[sinks.console]`: no settings (`console = {}`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {}

/// Logs one event.
pub fn send(sink: &str, event: &AlertEvent) -> Delivery {
    match event.action {
        Action::Trigger => tracing::warn!(
            sink,
            dedup_key = %event.dedup_key,
            check = %event.check_id,
            severity = %event.severity,
            regions = ?event.regions,
            summary = %event.summary,
            "ALERT TRIGGERED"
        ),
        Action::Info => {
            tracing::info!(sink, dedup_key = %event.dedup_key, kind = %event.kind, check = %event.check_id, summary = %event.summary, "CHANGE")
        }
        Action::Resolve => {
            tracing::info!(sink, dedup_key = %event.dedup_key, check = %event.check_id, summary = %event.summary, "alert resolved")
        }
    }
    Delivery::Sent
}
