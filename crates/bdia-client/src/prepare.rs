//! `prepare`: CSV exports in, correct batch files out.
//!
//! ```text
//! inputs (plain or gzip, any order, any size)
//!   -> the format engine (the server's own rules)     invalid rows -> rejects.csv
//!   -> group = hash(visitor identity) % N             (stable across runs and machines)
//!   -> per-group buffers, sorted and spilled to disk when the memory budget is reached
//!   -> per-group k-way merge by (timestamp, input order)
//!   -> gzip files under the row and byte limits       -> manifest.json
//! ```
//!
//! Memory is bounded by [`PrepareOptions::memory_budget`] whatever the input
//! size: past it, every group's buffer is sorted and written as a run file in
//! a temporary directory under the output directory, and the runs are merged
//! at the end.
//!
//! Output is deterministic: the same inputs and options give byte-identical
//! files (gzip without timestamps), so content hashes — and the idempotency
//! keys derived from them — are stable when a run is repeated.
//!
//! Input files may have different headers: the output header is the union of
//! their columns in first-seen order (a column that differs only in case is
//! the same column, except the customer ID type).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bdia_format::engine::{process, Encoding, EngineError, Limits, Options, RowEvent};
use bdia_format::fields::Column;
use bdia_format::records::{Next, RecordReader};
use bdia_format::row::MAX_HEADER_RECORD_BYTES;
use bdia_format::RowRules;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Settings of one `prepare` run.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Number of visitor groups.
    pub groups: u32,
    /// Group ids are `<prefix><n>`, n from 0.
    pub group_prefix: String,
    /// Most data rows in one output file.
    pub max_rows: u64,
    /// Most bytes of CSV (before gzip) in one output file, header included.
    pub max_bytes: u64,
    /// Bytes of rows held in memory before sorting and spilling to disk.
    pub memory_budget: usize,
    /// Row rules (the company's provisioned seed type, if any).
    pub rules: RowRules,
    /// Largest input row in bytes; a longer one is rejected
    /// (`row_too_long`) without being held in memory.
    pub max_row_bytes: u64,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            groups: 4,
            group_prefix: "group-".into(),
            max_rows: 1_000_000,
            max_bytes: 512 * 1024 * 1024,
            memory_budget: 64 * 1024 * 1024,
            rules: RowRules::default(),
            max_row_bytes: Limits::default().max_row_bytes,
        }
    }
}

/// An error that stops `prepare`.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Reading an input or writing an output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The options make no sense.
    #[error("invalid option: {0}")]
    Options(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> PrepareError {
    let context = context.into();
    move |source| PrepareError::Io { context, source }
}

/// Where a file stands in an upload run (written by the uploader).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The server's `file_id`.
    pub file_id: String,
    /// The server's `status_code` when last seen.
    pub status_code: bdia_wire::FileStatus,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the manifest's directory.
    pub path: String,
    /// Data rows.
    pub rows: u64,
    /// Bytes of the gzip file.
    pub bytes: u64,
    /// SHA-256 of the gzip file, hex.
    pub sha256: String,
    /// Earliest and latest timestamp in the file (unix seconds).
    pub first_timestamp: i64,
    /// Latest timestamp in the file (unix seconds).
    pub last_timestamp: i64,
    /// Set by the uploader once the server answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadRecord>,
}

/// One visitor group and its files, in upload order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEntry {
    /// The visitor group id (`x-adobe-vgid`).
    pub id: String,
    /// Files in the order they must be uploaded.
    pub files: Vec<FileEntry>,
}

/// `manifest.json`: what `prepare` wrote, in upload order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of this file.
    pub version: u32,
    /// The header written at the top of every file.
    pub header: Vec<String>,
    /// Data rows read from the inputs.
    pub input_rows: u64,
    /// Rows written to the batch files.
    pub written_rows: u64,
    /// Rows not written (listed in `rejects.csv`).
    pub rejected_rows: u64,
    /// The groups, in id order.
    pub groups: Vec<GroupEntry>,
}

impl Manifest {
    /// Reads `DIR/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, PrepareError> {
        let path = dir.join("manifest.json");
        let text = fs::read(&path).map_err(io_err(format!("cannot read {}", path.display())))?;
        serde_json::from_slice(&text).map_err(|e| PrepareError::Io {
            context: format!("cannot parse {}", path.display()),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })
    }

    /// Writes `DIR/manifest.json` atomically (temporary file, fsync, rename).
    pub fn save(&self, dir: &Path) -> Result<(), PrepareError> {
        let path = dir.join("manifest.json");
        let tmp = dir.join(".manifest.json.tmp");
        let body = serde_json::to_vec_pretty(self).expect("manifest serializes");
        let mut f =
            File::create(&tmp).map_err(io_err(format!("cannot write {}", tmp.display())))?;
        f.write_all(&body)
            .and_then(|_| f.write_all(b"\n"))
            .and_then(|_| f.sync_all())
            .map_err(io_err(format!("cannot write {}", tmp.display())))?;
        fs::rename(&tmp, &path).map_err(io_err(format!("cannot write {}", path.display())))
    }
}

/// The stable group of a visitor key: SHA-256 of the key, first 8 bytes, mod N.
pub fn group_of(visitor_key: &str, groups: u32) -> u32 {
    let d = Sha256::digest(visitor_key.as_bytes());
    let n = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    (n % u64::from(groups.max(1))) as u32
}

/// A row waiting to be sorted: (timestamp, input order, CSV line).
type Pending = (i64, u64, Vec<u8>);

struct Group {
    buffer: Vec<Pending>,
    runs: Vec<PathBuf>,
}

/// Counts bytes read, for progress.
struct Counting<'p, R> {
    inner: R,
    progress: &'p mut (dyn FnMut(u64) + Send),
}

/// A growable buffer shared with a `csv::Writer`, so that each record's
/// bytes can be taken out after it is written.
#[derive(Clone, Default)]
struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

fn union_key(name: &str) -> String {
    match Column::from_header(name.trim_start_matches('\u{feff}')) {
        Some(c) => c.duplicate_key(name.trim_start_matches('\u{feff}')),
        None => name.to_ascii_lowercase(),
    }
}

fn is_gzip(path: &Path) -> Result<bool, PrepareError> {
    let mut head = [0u8; 2];
    let mut f = File::open(path).map_err(io_err(format!("cannot open {}", path.display())))?;
    let mut got = 0;
    while got < 2 {
        let n = f
            .read(&mut head[got..])
            .map_err(io_err(format!("cannot read {}", path.display())))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got == 2 && head == [0x1f, 0x8b])
}

fn open_input(path: &Path) -> Result<(Box<dyn Read + Send>, Encoding), PrepareError> {
    let gz = is_gzip(path)?;
    let f = File::open(path).map_err(io_err(format!("cannot open {}", path.display())))?;
    Ok((
        Box::new(BufReader::with_capacity(256 * 1024, f)),
        if gz { Encoding::Gzip } else { Encoding::Plain },
    ))
}

/// Reads just the header of an input.
fn read_header(path: &Path) -> Result<Vec<String>, PrepareError> {
    let (input, enc) = open_input(path)?;
    let reader: Box<dyn Read> = match enc {
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Encoding::Plain => input,
    };
    let mut rdr = RecordReader::new(BufReader::new(reader));
    let mut rec = csv::ByteRecord::new();
    let next = rdr
        .read(&mut rec, MAX_HEADER_RECORD_BYTES)
        .map_err(|e| PrepareError::Io {
            context: format!("cannot read the header of {}", path.display()),
            source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        })?;
    if next != Next::Record {
        // No header, or one too big to be a header: the engine rejects
        // the file as a whole.
        return Ok(Vec::new());
    }
    Ok(rec
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let s = String::from_utf8_lossy(f).to_string();
            if i == 0 {
                s.trim_start_matches('\u{feff}').to_string()
            } else {
                s
            }
        })
        .collect())
}

/// What a `prepare` run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareSummary {
    /// The manifest written.
    pub manifest: Manifest,
    /// Rows rejected, by reason code.
    pub rejected_by_kind: Vec<(String, u64)>,
}

/// Prepares `inputs` into `out` (created if missing; must not hold a
/// manifest already). `progress` is called with the count of input bytes
/// read as reading goes on.
pub fn prepare(
    inputs: &[PathBuf],
    out: &Path,
    opts: &PrepareOptions,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<PrepareSummary, PrepareError> {
    if opts.groups == 0 {
        return Err(PrepareError::Options("--groups must be at least 1".into()));
    }
    if opts.max_rows == 0 || opts.max_bytes < 1024 {
        return Err(PrepareError::Options(
            "--max-rows must be at least 1 and --max-bytes at least 1024".into(),
        ));
    }
    fs::create_dir_all(out).map_err(io_err(format!("cannot create {}", out.display())))?;
    if out.join("manifest.json").exists() {
        return Err(PrepareError::Options(format!(
            "{} already holds a manifest.json: choose an empty directory",
            out.display()
        )));
    }

    // The union header.
    let mut header: Vec<String> = Vec::new();
    let mut keys: HashMap<String, usize> = HashMap::new();
    for path in inputs {
        for name in read_header(path)? {
            if let std::collections::hash_map::Entry::Vacant(e) = keys.entry(union_key(&name)) {
                e.insert(header.len());
                header.push(name);
            }
        }
    }

    let spill_dir = tempfile::Builder::new()
        .prefix(".spill-")
        .tempdir_in(out)
        .map_err(io_err("cannot create the spill directory"))?;
    let mut groups: Vec<Group> = (0..opts.groups)
        .map(|_| Group {
            buffer: Vec::new(),
            runs: Vec::new(),
        })
        .collect();
    let mut buffered_bytes = 0usize;
    let mut seq = 0u64;
    let mut input_rows = 0u64;
    let mut dropped: Vec<(u64, u64)> = Vec::new();
    let mut rejected: HashMap<String, u64> = HashMap::new();
    let rejects_path = out.join("rejects.csv");
    let mut rejects = csv::Writer::from_writer(BufWriter::new(
        File::create(&rejects_path)
            .map_err(io_err(format!("cannot create {}", rejects_path.display())))?,
    ));
    let wr = |e: csv::Error| PrepareError::Io {
        context: "cannot write rejects.csv".into(),
        source: io::Error::other(e.to_string()),
    };
    rejects
        .write_record(["input", "row", "kind", "message", "raw"])
        .map_err(wr)?;

    let engine_opts = |encoding| Options {
        limits: Limits {
            max_compressed: u64::MAX,
            max_uncompressed: u64::MAX,
            max_row_bytes: opts.max_row_bytes,
        },
        encoding,
        rules: opts.rules.clone(),
        threaded: true,
    };
    let line_buf = Shared::default();
    let mut line = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(line_buf.clone());
    for path in inputs {
        let (input, enc) = open_input(path)?;
        let input_name = path.display().to_string();
        // Map this input's columns onto the union header.
        let own = read_header(path)?;
        let map: Vec<usize> = own.iter().map(|n| keys[&union_key(n)]).collect();
        // Output position -> this input's column, if it has one.
        let mut source: Vec<Option<usize>> = vec![None; header.len()];
        for (i, m) in map.iter().enumerate() {
            source[*m] = Some(i);
        }
        let first_seq = seq;
        let counting = Counting {
            inner: input,
            progress: &mut *progress,
        };
        // Re-encoding a row into the in-memory line buffer.
        let buf_err = |source| PrepareError::Io {
            context: "cannot re-encode a row".into(),
            source,
        };
        let csv_buf_err = |e: csv::Error| buf_err(io::Error::other(e));
        let report = process(counting, &engine_opts(enc), |event| {
            match event {
                RowEvent::Valid { valid, .. } => {
                    let key = valid.visitor().key();
                    let g = group_of(&key, opts.groups) as usize;
                    let fields = valid.fields();
                    for src in &source {
                        line.write_field(src.map_or("", |i| &fields[i]))
                            .map_err(csv_buf_err)?;
                    }
                    line.write_record(None::<&[u8]>).map_err(csv_buf_err)?;
                    line.flush().map_err(buf_err)?;
                    let bytes = line_buf.take();
                    buffered_bytes += bytes.len() + 48;
                    groups[g].buffer.push((valid.timestamp(), seq, bytes));
                    seq += 1;
                    if buffered_bytes >= opts.memory_budget {
                        for (gi, group) in groups.iter_mut().enumerate() {
                            spill(group, spill_dir.path(), gi)?;
                        }
                        buffered_bytes = 0;
                    }
                }
                RowEvent::Invalid {
                    row,
                    problem,
                    record,
                } => {
                    *rejected
                        .entry(problem.kind().code().to_string())
                        .or_insert(0) += 1;
                    line.write_byte_record(record).map_err(csv_buf_err)?;
                    line.flush().map_err(buf_err)?;
                    let raw = line_buf.take();
                    let raw = String::from_utf8_lossy(&raw);
                    rejects
                        .write_record([
                            input_name.as_str(),
                            &row.to_string(),
                            problem.kind().code(),
                            &problem.to_string(),
                            raw.trim_end_matches(['\r', '\n']),
                        ])
                        .map_err(wr)?;
                }
            }
            Ok(())
        });
        let report = match report {
            Ok(report) => report,
            Err(EngineError::Input(source)) => {
                return Err(PrepareError::Io {
                    context: format!("cannot read {input_name}"),
                    source,
                })
            }
            Err(EngineError::Sink(e)) => return Err(e),
        };
        input_rows += report.rows;
        if let Some(reason) = &report.rejection {
            // The whole file is refused: none of its rows are written.
            *rejected.entry(reason.code().to_string()).or_insert(0) += report.rows;
            rejects
                .write_record([
                    input_name.as_str(),
                    "",
                    reason.code(),
                    &format!("{reason} ({} rows)", report.rows),
                    "",
                ])
                .map_err(wr)?;
            // A file refused as a whole contributes nothing, even the rows
            // read before the problem showed (a truncated gzip, say).
            dropped.push((first_seq, seq));
        }
    }
    rejects
        .flush()
        .map_err(io_err(format!("cannot write {}", rejects_path.display())))?;

    let mut manifest = Manifest {
        version: 1,
        header: header.clone(),
        input_rows,
        written_rows: 0,
        rejected_rows: rejected.values().sum(),
        groups: Vec::new(),
    };
    let mut head_line = csv::Writer::from_writer(Vec::new());
    head_line.write_record(&header).map_err(wr)?;
    let head_line = head_line.into_inner().expect("in-memory writer");
    for (gi, group) in groups.iter_mut().enumerate() {
        let id = format!("{}{gi}", opts.group_prefix);
        let files = write_group(group, &id, out, &head_line, &dropped, opts)?;
        manifest.written_rows += files.iter().map(|f| f.rows).sum::<u64>();
        manifest.groups.push(GroupEntry { id, files });
    }
    manifest.save(out)?;
    drop(spill_dir);
    let mut by_kind: Vec<(String, u64)> = rejected.into_iter().collect();
    by_kind.sort();
    Ok(PrepareSummary {
        manifest,
        rejected_by_kind: by_kind,
    })
}

/// Sorts a group's buffer and writes it as one run file.
fn spill(group: &mut Group, dir: &Path, gi: usize) -> Result<(), PrepareError> {
    if group.buffer.is_empty() {
        return Ok(());
    }
    group
        .buffer
        .sort_unstable_by_key(|(ts, seq, _)| (*ts, *seq));
    let path = dir.join(format!("g{gi}-run{}", group.runs.len()));
    let f = File::create(&path).map_err(io_err("cannot write a spill file"))?;
    let mut w = BufWriter::with_capacity(256 * 1024, f);
    for (ts, seq, bytes) in group.buffer.drain(..) {
        w.write_all(&ts.to_le_bytes())
            .and_then(|_| w.write_all(&seq.to_le_bytes()))
            .and_then(|_| w.write_all(&(bytes.len() as u32).to_le_bytes()))
            .and_then(|_| w.write_all(&bytes))
            .map_err(io_err("cannot write a spill file"))?;
    }
    w.flush().map_err(io_err("cannot write a spill file"))?;
    group.buffer.shrink_to_fit();
    group.runs.push(path);
    Ok(())
}

struct Run {
    r: BufReader<File>,
}

impl Run {
    fn next(&mut self) -> io::Result<Option<Pending>> {
        let mut head = [0u8; 20];
        match self.r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let ts = i64::from_le_bytes(head[..8].try_into().expect("8"));
        let seq = u64::from_le_bytes(head[8..16].try_into().expect("8"));
        let len = u32::from_le_bytes(head[16..].try_into().expect("4")) as usize;
        let mut bytes = vec![0u8; len];
        self.r.read_exact(&mut bytes)?;
        Ok(Some((ts, seq, bytes)))
    }
}

/// Writes SHA-256 while writing.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct OutFile {
    gz: flate2::write::GzEncoder<Hashing<BufWriter<File>>>,
    rel: String,
    rows: u64,
    csv_bytes: u64,
    first: i64,
    last: i64,
}

/// Merges a group's runs and buffer into batch files.
fn write_group(
    group: &mut Group,
    id: &str,
    out: &Path,
    head_line: &[u8],
    dropped: &[(u64, u64)],
    opts: &PrepareOptions,
) -> Result<Vec<FileEntry>, PrepareError> {
    group
        .buffer
        .sort_unstable_by_key(|(ts, seq, _)| (*ts, *seq));
    let mut runs: Vec<Run> = Vec::new();
    for p in &group.runs {
        let f = File::open(p).map_err(io_err("cannot read a spill file"))?;
        runs.push(Run {
            r: BufReader::with_capacity(64 * 1024, f),
        });
    }
    let mut heap: BinaryHeap<Reverse<(i64, u64, usize)>> = BinaryHeap::new();
    let mut heads: Vec<Option<Vec<u8>>> = Vec::with_capacity(runs.len() + 1);
    for (i, run) in runs.iter_mut().enumerate() {
        match run.next().map_err(io_err("cannot read a spill file"))? {
            Some((ts, seq, bytes)) => {
                heap.push(Reverse((ts, seq, i)));
                heads.push(Some(bytes));
            }
            None => heads.push(None),
        }
    }
    let mem_index = runs.len();
    let mut mem = std::mem::take(&mut group.buffer).into_iter();
    if let Some((ts, seq, bytes)) = mem.next() {
        heap.push(Reverse((ts, seq, mem_index)));
        heads.push(Some(bytes));
    }

    let dir = out.join(id);
    let mut files = Vec::new();
    let mut current: Option<OutFile> = None;
    while let Some(Reverse((ts, seq, src))) = heap.pop() {
        let bytes = heads[src].take().expect("head present");
        // Refill from the same source.
        let next = if src == mem_index {
            mem.next()
        } else {
            runs[src]
                .next()
                .map_err(io_err("cannot read a spill file"))?
        };
        if let Some((nts, nseq, nbytes)) = next {
            heap.push(Reverse((nts, nseq, src)));
            heads[src] = Some(nbytes);
        }
        if dropped.iter().any(|(a, b)| (*a..*b).contains(&seq)) {
            continue;
        }
        let full = current.as_ref().is_some_and(|c| {
            c.rows >= opts.max_rows || c.csv_bytes + bytes.len() as u64 > opts.max_bytes
        });
        if full {
            files.push(finish(current.take().expect("open file"))?);
        }
        if current.is_none() {
            fs::create_dir_all(&dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
            let rel = format!("{id}/{id}-{:05}.csv.gz", files.len() + 1);
            let f = File::create(out.join(&rel)).map_err(io_err(format!("cannot create {rel}")))?;
            let hashing = Hashing {
                inner: BufWriter::with_capacity(256 * 1024, f),
                hash: Sha256::new(),
                bytes: 0,
            };
            let mut gz = flate2::GzBuilder::new().write(hashing, flate2::Compression::default());
            gz.write_all(head_line)
                .map_err(io_err(format!("cannot write {rel}")))?;
            current = Some(OutFile {
                gz,
                rel,
                rows: 0,
                csv_bytes: head_line.len() as u64,
                first: ts,
                last: ts,
            });
        }
        let c = current.as_mut().expect("open file");
        c.gz.write_all(&bytes)
            .map_err(io_err(format!("cannot write {}", c.rel)))?;
        c.rows += 1;
        c.csv_bytes += bytes.len() as u64;
        c.last = ts;
    }
    if let Some(c) = current {
        files.push(finish(c)?);
    }
    Ok(files)
}

fn finish(c: OutFile) -> Result<FileEntry, PrepareError> {
    let hashing =
        c.gz.finish()
            .map_err(io_err(format!("cannot write {}", c.rel)))?;
    let Hashing { inner, hash, bytes } = hashing;
    let f = inner.into_inner().map_err(|e| PrepareError::Io {
        context: format!("cannot write {}", c.rel),
        source: e.into_error(),
    })?;
    f.sync_all()
        .map_err(io_err(format!("cannot write {}", c.rel)))?;
    Ok(FileEntry {
        path: c.rel,
        rows: c.rows,
        bytes,
        sha256: hex::encode(hash.finalize()),
        first_timestamp: c.first,
        last_timestamp: c.last,
        upload: None,
    })
}
