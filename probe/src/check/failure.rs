//! Why a check failed: a stable [`FailureCode`] and the [`Failure`] that
//! carries it with its context.
//!
//! The codes are a stable API (alerts, metrics labels, the controller's
//! history are keyed by them): renaming one is a breaking change. They are
//! defined once, in the table of the `failure_codes!` invocation below, with
//! the kind that produces them and a one-line meaning; `FailureCode::ALL`,
//! `as_str`, `FromStr`, `description` and the README's "Failure codes" table
//! (checked by a test) all come from it.

use std::{str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::Value;

macro_rules! failure_codes {
    ($( $variant:ident = $text:literal, $group:literal, $desc:literal; )*) => {
        /// Stable snake_case failure codes. Renaming one is a breaking change.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum FailureCode {
            $(
                #[doc = $desc]
                #[serde(rename = $text)]
                $variant,
            )*
        }

        impl FailureCode {
            /// Every code, in table order.
            pub const ALL: &'static [FailureCode] = &[$(FailureCode::$variant),*];

            /// The stable code string, e.g. `"tls_cert_expired"`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(FailureCode::$variant => $text,)*
                }
            }

            /// What the code means, in one line.
            pub fn description(self) -> &'static str {
                match self {
                    $(FailureCode::$variant => $desc,)*
                }
            }

            /// The check kinds that produce it (`"any"`, `"dns"`, `"http"`,
            /// `"tls"`, `"session"`, or several joined by `", "`).
            pub fn kinds(self) -> &'static str {
                match self {
                    $(FailureCode::$variant => $group,)*
                }
            }
        }

        impl FromStr for FailureCode {
            type Err = UnknownCode;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(FailureCode::$variant),)*
                    other => Err(UnknownCode(other.to_owned())),
                }
            }
        }
    };
}

failure_codes! {
    Timeout = "timeout", "any",
        "The run did not finish within its timeout; the phase it was in is named.";
    InternalError = "internal_error", "any",
        "The check could not be run (a local problem: bad CA file, no sockets).";
    DnsFailure = "dns_failure", "dns, http, tls, tcp, grpc, icmp, flow",
        "The name did not resolve (no addresses, an invalid answer, a resolver error).";
    DnsNxdomain = "dns_nxdomain", "dns, http, tls, tcp, grpc, icmp, flow",
        "A resolver answered NXDOMAIN: the name does not exist.";
    DnsServfail = "dns_servfail", "dns, http, tls, tcp, grpc, icmp, flow",
        "A resolver answered SERVFAIL.";
    DnsRefused = "dns_refused", "dns, http, tls, tcp, grpc, icmp, flow",
        "A resolver answered REFUSED.";
    DnsRcodeMismatch = "dns_rcode_mismatch", "dns, http, tls, tcp, grpc, icmp, flow",
        "A resolver answered another rcode than the expected one.";
    DnsTimeout = "dns_timeout", "dns, http, tls, tcp, grpc, icmp, flow",
        "A resolver did not answer within the check's timeout.";
    DnsTruncated = "dns_truncated", "dns, http, tls, tcp, grpc, icmp, flow",
        "A UDP answer was truncated (TC=1) and the retry over TCP failed.";
    DnsAnswerMismatch = "dns_answer_mismatch", "dns",
        "The records differ from `answers_equal` or lack one of `answers_contain`.";
    DnsCnameMismatch = "dns_cname_mismatch", "dns",
        "The CNAME chain does not end at `cname_target`.";
    DnsTtlOutOfBounds = "dns_ttl_out_of_bounds", "dns",
        "A record's TTL is outside `ttl_min`..`ttl_max`.";
    DnsTooFewAnswers = "dns_too_few_answers", "dns",
        "Fewer records of the asked type than `min_answers`.";
    DnsResolversDisagree = "dns_resolvers_disagree", "dns",
        "Resolvers serve different answer sets (each resolver's set is in the details).";
    DnsPropagationStalled = "dns_propagation_stalled", "dns",
        "A changed answer has not reached every resolver within the old TTL plus `propagation_grace`; the lagging resolvers are named.";
    ConnectionRefused = "connection_refused", "dns, http, tls, session, tcp, grpc, flow",
        "The target (or a resolver's port) refused the TCP connection.";
    ConnectFailure = "connect_failure", "http, tls, session, tcp, grpc, flow",
        "The TCP connection failed for another reason (unreachable, reset).";
    TlsHandshakeFailure = "tls_handshake_failure", "http, tls, session, tcp, grpc, flow",
        "The TLS handshake failed (protocol, alert from the peer).";
    TlsUntrustedRoot = "tls_untrusted_root", "http, tls, session, tcp, grpc, flow",
        "The certificate chain does not lead to a trusted root.";
    TlsCertExpired = "tls_cert_expired", "http, tls, session, tcp, grpc, flow",
        "A certificate on the chain is expired.";
    TlsCertNotYetValid = "tls_cert_not_yet_valid", "http, tls, session, tcp, grpc, flow",
        "A certificate on the chain is not yet valid.";
    TlsNameMismatch = "tls_name_mismatch", "http, tls, session, tcp, grpc, flow",
        "The certificate does not cover the requested name.";
    TlsCertInvalid = "tls_cert_invalid", "http, tls, session, tcp, grpc, flow",
        "The certificate was rejected for another reason.";
    TlsChainIncomplete = "tls_chain_incomplete", "tls",
        "The leaf's issuer is neither presented nor trusted: the server does not send its intermediate (only AIA-fetching clients cope).";
    TlsSelfSigned = "tls_self_signed", "tls",
        "The leaf is self-signed and not trusted.";
    TlsProtocolUnsupported = "tls_protocol_unsupported", "tls",
        "The server refuses the client's protocol versions, or negotiates one below `min_tls_version`.";
    TlsExpiringSoon = "tls_expiring_soon", "tls",
        "A must-pass tls combination starts failing in fewer than its `min_days_left` days.";
    TlsChainHygiene = "tls_chain_hygiene", "tls",
        "The presented chain has hygiene findings and `hygiene = \"fail\"`.";
    ProtocolError = "protocol_error", "http, session, grpc, flow",
        "The peer did not speak HTTP correctly.";
    UnexpectedStatus = "unexpected_status", "http, session, flow",
        "The status was not in the expected set.";
    RedirectNotFollowed = "redirect_not_followed", "http, flow",
        "A redirect was answered where a machine client expects the final response.";
    RedirectDowngrade = "redirect_downgrade", "http, flow",
        "A redirect led from https to plain http (`allow_downgrade = false`).";
    RedirectMethodChanged = "redirect_method_changed", "http, flow",
        "A redirect turned a non-GET request into a GET, dropping its body (301/302 after POST, 303; `allow_method_change = false`).";
    RedirectLoop = "redirect_loop", "http, flow",
        "A redirect revisited a (method, URL) already requested in the chain.";
    RedirectLimit = "redirect_limit", "http, flow",
        "The chain needed more redirects than `max_hops`.";
    RedirectSequenceMismatch = "redirect_sequence_mismatch", "http, flow",
        "The statuses along the chain differ from `redirect_statuses`.";
    RedirectScheme = "redirect_scheme", "http, flow",
        "The final URL of the chain is not https (`require_https = true`).";
    HeaderMismatch = "header_mismatch", "http, session, flow",
        "A response header is missing, present, or has the wrong value.";
    BodyMismatch = "body_mismatch", "http, session, flow",
        "The body does not contain the text or match the pattern.";
    JsonPathMismatch = "json_path_mismatch", "http, session, flow",
        "A JSONPath assertion failed (missing, unequal, out of range, not JSON).";
    DataStale = "data_stale", "http, session, flow",
        "The data's timestamp is older than `freshness.max_age` (or cannot be read).";
    LatencyBudgetExceeded = "latency_budget_exceeded", "http, session, icmp, flow",
        "A phase (or the total) took longer than its `latency` budget.";
    SampleFailureRatio = "sample_failure_ratio", "http",
        "More samples failed than `max_failure_ratio` allows.";
    BackendsPartiallyFailing = "backends_partially_failing", "http",
        "Some but not all addresses of the name fail (`addresses = \"all\"`); each address's own code is in the details (all failing: their code).";
    BodyTooLarge = "body_too_large", "http, session, flow",
        "The body exceeded the read cap (`max_body`).";
    HeadersTooLarge = "headers_too_large", "http, session, flow",
        "The response headers exceeded the cap (`max_header_bytes`).";
    SessionRejectedEarly = "session_rejected_early", "session",
        "A session credential was rejected (401/403) before its declared expiry minus `clock_skew_tolerance`, or right after being issued.";
    SessionRenewalFailed = "session_renewal_failed", "session",
        "Renewing a session failed (refresh or re-login); the old credential stays in use while it is valid.";
    SessionLifetimeChanged = "session_lifetime_changed", "session",
        "A session's declared lifetime differs from the one seen before, or lies outside `lifetime_bounds`.";
    ClockSkew = "clock_skew", "session",
        "The server's clock (`Date`, a fresh JWT's `iat`) is off the probe's by more than `clock_skew_tolerance`.";
    SessionExpired = "session_expired", "session",
        "`renewal = \"never\"`: the session was rejected; it is kept (every later run fails too) until the check's login config changes or its state is reset; the details carry the observed lifetime.";
    SessionLoginFailed = "session_login_failed", "session",
        "No session could be started: the login failed.";
    GrpcNotServing = "grpc_not_serving", "grpc",
        "The health service answered `NOT_SERVING` for the service (or changed to it during `watch_for`).";
    GrpcStatusUnknown = "grpc_status_unknown", "grpc",
        "The health service answered `UNKNOWN` for the service.";
    GrpcServiceUnknown = "grpc_service_unknown", "grpc",
        "The health service does not know the service name (`SERVICE_UNKNOWN`, or `NOT_FOUND` from `Check`).";
    GrpcError = "grpc_error", "grpc",
        "The health RPC failed with another gRPC status (e.g. `UNIMPLEMENTED`: no health service), named with its message.";
    FlowExtractFailed = "flow_extract_failed", "flow",
        "A step's variable could not be extracted from its response (JSONPath selects nothing, header or cookie absent, regex does not match), or a filled-in request is not valid.";
    IcmpPacketLoss = "icmp_packet_loss", "icmp",
        "More echo replies were lost than `max_loss` allows (every one lost included).";
    IcmpNotPermitted = "icmp_not_permitted", "icmp",
        "The probe may open neither an unprivileged ping socket (`net.ipv4.ping_group_range`) nor a raw socket (`CAP_NET_RAW`): a local problem, the fix is named.";
    HeartbeatMissed = "heartbeat_missed", "heartbeat",
        "No success or fail ping within `period + grace` of the last one (or within `grace` of a `/start`); the last ping's time is named.";
    HeartbeatFailed = "heartbeat_failed", "heartbeat",
        "The job pinged `/ping/<id>/fail`: it reported its own failure; the body's excerpt is in the details.";
    TcpExpectMismatch = "tcp_expect_mismatch", "tcp",
        "The bytes received did not match `expect` before the peer closed, `max_read` was reached or the deadline came; what was received is named.";
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of [`FailureCode::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown failure code {0:?}")]
pub struct UnknownCode(pub String);

/// Reads an optional code written by any probe version: a code this build
/// does not know (a newer probe's) reads as `None` instead of failing the
/// whole value. For `#[serde(deserialize_with)]` on wire types.
pub fn lenient_code<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<FailureCode>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.and_then(|s| s.parse().ok()))
}

/// [`lenient_code`] for a list: unknown codes are left out.
pub fn lenient_codes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<FailureCode>, D::Error> {
    let v: Vec<String> = Vec::deserialize(d)?;
    Ok(v.iter().filter_map(|s| s.parse().ok()).collect())
}

/// The phase a run or a hop was in when it failed or ran out of time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Resolving a host name.
    Dns,
    /// TCP connect.
    #[default]
    Connect,
    /// TLS handshake.
    Tls,
    /// Waiting for the response head.
    FirstByte,
    /// Reading the body.
    Body,
    /// Sending a tcp script step.
    Send,
    /// The run as a whole (a kind's own deadline did not fire).
    Run,
}

impl Phase {
    /// The name used in messages and a hop's `timeout_phase`: `"dns"`,
    /// `"connect"`, `"tls"`, `"first byte"`, `"body"`, `"send"`, `"run"`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Dns => "dns",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::FirstByte => "first byte",
            Phase::Body => "body",
            Phase::Send => "send",
            Phase::Run => "run",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a check failed: one variant per [`FailureCode`], each carrying the
/// context its message is rendered from (`Display`), plus a few wrappers
/// that add where it happened (a hop, a sample) or group several failures
/// (backends, resolvers, combinations) and take the code of the first.
///
/// A target being down is a `Failure` (data), not an error of ours. Tests and
/// the controller read [`Failure::code`] and the context, never the text.
/// Serialized (for logs and tooling) as `{"type": "<variant>", …context}`;
/// the wire to the controller carries [`Failure::code`] and the rendered
/// message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Failure {
    /// `timeout`: the check's timeout ran out.
    Timeout {
        /// What was in progress.
        phase: Phase,
        /// The timeout that ran out.
        #[serde(rename = "after_ms", with = "crate::human::ms")]
        after: Duration,
        /// What was being waited on (a host, an `ip:port`, a URL's authority).
        target: Option<String>,
    },
    /// `internal_error`: the check could not be run (a local problem).
    InternalError {
        /// What went wrong here.
        reason: String,
    },
    /// `dns_failure`: a name did not resolve.
    DnsFailure {
        /// The name asked for.
        name: String,
        /// The resolver asked (`"system"`, `"udp://…"`), when one was.
        resolver: Option<String>,
        /// Why: no addresses, an invalid answer, a resolver error.
        reason: String,
    },
    /// `dns_nxdomain`: the name does not exist.
    DnsNxdomain {
        /// The name asked for, with the type when a dns check asked (`"www.example.net A"`).
        name: String,
        /// The resolver that answered.
        resolver: Option<String>,
        /// The rcode the check expected (dns checks), e.g. `"NOERROR"`.
        expected: Option<String>,
    },
    /// `dns_servfail`: the resolver failed to answer.
    DnsServfail {
        /// The name asked for (and the type, for dns checks).
        name: String,
        /// The resolver that answered.
        resolver: Option<String>,
        /// The rcode the check expected.
        expected: Option<String>,
    },
    /// `dns_refused`: the resolver refused to answer.
    DnsRefused {
        /// The name asked for (and the type, for dns checks).
        name: String,
        /// The resolver that answered.
        resolver: Option<String>,
        /// The rcode the check expected.
        expected: Option<String>,
    },
    /// `dns_rcode_mismatch`: another rcode than the expected one.
    DnsRcodeMismatch {
        /// The name asked for (and the type, for dns checks).
        name: String,
        /// The resolver that answered.
        resolver: Option<String>,
        /// The rcode answered, e.g. `"NOERROR"` where NXDOMAIN was expected.
        got: String,
        /// The rcode expected.
        expected: Option<String>,
    },
    /// `dns_timeout`: no answer in time.
    DnsTimeout {
        /// The name asked for.
        name: String,
        /// The resolver that stayed silent (none: every resolver).
        resolver: Option<String>,
        /// The timeout, when the check's own deadline ran out.
        #[serde(rename = "after_ms", with = "crate::human::ms::option")]
        after: Option<Duration>,
    },
    /// `dns_truncated`: TC=1 over UDP and the TCP retry failed.
    DnsTruncated {
        /// The resolver.
        resolver: String,
        /// Why the TCP retry failed.
        error: String,
    },
    /// `dns_answer_mismatch`: the records differ from `answers_equal`, or
    /// lack one of `answers_contain`.
    DnsAnswerMismatch {
        /// The resolver.
        resolver: String,
        /// The question, `"name TYPE"`.
        query: String,
        /// The records of the asked type answered (canonical data, sorted).
        got: Vec<String>,
        /// `answers_equal`, or `answers_contain`.
        expected: Vec<String>,
        /// True for `answers_equal` (the exact set), false for `answers_contain`.
        exact: bool,
    },
    /// `dns_cname_mismatch`: the CNAME chain does not end at `cname_target`.
    DnsCnameMismatch {
        /// The resolver.
        resolver: String,
        /// The name asked for.
        name: String,
        /// Where the chain ends (none: no CNAME at all).
        got: Option<String>,
        /// `cname_target`.
        expected: String,
    },
    /// `dns_ttl_out_of_bounds`: a record's TTL is outside `ttl_min`..`ttl_max`.
    DnsTtlOutOfBounds {
        /// The resolver.
        resolver: String,
        /// The record, `"owner TYPE data"`.
        record: String,
        /// Its TTL, seconds.
        ttl: u32,
        /// `ttl_min`, seconds.
        ttl_min: Option<u32>,
        /// `ttl_max`, seconds.
        ttl_max: Option<u32>,
    },
    /// `dns_too_few_answers`: fewer records of the asked type than `min_answers`.
    DnsTooFewAnswers {
        /// The resolver.
        resolver: String,
        /// The question, `"name TYPE"`.
        query: String,
        /// Records of the asked type answered.
        got: usize,
        /// `min_answers`.
        min: usize,
    },
    /// `dns_resolvers_disagree`: resolvers serve different answer sets.
    DnsResolversDisagree {
        /// The question, `"name TYPE"`.
        query: String,
        /// The resolvers grouped by what they serve.
        views: Vec<AnswerView>,
    },
    /// `dns_propagation_stalled`: a change has not reached every resolver
    /// within the old TTL plus `propagation_grace`.
    DnsPropagationStalled {
        /// The resolver that changed first.
        leader: String,
        /// The answer set before the change (short form).
        old: String,
        /// The answer set the others should reach.
        new: String,
        /// Time since the change was first seen.
        #[serde(rename = "lagging_for_ms", with = "crate::human::ms")]
        lagging_for: Duration,
        /// Old TTL plus grace.
        #[serde(rename = "window_ms", with = "crate::human::ms")]
        window: Duration,
        /// The resolvers still serving something else, and what.
        lagging: Box<[AnswerView]>,
    },
    /// `connection_refused`: the TCP connection was refused.
    ConnectionRefused {
        /// The `ip:port` (or resolver) that refused.
        address: String,
    },
    /// `connect_failure`: the TCP connection failed otherwise.
    ConnectFailure {
        /// The `ip:port` connected to.
        address: String,
        /// The operating system's error.
        error: String,
    },
    /// `tls_handshake_failure`: the TLS handshake failed.
    TlsHandshakeFailure {
        /// The tls check's client profile that made it (`"tls12"`), if any.
        client: Option<String>,
        /// What happened (an alert from the peer, an incompatibility).
        reason: String,
    },
    /// `tls_untrusted_root`: the chain does not lead to a trusted root.
    TlsUntrustedRoot {
        /// The trust store (tls checks).
        store: Option<String>,
        /// Where the served chain ends.
        served_end: Option<ServedEnd>,
        /// No path of the presented certificates leads to a root of the
        /// store at all, whatever the dates: alternate chains would not help
        /// (false: a client that tries them may find one).
        no_path: bool,
    },
    /// `tls_cert_expired`: a certificate on the chain is expired.
    TlsCertExpired {
        /// The certificate (short name), when known.
        cert: Option<String>,
        /// Its notAfter, RFC 3339.
        not_after: Option<String>,
        /// The trust store every path to which has expired (tls checks).
        store: Option<String>,
        /// Only the served path was tried (legacy clients).
        served_path_only: bool,
    },
    /// `tls_cert_not_yet_valid`: a certificate on the chain is not yet valid.
    TlsCertNotYetValid {
        /// The certificate (short name), when known.
        cert: Option<String>,
        /// Its notBefore, RFC 3339.
        not_before: Option<String>,
        /// Only the served path was tried (legacy clients).
        served_path_only: bool,
    },
    /// `tls_name_mismatch`: the certificate does not cover the name.
    TlsNameMismatch {
        /// The name asked for.
        name: Option<String>,
        /// The names the certificate covers, when known.
        presented: Vec<String>,
    },
    /// `tls_cert_invalid`: the certificate was rejected otherwise.
    TlsCertInvalid {
        /// Why.
        reason: String,
    },
    /// `tls_chain_incomplete`: the leaf's issuer is neither presented nor trusted.
    TlsChainIncomplete {
        /// The leaf's issuer (its DN).
        leaf_issuer: String,
        /// The trust store.
        store: String,
    },
    /// `tls_self_signed`: the leaf is self-signed and not trusted.
    TlsSelfSigned {
        /// The leaf (short name).
        leaf: String,
        /// The trust store.
        store: String,
    },
    /// `tls_protocol_unsupported`: the server refuses the client's versions,
    /// or negotiates one below `min_tls_version`.
    TlsProtocolUnsupported {
        /// The client profile (`"default"`, `"tls12"`…).
        client: String,
        /// The version negotiated (`"1.2"`), when the handshake completed.
        negotiated: Option<String>,
        /// `min_tls_version`, when that is what failed.
        min_tls_version: Option<String>,
        /// The handshake error, when the server refused.
        reason: Option<String>,
    },
    /// `tls_expiring_soon`: must-pass combinations fail in fewer than their
    /// `min_days_left` days.
    TlsExpiringSoon {
        /// Each such combination.
        combinations: Vec<ExpiringCombination>,
    },
    /// `tls_chain_hygiene`: hygiene findings with `hygiene = "fail"`.
    TlsChainHygiene {
        /// The findings.
        findings: Vec<crate::check::tls::hygiene::Finding>,
    },
    /// `protocol_error`: the peer did not speak HTTP correctly.
    ProtocolError {
        /// What was wrong.
        problem: ProtocolProblem,
    },
    /// `unexpected_status`: the status is not in the expected set.
    UnexpectedStatus {
        /// The status answered.
        got: u16,
        /// The expected set, e.g. `"2xx"` or `"200, 204"`.
        expected: String,
        /// Who answered, when not the checked URL itself (`"the token endpoint"`).
        responder: Option<String>,
        /// The OAuth2 `error` code of the body (RFC 6749 §5.2).
        oauth_error: Option<String>,
        /// A 401/403 listed in `expected_status` that still rejected the session.
        session_rejected: bool,
    },
    /// `redirect_not_followed`: a redirect where the final response was expected.
    RedirectNotFollowed {
        /// The redirect status.
        status: u16,
        /// Its Location, resolved.
        location: String,
        /// The expected set.
        expected: String,
    },
    /// `redirect_downgrade`: https redirected to plain http.
    RedirectDowngrade {
        /// The hop that answered (1-based).
        hop: usize,
        /// Its URL.
        url: String,
        /// The redirect status.
        status: u16,
        /// The http URL it pointed to.
        location: String,
    },
    /// `redirect_method_changed`: a redirect turned the method into GET.
    RedirectMethodChanged {
        /// The hop that answered (1-based).
        hop: usize,
        /// Its URL.
        url: String,
        /// The redirect status.
        status: u16,
        /// The method sent.
        from: String,
        /// The method the redirect turns it into.
        to: String,
    },
    /// `redirect_loop`: a (method, URL) requested twice.
    RedirectLoop {
        /// The hop that answered (1-based).
        hop: usize,
        /// Its URL.
        url: String,
        /// The redirect status.
        status: u16,
        /// The method of the repeated request.
        method: String,
        /// The URL already requested.
        location: String,
    },
    /// `redirect_limit`: more redirects than `max_hops`.
    RedirectLimit {
        /// `max_hops`.
        max_hops: u32,
        /// The hop that answered (1-based).
        hop: usize,
        /// Its URL.
        url: String,
        /// The redirect status.
        status: u16,
        /// Where it pointed.
        location: String,
    },
    /// `redirect_sequence_mismatch`: the statuses differ from `redirect_statuses`.
    RedirectSequenceMismatch {
        /// The statuses along the chain.
        got: Vec<u16>,
        /// `redirect_statuses`.
        expected: Vec<u16>,
    },
    /// `redirect_scheme`: the final URL is not https.
    RedirectScheme {
        /// The final URL.
        url: String,
    },
    /// `header_mismatch`: a response header is missing, present or wrong.
    HeaderMismatch {
        /// The header name.
        header: String,
        /// What was expected.
        expected: HeaderExpectation,
        /// Its values (empty: absent).
        got: Vec<String>,
    },
    /// `body_mismatch`: the body lacks the text or the pattern.
    BodyMismatch {
        /// Body bytes read.
        body_bytes: usize,
        /// What was expected.
        expected: BodyExpectation,
    },
    /// `json_path_mismatch`: a JSONPath assertion failed.
    JsonPathMismatch {
        /// The JSONPath as written (`"$"` for the document).
        path: String,
        /// What was wrong.
        problem: JsonProblem,
        /// The response, when not the checked one (`"the token response"`).
        response: Option<&'static str>,
    },
    /// `data_stale`: the data is older than `max_age`, or its age is unknown.
    DataStale {
        /// Where the timestamp is (`"$.updated_at"`, `"last-modified"`).
        at: String,
        /// What was found.
        problem: Staleness,
    },
    /// `latency_budget_exceeded`: a phase took longer than its budget.
    LatencyBudgetExceeded {
        /// The phase (`"total"`, `"first_byte"`, `"tls"`, `"connect"`, `"dns"`).
        phase: String,
        /// What it took.
        #[serde(rename = "took_ms", with = "crate::human::ms")]
        took: Duration,
        /// The budget.
        #[serde(rename = "budget_ms", with = "crate::human::ms")]
        budget: Duration,
    },
    /// `sample_failure_ratio`: more samples failed than `max_failure_ratio`.
    SampleFailureRatio {
        /// Samples failed.
        failed: usize,
        /// Samples asked for.
        total: usize,
        /// `max_failure_ratio`.
        max_failure_ratio: f64,
        /// `(total, failed)` per backend (or address).
        by_backend: Vec<BackendCount>,
        /// The first failing sample's failure.
        first: Option<Box<Failure>>,
    },
    /// `body_too_large`: the body exceeded `max_body`.
    BodyTooLarge {
        /// `max_body`, bytes.
        max_body: usize,
        /// The length the response announced (`Content-Length`), when that
        /// is what exceeded the cap (nothing was read); `None`: the bytes read did.
        content_length: Option<u64>,
    },
    /// `headers_too_large`: the response head exceeded `max_header_bytes`.
    HeadersTooLarge {
        /// `max_header_bytes`.
        max_header_bytes: usize,
    },
    /// `session_rejected_early`: a credential was rejected before its time.
    SessionRejectedEarly {
        /// The status (401 or 403).
        status: u16,
        /// Which rule it broke.
        rejection: Rejection,
    },
    /// `session_renewal_failed`: renewing the session failed.
    SessionRenewalFailed {
        /// How.
        renewal: RenewalFailure,
    },
    /// `session_lifetime_changed`: the declared lifetime changed or is out of bounds.
    SessionLifetimeChanged {
        /// The lifetime now declared.
        #[serde(rename = "declared_ms", with = "crate::human::ms")]
        declared: Duration,
        /// The one declared before (a change), if that is what failed.
        #[serde(rename = "previous_ms", with = "crate::human::ms::option")]
        previous: Option<Duration>,
        /// Where the lifetime came from (`expires_in`, `jwt_exp`…).
        expiry_source: String,
        /// `lifetime_bounds.min`.
        #[serde(rename = "min_ms", with = "crate::human::ms::option")]
        min: Option<Duration>,
        /// `lifetime_bounds.max`.
        #[serde(rename = "max_ms", with = "crate::human::ms::option")]
        max: Option<Duration>,
    },
    /// `clock_skew`: the server's clock is off the probe's.
    ClockSkew {
        /// How far off.
        #[serde(rename = "offset_ms", with = "crate::human::ms")]
        offset: Duration,
        /// True when the server is ahead.
        ahead: bool,
        /// `"Date header"` or `"JWT iat"`.
        via: String,
        /// `clock_skew_tolerance`.
        #[serde(rename = "tolerance_ms", with = "crate::human::ms")]
        tolerance: Duration,
    },
    /// `session_expired`: `renewal = "never"` and the session was rejected.
    SessionExpired {
        /// The status (401 or 403).
        status: u16,
        /// Time from login to the rejection: the observed lifetime.
        #[serde(rename = "age_ms", with = "crate::human::ms")]
        age: Duration,
        /// The declared lifetime, when there was one.
        #[serde(rename = "declared_lifetime_ms", with = "crate::human::ms::option")]
        declared_lifetime: Option<Duration>,
        /// How long before the declared expiry it came, when early.
        #[serde(rename = "before_expiry_ms", with = "crate::human::ms::option")]
        before_expiry: Option<Duration>,
        /// The session had been rejected by an earlier run and was kept.
        #[serde(default)]
        kept: bool,
    },
    /// `session_login_failed`: no session could be started.
    SessionLoginFailed {
        /// Why the login failed.
        failure: Box<Failure>,
    },
    /// `grpc_not_serving`: the service is `NOT_SERVING`.
    GrpcNotServing {
        /// The service name (`""`: the server).
        service: String,
        /// When a `Watch` changed to it, the time since the stream opened.
        #[serde(rename = "after_ms", with = "crate::human::ms::option")]
        after: Option<Duration>,
    },
    /// `grpc_status_unknown`: the service's status is `UNKNOWN`.
    GrpcStatusUnknown {
        /// The service name.
        service: String,
        /// When a `Watch` changed to it.
        #[serde(rename = "after_ms", with = "crate::human::ms::option")]
        after: Option<Duration>,
    },
    /// `grpc_service_unknown`: the service name is not registered.
    GrpcServiceUnknown {
        /// The service name.
        service: String,
        /// When a `Watch` changed to it.
        #[serde(rename = "after_ms", with = "crate::human::ms::option")]
        after: Option<Duration>,
    },
    /// `grpc_error`: the RPC failed with a gRPC status.
    GrpcError {
        /// The status code, e.g. `"UNIMPLEMENTED"`.
        code: String,
        /// Its message (clipped).
        message: String,
    },
    /// `flow_extract_failed`: a flow step's variable could not be taken
    /// from its response, or a request is invalid once filled in.
    FlowExtractFailed {
        /// The variable (empty when filling in a request failed).
        variable: String,
        /// From where (`"$.id"`, `"header location"`, `"the url"`).
        from: String,
        /// What went wrong.
        problem: String,
    },
    /// `icmp_packet_loss`: more replies lost than `max_loss`.
    IcmpPacketLoss {
        /// Replies lost (requests the deadline kept from being sent included).
        lost: u32,
        /// Requests asked for.
        count: u32,
        /// `max_loss`.
        max_loss: f64,
    },
    /// `icmp_not_permitted`: no echo socket may be opened here.
    IcmpNotPermitted {
        /// Why the ping socket failed, when one was tried.
        dgram: Option<String>,
        /// Why the raw socket failed, when one was tried.
        raw: Option<String>,
    },
    /// `heartbeat_missed`: no ping in time.
    HeartbeatMissed {
        /// Silence since the last success or fail ping (or the `/start`).
        #[serde(rename = "silent_ms", with = "crate::human::ms")]
        silent: Duration,
        /// The allowance that ran out, counted from the last ping: `period +
        /// grace`, the time to the next scheduled run `+ grace` for a
        /// `schedule`, or `grace` after a `/start`.
        #[serde(rename = "allowed_ms", with = "crate::human::ms")]
        allowed: Duration,
        /// True when a `/start` came and neither success nor fail followed.
        running: bool,
    },
    /// `heartbeat_failed`: the job reported failure (`/fail`).
    HeartbeatFailed {
        /// The first line of the body, clipped (empty when none).
        excerpt: String,
    },
    /// `tcp_expect_mismatch`: the bytes received did not match `expect`.
    TcpExpectMismatch {
        /// The script step (1-based).
        step: usize,
        /// The pattern.
        expect: String,
        /// What was received, escaped and clipped.
        received: String,
        /// Bytes received by the step.
        received_bytes: usize,
        /// How the read ended.
        end: ReadEnd,
    },
    /// Wrapper: `failure` happened on a later hop of a redirect chain.
    OnHop {
        /// The hop (1-based).
        hop: usize,
        /// Its URL.
        url: String,
        /// What happened there.
        failure: Box<Failure>,
    },
    /// Wrapper: `failure` happened in step `step` of a flow.
    OnStep {
        /// The step (1-based).
        step: usize,
        /// Its name.
        name: String,
        /// What happened there.
        failure: Box<Failure>,
    },
    /// Wrapper: `failure` ended sample `sample` of `of` (a timeout: the
    /// remaining samples were not run).
    Sample {
        /// The sample (1-based).
        sample: usize,
        /// Samples asked for.
        of: usize,
        /// What happened.
        failure: Box<Failure>,
    },
    /// Wrapper: backends (addresses) of one name failing. Some but not all
    /// failing is `backends_partially_failing` (half the pool down is not the
    /// service down); every one failing takes the first's code (the codes
    /// agree when the service is down; the message lists each).
    Backends {
        /// Addresses tried.
        total: usize,
        /// The failing ones, in address order.
        failing: Vec<AddressFailure>,
    },
    /// Wrapper: several resolvers failing; the code is the first's (config order).
    Resolvers {
        /// The failing ones, in config order.
        failing: Vec<ResolverFailure>,
    },
    /// Wrapper: must-pass tls combinations failing; the code is the first's.
    Combinations {
        /// Must-pass combinations.
        must_pass: usize,
        /// The failing ones, in matrix order.
        failing: Vec<CombinationFailure>,
    },
    /// Wrapper: the deciding failure and the codes of the others found in
    /// the same run (session findings).
    Also {
        /// The deciding failure.
        failure: Box<Failure>,
        /// The other findings' codes.
        also: Vec<FailureCode>,
    },
    /// A failure whose message named a credential: the context is dropped
    /// and only the code and the scrubbed message are kept.
    Redacted {
        /// The code.
        code: FailureCode,
        /// The message, credential values replaced by `**REDACTED**`.
        message: String,
    },
}

/// Resolvers serving one answer set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnswerView {
    /// The resolvers.
    pub resolvers: Vec<String>,
    /// What they serve, short (`"[CNAME → blue.example.net 192.0.2.10]"`, `"NXDOMAIN"`).
    pub serving: String,
}

/// Where a served chain ended for a client that only follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum ServedEnd {
    /// At a self-signed certificate that is not trusted.
    SelfSigned {
        /// The certificate (short name).
        cert: String,
    },
    /// At a certificate whose issuer is neither served nor trusted.
    MissingIssuer {
        /// The certificate (display name).
        cert: String,
        /// Its issuer (DN).
        issuer: String,
    },
}

/// A must-pass combination close to failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiringCombination {
    /// `"profile/store"`.
    pub combination: String,
    /// RFC 3339 date it starts failing.
    pub fails_from: String,
    /// Whole days left.
    pub days_left: i64,
    /// The minimum asserted.
    pub min_days_left: u32,
}

/// How a tcp `expect` read ended without a match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum ReadEnd {
    /// The peer closed the connection.
    Closed,
    /// `max_read` bytes came without a match.
    Limit {
        /// `max_read`.
        max_read: usize,
    },
    /// The check's deadline came first.
    Deadline {
        /// The timeout.
        #[serde(rename = "after_ms", with = "crate::human::ms")]
        after: Duration,
    },
}

/// What was wrong with the HTTP exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProtocolProblem {
    /// `http_version = "http2"` but ALPN did not give h2.
    H2Refused,
    /// The peer answered with something that is not HTTP at all (a banner,
    /// TLS records, binary bytes): the wrong port or scheme.
    NotHttp {
        /// What it sent: a quoted first line, "a TLS handshake record …",
        /// or "binary data starting 00 ff …".
        sent: String,
    },
    /// The response could not be parsed.
    InvalidResponse {
        /// hyper's error.
        error: String,
    },
    /// The connection closed before the response was complete.
    Incomplete,
    /// Another connection or protocol error.
    Other {
        /// hyper's error and its causes.
        error: String,
    },
    /// A Location header that is not valid text.
    LocationNotText {
        /// The redirect status.
        status: u16,
    },
    /// A redirect to something other than an absolute http(s) URL.
    LocationNotHttp {
        /// The redirect status.
        status: u16,
        /// The Location, resolved.
        location: String,
    },
}

/// What a header assertion expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum HeaderExpectation {
    /// The header is present.
    Present,
    /// The header is absent.
    Absent,
    /// A value equals this.
    Equals {
        /// The value.
        value: String,
    },
    /// A value matches this regex.
    Matches {
        /// The pattern.
        pattern: String,
    },
    /// The response sets a cookie (of this name).
    Cookie {
        /// The cookie's name (none: any cookie).
        name: Option<String>,
    },
}

/// What a body assertion expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum BodyExpectation {
    /// `body_contains`.
    Contains {
        /// The text.
        text: String,
    },
    /// `body_matches`.
    Matches {
        /// The pattern.
        pattern: String,
    },
}

/// What a JSONPath assertion found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum JsonProblem {
    /// The body is not JSON.
    NotJson {
        /// The parser's error.
        error: Option<String>,
    },
    /// The path selects nothing.
    Nothing {
        /// The value expected there, if any.
        expected: Option<Value>,
    },
    /// `exists = false`, but the path selects nodes.
    Present {
        /// Nodes selected.
        count: usize,
    },
    /// The selected value is not the expected one.
    NotEqual {
        /// The value found (clipped).
        actual: Value,
        /// The value expected.
        expected: Value,
    },
    /// The value is not a number within the bounds (`actual` null: nothing selected).
    OutOfRange {
        /// The value found (clipped).
        actual: Value,
        /// `greater_than`.
        greater_than: Option<f64>,
        /// `less_than`.
        less_than: Option<f64>,
    },
    /// No non-empty string there (a token).
    NotAString,
    /// Not a number of seconds.
    NotSeconds,
    /// Not a timestamp with a zone.
    NotTimestamp,
    /// Another problem with the value.
    Invalid {
        /// Why.
        reason: String,
    },
}

/// What a freshness assertion found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Staleness {
    /// The data is older than `max_age`.
    Old {
        /// Its age.
        #[serde(rename = "age_ms", with = "crate::human::ms")]
        age: Duration,
        /// The timestamp, RFC 3339.
        timestamp: String,
        /// `max_age`.
        #[serde(rename = "max_age_ms", with = "crate::human::ms")]
        max_age: Duration,
    },
    /// No timestamp there.
    Missing,
    /// The value is not a timestamp.
    Unparseable {
        /// The value, as JSON text (truncated).
        value: String,
    },
    /// The body is not JSON.
    NotJson {
        /// The parser's error.
        error: Option<String>,
    },
}

/// Samples of one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendCount {
    /// The `backend_header` value, or the address.
    pub backend: String,
    /// Samples.
    pub total: usize,
    /// Failed samples.
    pub failed: usize,
}

/// How a session credential was rejected too early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rejection {
    /// Before its declared expiry minus the tolerance.
    BeforeExpiry {
        /// Time since issuance.
        #[serde(rename = "age_ms", with = "crate::human::ms")]
        age: Duration,
        /// Time left before the declared expiry.
        #[serde(rename = "left_ms", with = "crate::human::ms")]
        left: Duration,
        /// The declared lifetime.
        #[serde(rename = "declared_lifetime_ms", with = "crate::human::ms::option")]
        declared_lifetime: Option<Duration>,
        /// `clock_skew_tolerance`.
        #[serde(rename = "tolerance_ms", with = "crate::human::ms")]
        tolerance: Duration,
    },
    /// A credential issued (or renewed) in this very run.
    Fresh {
        /// Renewed rather than issued by a first login.
        renewed: bool,
    },
    /// A credential from the re-login after a rejection.
    AfterRelogin,
}

/// How renewing a session failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum RenewalFailure {
    /// The refresh failed; a new login worked.
    RefreshFailed {
        /// Why the refresh failed.
        refresh: Box<Failure>,
    },
    /// Renewal failed altogether.
    Failed {
        /// Consecutive failed attempts, this one included.
        attempt: u32,
        /// Why the refresh failed, when one was tried.
        refresh: Option<Box<Failure>>,
        /// Why the login failed.
        login: Box<Failure>,
        /// When the previous credential expires (or expired), RFC 3339.
        previous_expires_at: Option<String>,
        /// The previous credential has expired: protected calls were skipped.
        previous_expired: bool,
    },
    /// Logging in again after a rejection failed.
    Relogin {
        /// The rejection's status.
        status: u16,
        /// Why the login failed.
        login: Box<Failure>,
    },
}

/// One failing address of a name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AddressFailure {
    /// `ip:port`.
    pub address: String,
    /// What failed there.
    pub failure: Failure,
}

/// One failing resolver.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolverFailure {
    /// The resolver.
    pub resolver: String,
    /// What failed there.
    pub failure: Failure,
}

/// One failing tls combination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CombinationFailure {
    /// `"profile/store"`.
    pub combination: String,
    /// Why it fails.
    pub failure: Failure,
}

impl Failure {
    /// The stable code.
    pub fn code(&self) -> FailureCode {
        use FailureCode as C;
        match self {
            Failure::Timeout { .. } => C::Timeout,
            Failure::InternalError { .. } => C::InternalError,
            Failure::DnsFailure { .. } => C::DnsFailure,
            Failure::DnsNxdomain { .. } => C::DnsNxdomain,
            Failure::DnsServfail { .. } => C::DnsServfail,
            Failure::DnsRefused { .. } => C::DnsRefused,
            Failure::DnsRcodeMismatch { .. } => C::DnsRcodeMismatch,
            Failure::DnsTimeout { .. } => C::DnsTimeout,
            Failure::DnsTruncated { .. } => C::DnsTruncated,
            Failure::DnsAnswerMismatch { .. } => C::DnsAnswerMismatch,
            Failure::DnsCnameMismatch { .. } => C::DnsCnameMismatch,
            Failure::DnsTtlOutOfBounds { .. } => C::DnsTtlOutOfBounds,
            Failure::DnsTooFewAnswers { .. } => C::DnsTooFewAnswers,
            Failure::DnsResolversDisagree { .. } => C::DnsResolversDisagree,
            Failure::DnsPropagationStalled { .. } => C::DnsPropagationStalled,
            Failure::ConnectionRefused { .. } => C::ConnectionRefused,
            Failure::ConnectFailure { .. } => C::ConnectFailure,
            Failure::TlsHandshakeFailure { .. } => C::TlsHandshakeFailure,
            Failure::TlsUntrustedRoot { .. } => C::TlsUntrustedRoot,
            Failure::TlsCertExpired { .. } => C::TlsCertExpired,
            Failure::TlsCertNotYetValid { .. } => C::TlsCertNotYetValid,
            Failure::TlsNameMismatch { .. } => C::TlsNameMismatch,
            Failure::TlsCertInvalid { .. } => C::TlsCertInvalid,
            Failure::TlsChainIncomplete { .. } => C::TlsChainIncomplete,
            Failure::TlsSelfSigned { .. } => C::TlsSelfSigned,
            Failure::TlsProtocolUnsupported { .. } => C::TlsProtocolUnsupported,
            Failure::TlsExpiringSoon { .. } => C::TlsExpiringSoon,
            Failure::TlsChainHygiene { .. } => C::TlsChainHygiene,
            Failure::ProtocolError { .. } => C::ProtocolError,
            Failure::UnexpectedStatus { .. } => C::UnexpectedStatus,
            Failure::RedirectNotFollowed { .. } => C::RedirectNotFollowed,
            Failure::RedirectDowngrade { .. } => C::RedirectDowngrade,
            Failure::RedirectMethodChanged { .. } => C::RedirectMethodChanged,
            Failure::RedirectLoop { .. } => C::RedirectLoop,
            Failure::RedirectLimit { .. } => C::RedirectLimit,
            Failure::RedirectSequenceMismatch { .. } => C::RedirectSequenceMismatch,
            Failure::RedirectScheme { .. } => C::RedirectScheme,
            Failure::HeaderMismatch { .. } => C::HeaderMismatch,
            Failure::BodyMismatch { .. } => C::BodyMismatch,
            Failure::JsonPathMismatch { .. } => C::JsonPathMismatch,
            Failure::DataStale { .. } => C::DataStale,
            Failure::LatencyBudgetExceeded { .. } => C::LatencyBudgetExceeded,
            Failure::SampleFailureRatio { .. } => C::SampleFailureRatio,
            Failure::BodyTooLarge { .. } => C::BodyTooLarge,
            Failure::HeadersTooLarge { .. } => C::HeadersTooLarge,
            Failure::SessionRejectedEarly { .. } => C::SessionRejectedEarly,
            Failure::SessionRenewalFailed { .. } => C::SessionRenewalFailed,
            Failure::SessionLifetimeChanged { .. } => C::SessionLifetimeChanged,
            Failure::ClockSkew { .. } => C::ClockSkew,
            Failure::SessionExpired { .. } => C::SessionExpired,
            Failure::SessionLoginFailed { .. } => C::SessionLoginFailed,
            Failure::TcpExpectMismatch { .. } => C::TcpExpectMismatch,
            Failure::HeartbeatMissed { .. } => C::HeartbeatMissed,
            Failure::HeartbeatFailed { .. } => C::HeartbeatFailed,
            Failure::GrpcNotServing { .. } => C::GrpcNotServing,
            Failure::GrpcStatusUnknown { .. } => C::GrpcStatusUnknown,
            Failure::GrpcServiceUnknown { .. } => C::GrpcServiceUnknown,
            Failure::GrpcError { .. } => C::GrpcError,
            Failure::IcmpPacketLoss { .. } => C::IcmpPacketLoss,
            Failure::FlowExtractFailed { .. } => C::FlowExtractFailed,
            Failure::IcmpNotPermitted { .. } => C::IcmpNotPermitted,
            Failure::OnHop { failure, .. }
            | Failure::OnStep { failure, .. }
            | Failure::Sample { failure, .. }
            | Failure::Also { failure, .. } => failure.code(),
            Failure::Backends { total, failing } => match failing.first() {
                None => C::InternalError,
                Some(_) if failing.len() < *total => C::BackendsPartiallyFailing,
                Some(f) => f.failure.code(),
            },
            Failure::Resolvers { failing } => failing
                .first()
                .map_or(C::InternalError, |f| f.failure.code()),
            Failure::Combinations { failing, .. } => failing
                .first()
                .map_or(C::InternalError, |f| f.failure.code()),
            Failure::Redacted { code, .. } => *code,
        }
    }

    /// The rendered message (the same as `to_string()`).
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The failure without its wrappers (hop, sample, also…): the one that
    /// names the cause. Groups (backends, resolvers, combinations) give
    /// their first member's, except a partial backend failure, which is its
    /// own cause (the group's code is not any member's).
    pub fn cause(&self) -> &Failure {
        match self {
            Failure::OnHop { failure, .. }
            | Failure::OnStep { failure, .. }
            | Failure::Sample { failure, .. }
            | Failure::Also { failure, .. } => failure.cause(),
            Failure::Backends { total, failing } if failing.len() == *total => {
                failing.first().map_or(self, |f| f.failure.cause())
            }
            Failure::Resolvers { failing } => failing.first().map_or(self, |f| f.failure.cause()),
            Failure::Combinations { failing, .. } => {
                failing.first().map_or(self, |f| f.failure.cause())
            }
            other => other,
        }
    }

    /// The same failure with each credential value of `secrets` that its
    /// message contains replaced: [`Failure::Redacted`] when there was one
    /// (the context held it), else unchanged.
    pub fn scrubbed(self, scrub: impl Fn(&str) -> String) -> Failure {
        let message = self.to_string();
        let clean = scrub(&message);
        if clean == message {
            self
        } else {
            Failure::Redacted {
                code: self.code(),
                message: clean,
            }
        }
    }
}

fn opt<'a>(v: &'a Option<String>, or: &'a str) -> &'a str {
    v.as_deref().unwrap_or(or)
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

fn bounds(greater_than: Option<f64>, less_than: Option<f64>) -> String {
    match (greater_than, less_than) {
        (Some(g), Some(l)) => format!("> {g} and < {l}"),
        (Some(g), None) => format!("> {g}"),
        (None, Some(l)) => format!("< {l}"),
        (None, None) => String::new(),
    }
}

fn rcode_text(
    f: &mut std::fmt::Formatter<'_>,
    rcode: &str,
    why: &str,
    name: &str,
    resolver: &Option<String>,
    expected: &Option<String>,
) -> std::fmt::Result {
    match resolver {
        Some(r) => write!(f, "{r} answered {rcode} for {name} ({why})")?,
        None => write!(f, "{rcode} for {name} ({why})")?,
    }
    match expected {
        Some(e) => write!(f, ", expected {e}"),
        None => Ok(()),
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::{config::Dur, human::duration as h};
        match self {
            Failure::Timeout {
                phase: Phase::Run,
                after,
                target,
            } => match target {
                Some(t) => write!(f, "the run against {t} did not finish within {}", h(*after)),
                None => write!(f, "the run did not finish within {}", h(*after)),
            },
            Failure::Timeout {
                phase,
                after,
                target,
            } => {
                write!(f, "timed out after {} waiting for {phase}", h(*after))?;
                match (phase, target) {
                    (Phase::Dns, Some(t)) => write!(f, " (resolving {t})"),
                    (_, Some(t)) => write!(f, " from {t}"),
                    (_, None) => Ok(()),
                }
            }
            Failure::InternalError { reason } => write!(f, "cannot run the check: {reason}"),
            Failure::DnsFailure {
                name,
                resolver,
                reason,
            } => match resolver {
                Some(r) => write!(f, "cannot resolve {name} at {r}: {reason}"),
                None => write!(f, "cannot resolve {name}: {reason}"),
            },
            Failure::DnsNxdomain {
                name,
                resolver,
                expected,
            } => rcode_text(f, "NXDOMAIN", "the name does not exist", name, resolver, expected),
            Failure::DnsServfail {
                name,
                resolver,
                expected,
            } => rcode_text(f, "SERVFAIL", "the server failed", name, resolver, expected),
            Failure::DnsRefused {
                name,
                resolver,
                expected,
            } => rcode_text(
                f,
                "REFUSED",
                "the server refused to answer",
                name,
                resolver,
                expected,
            ),
            Failure::DnsRcodeMismatch {
                name,
                resolver,
                got,
                expected,
            } => rcode_text(f, got, "unexpected response code", name, resolver, expected),
            Failure::DnsTimeout {
                name,
                resolver,
                after,
            } => {
                write!(f, "no answer for {name} from {}", opt(resolver, "any resolver"))?;
                match after {
                    Some(a) => write!(f, " within {}", h(*a)),
                    None => f.write_str(" before the deadline"),
                }
            }
            Failure::DnsTruncated { resolver, error } => write!(
                f,
                "{resolver} truncated the UDP answer and the TCP retry failed: {error}"
            ),
            Failure::DnsAnswerMismatch {
                resolver,
                query,
                got,
                expected,
                exact,
            } => {
                write!(f, "{resolver} answered {query} with [{}], ", list(got))?;
                if *exact {
                    write!(f, "expected exactly [{}]", list(expected))
                } else {
                    let missing: Vec<String> = expected
                        .iter()
                        .filter(|e| !got.contains(e))
                        .cloned()
                        .collect();
                    write!(f, "missing [{}]", list(&missing))
                }
            }
            Failure::DnsCnameMismatch {
                resolver,
                name,
                got,
                expected,
            } => match got {
                Some(g) => write!(
                    f,
                    "the CNAME chain of {name} at {resolver} ends at {g}, expected {expected}"
                ),
                None => write!(
                    f,
                    "{name} has no CNAME at {resolver}, expected a chain ending at {expected}"
                ),
            },
            Failure::DnsTtlOutOfBounds {
                resolver,
                record,
                ttl,
                ttl_min,
                ttl_max,
            } => {
                let s = |v: u32| h(Duration::from_secs(u64::from(v)));
                write!(f, "{record} has TTL {} at {resolver}, ", s(*ttl))?;
                match (ttl_min, ttl_max) {
                    (Some(m), _) if ttl < m => write!(f, "below ttl_min {}", Dur(Duration::from_secs(u64::from(*m)))),
                    (_, Some(m)) => write!(f, "above ttl_max {}", Dur(Duration::from_secs(u64::from(*m)))),
                    _ => f.write_str("out of bounds"),
                }
            }
            Failure::DnsTooFewAnswers {
                resolver,
                query,
                got,
                min,
            } => write!(
                f,
                "{resolver} answered {got} record(s) for {query}, expected at least {min}"
            ),
            Failure::DnsResolversDisagree { query, views } => {
                let v: Vec<String> = views
                    .iter()
                    .map(|v| format!("{} → {}", v.resolvers.join(", "), v.serving))
                    .collect();
                write!(f, "resolvers disagree on {query}: {}", v.join("; "))
            }
            Failure::DnsPropagationStalled {
                leader,
                old,
                new,
                lagging_for,
                window,
                lagging,
            } => {
                let v: Vec<String> = lagging
                    .iter()
                    .map(|v| format!("{} still serves {}", v.resolvers.join(", "), v.serving))
                    .collect();
                write!(
                    f,
                    "the change on {leader} from {old} to {new} has not propagated after {} (old TTL plus grace is {}): {}",
                    h(*lagging_for),
                    h(*window),
                    v.join("; ")
                )
            }
            Failure::ConnectionRefused { address } => {
                write!(f, "connection to {address} refused")
            }
            Failure::ConnectFailure { address, error } => {
                write!(f, "cannot connect to {address}: {error}")
            }
            Failure::TlsHandshakeFailure { client, reason } => match client {
                Some(c) => write!(f, "the {c} handshake failed: {reason}"),
                None => write!(f, "the TLS handshake failed: {reason}"),
            },
            Failure::TlsUntrustedRoot {
                store,
                served_end,
                no_path,
            } => match (served_end, store) {
                (Some(ServedEnd::SelfSigned { cert }), s) => write!(
                    f,
                    "the served chain ends at the self-signed {cert}, which {} does not trust",
                    opt(s, "the trust store")
                ),
                (Some(ServedEnd::MissingIssuer { cert, issuer }), s) if *no_path => write!(
                    f,
                    "the served chain leads through {cert} to {issuer}, which {s} does not trust; no path of the presented certificates leads to a root in it",
                    s = opt(s, "the trust store")
                ),
                (Some(ServedEnd::MissingIssuer { cert, issuer }), s) => write!(
                    f,
                    "the served chain leads through {cert} to {issuer}, which {} does not trust (legacy clients try no alternate chains)",
                    opt(s, "the trust store")
                ),
                (None, Some(s)) => write!(f, "the certificate chain does not lead to a root in {s}"),
                (None, None) => f.write_str(
                    "the certificate chain does not lead to a trusted root (unknown issuer); set ca_file if it is a private CA",
                ),
            },
            Failure::TlsCertExpired {
                cert,
                not_after,
                store,
                served_path_only,
            } => {
                if let (Some(s), false) = (store, served_path_only) {
                    write!(f, "every path to {s} has expired: ")?;
                }
                match (cert, not_after) {
                    (Some(c), Some(t)) => write!(f, "{c} expired on {t}")?,
                    (None, Some(t)) => write!(f, "a certificate on the chain expired on {t}")?,
                    (Some(c), None) => write!(f, "{c} has expired")?,
                    (None, None) => f.write_str("a certificate on the chain has expired")?,
                }
                if *served_path_only {
                    f.write_str(", on the served path (legacy clients try no alternate chains)")?;
                }
                Ok(())
            }
            Failure::TlsCertNotYetValid {
                cert,
                not_before,
                served_path_only,
            } => {
                match (cert, not_before) {
                    (Some(c), Some(t)) => write!(f, "{c} is not valid before {t}")?,
                    (None, Some(t)) => {
                        write!(f, "a certificate on the chain is not valid before {t}")?
                    }
                    (Some(c), None) => write!(f, "{c} is not yet valid")?,
                    (None, None) => f.write_str("a certificate on the chain is not yet valid")?,
                }
                if *served_path_only {
                    f.write_str(", on the served path (legacy clients try no alternate chains)")?;
                }
                Ok(())
            }
            Failure::TlsNameMismatch { name, presented } => {
                write!(
                    f,
                    "the certificate does not cover {}",
                    opt(name, "the requested name")
                )?;
                if !presented.is_empty() {
                    write!(f, "; it names {}", list(presented))?;
                }
                Ok(())
            }
            Failure::TlsCertInvalid { reason } => write!(f, "certificate rejected: {reason}"),
            Failure::TlsChainIncomplete { leaf_issuer, store } => write!(
                f,
                "the issuer of the leaf ({leaf_issuer}) is neither presented nor in {store}: only clients that fetch intermediates (AIA) accept this; serve the intermediate"
            ),
            Failure::TlsSelfSigned { leaf, store } => {
                write!(f, "the leaf {leaf} is self-signed and not in {store}")
            }
            Failure::TlsProtocolUnsupported {
                client,
                negotiated,
                min_tls_version,
                reason,
            } => match (negotiated, min_tls_version) {
                (Some(n), Some(m)) => write!(
                    f,
                    "the server negotiated TLS {n} with the {client} client offering 1.2 and 1.3; min_tls_version is {m}"
                ),
                _ => write!(
                    f,
                    "the server refuses the {client} client's protocol versions: {}",
                    opt(reason, "no common version")
                ),
            },
            Failure::TlsExpiringSoon { combinations } => {
                let v: Vec<String> = combinations
                    .iter()
                    .map(|c| {
                        format!(
                            "{} fails from {} ({} days left, minimum {})",
                            c.combination, c.fails_from, c.days_left, c.min_days_left
                        )
                    })
                    .collect();
                f.write_str(&v.join("; "))
            }
            Failure::TlsChainHygiene { findings } => {
                let v: Vec<&str> = findings.iter().map(|x| x.message.as_str()).collect();
                write!(f, "chain hygiene: {}", v.join("; "))
            }
            Failure::ProtocolError { problem } => match problem {
                ProtocolProblem::H2Refused => f.write_str(
                    "http_version = \"http2\" but the server did not accept h2 in ALPN",
                ),
                ProtocolProblem::NotHttp { sent } => {
                    write!(f, "the peer did not answer with HTTP: it sent {sent}")
                }
                ProtocolProblem::InvalidResponse { error } => {
                    write!(f, "invalid HTTP response: {error}")
                }
                ProtocolProblem::Incomplete => {
                    f.write_str("connection closed before the response was complete")
                }
                ProtocolProblem::Other { error } => f.write_str(error),
                ProtocolProblem::LocationNotText { status } => {
                    write!(f, "{status} with a Location that is not valid text")
                }
                ProtocolProblem::LocationNotHttp { status, location } => write!(
                    f,
                    "{status} redirect to {location:?}, which is not an http(s) URL"
                ),
            },
            Failure::UnexpectedStatus {
                got,
                expected,
                responder,
                oauth_error,
                session_rejected,
            } => {
                if *session_rejected {
                    return write!(f, "got status {got}: the session was rejected");
                }
                match responder {
                    Some(r) => write!(f, "{r} answered {got}")?,
                    None => write!(f, "got status {got}")?,
                }
                if let Some(e) = oauth_error {
                    write!(f, " (error {e:?})")?;
                }
                write!(f, ", expected {expected}")
            }
            Failure::RedirectNotFollowed {
                status,
                location,
                expected,
            } => write!(
                f,
                "got {status} {} to {location} where {expected} was expected: a client that does not follow redirects stops here",
                http::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("")
            ),
            Failure::RedirectDowngrade {
                hop,
                url,
                status,
                location,
            } => write!(
                f,
                "hop {hop} ({url}) answered {status} to {location}: https downgraded to http; fix the Location or set allow_downgrade = true"
            ),
            Failure::RedirectMethodChanged {
                hop,
                url,
                status,
                from,
                to,
            } => write!(
                f,
                "hop {hop} ({url}) answered {status}, which turns {from} into {to} and drops the body; redirect with 307/308 to keep the method, or set allow_method_change = true"
            ),
            Failure::RedirectLoop {
                hop,
                url,
                status,
                method,
                location,
            } => write!(
                f,
                "redirect loop: hop {hop} ({url}) answered {status} back to {method} {location}, already requested in this chain"
            ),
            Failure::RedirectLimit {
                max_hops,
                hop,
                url,
                status,
                location,
            } => write!(
                f,
                "more than {max_hops} redirects (max_hops): hop {hop} ({url}) answered {status} to {location}"
            ),
            Failure::RedirectSequenceMismatch { got, expected } => write!(
                f,
                "statuses along the chain were {got:?}, expected {expected:?} (redirect_statuses)"
            ),
            Failure::RedirectScheme { url } => {
                write!(f, "the final URL {url} is not https (require_https)")
            }
            Failure::HeaderMismatch {
                header,
                expected,
                got,
            } => match expected {
                HeaderExpectation::Present => write!(f, "response has no {header} header"),
                HeaderExpectation::Absent => {
                    write!(f, "response has a {header} header: {got:?}")
                }
                HeaderExpectation::Equals { value } => {
                    write!(f, "{header} is {got:?}, expected {value:?}")
                }
                HeaderExpectation::Matches { pattern } => {
                    write!(f, "{header} is {got:?}, which does not match /{pattern}/")
                }
                HeaderExpectation::Cookie { name: Some(n) } => {
                    write!(f, "the response set no cookie {n:?}")
                }
                HeaderExpectation::Cookie { name: None } => {
                    f.write_str("the response set no cookie")
                }
            },
            Failure::BodyMismatch {
                body_bytes,
                expected,
            } => match expected {
                BodyExpectation::Contains { text } => {
                    write!(f, "body ({body_bytes} bytes) does not contain {text:?}")
                }
                BodyExpectation::Matches { pattern } => {
                    write!(f, "body ({body_bytes} bytes) does not match /{pattern}/")
                }
            },
            Failure::JsonPathMismatch {
                path,
                problem,
                response,
            } => {
                if let Some(r) = response {
                    write!(f, "{r}: ")?;
                }
                match problem {
                    JsonProblem::NotJson { error: Some(e) } => write!(f, "body is not JSON: {e}"),
                    JsonProblem::NotJson { error: None } => f.write_str("body is not JSON"),
                    JsonProblem::Nothing { expected: Some(e) } => {
                        write!(f, "{path} selects nothing, expected {e}")
                    }
                    JsonProblem::Nothing { expected: None } => {
                        write!(f, "{path} selects nothing")
                    }
                    JsonProblem::Present { count } => {
                        write!(f, "{path} selects {count} node(s), expected none")
                    }
                    JsonProblem::NotEqual { actual, expected } => {
                        write!(f, "{path} is {actual}, expected {expected}")
                    }
                    JsonProblem::OutOfRange {
                        actual: Value::Null,
                        greater_than,
                        less_than,
                    } => write!(
                        f,
                        "{path} selects nothing, expected a number {}",
                        bounds(*greater_than, *less_than)
                    ),
                    JsonProblem::OutOfRange {
                        actual,
                        greater_than,
                        less_than,
                    } => write!(
                        f,
                        "{path} is {actual}, expected a number {}",
                        bounds(*greater_than, *less_than)
                    ),
                    JsonProblem::NotAString => write!(f, "no token string at {path}"),
                    JsonProblem::NotSeconds => write!(f, "{path} is not a number of seconds"),
                    JsonProblem::NotTimestamp => write!(
                        f,
                        "{path} is not a timestamp with a zone (RFC 3339 like \"2025-01-30T14:21:00Z\", or epoch seconds/milliseconds)"
                    ),
                    JsonProblem::Invalid { reason } => write!(f, "{path}: {reason}"),
                }
            }
            Failure::DataStale { at, problem } => match problem {
                Staleness::Old {
                    age,
                    timestamp,
                    max_age,
                } => write!(
                    f,
                    "data is {} old ({at} = {timestamp}), max_age is {}",
                    h(*age),
                    Dur(*max_age)
                ),
                Staleness::Missing => write!(
                    f,
                    "no timestamp at {at}: cannot tell how old the data is"
                ),
                Staleness::Unparseable { value } => write!(
                    f,
                    "{value} at {at} is not a timestamp: use RFC 3339 (\"2024-05-01T12:00:00Z\"), an HTTP-date or epoch seconds/milliseconds"
                ),
                Staleness::NotJson { error: Some(e) } => write!(f, "body is not JSON: {e}"),
                Staleness::NotJson { error: None } => f.write_str("body is not JSON"),
            },
            Failure::LatencyBudgetExceeded {
                phase,
                took,
                budget,
            } => write!(f, "{phase} took {} > budget {}", h(*took), Dur(*budget)),
            Failure::SampleFailureRatio {
                failed,
                total,
                max_failure_ratio,
                by_backend,
                first,
            } => {
                let ratio = if *total == 0 {
                    0.0
                } else {
                    *failed as f64 / *total as f64
                };
                let by: Vec<String> = by_backend
                    .iter()
                    .map(|b| format!("{} {}/{}", b.backend, b.failed, b.total))
                    .collect();
                write!(
                    f,
                    "{failed} of {total} samples failed (ratio {ratio:.2} > {max_failure_ratio:.2}); by backend: {}",
                    by.join(", ")
                )?;
                if let Some(first) = first {
                    write!(f, "; first failure: {} ({first})", first.code())?;
                }
                Ok(())
            }
            Failure::BodyTooLarge {
                max_body,
                content_length,
            } => {
                let cap = crate::config::Size(*max_body as u64);
                match content_length {
                    Some(n) => write!(
                        f,
                        "the response announces a {} body (Content-Length), above the {cap} cap (max_body); raise max_body if this size is expected",
                        crate::config::Size(*n)
                    ),
                    None => write!(
                        f,
                        "body exceeds the {cap} cap (max_body); raise max_body if this size is expected"
                    ),
                }
            }
            Failure::HeadersTooLarge { max_header_bytes } => write!(
                f,
                "response headers exceed the {} cap (max_header_bytes)",
                crate::config::Size(*max_header_bytes as u64)
            ),
            Failure::SessionRejectedEarly { status, rejection } => match rejection {
                Rejection::BeforeExpiry {
                    age,
                    left,
                    declared_lifetime,
                    tolerance,
                } => {
                    write!(
                        f,
                        "the session was rejected ({status}) {} after issuance, {} before its declared expiry (",
                        h(*age),
                        h(*left)
                    )?;
                    match declared_lifetime {
                        Some(l) => write!(f, "declared lifetime {}", h(*l))?,
                        None => f.write_str("no declared lifetime")?,
                    }
                    write!(f, ", tolerance {})", Dur(*tolerance))
                }
                Rejection::Fresh { renewed } => write!(
                    f,
                    "a credential {} in this run was rejected ({status})",
                    if *renewed { "renewed" } else { "issued" }
                ),
                Rejection::AfterRelogin => write!(
                    f,
                    "a credential from a new login was rejected ({status})"
                ),
            },
            Failure::SessionRenewalFailed { renewal } => match renewal {
                RenewalFailure::RefreshFailed { refresh } => write!(
                    f,
                    "refreshing failed ({}: {refresh}); a new login succeeded",
                    refresh.code()
                ),
                RenewalFailure::Failed {
                    attempt,
                    refresh,
                    login,
                    previous_expires_at,
                    previous_expired,
                } => {
                    write!(f, "renewal failed (attempt {attempt}): ")?;
                    match refresh {
                        Some(r) => write!(
                            f,
                            "refresh failed ({}: {r}) and so did a new login ({}: {login})",
                            r.code(),
                            login.code()
                        )?,
                        None => write!(f, "{}: {login}", login.code())?,
                    }
                    match (previous_expires_at, previous_expired) {
                        (Some(at), false) => write!(
                            f,
                            "; the previous credential stays in use until it expires at {at}"
                        ),
                        (Some(at), true) => write!(
                            f,
                            "; the previous credential expired at {at}: protected calls skipped"
                        ),
                        (None, _) => Ok(()),
                    }
                }
                RenewalFailure::Relogin { status, login } => write!(
                    f,
                    "logging in again after a {status} failed: {login} ({})",
                    login.code()
                ),
            },
            Failure::SessionLifetimeChanged {
                declared,
                previous,
                expiry_source,
                min,
                max,
            } => match previous {
                Some(p) => write!(
                    f,
                    "the declared session lifetime changed from {} to {} ({expiry_source})",
                    h(*p),
                    h(*declared)
                ),
                None => write!(
                    f,
                    "the declared session lifetime {} is outside lifetime_bounds {}..{}",
                    h(*declared),
                    min.map(|d| Dur(d).to_string()).unwrap_or_default(),
                    max.map(|d| Dur(d).to_string()).unwrap_or_default()
                ),
            },
            Failure::ClockSkew {
                offset,
                ahead,
                via,
                tolerance,
            } => write!(
                f,
                "the server's clock is {} {} the probe's ({via}; tolerance {})",
                h(*offset),
                if *ahead { "ahead of" } else { "behind" },
                Dur(*tolerance)
            ),
            Failure::SessionExpired {
                status,
                age,
                declared_lifetime,
                before_expiry,
                kept,
            } => {
                if *kept {
                    f.write_str("session rejected; renewal = never keeps it until reset: ")?;
                }
                write!(
                    f,
                    "the session was rejected ({status}) {} after login (",
                    h(*age)
                )?;
                match declared_lifetime {
                    Some(l) => write!(f, "declared lifetime {})", h(*l))?,
                    None => f.write_str("no declared expiry)")?,
                }
                if let Some(left) = before_expiry {
                    write!(f, ", {} before its declared expiry", h(*left))?;
                }
                f.write_str(": a client that logs in once fails here")
            }
            Failure::SessionLoginFailed { failure } => {
                write!(f, "login failed: {failure} ({})", failure.code())
            }
            Failure::GrpcNotServing { service, after }
            | Failure::GrpcStatusUnknown { service, after }
            | Failure::GrpcServiceUnknown { service, after } => {
                let status = match self {
                    Failure::GrpcNotServing { .. } => "NOT_SERVING",
                    Failure::GrpcStatusUnknown { .. } => "UNKNOWN",
                    _ => "SERVICE_UNKNOWN",
                };
                let who = if service.is_empty() {
                    "the server".to_owned()
                } else {
                    format!("service {service:?}")
                };
                match after {
                    Some(a) => write!(
                        f,
                        "the health of {who} changed to {status} {} into the watch",
                        h(*a)
                    ),
                    None if status == "SERVICE_UNKNOWN" => write!(
                        f,
                        "the health service does not know {who} (SERVICE_UNKNOWN): check the service name"
                    ),
                    None => write!(f, "the health service reports {who} {status}"),
                }
            }
            Failure::GrpcError { code, message } => {
                write!(f, "the health RPC failed with {code}")?;
                if code == "UNIMPLEMENTED" {
                    f.write_str(" (the server has no grpc.health.v1 service)")?;
                }
                if message.is_empty() {
                    Ok(())
                } else {
                    write!(f, ": {message}")
                }
            }
            Failure::IcmpPacketLoss {
                lost,
                count,
                max_loss,
            } => {
                if lost == count {
                    write!(f, "no echo reply to any of {count} requests")
                } else {
                    write!(
                        f,
                        "{lost} of {count} echo replies lost ({:.0}%), max_loss is {:.0}%",
                        f64::from(*lost) * 100.0 / f64::from(*count),
                        max_loss * 100.0
                    )
                }
            }
            Failure::IcmpNotPermitted { dgram, raw } => {
                f.write_str("cannot open an ICMP socket here: ")?;
                let mut parts = Vec::new();
                if let Some(d) = dgram {
                    parts.push(format!(
                        "a ping socket was refused ({d}; allow the probe's group in net.ipv4.ping_group_range)"
                    ));
                }
                if let Some(r) = raw {
                    parts.push(format!(
                        "a raw socket was refused ({r}; grant CAP_NET_RAW, e.g. AmbientCapabilities=CAP_NET_RAW)"
                    ));
                }
                f.write_str(&parts.join("; "))
            }
            Failure::HeartbeatMissed {
                silent,
                allowed,
                running,
            } => {
                if *running {
                    write!(
                        f,
                        "the job started {} ago and has not finished (grace {})",
                        h(*silent),
                        h(*allowed)
                    )
                } else {
                    write!(
                        f,
                        "no ping for {} ({} were allowed after the last one)",
                        h(*silent),
                        h(*allowed)
                    )
                }
            }
            Failure::HeartbeatFailed { excerpt } => {
                if excerpt.is_empty() {
                    f.write_str("the job reported failure (/fail)")
                } else {
                    write!(f, "the job reported failure (/fail): {excerpt}")
                }
            }
            Failure::TcpExpectMismatch {
                step,
                expect,
                received,
                received_bytes,
                end,
            } => {
                write!(f, "step {step}: ")?;
                match end {
                    ReadEnd::Closed => write!(
                        f,
                        "the peer closed the connection after {received_bytes} bytes without matching /{expect}/"
                    )?,
                    ReadEnd::Limit { max_read } => write!(
                        f,
                        "{} read without a match of /{expect}/ (max_read)",
                        crate::config::Size(*max_read as u64)
                    )?,
                    ReadEnd::Deadline { after } => write!(
                        f,
                        "no match of /{expect}/ within {} ({received_bytes} bytes received)",
                        h(*after)
                    )?,
                }
                if received.is_empty() {
                    Ok(())
                } else {
                    write!(f, "; received \"{received}\"")
                }
            }
            Failure::OnHop { hop, url, failure } => write!(f, "hop {hop} ({url}): {failure}"),
            Failure::OnStep {
                step,
                name,
                failure,
            } => write!(f, "step {step} ({name}): {failure}"),
            Failure::FlowExtractFailed {
                variable,
                from,
                problem,
            } => {
                if variable.is_empty() {
                    write!(f, "{from} is {problem}")
                } else {
                    write!(f, "cannot extract {variable} from {from}: {problem}")
                }
            }
            Failure::Sample {
                sample,
                of,
                failure,
            } => write!(f, "sample {sample} of {of}: {failure}"),
            Failure::Backends { total, failing } => {
                let v: Vec<String> = failing
                    .iter()
                    .map(|a| format!("{} {} ({})", a.address, a.failure.code(), a.failure))
                    .collect();
                write!(
                    f,
                    "{} of {total} backends failing: {}",
                    failing.len(),
                    v.join("; ")
                )
            }
            Failure::Resolvers { failing } => {
                let mut it = failing.iter();
                if let Some(first) = it.next() {
                    write!(f, "{}", first.failure)?;
                }
                let others: Vec<String> = it
                    .map(|r| format!("{} ({})", r.resolver, r.failure.code()))
                    .collect();
                if !others.is_empty() {
                    write!(f, "; also failing: {}", others.join(", "))?;
                }
                Ok(())
            }
            Failure::Combinations { must_pass, failing } => {
                let v: Vec<String> = failing
                    .iter()
                    .map(|c| format!("{}: {} ({})", c.combination, c.failure.code(), c.failure))
                    .collect();
                write!(
                    f,
                    "{} of {must_pass} must-pass combinations fail: {}",
                    failing.len(),
                    v.join("; ")
                )
            }
            Failure::Also { failure, also } => {
                write!(f, "{failure}")?;
                if !also.is_empty() {
                    let v: Vec<&str> = also.iter().map(|c| c.as_str()).collect();
                    write!(f, " (also: {})", v.join(", "))?;
                }
                Ok(())
            }
            Failure::Redacted { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for Failure {}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_serde_and_from_str() {
        let mut seen = std::collections::HashSet::new();
        for &c in FailureCode::ALL {
            assert!(seen.insert(c.as_str()), "{c} listed twice");
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<FailureCode>(&json).unwrap(), c);
            assert_eq!(c.as_str().parse::<FailureCode>(), Ok(c));
            assert_eq!(c.to_string(), c.as_str());
            assert!(
                c.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{c} is not snake_case"
            );
            assert!(!c.description().is_empty() && !c.kinds().is_empty());
        }
        assert_eq!(
            "tls_expired".parse::<FailureCode>(),
            Err(UnknownCode("tls_expired".into()))
        );
    }

    /// The README's "Failure codes" table lists exactly the codes of the table
    /// above: a new code is documented, and the README names no code we lack.
    #[test]
    fn the_readme_table_lists_every_code() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("\n## Failure codes")
            .nth(1)
            .expect("README.md has a \"## Failure codes\" section");
        let section = section.split("\n## ").next().unwrap_or(section);
        let listed: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        for &c in FailureCode::ALL {
            assert!(
                listed.contains(&c.as_str()),
                "README.md's failure code table lacks `{c}`"
            );
        }
        for l in &listed {
            assert!(
                l.parse::<FailureCode>().is_ok(),
                "README.md lists `{l}`, which is not a failure code"
            );
        }
    }

    #[test]
    fn messages_render_from_the_context() {
        let timeout = Failure::Timeout {
            phase: Phase::FirstByte,
            after: Duration::from_millis(2500),
            target: Some("127.0.0.1:8080".into()),
        };
        assert_eq!(
            timeout.to_string(),
            "timed out after 2.5 s waiting for first byte from 127.0.0.1:8080"
        );
        let status = Failure::UnexpectedStatus {
            got: 503,
            expected: "2xx".into(),
            responder: None,
            oauth_error: None,
            session_rejected: false,
        };
        assert_eq!(status.to_string(), "got status 503, expected 2xx");
        let hop = Failure::OnHop {
            hop: 2,
            url: "https://b.test/".into(),
            failure: Box::new(timeout.clone()),
        };
        assert!(
            hop.to_string()
                .starts_with("hop 2 (https://b.test/): timed out")
        );
        let backends = Failure::Backends {
            total: 3,
            failing: vec![AddressFailure {
                address: "10.0.0.2:443".into(),
                failure: status.clone(),
            }],
        };
        assert_eq!(
            backends.to_string(),
            "1 of 3 backends failing: 10.0.0.2:443 unexpected_status (got status 503, expected 2xx)"
        );
        for f in [&timeout, &status, &hop, &backends] {
            let m = f.to_string();
            assert!(!m.starts_with(char::is_uppercase), "{m}");
        }
    }

    #[test]
    fn wrappers_take_the_code_of_what_they_wrap() {
        let refused = Failure::ConnectionRefused {
            address: "127.0.0.1:9".into(),
        };
        let wrapped = Failure::Sample {
            sample: 1,
            of: 5,
            failure: Box::new(Failure::OnHop {
                hop: 2,
                url: "http://a.test/".into(),
                failure: Box::new(refused.clone()),
            }),
        };
        assert_eq!(wrapped.code(), FailureCode::ConnectionRefused);
        assert_eq!(wrapped.cause(), &refused);
        let resolvers = Failure::Resolvers {
            failing: vec![
                ResolverFailure {
                    resolver: "udp://127.0.0.1:53".into(),
                    failure: refused.clone(),
                },
                ResolverFailure {
                    resolver: "tcp://127.0.0.1:53".into(),
                    failure: Failure::DnsTimeout {
                        name: "a.test".into(),
                        resolver: Some("tcp://127.0.0.1:53".into()),
                        after: None,
                    },
                },
            ],
        };
        assert_eq!(resolvers.code(), FailureCode::ConnectionRefused);
        let backend = |address: &str| AddressFailure {
            address: address.into(),
            failure: refused.clone(),
        };
        let partial = Failure::Backends {
            total: 3,
            failing: vec![backend("10.0.0.1:443")],
        };
        assert_eq!(partial.code(), FailureCode::BackendsPartiallyFailing);
        assert_eq!(partial.cause(), &partial);
        let all = Failure::Backends {
            total: 2,
            failing: vec![backend("10.0.0.1:443"), backend("10.0.0.2:443")],
        };
        assert_eq!(all.code(), FailureCode::ConnectionRefused);
        assert_eq!(all.cause(), &refused);
        assert!(
            resolvers
                .to_string()
                .ends_with("; also failing: tcp://127.0.0.1:53 (dns_timeout)"),
            "{resolvers}"
        );
    }

    #[test]
    fn failures_serialize_with_their_variant_and_context() {
        let f = Failure::Timeout {
            phase: Phase::FirstByte,
            after: Duration::from_millis(2500),
            target: None,
        };
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            serde_json::json!({ "type": "timeout", "phase": "first_byte", "after_ms": 2500, "target": null })
        );
    }

    #[test]
    fn a_message_naming_a_secret_keeps_only_code_and_scrubbed_text() {
        let f = Failure::JsonPathMismatch {
            path: "$.token".into(),
            problem: JsonProblem::NotEqual {
                actual: Value::String("s3cr3t-token".into()),
                expected: Value::String("x".into()),
            },
            response: None,
        };
        let scrub = |m: &str| m.replace("s3cr3t-token", "**REDACTED**");
        let r = f.clone().scrubbed(scrub);
        assert_eq!(r.code(), FailureCode::JsonPathMismatch);
        assert!(matches!(&r, Failure::Redacted { message, .. } if !message.contains("s3cr3t")));
        let clean = Failure::BodyTooLarge {
            max_body: 10,
            content_length: None,
        };
        assert_eq!(clean.clone().scrubbed(scrub), clean);
    }

    #[test]
    fn unknown_codes_read_leniently() {
        #[derive(Deserialize)]
        struct W {
            #[serde(default, deserialize_with = "lenient_code")]
            code: Option<FailureCode>,
            #[serde(default, deserialize_with = "lenient_codes")]
            codes: Vec<FailureCode>,
        }
        let w: W = serde_json::from_str(
            r#"{"code": "from_a_newer_probe", "codes": ["timeout", "from_a_newer_probe"]}"#,
        )
        .unwrap();
        assert_eq!(w.code, None);
        assert_eq!(w.codes, vec![FailureCode::Timeout]);
        let w: W = serde_json::from_str(r#"{"code": "dns_timeout"}"#).unwrap();
        assert_eq!(w.code, Some(FailureCode::DnsTimeout));
    }

    /// Every sample, hop and check result holds one: it stays below
    /// clippy's `result_large_err` threshold (128 bytes).
    #[test]
    fn a_failure_stays_small() {
        assert!(std::mem::size_of::<Failure>() <= 120);
    }
}
