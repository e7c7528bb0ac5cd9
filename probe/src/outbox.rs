//! The outbox: results waiting for the controller's acknowledgement, on disk.
//!
//! # Why a hand-written log
//! The access pattern is a strict FIFO: append at the tail, read in order,
//! acknowledge from the head. A segmented append-only log does exactly that
//! with sequential writes, O(1) acknowledgement (a persisted pointer) and
//! bounds enforced by deleting whole segments. A B-tree store (SQLite, redb)
//! would pay an index update and page write per record plus a delete per ack,
//! for an ordering we already have. Every record is checksummed, so a torn
//! write is detected, not trusted.
//!
//! # Format
//! Directory `<dir>/`:
//! - `<first_seq:020>.seg`: records `[len u32 LE][crc32c u32 LE][seq u64 LE]
//!   [unix_ms i64 LE][payload]`, where payload is the protobuf `CheckResult`
//!   and the CRC-32C covers seq, time and payload. Within a segment sequences
//!   are contiguous.
//! - `acked`: `[through u64 LE][crc32c u32 LE]`, overwritten in place with
//!   one 12-byte `pwrite` per acknowledgement (no file churn on the hot path).
//!   Every record with `seq <= through` is committed at the controller. A torn
//!   or damaged pointer fails its checksum and reads as 0: everything still on
//!   disk is resent, which the controller ignores by result id.
//! - A segment is deleted once every record in it is acknowledged — except
//!   the segment being appended to, which stays until it is rotated out
//!   (deleting it would mean an unlink and a file creation per ack). On open,
//!   fully acknowledged segments are deleted.
//!
//! # Invariants
//! - A result is appended (one `write` of the whole record) before the
//!   reporter can see it; it is removed only when the controller — which acks
//!   only after its own commit — has acknowledged it.
//! - Sequences strictly increase, across restarts too: the next sequence is
//!   one past the highest on disk or acknowledged. A fresh directory starts at
//!   the Unix time in microseconds.
//!
//! # Crash behaviour
//! - `kill -9`: completed writes are in the page cache and survive. On open,
//!   each segment is scanned; the first record whose length or checksum does
//!   not hold ends the segment (a torn tail is truncated away). Nothing that
//!   was appended completely is lost.
//! - Power loss: with `fsync = "batch"` (default) the segment is fsynced at
//!   most `fsync_interval` (500 ms) after an append, so up to that much of the
//!   newest results can be lost; `"always"` fsyncs every append; `"never"`
//!   leaves it to the OS. The `acked` pointer is not fsynced: losing it only
//!   makes the probe resend results the controller already has, which it
//!   ignores by result id.
//!
//! # Bounds
//! Beyond `max_size` bytes the oldest segment is deleted; a segment whose
//! newest record is older than `max_age` is deleted. Unacknowledged results
//! in it are counted in `dropped{reason}` (`size`, `age`, `corrupt`, `io`)
//! and a warning is logged at most once a minute. Checks never stop.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use outpost_proto::v1::{CheckResult, PhaseTimings};
use prost::Message;
use tokio::sync::Notify;

use crate::check::Outcome;

const HEADER: usize = 24;
/// Records larger than this are refused (a result is a few KiB at most).
const MAX_RECORD: usize = 16 * 1024 * 1024;
/// Recent records kept in memory so live streaming needs no disk reads.
const CACHE_RECORDS: usize = 4096;

/// When appended records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every append.
    Always,
    /// At most this long after an append, from a background thread.
    Batch(Duration),
    /// Left to the operating system.
    Never,
}

/// Outbox location and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Directory of the log.
    pub dir: PathBuf,
    /// Bytes on disk at most (whole segments are dropped beyond it).
    pub max_bytes: u64,
    /// Age of the newest record in a segment at most.
    pub max_age: Duration,
    /// Durability policy.
    pub fsync: Fsync,
}

impl OutboxConfig {
    /// Defaults: 1 GiB, 7 days, fsync batched every 500 ms.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: 1024 * 1024 * 1024,
            max_age: Duration::from_secs(7 * 86400),
            fsync: Fsync::Batch(Duration::from_millis(500)),
        }
    }

    fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(4096, 16 * 1024 * 1024)
    }
}

/// Opening or writing the outbox failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// Filesystem error, with the path involved.
    #[error("outbox {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Why results were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// The outbox exceeded `max_size`.
    Size,
    /// Results older than `max_age`.
    Age,
    /// A damaged record and everything after it in its segment.
    Corrupt,
    /// A write failed (disk full, I/O error).
    Io,
}

impl DropReason {
    /// Label value for `outpost_probe_outbox_dropped_total{reason}`.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Size => "size",
            DropReason::Age => "age",
            DropReason::Corrupt => "corrupt",
            DropReason::Io => "io",
        }
    }
}

#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    first: u64,
    last: u64,
    /// Bytes of valid records (a damaged tail beyond is ignored).
    bytes: u64,
    newest_ms: i64,
}

impl Segment {
    fn count_after(&self, acked: u64) -> u64 {
        if self.last <= acked {
            0
        } else {
            self.last - self.first.max(acked + 1) + 1
        }
    }
}

struct Reader {
    first: u64,
    file: io::BufReader<File>,
    offset: u64,
}

struct Inner {
    segments: BTreeMap<u64, Segment>,
    writer: Option<(u64, File)>,
    acked: u64,
    next_seq: u64,
    /// Next sequence to hand to the reporter on this stream.
    next_send: u64,
    cache: VecDeque<CheckResult>,
    reader: Option<Reader>,
    dropped: BTreeMap<DropReason, u64>,
    last_drop_log: Option<Instant>,
    dirty: bool,
    acked_file: Option<File>,
    /// Highest sequence of a result that should not wait: a failure, or a
    /// pass whose check's previous result here failed or is unknown.
    urgent_through: u64,
    /// Whether each check's newest pushed result passed.
    last_ok: HashMap<String, bool>,
}

/// Results waiting for acknowledgement, durable on disk.
pub struct Outbox {
    cfg: OutboxConfig,
    inner: Arc<Mutex<Inner>>,
    notify: Notify,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("dir", &self.cfg.dir)
            .field("unacked", &self.len())
            .finish()
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.sync();
    }
}

/// Converts an outcome to its wire form.
pub fn to_wire(outcome: &Outcome, version: u64, sequence: u64) -> CheckResult {
    let us = |d: Option<Duration>| d.map(|d| d.as_micros() as u64).unwrap_or(0);
    let (code, message) = match &outcome.result {
        Ok(()) => (String::new(), String::new()),
        Err(f) => (
            f.code().as_str().to_owned(),
            crate::bound::clip(
                &crate::redact::text(&crate::redact::scrub(&f.to_string())),
                crate::bound::MAX_MESSAGE,
            )
            .into_owned(),
        ),
    };
    CheckResult {
        result_id: uuid::Uuid::now_v7().to_string(),
        sequence,
        check_id: outcome.check_id.clone(),
        assignment_version: version,
        kind: outcome.kind.as_str().to_owned(),
        started_at_unix_ms: (outcome.started_at.unix_timestamp_nanos() / 1_000_000) as i64,
        ok: outcome.ok(),
        failure_code: code,
        failure_message: message,
        phases: Some(PhaseTimings {
            dns_us: us(outcome.phases.dns),
            connect_us: us(outcome.phases.connect),
            tls_us: us(outcome.phases.tls),
            first_byte_us: us(outcome.phases.first_byte),
            total_us: outcome.phases.total.as_micros() as u64,
        }),
        details_json: crate::bound::clip_details(&outcome.observed),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// CRC-32C (Castagnoli: the `CRC_32_ISCSI` parameters) of `parts` in order.
/// The checksum of every record and of the `acked` pointer: segments written
/// by any version read back (tested against the RFC 3720 vectors and a
/// record written by the earlier hand-rolled table).
pub fn crc32c(parts: &[&[u8]]) -> u32 {
    const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let mut digest = CASTAGNOLI.digest();
    for p in parts {
        digest.update(p);
    }
    digest.finalize()
}

fn encode_record(seq: u64, ts_ms: i64, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER + payload.len());
    let s = seq.to_le_bytes();
    let t = ts_ms.to_le_bytes();
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32c(&[&s, &t, payload]).to_le_bytes());
    buf.extend_from_slice(&s);
    buf.extend_from_slice(&t);
    buf.extend_from_slice(payload);
    buf
}

/// Reads one record; `Ok(None)` at a clean end, `Err` on a damaged record.
fn read_record(r: &mut impl Read) -> Result<Option<(u64, i64, Vec<u8>)>, ()> {
    let mut h = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
    let field = |a: usize, b: usize| -> [u8; 8] {
        let mut x = [0u8; 8];
        x[..b - a].copy_from_slice(&h[a..b]);
        x
    };
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let seq = u64::from_le_bytes(field(8, 16));
    let ts = i64::from_le_bytes(field(16, 24));
    if len > MAX_RECORD {
        return Err(());
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(|_| ())?;
    if crc32c(&[&h[8..16], &h[16..24], &payload]) != crc {
        return Err(());
    }
    Ok(Some((seq, ts, payload)))
}

fn seg_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// Scans a segment: its valid prefix, and whether a damaged tail followed.
fn scan(path: &Path, first_name: u64) -> io::Result<(Option<Segment>, bool)> {
    let mut r = io::BufReader::new(File::open(path)?);
    let mut seg: Option<Segment> = None;
    let mut bytes = 0u64;
    loop {
        match read_record(&mut r) {
            Ok(Some((seq, ts, payload))) => {
                let contiguous = match &seg {
                    None => seq == first_name,
                    Some(s) => seq == s.last + 1,
                };
                if !contiguous {
                    return Ok((seg, true));
                }
                bytes += (HEADER + payload.len()) as u64;
                match &mut seg {
                    None => {
                        seg = Some(Segment {
                            path: path.to_owned(),
                            first: seq,
                            last: seq,
                            bytes,
                            newest_ms: ts,
                        })
                    }
                    Some(s) => {
                        s.last = seq;
                        s.bytes = bytes;
                        s.newest_ms = s.newest_ms.max(ts);
                    }
                }
            }
            Ok(None) => return Ok((seg, false)),
            Err(()) => return Ok((seg, true)),
        }
    }
}

impl Outbox {
    /// Opens (or creates) the outbox in `cfg.dir`, repairing a torn tail.
    pub fn open(cfg: OutboxConfig) -> Result<Self, OutboxError> {
        crate::private::create_dir_all(&cfg.dir).map_err(io_err(&cfg.dir))?;
        let acked = read_acked(&cfg.dir);
        let mut segments = BTreeMap::new();
        let mut corrupt_segments = 0u64;
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&cfg.dir).map_err(io_err(&cfg.dir))? {
            let entry = entry.map_err(io_err(&cfg.dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".seg")
                && let Ok(first) = stem.parse::<u64>()
            {
                names.push((first, path));
            } else if name == "acked.tmp" {
                // Left by versions that replaced the pointer by rename.
                let _ = fs::remove_file(&path);
            }
        }
        names.sort();
        let last_index = names.len().saturating_sub(1);
        for (i, (first, path)) in names.into_iter().enumerate() {
            let (seg, damaged) = scan(&path, first).map_err(io_err(&path))?;
            match seg {
                Some(s) if s.last > acked => {
                    if damaged {
                        // Truncate the damaged tail so appends continue cleanly.
                        let f = OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .map_err(io_err(&path))?;
                        f.set_len(s.bytes).map_err(io_err(&path))?;
                        if i != last_index {
                            corrupt_segments += 1;
                        }
                    }
                    segments.insert(s.first, s);
                }
                _ => {
                    // Empty, unreadable from the start, or fully acknowledged.
                    if damaged && i != last_index {
                        corrupt_segments += 1;
                    }
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let highest = segments
            .values()
            .map(|s| s.last)
            .max()
            .unwrap_or(0)
            .max(acked);
        let next_seq = if highest == 0 {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros() as u64
        } else {
            highest + 1
        };
        let mut dropped = BTreeMap::new();
        if corrupt_segments > 0 {
            dropped.insert(DropReason::Corrupt, corrupt_segments);
            tracing::warn!(
                segments = corrupt_segments,
                "outbox: damaged records found; the rest of those segments was dropped"
            );
        }
        let inner = Inner {
            segments,
            writer: None,
            acked,
            next_seq,
            next_send: acked + 1,
            cache: VecDeque::new(),
            reader: None,
            dropped,
            last_drop_log: None,
            dirty: false,
            acked_file: None,
            urgent_through: 0,
            last_ok: HashMap::new(),
        };
        let ob = Self {
            cfg,
            inner: Arc::new(Mutex::new(inner)),
            notify: Notify::new(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        if let Fsync::Batch(every) = ob.cfg.fsync {
            ob.start_syncer(every);
        }
        Ok(ob)
    }

    fn start_syncer(&self, every: Duration) {
        let inner = Arc::downgrade(&self.inner);
        let stop = self.stop.clone();
        let spawned = std::thread::Builder::new()
            .name("outbox-fsync".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    let Some(inner) = inner.upgrade() else { return };
                    let file = {
                        let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
                        if !g.dirty {
                            continue;
                        }
                        g.dirty = false;
                        g.writer.as_ref().and_then(|(_, f)| f.try_clone().ok())
                    };
                    if let Some(f) = file
                        && let Err(e) = f.sync_data()
                    {
                        tracing::warn!(error = %e, "outbox fsync failed");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "outbox: cannot start the fsync thread; falling back to the OS");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a result; returns its sequence. Never fails: a write error
    /// drops the result, counts it (`io`) and logs.
    pub fn push(&self, outcome: &Outcome, version: u64) -> u64 {
        let mut g = self.lock();
        let seq = g.next_seq;
        g.next_seq += 1;
        let wire = to_wire(outcome, version, seq);
        let ts = wire.started_at_unix_ms;
        let was_ok = g.last_ok.insert(outcome.check_id.clone(), outcome.ok());
        if !outcome.ok() || was_ok != Some(true) {
            g.urgent_through = seq;
        }
        match self.append(&mut g, seq, ts, &wire) {
            Ok(()) => {
                g.cache.push_back(wire);
                if g.cache.len() > CACHE_RECORDS {
                    g.cache.pop_front();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox write failed; result dropped");
                self.count_drop(&mut g, DropReason::Io, 1);
                // Keep sequences contiguous within segments: start a new one.
                g.writer = None;
            }
        }
        self.enforce_bounds(&mut g, now_ms());
        drop(g);
        self.notify.notify_one();
        seq
    }

    fn append(
        &self,
        g: &mut Inner,
        seq: u64,
        ts: i64,
        wire: &CheckResult,
    ) -> Result<(), OutboxError> {
        let dir = self.cfg.dir.clone();
        let rotate = match &g.writer {
            Some((first, _)) => g
                .segments
                .get(first)
                .is_none_or(|s| s.bytes >= self.cfg.segment_bytes()),
            None => true,
        };
        if rotate {
            let path = seg_path(&dir, seq);
            let f = crate::private::options()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?;
            if let Some((_, old)) = g.writer.take() {
                let _ = old.sync_data();
            }
            g.writer = Some((seq, f));
            g.segments.insert(
                seq,
                Segment {
                    path,
                    first: seq,
                    last: seq - 1,
                    bytes: 0,
                    newest_ms: ts,
                },
            );
        }
        let rec = encode_record(seq, ts, &wire.encode_to_vec());
        let Some((first, f)) = g.writer.as_mut() else {
            unreachable!("writer opened above")
        };
        let first = *first;
        let path = seg_path(&dir, first);
        f.write_all(&rec).map_err(io_err(&path))?;
        if self.cfg.fsync == Fsync::Always {
            f.sync_data().map_err(io_err(&path))?;
        } else {
            g.dirty = true;
        }
        if let Some(s) = g.segments.get_mut(&first) {
            s.last = seq;
            s.bytes += rec.len() as u64;
            s.newest_ms = s.newest_ms.max(ts);
        }
        Ok(())
    }

    fn count_drop(&self, g: &mut Inner, reason: DropReason, n: u64) {
        if n == 0 {
            return;
        }
        *g.dropped.entry(reason).or_default() += n;
        let now = Instant::now();
        if g.last_drop_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
        {
            g.last_drop_log = Some(now);
            let total: u64 = g.dropped.values().sum();
            tracing::warn!(
                reason = reason.as_str(),
                dropped_total = total,
                "outbox: dropping results"
            );
        }
    }

    fn enforce_bounds(&self, g: &mut Inner, now_ms: i64) {
        let max_age_ms = self.cfg.max_age.as_millis() as i64;
        loop {
            let total: u64 = g.segments.values().map(|s| s.bytes).sum();
            let Some((&first, oldest)) = g.segments.iter().next() else {
                return;
            };
            let is_writer = g.writer.as_ref().is_some_and(|(w, _)| *w == first);
            let reason = if total > self.cfg.max_bytes && (!is_writer || g.segments.len() > 1) {
                DropReason::Size
            } else if now_ms - oldest.newest_ms > max_age_ms {
                DropReason::Age
            } else {
                return;
            };
            let lost = oldest.count_after(g.acked);
            let last = oldest.last;
            let path = oldest.path.clone();
            g.segments.remove(&first);
            if is_writer {
                g.writer = None;
            }
            let _ = fs::remove_file(&path);
            if g.reader.as_ref().is_some_and(|r| r.first == first) {
                g.reader = None;
            }
            g.next_send = g.next_send.max(last + 1);
            self.count_drop(g, reason, lost);
        }
    }

    /// Up to `max` results not yet sent on this stream, in sequence order.
    pub fn take_unsent(&self, max: usize) -> Vec<CheckResult> {
        let mut g = self.lock();
        let mut out = Vec::new();
        while out.len() < max {
            let want = g.next_send.max(g.acked + 1);
            if want >= g.next_seq {
                break;
            }
            // Live path: the record is still in the cache.
            if let Some(front) = g.cache.front()
                && front.sequence <= want
            {
                let idx = (want - front.sequence) as usize;
                if let Some(r) = g.cache.get(idx)
                    && r.sequence == want
                {
                    out.push(r.clone());
                    g.next_send = want + 1;
                    continue;
                }
            }
            // Backlog path: read from disk.
            match self.read_from_disk(&mut g, want) {
                Some(r) => {
                    g.next_send = r.sequence + 1;
                    out.push(r);
                }
                None => break,
            }
        }
        out
    }

    fn read_from_disk(&self, g: &mut Inner, want: u64) -> Option<CheckResult> {
        // The segment holding `want`, or the first one after a gap.
        let seg = g
            .segments
            .range(..=want)
            .next_back()
            .filter(|(_, s)| s.last >= want)
            .or_else(|| g.segments.range(want..).next())
            .map(|(_, s)| s.clone())?;
        if seg.last < seg.first {
            return None;
        }
        let reuse = g.reader.as_ref().is_some_and(|r| r.first == seg.first);
        if !reuse {
            let file = File::open(&seg.path).ok()?;
            g.reader = Some(Reader {
                first: seg.first,
                file: io::BufReader::new(file),
                offset: 0,
            });
        }
        let reader = g.reader.as_mut()?;
        loop {
            if reader.offset >= seg.bytes {
                g.reader = None;
                // Past this segment's valid records: continue in the next one.
                g.next_send = g.next_send.max(seg.last + 1);
                return None;
            }
            match read_record(&mut reader.file) {
                Ok(Some((seq, _, payload))) => {
                    reader.offset += (HEADER + payload.len()) as u64;
                    if seq < want {
                        continue;
                    }
                    return CheckResult::decode(payload.as_slice()).ok();
                }
                _ => {
                    g.reader = None;
                    return None;
                }
            }
        }
    }

    /// Forgets every result with `sequence <= through`; deletes segments that
    /// are fully acknowledged. Returns how many results were removed.
    pub fn ack(&self, through: u64) -> u64 {
        let mut g = self.lock();
        if through <= g.acked {
            return 0;
        }
        let before: u64 = g.segments.values().map(|s| s.count_after(g.acked)).sum();
        g.acked = through.min(g.next_seq.saturating_sub(1));
        let through = g.acked;
        if let Err(e) = write_acked(&self.cfg.dir, &mut g.acked_file, through) {
            tracing::warn!(error = %e, "outbox: cannot persist the ack pointer; acknowledged results may be resent");
        }
        let acked = g.acked;
        // Fully acknowledged segments are deleted, except the one being
        // appended to: deleting it would mean an unlink and a file creation per
        // ack (tens a second on a busy probe). It goes once it is rotated out
        // and acknowledged; until then the ack pointer says what is done.
        let writer = g.writer.as_ref().map(|(w, _)| *w);
        let done: Vec<u64> = g
            .segments
            .iter()
            .filter(|(f, s)| s.last <= acked && Some(**f) != writer)
            .map(|(f, _)| *f)
            .collect();
        for first in done {
            if let Some(s) = g.segments.remove(&first) {
                if g.reader.as_ref().is_some_and(|r| r.first == first) {
                    g.reader = None;
                }
                let _ = fs::remove_file(&s.path);
            }
        }
        while g.cache.front().is_some_and(|r| r.sequence <= acked) {
            g.cache.pop_front();
        }
        let after: u64 = g.segments.values().map(|s| s.count_after(acked)).sum();
        before - after
    }

    /// A new stream starts: everything unacknowledged is sent again.
    pub fn rewind(&self) {
        let mut g = self.lock();
        g.next_send = g.acked + 1;
        g.reader = None;
    }

    /// Waits until something is pushed.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// Results waiting for an ack.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.segments
            .values()
            .map(|s| s.count_after(g.acked))
            .sum::<u64>() as usize
    }

    /// True when nothing waits for an ack.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when some result was not yet sent on this stream.
    pub fn has_unsent(&self) -> bool {
        let g = self.lock();
        let want = g.next_send.max(g.acked + 1);
        g.segments
            .values()
            .any(|s| s.last >= want && s.last >= s.first)
    }

    /// True when an unsent result should go out without waiting: a failure,
    /// or a pass after a failure (or the first result of a check since the
    /// probe started). Passes after passes change nothing the controller
    /// pages on and can wait for the reporter's longer linger.
    pub fn has_urgent_unsent(&self) -> bool {
        let g = self.lock();
        g.urgent_through >= g.next_send.max(g.acked + 1)
    }

    /// Results dropped, all reasons.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped.values().sum()
    }

    /// Results dropped, by reason.
    pub fn dropped_by_reason(&self) -> Vec<(DropReason, u64)> {
        self.lock().dropped.iter().map(|(r, n)| (*r, *n)).collect()
    }

    /// Highest sequence handed out so far.
    pub fn last_sequence(&self) -> u64 {
        self.lock().next_seq.saturating_sub(1)
    }

    /// Sequence acknowledged through.
    pub fn acked_through(&self) -> u64 {
        self.lock().acked
    }

    /// Bytes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.lock().segments.values().map(|s| s.bytes).sum()
    }

    /// Flushes appended records to disk now.
    pub fn sync(&self) -> io::Result<()> {
        let g = self.lock();
        match &g.writer {
            Some((_, f)) => f.sync_data(),
            None => Ok(()),
        }
    }
}

fn read_acked(dir: &Path) -> u64 {
    let mut buf = [0u8; 12];
    let ok = File::open(dir.join("acked")).and_then(|mut f| {
        f.seek(SeekFrom::Start(0))?;
        f.read_exact(&mut buf)
    });
    if ok.is_err() {
        return 0;
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&buf[..8]);
    let crc = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if crc32c(&[&v]) == crc {
        u64::from_le_bytes(v)
    } else {
        0
    }
}

fn write_acked(dir: &Path, file: &mut Option<File>, through: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let v = through.to_le_bytes();
    let mut buf = [0u8; 12];
    buf[..8].copy_from_slice(&v);
    buf[8..].copy_from_slice(&crc32c(&[&v]).to_le_bytes());
    if file.is_none() {
        *file = Some(
            crate::private::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join("acked"))?,
        );
    }
    match file {
        Some(f) => f.write_all_at(&buf, 0),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Outcome, Phases};

    fn outcome() -> Outcome {
        Outcome {
            check_id: "c".into(),
            kind: crate::check::Kind::Http,
            started_at: time::OffsetDateTime::now_utc(),
            phases: Phases::default(),
            result: Ok(()),
            observed: crate::check::Observed::Other(serde_json::json!({ "pad": "x".repeat(200) })),
        }
    }

    fn cfg(dir: &Path) -> OutboxConfig {
        OutboxConfig {
            fsync: Fsync::Never,
            ..OutboxConfig::new(dir)
        }
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(&[b"123456789"]), 0xe306_9283);
        assert_eq!(crc32c(&[]), 0);
        // RFC 3720 B.4.
        assert_eq!(crc32c(&[&[0u8; 32]]), 0x8a91_36aa);
        assert_eq!(crc32c(&[&[0xffu8; 32]]), 0x62a8_ab43);
        let inc: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&[&inc]), 0x46dd_794e);
        // Parts are one stream.
        assert_eq!(crc32c(&[b"1234", b"", b"56789"]), 0xe306_9283);
    }

    /// A segment written by the hand-rolled CRC-32C table (before the `crc`
    /// crate) opens and its record is delivered: the checksums are the same.
    #[test]
    fn a_segment_written_by_the_earlier_implementation_still_reads() {
        const RECORD: &str = "7f000000b4694b6e07000000000000000068e5cf8b0100000a2430313930663165322d303030302d373030302d383030302d30303030303030303030303110071a187772697474656e2d6265666f72652d6372632d637261746520032a04687474703080d095ffbc31420774696d656f75744a0974696d6564206f75745a187b2275726c223a22687474703a2f2f612e746573742f227d";
        let bytes: Vec<u8> = (0..RECORD.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&RECORD[i..i + 2], 16).unwrap())
            .collect();
        // The stored checksum is the earlier implementation's.
        assert_eq!(&bytes[4..8], &0x6e4b_69b4u32.to_le_bytes());
        let d = tempfile::tempdir().unwrap();
        fs::write(seg_path(d.path(), 7), &bytes).unwrap();
        let o = Outbox::open(cfg(d.path())).unwrap();
        let got = o.take_unsent(10);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].sequence, 7);
        assert_eq!(got[0].check_id, "written-before-crc-crate");
        assert_eq!(got[0].details_json, r#"{"url":"http://a.test/"}"#);
        assert_eq!(o.push(&outcome(), 1), 8, "sequences continue after it");
    }

    /// A failure, a pass after a failure and a check's first result are
    /// urgent; a pass after a pass is not, and sending or acknowledging an
    /// urgent result ends the urgency.
    #[test]
    fn only_results_that_change_a_checks_outcome_are_urgent() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(cfg(d.path())).unwrap();
        let failing = || Outcome {
            result: Err(crate::check::Failure::Timeout {
                phase: crate::check::failure::Phase::Run,
                after: Duration::from_secs(1),
                target: None,
            }),
            ..outcome()
        };
        assert!(!o.has_urgent_unsent(), "nothing pushed");
        o.push(&outcome(), 1);
        assert!(o.has_urgent_unsent(), "the check's first result");
        assert_eq!(o.take_unsent(10).len(), 1);
        assert!(!o.has_urgent_unsent(), "sent");
        o.push(&outcome(), 1);
        assert!(
            o.has_unsent() && !o.has_urgent_unsent(),
            "a pass after a pass waits"
        );
        o.push(&failing(), 1);
        assert!(o.has_urgent_unsent(), "a failure");
        assert_eq!(o.take_unsent(10).len(), 2);
        o.push(&outcome(), 1);
        assert!(o.has_urgent_unsent(), "a pass after a failure");
        o.ack(o.last_sequence());
        assert!(!o.has_urgent_unsent(), "acknowledged");
        let other = Outcome {
            check_id: "d".into(),
            ..outcome()
        };
        o.push(&outcome(), 1);
        assert!(!o.has_urgent_unsent());
        o.push(&other, 1);
        assert!(o.has_urgent_unsent(), "another check's first result");
        o.rewind();
        assert!(o.has_urgent_unsent(), "a new stream resends it");
    }

    #[test]
    fn ack_removes_through_sequence_and_rewind_resends_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(cfg(d.path())).unwrap();
        let s: Vec<u64> = (0..4).map(|_| o.push(&outcome(), 1)).collect();
        assert_eq!(o.take_unsent(3).len(), 3);
        assert_eq!(o.ack(s[1]), 2);
        assert_eq!(o.len(), 2);
        assert_eq!(
            o.take_unsent(10)
                .iter()
                .map(|r| r.sequence)
                .collect::<Vec<_>>(),
            vec![s[3]]
        );
        o.rewind();
        assert_eq!(
            o.take_unsent(10)
                .iter()
                .map(|r| r.sequence)
                .collect::<Vec<_>>(),
            vec![s[2], s[3]]
        );
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn acks_keep_the_segment_being_written_and_delete_rotated_ones() {
        let d = tempfile::tempdir().unwrap();
        // 4 KiB segments: a handful of ~300-byte records each.
        let o = Outbox::open(OutboxConfig {
            max_bytes: 32 * 1024,
            ..cfg(d.path())
        })
        .unwrap();
        // Push and ack one at a time, as a quiet probe does: the segment being
        // written must survive every ack (no unlink and create per ack).
        let first = o.push(&outcome(), 1);
        let seg = segments(d.path());
        assert_eq!(seg.len(), 1);
        for _ in 0..5 {
            let s = o.push(&outcome(), 1);
            o.take_unsent(10);
            assert_eq!(o.ack(s), if s == first + 1 { 2 } else { 1 });
            assert_eq!(segments(d.path()), seg, "the writer segment stays");
            assert_eq!(o.len(), 0);
        }
        // Rotate past it: the old, fully acknowledged segment goes at the next ack.
        let mut last = 0;
        for _ in 0..40 {
            last = o.push(&outcome(), 1);
        }
        assert!(segments(d.path()).len() > 1);
        o.ack(last);
        let now = segments(d.path());
        assert_eq!(now.len(), 1, "{now:?}");
        assert_ne!(now, seg);
        drop(o);
        // Reopened, nothing acknowledged comes back, and sequences continue.
        let o = Outbox::open(cfg(d.path())).unwrap();
        assert_eq!(o.len(), 0);
        assert!(o.take_unsent(100).is_empty());
        assert_eq!(o.push(&outcome(), 1), last + 1);
    }

    #[test]
    fn reopen_keeps_unacked_results_and_sequence_order() {
        let d = tempfile::tempdir().unwrap();
        let (s, ids) = {
            let o = Outbox::open(cfg(d.path())).unwrap();
            let s: Vec<u64> = (0..10).map(|_| o.push(&outcome(), 1)).collect();
            let ids: Vec<String> = o.take_unsent(10).into_iter().map(|r| r.result_id).collect();
            o.ack(s[3]);
            (s, ids)
        };
        let o = Outbox::open(cfg(d.path())).unwrap();
        assert_eq!(o.len(), 6);
        let again = o.take_unsent(100);
        assert_eq!(
            again.iter().map(|r| r.sequence).collect::<Vec<_>>(),
            s[4..].to_vec()
        );
        // Same ids on resend: the controller can deduplicate.
        assert_eq!(
            again
                .iter()
                .map(|r| r.result_id.clone())
                .collect::<Vec<_>>(),
            ids[4..].to_vec()
        );
        assert_eq!(o.push(&outcome(), 1), s[9] + 1);
    }

    #[test]
    fn torn_tail_is_truncated_and_appends_continue() {
        let d = tempfile::tempdir().unwrap();
        let s = {
            let o = Outbox::open(cfg(d.path())).unwrap();
            (0..5).map(|_| o.push(&outcome(), 1)).collect::<Vec<u64>>()
        };
        // Tear the last record: chop 7 bytes off the segment.
        let seg = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 7)
            .unwrap();
        let o = Outbox::open(cfg(d.path())).unwrap();
        assert_eq!(o.len(), 4);
        assert_eq!(
            o.push(&outcome(), 1),
            s[4],
            "the torn record's sequence is reused; it was never complete"
        );
        let got: Vec<u64> = o.take_unsent(10).iter().map(|r| r.sequence).collect();
        assert_eq!(got, s.to_vec());
    }

    #[test]
    fn size_bound_drops_oldest_segments_and_counts_them() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(OutboxConfig {
            max_bytes: 64 * 1024,
            ..cfg(d.path())
        })
        .unwrap();
        for _ in 0..2000 {
            o.push(&outcome(), 1);
        }
        assert!(o.disk_bytes() <= 64 * 1024 + 8192, "{}", o.disk_bytes());
        let dropped = o.dropped_by_reason();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].0, DropReason::Size);
        assert_eq!(
            dropped[0].1 + o.len() as u64,
            2000,
            "every result is either kept or counted"
        );
        // What remains is still readable in order.
        let got: Vec<u64> = o.take_unsent(5000).iter().map(|r| r.sequence).collect();
        assert_eq!(got.len(), o.len());
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn age_bound_drops_segments_whose_newest_result_is_older_than_max_age() {
        // Age is measured from each result's own `started_at` (the run's
        // clock), so results started in the past stand in for time passing.
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(OutboxConfig {
            max_age: Duration::from_secs(3600),
            ..cfg(d.path())
        })
        .unwrap();
        let started = |ago: time::Duration| Outcome {
            started_at: time::OffsetDateTime::now_utc() - ago,
            ..outcome()
        };
        o.push(&started(time::Duration::minutes(61)), 1);
        assert_eq!(o.dropped_by_reason(), vec![(DropReason::Age, 1)]);
        assert_eq!(o.len(), 0);
        o.push(&started(time::Duration::minutes(59)), 1);
        o.push(&started(time::Duration::ZERO), 1);
        assert_eq!(o.len(), 2, "younger than max_age: kept");
        assert_eq!(o.dropped(), 1);
        let got: Vec<u64> = o.take_unsent(10).iter().map(|r| r.sequence).collect();
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn backlog_is_read_from_disk_beyond_the_cache() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(cfg(d.path())).unwrap();
        let n = CACHE_RECORDS + 500;
        for _ in 0..n {
            o.push(&outcome(), 1);
        }
        let mut got = Vec::new();
        loop {
            let b = o.take_unsent(500);
            if b.is_empty() {
                break;
            }
            got.extend(b.into_iter().map(|r| r.sequence));
        }
        assert_eq!(got.len(), n);
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
    }
}
