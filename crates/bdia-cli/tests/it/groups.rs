//! `bdia group` and `bdia admin group` against a real `bdia serve`: pause
//! (by the operator on the data dir), show, resume and cancel (by the API
//! client), each recorded with its actor.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{admin_output, json, BdiaServe};

fn remote(server: &BdiaServe, args: &[&str]) -> Output {
    server.remote(args)
}

fn generated(dir: &Path) -> String {
    let file = dir.join("f.csv.gz");
    let out = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(["generate", "--rows", "20", "-o"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    file.to_str().unwrap().to_string()
}

#[test]
fn groups_are_paused_shown_resumed_and_cancelled_from_both_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = BdiaServe::start(&data, &[]);
    let creds = server.credentials();
    let company = creds["company"].as_str().unwrap().to_string();
    let client = creds["client_id"].as_str().unwrap().to_string();

    let out = remote(&server, &["group", "show", "g"]);
    assert_eq!(out.status.code(), Some(1), "a group never used");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = admin_output(&data, &["group", "pause", "--company", &company, "g"]);
    assert!(!out.status.success());

    let file = generated(tmp.path());
    let out = remote(&server, &["upload", "--vgid", "g", "--json", &file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let v = json(&admin_output(
        &data,
        &["group", "pause", "--company", &company, "g"],
    ));
    assert_eq!(v["state"], "paused", "{v}");
    let v = json(&remote(&server, &["group", "show", "g", "--json"]));
    assert_eq!(v["state"], "paused", "{v}");
    assert_eq!(v["actions"][0]["actor"], "admin");

    let v = json(&remote(&server, &["group", "resume", "g", "--json"]));
    assert_eq!(v["state"], "active", "{v}");
    assert_eq!(v["actions"][1]["action"], "resume");
    assert_eq!(v["actions"][1]["actor"], client.as_str());

    let out = remote(&server, &["group", "cancel", "g"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("g  active"), "{text}");
    assert!(text.contains(&format!("cancel by {client}")), "{text}");
    let v = json(&admin_output(
        &data,
        &["group", "show", "--company", &company, "g"],
    ));
    let actions: Vec<&str> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["pause", "resume", "cancel"]);
}
