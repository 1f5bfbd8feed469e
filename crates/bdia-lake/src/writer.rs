//! [`LakeWriter`]: enriched hits of one file -> Parquet part files in a local
//! spool, one writer per open partition, memory bounded.
//!
//! Each partition (report suite, day) of the file, under the file's
//! company, gets its own
//! [`parquet::arrow::ArrowWriter`] writing to a temporary file in the spool
//! directory (`bdia-part-*`, deleted once published or dropped; a closed
//! part keeps no file descriptor; files left by a crash are removed by
//! [`clear_spool`] at the next start). Rows are buffered in Arrow builders up to
//! [`LakeConfig::batch_rows`], then encoded; Parquet row groups are closed at
//! [`LakeConfig::row_group_rows`] rows or [`LakeConfig::row_group_bytes`]
//! bytes. A partition that got no hit during the last `2 x batch_rows` hits
//! is closed (in a file in time order, a day that is over). At most
//! [`LakeConfig::max_open_partitions`] partitions are open at
//! once: opening one more closes the least recently written, and a partition
//! written again later gets its next part number. Row groups in progress of
//! all open partitions together stay under
//! [`LakeConfig::memory_budget_bytes`] (the least recently written end
//! theirs early). Memory is therefore about
//! `memory_budget_bytes + max_open_partitions x batch`, whatever the file size.
//!
//! Arrow rows are built on the calling thread; Parquet encoding runs inline
//! or on a thread of its own ([`LakeConfig::encode_thread`]) fed through a
//! bounded channel of batches. Both apply the same sequence of commands
//! (open a part, write a batch, close a part) in the same order, so they
//! produce the same bytes.
//!
//! A part holds only the columns that have a value in some row of the file
//! so far: most of the ~360 variable columns are null in every row of a
//! file, and a column chunk costs its writer, its pages and its footer
//! entry whether it holds values or not. Readers map columns by name and
//! read a column a part lacks as null (as in a part written before the
//! column was added to the schema; [`crate::schema::conform`]). The
//! columns of a part are fixed by its first batch (with those of the
//! file's earlier batches); a later batch with a value in a column the
//! part lacks ends the part, and the partition goes on in its next part.
//!
//! Part names are a pure function of the company, the file id, the hits and
//! the configuration, so writing the same file again yields the same objects.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use arrow_array::RecordBatch;
use jiff::civil::Date;

use bdia_model::EnrichedHit;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::batch::HitBatchBuilder;
use crate::error::LakeError;
use crate::layout::{check_company, check_name, check_suite, part_path, SPOOL_PREFIX};
use crate::partition::{DayCache, SuiteZones};
use crate::schema::{hits_schema, PLAIN_COLUMNS, STATISTICS_COLUMNS};

/// Tuning of the writer. The defaults serve one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeConfig {
    /// Where part files are spooled before upload; `None`: the system temp dir.
    pub spool_dir: Option<PathBuf>,
    /// Rows buffered in Arrow builders per partition before encoding.
    pub batch_rows: usize,
    /// Maximum rows of a Parquet row group.
    pub row_group_rows: usize,
    /// Maximum estimated bytes of a Parquet row group.
    pub row_group_bytes: usize,
    /// Partitions open at once per file; more closes the least recently written.
    pub max_open_partitions: usize,
    /// Bytes that the row groups in progress of all open partitions may
    /// hold together; past it, the least recently written end theirs early.
    pub memory_budget_bytes: usize,
    /// Encode Parquet on a second thread while rows are built on the
    /// caller's. Helps only when a core is free (off by default: the
    /// processing workers already keep the cores busy).
    pub encode_thread: bool,
    /// Parts up to this size are uploaded in one request, larger ones in
    /// multipart chunks of this size (S3 needs at least 5 MiB).
    pub upload_part_bytes: usize,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            spool_dir: None,
            batch_rows: 4_096,
            row_group_rows: 128 * 1024,
            row_group_bytes: 16 * 1024 * 1024,
            max_open_partitions: 16,
            memory_budget_bytes: 8 * 1024 * 1024,
            encode_thread: false,
            upload_part_bytes: 8 * 1024 * 1024,
        }
    }
}

impl LakeConfig {
    /// Checks the values; names the offending one.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("batch_rows", self.batch_rows),
            ("row_group_rows", self.row_group_rows),
            ("row_group_bytes", self.row_group_bytes),
            ("max_open_partitions", self.max_open_partitions),
            ("memory_budget_bytes", self.memory_budget_bytes),
        ] {
            if v == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.upload_part_bytes < 5 * 1024 * 1024 {
            return Err(format!(
                "upload_part_bytes must be at least 5 MiB, got {}",
                self.upload_part_bytes
            ));
        }
        Ok(())
    }

    /// Snappy pages; min/max statistics (row group level) only on the
    /// lineage, identity and visit columns, which readers prune on (time,
    /// suite, file, row); the ~360 free-text variable columns get none, as
    /// computing them costs a comparison per value and no query prunes on
    /// them. Dictionary encoding everywhere except on the columns whose
    /// values are (nearly) all distinct ([`PLAIN_COLUMNS`]).
    pub(crate) fn writer_properties(&self) -> WriterProperties {
        let mut b = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_max_row_group_bytes(Some(self.row_group_bytes))
            .set_statistics_enabled(EnabledStatistics::None);
        for name in STATISTICS_COLUMNS {
            b = b.set_column_statistics_enabled(ColumnPath::from(*name), EnabledStatistics::Chunk);
        }
        // Values that rarely repeat: a dictionary would fill up, fall
        // back to plain encoding and have cost a hash per value for nothing.
        for name in PLAIN_COLUMNS {
            b = b.set_column_dictionary_enabled(ColumnPath::from(*name), false);
        }
        b.build()
    }
}

/// One finished part file, waiting in the spool for [`crate::Lake::publish`].
#[derive(Debug)]
pub struct SpooledPart {
    /// Object path relative to the lake root
    /// (`hits/company=.../report_suite=.../part-....parquet`).
    pub path: String,
    /// Report suite of every row.
    pub report_suite: String,
    /// Partition day in the suite's time zone.
    pub date: Date,
    /// Rows in the part.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// The spooled file, by name: a closed part holds no file descriptor
    /// however many parts a file makes. Deleted when dropped.
    pub(crate) file: tempfile::TempPath,
}

/// A file's output, fully written to the spool, not yet in the lake:
/// what [`LakeWriter::finish`] returns and [`crate::Lake::publish`] takes.
#[derive(Debug)]
pub struct SpooledFile {
    /// The company the file belongs to.
    pub company: String,
    /// The file id.
    pub file_id: String,
    /// Parts, sorted by path.
    pub parts: Vec<SpooledPart>,
    /// Hits written (all parts).
    pub rows: u64,
}

/// What the row side asks of the encoder. Applied in order, by one encoder.
enum Command {
    /// Start the next part of a partition under id `id`.
    Open {
        id: u64,
        report_suite: String,
        date: Date,
    },
    /// Encode a batch into part `id`; `clock` orders partitions by recency.
    Batch {
        id: u64,
        batch: RecordBatch,
        clock: u64,
    },
    /// Finish part `id`.
    Close { id: u64 },
}

struct EncodedPart {
    id: u64,
    report_suite: String,
    date: Date,
    seq: u32,
    /// Created by the part's first batch.
    file: Option<PartFile>,
    rows: u64,
    last_used: u64,
}

/// The Parquet file of a part, and which columns of the hit schema it has.
struct PartFile {
    writer: ArrowWriter<BufWriter<File>>,
    spooled: tempfile::TempPath,
    /// Indexes into [`hits_schema`], ascending.
    columns: Vec<usize>,
    /// `has[i]`: column `i` of [`hits_schema`] is in `columns`.
    has: Vec<bool>,
}

/// Owns the Parquet writers of one file's open parts.
struct Encoder {
    company: String,
    file_id: String,
    spool_dir: PathBuf,
    props: WriterProperties,
    memory_budget_bytes: usize,
    open: Vec<EncodedPart>,
    done: Vec<SpooledPart>,
    /// The next part number of each partition.
    next_seq: HashMap<(String, Date), u32>,
    /// `valued[i]`: column `i` of [`hits_schema`] had a value in a batch
    /// of the file so far (the columns of the parts opened from now on).
    valued: Vec<bool>,
}

/// Whether each column of `batch` has a value (not null) in some row.
fn valued_columns(batch: &RecordBatch) -> Vec<bool> {
    batch
        .columns()
        .iter()
        .map(|c| !c.is_empty() && c.null_count() < c.len())
        .collect()
}

impl Encoder {
    fn apply(&mut self, command: Command) -> Result<(), LakeError> {
        match command {
            Command::Open {
                id,
                report_suite,
                date,
            } => {
                let seq = self.take_seq(&report_suite, date);
                self.open.push(EncodedPart {
                    id,
                    report_suite,
                    date,
                    seq,
                    file: None,
                    rows: 0,
                    last_used: 0,
                });
            }
            Command::Batch { id, batch, clock } => {
                let valued = valued_columns(&batch);
                for (v, b) in self.valued.iter_mut().zip(&valued) {
                    *v |= b;
                }
                let i = self.index(id)?;
                let part = &self.open[i];
                let lacks = part.file.as_ref().is_none_or(|f| {
                    valued
                        .iter()
                        .zip(&f.has)
                        .any(|(valued, has)| *valued && !has)
                });
                if lacks {
                    if self.open[i].file.is_some() {
                        // A value in a column the part lacks: the part
                        // ends, the partition goes on in its next part.
                        let (suite, date) = (self.open[i].report_suite.clone(), self.open[i].date);
                        let seq = self.take_seq(&suite, date);
                        let part = &mut self.open[i];
                        let ended = EncodedPart {
                            id: part.id,
                            report_suite: suite,
                            date,
                            seq: std::mem::replace(&mut part.seq, seq),
                            file: part.file.take(),
                            rows: std::mem::take(&mut part.rows),
                            last_used: part.last_used,
                        };
                        let done = close(&self.company, &self.file_id, ended)?;
                        self.done.extend(done);
                    }
                    let file = self.new_file()?;
                    self.open[i].file = Some(file);
                }
                let part = &mut self.open[i];
                let file = part.file.as_mut().expect("created above");
                file.writer.write(&batch.project(&file.columns)?)?;
                part.rows += batch.num_rows() as u64;
                part.last_used = clock;
                self.enforce_memory_budget()?;
            }
            Command::Close { id } => {
                let i = self.index(id)?;
                let part = self.open.swap_remove(i);
                let done = close(&self.company, &self.file_id, part)?;
                self.done.extend(done);
            }
        }
        Ok(())
    }

    /// The next part number of a partition, taken.
    fn take_seq(&mut self, report_suite: &str, date: Date) -> u32 {
        let seq = self
            .next_seq
            .entry((report_suite.to_string(), date))
            .or_insert(0);
        *seq += 1;
        *seq - 1
    }

    /// A new spooled Parquet file with the columns valued so far.
    fn new_file(&self) -> Result<PartFile, LakeError> {
        std::fs::create_dir_all(&self.spool_dir)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(SPOOL_PREFIX);
        // The permissions of any new file (0666 less the umask), not a
        // temporary file's 0600: a local lake gets the file itself.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let (file, spooled) = builder.tempfile_in(&self.spool_dir)?.into_parts();
        let columns: Vec<usize> = (0..self.valued.len()).filter(|&c| self.valued[c]).collect();
        let schema = hits_schema().project(&columns)?;
        let writer = ArrowWriter::try_new(
            BufWriter::with_capacity(64 * 1024, file),
            std::sync::Arc::new(schema),
            Some(self.props.clone()),
        )?;
        Ok(PartFile {
            writer,
            spooled,
            has: self.valued.clone(),
            columns,
        })
    }

    fn index(&self, id: u64) -> Result<usize, LakeError> {
        self.open
            .iter()
            .position(|p| p.id == id)
            .ok_or_else(|| unknown_part(id))
    }

    /// Row groups in progress are held in memory until they are full. When
    /// all open parts together hold more than
    /// [`LakeConfig::memory_budget_bytes`], the least recently written end
    /// their row group early (it goes to the spool file) until half the
    /// budget is left.
    fn enforce_memory_budget(&mut self) -> Result<(), LakeError> {
        let budget = self.memory_budget_bytes;
        let size = |p: &EncodedPart| p.file.as_ref().map_or(0, |f| f.writer.memory_size());
        let mut total: usize = self.open.iter().map(size).sum();
        if total <= budget {
            return Ok(());
        }
        let mut order: Vec<usize> = (0..self.open.len()).collect();
        order.sort_by_key(|&i| (self.open[i].last_used, self.open[i].id));
        for i in order {
            if total <= budget / 2 {
                break;
            }
            let before = size(&self.open[i]);
            if let Some(f) = self.open[i].file.as_mut().filter(|_| before > 0) {
                f.writer.flush()?;
                total = total.saturating_sub(before);
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<SpooledPart>, LakeError> {
        for part in std::mem::take(&mut self.open) {
            let done = close(&self.company, &self.file_id, part)?;
            self.done.extend(done);
        }
        Ok(self.done)
    }
}

fn unknown_part(id: u64) -> LakeError {
    LakeError::Corrupt {
        path: format!("part #{id}"),
        reason: "no such open part in the writer".into(),
    }
}

/// Ends a part's file; `None` for a part that got no batch (no file).
fn close(
    company: &str,
    file_id: &str,
    part: EncodedPart,
) -> Result<Option<SpooledPart>, LakeError> {
    let Some(f) = part.file else {
        return Ok(None);
    };
    let buf = f.writer.into_inner()?;
    let mut file = buf.into_inner().map_err(|e| e.into_error())?;
    file.flush()?;
    let bytes = file.seek(SeekFrom::End(0))?;
    drop(file);
    Ok(Some(SpooledPart {
        path: part_path(company, &part.report_suite, part.date, file_id, part.seq),
        report_suite: part.report_suite,
        date: part.date,
        rows: part.rows,
        bytes,
        file: f.spooled,
    }))
}

/// Removes spooled part files left in `dir` by a process that stopped
/// before publishing them. Only for a spool directory that no running
/// writer uses (the server's, under its data-dir lock).
pub fn clear_spool(dir: &std::path::Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SPOOL_PREFIX)
            && entry.file_type()?.is_file()
        {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Where commands go: an encoder on this thread or on its own.
enum Sink {
    Inline(Box<Encoder>),
    Thread {
        tx: Option<SyncSender<Command>>,
        handle: Option<JoinHandle<Result<Vec<SpooledPart>, LakeError>>>,
    },
    /// After an error or after finishing.
    Done,
}

impl Sink {
    fn send(&mut self, command: Command) -> Result<(), LakeError> {
        match self {
            Sink::Inline(e) => e.apply(command),
            Sink::Thread { tx, .. } => {
                let sent = tx.as_ref().map(|tx| tx.send(command).is_ok());
                if sent == Some(true) {
                    Ok(())
                } else {
                    // The encoder stopped: its error says why.
                    Err(self.finish().err().unwrap_or_else(|| LakeError::Corrupt {
                        path: "encoder".into(),
                        reason: "the encoder stopped early".into(),
                    }))
                }
            }
            Sink::Done => Err(LakeError::Corrupt {
                path: "encoder".into(),
                reason: "the writer failed earlier".into(),
            }),
        }
    }

    fn finish(&mut self) -> Result<Vec<SpooledPart>, LakeError> {
        match std::mem::replace(self, Sink::Done) {
            Sink::Inline(e) => e.finish(),
            Sink::Thread { tx, handle } => {
                drop(tx);
                match handle.map(JoinHandle::join) {
                    Some(Ok(result)) => result,
                    Some(Err(_)) => Err(LakeError::Corrupt {
                        path: "encoder".into(),
                        reason: "the encoder thread panicked".into(),
                    }),
                    None => Err(LakeError::Corrupt {
                        path: "encoder".into(),
                        reason: "the writer failed earlier".into(),
                    }),
                }
            }
            Sink::Done => Err(LakeError::Corrupt {
                path: "encoder".into(),
                reason: "the writer failed earlier".into(),
            }),
        }
    }
}

/// Rows of one open part, on the row side.
struct Slot {
    id: u64,
    report_suite: String,
    date: Date,
    builder: HitBatchBuilder,
    last_used: u64,
}

/// Writes the enriched hits of one file: [`LakeWriter::push`] each hit, then
/// [`LakeWriter::finish`], then [`crate::Lake::publish`]. Synchronous and
/// CPU-bound: run it on a blocking thread.
pub struct LakeWriter {
    company: String,
    file_id: String,
    zones: SuiteZones,
    config: LakeConfig,
    days: DayCache,
    open: Vec<Slot>,
    next_id: u64,
    sink: Sink,
    clock: u64,
    rows: u64,
}

impl std::fmt::Debug for LakeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeWriter")
            .field("company", &self.company)
            .field("file_id", &self.file_id)
            .field("open_partitions", &self.open.len())
            .field("rows", &self.rows)
            .finish()
    }
}

impl LakeWriter {
    pub(crate) fn new(
        company: &str,
        file_id: &str,
        zones: SuiteZones,
        config: LakeConfig,
    ) -> Result<LakeWriter, LakeError> {
        check_company(company)?;
        check_name("file_id", file_id)?;
        let encoder = Encoder {
            company: company.to_string(),
            file_id: file_id.to_string(),
            spool_dir: config.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
            props: config.writer_properties(),
            memory_budget_bytes: config.memory_budget_bytes,
            open: Vec::new(),
            done: Vec::new(),
            next_seq: HashMap::new(),
            valued: vec![false; hits_schema().fields().len()],
        };
        let sink = if config.encode_thread {
            let (tx, rx) = sync_channel::<Command>(4);
            let handle = std::thread::Builder::new()
                .name("bdia-lake-encode".into())
                .spawn(move || {
                    let mut encoder = encoder;
                    for command in rx {
                        encoder.apply(command)?;
                    }
                    encoder.finish()
                })?;
            Sink::Thread {
                tx: Some(tx),
                handle: Some(handle),
            }
        } else {
            Sink::Inline(Box::new(encoder))
        };
        Ok(LakeWriter {
            company: company.to_string(),
            file_id: file_id.to_string(),
            zones,
            config,
            days: DayCache::default(),
            open: Vec::new(),
            next_id: 0,
            sink,
            clock: 0,
            rows: 0,
        })
    }

    /// The file being written.
    pub fn file_id(&self) -> &str {
        &self.file_id
    }

    /// Hits pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds one enriched hit to its partition.
    pub fn push(&mut self, hit: &EnrichedHit) -> Result<(), LakeError> {
        self.clock += 1;
        if self.clock.is_multiple_of(self.config.batch_rows as u64) {
            self.close_idle()?;
        }
        let suite = hit.report_suite.as_str();
        let day = self.days.day(&self.zones, suite, hit.hit.timestamp)?;
        let idx = match self
            .open
            .iter()
            .position(|p| p.report_suite == suite && p.date == day)
        {
            Some(i) => i,
            None => self.open_partition((suite.to_string(), day))?,
        };
        let slot = &mut self.open[idx];
        slot.last_used = self.clock;
        slot.builder.append(hit, &self.file_id)?;
        self.rows += 1;
        if slot.builder.len() >= self.config.batch_rows {
            let batch = slot.builder.finish()?;
            let id = slot.id;
            self.sink.send(Command::Batch {
                id,
                batch,
                clock: self.clock,
            })?;
        }
        Ok(())
    }

    fn open_partition(&mut self, key: (String, Date)) -> Result<usize, LakeError> {
        check_suite(&key.0)?;
        while self.open.len() >= self.config.max_open_partitions {
            self.close_least_recent()?;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.sink.send(Command::Open {
            id,
            report_suite: key.0.clone(),
            date: key.1,
        })?;
        self.open.push(Slot {
            id,
            report_suite: key.0,
            date: key.1,
            builder: HitBatchBuilder::new(self.config.batch_rows),
            last_used: self.clock,
        });
        Ok(self.open.len() - 1)
    }

    /// Closes the partitions that got no hit during the last
    /// `2 x batch_rows` hits: in a file in time order, days that are over.
    /// Their column writers and builders are released long before
    /// `max_open_partitions` would force it.
    fn close_idle(&mut self) -> Result<(), LakeError> {
        let horizon = 2 * self.config.batch_rows as u64;
        let clock = self.clock;
        let mut idle: Vec<Slot> = Vec::new();
        let mut i = 0;
        while i < self.open.len() {
            if clock - self.open[i].last_used > horizon {
                idle.push(self.open.swap_remove(i));
            } else {
                i += 1;
            }
        }
        idle.sort_by_key(|s| s.id);
        for slot in idle {
            self.close_slot(slot)?;
        }
        Ok(())
    }

    fn close_least_recent(&mut self) -> Result<(), LakeError> {
        let i = (0..self.open.len())
            .min_by_key(|&i| self.open[i].last_used)
            .expect("called with open partitions");
        let slot = self.open.swap_remove(i);
        self.close_slot(slot)
    }

    fn close_slot(&mut self, mut slot: Slot) -> Result<(), LakeError> {
        if slot.builder.len() > 0 {
            let batch = slot.builder.finish()?;
            self.sink.send(Command::Batch {
                id: slot.id,
                batch,
                clock: slot.last_used,
            })?;
        }
        self.sink.send(Command::Close { id: slot.id })
    }

    /// Closes every partition: the file's output is complete in the spool.
    pub fn finish(mut self) -> Result<SpooledFile, LakeError> {
        let mut open = std::mem::take(&mut self.open);
        // Close in opening order: the same order whatever the path taken.
        open.sort_by_key(|s| s.id);
        for slot in open {
            self.close_slot(slot)?;
        }
        let mut parts = self.sink.finish()?;
        parts.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(SpooledFile {
            company: self.company.clone(),
            file_id: self.file_id.clone(),
            parts,
            rows: self.rows,
        })
    }
}
