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
    let out = dir.path().join("stdout.txt");
    let server = BdiaServe::start_logged(&data, &[], &out);
    let printed = std::fs::read_to_string(&out).unwrap();
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
