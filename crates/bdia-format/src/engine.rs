//! The streaming engine: compressed bytes in, one decision per row out.
//!
//! ```text
//! input (Read) -> size limit -> gzip (multi-member) -> size limit -> CSV -> header -> rows
//!                 [decompression thread]              [calling thread]
//! ```
//!
//! Memory is bounded whatever the file size: a handful of 256 KiB chunks in
//! flight between the threads, one CSV record of at most
//! [`Limits::max_row_bytes`] (a longer row is read to its end without being
//! kept, see [`crate::records`]), and the first ten log lines of each problem
//! kind. The decompressed size limit is enforced by the reader
//! itself, so a decompression bomb is refused at the limit without ever being
//! inflated past it.
//!
//! The same function serves a file on disk (`bdia validate`) and an upload
//! body streamed by the server: the input is any `Read + Send`.

use std::convert::Infallible;
use std::io::{self, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use bdia_wire::FileStatus;

use crate::error::{FileError, RowProblem};
use crate::log::ProcessingLog;
use crate::records::{Next, RecordReader};
use csv::StringRecord;

use crate::row::{
    Header, RowRules, ValidRow, MAX_COLUMNS, MAX_HEADER_BYTES, MAX_HEADER_RECORD_BYTES,
};

/// The default of [`Limits::max_row_bytes`]: 1 MiB.
pub const DEFAULT_MAX_ROW_BYTES: u64 = 1 << 20;

/// Size limits (spec 3: 100 MiB compressed, 1 GiB uncompressed), and the
/// size of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum bytes of the upload as sent.
    pub max_compressed: u64,
    /// Maximum bytes of CSV after decompression.
    pub max_uncompressed: u64,
    /// Maximum size of one data row: its field bytes after unquoting plus
    /// one per separator (for a row without quotes, its length without the
    /// line break). A longer row is an invalid row
    /// ([`RowProblem::RowTooLong`]), never held in memory. The header has
    /// its own limits ([`crate::row::MAX_HEADER_BYTES`],
    /// [`crate::row::MAX_COLUMNS`]).
    pub max_row_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_compressed: 100 * 1024 * 1024,
            max_uncompressed: 1024 * 1024 * 1024,
            max_row_bytes: DEFAULT_MAX_ROW_BYTES,
        }
    }
}

/// How the input is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// gzip, possibly multi-member (the contract).
    #[default]
    Gzip,
    /// Plain CSV (offline validation only, `--plain`).
    Plain,
}

/// Settings of one run of the engine.
#[derive(Debug, Clone)]
pub struct Options {
    /// Size limits.
    pub limits: Limits,
    /// Input encoding.
    pub encoding: Encoding,
    /// Per-caller row rules.
    pub rules: RowRules,
    /// Decompress on a separate thread (faster on more than one core).
    pub threaded: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            encoding: Encoding::Gzip,
            rules: RowRules::default(),
            threaded: true,
        }
    }
}

/// What the engine reports about each data row.
#[derive(Debug)]
pub enum RowEvent<'a> {
    /// A row that will be submitted.
    Valid {
        /// Data row number, from 1.
        row: u64,
        /// The checked row; call [`ValidRow::to_hit`] to normalize it.
        valid: &'a ValidRow<'a>,
    },
    /// A row that will be skipped.
    Invalid {
        /// Data row number, from 1.
        row: u64,
        /// Why.
        problem: &'a RowProblem,
        /// The row's fields as read, for reject reports; for a row over the
        /// size limit, only its start ([`crate::records::EXCERPT_BYTES`]).
        record: &'a csv::ByteRecord,
    },
}

/// An error that stops the engine without a verdict on the file.
///
/// `E` is the error type of the caller's row sink, returned as is in
/// [`EngineError::Sink`]: the engine never boxes or stringifies it. A sink
/// that cannot fail uses the default, [`Infallible`].
#[derive(Debug, thiserror::Error)]
pub enum EngineError<E = Infallible> {
    /// Reading the input itself failed (a disconnected client, a disk error).
    #[error("reading the input failed: {0}")]
    Input(#[source] io::Error),
    /// The row sink returned an error, which stopped the run.
    #[error("row sink failed: {0}")]
    Sink(#[source] E),
}

/// The verdict on one file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// Bytes of input read (the compressed size).
    pub size: u64,
    /// Bytes of CSV after decompression.
    pub uncompressed_size: u64,
    /// Data rows (header and blank lines not counted).
    pub rows: u64,
    /// Rows that will be skipped (all rows when the file is rejected).
    pub invalid_rows: u64,
    /// Set when the file is refused as a whole.
    pub rejection: Option<FileError>,
    /// The header as read, when there was one.
    pub header: Option<Vec<String>>,
    /// The processing log.
    pub log: ProcessingLog,
}

impl FileReport {
    /// What an upload of the file gets: `REJECTED` or `UPLOADED`.
    pub fn status_code(&self) -> FileStatus {
        if self.rejection.is_some() {
            FileStatus::Rejected
        } else {
            FileStatus::Uploaded
        }
    }

    /// Rows that will be submitted.
    pub fn valid_rows(&self) -> u64 {
        self.rows - self.invalid_rows
    }

    /// True when the file is accepted and every row is valid.
    pub fn is_fully_valid(&self) -> bool {
        self.rejection.is_none() && self.invalid_rows == 0
    }

    /// The processing log text (spec 3.5).
    pub fn processing_log(&self) -> String {
        match &self.rejection {
            Some(e) => self.log.render_rejected(e, self.rows),
            None => self.log.render(self.rows, self.invalid_rows),
        }
    }
}

/// Where an I/O error came from, carried inside `io::Error` through the decoder.
#[derive(Debug)]
enum Fault {
    Source(io::Error),
    Compressed(u64),
    Uncompressed(u64),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Source(e) => write!(f, "{e}"),
            Fault::Compressed(l) => write!(f, "compressed input over {l} bytes"),
            Fault::Uncompressed(l) => write!(f, "decompressed content over {l} bytes"),
        }
    }
}

impl std::error::Error for Fault {}

fn fault(e: Fault) -> io::Error {
    io::Error::other(e)
}

/// Counts bytes and refuses to go past a limit.
struct Limited<'c, R> {
    inner: R,
    count: &'c AtomicU64,
    limit: u64,
    fault: fn(u64) -> Fault,
    tag_errors: bool,
}

impl<R: Read> Read for Limited<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let seen = self.count.load(Ordering::Relaxed);
        if seen > self.limit {
            return Err(fault((self.fault)(self.limit)));
        }
        // Never ask for more than one byte past the limit.
        let room = (self.limit - seen).saturating_add(1).min(buf.len() as u64) as usize;
        let n = match self.inner.read(&mut buf[..room]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) if self.tag_errors => return Err(fault(Fault::Source(e))),
            Err(e) => return Err(e),
        };
        let total = seen + n as u64;
        self.count.store(total, Ordering::Relaxed);
        if total > self.limit {
            return Err(fault((self.fault)(self.limit)));
        }
        Ok(n)
    }
}

const CHUNK: usize = 256 * 1024;

/// Reads chunks decoded on another thread, and hands each one back when
/// read (`free`) so that the thread decodes into it again rather than into
/// a newly allocated and zeroed one.
struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    free: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    let read = std::mem::replace(&mut self.chunk, c);
                    if read.capacity() > 0 {
                        // Full or the thread is gone: it is dropped.
                        let _ = self.free.try_send(read);
                    }
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Runs the contract over one file. `sink` sees every data row in order; an
/// error it returns stops the run, and comes back unchanged in
/// [`EngineError::Sink`].
///
/// A file refused as a whole is not an error: the report says why
/// ([`FileReport::rejection`]). Only a failure to read `input` itself (or the
/// sink) is.
pub fn process<R, F, E>(input: R, opts: &Options, mut sink: F) -> Result<FileReport, EngineError<E>>
where
    R: Read + Send,
    F: FnMut(RowEvent<'_>) -> Result<(), E>,
{
    let compressed = AtomicU64::new(0);
    let uncompressed = AtomicU64::new(0);
    let limited = Limited {
        inner: input,
        count: &compressed,
        limit: opts.limits.max_compressed,
        fault: Fault::Compressed,
        tag_errors: true,
    };
    let mut limited = limited;
    let mut report = FileReport {
        size: 0,
        uncompressed_size: 0,
        rows: 0,
        invalid_rows: 0,
        rejection: None,
        header: None,
        log: ProcessingLog::new(),
    };

    // Look at the first two bytes without losing them: a network read may
    // return a single byte, so read until two are in hand.
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < head.len() {
        match limited.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return finish_on_error(report, e, &compressed, &uncompressed),
        }
    }
    if opts.encoding == Encoding::Gzip && head[..got] != [0x1f, 0x8b] {
        report.rejection = Some(FileError::NotGzip);
        // Drain, so the size is known and the client is read to the end.
        if let Err(e) = io::copy(&mut limited, &mut io::sink()) {
            return finish_on_error(report, e, &compressed, &uncompressed);
        }
        report.size = compressed.load(Ordering::Relaxed);
        return Ok(report);
    }
    let buffered = BufReader::with_capacity(
        64 * 1024,
        io::Cursor::new(head[..got].to_vec()).chain(limited),
    );

    let result = std::thread::scope(|scope| {
        let decoded: Box<dyn Read + Send + '_> = match opts.encoding {
            Encoding::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Encoding::Plain => Box::new(buffered),
        };
        let csv_input = Limited {
            inner: decoded,
            count: &uncompressed,
            limit: opts.limits.max_uncompressed,
            fault: Fault::Uncompressed,
            tag_errors: false,
        };
        if opts.threaded {
            let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(4);
            let (free_tx, free_rx) = sync_channel::<Vec<u8>>(4);
            scope.spawn(move || {
                let mut src = csv_input;
                loop {
                    let mut chunk = free_rx.try_recv().unwrap_or_default();
                    chunk.resize(CHUNK, 0);
                    let mut filled = 0;
                    let res = loop {
                        match src.read(&mut chunk[filled..]) {
                            Ok(0) => break Ok(()),
                            Ok(n) => {
                                filled += n;
                                if filled == CHUNK {
                                    break Ok(());
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => break Err(e),
                        }
                    };
                    chunk.truncate(filled);
                    let last = filled < CHUNK || res.is_err();
                    if filled > 0 && tx.send(Ok(chunk)).is_err() {
                        return;
                    }
                    if let Err(e) = res {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    if last {
                        return;
                    }
                }
            });
            let reader = ChannelReader {
                rx,
                free: free_tx,
                chunk: Vec::new(),
                pos: 0,
                done: false,
            };
            read_rows(reader, opts, &mut report, &mut sink)
        } else {
            read_rows(csv_input, opts, &mut report, &mut sink)
        }
    });
    match result {
        Ok(()) => {
            report.size = compressed.load(Ordering::Relaxed);
            report.uncompressed_size = uncompressed.load(Ordering::Relaxed);
            Ok(report)
        }
        Err(RunError::Io(e)) => finish_on_error(report, e, &compressed, &uncompressed),
        Err(RunError::Sink(e)) => Err(EngineError::Sink(e)),
    }
}

/// Turns an I/O failure into a rejection (gzip, limits) or an input error.
fn finish_on_error<E>(
    mut report: FileReport,
    e: io::Error,
    compressed: &AtomicU64,
    uncompressed: &AtomicU64,
) -> Result<FileReport, EngineError<E>> {
    report.size = compressed.load(Ordering::Relaxed);
    report.uncompressed_size = uncompressed.load(Ordering::Relaxed);
    let fault = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Fault>())
        .map(|f| match f {
            Fault::Source(_) => None,
            Fault::Compressed(l) => Some(FileError::TooLargeCompressed { limit: *l }),
            Fault::Uncompressed(l) => Some(FileError::TooLargeUncompressed { limit: *l }),
        });
    let rejection = match fault {
        Some(Some(r)) => r,
        Some(None) => {
            let inner = e.into_inner().expect("checked above");
            let Ok(f) = inner.downcast::<Fault>() else {
                unreachable!("checked above")
            };
            let Fault::Source(src) = *f else {
                unreachable!("checked above")
            };
            return Err(EngineError::Input(src));
        }
        None => FileError::BadGzip(e.to_string()),
    };
    // A header problem found first stays the reason; size limits override it.
    if report.rejection.is_none() || rejection.is_too_large() {
        report.rejection = Some(rejection);
    }
    report.invalid_rows = report.rows;
    Ok(report)
}

enum RunError<E> {
    Io(io::Error),
    Sink(E),
}

/// Why a header too big to be read is refused.
fn header_too_big(bytes: u64, fields: u64) -> FileError {
    if fields > MAX_COLUMNS as u64 {
        FileError::TooManyColumns {
            found: usize::try_from(fields).unwrap_or(usize::MAX),
            max: MAX_COLUMNS,
        }
    } else {
        FileError::HeaderTooLong {
            bytes: usize::try_from(bytes - (fields - 1)).unwrap_or(usize::MAX),
            max: MAX_HEADER_BYTES,
        }
    }
}

fn read_rows<R, F, E>(
    input: R,
    opts: &Options,
    report: &mut FileReport,
    sink: &mut F,
) -> Result<(), RunError<E>>
where
    R: Read,
    F: FnMut(RowEvent<'_>) -> Result<(), E>,
{
    let mut rdr = RecordReader::new(BufReader::with_capacity(128 * 1024, input));
    let max_row = usize::try_from(opts.limits.max_row_bytes).unwrap_or(usize::MAX);
    let mut record = csv::ByteRecord::new();
    let header = match rdr
        .read(&mut record, MAX_HEADER_RECORD_BYTES)
        .map_err(RunError::Io)?
    {
        Next::End => {
            report.rejection = Some(FileError::Empty);
            return Ok(());
        }
        Next::TooLong { bytes, fields } => Err(header_too_big(bytes, fields)),
        Next::Record => {
            let names: Result<Vec<&str>, _> = record.iter().map(std::str::from_utf8).collect();
            match names {
                Err(_) => Err(FileError::HeaderNotUtf8),
                Ok(names) => {
                    report.header = Some(names.iter().map(|s| s.to_string()).collect());
                    Header::parse(&names)
                }
            }
        }
    };
    let header = match header {
        Ok(h) => h,
        Err(e) => {
            report.rejection = Some(e);
            // Count the rows anyway: a rejected file reports them, all invalid.
            while rdr.read(&mut record, max_row).map_err(RunError::Io)? != Next::End {
                report.rows += 1;
                report.invalid_rows += 1;
            }
            return Ok(());
        }
    };
    for (pos, name) in header.unknown_columns() {
        report.log.warn(format!(
            "Warning: unknown column '{}' (column {pos}) is ignored.",
            shortened(name)
        ));
    }
    // The record moves between its byte form (for reading, reused) and its
    // string form (UTF-8 checked once for the whole row) without copying.
    loop {
        let next = rdr.read(&mut record, max_row).map_err(RunError::Io)?;
        if next == Next::End {
            break;
        }
        report.rows += 1;
        let row = report.rows;
        let checked = if let Next::TooLong { bytes, .. } = next {
            Err(RowProblem::RowTooLong {
                bytes,
                max: opts.limits.max_row_bytes,
            })
        } else if record.len() != header.len() {
            Err(RowProblem::ColumnCount {
                expected: header.len(),
                found: record.len(),
            })
        } else {
            match StringRecord::from_byte_record(record) {
                Ok(fields) => {
                    let outcome = match header.check(&fields, &opts.rules) {
                        Ok(valid) => Ok(sink(RowEvent::Valid { row, valid: &valid })),
                        Err(problem) => Err(problem),
                    };
                    record = fields.into_byte_record();
                    outcome
                }
                Err(e) => {
                    let field = e.utf8_error().field();
                    record = e.into_byte_record();
                    Err(RowProblem::InvalidUtf8 {
                        place: format!("column {} ('{}')", field + 1, header.names()[field]),
                    })
                }
            }
        };
        match checked {
            Ok(res) => res.map_err(RunError::Sink)?,
            Err(problem) => {
                report.invalid_rows += 1;
                report.log.row(row, &problem);
                sink(RowEvent::Invalid {
                    row,
                    problem: &problem,
                    record: &record,
                })
                .map_err(RunError::Sink)?;
            }
        }
    }
    Ok(())
}

/// Longest column name quoted in a warning, in characters.
const MAX_QUOTED_NAME: usize = 100;

/// A column name as quoted in the log: at most [`MAX_QUOTED_NAME`]
/// characters, then `...`, so one huge header cell cannot make a huge log.
fn shortened(name: &str) -> std::borrow::Cow<'_, str> {
    match name.char_indices().nth(MAX_QUOTED_NAME) {
        None => std::borrow::Cow::Borrowed(name),
        Some((cut, _)) => std::borrow::Cow::Owned(format!("{}...", &name[..cut])),
    }
}
