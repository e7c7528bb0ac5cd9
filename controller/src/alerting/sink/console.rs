//! Console sink: one log line per notification (WARN for a trigger, INFO
//! for a resolve or an event's info notification). Always succeeds.

use super::Delivery;
use crate::alerting::AlertEvent;

/// Logs one event.
pub fn send(sink: &str, event: &AlertEvent) -> Delivery {
    if event.action == "trigger" {
        tracing::warn!(
            sink,
            dedup_key = %event.dedup_key,
            check = %event.check_id,
            severity = %event.severity,
            regions = ?event.regions,
            summary = %event.summary,
            "ALERT TRIGGERED"
        );
    } else if event.action == "info" {
        tracing::info!(sink, dedup_key = %event.dedup_key, kind = %event.kind, check = %event.check_id, summary = %event.summary, "CHANGE");
    } else {
        tracing::info!(sink, dedup_key = %event.dedup_key, check = %event.check_id, summary = %event.summary, "alert resolved");
    }
    Delivery::Sent
}
