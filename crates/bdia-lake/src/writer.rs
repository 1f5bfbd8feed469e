//! [`LakeWriter`]: enriched hits of one file -> Parquet part files in a local
//! spool, one writer per open partition, memory bounded.
//!
//! Each partition (report suite, day) of the file gets its own
//! [`parquet::arrow::ArrowWriter`] writing to an anonymous temporary file in
//! the spool directory (unlinked from the start: a crash leaves nothing to
//! clean up). Rows are buffered in Arrow builders up to
//! [`LakeConfig::batch_rows`], then encoded; Parquet row groups are closed at
//! [`LakeConfig::row_group_rows`] rows or [`LakeConfig::row_group_bytes`]
//! bytes. At most [`LakeConfig::max_open_partitions`] partitions are open at
//! once: opening one more closes the least recently written, and a partition
//! written again later gets its next part number. Row groups in progress of
//! all open partitions together stay under
//! [`LakeConfig::memory_budget_bytes`] (the least recently written end
//! theirs early). Memory is therefore about
//! `memory_budget_bytes + max_open_partitions x batch`, whatever the file size.
//!
//! Part names are a pure function of the file id, the hits and the
//! configuration, so writing the same file again yields the same objects.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;

use bdia_model::EnrichedHit;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::batch::HitBatchBuilder;
use crate::error::LakeError;
use crate::partition::{DayCache, SuiteZones};
use crate::schema::hits_schema;
use crate::{check_name, part_path};

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
    /// Parts up to this size are uploaded in one request, larger ones in
    /// multipart chunks of this size (S3 needs at least 5 MiB).
    pub upload_part_bytes: usize,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            spool_dir: None,
            batch_rows: 1_024,
            row_group_rows: 128 * 1024,
            row_group_bytes: 16 * 1024 * 1024,
            max_open_partitions: 16,
            memory_budget_bytes: 16 * 1024 * 1024,
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

    pub(crate) fn writer_properties(&self) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_max_row_group_bytes(Some(self.row_group_bytes))
            .build()
    }
}

/// One finished part file, waiting in the spool for [`crate::Lake::publish`].
#[derive(Debug)]
pub struct SpooledPart {
    /// Object path relative to the lake root (`hits/report_suite=.../part-....parquet`).
    pub path: String,
    /// Report suite of every row.
    pub report_suite: String,
    /// Partition day, `YYYY-MM-DD`.
    pub date: String,
    /// Rows in the part.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    pub(crate) file: File,
}

/// A file's output, fully written to the spool, not yet in the lake.
#[derive(Debug)]
pub struct StagedFile {
    /// The file id.
    pub file_id: String,
    /// Parts, sorted by path.
    pub parts: Vec<SpooledPart>,
    /// Hits written (all parts).
    pub rows: u64,
}

struct OpenPart {
    report_suite: String,
    date: String,
    seq: u32,
    builder: HitBatchBuilder,
    writer: ArrowWriter<BufWriter<File>>,
    rows: u64,
    last_used: u64,
}

/// Writes the enriched hits of one file: [`LakeWriter::push`] each hit, then
/// [`LakeWriter::finish`], then [`crate::Lake::publish`]. Synchronous and
/// CPU-bound: run it on a blocking thread.
pub struct LakeWriter {
    file_id: String,
    zones: SuiteZones,
    config: LakeConfig,
    props: WriterProperties,
    days: DayCache,
    open: Vec<OpenPart>,
    next_seq: HashMap<(String, String), u32>,
    done: Vec<SpooledPart>,
    clock: u64,
    rows: u64,
}

impl std::fmt::Debug for LakeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeWriter")
            .field("file_id", &self.file_id)
            .field("open_partitions", &self.open.len())
            .field("finished_parts", &self.done.len())
            .field("rows", &self.rows)
            .finish()
    }
}

impl LakeWriter {
    pub(crate) fn new(
        file_id: &str,
        zones: SuiteZones,
        config: LakeConfig,
    ) -> Result<LakeWriter, LakeError> {
        check_name("file_id", file_id)?;
        Ok(LakeWriter {
            file_id: file_id.to_string(),
            zones,
            props: config.writer_properties(),
            config,
            days: DayCache::default(),
            open: Vec::new(),
            next_seq: HashMap::new(),
            done: Vec::new(),
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
        let suite = hit.report_suite.as_str();
        let day = self.days.day(&self.zones, suite, hit.hit.timestamp)?;
        let idx = match self
            .open
            .iter()
            .position(|p| p.report_suite == suite && p.date == day)
        {
            Some(i) => i,
            None => {
                let key = (suite.to_string(), day.to_string());
                self.open_partition(key)?
            }
        };
        let part = &mut self.open[idx];
        part.last_used = self.clock;
        part.builder.append(hit, &self.file_id)?;
        part.rows += 1;
        self.rows += 1;
        if part.builder.len() >= self.config.batch_rows {
            let batch = part.builder.finish()?;
            part.writer.write(&batch)?;
            self.enforce_memory_budget()?;
        }
        Ok(())
    }

    fn open_partition(&mut self, key: (String, String)) -> Result<usize, LakeError> {
        check_name("report_suite", &key.0)?;
        while self.open.len() >= self.config.max_open_partitions {
            self.close_least_recent()?;
        }
        let file = self.spool_file()?;
        let seq = self.next_seq.entry(key.clone()).or_insert(0);
        let part = OpenPart {
            report_suite: key.0,
            date: key.1,
            seq: *seq,
            builder: HitBatchBuilder::new(),
            writer: ArrowWriter::try_new(
                BufWriter::with_capacity(64 * 1024, file),
                hits_schema(),
                Some(self.props.clone()),
            )?,
            rows: 0,
            last_used: self.clock,
        };
        *seq += 1;
        self.open.push(part);
        Ok(self.open.len() - 1)
    }

    /// Row groups in progress are held in memory until they are full. When
    /// all open partitions together hold more than
    /// [`LakeConfig::memory_budget_bytes`], the least recently written ones
    /// end their row group early (it goes to the spool file) until half the
    /// budget is left.
    fn enforce_memory_budget(&mut self) -> Result<(), LakeError> {
        let budget = self.config.memory_budget_bytes;
        let mut total: usize = self.open.iter().map(|p| p.writer.memory_size()).sum();
        if total <= budget {
            return Ok(());
        }
        let mut order: Vec<usize> = (0..self.open.len()).collect();
        order.sort_by_key(|&i| self.open[i].last_used);
        for i in order {
            if total <= budget / 2 {
                break;
            }
            let part = &mut self.open[i];
            let before = part.writer.memory_size();
            if part.builder.len() > 0 {
                let batch = part.builder.finish()?;
                part.writer.write(&batch)?;
            }
            part.writer.flush()?;
            total = total.saturating_sub(before);
        }
        Ok(())
    }

    fn spool_file(&self) -> Result<File, LakeError> {
        let dir = self
            .config
            .spool_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&dir)?;
        Ok(tempfile::tempfile_in(dir)?)
    }

    fn close_least_recent(&mut self) -> Result<(), LakeError> {
        let i = (0..self.open.len())
            .min_by_key(|&i| self.open[i].last_used)
            .expect("called with open partitions");
        let part = self.open.swap_remove(i);
        let done = self.close(part)?;
        self.done.push(done);
        Ok(())
    }

    fn close(&self, mut part: OpenPart) -> Result<SpooledPart, LakeError> {
        if part.builder.len() > 0 {
            let batch = part.builder.finish()?;
            part.writer.write(&batch)?;
        }
        let buf = part.writer.into_inner()?;
        let mut file = buf.into_inner().map_err(|e| e.into_error())?;
        file.flush()?;
        let bytes = file.seek(SeekFrom::End(0))?;
        file.seek(SeekFrom::Start(0))?;
        Ok(SpooledPart {
            path: part_path(&part.report_suite, &part.date, &self.file_id, part.seq),
            report_suite: part.report_suite,
            date: part.date,
            rows: part.rows,
            bytes,
            file,
        })
    }

    /// Closes every partition: the file's output is complete in the spool.
    pub fn finish(mut self) -> Result<StagedFile, LakeError> {
        let open: Vec<OpenPart> = std::mem::take(&mut self.open);
        for part in open {
            let done = self.close(part)?;
            self.done.push(done);
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(StagedFile {
            file_id: self.file_id.clone(),
            parts,
            rows: self.rows,
        })
    }
}
