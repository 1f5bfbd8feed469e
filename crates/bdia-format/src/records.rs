//! CSV records read with a bound on the size of each record.
//!
//! The `csv` crate's reader keeps a whole record in memory however long it
//! is: one 512 MiB line is one 512 MiB buffer. [`RecordReader`] drives the
//! same parser (`csv_core`, with the `csv` crate's defaults: RFC 4180 quoting,
//! doubled quotes, CRLF, LF and CR each ending a record, blank lines
//! skipped, a leading UTF-8 BOM dropped when the first read holds it whole,
//! as with `csv`) but stops keeping a record's bytes
//! as soon as the record is over the limit. The rest of that record is still
//! parsed, so its end is found exactly where CSV quoting puts it (a quoted
//! line break does not end it), and then discarded: the caller learns the
//! record's size and gets a short excerpt ([`EXCERPT_BYTES`]) instead of
//! the record.
//!
//! The size of a record is the bytes of its fields after unquoting, plus one
//! for each separator between them: for a record without quotes, its length
//! in the file without the line break. Memory held is at most the limit in
//! field bytes plus one offset per field, whatever the input.

use std::io::{self, BufRead};

use csv::ByteRecord;
use csv_core::ReadRecordResult;

/// Bytes of an over-long record's fields kept as its excerpt.
pub const EXCERPT_BYTES: usize = 1024;

/// What [`RecordReader::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A record within the limit, now in the caller's record.
    Record,
    /// A record over the limit, read to its end and dropped; the caller's
    /// record holds its first [`EXCERPT_BYTES`] of field bytes (the last
    /// field kept may be cut).
    TooLong {
        /// The record's size (see the module documentation).
        bytes: u64,
        /// Its number of fields.
        fields: u64,
    },
    /// The input is exhausted.
    End,
}

/// Reads CSV records from a buffered input, none bigger than a limit.
pub struct RecordReader<R> {
    input: R,
    core: csv_core::Reader,
    /// Field bytes of the record being read.
    fields: Vec<u8>,
    /// End offset of each field in `fields`.
    ends: Vec<usize>,
}

impl<R: BufRead> RecordReader<R> {
    /// A reader over `input`.
    pub fn new(input: R) -> RecordReader<R> {
        RecordReader {
            input,
            core: csv_core::Reader::new(),
            fields: vec![0; 1024],
            ends: vec![0; 32],
        }
    }

    /// Reads the next record into `record`, keeping it only when its size is
    /// at most `max_bytes`.
    pub fn read(&mut self, record: &mut ByteRecord, max_bytes: usize) -> io::Result<Next> {
        record.clear();
        // Bytes and ends kept in the buffers.
        let (mut outlen, mut endlen) = (0usize, 0usize);
        // Once over the limit: bytes and ends parsed past the kept ones.
        let mut dropped: Option<(u64, u64)> = None;
        loop {
            let input = match self.input.fill_buf() {
                Ok(input) => input,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let (res, nin, nout, nend) = match dropped {
                // Past the limit the buffers are scratch space: the parser
                // only needs room to write, and what it writes is counted.
                Some(_) => self
                    .core
                    .read_record(input, &mut self.fields, &mut self.ends),
                None => self.core.read_record(
                    input,
                    &mut self.fields[outlen..],
                    &mut self.ends[endlen..],
                ),
            };
            self.input.consume(nin);
            match &mut dropped {
                Some((out, ends)) => {
                    *out += nout as u64;
                    *ends += nend as u64;
                }
                None => {
                    outlen += nout;
                    endlen += nend;
                }
            }
            match res {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    if dropped.is_none() {
                        grow(&mut self.fields, max_bytes);
                    }
                }
                ReadRecordResult::OutputEndsFull => {
                    if dropped.is_none() {
                        grow(&mut self.ends, max_bytes);
                    }
                }
                ReadRecordResult::Record => break,
                ReadRecordResult::End => return Ok(Next::End),
            }
            // While a record is open, each field it has ended was followed
            // by a separator: `outlen + endlen` is its size so far, and the
            // size only grows from here.
            if dropped.is_none() && outlen + endlen > max_bytes {
                self.excerpt(record, outlen, endlen);
                dropped = Some((0, 0));
            }
        }
        match dropped {
            Some((out, ends)) => {
                let out = outlen as u64 + out;
                let fields = endlen as u64 + ends;
                Ok(Next::TooLong {
                    bytes: out + fields - 1,
                    fields,
                })
            }
            None if outlen + endlen - 1 > max_bytes => {
                self.excerpt(record, outlen, endlen);
                Ok(Next::TooLong {
                    bytes: (outlen + endlen - 1) as u64,
                    fields: endlen as u64,
                })
            }
            None => {
                let mut start = 0;
                for &end in &self.ends[..endlen] {
                    record.push_field(&self.fields[start..end]);
                    start = end;
                }
                Ok(Next::Record)
            }
        }
    }

    /// Puts the fields within the first [`EXCERPT_BYTES`] of the buffers
    /// into `record`, the last one cut.
    fn excerpt(&self, record: &mut ByteRecord, outlen: usize, endlen: usize) {
        let keep = outlen.min(EXCERPT_BYTES);
        let mut start = 0;
        for &end in &self.ends[..endlen] {
            if end > keep {
                break;
            }
            record.push_field(&self.fields[start..end]);
            start = end;
        }
        if start < keep {
            record.push_field(&self.fields[start..keep]);
        }
    }
}

/// Doubles a buffer, to at most `max + 1` entries (enough to see that a
/// record is over `max`).
fn grow<T: Copy + Default>(buf: &mut Vec<T>, max: usize) {
    let cap = max.saturating_add(1);
    if buf.len() < cap {
        let len = buf.len().saturating_mul(2).min(cap);
        buf.resize(len, T::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Read = (Next, Vec<String>);

    /// Every record of `input` read with `max` through a buffer of `cap`
    /// bytes.
    fn read_with(input: &[u8], max: usize, cap: usize) -> Vec<Read> {
        let mut out = Vec::new();
        let mut rdr = RecordReader::new(io::BufReader::with_capacity(cap, input));
        let mut rec = ByteRecord::new();
        loop {
            let next = rdr.read(&mut rec, max).unwrap();
            if next == Next::End {
                return out;
            }
            let fields = rec
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            out.push((next, fields));
        }
    }

    /// Every record of `input` read with `max`, the same whatever the
    /// read sizes (one byte at a time: every state of the parser meets a
    /// read boundary). An excerpt may be longer when reads are, never
    /// different.
    fn read_all(input: &[u8], max: usize) -> Vec<Read> {
        let bytewise = read_with(input, max, 1);
        for cap in [7, 64 * 1024] {
            let other = read_with(input, max, cap);
            assert_eq!(other.len(), bytewise.len());
            for (a, b) in bytewise.iter().zip(&other) {
                assert_eq!(a.0, b.0);
                match a.0 {
                    Next::TooLong { .. } => {
                        assert!(b.1.join(",").starts_with(&a.1.join(",")), "{a:?} {b:?}")
                    }
                    _ => assert_eq!(a.1, b.1),
                }
                assert!(b.1.iter().map(String::len).sum::<usize>() <= EXCERPT_BYTES.max(max));
            }
        }
        bytewise
    }

    fn rec(fields: &[&str]) -> Read {
        (Next::Record, fields.iter().map(|s| s.to_string()).collect())
    }

    fn long(bytes: u64, fields: u64, excerpt: &[&str]) -> Read {
        (
            Next::TooLong { bytes, fields },
            excerpt.iter().map(|s| s.to_string()).collect(),
        )
    }

    #[test]
    fn a_record_exactly_at_the_limit_is_kept_one_byte_more_is_not() {
        // "abc,de" is 6 bytes: 5 field bytes and one separator.
        assert_eq!(
            read_all(b"abc,de\nabc,def\nx\n", 6),
            [
                rec(&["abc", "de"]),
                long(7, 2, &["abc", "def"]),
                rec(&["x"])
            ]
        );
        // Without the final line break too.
        assert_eq!(read_all(b"abc,de", 6), [rec(&["abc", "de"])]);
        assert_eq!(read_all(b"abc,def", 6), [long(7, 2, &["abc", "def"])]);
        // Empty fields count their separators.
        assert_eq!(read_all(b",,,,,,\n", 6), [rec(&[""; 7])]);
        assert_eq!(
            read_all(b",,,,,,,\n", 6)[0].0,
            Next::TooLong {
                bytes: 7,
                fields: 8
            }
        );
        // Quotes are not counted: the unquoted "a,b" is 3 bytes.
        assert_eq!(read_all(b"\"a,b\"\n", 3), [rec(&["a,b"])]);
        assert_eq!(read_all(b"\"a,bc\"\n", 3), [long(4, 1, &["a,bc"])]);
    }

    #[test]
    fn the_same_records_as_the_csv_crate_within_the_limit() {
        let input: &[u8] =
            b"h1,h2\r\n\r\na,\"b\"\"q\"\"\"\r\n\"multi\nline\",\"x,y\"\n\n\nlast,row";
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        let expected: Vec<Read> = csv
            .byte_records()
            .map(|r| {
                let r = r.unwrap();
                let fields = r.iter().map(|f| String::from_utf8_lossy(f).into_owned());
                (Next::Record, fields.collect())
            })
            .collect();
        assert_eq!(expected.len(), 4);
        assert_eq!(read_all(input, 1 << 20), expected);
        let bom = [b"\xef\xbb\xbf", input].concat();
        assert_eq!(read_with(&bom, 1 << 20, 64), expected, "the BOM is dropped");
    }

    #[test]
    fn quoted_line_breaks_do_not_end_an_over_long_record() {
        let mut input = b"h\n\"".to_vec();
        for _ in 0..1000 {
            input.extend_from_slice(b"line\nbreak,\r\n\"\"");
        }
        input.extend_from_slice(b"\",tail\nnext,row\n");
        let all = read_all(&input, 100);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], rec(&["h"]));
        // 1000 times 14 unquoted bytes ("line\nbreak,\r\n\""), a separator, "tail".
        assert_eq!(
            all[1].0,
            Next::TooLong {
                bytes: 14_000 + 1 + 4,
                fields: 2
            }
        );
        assert_eq!(all[1].1.len(), 1, "the start of the first field");
        assert_eq!(all[1].1[0], "line\nbreak,\r\n\"".repeat(8)[..101]);
        assert_eq!(all[2], rec(&["next", "row"]));
    }

    #[test]
    fn crlf_and_cr_end_records_and_are_not_counted() {
        assert_eq!(
            read_all(b"abcd\r\nabcde\r\nab\r\n", 4),
            [rec(&["abcd"]), long(5, 1, &["abcde"]), rec(&["ab"])]
        );
        assert_eq!(
            read_all(b"abcd\rabcde\rab", 4),
            [rec(&["abcd"]), long(5, 1, &["abcde"]), rec(&["ab"])]
        );
    }

    #[test]
    fn a_long_last_row_without_a_line_break_is_measured_whole() {
        let mut input = b"a,b\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend_from_slice(b",y");
        let all = read_all(&input, 1000);
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[1].0,
            Next::TooLong {
                bytes: 10_002,
                fields: 2
            }
        );
        assert_eq!(all[1].1, ["x".repeat(1001)]);
    }

    #[test]
    fn many_empty_fields_are_bounded_like_bytes() {
        let input = vec![b','; 1 << 20];
        let mut rdr = RecordReader::new(io::BufReader::new(&input[..]));
        let mut rec = ByteRecord::new();
        assert_eq!(
            rdr.read(&mut rec, 1000).unwrap(),
            Next::TooLong {
                bytes: 1 << 20,
                fields: (1 << 20) + 1
            }
        );
        assert!(rdr.ends.len() <= 1001, "{}", rdr.ends.len());
        assert_eq!(rdr.read(&mut rec, 1000).unwrap(), Next::End);
    }

    #[test]
    fn buffers_stay_within_the_limit_on_a_huge_record() {
        let mut input = vec![b'z'; 8 << 20];
        input.extend_from_slice(b"\nok\n");
        let mut rdr = RecordReader::new(io::BufReader::new(&input[..]));
        let mut rec = ByteRecord::new();
        assert_eq!(
            rdr.read(&mut rec, 4096).unwrap(),
            Next::TooLong {
                bytes: 8 << 20,
                fields: 1
            }
        );
        assert!(rdr.fields.len() <= 4097, "{}", rdr.fields.len());
        assert_eq!(rec.len(), 1);
        assert_eq!(rec[0].len(), EXCERPT_BYTES);
        assert_eq!(rdr.read(&mut rec, 4096).unwrap(), Next::Record);
        assert_eq!(&rec[0], b"ok");
    }

    proptest::proptest! {
        /// Whatever the bytes, the limit and the read sizes: the same
        /// records as the `csv` crate, each kept when its size is within
        /// the limit and otherwise measured exactly.
        #[test]
        fn records_and_sizes_agree_with_the_csv_crate(
            input in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b'b', b',', b'"', b'\n', b'\r']),
                0..400,
            ),
            max in 0usize..40,
            cap in 1usize..16,
        ) {
            let mut csv = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(&input[..]);
            let expected: Vec<Read> = csv
                .byte_records()
                .map(|r| {
                    let r = r.unwrap();
                    let fields: Vec<String> =
                        r.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
                    let bytes = r.as_slice().len() + r.len() - 1;
                    if bytes <= max {
                        (Next::Record, fields)
                    } else {
                        (Next::TooLong { bytes: bytes as u64, fields: r.len() as u64 }, fields)
                    }
                })
                .collect();
            let got = read_with(&input, max, cap);
            proptest::prop_assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                proptest::prop_assert_eq!(g.0, e.0);
                if g.0 == Next::Record {
                    proptest::prop_assert_eq!(&g.1, &e.1);
                } else {
                    // The excerpt is the record's start.
                    proptest::prop_assert!(e.1.join(",").starts_with(&g.1.join(",")));
                }
            }
        }
    }
}
