//! The probe's own Prometheus endpoint (`[metrics] listen`): scheduler
//! counters and the outbox, so a probe that drops results or falls behind
//! is visible from the host it runs on, not only from the controller.

use std::{net::SocketAddr, sync::Arc, sync::atomic::Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::{outbox::Outbox, scheduler::Scheduler};

/// Renders the metrics in Prometheus text format.
pub fn render(scheduler: &Scheduler, outbox: Option<&Outbox>) -> String {
    let s = &scheduler.stats;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
        ));
    };
    counter(
        "outpost_probe_runs_started_total",
        "Check runs started.",
        s.started.load(Ordering::Relaxed),
    );
    counter(
        "outpost_probe_runs_finished_total",
        "Check runs finished.",
        s.finished.load(Ordering::Relaxed),
    );
    counter(
        "outpost_probe_runs_skipped_overrun_total",
        "Due runs skipped because the previous run of the check was still going.",
        s.skipped_overrun.load(Ordering::Relaxed),
    );
    counter(
        "outpost_probe_runs_skipped_late_total",
        "Due slots skipped because the scheduler fell more than an interval behind.",
        s.skipped_late.load(Ordering::Relaxed),
    );
    out.push_str(&format!(
        "# HELP outpost_probe_checks Checks scheduled.\n# TYPE outpost_probe_checks gauge\noutpost_probe_checks {}\n",
        scheduler.len()
    ));
    if let Some(ob) = outbox {
        out.push_str(&format!(
            "# HELP outpost_probe_outbox_results Results waiting for the controller's ack.\n# TYPE outpost_probe_outbox_results gauge\noutpost_probe_outbox_results {}\n",
            ob.len()
        ));
        out.push_str(&format!(
            "# HELP outpost_probe_outbox_bytes Bytes of the outbox on disk.\n# TYPE outpost_probe_outbox_bytes gauge\noutpost_probe_outbox_bytes {}\n",
            ob.disk_bytes()
        ));
        out.push_str("# HELP outpost_probe_outbox_dropped_total Results dropped from the outbox, by reason.\n# TYPE outpost_probe_outbox_dropped_total counter\n");
        let by = ob.dropped_by_reason();
        for reason in [
            crate::outbox::DropReason::Size,
            crate::outbox::DropReason::Age,
            crate::outbox::DropReason::Corrupt,
            crate::outbox::DropReason::Io,
        ] {
            let n = by
                .iter()
                .find(|(r, _)| *r == reason)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            out.push_str(&format!(
                "outpost_probe_outbox_dropped_total{{reason=\"{}\"}} {n}\n",
                reason.as_str()
            ));
        }
    }
    out
}

/// Serves `/metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    scheduler: Arc<Scheduler>,
    outbox: Option<Arc<Outbox>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|v| *v) => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (scheduler, outbox) = (scheduler.clone(), outbox.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let body = if req.uri().path() == "/metrics" {
                    Some(render(&scheduler, outbox.as_deref()))
                } else {
                    None
                };
                async move {
                    match body {
                        Some(b) => Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(b))),
                        None => Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"not found\n"))),
                    }
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
