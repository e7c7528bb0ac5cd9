//! History: rollups of results per check × region per minute, hour and
//! day, and what the pages read from them (uptime, SLA, latency
//! percentiles). The SQL is in `store/rollups.rs`; this file is the math,
//! pure and clock-free (every function takes the times it needs).
//!
//! Design note.
//! - **What a rollup holds.** Per (check, region, resolution, bucket start):
//!   `count` results, `failures` among them, `stale_ms` (time inside the
//!   bucket the region was STALE), a latency [`Histogram`] per phase (dns,
//!   connect, tls, first byte, total; passing results only, so a refused
//!   connection's 1 ms never pulls p50 down; a phase of 0 µs is "not
//!   applicable" and not recorded) and the failure codes seen with their
//!   counts, at most [`MAX_CODES`] distinct ones (the rest count under
//!   [`OTHER_CODE`]).
//! - **Mergeable.** A histogram is a count per fixed log-spaced bin (4 bins
//!   per doubling: bin `4k + j` covers `[2^k (1 + j/4), 2^k (1 + (j+1)/4))`
//!   µs, 128 bins up to 2^32 µs ≈ 71 min): two merge by adding counts, so a
//!   bucket is updated batch by batch and an hour is the sum of its
//!   minutes. A percentile is the middle of its bin: within ±12.5 % of the
//!   true value, whatever the scale. In memory a histogram holds only the
//!   span from its lowest to its highest counted bin (one check's
//!   latencies sit in a few neighbouring bins; the fold of a fleet holds
//!   tens of thousands at once).
//!   Stored binary ([`Rollup::body`]: per phase the non-empty bins as
//!   (bin byte, varint count), then the codes) in a BLOB / BYTEA beside
//!   integer count, failures and STALE columns — a minute of one run is
//!   about 12 bytes of body.
//! - **Keys.** A check × region is a *series* with an integer id
//!   (`rollup_series`, which also holds the cursor below); rollups are
//!   keyed (series, resolution 0/1/2, bucket) in a `WITHOUT ROWID` table,
//!   so no text is repeated per row.
//! - **Minutes written per batch, hours and days folded from them.**
//!   `Store::ingest` calls `store::rollups::apply` once per batch, in the
//!   batch's transaction, with the results it actually inserted (a resent
//!   result is neither stored nor counted twice, a crash loses both or
//!   neither): the touched minute rows are read in one statement, merged
//!   here ([`Rollup::merge`]) and written back in one multi-row upsert.
//!   Hours and days are not written per result: `Store::fold_rollups`
//!   (every 15 s, `FOLD_GRACE_MS` after a minute ends) reads the minutes
//!   past the fold's mark (`rollup_fold.done_ms`), adds them to their hour
//!   and day rows and to the summaries, and moves the mark, in one
//!   transaction (read 2,000 minute rows a page in (bucket, series) order,
//!   so its memory does not grow with the fleet). A minute the fold has passed already (a late resend, a
//!   STALE gap reaching back) is added to its hour, day and summary by the
//!   ingest itself, so each minute is counted exactly once. Readers of
//!   hours and days add the minutes past the mark in the same statement
//!   (one snapshot), so pages never lag the fold.
//! - **Summaries for the overview.** Per series one row
//!   (`rollup_summary`, [`Summary`]): (count, failures, STALE ms) of its
//!   last 96 hours and 32 days, varint-encoded (~4 bytes a bucket),
//!   updated wherever its hours and days are. The overview reads these
//!   rows (one per check × region) and the unfolded minutes, never the
//!   rollups: its cost grows with the fleet, not with the history.
//! - **STALE from gaps, at ingest.** A region is STALE when it has no
//!   result for `stale_after` (3 × the check's interval, as the alert rule
//!   says: [`crate::alerting::rule::stale_after`]). The rollup keeps the
//!   newest result time per (check, region) (`rollup_series.last_at_ms`); when a
//!   result arrives more than `stale_after` after the previous one, the
//!   interval `[previous + stale_after, this)` is added to the `stale_ms`
//!   of every bucket it overlaps ([`stale_spans`]). A gap still open (no
//!   result yet) is added at query time from the same cursor
//!   ([`open_gap`]), so the page shows it while it lasts and the number
//!   does not change when the gap closes. Why not in the evaluator tick:
//!   the tick runs on one replica, can be late or missing while the
//!   controller is down, and would write every second for every silent
//!   region; the gap is exact and written once. A result older than the
//!   cursor (a late resend) is counted but changes no gap. Regions of push
//!   checks (`heartbeat`) and checks the store has no `stale_after` for get
//!   no STALE time: their silence is a `heartbeat_missed` result.
//! - **Uptime.** Time-weighted per bucket ([`Slot`]): the observed part of
//!   a bucket (its width less `stale_ms`) is down in the proportion
//!   `failures / count`, up for the rest; a bucket with no result is STALE
//!   for its `stale_ms` and "no data" otherwise (a check running every 5
//!   minutes has empty minutes). Overall, with the alert rule's quorum: a
//!   bucket is down for the `min_regions`-th largest regional down
//!   fraction — the time at least `min_regions` regions failed together
//!   if their failures overlapped, which at one run a minute is exactly
//!   "≥ `min_regions` regions failed in that minute" ([`overall`]). STALE
//!   is reported beside uptime and never counted as up: uptime =
//!   up / (up + down). In a coarser bucket the `min_regions`-th largest
//!   fraction is an upper bound of the time `min_regions` regions were
//!   down together (they may not have overlapped): the overview's hour
//!   and day uptimes err towards down; the SLA report and check page use
//!   minutes while they are kept, which is exact at one run a minute.
//! - **Retention** per resolution (`[store.history]`: raw results 7 d,
//!   minutes 30 d, hours 400 d, days forever), deleted in batches of
//!   [`crate::PRUNE_BATCH`] rows, each its own short transaction; a
//!   minute past the fold's mark is never pruned (it is not in its hour
//!   yet).
//! - **Months in a time zone.** An SLA month is `[first day 00:00, next
//!   month's first day 00:00)` in the reader's zone ([`month_range`],
//!   jiff with the system tzdb). Minute rollups are used while they are
//!   kept, so the boundary is exact to the minute; beyond that hours
//!   (exact for whole-hour offsets; a half-hour zone is off by ≤ 30 min at
//!   each end, which the report says).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Distinct failure codes kept per rollup; more count under [`OTHER_CODE`].
pub const MAX_CODES: usize = 8;
/// Where codes beyond [`MAX_CODES`] are counted.
pub const OTHER_CODE: &str = "other";
/// Bins of a [`Histogram`] (4 per doubling from 1 µs: up to 2^32 µs).
pub const BINS: usize = 128;
/// Phases with a latency histogram, in `NewResult::phases_us` order.
pub const PHASES: [&str; 5] = ["dns", "connect", "tls", "first_byte", "total"];

/// A rollup's width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One UTC day.
    Day,
}

impl Resolution {
    /// Every resolution, finest first.
    pub const ALL: [Resolution; 3] = [Resolution::Minute, Resolution::Hour, Resolution::Day];

    /// Width in ms.
    pub fn width_ms(self) -> i64 {
        match self {
            Resolution::Minute => 60_000,
            Resolution::Hour => 3_600_000,
            Resolution::Day => 86_400_000,
        }
    }

    /// Start of the bucket holding `at_ms`.
    pub fn bucket(self, at_ms: i64) -> i64 {
        at_ms.div_euclid(self.width_ms()) * self.width_ms()
    }

    /// The number stored in `rollups.resolution`.
    pub fn code(self) -> i64 {
        match self {
            Resolution::Minute => 0,
            Resolution::Hour => 1,
            Resolution::Day => 2,
        }
    }

    /// The word for logs and pages.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Minute => "minute",
            Resolution::Hour => "hour",
            Resolution::Day => "day",
        }
    }
}

/// Latency counts per fixed log-spaced bin (see the design note).
///
/// Only the span of bins from the lowest to the highest counted one is
/// held: one check's latencies sit in a few neighbouring bins, and a
/// fleet's fold holds tens of thousands of these at once (dense, 5 phases
/// × up to [`BINS`] counters made a rollup kilobytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// The bin `counts[0]` counts.
    first: usize,
    /// Count per bin from `first`; empty, or nonzero at both ends.
    counts: Vec<u64>,
}

/// The bin of a value in µs.
pub fn bin_of(us: u64) -> usize {
    if us <= 1 {
        return 0;
    }
    // 4 × log2(us), from the integer log and the top bits after it.
    let log = 63 - us.leading_zeros() as usize;
    let frac = if log >= 2 {
        ((us >> (log - 2)) & 0b11) as usize
    } else {
        ((us << (2 - log)) & 0b11) as usize
    };
    // Quarter steps of the mantissa (1.00, 1.25, 1.50, 1.75): the two bits
    // after the leading one.
    (log * 4 + frac).min(BINS - 1)
}

/// The value a bin stands for in µs: the middle of its range.
pub fn bin_value_us(bin: usize) -> u64 {
    let log = bin / 4;
    let frac = (bin % 4) as u64;
    // Lower edge 2^log × (1 + frac/4), upper edge the next one's.
    let lo = (1u64 << log) * (4 + frac) / 4;
    let hi = if frac == 3 {
        1u64 << (log + 1)
    } else {
        (1u64 << log) * (5 + frac) / 4
    };
    (lo + hi) / 2
}

impl Histogram {
    /// Adds `n` to bin `b` (`n > 0`), widening the held span to reach it.
    fn add(&mut self, b: usize, n: u64) {
        if self.counts.is_empty() {
            self.first = b;
            self.counts.push(n);
        } else if b < self.first {
            let grow = self.first - b;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.first = b;
            self.counts[0] += n;
        } else {
            let i = b - self.first;
            if i >= self.counts.len() {
                self.counts.resize(i + 1, 0);
            }
            self.counts[i] += n;
        }
    }

    /// Counts one value.
    pub fn record(&mut self, us: u64) {
        self.add(bin_of(us), 1);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        if other.counts.is_empty() {
            return;
        }
        // Widen once to the union of both spans, then add in place.
        self.add(other.first, 0);
        self.add(other.first + other.counts.len() - 1, 0);
        let off = other.first - self.first;
        for (a, b) in self.counts[off..].iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0..=1) in µs, `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        // The rank of the quantile, 1-based, nearest-rank method.
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bin_value_us(self.first + i));
            }
        }
        None
    }

    /// Sparse form: `[[bin, count], …]` of the non-empty bins.
    pub fn to_pairs(&self) -> Vec<[u64; 2]> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| [(self.first + i) as u64, *c])
            .collect()
    }

    /// From the sparse form; bins out of range are clamped into the last.
    pub fn from_pairs(pairs: &[[u64; 2]]) -> Histogram {
        let mut h = Histogram::default();
        for [b, c] in pairs {
            if *c == 0 {
                continue;
            }
            let b = usize::try_from(*b).unwrap_or(BINS - 1).min(BINS - 1);
            h.add(b, *c);
        }
        h
    }
}

/// p50, p95 and p99 of one phase in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
}

impl Histogram {
    /// p50/p95/p99, `None` when empty.
    pub fn percentiles(&self) -> Option<Percentiles> {
        Some(Percentiles {
            p50: self.quantile(0.50)?,
            p95: self.quantile(0.95)?,
            p99: self.quantile(0.99)?,
        })
    }
}

/// One rollup row's values (the key is beside it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollup {
    /// Results.
    pub count: u64,
    /// Failed results.
    pub failures: u64,
    /// STALE time inside the bucket, ms.
    pub stale_ms: i64,
    /// Latency per phase ([`PHASES`] order), passing results only.
    pub latency: [Histogram; 5],
    /// Failure codes and how often, at most [`MAX_CODES`] plus [`OTHER_CODE`].
    pub codes: BTreeMap<String, u64>,
}

impl Rollup {
    /// Counts one result.
    pub fn record(&mut self, ok: bool, code: Option<&str>, phases_us: &[u64; 5]) {
        self.count += 1;
        if ok {
            for (h, us) in self.latency.iter_mut().zip(phases_us) {
                if *us > 0 {
                    h.record(*us);
                }
            }
        } else {
            self.failures += 1;
            self.add_code(code.unwrap_or(OTHER_CODE), 1);
        }
    }

    fn add_code(&mut self, code: &str, n: u64) {
        if let Some(c) = self.codes.get_mut(code) {
            *c += n;
        } else if self.codes.keys().filter(|k| *k != OTHER_CODE).count() < MAX_CODES
            || code == OTHER_CODE
        {
            self.codes.insert(code.to_owned(), n);
        } else {
            *self.codes.entry(OTHER_CODE.to_owned()).or_default() += n;
        }
    }

    /// Adds another rollup of the same key.
    pub fn merge(&mut self, other: &Rollup) {
        self.count += other.count;
        self.failures += other.failures;
        self.stale_ms += other.stale_ms;
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            a.merge(b);
        }
        for (code, n) in &other.codes {
            self.add_code(code, *n);
        }
    }
}

/// Appends `v` as a LEB128 varint (7 bits a byte, low first).
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint at `*at`, moving past it; `None` when truncated.
pub fn get_varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

impl Rollup {
    /// The `body` column: per phase ([`PHASES`] order) the number of
    /// non-empty bins, then (bin as one byte, count as a varint) for each;
    /// then the number of codes and (length, UTF-8 bytes, count) for each.
    /// One run in a minute is about 12 bytes.
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        for h in &self.latency {
            let pairs = h.to_pairs();
            put_varint(&mut out, pairs.len() as u64);
            for [bin, count] in pairs {
                // Bins are < BINS = 128: one byte.
                out.push(u8::try_from(bin).unwrap_or(u8::MAX));
                put_varint(&mut out, count);
            }
        }
        put_varint(&mut out, self.codes.len() as u64);
        for (code, n) in &self.codes {
            put_varint(&mut out, code.len() as u64);
            out.extend_from_slice(code.as_bytes());
            put_varint(&mut out, *n);
        }
        out
    }

    /// Reads [`Rollup::body`] back into `self` (a truncated or unreadable
    /// body keeps what was read: a rollup is a summary, never worth
    /// failing a page over).
    pub fn with_body(mut self, body: &[u8]) -> Rollup {
        let mut at = 0;
        let _ = self.read_body(body, &mut at);
        self
    }

    fn read_body(&mut self, body: &[u8], at: &mut usize) -> Option<()> {
        for h in &mut self.latency {
            let n = get_varint(body, at)?;
            *h = Histogram::default();
            for _ in 0..n {
                let bin = *body.get(*at)?;
                *at += 1;
                let count = get_varint(body, at)?;
                if count > 0 {
                    h.add(usize::from(bin).min(BINS - 1), count);
                }
            }
        }
        let n = get_varint(body, at)?;
        for _ in 0..n {
            let len = usize::try_from(get_varint(body, at)?).ok()?;
            let text = body.get(*at..at.checked_add(len)?)?;
            *at += len;
            let code = String::from_utf8_lossy(text).into_owned();
            let count = get_varint(body, at)?;
            self.add_code(&code, count);
        }
        Some(())
    }
}

/// Hours a [`Summary`] keeps (the overview's 90-slot bar and 24 h, with room).
pub const SUMMARY_HOURS: i64 = 96;
/// Days a [`Summary`] keeps (the overview's 7 d and 30 d, with room).
pub const SUMMARY_DAYS: i64 = 32;

/// The overview's compact copy of one check × region's newest hour and
/// day rollups without latency: (count, failures, STALE ms) per bucket
/// for the last [`SUMMARY_HOURS`] hours and [`SUMMARY_DAYS`] days. One
/// row per check × region (`rollup_summary`), updated whenever its hour or
/// day rollups are, so the overview reads one row per check × region
/// instead of 120 rollups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Hour bucket start → (count, failures, stale ms).
    pub hours: BTreeMap<i64, (u64, u64, i64)>,
    /// Day bucket start → (count, failures, stale ms).
    pub days: BTreeMap<i64, (u64, u64, i64)>,
}

impl Summary {
    fn map(&mut self, res: Resolution) -> Option<&mut BTreeMap<i64, (u64, u64, i64)>> {
        match res {
            Resolution::Minute => None,
            Resolution::Hour => Some(&mut self.hours),
            Resolution::Day => Some(&mut self.days),
        }
    }

    /// Adds a rollup's counts to its bucket (minutes are ignored).
    pub fn add(&mut self, res: Resolution, bucket_ms: i64, r: &Rollup) {
        if let Some(map) = self.map(res) {
            let e = map.entry(bucket_ms).or_default();
            e.0 += r.count;
            e.1 += r.failures;
            e.2 += r.stale_ms;
        }
    }

    /// Replaces a bucket's counts with a rollup's.
    pub fn set(&mut self, res: Resolution, bucket_ms: i64, r: &Rollup) {
        if let Some(map) = self.map(res) {
            map.insert(bucket_ms, (r.count, r.failures, r.stale_ms));
        }
    }

    /// Drops buckets older than the kept span before the newest one.
    pub fn trim(&mut self) {
        for (map, res, keep) in [
            (&mut self.hours, Resolution::Hour, SUMMARY_HOURS),
            (&mut self.days, Resolution::Day, SUMMARY_DAYS),
        ] {
            if let Some(newest) = map.keys().next_back().copied() {
                let from = newest - (keep - 1) * res.width_ms();
                *map = map.split_off(&from);
            }
        }
    }

    /// The bucket as a [`Rollup`] without latency.
    pub fn rollup(&self, res: Resolution, bucket_ms: i64) -> Option<Rollup> {
        let map = match res {
            Resolution::Minute => return None,
            Resolution::Hour => &self.hours,
            Resolution::Day => &self.days,
        };
        map.get(&bucket_ms)
            .map(|(count, failures, stale_ms)| Rollup {
                count: *count,
                failures: *failures,
                stale_ms: *stale_ms,
                ..Rollup::default()
            })
    }

    /// One region's slots of `res` from the bucket holding `from_ms` to
    /// the one holding `now_ms` (cut at `now_ms`), with the open STALE gap
    /// after `last_at_ms` added: what [`Series::build`] makes from rollup
    /// rows, from the summary alone.
    pub fn slots(
        &self,
        res: Resolution,
        from_ms: i64,
        now_ms: i64,
        last_at_ms: Option<i64>,
        stale_after_ms: Option<i64>,
    ) -> Vec<Slot> {
        let first = res.bucket(from_ms);
        let w = res.width_ms();
        let gap = match (last_at_ms, stale_after_ms) {
            (Some(last), Some(after)) => open_gap(last, now_ms, after),
            _ => None,
        };
        (0..)
            .map(|i| first + i * w)
            .take_while(|s| *s <= now_ms)
            .map(|start| {
                let mut r = self.rollup(res, start).unwrap_or_default();
                if let Some((from, to)) = gap {
                    let lo = from.max(first).max(start);
                    let hi = to.min(start + w);
                    if hi > lo {
                        r.stale_ms += hi - lo;
                    }
                }
                Slot::region(start, w.min(now_ms - start).max(0), &r)
            })
            .collect()
    }

    /// Varints: per map the entry count, then per entry the bucket's
    /// index (start / width) as a delta from the previous one, count,
    /// failures, STALE ms. About 4 bytes an entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 4 * (self.hours.len() + self.days.len()));
        for (map, res) in [
            (&self.hours, Resolution::Hour),
            (&self.days, Resolution::Day),
        ] {
            put_varint(&mut out, map.len() as u64);
            let mut prev = 0i64;
            for (start, (count, failures, stale)) in map {
                let index = start.div_euclid(res.width_ms());
                put_varint(&mut out, u64::try_from(index - prev).unwrap_or(0));
                prev = index;
                put_varint(&mut out, *count);
                put_varint(&mut out, *failures);
                put_varint(&mut out, u64::try_from(*stale).unwrap_or(0));
            }
        }
        out
    }

    /// Reads [`Summary::encode`] back; what cannot be read is left out.
    pub fn decode(buf: &[u8]) -> Summary {
        let mut s = Summary::default();
        let mut at = 0;
        let _ = s.read(buf, &mut at);
        s
    }

    fn read(&mut self, buf: &[u8], at: &mut usize) -> Option<()> {
        for res in [Resolution::Hour, Resolution::Day] {
            let n = get_varint(buf, at)?;
            let mut index = 0i64;
            for _ in 0..n {
                index += i64::try_from(get_varint(buf, at)?).ok()?;
                let count = get_varint(buf, at)?;
                let failures = get_varint(buf, at)?;
                let stale = i64::try_from(get_varint(buf, at)?).ok()?;
                let map = self.map(res)?;
                map.insert(index * res.width_ms(), (count, failures, stale));
            }
        }
        Some(())
    }
}

/// `[from, to)` split over the buckets of `res` it overlaps: (bucket start, ms inside it).
pub fn stale_spans(res: Resolution, from_ms: i64, to_ms: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut at = from_ms;
    while at < to_ms {
        let b = res.bucket(at);
        let end = (b + res.width_ms()).min(to_ms);
        out.push((b, end - at));
        at = end;
    }
    out
}

/// The STALE interval between two consecutive results of a region, if
/// the gap exceeds `stale_after_ms`: `[prev + stale_after, next)`.
pub fn closed_gap(prev_ms: i64, next_ms: i64, stale_after_ms: i64) -> Option<(i64, i64)> {
    let from = prev_ms.saturating_add(stale_after_ms);
    (next_ms > from).then_some((from, next_ms))
}

/// The STALE interval still open at `now_ms` after the newest result.
pub fn open_gap(last_ms: i64, now_ms: i64, stale_after_ms: i64) -> Option<(i64, i64)> {
    closed_gap(last_ms, now_ms, stale_after_ms)
}

/// A bucket of one region (or of the check overall) as time: the parts
/// of `width_ms` that were up, down, STALE, or without data.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Slot {
    /// Bucket start.
    pub start_ms: i64,
    /// Width (shorter for a bucket cut by the report's range).
    pub width_ms: i64,
    /// Up, ms.
    pub up_ms: f64,
    /// Down, ms.
    pub down_ms: f64,
    /// STALE, ms.
    pub stale_ms: f64,
    /// Results counted.
    pub count: u64,
    /// Failed results.
    pub failures: u64,
}

impl Slot {
    /// One region's bucket.
    pub fn region(start_ms: i64, width_ms: i64, r: &Rollup) -> Slot {
        let stale = (r.stale_ms.clamp(0, width_ms)) as f64;
        let (up, down) = if r.count == 0 {
            (0.0, 0.0)
        } else {
            let observed = width_ms as f64 - stale;
            let down = observed * r.failures as f64 / r.count as f64;
            (observed - down, down)
        };
        Slot {
            start_ms,
            width_ms,
            up_ms: up,
            down_ms: down,
            stale_ms: stale,
            count: r.count,
            failures: r.failures,
        }
    }

    /// Down fraction of the observed time (0 without data).
    pub fn down_fraction(&self) -> f64 {
        let observed = self.up_ms + self.down_ms;
        if observed > 0.0 {
            self.down_ms / observed
        } else {
            0.0
        }
    }

    /// What a status bar cell shows.
    pub fn status(&self) -> SlotStatus {
        if self.down_ms > 0.0 {
            SlotStatus::Down
        } else if self.up_ms > 0.0 {
            SlotStatus::Up
        } else if self.stale_ms > 0.0 {
            SlotStatus::Stale
        } else {
            SlotStatus::NoData
        }
    }
}

/// A status bar cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotStatus {
    /// Observed and passing.
    Up,
    /// Some of it down.
    Down,
    /// Only STALE time.
    Stale,
    /// Nothing known.
    NoData,
}

/// The check overall in one bucket from its regions' slots of that bucket,
/// with the alert rule's quorum (see the design note).
pub fn overall(start_ms: i64, width_ms: i64, regions: &[Slot], min_regions: u32) -> Slot {
    let with_data: Vec<&Slot> = regions
        .iter()
        .filter(|s| s.up_ms + s.down_ms > 0.0)
        .collect();
    let count = regions.iter().map(|s| s.count).sum();
    let failures = regions.iter().map(|s| s.failures).sum();
    let k = usize::try_from(min_regions.max(1)).unwrap_or(usize::MAX);
    if with_data.is_empty() {
        // Nothing observed: STALE for as long as the least stale region was.
        let stale = regions
            .iter()
            .map(|s| s.stale_ms)
            .fold(f64::INFINITY, f64::min);
        return Slot {
            start_ms,
            width_ms,
            stale_ms: if stale.is_finite() { stale } else { 0.0 },
            count,
            failures,
            ..Slot::default()
        };
    }
    let mut fractions: Vec<f64> = with_data.iter().map(|s| s.down_fraction()).collect();
    fractions.sort_by(|a, b| b.total_cmp(a));
    let down_fraction = fractions.get(k - 1).copied().unwrap_or(0.0);
    // Observed while any region was: the best-observed region's time.
    let observed = with_data
        .iter()
        .map(|s| s.up_ms + s.down_ms)
        .fold(0.0, f64::max);
    let stale = (width_ms as f64 - observed).max(0.0).min(
        regions
            .iter()
            .map(|s| s.stale_ms)
            .fold(f64::INFINITY, f64::min),
    );
    Slot {
        start_ms,
        width_ms,
        up_ms: observed * (1.0 - down_fraction),
        down_ms: observed * down_fraction,
        stale_ms: stale,
        count,
        failures,
    }
}

/// Uptime over a range: sums of slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Uptime {
    /// Up, ms.
    pub up_ms: f64,
    /// Down, ms.
    pub down_ms: f64,
    /// STALE, ms (never counted as up).
    pub stale_ms: f64,
    /// Results.
    pub count: u64,
    /// Failed results.
    pub failures: u64,
}

impl Uptime {
    /// Sums slots.
    pub fn of(slots: &[Slot]) -> Uptime {
        let mut u = Uptime::default();
        for s in slots {
            u.up_ms += s.up_ms;
            u.down_ms += s.down_ms;
            u.stale_ms += s.stale_ms;
            u.count += s.count;
            u.failures += s.failures;
        }
        u
    }

    /// up / (up + down) in percent, `None` when nothing was observed.
    pub fn percent(&self) -> Option<f64> {
        let observed = self.up_ms + self.down_ms;
        (observed > 0.0).then(|| 100.0 * self.up_ms / observed)
    }
}

/// One check's history over `[from_ms, to_ms)` at one resolution: a
/// dense row of slots per region (every bucket, empty ones as no data),
/// open STALE gaps added, the bucket holding `now_ms` cut at `now_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Width of a slot.
    pub resolution: Resolution,
    /// Bucket starts, oldest first.
    pub starts: Vec<i64>,
    /// Per region (sorted), one slot per start.
    pub regions: BTreeMap<String, Vec<Slot>>,
    /// The rollups per region and start (latency lives here).
    pub rollups: BTreeMap<String, Vec<Rollup>>,
}

impl Series {
    /// Builds the series of one check from its rollup rows and cursors.
    /// `regions`: the regions to show (assigned ones), even without rows.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        res: Resolution,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
        regions: &[String],
        rows: &[crate::store::RollupRow],
        cursors: &[(String, i64)],
        stale_after_ms: Option<i64>,
    ) -> Series {
        let first = res.bucket(from_ms);
        let end = to_ms.min(now_ms.saturating_add(1));
        let starts: Vec<i64> = (0..)
            .map(|i| first + i * res.width_ms())
            .take_while(|s| *s < end)
            .collect();
        let index = |bucket: i64| -> Option<usize> {
            let i = usize::try_from((bucket - first) / res.width_ms()).ok()?;
            (bucket >= first && i < starts.len()).then_some(i)
        };
        let mut names: Vec<String> = regions.to_vec();
        for r in rows {
            if !names.contains(&r.region) {
                names.push(r.region.clone());
            }
        }
        names.sort();
        let mut rollups: BTreeMap<String, Vec<Rollup>> = names
            .iter()
            .map(|n| (n.clone(), vec![Rollup::default(); starts.len()]))
            .collect();
        for r in rows {
            if let (Some(i), Some(v)) = (index(r.bucket_ms), rollups.get_mut(&r.region)) {
                v[i].merge(&r.rollup);
            }
        }
        if let Some(after) = stale_after_ms {
            for (region, last) in cursors {
                let Some(v) = rollups.get_mut(region) else {
                    continue;
                };
                if let Some((from, to)) = open_gap(*last, now_ms, after) {
                    for (bucket, ms) in stale_spans(res, from.max(first), to) {
                        if let Some(i) = index(bucket) {
                            v[i].stale_ms += ms;
                        }
                    }
                }
            }
        }
        let regions = rollups
            .iter()
            .map(|(name, v)| {
                let slots = starts
                    .iter()
                    .zip(v)
                    .map(|(s, r)| {
                        let width = res.width_ms().min(now_ms - s).max(0);
                        Slot::region(*s, width, r)
                    })
                    .collect();
                (name.clone(), slots)
            })
            .collect();
        Series {
            resolution: res,
            starts,
            regions,
            rollups,
        }
    }

    /// The check overall per slot, with the quorum `min_regions`.
    pub fn overall(&self, min_regions: u32) -> Vec<Slot> {
        self.starts
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let slots: Vec<Slot> = self.regions.values().map(|v| v[i]).collect();
                let width = slots
                    .first()
                    .map_or(self.resolution.width_ms(), |x| x.width_ms);
                overall(*s, width, &slots, min_regions)
            })
            .collect()
    }

    /// Latency percentiles of phase `phase` ([`PHASES`] index) per slot of one region.
    pub fn latency(&self, region: &str, phase: usize) -> Vec<Option<Percentiles>> {
        self.rollups
            .get(region)
            .map(|v| {
                v.iter()
                    .map(|r| r.latency[phase.min(4)].percentiles())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Month boundaries in a time zone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonthError {
    /// Not `YYYY-MM`.
    #[error("month must be YYYY-MM, e.g. \"2026-11\", got {0:?}")]
    Month(String),
    /// Not a zone of the system's tz database.
    #[error("unknown time zone {0:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\"")]
    Zone(String),
}

/// `[start, end)` in unix ms of month `YYYY-MM` in zone `tz`.
pub fn month_range(month: &str, tz: &str) -> Result<(i64, i64), MonthError> {
    let bad = || MonthError::Month(month.to_owned());
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    let y: i16 = y.parse().map_err(|_| bad())?;
    let m: i8 = m.parse().map_err(|_| bad())?;
    if y.to_string().len() != 4 || !(1..=12).contains(&m) {
        return Err(bad());
    }
    let zone = jiff::tz::TimeZone::get(tz).map_err(|_| MonthError::Zone(tz.to_owned()))?;
    let first = jiff::civil::Date::new(y, m, 1).map_err(|_| bad())?;
    let next = first
        .checked_add(jiff::Span::new().months(1))
        .map_err(|_| bad())?;
    let at = |d: jiff::civil::Date| {
        d.to_zoned(zone.clone())
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|_| bad())
    };
    Ok((at(first)?, at(next)?))
}

/// `stale_after` per check in ms (3 × its interval, the alert rule's
/// threshold), for the rollups' STALE gaps; push checks have none.
pub fn stale_after_ms(
    config: &crate::config::ControllerConfig,
) -> std::collections::HashMap<String, i64> {
    config
        .checks
        .iter()
        .filter_map(|c| Some((c.spec.id.clone(), stale_after_of(c)?)))
        .collect()
}

/// [`stale_after_ms`] of one check.
pub fn stale_after_of(check: &crate::config::CheckDef) -> Option<i64> {
    if matches!(
        check.spec.kind,
        outpost_probe::check::CheckKind::Heartbeat(_)
    ) {
        return None;
    }
    let after = crate::alerting::rule::stale_after(check.spec.interval);
    Some(i64::try_from(after.as_millis()).unwrap_or(i64::MAX))
}

/// Retention per resolution (`[store.history]`); `None`: kept forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRetention {
    /// Raw results.
    pub raw: std::time::Duration,
    /// Minute rollups.
    pub minute: Option<std::time::Duration>,
    /// Hour rollups.
    pub hour: Option<std::time::Duration>,
    /// Day rollups.
    pub day: Option<std::time::Duration>,
}

impl Default for HistoryRetention {
    fn default() -> HistoryRetention {
        HistoryRetention {
            raw: std::time::Duration::from_secs(7 * 86_400),
            minute: Some(std::time::Duration::from_secs(30 * 86_400)),
            hour: Some(std::time::Duration::from_secs(400 * 86_400)),
            day: None,
        }
    }
}

impl HistoryRetention {
    /// Retention of one resolution.
    pub fn of(&self, res: Resolution) -> Option<std::time::Duration> {
        match res {
            Resolution::Minute => self.minute,
            Resolution::Hour => self.hour,
            Resolution::Day => self.day,
        }
    }

    /// The finest resolution still kept for data starting at `from_ms`.
    pub fn finest_for(&self, from_ms: i64, now_ms: i64) -> Resolution {
        for res in Resolution::ALL {
            match self.of(res) {
                None => return res,
                Some(keep) => {
                    let keep = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
                    if from_ms >= now_ms.saturating_sub(keep) {
                        return res;
                    }
                }
            }
        }
        Resolution::Day
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_has_one_bin_and_bins_grow_monotonically() {
        let mut last = 0;
        for us in 1..200_000u64 {
            let b = bin_of(us);
            assert!(b >= last, "{us}");
            last = b;
        }
        for b in 8..BINS - 1 {
            let v = bin_value_us(b);
            assert_eq!(bin_of(v), b, "bin {b} value {v}");
        }
    }

    #[test]
    fn percentiles_come_within_a_bin_and_merge_by_adding() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        for ms in 1..=100u64 {
            if ms % 2 == 0 { &mut a } else { &mut b }.record(ms * 1000);
        }
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged.count(), 100);
        let p = merged.percentiles().unwrap();
        for (got, want) in [(p.p50, 50_000.0), (p.p95, 95_000.0), (p.p99, 99_000.0)] {
            let err = (got as f64 - want).abs() / want;
            assert!(err < 0.13, "{got} vs {want}");
        }
        assert_eq!(Histogram::from_pairs(&merged.to_pairs()), merged);
    }

    #[test]
    fn codes_stay_bounded() {
        let mut r = Rollup::default();
        for i in 0..20 {
            r.record(false, Some(&format!("code_{i:02}")), &[0; 5]);
        }
        assert_eq!(r.codes.len(), MAX_CODES + 1);
        assert_eq!(r.codes[OTHER_CODE], 12);
        let back = Rollup::default().with_body(&r.body());
        assert_eq!(back.codes, r.codes);
    }

    #[test]
    fn a_gap_splits_over_the_buckets_it_crosses() {
        // Results at 10:00:00 and 10:05:30, stale after 90 s: STALE from
        // 10:01:30 to 10:05:30.
        let gap = closed_gap(0, 330_000, 90_000).unwrap();
        assert_eq!(gap, (90_000, 330_000));
        let spans = stale_spans(Resolution::Minute, gap.0, gap.1);
        assert_eq!(
            spans,
            [
                (60_000, 30_000),
                (120_000, 60_000),
                (180_000, 60_000),
                (240_000, 60_000),
                (300_000, 30_000)
            ]
        );
        assert_eq!(stale_spans(Resolution::Hour, gap.0, gap.1), [(0, 240_000)]);
        assert_eq!(
            closed_gap(0, 90_000, 90_000),
            None,
            "exactly stale_after is fresh"
        );
    }

    fn rollup(count: u64, failures: u64, stale_ms: i64) -> Rollup {
        Rollup {
            count,
            failures,
            stale_ms,
            ..Rollup::default()
        }
    }

    #[test]
    fn stale_time_is_never_up() {
        // One minute half STALE with one passing run: 30 s up, 30 s STALE.
        let s = Slot::region(0, 60_000, &rollup(1, 0, 30_000));
        assert_eq!((s.up_ms, s.down_ms, s.stale_ms), (30_000.0, 0.0, 30_000.0));
        // A fully STALE minute: no up, no down — uptime is unchanged by it.
        let stale = Slot::region(60_000, 60_000, &rollup(0, 0, 60_000));
        assert_eq!(stale.status(), SlotStatus::Stale);
        let failing = Slot::region(120_000, 60_000, &rollup(1, 1, 0));
        let u = Uptime::of(&[s, stale, failing]);
        assert_eq!(u.stale_ms, 90_000.0);
        // 30 s up of 90 s observed.
        assert!((u.percent().unwrap() - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            Uptime::of(&[stale]).percent(),
            None,
            "only STALE: no uptime at all"
        );
    }

    #[test]
    fn overall_is_down_only_when_min_regions_failed_in_the_same_minute() {
        let up = Slot::region(0, 60_000, &rollup(1, 0, 0));
        let down = Slot::region(0, 60_000, &rollup(1, 1, 0));
        let stale = Slot::region(0, 60_000, &rollup(0, 0, 60_000));
        // One of three failed, quorum 2: up.
        let o = overall(0, 60_000, &[down, up, up], 2);
        assert_eq!((o.up_ms, o.down_ms), (60_000.0, 0.0));
        // Two failed: down.
        let o = overall(0, 60_000, &[down, down, up], 2);
        assert_eq!((o.up_ms, o.down_ms), (0.0, 60_000.0));
        // One failed, one STALE, quorum 2: the STALE one does not count as failing.
        let o = overall(0, 60_000, &[down, stale, up], 2);
        assert_eq!(o.down_ms, 0.0);
        // Every region STALE: STALE overall, neither up nor down.
        let o = overall(0, 60_000, &[stale, stale], 1);
        assert_eq!((o.up_ms, o.down_ms, o.stale_ms), (0.0, 0.0, 60_000.0));
        assert_eq!(o.status(), SlotStatus::Stale);
        // Quorum 1: any failing region makes it down.
        let o = overall(0, 60_000, &[down, up], 1);
        assert_eq!(o.down_ms, 60_000.0);
    }

    #[test]
    fn a_month_is_midnight_to_midnight_in_its_zone() {
        let (s, e) = month_range("2026-03", "Europe/Berlin").unwrap();
        // 1 March 00:00 CET = 28 Feb 23:00 UTC; 1 April 00:00 CEST = 31 Mar 22:00 UTC.
        assert_eq!(s, 1_772_319_600_000);
        assert_eq!(e, 1_774_994_400_000);
        // 31 days less the hour DST took.
        assert_eq!(e - s, (31 * 24 - 1) * 3_600_000);
        let (s, e) = month_range("2026-12", "UTC").unwrap();
        assert_eq!((s, e - s), (1_796_083_200_000, 31 * 86_400_000));
        let (s, _) = month_range("2026-02", "Asia/Kolkata").unwrap();
        assert_eq!(
            s % 3_600_000,
            1_800_000,
            "a half-hour zone starts mid-hour in UTC"
        );
        assert!(matches!(
            month_range("2026-13", "UTC"),
            Err(MonthError::Month(_))
        ));
        assert!(matches!(
            month_range("26-01", "UTC"),
            Err(MonthError::Month(_))
        ));
        assert!(matches!(
            month_range("2026-01", "Mars/Olympus"),
            Err(MonthError::Zone(_))
        ));
    }

    #[test]
    fn the_finest_kept_resolution_serves_a_range() {
        let r = HistoryRetention::default();
        let day = 86_400_000;
        let now = 1000 * day;
        assert_eq!(r.finest_for(now - 29 * day, now), Resolution::Minute);
        assert_eq!(r.finest_for(now - 31 * day, now), Resolution::Hour);
        assert_eq!(r.finest_for(now - 401 * day, now), Resolution::Day);
    }

    fn row(region: &str, bucket_ms: i64, r: Rollup) -> crate::store::RollupRow {
        crate::store::RollupRow {
            check_id: "api".into(),
            region: region.into(),
            resolution: Resolution::Minute,
            bucket_ms,
            rollup: r,
        }
    }

    #[test]
    fn an_open_gap_is_stale_until_now_and_the_current_bucket_is_cut_at_now() {
        const MIN: i64 = 60_000;
        // eu passed at 0 and 1 min, then nothing; us passed every minute, failing at 3.
        let rows = vec![
            row("eu", 0, rollup(1, 0, 0)),
            row("eu", MIN, rollup(1, 0, 0)),
            row("us", 0, rollup(1, 0, 0)),
            row("us", MIN, rollup(1, 0, 0)),
            row("us", 2 * MIN, rollup(1, 0, 0)),
            row("us", 3 * MIN, rollup(1, 1, 0)),
            row("us", 4 * MIN, rollup(1, 0, 0)),
        ];
        let regions = ["eu".to_owned(), "us".to_owned()];
        let cursors = [("eu".to_owned(), MIN), ("us".to_owned(), 4 * MIN)];
        let now = 4 * MIN + 30_000;
        let s = Series::build(
            Resolution::Minute,
            0,
            10 * MIN,
            now,
            &regions,
            &rows,
            &cursors,
            Some(90_000),
        );
        assert_eq!(s.starts.len(), 5, "no slots after now");
        let eu = &s.regions["eu"];
        // STALE from 2:30 to now (4:30).
        let stale: Vec<f64> = eu.iter().map(|x| x.stale_ms).collect();
        assert_eq!(stale, [0.0, 0.0, 30_000.0, 60_000.0, 30_000.0]);
        assert_eq!(eu[4].width_ms, 30_000, "the current minute is half over");
        let eu_up = Uptime::of(eu);
        assert_eq!(eu_up.percent(), Some(100.0), "STALE never lowers uptime");
        assert_eq!(eu_up.stale_ms, 120_000.0);
        // Quorum 2: us failing alone at 3 min is not down overall.
        let o = Uptime::of(&s.overall(2));
        assert_eq!(o.down_ms, 0.0);
        // Quorum 1: that minute is down.
        let o = Uptime::of(&s.overall(1));
        assert_eq!(o.down_ms, 60_000.0);
        let us = Uptime::of(&s.regions["us"]);
        assert_eq!((us.up_ms, us.down_ms), (210_000.0, 60_000.0));
    }

    #[test]
    fn bodies_and_summaries_read_back_what_was_written() {
        let mut r = Rollup::default();
        for ms in [12u64, 15, 480, 9_000] {
            r.record(true, None, &[ms * 100, ms * 200, 0, ms * 500, ms * 1000]);
        }
        r.record(false, Some("timeout"), &[0; 5]);
        let body = r.body();
        assert!(body.len() < 64, "{} bytes", body.len());
        assert_eq!(
            Rollup {
                count: r.count,
                failures: r.failures,
                ..Rollup::default()
            }
            .with_body(&body),
            r
        );
        // A truncated body reads what it can, without failing.
        for n in 0..body.len() {
            let cut = Rollup::default().with_body(&body[..n]);
            let whole = Rollup {
                count: r.count,
                failures: r.failures,
                ..cut
            };
            assert_ne!(
                whole,
                r,
                "{n} bytes of {} never read as the whole",
                body.len()
            );
        }
        let mut v = Vec::new();
        for n in [0u64, 127, 128, 300_000, u64::MAX] {
            v.clear();
            put_varint(&mut v, n);
            let mut at = 0;
            assert_eq!(get_varint(&v, &mut at), Some(n));
            assert_eq!(at, v.len());
        }

        const HOUR: i64 = 3_600_000;
        let mut s = Summary::default();
        for h in 0..200 {
            s.add(Resolution::Hour, h * HOUR, &rollup(60, h as u64 % 3, 1_000));
        }
        s.add(Resolution::Day, 0, &rollup(1440, 2, 0));
        s.trim();
        assert_eq!(
            s.hours.len(),
            SUMMARY_HOURS as usize,
            "only the newest hours are kept"
        );
        assert_eq!(
            *s.hours.keys().next().unwrap(),
            (200 - SUMMARY_HOURS) * HOUR
        );
        let bytes = s.encode();
        assert!(
            bytes.len() < 6 * s.hours.len() + 16,
            "{} bytes",
            bytes.len()
        );
        assert_eq!(Summary::decode(&bytes), s);
    }

    #[test]
    fn summary_slots_are_the_series_slots_of_the_same_rollups() {
        const HOUR: i64 = 3_600_000;
        let rows = vec![
            row("eu", 0, rollup(60, 0, 0)),
            row("eu", HOUR, rollup(30, 3, 1_800_000)),
        ];
        let mut hour_rows = rows.clone();
        for r in &mut hour_rows {
            r.resolution = Resolution::Hour;
        }
        let mut sum = Summary::default();
        for r in &hour_rows {
            sum.add(Resolution::Hour, r.bucket_ms, &r.rollup);
        }
        // eu silent since 1:20, stale after 3 min; now 4:30.
        let now = 4 * HOUR + 1_800_000;
        let last = HOUR + 1_200_000;
        let series = Series::build(
            Resolution::Hour,
            0,
            now + 1,
            now,
            &["eu".to_owned()],
            &hour_rows,
            &[("eu".to_owned(), last)],
            Some(180_000),
        );
        let slots = sum.slots(Resolution::Hour, 0, now, Some(last), Some(180_000));
        assert_eq!(slots, series.regions["eu"]);
        assert_eq!(slots.len(), 5);
        assert_eq!(slots[3].status(), SlotStatus::Stale);
        assert_eq!(slots[4].width_ms, 1_800_000);
    }

    #[test]
    fn a_month_in_its_zone_counts_only_its_own_minutes_and_stale_time() {
        // April 2026 in Berlin starts at 31 March 22:00 UTC (CEST).
        let (start, end) = month_range("2026-04", "Europe/Berlin").unwrap();
        const MIN: i64 = 60_000;
        // eu failed at 21:58 and 21:59 UTC (March in Berlin), passed at
        // 22:00 and 22:01, then went silent (stale after 90 s: STALE from
        // 22:02:30) until its next result at 22:04:30.
        let rows = vec![
            row("eu", start - 2 * MIN, rollup(1, 1, 0)),
            row("eu", start - MIN, rollup(1, 1, 0)),
            row("eu", start, rollup(1, 0, 0)),
            row("eu", start + MIN, rollup(1, 0, 0)),
            row("eu", start + 2 * MIN, rollup(0, 0, 30_000)),
            row("eu", start + 3 * MIN, rollup(0, 0, 60_000)),
            row("eu", start + 4 * MIN, rollup(1, 0, 30_000)),
        ];
        // The reader's clock: 22:05 UTC on 31 March, inside April in Berlin.
        let now = start + 5 * MIN;
        let april = Series::build(
            Resolution::Minute,
            start,
            end,
            now,
            &["eu".to_owned()],
            &rows,
            &[("eu".to_owned(), start + 4 * MIN + 30_000)],
            Some(90_000),
        );
        let u = Uptime::of(&april.overall(1));
        assert_eq!(u.down_ms, 0.0, "March's failures are not April's");
        assert_eq!(u.stale_ms, 120_000.0, "STALE apart, never up");
        assert_eq!(u.up_ms, 150_000.0);
        assert_eq!(u.percent(), Some(100.0));
        assert_eq!(april.starts.first(), Some(&start));
        assert_eq!(april.starts.len(), 6, "no slot after the reader's now");
        // The same minutes read as March (UTC midnight is later): the failures count.
        let (m_start, m_end) = month_range("2026-03", "Europe/Berlin").unwrap();
        assert_eq!(m_end, start);
        let march = Series::build(
            Resolution::Minute,
            m_start,
            m_end,
            now,
            &["eu".to_owned()],
            &rows,
            &[],
            None,
        );
        assert_eq!(Uptime::of(&march.overall(1)).down_ms, 120_000.0);
    }
}
