//! gRPC ingest: the `outpost.v1.ProbeService` server.
//!
//! Per stream: authenticate *before* reading anything: a client
//! certificate the probe CA issued (mutual TLS, [`crate::identity`]: its
//! serial must be on record, not revoked, and its probe still configured —
//! else UNAUTHENTICATED or PERMISSION_DENIED, counted in
//! `outpost_probe_certificates_refused_total{reason}`), or else the bearer
//! token (missing or unknown → UNAUTHENTICATED, nothing stored); the first
//! message must be a `Hello` naming the authenticated probe (its region
//! comes from the config, whatever the hello says); reply with the probe's
//! `Assignment`; then for each `ResultBatch`: validate, read each result's
//! details once into the probe's typed `Observed` (kept beside the text as
//! received, which is what is stored), derive what they report
//! ([`build_batch`]: DNS change events, certificate sightings), commit it all through the store in one transaction, and only
//! then `Ack` (`through_sequence` = the batch's highest
//! sequence, including results skipped as invalid so they are not resent
//! forever), then ask the evaluator to look at the touched checks.
//!
//! Connected streams are kept in a [`Registry`] so a config reload can push
//! new assignments (or close streams whose probe was removed). One stream
//! per probe: a new stream replaces the open one, which ends with
//! `ABORTED` ("replaced by a newer stream").
//!
//! Bounds (`[server.probe_limits]`, [`crate::config::limits`]): the message
//! size is tonic's decoder limit; a hello with too many or too large labels
//! is refused (`INVALID_ARGUMENT`); a batch with more results than
//! `max_batch_results`, or more than the probe's token bucket holds
//! (`results_per_second`, `results_burst`, kept per probe across its
//! reconnects), ends the stream with `RESOURCE_EXHAUSTED` naming the limit
//! and nothing of it is stored or acked. A single result over a per-result
//! bound (failure message, field lengths) is skipped, never stored, acked so
//! it is not resent forever, and reported in-band with an `Error`
//! (`limit_exceeded`). Every violation counts in
//! `outpost_probe_limit_violations_total{reason}`.
//!
//! Unary calls: `Enroll` (a one-time enrollment token and a CSR → the
//! probe's first client certificate; no client certificate needed) and
//! `Renew` (a CSR, authenticated by the current client certificate → a new
//! one). Refusals count in `outpost_enrollments_refused_total{reason}`.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use outpost_probe::config::Secret;
use outpost_proto::v1::{
    Ack, AssignedCheck, Assignment, CheckResult, ControllerMessage, EnrollRequest,
    Error as PbError, Heartbeat, Hello, IssuedCertificate, ProbeMessage, RenewRequest, ResultBatch,
    controller_message::Body as CBody, probe_message::Body as PBody,
    probe_service_server::ProbeService,
};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming, metadata::MetadataMap};

use crate::{
    Controller,
    config::{ControllerConfig, ProbeDef, limits::ProbeLimits},
    identity,
    store::{
        HeartbeatRow, IngestBatch, IngestEvent, IngestItem, NewResult, ProbeCertificateRow,
        ProbeRow,
    },
};

/// How long a stream may stay silent before its hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest `details_json` stored per result; larger is replaced by a note.
pub const MAX_DETAILS: usize = 64 * 1024;

type Outbound = mpsc::Sender<Result<ControllerMessage, Status>>;

/// The assignment for a probe in `region`: every check that region runs.
/// The version is FNV-1a over the assigned set, so equal configs give equal
/// versions (never 0, which means "none" on the wire).
pub fn assignment(cfg: &ControllerConfig, region: &str) -> Assignment {
    let checks: Vec<AssignedCheck> = cfg
        .checks_for_region(region)
        .map(|c| AssignedCheck {
            id: c.raw.id.clone(),
            spec_json: serde_json::to_string(&c.raw).unwrap_or_else(|_| "{}".into()),
        })
        .collect();
    let parts: Vec<&str> = checks
        .iter()
        .flat_map(|c| [c.id.as_str(), c.spec_json.as_str()])
        .collect();
    let version = outpost_probe::scheduler::fnv1a(&parts).max(1);
    Assignment { version, checks }
}

/// Compares without an early exit, so timing reveals nothing about the token.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

/// The probe whose token the metadata carries, or UNAUTHENTICATED.
pub fn authenticate(cfg: &ControllerConfig, metadata: &MetadataMap) -> Result<ProbeDef, Status> {
    let header = metadata.get("authorization").ok_or_else(|| {
        Status::unauthenticated(
            "missing authorization metadata: send `authorization: Bearer <token>`",
        )
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
    let mut found = None;
    for p in &cfg.probes {
        let Some(own) = &p.token else { continue };
        if constant_time_eq(own.expose().as_bytes(), token.as_bytes()) && found.is_none() {
            found = Some(p.clone());
        }
    }
    found.ok_or_else(|| Status::unauthenticated("unknown probe token"))
}

/// How a stream or call authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The probe's bearer token (this value).
    Token(Secret),
    /// A client certificate with this hex serial.
    Certificate(String),
}

/// The probe a verified client certificate identifies: `Ok(None)` when the
/// peer sent none. The TLS handshake already verified it against the probe
/// CA (on the controller's clock); here its serial must be on record and
/// not revoked, and its probe still configured. A refusal is counted and
/// logged here.
pub async fn authenticate_certificate(
    ctl: &Controller,
    peer: Option<std::net::SocketAddr>,
    leaf: Option<rustls_pki_types::CertificateDer<'static>>,
) -> Result<Option<(ProbeDef, String)>, Status> {
    let Some(der) = leaf else {
        return Ok(None);
    };
    let refuse = |reason: &'static str, status: Status| {
        ctl.metrics().inc(
            "outpost_probe_certificates_refused_total",
            &[("reason", reason)],
            1,
        );
        ctl.metrics().inc("outpost_auth_failures_total", &[], 1);
        tracing::warn!(peer = ?peer, reason, message = %status.message(), "probe certificate refused");
        status
    };
    let Some(claimed) = identity::claimed(&der) else {
        return Err(refuse(
            "no_probe_name",
            Status::unauthenticated(
                "the client certificate names no probe (spiffe://outpost/probe/<name>)",
            ),
        ));
    };
    let row = match ctl.store().probe_certificate(&claimed.serial).await {
        Ok(Some(row)) if row.probe == claimed.probe => row,
        Ok(_) => {
            return Err(refuse(
                "unknown_serial",
                Status::unauthenticated(
                    "this client certificate was not issued by this controller's probe CA records",
                ),
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot look up a probe certificate");
            return Err(Status::unavailable(
                "controller store unavailable; retry later",
            ));
        }
    };
    if row.revoked_ms.is_some() {
        return Err(refuse(
            "revoked",
            Status::unauthenticated(format!(
                "the client certificate of probe {:?} was revoked: enroll again (`outpost-controller probe enroll`)",
                row.probe
            )),
        ));
    }
    match ctl.config().probe(&row.probe) {
        Some(p) => Ok(Some((p.clone(), row.serial))),
        None => Err(refuse(
            "probe_removed",
            Status::permission_denied(format!(
                "probe {:?} is no longer in the controller's [[probes]]",
                row.probe
            )),
        )),
    }
}

/// A token bucket of results per second for one probe.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: tokio::time::Instant,
}

impl Bucket {
    /// Takes `n` tokens after refilling at `rate`/s up to `burst`; false
    /// (and nothing taken) when the bucket holds fewer.
    fn take(&mut self, n: u32, rate: u32, burst: u32, now: tokio::time::Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        self.at = now;
        if self.tokens >= f64::from(n) {
            self.tokens -= f64::from(n);
            true
        } else {
            false
        }
    }
}

struct Conn {
    probe: String,
    region: String,
    credential: Credential,
    tx: Outbound,
    version: u64,
    close: Arc<Notify>,
}

/// Open probe streams.
#[derive(Default)]
pub struct Registry {
    conns: Mutex<HashMap<u64, Conn>>,
    next: AtomicU64,
    /// Per probe name, kept across reconnects so a reconnect does not refill.
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("connected", &self.connected())
            .finish()
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Conn>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream; the probe's other open streams are told they
    /// were replaced and closed. Returns the id and how many were replaced.
    fn register(
        &self,
        probe: &ProbeDef,
        credential: &Credential,
        tx: Outbound,
        close: Arc<Notify>,
    ) -> (u64, usize) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Conn {
            probe: probe.name.clone(),
            region: probe.region.clone(),
            credential: credential.clone(),
            tx,
            version: 0,
            close,
        };
        let mut conns = self.lock();
        let mut replaced = 0;
        for old in conns.values().filter(|c| c.probe == probe.name) {
            // Stays registered until its session ends, so its unregister
            // sees the new stream and does not mark the probe disconnected.
            let _ = old.tx.try_send(Err(Status::aborted(format!(
                "replaced by a newer stream for probe {:?}: one stream per probe",
                probe.name
            ))));
            old.close.notify_one();
            replaced += 1;
        }
        conns.insert(id, conn);
        (id, replaced)
    }

    /// Takes `n` results from `probe`'s bucket; false when it holds fewer.
    fn take_results(&self, probe: &str, n: usize, limits: &ProbeLimits) -> bool {
        let now = tokio::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(probe.to_owned()).or_insert(Bucket {
            tokens: f64::from(limits.results_burst),
            at: now,
        });
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        bucket.take(n, limits.results_per_second, limits.results_burst, now)
    }

    /// Removes a stream; true when the probe has no other stream open.
    fn unregister(&self, id: u64) -> bool {
        let mut conns = self.lock();
        let Some(conn) = conns.remove(&id) else {
            return true;
        };
        !conns.values().any(|c| c.probe == conn.probe)
    }

    /// Open streams.
    pub fn connected(&self) -> usize {
        self.lock().len()
    }

    /// Names of probes with a stream open, sorted, deduplicated.
    pub fn connected_probes(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().values().map(|c| c.probe.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// The serial of the client certificate `probe`'s open stream
    /// authenticated with (`None`: no stream, or a bearer token).
    pub fn certificate_of(&self, probe: &str) -> Option<String> {
        self.lock().values().find_map(|c| match &c.credential {
            Credential::Certificate(serial) if c.probe == probe => Some(serial.clone()),
            _ => None,
        })
    }

    /// Sends `RunNow` for `check_id` on every open stream of `region`'s
    /// probes (a full stream is skipped: the hint is optional); how many
    /// streams got it.
    pub fn run_now(&self, region: &str, check_id: &str, reason: &str) -> usize {
        let conns = self.lock();
        let mut sent = 0;
        for c in conns.values().filter(|c| c.region == region) {
            let msg = ControllerMessage {
                body: Some(CBody::RunNow(outpost_proto::v1::RunNow {
                    check_id: check_id.to_owned(),
                    reason: reason.to_owned(),
                })),
            };
            if c.tx.try_send(Ok(msg)).is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// Sends `a` on stream `id` unless it already runs that version.
    fn send_assignment(&self, id: u64, a: Assignment) -> bool {
        let mut conns = self.lock();
        let Some(conn) = conns.get_mut(&id) else {
            return false;
        };
        if conn.version == a.version {
            return false;
        }
        let version = a.version;
        let msg = ControllerMessage {
            body: Some(CBody::Assignment(a)),
        };
        if conn.tx.try_send(Ok(msg)).is_ok() {
            conn.version = version;
            true
        } else {
            // The stream is backed up or gone: close it; the probe reconnects
            // and gets the current assignment in reply to its hello.
            conn.close.notify_one();
            false
        }
    }

    /// After a config change: new assignments to streams whose set changed;
    /// streams whose probe was removed or whose token changed are closed.
    pub fn push_assignments(&self, cfg: &ControllerConfig) -> usize {
        let ids: Vec<(u64, String, String, Credential)> = self
            .lock()
            .iter()
            .map(|(id, c)| (*id, c.probe.clone(), c.region.clone(), c.credential.clone()))
            .collect();
        let mut sent = 0;
        for (id, probe, region, credential) in ids {
            let still = |p: &ProbeDef| match &credential {
                Credential::Token(t) => p.token.as_ref() == Some(t),
                // Revocation by `probe revoke` applies at the next connection.
                Credential::Certificate(_) => true,
            };
            match cfg.probe(&probe) {
                Some(p) if still(p) && p.region == region => {
                    if self.send_assignment(id, assignment(cfg, &region)) {
                        sent += 1;
                    }
                }
                _ => {
                    tracing::info!(probe = %probe, "probe removed or its token changed; closing its stream");
                    if let Some(c) = self.lock().get(&id) {
                        let err = PbError {
                            code: "probe_removed".into(),
                            message: "this probe's config changed; reconnect".into(),
                        };
                        let _ = c.tx.try_send(Ok(ControllerMessage {
                            body: Some(CBody::Error(err)),
                        }));
                        c.close.notify_one();
                    }
                }
            }
        }
        sent
    }
}

/// The tonic service.
#[derive(Clone)]
pub struct IngestService {
    ctl: Controller,
}

impl std::fmt::Debug for IngestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IngestService")
    }
}

impl IngestService {
    /// A service over a controller.
    pub fn new(ctl: Controller) -> Self {
        IngestService { ctl }
    }
}

#[tonic::async_trait]
impl ProbeService for IngestService {
    type AttachStream = ReceiverStream<Result<ControllerMessage, Status>>;

    async fn attach(
        &self,
        request: Request<Streaming<ProbeMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let peer = request.remote_addr();
        let (probe, credential) = match authenticate_certificate(&self.ctl, peer, leaf(&request))
            .await?
        {
            Some((probe, serial)) => (probe, Credential::Certificate(serial)),
            None => match authenticate(&self.ctl.config(), request.metadata()) {
                Ok(p) => {
                    let token = p
                        .token
                        .clone()
                        .unwrap_or_else(|| Secret::new(String::new()));
                    (p, Credential::Token(token))
                }
                Err(status) => {
                    self.ctl
                        .metrics()
                        .inc("outpost_auth_failures_total", &[], 1);
                    tracing::warn!(peer = ?peer, reason = %status.message(), "probe stream refused");
                    return Err(status);
                }
            },
        };
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(session(self.ctl.clone(), probe, credential, inbound, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<IssuedCertificate>, Status> {
        let ctl = &self.ctl;
        let peer = request.remote_addr();
        let refuse = |reason: &'static str, status: Status| {
            ctl.metrics().inc(
                "outpost_enrollments_refused_total",
                &[("reason", reason)],
                1,
            );
            tracing::warn!(peer = ?peer, reason, message = %status.message(), "enrollment refused");
            Err(status)
        };
        let Some(ca) = ctl.probe_ca() else {
            return refuse(
                "no_probe_ca",
                Status::failed_precondition(
                    "this controller has no server.probe_ca: enrollment is off",
                ),
            );
        };
        let req = request.into_inner();
        let hash = identity::enrollment_token_hash(&req.token);
        let now = ctl.now_ms();
        let token = match ctl.store().enrollment_token(&hash).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                return refuse(
                    "unknown_token",
                    Status::unauthenticated("unknown enrollment token"),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot look up an enrollment token");
                return Err(Status::unavailable(
                    "controller store unavailable; retry later",
                ));
            }
        };
        const AGAIN: &str = "make a new one with `outpost-controller probe enroll NAME --region R`";
        if token.used_ms.is_some() {
            return refuse(
                "used_token",
                Status::unauthenticated(format!("this enrollment token was used already: {AGAIN}")),
            );
        }
        if token.expires_ms <= now {
            return refuse(
                "expired_token",
                Status::unauthenticated(format!("this enrollment token expired: {AGAIN}")),
            );
        }
        let cfg = ctl.config();
        let probe = match cfg.probe(&token.probe) {
            Some(p) if p.region == token.region => p.clone(),
            _ => {
                return refuse(
                    "probe_removed",
                    Status::permission_denied(format!(
                        "probe {:?} in region {:?} is no longer in the controller's [[probes]]",
                        token.probe, token.region
                    )),
                );
            }
        };
        let (row, reply) = issue(ctl, ca, &probe, &req.csr_pem, cfg.probe_cert_validity)?;
        match ctl.store().redeem_enrollment_token(&hash, now, &row).await {
            Ok(true) => {}
            Ok(false) => {
                return refuse(
                    "used_token",
                    Status::unauthenticated(format!(
                        "this enrollment token was used already: {AGAIN}"
                    )),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record an enrollment");
                return Err(Status::unavailable(
                    "controller store unavailable; retry later",
                ));
            }
        }
        ctl.metrics().inc(
            "outpost_probe_certificates_issued_total",
            &[("via", "enroll")],
            1,
        );
        tracing::info!(probe = %probe.name, region = %probe.region, serial = %row.serial, not_after_ms = row.not_after_ms, "probe enrolled");
        Ok(Response::new(reply))
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<IssuedCertificate>, Status> {
        let ctl = &self.ctl;
        let Some(ca) = ctl.probe_ca() else {
            return Err(Status::failed_precondition(
                "this controller has no server.probe_ca: renewal is off",
            ));
        };
        let peer = request.remote_addr();
        let Some((probe, old)) = authenticate_certificate(ctl, peer, leaf(&request)).await? else {
            ctl.metrics().inc(
                "outpost_enrollments_refused_total",
                &[("reason", "no_certificate")],
                1,
            );
            return Err(Status::unauthenticated(
                "renewal needs the current client certificate",
            ));
        };
        let cfg = ctl.config();
        let (row, reply) = issue(
            ctl,
            ca,
            &probe,
            &request.into_inner().csr_pem,
            cfg.probe_cert_validity,
        )?;
        if let Err(e) = ctl.store().insert_probe_certificate(&row).await {
            tracing::error!(error = %e, "cannot record a renewal");
            return Err(Status::unavailable(
                "controller store unavailable; retry later",
            ));
        }
        ctl.metrics().inc(
            "outpost_probe_certificates_issued_total",
            &[("via", "renew")],
            1,
        );
        tracing::info!(probe = %probe.name, old_serial = %old, serial = %row.serial, not_after_ms = row.not_after_ms, "probe certificate renewed");
        Ok(Response::new(reply))
    }
}

/// The client certificate the TLS handshake verified, if any.
fn leaf<T>(request: &Request<T>) -> Option<rustls_pki_types::CertificateDer<'static>> {
    request
        .peer_certs()
        .and_then(|certs| certs.first().cloned())
}

/// Signs `csr_pem` for `probe` on the controller's clock.
fn issue(
    ctl: &Controller,
    ca: &identity::ProbeCa,
    probe: &ProbeDef,
    csr_pem: &str,
    validity: Duration,
) -> Result<(ProbeCertificateRow, IssuedCertificate), Status> {
    let issued = ca
        .issue(csr_pem, &probe.name, ctl.clock().now_utc(), validity)
        .map_err(|e| match e {
            identity::IdentityError::Csr(_) => Status::invalid_argument(e.to_string()),
            _ => {
                tracing::error!(error = %e, "cannot issue a probe certificate");
                Status::internal("cannot issue a certificate")
            }
        })?;
    let row = ProbeCertificateRow {
        serial: issued.serial.clone(),
        probe: probe.name.clone(),
        region: probe.region.clone(),
        not_before_ms: issued.not_before_ms,
        not_after_ms: issued.not_after_ms,
        fingerprint: issued.fingerprint.clone(),
        cert_pem: issued.cert_pem.clone(),
        issued_ms: ctl.now_ms(),
        revoked_ms: None,
    };
    let reply = IssuedCertificate {
        cert_pem: issued.cert_pem,
        chain_pem: ca.cert_pem().to_owned(),
        not_before_unix_ms: issued.not_before_ms,
        not_after_unix_ms: issued.not_after_ms,
        serial: issued.serial,
    };
    Ok((row, reply))
}

async fn send_status(tx: &Outbound, status: Status) {
    let _ = tx.send(Err(status)).await;
}

async fn read_hello(inbound: &mut Streaming<ProbeMessage>, tx: &Outbound) -> Option<Hello> {
    match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(ProbeMessage {
            body: Some(PBody::Hello(h)),
        }))) => Some(h),
        Ok(Ok(Some(_))) => {
            send_status(
                tx,
                Status::failed_precondition("the first message on a stream must be hello"),
            )
            .await;
            None
        }
        Ok(Ok(None)) | Ok(Err(_)) => None,
        Err(_) => {
            let msg = format!(
                "no hello within {}",
                outpost_probe::human::duration(HELLO_TIMEOUT)
            );
            send_status(tx, Status::deadline_exceeded(msg)).await;
            None
        }
    }
}

#[tracing::instrument(skip_all, fields(probe = %probe.name, region = %probe.region))]
async fn session(
    ctl: Controller,
    probe: ProbeDef,
    credential: Credential,
    mut inbound: Streaming<ProbeMessage>,
    tx: Outbound,
) {
    let Some(hello) = read_hello(&mut inbound, &tx).await else {
        return;
    };
    if hello.probe_name != probe.name {
        tracing::warn!(hello_name = %hello.probe_name, "hello names another probe than the token's");
        let msg = format!(
            "this token belongs to probe {:?}, but hello names {:?}",
            probe.name, hello.probe_name
        );
        send_status(&tx, Status::permission_denied(msg)).await;
        return;
    }
    if let Err((reason, status)) = check_hello(&hello, &ctl.config().probe_limits) {
        ctl.metrics().inc(
            "outpost_probe_limit_violations_total",
            &[("reason", reason)],
            1,
        );
        tracing::warn!(reason, message = %status.message(), "probe hello refused");
        send_status(&tx, status).await;
        return;
    }
    if hello.region != probe.region {
        tracing::warn!(hello_region = %hello.region, "probe reports another region than configured; using the configured one");
    }
    let offline_after = ctl.config().offline_after;
    if let Some(heartbeat) = crate::alerting::offline::heartbeat_too_slow(
        offline_after,
        Duration::from_millis(hello.heartbeat_interval_ms),
    ) {
        tracing::warn!(
            heartbeat_interval = %outpost_probe::config::Dur(heartbeat),
            offline_after = %outpost_probe::config::Dur(offline_after),
            "alerting.offline_after is at most twice this probe's heartbeat_interval: one late heartbeat can page probe_offline; raise offline_after or lower the probe's heartbeat_interval"
        );
    }
    let labels: BTreeMap<String, String> = hello.labels.clone().into_iter().collect();
    let row = ProbeRow::hello(
        &probe.name,
        &probe.region,
        &hello.version,
        &serde_json::to_string(&labels).unwrap_or_else(|_| "{}".into()),
        ctl.now_ms(),
    );
    if let Err(e) = ctl.store().upsert_probe(&row).await {
        tracing::error!(error = %e, "cannot record probe");
        send_status(
            &tx,
            Status::unavailable("controller store unavailable; retry later"),
        )
        .await;
        return;
    }
    let close = Arc::new(Notify::new());
    let (id, replaced) = ctl
        .registry()
        .register(&probe, &credential, tx.clone(), close.clone());
    if replaced > 0 {
        ctl.metrics()
            .inc("outpost_probe_streams_replaced_total", &[], replaced as u64);
        tracing::info!(
            replaced,
            "a new stream for this probe replaces its open one"
        );
    }
    ctl.update_connected_gauge();
    tracing::info!(version = %hello.version, last_sequence = hello.last_sequence, "probe connected");
    ctl.registry()
        .send_assignment(id, assignment(&ctl.config(), &probe.region));

    let end = stream_loop(&ctl, &probe, &mut inbound, &tx, &close).await;
    if ctl.registry().unregister(id)
        && let Err(e) = ctl.store().set_probe_connected(&probe.name, false).await
    {
        tracing::error!(error = %e, "cannot record probe disconnect");
    }
    ctl.update_connected_gauge();
    match end {
        Ok(()) => tracing::info!("probe disconnected"),
        Err(status) => {
            tracing::info!(code = ?status.code(), message = %status.message(), "probe stream ended");
        }
    }
}

async fn stream_loop(
    ctl: &Controller,
    probe: &ProbeDef,
    inbound: &mut Streaming<ProbeMessage>,
    tx: &Outbound,
    close: &Notify,
) -> Result<(), Status> {
    let mut shutdown = ctl.shutdown_signal();
    loop {
        let msg = tokio::select! {
            m = inbound.message() => match m {
                Ok(m) => m,
                Err(status) => {
                    // tonic's decoder refuses a message over max_message_size.
                    if status.message().contains("message length too large") {
                        ctl.metrics().inc(
                            "outpost_probe_limit_violations_total",
                            &[("reason", "message_size")],
                            1,
                        );
                        tracing::warn!(message = %status.message(), "probe message refused");
                        let msg = format!(
                            "a message over server.probe_limits.max_message_size = {} bytes: {}",
                            ctl.config().probe_limits.max_message_size,
                            status.message()
                        );
                        send_status(tx, Status::resource_exhausted(msg)).await;
                    }
                    return Err(status);
                }
            },
            _ = close.notified() => return Ok(()),
            _ = crate::stopped(&mut shutdown) => return Ok(()),
        };
        let Some(msg) = msg else { return Ok(()) };
        match msg.body {
            Some(PBody::Results(batch)) => {
                if let Err(status) = handle_batch(ctl, probe, batch, tx).await {
                    send_status(tx, status.clone()).await;
                    return Err(status);
                }
            }
            Some(PBody::Heartbeat(hb)) => {
                tracing::debug!(
                    queued = hb.queued_results,
                    dropped = hb.dropped_results,
                    "heartbeat"
                );
                let row = heartbeat_row(&hb);
                if let Err(e) = ctl
                    .store()
                    .record_heartbeat(&probe.name, ctl.now_ms(), &row)
                    .await
                {
                    tracing::warn!(error = %e, "cannot record heartbeat");
                }
            }
            Some(PBody::Hello(_)) => tracing::debug!("ignoring a second hello on the same stream"),
            None => {}
        }
    }
}

/// Label used for drops whose reason the probe did not report.
pub const REASON_UNSPECIFIED: &str = "unspecified";

/// What a heartbeat says about the probe's outbox. `outpost.v1.Heartbeat`
/// carries only the total of dropped results, so it is filed under
/// [`REASON_UNSPECIFIED`]; a per-reason map on the wire (`size`, `age`,
/// `corrupt`, `io`) would slot in here.
pub fn heartbeat_row(hb: &Heartbeat) -> HeartbeatRow {
    let mut dropped_by_reason: BTreeMap<String, u64> = hb
        .dropped_by_reason
        .iter()
        .filter(|(reason, _)| is_known_drop_reason(reason))
        .map(|(r, n)| (r.clone(), *n))
        .collect();
    // Older probes send only the total; keep the label set bounded.
    let by_reason: u64 = dropped_by_reason.values().sum();
    if hb.dropped_results > by_reason {
        *dropped_by_reason
            .entry(REASON_UNSPECIFIED.to_owned())
            .or_default() += hb.dropped_results - by_reason;
    }
    HeartbeatRow {
        queued_results: hb.queued_results,
        dropped_results: hb.dropped_results,
        dropped_by_reason,
    }
}

/// Drop reasons a probe may report; anything else counts as unspecified so a
/// metric label can never grow without bound.
fn is_known_drop_reason(r: &str) -> bool {
    matches!(r, "size" | "age" | "corrupt" | "io")
}

/// A hello within the label bounds, or the violation's reason and status.
fn check_hello(hello: &Hello, limits: &ProbeLimits) -> Result<(), (&'static str, Status)> {
    if hello.labels.len() > limits.max_labels {
        let msg = format!(
            "hello has {} labels; the limit is server.probe_limits.max_labels = {}",
            hello.labels.len(),
            limits.max_labels
        );
        return Err(("labels", Status::invalid_argument(msg)));
    }
    if let Some((k, v)) = hello
        .labels
        .iter()
        .find(|(k, v)| k.len() > limits.max_label_bytes || v.len() > limits.max_label_bytes)
    {
        let msg = format!(
            "a hello label is {} bytes; the limit is server.probe_limits.max_label_bytes = {} per key and value",
            k.len().max(v.len()),
            limits.max_label_bytes
        );
        return Err(("labels", Status::invalid_argument(msg)));
    }
    if hello.version.len() > MAX_FIELD
        || hello.probe_name.len() > MAX_FIELD
        || hello.region.len() > MAX_FIELD
    {
        let msg = format!("hello name, region and version are at most {MAX_FIELD} bytes each");
        return Err(("hello", Status::invalid_argument(msg)));
    }
    Ok(())
}

/// Bytes of a result's short fields (`check_id`, `kind`, `failure_code`) and
/// of a hello's name, region and version at most.
pub const MAX_FIELD: usize = 128;

/// A batch within the size bound and the probe's token bucket, or the
/// violation's reason and status (nothing of the batch is stored).
fn admit_batch(
    ctl: &Controller,
    probe: &ProbeDef,
    n: usize,
    limits: &ProbeLimits,
) -> Result<(), (&'static str, Status)> {
    if n > limits.max_batch_results {
        let msg = format!(
            "batch has {n} results; the limit is server.probe_limits.max_batch_results = {}",
            limits.max_batch_results
        );
        return Err(("batch_results", Status::resource_exhausted(msg)));
    }
    if !ctl.registry().take_results(&probe.name, n, limits) {
        let msg = format!(
            "more results than server.probe_limits.results_per_second = {} (burst {}) allow; \
             the batch was not stored, resend it later",
            limits.results_per_second, limits.results_burst
        );
        return Err(("rate", Status::resource_exhausted(msg)));
    }
    Ok(())
}

/// Why a result was skipped (bounded metric label).
fn validate_result(r: &CheckResult, assigned: impl Fn(&str) -> bool) -> Result<(), &'static str> {
    if r.result_id.is_empty() || r.result_id.len() > 128 {
        return Err("invalid_result_id");
    }
    if r.kind.len() > MAX_FIELD || r.failure_code.len() > MAX_FIELD {
        return Err("result_field");
    }
    if !assigned(r.check_id.as_str()) {
        return Err("check_not_assigned");
    }
    if r.started_at_unix_ms <= 0 {
        return Err("invalid_time");
    }
    Ok(())
}

/// A failure code usable as a metric label.
fn code_label(code: &str) -> &str {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok { code } else { "invalid_code" }
}

fn to_row(r: CheckResult, probe: &ProbeDef) -> NewResult {
    let phases = r.phases.unwrap_or_default();
    let details_json = crate::details::received(r.details_json, MAX_DETAILS);
    let nonempty = |s: String| (!s.is_empty()).then_some(s);
    NewResult {
        result_id: r.result_id,
        probe: probe.name.clone(),
        region: probe.region.clone(),
        check_id: r.check_id,
        sequence: r.sequence,
        kind: r.kind,
        started_at_ms: r.started_at_unix_ms,
        ok: r.ok,
        failure_code: if r.ok {
            None
        } else {
            Some(nonempty(r.failure_code).unwrap_or_else(|| "unknown".into()))
        },
        failure_message: if r.ok {
            None
        } else {
            nonempty(r.failure_message)
        },
        phases_us: [
            phases.dns_us,
            phases.connect_us,
            phases.tls_us,
            phases.first_byte_us,
            phases.total_us,
        ],
        details_json,
    }
}

/// The batch the store writes for `results` received at `received_at_ms`:
/// each result with the DNS change events ([`crate::event`]) and
/// certificate sightings ([`crate::certificate`]) its details report, and
/// the sinks of the events' `info` notifications. Each reads only its own
/// keys of [`NewResult::details_json`]; all of it happens here, outside
/// the store's write transaction.
pub fn build_batch(
    results: Vec<NewResult>,
    received_at_ms: i64,
    event_sinks: Vec<String>,
    probe: Option<String>,
) -> IngestBatch {
    let items = results
        .into_iter()
        .map(|result| {
            let events = crate::event::from_result(&result, result.at_ms(received_at_ms))
                .into_iter()
                .map(|event| IngestEvent {
                    notice: crate::event::notice(&event),
                    event,
                })
                .collect();
            IngestItem {
                certificates: crate::certificate::from_result(&result),
                events,
                result,
            }
        })
        .collect();
    IngestBatch {
        received_at_ms,
        items,
        probe,
        event_sinks,
    }
}

/// [`handle_batch_untraced`], recorded as a trace (`ingest batch`, a server
/// span) when `[telemetry]` is on: probe, region, results, the gRPC status
/// of a refusal.
async fn handle_batch(
    ctl: &Controller,
    probe: &ProbeDef,
    batch: ResultBatch,
    tx: &Outbound,
) -> Result<(), Status> {
    let Some(trace) = ctl.telemetry().begin_operation() else {
        return handle_batch_untraced(ctl, probe, batch, tx).await;
    };
    use outpost_probe::telemetry::{KeyValue, SpanKind};
    let results = batch.results.len();
    let start = std::time::SystemTime::now();
    let timer = std::time::Instant::now();
    let r = handle_batch_untraced(ctl, probe, batch, tx).await;
    let mut attrs = vec![
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", "outpost.v1.ProbeService"),
        KeyValue::new("rpc.method", "Attach"),
        KeyValue::new("outpost.probe", probe.name.clone()),
        KeyValue::new("outpost.region", probe.region.clone()),
        KeyValue::new("outpost.results", results as i64),
    ];
    let error = r.as_ref().err().map(|s| format!("{:?}", s.code()));
    if let Err(s) = &r {
        attrs.push(KeyValue::new("rpc.grpc.status_code", s.code() as i64));
        attrs.push(KeyValue::new("error.type", format!("{:?}", s.code())));
    }
    ctl.telemetry().record_operation(
        trace,
        SpanKind::Server,
        "ingest batch",
        start,
        start + timer.elapsed(),
        attrs,
        error.as_deref(),
    );
    r
}

async fn handle_batch_untraced(
    ctl: &Controller,
    probe: &ProbeDef,
    batch: ResultBatch,
    tx: &Outbound,
) -> Result<(), Status> {
    let cfg = ctl.config();
    // Per result, an index lookup (not a set of the region's checks built
    // per batch: 10,000 checks made that most of a fleet's ingest CPU).
    let assigned = |id: &str| {
        cfg.check(id)
            .is_some_and(|c| c.regions.contains(&probe.region))
    };
    let limits = cfg.probe_limits;
    if let Err((reason, status)) = admit_batch(ctl, probe, batch.results.len(), &limits) {
        ctl.metrics().inc(
            "outpost_probe_limit_violations_total",
            &[("reason", reason)],
            1,
        );
        tracing::warn!(reason, results = batch.results.len(), message = %status.message(), "result batch refused");
        return Err(status);
    }
    let through = batch.results.iter().map(|r| r.sequence).max().unwrap_or(0);
    let mut rows = Vec::with_capacity(batch.results.len());
    let mut oversized = 0usize;
    for r in batch.results {
        if r.failure_message.len() > limits.max_failure_message {
            oversized += 1;
            tracing::debug!(check = %r.check_id, bytes = r.failure_message.len(), "skipping result with an oversized failure message");
            ctl.metrics().inc(
                "outpost_probe_limit_violations_total",
                &[("reason", "failure_message")],
                1,
            );
            continue;
        }
        match validate_result(&r, assigned) {
            Ok(()) => rows.push(to_row(r, probe)),
            Err(reason) => {
                tracing::debug!(check = %r.check_id, reason, "skipping result");
                if reason == "result_field" {
                    ctl.metrics().inc(
                        "outpost_probe_limit_violations_total",
                        &[("reason", reason)],
                        1,
                    );
                }
                ctl.metrics()
                    .inc("outpost_results_rejected_total", &[("reason", reason)], 1);
            }
        }
    }
    if oversized > 0 {
        let err = PbError {
            code: "limit_exceeded".into(),
            message: format!(
                "{oversized} result(s) skipped, not stored: failure_message over server.probe_limits.max_failure_message = {} bytes",
                limits.max_failure_message
            ),
        };
        let _ = tx.try_send(Ok(ControllerMessage {
            body: Some(CBody::Error(err)),
        }));
    }
    // What the metrics need of each result once the batch is stored.
    struct Timed {
        id: String,
        check: String,
        kind: String,
        phases: [u64; 5],
        /// A failure's code.
        failure: Option<String>,
    }
    let timed: Vec<Timed> = rows
        .iter()
        .map(|r| Timed {
            id: r.result_id.clone(),
            check: r.check_id.clone(),
            kind: r.kind.clone(),
            phases: r.phases_us,
            failure: (!r.ok).then(|| r.failure_code.clone().unwrap_or_default()),
        })
        .collect();
    let received = ctl.now_ms();
    let event_sinks = cfg.sinks_for_kind(crate::event::EventKind::DnsChange.into());
    let notify_events = !event_sinks.is_empty();
    let outcome = ctl
        .store()
        .ingest(build_batch(
            rows,
            received,
            event_sinks,
            Some(probe.name.clone()),
        ))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot commit result batch");
            Status::unavailable("controller store unavailable; the batch was not stored, resend it")
        })?;
    let region = probe.region.as_str();
    let m = ctl.metrics();
    m.inc(
        "outpost_results_ingested_total",
        &[("region", region)],
        outcome.stored,
    );
    m.inc(
        "outpost_result_duplicates_total",
        &[("region", region)],
        outcome.duplicates,
    );
    m.inc("outpost_batches_total", &[("region", region)], 1);
    let stored: Vec<&Timed> = timed
        .iter()
        .filter(|t| outcome.inserted.contains(&t.id))
        .collect();
    crate::blackbox::observe(
        m,
        region,
        stored
            .iter()
            .map(|t| (t.check.as_str(), t.kind.as_str(), t.phases)),
    );
    for t in stored {
        if let Some(code) = &t.failure {
            m.inc(
                "outpost_check_failures_total",
                &[
                    ("check", &t.check),
                    ("region", region),
                    ("code", code_label(code)),
                ],
                1,
            );
        }
    }
    let ack = Ack {
        through_sequence: through,
        stored: outcome.stored,
        duplicates: outcome.duplicates,
    };
    tx.send(Ok(ControllerMessage {
        body: Some(CBody::Ack(ack)),
    }))
    .await
    .map_err(|_| Status::cancelled("probe went away before the ack"))?;
    tracing::debug!(
        through,
        stored = outcome.stored,
        duplicates = outcome.duplicates,
        "batch acknowledged"
    );
    if outcome.dns_changes > 0 && notify_events {
        ctl.wake_delivery();
    }
    // A certificate seen again changes nothing the inventory's evaluation
    // needs before its minute tick; a new one (or a new sighting) may.
    if outcome.new_sightings > 0 {
        ctl.certificates_changed().notify_one();
    }
    // Only a failure, or a pass within `recoveries` of a failure, can
    // change what the rule decides (a region passing longer than that was
    // recovered already; with no alert open a pass cannot fire one). The
    // 1 s tick covers what time alone changes, open alerts included.
    let wanted: BTreeSet<String> = outcome
        .moved
        .into_iter()
        .filter(|(id, passes)| {
            cfg.check(id)
                .is_some_and(|c| *passes <= c.policy.recoveries)
        })
        .map(|(id, _)| id)
        .collect();
    if !wanted.is_empty() {
        ctl.request_evaluation(wanted);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn code_labels_are_bounded() {
        assert_eq!(code_label("timeout"), "timeout");
        assert_eq!(code_label("Bad Code"), "invalid_code");
        assert_eq!(code_label(&"x".repeat(100)), "invalid_code");
    }
}
