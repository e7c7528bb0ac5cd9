//! Samples: one sample is a redirect chain plus the assertions on its final
//! response; an address runs `samples` of them in turn, each on fresh
//! connections, all under the run's one deadline.
//!
//! Verdict per address: with one sample, that sample's result. With more,
//! the address fails with `sample_failure_ratio` when `failed / samples >
//! max_failure_ratio`, naming the counts per backend; a sample cut short by
//! the deadline fails the address with `timeout` (the remaining samples are
//! not started: the deadline is the run's, not the sample's).

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use time::OffsetDateTime;

use super::{
    AddressMode, HttpSpec, exchange,
    observed::{AddressRecord, BackendTally, FinalHop, SampleRecord, SamplesSummary},
};
use crate::check::{
    Failure, FailureCode, Phases, RunContext,
    assertion::{self, AssertionResult},
    failure::BackendCount,
    redirect,
};

/// One chain and its assertions.
#[derive(Debug)]
pub struct Sample {
    /// 0-based index within its address.
    pub index: usize,
    /// Address of the first hop.
    pub address: SocketAddr,
    /// The hops.
    pub chain: Vec<exchange::Hop>,
    /// Assertions evaluated on the final response (empty if there was none).
    pub assertions: Vec<AssertionResult>,
    /// Pass or the first failure.
    pub result: Result<(), Failure>,
    /// Phases summed over the chain; `total` is the chain's wall time.
    pub phases: Phases,
    /// The `backend_header` value of the final response.
    pub backend: Option<String>,
}

/// All samples of one address and its verdict.
#[derive(Debug)]
pub struct AddressRun {
    /// The address.
    pub address: SocketAddr,
    /// Samples run, in order.
    pub samples: Vec<Sample>,
    /// Verdict.
    pub result: Result<(), Failure>,
}

/// Addresses to try and the time DNS took (None for IP literals and overrides).
pub async fn resolve(
    spec: &HttpSpec,
    deadline: tokio::time::Instant,
) -> Result<(Vec<SocketAddr>, Option<Duration>), Failure> {
    if !spec.resolve_to.is_empty() {
        let all = spec
            .resolve_to
            .iter()
            .map(|ip| SocketAddr::new(*ip, spec.port));
        return Ok((pick(spec, all.collect()), None));
    }
    if let Ok(ip) = spec.host.parse::<IpAddr>() {
        return Ok((vec![SocketAddr::new(ip, spec.port)], None));
    }
    let (ips, took) = crate::resolver::lookup_ips(&spec.host, &spec.resolver, deadline).await?;
    let addrs: Vec<SocketAddr> = ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, spec.port))
        .collect();
    if addrs.is_empty() {
        return Err(Failure::DnsFailure {
            name: spec.host.clone(),
            resolver: Some(spec.resolver.to_string()),
            reason: "no addresses".into(),
        });
    }
    Ok((pick(spec, addrs), Some(took)))
}

fn pick(spec: &HttpSpec, mut addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    if spec.addresses == AddressMode::First {
        addrs.truncate(1);
    }
    addrs
}

/// Runs one chain from `addr` and evaluates the assertions.
pub async fn run_sample(
    spec: &HttpSpec,
    addr: SocketAddr,
    index: usize,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
    ctx: &RunContext,
) -> Sample {
    let keep = spec.assertions.needs_body();
    run_sample_final(spec, addr, index, deadline, timeout, ctx, keep, None)
        .await
        .0
}

/// [`run_sample`], keeping the final response (its body when `keep_body`
/// or an assertion needs it) and consulting `jar` on every hop: a flow's
/// step, which extracts variables from the response.
#[allow(clippy::too_many_arguments)]
pub async fn run_sample_final(
    spec: &HttpSpec,
    addr: SocketAddr,
    index: usize,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
    ctx: &RunContext,
    keep_body: bool,
    jar: Option<&mut dyn redirect::Jar>,
) -> (Sample, Option<redirect::Final>) {
    // Most chains are one hop; a Vec grows to 4 hops (1.7 KiB) on first push.
    let mut chain = Vec::with_capacity(1);
    let t = Instant::now();
    let keep = keep_body || spec.assertions.needs_body();
    let res = tokio::time::timeout_at(
        deadline,
        redirect::follow_with(spec, addr, keep, ctx, &mut chain, jar),
    )
    .await;
    let mut phases = Phases::default();
    for h in &chain {
        phases.dns = exchange::add(phases.dns, h.phases_us.dns);
        phases.connect = exchange::add(phases.connect, h.phases_us.connect);
        phases.tls = exchange::add(phases.tls, h.phases_us.tls);
        phases.first_byte = exchange::add(phases.first_byte, h.phases_us.first_byte);
    }
    phases.total = t.elapsed();
    let mut sample = Sample {
        index,
        address: addr,
        chain,
        assertions: Vec::new(),
        result: Ok(()),
        phases,
        backend: None,
    };
    let fin = match res {
        Ok(Ok(fin)) => fin,
        Ok(Err(f)) => {
            sample.result = Err(f);
            return (sample, None);
        }
        Err(_) => {
            let idx = sample.chain.len().saturating_sub(1);
            let mut phase = exchange::Phase::Connect;
            let mut hop_url = String::new();
            let mut target = None;
            if let Some(h) = sample.chain.last_mut() {
                phase = h.phase;
                h.timeout_phase = Some(phase.name().to_owned());
                h.error = Some(FailureCode::Timeout);
                hop_url.clone_from(&h.url);
                target.clone_from(&h.address);
            }
            let timeout = Failure::Timeout {
                phase,
                after: timeout,
                target,
            };
            sample.result = Err(if idx > 0 {
                Failure::OnHop {
                    hop: idx + 1,
                    url: hop_url,
                    failure: Box::new(timeout),
                }
            } else {
                timeout
            });
            return (sample, None);
        }
    };
    let mut checked = vec![assertion::status(
        &spec.expected,
        fin.status,
        fin.location.as_deref(),
    )];
    checked.extend(redirect::chain_assertions(
        &spec.redirect,
        &sample.chain,
        &fin.uri,
    ));
    let obs = assertion::Response {
        headers: &fin.headers,
        body: &fin.body,
        phases: &sample.phases,
    };
    checked.extend(spec.assertions.evaluate(&obs, OffsetDateTime::now_utc()));
    sample.backend = spec
        .backend_header
        .as_ref()
        .and_then(|h| fin.headers.get(h))
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(100)
                .collect()
        });
    let (first, records) = assertion::split(checked);
    sample.result = first.map_or(Ok(()), Err);
    sample.assertions = records;
    (sample, Some(fin))
}

/// Runs `spec.samples` samples against `addr` and decides the address.
pub async fn run_address(
    spec: &HttpSpec,
    addr: SocketAddr,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
    ctx: &RunContext,
) -> AddressRun {
    let k = spec.samples as usize;
    let mut samples = Vec::with_capacity(k);
    for i in 0..k {
        let s = run_sample(spec, addr, i, deadline, timeout, ctx).await;
        let timed_out = matches!(&s.result, Err(f) if f.code() == FailureCode::Timeout);
        samples.push(s);
        if timed_out {
            break;
        }
    }
    let result = verdict(spec, &samples);
    AddressRun {
        address: addr,
        samples,
        result,
    }
}

fn verdict(spec: &HttpSpec, samples: &[Sample]) -> Result<(), Failure> {
    let k = spec.samples as usize;
    if k == 1 {
        return samples.first().map_or(Ok(()), |s| s.result.clone());
    }
    if let Some(Err(f)) = samples.last().map(|s| &s.result)
        && f.code() == FailureCode::Timeout
    {
        return Err(Failure::Sample {
            sample: samples.len(),
            of: k,
            failure: Box::new(f.clone()),
        });
    }
    let failed: Vec<&Sample> = samples.iter().filter(|s| s.result.is_err()).collect();
    let ratio = failed.len() as f64 / k as f64;
    if ratio <= spec.max_failure_ratio {
        return Ok(());
    }
    let refs: Vec<&Sample> = samples.iter().collect();
    Err(Failure::SampleFailureRatio {
        failed: failed.len(),
        total: k,
        max_failure_ratio: spec.max_failure_ratio,
        by_backend: by_backend(&refs)
            .into_iter()
            .map(|(backend, (total, failed))| BackendCount {
                backend,
                total,
                failed,
            })
            .collect(),
        first: failed
            .first()
            .and_then(|s| s.result.as_ref().err())
            .map(|f| Box::new(f.clone())),
    })
}

/// (total, failed) per backend; samples without a backend value count under their address.
fn by_backend(samples: &[&Sample]) -> BTreeMap<String, (usize, usize)> {
    let mut by: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for s in samples {
        let key = s.backend.clone().unwrap_or_else(|| s.address.to_string());
        let e = by.entry(key).or_default();
        e.0 += 1;
        e.1 += usize::from(s.result.is_err());
    }
    by
}

/// `details.samples_summary` over every sample of the run.
pub fn summary(spec: &HttpSpec, samples: &[&Sample]) -> SamplesSummary {
    let failed = samples.iter().filter(|s| s.result.is_err()).count();
    SamplesSummary {
        total: samples.len(),
        failed,
        ratio: if samples.is_empty() {
            0.0
        } else {
            failed as f64 / samples.len() as f64
        },
        max_failure_ratio: spec.max_failure_ratio,
        by_backend: by_backend(samples)
            .into_iter()
            .map(|(b, (total, failed))| (b, BackendTally { total, failed }))
            .collect(),
    }
}

impl Sample {
    /// Facts of the final hop (`status`, `tls`, …) and the freshness age.
    pub fn last_hop(&self) -> FinalHop {
        let mut last = FinalHop::default();
        if let Some(h) = self.chain.last() {
            last.status = h.status;
            last.location.clone_from(&h.location);
            last.http_version.clone_from(&h.http_version);
            last.body_bytes = h.body_bytes;
            last.timeout_phase.clone_from(&h.timeout_phase);
        }
        last.tls = self.chain.iter().rev().find_map(|h| h.tls.clone());
        last.age_seconds = self.assertions.iter().find_map(|a| a.age_seconds);
        last
    }

    /// One entry of `details.samples`.
    pub fn record(&self) -> SampleRecord {
        SampleRecord {
            index: self.index,
            address: self.address.to_string(),
            ok: self.result.is_ok(),
            failure_code: self.result.as_ref().err().map(Failure::code),
            failure_message: self.result.as_ref().err().map(Failure::to_string),
            status: self.chain.last().and_then(|h| h.status),
            backend: self.backend.clone(),
            phases_us: self.phases,
        }
    }
}

impl AddressRun {
    /// The sample shown in `details`: the first failing one, else the first.
    pub fn representative(&self) -> Option<&Sample> {
        self.samples
            .iter()
            .find(|s| s.result.is_err())
            .or(self.samples.first())
    }

    /// One entry of `details.addresses`.
    pub fn record(&self) -> AddressRecord {
        let rep = self.representative();
        AddressRecord {
            address: self.address.to_string(),
            ok: self.result.is_ok(),
            failure_code: self.result.as_ref().err().map(Failure::code),
            failure_message: self.result.as_ref().err().map(Failure::to_string),
            samples_total: self.samples.len(),
            samples_failed: self.samples.iter().filter(|s| s.result.is_err()).count(),
            last: rep.map(Sample::last_hop).unwrap_or_default(),
            phases_us: rep.map(|s| s.phases),
            chain: rep.map(|s| s.chain.clone()),
            assertions: rep.map(|s| s.assertions.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one address's run holds while it waits on a slow server. The large
    /// phase futures (DNS, TLS handshake, HTTP handshakes) are boxed so that they
    /// are freed when their phase ends; inline, this was 9.4 KiB per run.
    #[test]
    fn an_address_run_in_flight_stays_small() {
        let raw: crate::check::RawCheck =
            toml::from_str("id = \"a\"\nhttp = { url = \"http://127.0.0.1:9/\" }\n").unwrap();
        let mut problems = crate::config::Problems::default();
        let spec = raw.validate("checks[0]", &mut problems).unwrap();
        let crate::check::CheckKind::Http(h) = &spec.kind else {
            unreachable!()
        };
        let ctx = RunContext::default();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let run = run_address(h, addr, tokio::time::Instant::now(), spec.timeout, &ctx);
        let size = std::mem::size_of_val(&run);
        assert!(size <= 4 * 1024, "run_address future is {size} bytes");
    }
}
