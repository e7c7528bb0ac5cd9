//! Email over SMTP (`lettre`, tokio + rustls with the ring provider; no
//! native-tls, no connection pool).
//!
//! - **Transport.** `tls = "starttls"` (default, port 587): the session
//!   must upgrade with STARTTLS before anything else is sent — a relay
//!   that does not offer it fails the attempt, never falls back to clear
//!   text. `tls = "tls"` (port 465): TLS from the first byte. `tls =
//!   "none"` (port 25) sends in clear and only with `allow_plaintext =
//!   true`. Certificates are checked against the Mozilla roots plus
//!   `ca_file` (a private relay's CA); the name checked is `host`.
//! - **Auth.** `username` + `password` (a secret) with AUTH PLAIN/LOGIN,
//!   only over TLS unless `allow_plaintext`.
//! - **Message.** One message per notification to every `to` address:
//!   subject `[FIRING] api: timeout (2/3 regions)` / `[RESOLVED] api`,
//!   a plain-text body with the summary, regions, code, since, severity,
//!   dedup key and the dashboard link (`server.external_url`).
//! - **Answers.** 2xx delivered; 5xx replies (mailbox unavailable, auth
//!   rejected, …) are permanent; 4xx replies, connection, TLS and timeout
//!   errors are retried by the delivery worker.
//! - **Rate limit.** `messages_per_minute` (default 30) per sink.

use std::{path::PathBuf, time::Duration};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
    },
};
use outpost_probe::config::{Problems, RawSecret, Secret};
use serde::Deserialize;

use super::{Delivery, REQUEST_TIMEOUT, SendContext, SinkKind, slack};
use crate::{
    alerting::{Action, AlertEvent},
    config::resolve_secret,
};

/// Default messages per minute per email sink.
pub const DEFAULT_MESSAGES_PER_MINUTE: u32 = 30;

/// How the SMTP session is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connect, then STARTTLS required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS (port 25); needs `allow_plaintext = true`.
    None,
}

/// `[sinks.email]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// SMTP relay host name (also the name its certificate must carry),
    /// e.g. `"smtp.example.com"`.
    pub host: String,
    /// Port. Default 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<u16>,
    /// `"starttls"` (default), `"tls"` or `"none"` (needs `allow_plaintext`).
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// Send in clear text (`tls = "none"`): passwords and alerts cross the
    /// network readable. Default false.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// PEM file with extra CA certificates for a private relay, trusted
    /// besides the Mozilla roots. Example `"/etc/outpost/relay-ca.pem"`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SMTP AUTH user name. Needs `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP AUTH password: `{ env = "SMTP_PASSWORD" }` or `{ file = "/path" }`.
    #[serde(default)]
    pub password: Option<RawSecret>,
    /// Sender, e.g. `"Outpost <outpost@example.com>"`.
    pub from: String,
    /// Recipients, at least one, e.g. `["oncall@example.com"]`.
    pub to: Vec<String>,
    /// Messages per minute at most (excess waits in the outbox). Default
    /// `30`, minimum `1`.
    #[serde(default)]
    pub messages_per_minute: Option<u32>,
}

/// A validated email sink.
#[derive(Debug, Clone)]
pub struct EmailSpec {
    /// Relay host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Session protection.
    pub tls: SmtpTls,
    /// Extra CA certificates (PEM).
    pub ca_pem: Option<Vec<u8>>,
    /// User name and password.
    pub auth: Option<(String, Secret)>,
    /// Sender.
    pub from: Mailbox,
    /// Recipients.
    pub to: Vec<Mailbox>,
    /// Rate limit.
    pub messages_per_minute: u32,
}

/// Validates `[sinks.email]` at `path` (`sinks[i]`).
pub fn validate(
    raw: &RawEmail,
    path: &str,
    vars: &[(String, String)],
    p: &mut Problems,
) -> Option<SinkKind> {
    let path = format!("{path}.email");
    let tls = raw.tls.unwrap_or(SmtpTls::Starttls);
    if tls == SmtpTls::None && !raw.allow_plaintext {
        p.push(
            format!("{path}.tls"),
            "tls = \"none\" sends passwords and alerts in clear text: use \"starttls\" or \"tls\", or opt in with allow_plaintext = true",
        );
    }
    if raw.host.trim().is_empty() {
        p.push(
            format!("{path}.host"),
            "host is empty, e.g. host = \"smtp.example.com\"",
        );
    }
    let port = raw.port.unwrap_or(match tls {
        SmtpTls::Starttls => 587,
        SmtpTls::Tls => 465,
        SmtpTls::None => 25,
    });
    let ca_pem = raw.ca_file.as_ref().and_then(|f| match std::fs::read(f) {
        Ok(pem) if Certificate::from_pem(&pem).is_ok() => Some(pem),
        Ok(_) => {
            p.push(
                format!("{path}.ca_file"),
                format!("{} holds no PEM certificate", f.display()),
            );
            None
        }
        Err(e) => {
            p.push(format!("{path}.ca_file"), format!("{}: {e}", f.display()));
            None
        }
    });
    let from = raw
        .from
        .parse::<Mailbox>()
        .map_err(|e| {
            p.push(
                format!("{path}.from"),
                format!(
                    "invalid address {:?} ({e}), e.g. \"Outpost <outpost@example.com>\"",
                    raw.from
                ),
            )
        })
        .ok();
    if raw.to.is_empty() {
        p.push(
            format!("{path}.to"),
            "to needs at least one address, e.g. to = [\"oncall@example.com\"]",
        );
    }
    let mut to = Vec::new();
    for (j, addr) in raw.to.iter().enumerate() {
        match addr.parse::<Mailbox>() {
            Ok(m) => to.push(m),
            Err(e) => p.push(
                format!("{path}.to[{j}]"),
                format!("invalid address {addr:?} ({e})"),
            ),
        }
    }
    let auth = match (&raw.username, &raw.password) {
        (Some(u), Some(s)) => resolve_secret(s, vars)
            .map_err(|e| p.push(format!("{path}.password"), e))
            .ok()
            .map(|pw| (u.clone(), pw)),
        (None, None) => None,
        _ => {
            p.push(
                path.clone(),
                "username and password go together: set both, or neither for a relay without AUTH",
            );
            None
        }
    };
    let messages_per_minute = raw
        .messages_per_minute
        .unwrap_or(DEFAULT_MESSAGES_PER_MINUTE);
    if messages_per_minute == 0 {
        p.push(
            format!("{path}.messages_per_minute"),
            "messages_per_minute must be ≥ 1",
        );
    }
    Some(SinkKind::Email(Box::new(EmailSpec {
        host: raw.host.trim().to_owned(),
        port,
        tls,
        ca_pem,
        auth,
        from: from?,
        to,
        messages_per_minute: messages_per_minute.max(1),
    })))
}

/// `[FIRING] api: timeout (2/3 regions)`, `[RESOLVED] api`.
pub fn subject(event: &AlertEvent) -> String {
    let who = slack::subject(event);
    match event.action {
        Action::Resolve => format!("[RESOLVED] {who}"),
        Action::Info => format!("[CHANGE] {who}: {}", event.kind.as_str()),
        Action::Trigger => {
            // "failing from 2 of 3 regions" in a check alert's summary.
            let quorum = event
                .summary
                .split_once(" failing from ")
                .and_then(|(_, rest)| rest.split_once(" regions"))
                .and_then(|(n, _)| n.split_once(" of "))
                .map(|(a, b)| format!("{a}/{b}"))
                .unwrap_or_else(|| event.regions.len().to_string());
            if event.code.is_empty() {
                format!("[FIRING] {who} ({quorum} regions)")
            } else {
                format!("[FIRING] {who}: {} ({quorum} regions)", event.code)
            }
        }
    }
}

/// The plain-text body.
pub fn body(event: &AlertEvent, ctx: &SendContext<'_>) -> String {
    let mut out = format!("{}\n\n", event.summary);
    let regions = if event.regions.is_empty() {
        "none".to_owned()
    } else {
        event.regions.join(", ")
    };
    out.push_str(&format!("Check:     {}\n", slack::subject(event)));
    out.push_str(&format!(
        "State:     {}\n",
        event.action.as_str().to_uppercase()
    ));
    out.push_str(&format!("Regions:   {regions}\n"));
    if !event.code.is_empty() {
        out.push_str(&format!("Code:      {}\n", event.code));
    }
    out.push_str(&format!("Severity:  {}\n", event.severity));
    out.push_str(&format!("Since:     {}\n", slack::since(event)));
    out.push_str(&format!("Dedup key: {}\n", event.dedup_key));
    if let Some(url) = slack::link(event, ctx.external_url) {
        out.push_str(&format!("\n{url}\n"));
    }
    out.push_str("\n-- \noutpost\n");
    out
}

/// Sends one event.
pub async fn send(spec: &EmailSpec, event: &AlertEvent, ctx: &SendContext<'_>) -> Delivery {
    let mut builder = Message::builder()
        .from(spec.from.clone())
        .subject(subject(event))
        .header(ContentType::TEXT_PLAIN);
    for to in &spec.to {
        builder = builder.to(to.clone());
    }
    let message = match builder.body(body(event, ctx)) {
        Ok(m) => m,
        Err(e) => {
            return Delivery::Reject {
                error: format!("message: {e}"),
            };
        }
    };
    let transport = match transport(spec) {
        Ok(t) => t,
        Err(e) => {
            return Delivery::Reject {
                error: format!("tls setup: {e}"),
            };
        }
    };
    match transport.send(message).await {
        Ok(resp) if resp.is_positive() => Delivery::Sent,
        Ok(resp) => Delivery::Retry {
            error: format!("smtp {}", resp.code()),
            after: None,
        },
        Err(e) => classify(&e),
    }
}

/// 5xx replies are permanent; everything else is retried.
fn classify(e: &lettre::transport::smtp::Error) -> Delivery {
    let error = match e.status() {
        Some(code) => format!("smtp {code}: {e}"),
        None => format!("smtp: {e}"),
    };
    if e.is_permanent() {
        Delivery::Reject { error }
    } else {
        Delivery::Retry { error, after: None }
    }
}

fn transport(
    spec: &EmailSpec,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&spec.host)
        .port(spec.port)
        .timeout(Some(Duration::min(
            REQUEST_TIMEOUT,
            Duration::from_secs(30),
        )));
    if spec.tls != SmtpTls::None {
        let mut params = TlsParameters::builder(spec.host.clone());
        if let Some(pem) = &spec.ca_pem {
            params = params.add_root_certificate(Certificate::from_pem(pem)?);
        }
        let params = params.build_rustls()?;
        builder = builder.tls(match spec.tls {
            SmtpTls::Tls => Tls::Wrapper(params),
            _ => Tls::Required(params),
        });
    }
    if let Some((user, password)) = &spec.auth {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: Action) -> AlertEvent {
        AlertEvent {
            details: serde_json::json!({}),
            at_ms: 1_893_456_000_000,
            ..crate::alerting::sink::test_event(action)
        }
    }

    #[test]
    fn subjects_name_state_check_code_and_quorum() {
        assert_eq!(
            subject(&event(Action::Trigger)),
            "[FIRING] api: timeout (2/3 regions)"
        );
        assert_eq!(subject(&event(Action::Resolve)), "[RESOLVED] api");
    }

    #[test]
    fn plaintext_needs_an_explicit_opt_in() {
        let raw = RawEmail {
            host: "smtp.example.com".into(),
            port: None,
            tls: Some(SmtpTls::None),
            allow_plaintext: false,
            ca_file: None,
            username: None,
            password: None,
            from: "Outpost <outpost@example.com>".into(),
            to: vec!["oncall@example.com".into()],
            messages_per_minute: None,
        };
        let mut p = Problems::default();
        validate(&raw, "sinks[0]", &[], &mut p);
        let err = p.finish("c.toml").unwrap_err().to_string();
        assert!(err.contains("sinks[0].email.tls"), "{err}");
        let ok = RawEmail {
            allow_plaintext: true,
            ..raw
        };
        let mut p = Problems::default();
        match validate(&ok, "sinks[0]", &[], &mut p) {
            Some(SinkKind::Email(spec)) => assert_eq!(spec.port, 25),
            other => panic!("{other:?}"),
        }
        assert!(p.finish("c.toml").is_ok());
    }
}
