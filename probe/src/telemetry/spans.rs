//! One run's record → its trace: finished spans laid out from the recorded
//! durations.
//!
//! ```text
//! check <id>                       root (SpanKind::Internal): outpost.*, the target, the verdict
//! ├─ dns                           the name resolved before the requests (http)
//! ├─ address <ip:port>             each address of a name (http, more than one address)
//! │  └─ GET                        each hop (SpanKind::Client), semconv HTTP client attributes
//! ├─ GET                           … or the hops directly (one address)
//! │  ├─ dns   ├─ connect   ├─ tls   ├─ request (sent → response head)   └─ body (final hop)
//! ├─ step <name>                   session events (login, renewal) and requests; flow steps
//! │  └─ GET / phases
//! └─ dns / connect / tls / request other kinds: the run's phases
//! ```
//!
//! Start times come from the run's `started_at` (the probe's clock) and the
//! durations recorded for each phase; phases of one hop follow each other,
//! hops of a chain follow each other, addresses start together (they run
//! concurrently). Only the representative sample of each address is
//! recorded hop by hop, so only it becomes spans; `outpost.samples.*` count
//! the rest. URLs are redacted like everything the probe reports
//! ([`crate::redact`]); the failure message is redacted and clipped like a
//! result's.
//!
//! Attribute names are OpenTelemetry's semantic conventions where one
//! exists (`http.request.method`, `url.full`, `http.response.status_code`,
//! `server.address`, `server.port`, `network.peer.address`,
//! `network.peer.port`, `network.protocol.version`, `tls.protocol.version`,
//! `tls.cipher`, `tls.next_protocol`, `dns.question.name`, `error.type`)
//! and `outpost.*` otherwise (`outpost.check`, `outpost.kind`,
//! `outpost.region`, `outpost.probe`, `outpost.failure_code`,
//! `outpost.failure_message`, `outpost.hop`). A failing run's root has
//! status error with the failure code as description; so has the span
//! where it happened (a hop, an address, a step) when the record says.

use std::time::{Duration, SystemTime};

use opentelemetry::{
    KeyValue,
    trace::{SpanKind, Status},
};
use opentelemetry_sdk::trace::SpanData;

use super::{Telemetry, TraceHandle};
use crate::check::{
    FailureCode, Observed, Outcome, Phases, RunContext,
    http::exchange::{Hop, TlsInfo},
};

/// Builds the spans of one run.
struct Builder<'a> {
    t: &'a Telemetry,
    h: TraceHandle,
    out: Vec<SpanData>,
}

impl Builder<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        parent: u64,
        kind: SpanKind,
        name: impl Into<std::borrow::Cow<'static, str>>,
        start: SystemTime,
        end: SystemTime,
        attributes: Vec<KeyValue>,
        status: Status,
    ) -> u64 {
        let id = self.t.new_span_id();
        self.out.push(self.t.span(
            self.h, id, parent, kind, name, start, end, attributes, status,
        ));
        id
    }

    /// `dns`, `connect`, `tls`, `request` one after the other from `start`
    /// under `parent`; returns where they end.
    fn phases(
        &mut self,
        parent: u64,
        start: SystemTime,
        p: &Phases,
        hop: Option<&Hop>,
        host: Option<&str>,
    ) -> SystemTime {
        let mut at = start;
        let steps = [
            ("dns", p.dns),
            ("connect", p.connect),
            ("tls", p.tls),
            ("request", p.first_byte),
        ];
        for (name, d) in steps {
            let Some(d) = d else { continue };
            let mut attrs = Vec::new();
            match name {
                "dns" => {
                    if let Some(h) = host {
                        attrs.push(KeyValue::new("dns.question.name", h.to_owned()));
                    }
                }
                "connect" => {
                    if let Some(a) = hop.and_then(|h| h.address.as_deref()) {
                        peer(&mut attrs, a);
                    }
                }
                "tls" => {
                    if let Some(t) = hop.and_then(|h| h.tls.as_ref()) {
                        tls_attrs(&mut attrs, t);
                    }
                }
                _ => {}
            }
            let status = match hop {
                Some(h) if h.timeout_phase.as_deref() == Some(phase_name(name)) => {
                    Status::error("timeout")
                }
                _ => Status::Unset,
            };
            self.push(parent, SpanKind::Internal, name, at, at + d, attrs, status);
            at += d;
        }
        at
    }

    /// One hop (`GET`, a client span) and its phases from `start`; returns
    /// where it ends.
    fn hop(&mut self, parent: u64, start: SystemTime, index: usize, hop: &Hop) -> SystemTime {
        let p = &hop.phases_us;
        let sum = [p.dns, p.connect, p.tls, p.first_byte]
            .into_iter()
            .flatten()
            .sum::<Duration>();
        let end = start + p.total.max(sum);
        let mut attrs = vec![
            KeyValue::new("http.request.method", hop.method.clone()),
            KeyValue::new("url.full", redacted_url(&hop.url)),
            KeyValue::new("outpost.hop", index as i64),
        ];
        if let Ok(uri) = hop.url.parse::<http::Uri>() {
            let (host, port) = crate::check::http::exchange::host_port(&uri);
            attrs.push(KeyValue::new("server.address", host));
            attrs.push(KeyValue::new("server.port", i64::from(port)));
        }
        if let Some(a) = &hop.address {
            peer(&mut attrs, a);
        }
        if let Some(s) = hop.status {
            attrs.push(KeyValue::new("http.response.status_code", i64::from(s)));
        }
        if let Some(v) = &hop.http_version {
            attrs.push(KeyValue::new(
                "network.protocol.version",
                protocol_version(v),
            ));
        }
        if let Some(t) = &hop.tls {
            tls_attrs(&mut attrs, t);
        }
        if let Some(n) = hop.body_bytes {
            attrs.push(KeyValue::new("http.response.body.size", n as i64));
        }
        let code = hop.error.or(hop.violations.first().copied());
        if let Some(c) = code {
            attrs.push(KeyValue::new("error.type", c.as_str()));
            attrs.push(KeyValue::new("outpost.failure_code", c.as_str()));
        }
        let status = code.map(|c| Status::error(c.as_str())).unwrap_or_default();
        let host = hop
            .url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_owned));
        let id = self.push(
            parent,
            SpanKind::Client,
            hop.method.clone(),
            start,
            end,
            attrs,
            status,
        );
        let phases_end = self.phases(id, start, p, Some(hop), host.as_deref());
        if hop.body_bytes.is_some() && end > phases_end {
            self.push(
                id,
                SpanKind::Internal,
                "body",
                phases_end,
                end,
                Vec::new(),
                Status::Unset,
            );
        }
        end
    }

    /// Hops of one chain one after the other from `start`.
    fn chain(&mut self, parent: u64, start: SystemTime, chain: &[Hop]) -> SystemTime {
        let mut at = start;
        for (i, h) in chain.iter().enumerate() {
            at = self.hop(parent, at, i, h);
        }
        at
    }

    fn http(
        &mut self,
        root: u64,
        start: SystemTime,
        o: &crate::check::http::Observed,
        run: &Phases,
    ) {
        // The name resolved before the requests: the run's dns minus what hops resolved.
        let hop_dns: Duration = o.hops().iter().filter_map(|h| h.phases_us.dns).sum();
        let mut at = start;
        if let Some(d) = run
            .dns
            .map(|d| d.saturating_sub(hop_dns))
            .filter(|d| !d.is_zero())
        {
            let host = o
                .url
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_owned));
            let attrs = host
                .map(|h| vec![KeyValue::new("dns.question.name", h)])
                .unwrap_or_default();
            self.push(
                root,
                SpanKind::Internal,
                "dns",
                at,
                at + d,
                attrs,
                Status::Unset,
            );
            at += d;
        }
        match &o.addresses {
            Some(addresses) => {
                for a in addresses {
                    let total = a.phases_us.map(|p| p.total).unwrap_or_default();
                    let mut attrs = Vec::new();
                    peer(&mut attrs, &a.address);
                    attrs.push(KeyValue::new(
                        "outpost.samples.total",
                        a.samples_total as i64,
                    ));
                    attrs.push(KeyValue::new(
                        "outpost.samples.failed",
                        a.samples_failed as i64,
                    ));
                    let status = match a.failure_code {
                        Some(c) => {
                            attrs.push(KeyValue::new("outpost.failure_code", c.as_str()));
                            Status::error(c.as_str())
                        }
                        None => Status::Unset,
                    };
                    let id = self.push(
                        root,
                        SpanKind::Internal,
                        format!("address {}", a.address),
                        at,
                        at + total,
                        attrs,
                        status,
                    );
                    self.chain(id, at, a.chain.as_deref().unwrap_or_default());
                }
            }
            None => {
                self.chain(root, at, o.hops());
            }
        }
    }

    /// A step (`step <name>`) with its phases or its hops; returns its end.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        root: u64,
        start: SystemTime,
        name: &str,
        phases: &Phases,
        failure: Option<FailureCode>,
        mut attrs: Vec<KeyValue>,
        chain: &[Hop],
    ) -> SystemTime {
        let sum = [phases.dns, phases.connect, phases.tls, phases.first_byte]
            .into_iter()
            .flatten()
            .sum::<Duration>();
        let end = start + phases.total.max(sum);
        attrs.push(KeyValue::new("outpost.step", name.to_owned()));
        let status = match failure {
            Some(c) => {
                attrs.push(KeyValue::new("outpost.failure_code", c.as_str()));
                Status::error(c.as_str())
            }
            None => Status::Unset,
        };
        let id = self.push(
            root,
            SpanKind::Internal,
            format!("step {name}"),
            start,
            end,
            attrs,
            status,
        );
        if chain.is_empty() {
            self.phases(id, start, phases, None, None);
        } else {
            self.chain(id, start, chain);
        }
        end
    }
}

/// The spans of one finished run: the root `check <id>` (id
/// `handle.span_id`) and its children.
pub fn of_run(t: &Telemetry, handle: TraceHandle, o: &Outcome, ctx: &RunContext) -> Vec<SpanData> {
    let start: SystemTime = o.started_at.into();
    let end = start + o.phases.total;
    let mut b = Builder {
        t,
        h: handle,
        out: Vec::new(),
    };
    let root = handle.span_id;
    let mut attrs = vec![
        KeyValue::new("outpost.check", o.check_id.clone()),
        KeyValue::new("outpost.kind", o.kind.as_str()),
        KeyValue::new("outpost.region", ctx.region.clone()),
        KeyValue::new("outpost.probe", ctx.probe_name.clone()),
    ];
    match &o.observed {
        Observed::Http(h) => {
            attrs.push(KeyValue::new("url.full", redacted_url(&h.url)));
            if !h.method.is_empty() {
                attrs.push(KeyValue::new("http.request.method", h.method.clone()));
            }
            if let Ok(uri) = h.url.parse::<http::Uri>() {
                let (host, port) = crate::check::http::exchange::host_port(&uri);
                attrs.push(KeyValue::new("server.address", host));
                attrs.push(KeyValue::new("server.port", i64::from(port)));
            }
            if let Some(a) = &h.address {
                peer(&mut attrs, a);
            }
            if let Some(s) = h.last.status {
                attrs.push(KeyValue::new("http.response.status_code", i64::from(s)));
            }
            if let Some(t) = &h.last.tls {
                tls_attrs(&mut attrs, t);
            }
            attrs.push(KeyValue::new(
                "outpost.redirects",
                h.hops().len().saturating_sub(1) as i64,
            ));
            if let Some(s) = &h.samples_summary {
                attrs.push(KeyValue::new("outpost.samples.total", s.total as i64));
                attrs.push(KeyValue::new("outpost.samples.failed", s.failed as i64));
            }
            b.http(root, start, h, &o.phases);
        }
        Observed::Session(s) => {
            if let Some(run) = &s.run {
                let mut at = start;
                for e in &run.events {
                    let mut a = Vec::new();
                    if let Some(st) = e.status {
                        a.push(KeyValue::new("http.response.status_code", i64::from(st)));
                    }
                    at = b.step(root, at, &e.kind, &e.phases_us, e.failure_code, a, &[]);
                }
                for r in &run.requests {
                    let mut a = vec![
                        KeyValue::new("http.request.method", r.method.clone()),
                        KeyValue::new("url.full", redacted_url(&r.url)),
                    ];
                    if let Some(st) = r.status {
                        a.push(KeyValue::new("http.response.status_code", i64::from(st)));
                    }
                    at = b.step(root, at, &r.name, &r.phases_us, r.failure_code, a, &[]);
                }
            }
        }
        Observed::Flow(f) => {
            let mut at = start;
            for s in &f.steps {
                let mut a = vec![KeyValue::new("outpost.step.index", s.index as i64)];
                if !s.request.url.is_empty() {
                    a.push(KeyValue::new("url.full", redacted_url(&s.request.url)));
                }
                at = b.step(
                    root,
                    at,
                    &s.name,
                    &s.phases_us,
                    s.failure_code,
                    a,
                    s.request.hops(),
                );
            }
        }
        other => {
            let (host, port, address) = match other {
                Observed::Dns(d) => {
                    attrs.push(KeyValue::new("dns.question.name", d.name.clone()));
                    (None, None, None)
                }
                Observed::Tls(t) => (Some(t.host.clone()), Some(t.port), t.address.clone()),
                Observed::Tcp(t) => (Some(t.host.clone()), Some(t.port), t.address.clone()),
                Observed::Grpc(g) => (Some(g.host.clone()), Some(g.port), g.address.clone()),
                Observed::Icmp(i) => (Some(i.host.clone()), None, i.address.clone()),
                _ => (None, None, None),
            };
            if let Some(h) = &host {
                attrs.push(KeyValue::new("server.address", h.clone()));
            }
            if let Some(p) = port {
                attrs.push(KeyValue::new("server.port", i64::from(p)));
            }
            if let Some(a) = &address {
                peer(&mut attrs, a);
            }
            b.phases(root, start, &o.phases, None, host.as_deref());
        }
    }
    let status = match &o.result {
        Ok(()) => Status::Unset,
        Err(f) => {
            let code = f.code().as_str();
            attrs.push(KeyValue::new("outpost.failure_code", code));
            attrs.push(KeyValue::new("error.type", code));
            attrs.push(KeyValue::new(
                "outpost.failure_message",
                crate::bound::clip(
                    &crate::redact::text(&crate::redact::scrub(&f.to_string())),
                    crate::bound::MAX_MESSAGE,
                )
                .into_owned(),
            ));
            Status::error(code)
        }
    };
    b.out.push(t.span(
        handle,
        root,
        0,
        SpanKind::Internal,
        format!("check {}", o.check_id),
        start,
        end,
        attrs,
        status,
    ));
    // The root first: backends show a trace sooner when its root arrives first.
    b.out.rotate_right(1);
    b.out
}

/// `url.full` as the probe reports URLs: userinfo and secret values removed.
fn redacted_url(u: &str) -> String {
    crate::redact::scrub(&crate::redact::url(u)).into_owned()
}

/// `network.peer.address` / `network.peer.port` from `ip:port`.
fn peer(attrs: &mut Vec<KeyValue>, address: &str) {
    match address.parse::<std::net::SocketAddr>() {
        Ok(sa) => {
            attrs.push(KeyValue::new("network.peer.address", sa.ip().to_string()));
            attrs.push(KeyValue::new("network.peer.port", i64::from(sa.port())));
        }
        Err(_) => attrs.push(KeyValue::new("network.peer.address", address.to_owned())),
    }
}

fn tls_attrs(attrs: &mut Vec<KeyValue>, t: &TlsInfo) {
    if let Some(v) = &t.version {
        attrs.push(KeyValue::new("tls.protocol.name", "tls"));
        attrs.push(KeyValue::new("tls.protocol.version", tls_version(v)));
    }
    if let Some(c) = &t.cipher {
        attrs.push(KeyValue::new("tls.cipher", c.clone()));
    }
    if let Some(a) = &t.alpn {
        attrs.push(KeyValue::new("tls.next_protocol", a.clone()));
    }
    if let Some(n) = &t.leaf_not_after {
        attrs.push(KeyValue::new("tls.server.not_after", n.clone()));
    }
}

/// rustls's `TLSv1_3` → semconv's `1.3`.
fn tls_version(v: &str) -> String {
    v.trim_start_matches("TLSv").replace('_', ".")
}

/// hyper's `HTTP/1.1` / `HTTP/2.0` → semconv's `1.1` / `2`.
fn protocol_version(v: &str) -> String {
    match v.trim_start_matches("HTTP/") {
        "2.0" => "2".to_owned(),
        "3.0" => "3".to_owned(),
        other => other.to_owned(),
    }
}

/// The hop's `timeout_phase` spelling of a phase span's name.
fn phase_name(span: &str) -> &str {
    match span {
        "request" => "first byte",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_as_the_semantic_conventions_spell_them() {
        assert_eq!(tls_version("TLSv1_3"), "1.3");
        assert_eq!(tls_version("TLSv1_2"), "1.2");
        assert_eq!(protocol_version("HTTP/1.1"), "1.1");
        assert_eq!(protocol_version("HTTP/2.0"), "2");
    }
}
