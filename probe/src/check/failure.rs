//! Why a check failed: a stable [`FailureCode`] and the [`Failure`] that
//! carries it with its context.
//!
//! The codes are a stable API (alerts, metrics labels, the controller's
//! history are keyed by them): renaming one is a breaking change. They are
//! defined once, in the table of the `failure_codes!` invocation below, with
//! the kind that produces them and a one-line meaning; `FailureCode::ALL`,
//! `as_str`, `FromStr`, `description` and the README's "Failure codes" table
//! (checked by a test) all come from it.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
    DnsFailure = "dns_failure", "dns, http, tls",
        "The name did not resolve (no addresses, an invalid answer, a resolver error).";
    DnsNxdomain = "dns_nxdomain", "dns, http, tls",
        "A resolver answered NXDOMAIN: the name does not exist.";
    DnsServfail = "dns_servfail", "dns, http, tls",
        "A resolver answered SERVFAIL.";
    DnsRefused = "dns_refused", "dns, http, tls",
        "A resolver answered REFUSED.";
    DnsRcodeMismatch = "dns_rcode_mismatch", "dns, http, tls",
        "A resolver answered another rcode than the expected one.";
    DnsTimeout = "dns_timeout", "dns, http, tls",
        "A resolver did not answer within the check's timeout.";
    DnsTruncated = "dns_truncated", "dns, http, tls",
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
    ConnectionRefused = "connection_refused", "dns, http, tls, session",
        "The target (or a resolver's port) refused the TCP connection.";
    ConnectFailure = "connect_failure", "http, tls, session",
        "The TCP connection failed for another reason (unreachable, reset).";
    TlsHandshakeFailure = "tls_handshake_failure", "http, tls, session",
        "The TLS handshake failed (protocol, alert from the peer).";
    TlsUntrustedRoot = "tls_untrusted_root", "http, tls, session",
        "The certificate chain does not lead to a trusted root.";
    TlsCertExpired = "tls_cert_expired", "http, tls, session",
        "A certificate on the chain is expired.";
    TlsCertNotYetValid = "tls_cert_not_yet_valid", "http, tls, session",
        "A certificate on the chain is not yet valid.";
    TlsNameMismatch = "tls_name_mismatch", "http, tls, session",
        "The certificate does not cover the requested name.";
    TlsCertInvalid = "tls_cert_invalid", "http, tls, session",
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
    ProtocolError = "protocol_error", "http, session",
        "The peer did not speak HTTP correctly.";
    UnexpectedStatus = "unexpected_status", "http, session",
        "The status was not in the expected set.";
    RedirectNotFollowed = "redirect_not_followed", "http",
        "A redirect was answered where a machine client expects the final response.";
    RedirectDowngrade = "redirect_downgrade", "http",
        "A redirect led from https to plain http (`allow_downgrade = false`).";
    RedirectMethodChanged = "redirect_method_changed", "http",
        "A redirect turned a non-GET request into a GET, dropping its body (301/302 after POST, 303; `allow_method_change = false`).";
    RedirectLoop = "redirect_loop", "http",
        "A redirect revisited a (method, URL) already requested in the chain.";
    RedirectLimit = "redirect_limit", "http",
        "The chain needed more redirects than `max_hops`.";
    RedirectSequenceMismatch = "redirect_sequence_mismatch", "http",
        "The statuses along the chain differ from `redirect_statuses`.";
    RedirectScheme = "redirect_scheme", "http",
        "The final URL of the chain is not https (`require_https = true`).";
    HeaderMismatch = "header_mismatch", "http, session",
        "A response header is missing, present, or has the wrong value.";
    BodyMismatch = "body_mismatch", "http, session",
        "The body does not contain the text or match the pattern.";
    JsonPathMismatch = "json_path_mismatch", "http, session",
        "A JSONPath assertion failed (missing, unequal, out of range, not JSON).";
    DataStale = "data_stale", "http, session",
        "The data's timestamp is older than `freshness.max_age` (or cannot be read).";
    LatencyBudgetExceeded = "latency_budget_exceeded", "http, session",
        "A phase (or the total) took longer than its `latency` budget.";
    SampleFailureRatio = "sample_failure_ratio", "http",
        "More samples failed than `max_failure_ratio` allows.";
    BodyTooLarge = "body_too_large", "http, session",
        "The body exceeded the read cap (`max_body`).";
    HeadersTooLarge = "headers_too_large", "http, session",
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
        "`renewal = \"never\"`: the session was rejected; the details carry the observed lifetime.";
    SessionLoginFailed = "session_login_failed", "session",
        "No session could be started: the login failed.";
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

/// Why a check failed: a stable code and a human message. A target being
/// down is a `Failure` (data), not an error of ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Stable code.
    pub code: FailureCode,
    /// Human message naming what was observed.
    pub message: String,
}

impl Failure {
    /// Builds a failure.
    pub fn new(code: FailureCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}


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
}
