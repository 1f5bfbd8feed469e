//! The single-hit journal: every accepted hit is on disk before it is
//! answered, and becomes part of a file of the normal pipeline soon after.
//!
//! ```text
//! handlers ──(company, row)──▶ bounded queue ──▶ journal thread
//!                                                  append lines to open segment
//!                                                  fsync once per batch ──▶ answer all
//!                                                  seal when old or full (rename)
//! roller task: sealed segment ──▶ one gzipped CSV file per company
//!              (same pass and commit as an upload, idempotency key of
//!              node + segment + company) ──▶ remove the segment
//! ```
//!
//! Guarantees:
//! - A hit is answered only after the line holding it is fsynced (group
//!   commit: the hits that arrived while the previous batch was written
//!   share one fsync).
//! - A segment is removed only after every company's file of it is
//!   committed; rolling it again after a crash finds those files by their
//!   idempotency keys, so no hit is counted twice.
//! - A torn last line (a crash mid-write) was never answered and is
//!   skipped; any other unreadable line is counted and logged.
//! - At start, a segment left open by a crash is sealed and rolled.
//!
//! Lines are JSON (`{"c": company, "r": [row fields]}`), one per hit, so a
//! value holding a newline never splits a line.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Notify};

/// Hits written per fsync at most.
const MAX_GROUP: usize = 4096;

/// A segment is sealed at this size whatever its age (or at
/// [`Sealing::max_bytes`] when smaller), bytes.
const MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Line {
    /// Company id.
    c: String,
    /// The row's fields ([`super::request::COLUMNS`]).
    r: Vec<String>,
}

enum Msg {
    Append {
        line: Line,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Seal the open segment now (shutdown).
    Seal(oneshot::Sender<()>),
}

/// Why a hit was not journaled.
#[derive(Debug)]
pub enum AppendError {
    /// The queue is full: the disk is slower than the arrivals.
    Busy,
    /// The write or fsync failed.
    Io(io::Error),
}

/// The handle the handlers append through.
#[derive(Clone)]
pub struct Journal {
    tx: SyncSender<Msg>,
    dir: PathBuf,
    sealed: std::sync::Arc<Notify>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).finish()
    }
}

/// When the journal thread seals a segment.
#[derive(Debug, Clone, Copy)]
pub struct Sealing {
    /// Age of the open segment's first hit.
    pub max_age: Duration,
    /// Hits in one segment.
    pub max_hits: u64,
    /// Bytes in one segment (its file is at most this big uncompressed).
    pub max_bytes: u64,
    /// Hits waiting for the journal thread.
    pub queue: usize,
}

impl Journal {
    /// Opens the journal in `dir` (created), seals a segment a crash left
    /// open, and starts the journal thread.
    pub fn open(dir: &Path, sealing: Sealing) -> io::Result<Journal> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "open") {
                fs::rename(&path, path.with_extension("jsonl"))?;
            }
        }
        sync_dir(dir)?;
        let (tx, rx) = sync_channel(sealing.queue.max(1));
        let sealed = std::sync::Arc::new(Notify::new());
        let writer = Writer {
            dir: dir.to_path_buf(),
            sealing,
            open: None,
            counter: 0,
            sealed: sealed.clone(),
        };
        std::thread::Builder::new()
            .name("single-hit-journal".into())
            .spawn(move || writer.run(rx))?;
        Ok(Journal {
            tx,
            dir: dir.to_path_buf(),
            sealed,
        })
    }

    /// Appends one hit; resolves once it is on disk.
    pub async fn append(&self, company: &str, row: Vec<String>) -> Result<(), AppendError> {
        let (done, wait) = oneshot::channel();
        let msg = Msg::Append {
            line: Line {
                c: company.to_string(),
                r: row,
            },
            done,
        };
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(AppendError::Busy),
            Err(TrySendError::Disconnected(_)) => {
                return Err(AppendError::Io(io::Error::other("the journal has stopped")))
            }
        }
        match wait.await {
            Ok(r) => r.map_err(AppendError::Io),
            Err(_) => Err(AppendError::Io(io::Error::other("the journal has stopped"))),
        }
    }

    /// Seals the open segment (if any) and waits until it is.
    pub async fn seal(&self) {
        let (done, wait) = oneshot::channel();
        let tx = self.tx.clone();
        // The queue may be full: wait for room off the runtime.
        let sent = tokio::task::spawn_blocking(move || tx.send(Msg::Seal(done)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = wait.await;
        }
    }

    /// Resolves when a segment was sealed since the last call.
    pub async fn sealed(&self) {
        self.sealed.notified().await
    }

    /// Sealed segments, oldest first.
    pub fn sealed_segments(&self) -> io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        out.sort();
        Ok(out)
    }
}

/// The hits of one sealed segment, per company in arrival order.
#[derive(Debug, Default)]
pub struct SegmentHits {
    /// (company, rows), companies in order of their first hit.
    pub companies: Vec<(String, Vec<Vec<String>>)>,
    /// Lines that could not be read (not the torn last one).
    pub unreadable: u64,
    /// 1 when the last line was torn by a crash (never answered).
    pub torn: u64,
}

/// Reads a sealed segment.
pub fn read_segment(path: &Path) -> io::Result<SegmentHits> {
    let mut out = SegmentHits::default();
    let mut lines = BufReader::new(File::open(path)?).lines().peekable();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        let parsed = line
            .ok()
            .and_then(|l| serde_json::from_str::<Line>(&l).ok());
        match parsed {
            Some(Line { c, r }) => {
                let i = *index.entry(c.clone()).or_insert_with(|| {
                    out.companies.push((c, Vec::new()));
                    out.companies.len() - 1
                });
                out.companies[i].1.push(r);
            }
            None if last => out.torn = 1,
            None => out.unreadable += 1,
        }
    }
    Ok(out)
}

struct OpenSegment {
    path: PathBuf,
    file: BufWriter<File>,
    hits: u64,
    bytes: u64,
    opened: Instant,
}

struct Writer {
    dir: PathBuf,
    sealing: Sealing,
    open: Option<OpenSegment>,
    counter: u64,
    sealed: std::sync::Arc<Notify>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let wait = match &self.open {
                Some(s) => self.sealing.max_age.saturating_sub(s.opened.elapsed()),
                None => Duration::from_secs(3600),
            };
            match rx.recv_timeout(wait) {
                Ok(first) => {
                    let mut batch = Vec::new();
                    let mut seal_waiters = Vec::new();
                    let mut next = Some(first);
                    while let Some(m) = next.take() {
                        match m {
                            Msg::Append { line, done } => batch.push((line, done)),
                            Msg::Seal(done) => seal_waiters.push(done),
                        }
                        if batch.len() < MAX_GROUP {
                            next = rx.try_recv().ok();
                        }
                    }
                    if !batch.is_empty() {
                        self.write(batch);
                    }
                    if !seal_waiters.is_empty() {
                        self.seal();
                        for w in seal_waiters {
                            let _ = w.send(());
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.seal();
                    return;
                }
            }
            if let Some(s) = &self.open {
                if s.hits >= self.sealing.max_hits
                    || s.bytes >= self.sealing.max_bytes.min(MAX_SEGMENT_BYTES)
                    || s.opened.elapsed() >= self.sealing.max_age
                {
                    self.seal();
                }
            }
        }
    }

    fn write(&mut self, batch: Vec<(Line, oneshot::Sender<io::Result<()>>)>) {
        let result = self.try_write(&batch);
        if result.is_ok() {
            // Counted here, not by the handlers: a hit is accepted once it
            // is on disk, even when its client went away before the answer.
            metrics::counter!(crate::metrics::SINGLE_HITS.name, "outcome" => "accepted")
                .increment(batch.len() as u64);
        }
        if result.is_err() {
            // What was written of a failed batch may be torn: start a new
            // segment so the torn line is the last of this one.
            self.seal();
        }
        for (_, done) in batch {
            let _ = done.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }

    fn try_write(&mut self, batch: &[(Line, oneshot::Sender<io::Result<()>>)]) -> io::Result<()> {
        if self.open.is_none() {
            self.counter += 1;
            let millis = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let path = self
                .dir
                .join(format!("{millis:015}-{:08}.open", self.counter));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)?;
            sync_dir(&self.dir)?;
            self.open = Some(OpenSegment {
                path,
                file: BufWriter::with_capacity(256 * 1024, file),
                hits: 0,
                bytes: 0,
                opened: Instant::now(),
            });
        }
        let seg = self.open.as_mut().expect("opened above");
        let mut bytes = 0u64;
        for (line, _) in batch {
            let mut buf = serde_json::to_vec(line)?;
            buf.push(b'\n');
            bytes += buf.len() as u64;
            seg.file.write_all(&buf)?;
        }
        seg.file.flush()?;
        seg.file.get_ref().sync_data()?;
        seg.hits += batch.len() as u64;
        seg.bytes += bytes;
        Ok(())
    }

    fn seal(&mut self) {
        let Some(seg) = self.open.take() else {
            return;
        };
        drop(seg.file);
        let sealed = seg.path.with_extension("jsonl");
        match fs::rename(&seg.path, &sealed).and_then(|()| sync_dir(&self.dir)) {
            Ok(()) => self.sealed.notify_one(),
            Err(e) => tracing::error!(
                error = %e,
                segment = %seg.path.display(),
                "sealing a single-hit segment failed; it is sealed at the next start"
            ),
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hits_are_on_disk_when_answered_and_segments_seal_by_count() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(
            dir.path(),
            Sealing {
                max_age: Duration::from_secs(3600),
                max_hits: 3,
                max_bytes: 1 << 20,
                queue: 16,
            },
        )
        .unwrap();
        for i in 0..4 {
            let company = if i % 2 == 0 { "a" } else { "b" };
            j.append(company, vec![i.to_string()]).await.unwrap();
        }
        let sealed = j.sealed_segments().unwrap();
        assert_eq!(sealed.len(), 1, "3 hits seal a segment");
        let hits = read_segment(&sealed[0]).unwrap();
        let got: Vec<(String, usize)> = hits
            .companies
            .iter()
            .map(|(c, r)| (c.clone(), r.len()))
            .collect();
        assert_eq!(got, [("a".to_string(), 2), ("b".to_string(), 1)]);
        j.seal().await;
        assert_eq!(j.sealed_segments().unwrap().len(), 2);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_other_bad_lines_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        fs::write(
            &p,
            "{\"c\":\"a\",\"r\":[\"1\"]}\nnot json\n{\"c\":\"a\",\"r\":[\"2\"]}\n{\"c\":\"a\",\"r\":[",
        )
        .unwrap();
        let hits = read_segment(&p).unwrap();
        assert_eq!(hits.companies[0].1.len(), 2);
        assert_eq!((hits.unreadable, hits.torn), (1, 1));
    }

    #[test]
    fn a_segment_left_open_is_sealed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("1-1.open"), "{\"c\":\"a\",\"r\":[]}\n").unwrap();
        let j = Journal::open(
            dir.path(),
            Sealing {
                max_age: Duration::from_secs(1),
                max_hits: 10,
                max_bytes: 1 << 20,
                queue: 4,
            },
        )
        .unwrap();
        assert_eq!(j.sealed_segments().unwrap().len(), 1);
    }
}
