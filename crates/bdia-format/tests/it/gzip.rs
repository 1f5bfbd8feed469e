//! The gzip layer: detection, multi-member streams, corruption, size limits,
//! and failures of the input itself.

use std::convert::Infallible;
use std::io::{self, Read};

use bdia_format::engine::{process, EngineError, Limits, Options};
use bdia_format::FileError;

use crate::{gz, run_with};

const CSV: &str = "timestamp,visitorID,reportSuiteID,userAgent,pageName\n1500000000,v1,rs,UA,Home\n1500000001,v1,rs,UA,About\n";

#[test]
fn not_gzip_is_rejected_with_zero_rows() {
    let r = run_with(CSV.as_bytes(), &Options::default());
    assert_eq!(r.report.rejection, Some(FileError::NotGzip));
    assert_eq!(r.report.rows, 0);
    assert_eq!(r.report.size, CSV.len() as u64);
    assert!(r.report.processing_log().contains("Not in GZIP format"));
    for tiny in [&b""[..], &b"\x1f"[..]] {
        let r = run_with(tiny, &Options::default());
        assert_eq!(r.report.rejection, Some(FileError::NotGzip));
    }
}

#[test]
fn multi_member_gzip_is_one_file() {
    let (a, b) = CSV.split_at(CSV.find("1500000001").unwrap());
    let mut bytes = gz(a.as_bytes());
    bytes.extend(gz(b.as_bytes()));
    let r = run_with(&bytes, &Options::default());
    assert_eq!((r.report.rows, r.report.invalid_rows), (2, 0));
    assert_eq!(r.report.size, bytes.len() as u64);
    assert_eq!(r.report.uncompressed_size, CSV.len() as u64);
}

#[test]
fn truncated_gzip_is_rejected() {
    let big: String =
        std::iter::once("timestamp,visitorID,reportSuiteID,userAgent,pageName\n".to_string())
            .chain((0..5000).map(|i| format!("{},v{i},rs,UA,Page {i}\n", 1_500_000_000 + i)))
            .collect();
    let bytes = gz(big.as_bytes());
    let cut = &bytes[..bytes.len() / 2];
    let r = run_with(cut, &Options::default());
    assert!(
        matches!(r.report.rejection, Some(FileError::BadGzip(_))),
        "{:?}",
        r.report.rejection
    );
    assert_eq!(r.report.status_code().as_str(), "REJECTED");
    assert_eq!(r.report.invalid_rows, r.report.rows);
}

#[test]
fn corrupt_checksum_is_rejected() {
    let mut bytes = gz(CSV.as_bytes());
    let n = bytes.len();
    bytes[n - 6] ^= 0xff; // inside the CRC32 trailer
    let r = run_with(&bytes, &Options::default());
    assert!(matches!(r.report.rejection, Some(FileError::BadGzip(_))));
}

#[test]
fn compressed_limit() {
    let bytes = gz(CSV.as_bytes());
    let opts = Options {
        limits: Limits {
            max_compressed: bytes.len() as u64 - 1,
            max_uncompressed: 1 << 30,
            ..Limits::default()
        },
        ..Options::default()
    };
    let r = run_with(&bytes, &opts);
    assert!(r.report.rejection.as_ref().unwrap().is_too_large());
    let opts = Options {
        limits: Limits {
            max_compressed: bytes.len() as u64,
            max_uncompressed: 1 << 30,
            ..Limits::default()
        },
        ..Options::default()
    };
    assert_eq!(run_with(&bytes, &opts).report.rejection, None);
}

/// A reader producing a gzip bomb on the fly: a valid gzip of `n` zero bytes
/// per member, repeated forever. Counts what was read from it.
struct Bomb {
    member: Vec<u8>,
    pos: usize,
    served: u64,
}

impl Read for Bomb {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.member.len() {
            self.pos = 0;
        }
        let n = buf.len().min(self.member.len() - self.pos);
        buf[..n].copy_from_slice(&self.member[self.pos..self.pos + n]);
        self.pos += n;
        self.served += n as u64;
        Ok(n)
    }
}

#[test]
fn decompression_bomb_is_refused_at_the_limit() {
    let mut first =
        b"timestamp,visitorID,reportSuiteID,userAgent,pageName,prop1\n1,v,rs,UA,P,".to_vec();
    first.extend(vec![b'0'; 4 << 20]);
    let member = gz(&first);
    let limit = 64 << 20;
    let mut bomb = Bomb {
        member,
        pos: 0,
        served: 0,
    };
    let opts = Options {
        limits: Limits {
            max_compressed: u64::MAX,
            max_uncompressed: limit,
            ..Limits::default()
        },
        ..Options::default()
    };
    let report = process(&mut bomb, &opts, |_| Ok::<_, Infallible>(())).unwrap();
    assert_eq!(
        report.rejection,
        Some(FileError::TooLargeUncompressed { limit })
    );
    assert_eq!(
        report.uncompressed_size,
        limit + 1,
        "never inflated past the limit"
    );
    // Only about limit/ratio compressed bytes were ever pulled from the source.
    assert!(
        bomb.served < 2 << 20,
        "read {} bytes of the bomb",
        bomb.served
    );
}

struct Failing {
    data: Vec<u8>,
    pos: usize,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.data.len() / 2 {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "peer went away",
            ));
        }
        let n = buf.len().min(self.data.len() / 2 - self.pos).min(7);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn input_failure_is_an_error_not_a_verdict() {
    let big: String = (0..2000).map(|i| format!("{i},v,rs,UA,P\n")).collect();
    let data =
        gz(format!("timestamp,visitorID,reportSuiteID,userAgent,pageName\n{big}").as_bytes());
    for threaded in [true, false] {
        let opts = Options {
            threaded,
            ..Options::default()
        };
        let err = process(
            Failing {
                data: data.clone(),
                pos: 0,
            },
            &opts,
            |_| Ok::<_, Infallible>(()),
        )
        .unwrap_err();
        match err {
            EngineError::Input(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Hands out one byte per read, like a slow network peer.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() || buf.is_empty() {
            return Ok(0);
        }
        buf[0] = self.0[0];
        self.0 = &self.0[1..];
        Ok(1)
    }
}

#[test]
fn one_byte_reads_and_both_thread_modes_agree() {
    let bytes = gz(CSV.as_bytes());
    for threaded in [true, false] {
        let opts = Options {
            threaded,
            ..Options::default()
        };
        let r = process(Trickle(&bytes), &opts, |_| Ok::<_, Infallible>(())).unwrap();
        assert_eq!((r.rows, r.invalid_rows, r.rejection), (2, 0, None));
    }
}

#[test]
fn sink_error_stops_the_run() {
    let bytes = gz(CSV.as_bytes());
    #[derive(Debug, PartialEq)]
    struct DiskFull;
    let err = process(&bytes[..], &Options::default(), |_| Err(DiskFull)).unwrap_err();
    // The sink's own error comes back as it was returned.
    assert!(matches!(err, EngineError::Sink(DiskFull)));
}
