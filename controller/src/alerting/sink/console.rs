//! Console sink: one log line per notification (WARN for a trigger, INFO
//! for a resolve). Always succeeds.

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
    } else {
        tracing::info!(sink, dedup_key = %event.dedup_key, check = %event.check_id, summary = %event.summary, "alert resolved");
    }
    Delivery::Sent
}
