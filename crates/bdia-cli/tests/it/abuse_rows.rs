//! Rows and reject reports that cost the server memory out of proportion
//! to the upload: a small gzip holding one huge row, and uploads whose
//! reject report is hundreds of times their size. Each test sends the
//! attack over real HTTP to `bdia serve` (or runs the real `bdia validate`
//! and `bdia prepare`) and asserts the memory bound from the process's
//! `VmHWM`.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::BdiaServe;

const HEADER: &str = "timestamp,visitorID,reportSuiteID,userAgent,pageName\n";

/// Writes a gzip file at `path` from what `write` produces, streamed
/// through `gzip -9` (native speed; the content is never in memory).
fn gzip_to(path: &Path, write: impl FnOnce(&mut dyn Write)) {
    let mut gzip = Command::new("gzip")
        .args(["-9", "-c"])
        .stdin(Stdio::piped())
        .stdout(File::create(path).unwrap())
        .spawn()
        .unwrap();
    {
        let mut stdin = BufWriter::new(gzip.stdin.take().unwrap());
        write(&mut stdin);
        stdin.flush().unwrap();
    }
    assert!(gzip.wait().unwrap().success());
}

/// Writes a gzip batch file: a valid row, one row of `huge` bytes (plus
/// its short fields) whose last field is quoted and holds a line break
/// every MiB (so a line-based reader would see many short rows), then two
/// valid rows.
fn huge_row_file(path: &Path, huge: usize) {
    gzip_to(path, |w| {
        w.write_all(HEADER.as_bytes()).unwrap();
        w.write_all(b"1700000000,v1,acme.rows,UA,Before\n").unwrap();
        w.write_all(b"1700000001,v1,acme.rows,UA,\"").unwrap();
        let mut chunk = vec![b'x'; 1 << 20];
        *chunk.last_mut().unwrap() = b'\n';
        for _ in 0..huge / chunk.len() {
            w.write_all(&chunk).unwrap();
        }
        w.write_all(b"\"\n1700000002,v1,acme.rows,UA,After\n1700000003,v2,acme.rows,UA,Last\n")
            .unwrap();
    });
}

/// A client of one `bdia serve`, through curl.
struct Api {
    url: String,
    client_id: String,
    token: String,
}

impl Api {
    fn new(server: &BdiaServe) -> Api {
        Api {
            url: server.url(),
            client_id: server.credentials()["client_id"]
                .as_str()
                .unwrap()
                .to_string(),
            token: server.access_token(),
        }
    }

    fn auth(&self) -> [String; 4] {
        [
            "-H".into(),
            format!("Authorization: Bearer {}", self.token),
            "-H".into(),
            format!("x-api-key: {}", self.client_id),
        ]
    }

    /// POSTs a file to `path` (upload or validate); the status and JSON.
    fn send(&self, path: &str, file: &Path) -> (u16, serde_json::Value) {
        let mut args: Vec<String> = self.auth().to_vec();
        args.extend([
            "-X".into(),
            "POST".into(),
            "-H".into(),
            "x-adobe-vgid: group1".into(),
            "-F".into(),
            format!("file=@{}", file.display()),
            "-w".into(),
            "\n%{http_code}".into(),
            format!("{}{path}", self.url),
        ]);
        let out = curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let (body, status) = out.rsplit_once('\n').unwrap();
        let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (status.parse().unwrap(), json)
    }

    fn get(&self, path: &str) -> String {
        let mut args: Vec<String> = self.auth().to_vec();
        args.push(format!("{}{path}", self.url));
        curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn record(&self, file_id: &str) -> serde_json::Value {
        serde_json::from_str(&self.get(&format!("/aa/collect/v1/events/{file_id}"))).unwrap()
    }

    /// Waits until the file is processed (COMPLETE).
    fn processed(&self, file_id: &str) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let rec = self.record(file_id);
            match rec["status_code"].as_str().unwrap() {
                "COMPLETE" => return rec,
                "UPLOADED" | "PROCESSING" => {}
                other => panic!("file {file_id} is {other}: {rec}"),
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "not processed: {rec}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl").arg("-s").args(args).output().unwrap();
    assert!(out.status.success(), "curl {args:?}: {:?}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a `bdia` command to its end, polling its `VmHWM`; returns its
/// exit code, standard output and peak resident memory in KiB.
fn bdia_measured(args: &[&str]) -> (i32, String, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            if let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status.code().unwrap_or(-1), out, peak)
}

/// Regression: one huge row in a small gzip was read into one CSV record
/// (and copied into the reject report): four uploads of a 512 MiB row took
/// the server to 5.5 GB. Here a 128 MiB row, which costs each pass more
/// than the bounds below when it is held. The row is now an invalid row `row_too_long`,
/// read to its end without being kept, at upload, validate and processing,
/// and the rows after it are read as usual.
#[test]
fn a_huge_row_is_an_invalid_row_and_costs_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("huge-row.csv.gz");
    const HUGE: usize = 128 << 20;
    huge_row_file(&file, HUGE);
    let gz_size = std::fs::metadata(&file).unwrap().len();
    assert!(gz_size < 2 << 20, "{gz_size} bytes");
    let small = dir.path().join("small.csv.gz");
    gzip_to(&small, |w| {
        w.write_all(HEADER.as_bytes()).unwrap();
        w.write_all(b"1700000000,v1,acme.rows,UA,Home\n").unwrap();
    });

    let server = BdiaServe::start(&dir.path().join("data"), &[]);
    let api = Api::new(&server);
    // The baseline: the server after a small upload was taken and processed.
    let (status, rec) = api.send("/aa/collect/v1/events", &small);
    assert_eq!(status, 200, "{rec}");
    api.processed(rec["file_id"].as_str().unwrap());
    let before = server.peak_rss_kib();

    // An upload and a validate of the file at once.
    let answers: Vec<(u16, serde_json::Value)> = std::thread::scope(|s| {
        let jobs: Vec<_> = ["/aa/collect/v1/events", "/aa/collect/v1/events/validate"]
            .into_iter()
            .map(|path| {
                let (api, file) = (&api, &file);
                s.spawn(move || api.send(path, file))
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    let too_long = format!(
        "On row: 2, row too long: {} bytes (at most 1048576). This row will not be submitted.",
        // The unquoted field, plus the short fields and their separators.
        HUGE + "1700000001,v1,acme.rows,UA,".len()
    );
    let (status, upload) = &answers[0];
    assert_eq!(*status, 200, "{upload}");
    assert_eq!(upload["status_code"], "UPLOADED", "{upload}");
    assert_eq!(
        (upload["rows"].as_u64(), upload["invalid_rows"].as_u64()),
        (Some(4), Some(1))
    );
    let log = upload["processing_log"].as_str().unwrap();
    assert!(log.contains(&too_long), "{log}");
    assert_eq!(upload["rejects_kept"], 1);
    let (status, validation) = &answers[1];
    assert_eq!(*status, 400, "{validation}");
    assert_eq!(
        (
            validation["rows"].as_u64(),
            validation["invalid_rows"].as_u64()
        ),
        (Some(4), Some(1))
    );
    assert!(validation["processing_log"]
        .as_str()
        .unwrap()
        .contains(&too_long));

    // Processing reads the staged file again: the same row is skipped, the
    // three others are processed.
    let file_id = upload["file_id"].as_str().unwrap();
    let rec = api.processed(file_id);
    assert_eq!(
        (rec["rows"].as_u64(), rec["invalid_rows"].as_u64()),
        (Some(4), Some(1))
    );
    let rejects = api.get(&format!("/aa/collect/v1/events/{file_id}/rejects"));
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines.len(), 2, "{rejects:.300}");
    assert!(
        lines[1].starts_with("2,row_too_long,row too long: "),
        "{:.300}",
        lines[1]
    );
    assert!(lines[1].len() < 4096, "only the row's start is listed");
    let after = server.peak_rss_kib();
    eprintln!("bdia serve VmHWM: {before} KiB before the huge row, {after} KiB after");
    assert!(
        after < before + 150 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );

    // The rows around it reached the lake.
    let pages = api.get(
        "/api/v1/report-suites/acme.rows/report?metrics=pageviews&dimension=page&from=2023-11-14&to=2023-11-15",
    );
    for page in ["Before", "After", "Last"] {
        assert!(pages.contains(page), "{page} not reported: {pages}");
    }

    // `bdia validate` and `bdia prepare`: the same verdict, bounded memory.
    let (_, _, validate_base) = bdia_measured(&["validate", "--json", small.to_str().unwrap()]);
    let (code, out, validate_peak) = bdia_measured(&["validate", "--json", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["rows"].as_u64(), v["invalid_rows"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(v["errors"][0]["kind"], "row_too_long", "{v}");
    assert_eq!(v["errors"][0]["row"], 2, "{v}");
    eprintln!("bdia validate VmHWM: {validate_base} KiB small file, {validate_peak} KiB huge row");
    assert!(
        validate_peak < validate_base + 100 * 1024,
        "bdia validate: {validate_base} KiB for a small file, {validate_peak} KiB for the huge row"
    );

    let prepare = |input: &Path, out: &str| {
        bdia_measured(&[
            "prepare",
            input.to_str().unwrap(),
            "--groups",
            "1",
            "--json",
            "--out",
            dir.path().join(out).to_str().unwrap(),
        ])
    };
    let (_, _, prepare_base) = prepare(&small, "prepared-small");
    let (code, out, prepare_peak) = prepare(&file, "prepared");
    assert_eq!(code, 0, "{out}");
    let p: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            p["input_rows"].as_u64(),
            p["written_rows"].as_u64(),
            p["rejected_rows"].as_u64()
        ),
        (Some(4), Some(3), Some(1)),
        "{p}"
    );
    assert_eq!(p["rejected_by_kind"]["row_too_long"], 1, "{p}");
    let rejects = std::fs::read_to_string(dir.path().join("prepared/rejects.csv")).unwrap();
    assert!(rejects.len() < 8192, "{} bytes", rejects.len());
    eprintln!("bdia prepare VmHWM: {prepare_base} KiB small file, {prepare_peak} KiB huge row");
    assert!(
        prepare_peak < prepare_base + 100 * 1024,
        "bdia prepare: {prepare_base} KiB for a small file, {prepare_peak} KiB for the huge row"
    );
}

/// A gzip of `rows` rows of `width` bytes each, all invalid (no user
/// agent): a few hundred KiB that inflate to a reject report hundreds of
/// times bigger when every row is kept.
fn many_invalid_rows_file(path: &Path, rows: usize, width: usize) {
    gzip_to(path, |w| {
        w.write_all(HEADER.as_bytes()).unwrap();
        let prefix = "1700000000,v1,acme.rows,,";
        let row = format!("{prefix}{}\n", "p".repeat(width - prefix.len()));
        for _ in 0..rows {
            w.write_all(row.as_bytes()).unwrap();
        }
    });
}

/// Reads up to `limit` bytes of a file's reject report slowly, then
/// hangs up; returns the bytes read.
fn slow_read(port: u16, api: &Api, file_id: &str, limit: usize) -> usize {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /aa/collect/v1/events/{file_id}/rejects HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {}\r\nx-api-key: {}\r\n\r\n",
        api.token, api.client_id
    )
    .unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = 0;
    while got < limit {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    got
}

/// Regression: every invalid row went to the reject report in full (a
/// 1.4 MB upload made a 567 MB report), and the rejects endpoint read the
/// report whole for each reader. The report now lists the first
/// `limits.max_reject_rows` rows, each cut to `max_reject_raw_bytes`, then
/// counts the rest, and says so in the record (`rejects_kept`); and it is
/// streamed, so slow readers of a big report cost no memory.
#[test]
fn reject_reports_are_capped_and_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("invalid.csv.gz");
    // 20,000 rows of 5,000 bytes: 100 MB of CSV.
    many_invalid_rows_file(&file, 20_000, 5_000);
    let gz_size = std::fs::metadata(&file).unwrap().len();
    assert!(gz_size < 2 << 20, "{gz_size} bytes");

    // The default limits: 1000 rows listed, raw cut at 4096 bytes.
    let no_processing = ("BDIA_PROCESSING_ENABLED", "false");
    let server = BdiaServe::start(&dir.path().join("capped"), &[no_processing]);
    let api = Api::new(&server);
    let (status, rec) = api.send("/aa/collect/v1/events", &file);
    assert_eq!(status, 200, "{rec}");
    assert_eq!(
        (rec["rows"].as_u64(), rec["invalid_rows"].as_u64()),
        (Some(20_000), Some(20_000))
    );
    assert_eq!(rec["rejects_kept"], 1000, "{rec}");
    let file_id = rec["file_id"].as_str().unwrap();
    assert_eq!(api.record(file_id)["rejects_kept"], 1000);
    let report = api.get(&format!("/aa/collect/v1/events/{file_id}/rejects"));
    assert!(report.len() < 5 << 20, "{} bytes", report.len());
    let mut csv = csv::Reader::from_reader(report.as_bytes());
    let lines: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(lines.len(), 1001);
    for (i, line) in lines[..1000].iter().enumerate() {
        assert_eq!(&line[0], (i + 1).to_string(), "the first rows, in order");
        assert_eq!(&line[1], "missing_user_agent");
        assert_eq!(line[3].len(), 4096, "raw cut");
        assert!(line[3].ends_with("pp..."));
    }
    assert_eq!(
        lines[1000].iter().collect::<Vec<_>>(),
        [
            "",
            "missing_user_agent",
            "19000 more rows of this kind not listed (20000 in all)",
            ""
        ]
    );
    drop(server);

    // Every row kept (a big report), read by slow readers at once: the
    // report is streamed, not loaded per reader.
    let server = BdiaServe::start(
        &dir.path().join("uncapped"),
        &[
            ("BDIA_MAX_REJECT_ROWS", "100000"),
            ("BDIA_MAX_REJECT_RAW_BYTES", "10000"),
        ],
    );
    let api = Api::new(&server);
    let (status, rec) = api.send("/aa/collect/v1/events", &file);
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["rejects_kept"], 20_000, "{rec}");
    let file_id = rec["file_id"].as_str().unwrap().to_string();
    let size = std::fs::metadata(
        dir.path()
            .join("uncapped/blobs/rejects")
            .join(format!("{file_id}.csv")),
    )
    .unwrap()
    .len();
    assert!(size > 100_000_000, "a report of {size} bytes");
    let before = server.peak_rss_kib();
    let port = server.port();
    let read: Vec<usize> = std::thread::scope(|s| {
        let jobs: Vec<_> = (0..4)
            .map(|_| {
                let (api, file_id) = (&api, &file_id);
                s.spawn(move || slow_read(port, api, file_id, 4 << 20))
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    for n in &read {
        assert!(*n >= 4 << 20, "a reader got {n} bytes");
    }
    let after = server.peak_rss_kib();
    eprintln!(
        "bdia serve VmHWM: {before} KiB before 4 slow readers of {size} bytes, {after} KiB after"
    );
    assert!(
        after < before + 100 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB with 4 readers of a {size}-byte report"
    );
    // A whole read still gets every byte.
    let whole = api.get(&format!("/aa/collect/v1/events/{file_id}/rejects"));
    assert_eq!(whole.len() as u64, size);
}
