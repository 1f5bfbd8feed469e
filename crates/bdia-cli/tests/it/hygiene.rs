//! What `bdia serve` leaves where other people can see it: its output
//! (which usually ends up in a log) and its data dir's modes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::BdiaServe;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Regression: the first start printed the client secret to stdout (and so
/// to journald). It now prints the path of credentials.json and an example
/// that reads the secret from it; the example works as printed.
#[test]
fn first_start_prints_where_the_secret_is_and_a_working_example() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data dir"); // a space: the path is quoted
    let server = BdiaServe::start_logged(&data, &[], dir.path());
    let printed = std::fs::read_to_string(dir.path().join("stdout.txt")).unwrap();
    let creds = server.credentials();
    let secret = creds["client_secret"].as_str().unwrap();
    assert!(secret.len() > 32);
    assert!(
        !printed.contains(secret),
        "the secret was printed:\n{printed}"
    );
    let file = std::fs::canonicalize(data.join("credentials.json")).unwrap();
    assert!(printed.contains(&file.display().to_string()), "{printed}");

    // The example, run as printed, in a directory with a batch file.
    let example = printed
        .split("Try it:\n\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\nbdia listening").next())
        .unwrap_or_else(|| panic!("no example in:\n{printed}"));
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let gen = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(["generate", "--rows", "10", "-o", "ingest_file.csv.gz"])
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let run = Command::new("bash")
        .args(["-c", example])
        .current_dir(&work)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains(r#""status_code":"UPLOADED""#) && stdout.contains(r#""rows":10"#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""visitor_group_id":"group1""#),
        "{stdout}"
    );
}

/// Regression: metadata, hits, IP addresses and salts were readable by
/// every local user (0644 files in 0755 directories). The data dir is now
/// 0700, bdia's files in it 0600 and its directories 0700, also in a data
/// dir made by an older release; other files in the directory are left
/// alone.
#[test]
fn the_data_dir_is_private_and_old_modes_are_fixed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A data dir as an older release left it, with someone else's file.
    std::fs::create_dir_all(data.join("blobs/files")).unwrap();
    std::fs::write(data.join("server.key"), "ab".repeat(32)).unwrap();
    std::fs::write(data.join("notes.txt"), b"mine").unwrap();
    for (p, m) in [
        (data.clone(), 0o755),
        (data.join("blobs"), 0o755),
        (data.join("blobs/files"), 0o755),
        (data.join("server.key"), 0o644),
        (data.join("notes.txt"), 0o644),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    let server = BdiaServe::start(&data, &[]);
    assert_eq!(mode(&data), 0o700);
    for d in ["blobs", "blobs/files", "lake", "lake-spool"] {
        assert_eq!(mode(&data.join(d)), 0o700, "{d}");
    }
    for f in ["metadata.sqlite", "server.key", "credentials.json"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    assert_eq!(
        mode(&data.join("notes.txt")),
        0o644,
        "not bdia's: left alone"
    );
    drop(server);
}

/// Regression: a percent-encoded newline and ESC in a visitor-group path
/// segment wrote a forged line (and a colour code) into the server's log.
/// User-supplied values are logged escaped, and there are no ANSI colours
/// when the log is not a terminal.
#[test]
fn user_supplied_values_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = BdiaServe::start_logged(&data, &[], dir.path());
    let creds = server.credentials();
    let id = creds["client_id"].as_str().unwrap();
    let curl = |args: &[&str]| {
        let out = Command::new("curl").arg("-s").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let token = server.access_token();
    let forged = "x%0A2026-01-01T00:00:00.000000Z%20%20INFO%20forged%3A%20%1B%5B31mred/retry";
    let answer = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-H",
        &format!("x-api-key: {id}"),
        &format!("{}/aa/collect/v1/groups/{forged}", server.url()),
    ]);
    assert!(answer.contains("retried"), "{answer}");
    drop(server); // flushes and closes the log
    let log = std::fs::read(dir.path().join("stderr.txt")).unwrap();
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("group retried"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "an escape code reached the log:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-01-01T00:00:00.000000Z")),
        "a forged line:\n{log}"
    );
}

/// Sends `len` bytes of form body to `path` on raw TCP (stopping early when
/// the server stops reading) and returns the status line of the answer, if
/// one could be read.
fn post_huge_form(port: u16, path: &str, len: usize) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_write_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    while sent < len {
        if s.write_all(&chunk).is_err() {
            break; // the server answered and closed: what the fix does
        }
        sent += chunk.len();
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.lines().next().map(str::to_string)
}

/// Regression: the token endpoints buffered bodies up to the upload limit
/// (100 MiB) before answering 401; 8 such requests added 0.9 GB to the
/// server. They now read at most 64 KiB and answer 413.
#[test]
fn token_endpoints_refuse_large_bodies_without_buffering_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = BdiaServe::start(&dir.path().join("data"), &[]);
    let before = server.peak_rss_kib();
    let port = server.port();
    let answers: Vec<Option<String>> = std::thread::scope(|s| {
        let jobs: Vec<_> = (0..8)
            .map(|i| {
                let path = if i % 2 == 0 {
                    "/ims/token/v3"
                } else {
                    "/ims/exchange/jwt"
                };
                s.spawn(move || post_huge_form(port, path, 40 << 20))
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    for a in answers.iter().flatten() {
        assert!(a.contains(" 413 "), "{a}");
    }
    assert!(
        answers.iter().any(Option::is_some),
        "no answer could be read: {answers:?}"
    );
    let after = server.peak_rss_kib();
    assert!(
        after < before + 64 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
    // A normal token request still works.
    assert!(super::common::healthy(port));
}
