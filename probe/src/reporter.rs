//! The reporter: one long-lived gRPC stream to the controller.
//!
//! Per connection: send `Hello`, receive the `Assignment` (applied to the
//! scheduler), then stream unsent results from the [`Outbox`] in batches and
//! heartbeats, and apply `Ack`s. When the stream breaks, everything
//! unacknowledged is resent on the next one; checks keep running meanwhile.
//! With several controller URLs (replicas on one PostgreSQL store) each new
//! stream goes to the next URL, tried at once; the backoff below grows only
//! once every URL failed in a row. Resent results are stored once by id
//! whichever replica receives them.
//!
//! Design notes:
//! - **Reconnect.** Delays back off exponentially from 50 ms with full
//!   jitter. A controller that refuses the TCP connection (down, restarting)
//!   costs nothing to ask again, so those delays are capped at
//!   [`UNREACHABLE_MAX`] (1 s): the probe is back within about a second of
//!   the controller. Anything else (TLS, a rejected token, a status) backs
//!   off up to [`BACKOFF_MAX`] (30 s).
//! - **Reset.** The backoff starts over once a stream is *established and
//!   acknowledged*: the controller answered the hello with an assignment or
//!   acked a batch. A stream that dies right after that reconnects in 50 ms,
//!   however short it lived; one refused at hello keeps backing off.
//! - **Drain.** On shutdown (SIGTERM) with a live stream, the scheduler
//!   stops and the reporter keeps the stream until everything in the outbox
//!   is acked or [`ControllerConfig::drain_timeout`] (default 5 s) passes. A
//!   stream that breaks while draining is reconnected within the same bound
//!   (what it sent is still unacked). Shut down while disconnected, it exits
//!   at once. Whatever is left stays in the durable outbox and is resent by
//!   the next start; runs still in flight when the drain ends are abandoned.
//! - **Credentials.** With a client identity in `identity_dir` the stream
//!   uses mutual TLS and sends no bearer token; without one but with an
//!   `enrollment_token`, the probe enrolls first ([`crate::identity`]);
//!   otherwise it sends its bearer token. At half life of the certificate
//!   (checked on each heartbeat tick, on the injected clock) it renews over
//!   the live channel, then ends the stream and reconnects at once with the
//!   new certificate.

use std::{sync::Arc, time::Duration};

use outpost_proto::v1::{
    self as pb, ControllerMessage, Heartbeat, Hello, ProbeMessage, ResultBatch,
    controller_message::Body as CBody, probe_message::Body as PBody,
    probe_service_client::ProbeServiceClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::{
    check::RawCheck,
    clock::Clock,
    config::{ControllerConfig, Problems},
    identity::{self, ClientIdentity},
    outbox::Outbox,
    scheduler::Scheduler,
};

/// Results per batch at most.
pub const MAX_BATCH: usize = 500;
/// How long results are collected before a batch is sent when one of them
/// matters now (a failure, a recovery, a check's first result).
pub const LINGER: Duration = Duration::from_millis(20);
/// How long a batch of passes that follow passes may wait for more: they
/// change nothing the controller pages on, and batching them is most of what
/// a result costs the controller at a steady pace (its transaction, its
/// ack). Far inside any check's stale threshold (3 intervals, ≥ 3 s).
pub const ROUTINE_LINGER: Duration = Duration::from_millis(250);
/// First reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest reconnect delay while the controller refuses connections.
pub const UNREACHABLE_MAX: Duration = Duration::from_secs(1);

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReporterError {
    /// Could not build a channel (bad URL, bad CA file).
    #[error("controller endpoint: {0}")]
    Endpoint(String),
    /// Transport-level failure.
    #[error("controller unreachable: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The controller refused or ended the stream.
    #[error("controller stream: {0}")]
    Status(#[from] tonic::Status),
    /// The controller closed the stream.
    #[error("controller closed the stream")]
    Closed,
    /// The client identity could not be read or written.
    #[error("client identity: {0}")]
    Identity(#[from] identity::IdentityError),
}

impl ReporterError {
    /// True when the controller's address refused the connection (nothing
    /// listens: down or restarting), as opposed to a peer that answered.
    pub fn is_refused(&self) -> bool {
        let ReporterError::Transport(e) = self else {
            return false;
        };
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = source {
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::ConnectionRefused
            {
                return true;
            }
            source = err.source();
        }
        false
    }
}

/// Identity sent in `Hello`.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Probe name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Builds the gRPC endpoint (TLS for https URLs, keepalive so a vanished
/// controller is noticed within ~15 s: 10 s ping interval + 5 s timeout).
pub fn endpoint(cfg: &ControllerConfig) -> Result<Endpoint, ReporterError> {
    endpoint_for(cfg, &cfg.url)
}

/// [`endpoint`] for one of the configured URLs.
pub fn endpoint_for(cfg: &ControllerConfig, url: &str) -> Result<Endpoint, ReporterError> {
    endpoint_with(cfg, url, None)
}

/// [`endpoint_for`] presenting `identity` as the client certificate.
pub fn endpoint_with(
    cfg: &ControllerConfig,
    url: &str,
    identity: Option<&ClientIdentity>,
) -> Result<Endpoint, ReporterError> {
    let mut ep = Endpoint::from_shared(url.to_owned())
        .map_err(|e| ReporterError::Endpoint(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        tls = match &cfg.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    ReporterError::Endpoint(format!("cannot read {}: {e}", path.display()))
                })?;
                tls.ca_certificate(Certificate::from_pem(pem))
            }
            None => tls.with_webpki_roots(),
        };
        if let Some(id) = identity {
            tls = tls.identity(tonic::transport::Identity::from_pem(
                &id.cert_pem,
                &id.key_pem,
            ));
        }
        ep = ep.tls_config(tls).map_err(ReporterError::Transport)?;
    }
    Ok(ep)
}

/// Full-jitter exponential backoff for attempt `n` (0-based), using `seed` for the jitter.
pub fn backoff(n: u32, seed: u64) -> Duration {
    let cap = BACKOFF_MIN
        .saturating_mul(1u32 << n.min(20))
        .min(BACKOFF_MAX);
    let frac = (splitmix(seed.wrapping_add(u64::from(n))) % 1000) as f64 / 1000.0;
    BACKOFF_MIN.max(cap.mul_f64(frac))
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Keeps a stream to the controller up until `shutdown` fires, then drains
/// (see the design notes).
pub async fn run(
    cfg: ControllerConfig,
    me: Identity,
    outbox: Arc<Outbox>,
    scheduler: Arc<Scheduler>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    clock: Clock,
) {
    for url in cfg.urls.iter().filter(|u| u.starts_with("http://")) {
        tracing::warn!(url = %url, "controller connection is plaintext: the probe token travels unencrypted");
    }
    let seed = crate::scheduler::fnv1a(&[&me.name, &me.region]) ^ std::process::id() as u64;
    let mut attempt: u32 = 0;
    let mut version = 0u64;
    // Set when shutdown arrives on a live stream: the drain's deadline.
    let mut stop: Option<tokio::time::Instant> = None;
    // Which URL the next session uses; moves on after every ended stream.
    let mut next = 0usize;
    loop {
        let mut established = false;
        let url = &cfg.urls[next % cfg.urls.len().max(1)];
        let res = session(
            &cfg,
            url,
            &me,
            &outbox,
            &scheduler,
            &mut version,
            &mut established,
            &mut shutdown,
            &mut stop,
            &clock,
        )
        .await;
        if *shutdown.borrow() {
            match stop {
                Some(deadline) if !outbox.is_empty() && tokio::time::Instant::now() < deadline => {}
                _ => {
                    log_stop(&outbox, stop.is_some());
                    return;
                }
            }
        }
        match &res {
            Err(ReporterError::Status(s)) if s.code() == tonic::Code::Unauthenticated => {
                tracing::error!(error = %s.message(), "controller rejected this probe's credentials");
            }
            Err(e) => tracing::warn!(error = %e, "controller stream ended"),
            Ok(()) => {}
        }
        if established {
            attempt = 0;
        }
        next = next.wrapping_add(1);
        // The next replica is tried at once; the backoff grows only once
        // every URL failed in a row.
        let delay = if cfg.urls.len() > 1 && !next.is_multiple_of(cfg.urls.len()) {
            BACKOFF_MIN
        } else {
            let mut d = backoff(attempt, seed);
            if res.as_ref().err().is_some_and(ReporterError::is_refused) {
                d = d.min(UNREACHABLE_MAX);
            }
            attempt = attempt.saturating_add(1);
            d
        };
        tracing::debug!(delay_ms = delay.as_millis() as u64, "reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut shutdown), if stop.is_none() => {
                log_stop(&outbox, false);
                return;
            }
            _ = sleep_until_opt(stop) => {
                log_stop(&outbox, true);
                return;
            }
        }
    }
}

fn log_stop(outbox: &Outbox, drained: bool) {
    let unacked = outbox.len();
    if !drained {
        tracing::info!(
            unacked,
            "reporter stopped while disconnected; unacked results stay in the outbox"
        );
    } else if unacked == 0 {
        tracing::info!("every result sent was acked; reporter stopped");
    } else {
        tracing::warn!(
            unacked,
            "drain timeout passed; unacked results stay in the outbox and are resent on the next start"
        );
    }
}

/// Resolves once shutdown was requested.
async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|v| *v).await.is_err() {
        // The sender is gone: nobody can ask for a shutdown any more.
        std::future::pending::<()>().await;
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending::<()>().await,
    }
}

/// One stream: connect, hello, then batches, acks and heartbeats until it
/// breaks or the drain ends. `established` is set once the controller
/// answered (assignment or ack); `stop` is the drain deadline, set here when
/// `shutdown` fires on a live stream.
#[allow(clippy::too_many_arguments)]
async fn session(
    cfg: &ControllerConfig,
    url: &str,
    me: &Identity,
    outbox: &Outbox,
    scheduler: &Scheduler,
    version: &mut u64,
    established: &mut bool,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    stop: &mut Option<tokio::time::Instant>,
    clock: &Clock,
) -> Result<(), ReporterError> {
    let deadline = *stop;
    let draining = deadline.is_some();
    let connect = connect(cfg, url, me, outbox, *version);
    let (tx, mut inbound, mut client, current_id) = tokio::select! {
        r = connect => r?,
        _ = stopped(shutdown), if !draining => return Ok(()),
        _ = sleep_until_opt(deadline) => return Ok(()),
    };
    tracing::info!(url = %url, "connected to controller");
    outbox.rewind();

    let mut heartbeat = tokio::time::interval(cfg.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // At most one batch in flight keeps ack order simple and memory bounded.
    let mut in_flight = false;
    // Results are collected for up to LINGER (ROUTINE_LINGER while every
    // unsent result is a pass after a pass) from the first unsent one before
    // a batch goes out, so a quiet probe sends one message per linger, not
    // one per result; a failure arriving mid-linger shortens it. A backlog
    // (the previous batch was full) goes out back to back. A drain sends at
    // once.
    let mut linger_from: Option<tokio::time::Instant> = None;
    let mut backlog = true;
    // The earliest next renewal attempt (after a failed one).
    let mut renew_after: Option<tokio::time::Instant> = None;
    loop {
        if stop.is_some() && !in_flight && !outbox.has_unsent() {
            return Ok(());
        }
        // One look at the outbox per turn: how long what is unsent may wait.
        let wait = if outbox.has_urgent_unsent() {
            LINGER
        } else {
            ROUTINE_LINGER
        };
        if !in_flight && outbox.has_unsent() {
            let now = tokio::time::Instant::now();
            let since = *linger_from.get_or_insert(now);
            if backlog || stop.is_some() || now >= since + wait {
                let results = outbox.take_unsent(MAX_BATCH);
                backlog = results.len() == MAX_BATCH;
                tx.send(ProbeMessage {
                    body: Some(PBody::Results(ResultBatch { results })),
                })
                .await
                .map_err(|_| ReporterError::Closed)?;
                in_flight = true;
                linger_from = None;
                continue;
            }
        }
        let linger_wait = async {
            match linger_from {
                Some(t) if !in_flight => tokio::time::sleep_until(t + wait).await,
                _ => std::future::pending::<()>().await,
            }
        };
        let draining = stop.is_some();
        tokio::select! {
            _ = linger_wait => {}
            _ = stopped(shutdown), if !draining => {
                let unacked = outbox.len();
                tracing::info!(unacked, drain_timeout_ms = cfg.drain_timeout.as_millis() as u64, "shutting down: waiting for the controller to ack what was sent");
                *stop = Some(tokio::time::Instant::now() + cfg.drain_timeout);
            }
            _ = sleep_until_opt(*stop) => return Ok(()),
            msg = inbound.message() => {
                let Some(msg) = msg? else { return Err(ReporterError::Closed) };
                match msg {
                    ControllerMessage { body: Some(CBody::Ack(ack)) } => {
                        *established = true;
                        outbox.ack(ack.through_sequence);
                        in_flight = false;
                    }
                    ControllerMessage { body: Some(CBody::Assignment(a)) } => {
                        *established = true;
                        *version = a.version;
                        if !draining {
                            apply_assignment(&a, scheduler);
                        }
                    }
                    ControllerMessage { body: Some(CBody::RunNow(r)) } => {
                        if !draining {
                            let outcome = scheduler.run_now(&r.check_id);
                            tracing::debug!(check = %r.check_id, reason = %r.reason, outcome = ?outcome, "run-now hint");
                        }
                    }
                    ControllerMessage { body: Some(CBody::Error(e)) } => {
                        tracing::warn!(code = %e.code, message = %e.message, "controller reported an error");
                    }
                    ControllerMessage { body: None } => {}
                }
            }
            _ = outbox.changed(), if !in_flight => {}
            _ = heartbeat.tick() => {
                let hb = Heartbeat {
                    sent_at_unix_ms: (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
                    queued_results: outbox.len() as u64,
                    dropped_results: outbox.dropped(),
                    dropped_by_reason: outbox
                        .dropped_by_reason()
                        .into_iter()
                        .map(|(r, n)| (r.as_str().to_owned(), n))
                        .collect(),
                };
                tx.send(ProbeMessage { body: Some(PBody::Heartbeat(hb)) }).await.map_err(|_| ReporterError::Closed)?;
                if let Some(id) = &current_id
                    && !draining
                    && identity::renewal_due(id, clock.unix_ms())
                    && renew_after.is_none_or(|t| tokio::time::Instant::now() >= t)
                {
                    match renew(cfg, me, &mut client, id).await {
                        Ok(new) => {
                            tracing::info!(old_serial = %id.serial, serial = %new.serial, not_after_ms = new.not_after_ms, "client certificate renewed; reconnecting with it");
                            return Ok(());
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, serial = %id.serial, not_after_ms = id.not_after_ms, "client certificate renewal failed; keeping the current one");
                            renew_after = Some(tokio::time::Instant::now() + identity::RENEW_RETRY);
                        }
                    }
                }
            }
        }
    }
}

/// The open stream, its client (for unary calls on the same channel) and
/// the client certificate it authenticated with.
type Connected = (
    mpsc::Sender<ProbeMessage>,
    tonic::Streaming<ControllerMessage>,
    ProbeServiceClient<Channel>,
    Option<ClientIdentity>,
);

/// Exchanges the enrollment token and a CSR for the first client
/// certificate, over server-authenticated TLS, and stores it.
async fn enroll(
    cfg: &ControllerConfig,
    url: &str,
    me: &Identity,
    token: &crate::config::Secret,
) -> Result<ClientIdentity, ReporterError> {
    let (key_pem, csr_pem) = identity::new_key_and_csr(&me.name)?;
    let channel: Channel = endpoint_for(cfg, url)?.connect().await?;
    let issued = ProbeServiceClient::new(channel)
        .enroll(pb::EnrollRequest {
            token: token.expose().to_owned(),
            csr_pem,
        })
        .await?
        .into_inner();
    let id = identity::store(
        &cfg.identity_dir,
        &issued.cert_pem,
        &key_pem,
        &issued.chain_pem,
    )?;
    tracing::info!(serial = %id.serial, not_after_ms = id.not_after_ms, dir = %cfg.identity_dir.display(), "enrolled: client certificate stored");
    Ok(id)
}

/// A new key and certificate for `current`, over the channel it
/// authenticated; stored before it is returned.
async fn renew(
    cfg: &ControllerConfig,
    me: &Identity,
    client: &mut ProbeServiceClient<Channel>,
    current: &ClientIdentity,
) -> Result<ClientIdentity, ReporterError> {
    let (key_pem, csr_pem) = identity::new_key_and_csr(&me.name)?;
    let issued = client
        .renew(pb::RenewRequest { csr_pem })
        .await?
        .into_inner();
    let new = identity::store(
        &cfg.identity_dir,
        &issued.cert_pem,
        &key_pem,
        &issued.chain_pem,
    )?;
    debug_assert_ne!(new.serial, current.serial);
    Ok(new)
}

/// Connects (enrolling first when there is no identity yet but an
/// enrollment token), sends the hello and opens the stream.
async fn connect(
    cfg: &ControllerConfig,
    url: &str,
    me: &Identity,
    outbox: &Outbox,
    version: u64,
) -> Result<Connected, ReporterError> {
    if !url.starts_with("https://") && !cfg.allow_plaintext {
        // Config validation refuses this already; never send the token in
        // clear without the opt-in, whoever built the config.
        return Err(ReporterError::Endpoint(format!(
            "{url:?} is not https://: set controller.allow_plaintext = true to send the token in clear"
        )));
    }
    let mut id = identity::load(&cfg.identity_dir)?;
    if id.is_none()
        && let Some(token) = &cfg.enrollment_token
        && url.starts_with("https://")
    {
        id = Some(enroll(cfg, url, me, token).await?);
    }
    let channel: Channel = endpoint_with(cfg, url, id.as_ref())?.connect().await?;
    let client = ProbeServiceClient::new(channel);
    let (tx, rx) = mpsc::channel::<ProbeMessage>(16);
    tx.send(ProbeMessage {
        body: Some(PBody::Hello(Hello {
            probe_name: me.name.clone(),
            region: me.region.clone(),
            labels: me.labels.clone().into_iter().collect(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            last_sequence: outbox.last_sequence(),
            assignment_version: version,
            heartbeat_interval_ms: u64::try_from(cfg.heartbeat_interval.as_millis())
                .unwrap_or(u64::MAX),
        })),
    })
    .await
    .map_err(|_| ReporterError::Closed)?;
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    match (&id, &cfg.token) {
        // The certificate authenticates the stream.
        (Some(_), _) => {}
        (None, Some(token)) => {
            let bearer = format!("Bearer {}", token.expose());
            req.metadata_mut().insert(
                "authorization",
                bearer.parse().map_err(|_| {
                    ReporterError::Endpoint("token is not valid in a header".into())
                })?,
            );
        }
        (None, None) => {
            return Err(ReporterError::Endpoint(format!(
                "no credential for {url}: no client certificate in {} and no controller.token",
                cfg.identity_dir.display()
            )));
        }
    }
    let inbound = client.clone().attach(req).await?.into_inner();
    Ok((tx, inbound, client, id))
}

/// Validates an assignment with the same schema as local config and hands
/// it to the scheduler. Invalid checks are skipped and logged.
pub fn apply_assignment(a: &pb::Assignment, scheduler: &Scheduler) {
    let mut specs = Vec::with_capacity(a.checks.len());
    for c in &a.checks {
        let raw: RawCheck = match serde_json::from_str(&c.spec_json) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(check = %c.id, error = %e, "assigned check does not parse; is this probe older than the controller?");
                continue;
            }
        };
        let mut problems = Problems::default();
        match raw.validate(&format!("assignment.{}", c.id), &mut problems) {
            Some(spec) if problems.is_empty() => specs.push(spec),
            _ => {
                tracing::error!(check = %c.id, problems = ?problems, "assigned check is invalid on this probe")
            }
        }
    }
    tracing::info!(
        version = a.version,
        checks = specs.len(),
        "assignment applied"
    );
    scheduler.set_checks(specs, a.version);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_bounds_and_grows() {
        for n in 0..40 {
            let d = backoff(n, 7);
            assert!(d >= BACKOFF_MIN && d <= BACKOFF_MAX, "{n}: {d:?}");
        }
        let late: Duration = (0..100).map(|s| backoff(12, s)).sum();
        let early: Duration = (0..100).map(|s| backoff(1, s)).sum();
        assert!(late > early * 10);
    }
}
