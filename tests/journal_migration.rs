//! Journal schema v1 → v2 on a real workspace left by the v1 binary
//! (tests/fixtures/journal-v1, made by its make.sh): the daemon of today
//! migrates the journal when it starts and carries on where v1 stopped:
//! - b.xml, uploaded by v1 and waiting for Altinn's receipt, gets it and
//!   its final receipt; its letters reach Altinn once (never re-sent);
//! - a.xml and bad.xml, done under v1, are left alone: their receipts and
//!   a.xml's read event file are not rewritten, and a.xml's reads, already
//!   reported, are not reported again;
//! - b.xml's reads come as before, in a read event file of their own.

mod common;
use common::*;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_v1_workspace_carries_on_after_the_migration() {
    let fixture = root().join("tests/fixtures/journal-v1/ws");
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = dir.path();
    copy_tree(&fixture, ws);
    let config = ws.join("dpv.toml");
    let before = |name: &str| fs::read(fixture.join("outbox").join(name)).expect("fixture");

    let mut sim = Command::new(bin())
        .args([
            "sim",
            "--poll-ms",
            "10",
            "--confirm-delay-ms",
            "0",
            "--root",
        ])
        .arg(ws.join("altinn"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sim");
    // Until b.xml's receipt and its four reads are in.
    let mut reads = 0;
    for _ in 0..100 {
        let out = Command::new(bin())
            .args(["run", "--once", "--timeout", "30s", "--config"])
            .arg(&config)
            .output()
            .expect("run --once");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let receipt = fs::read_to_string(ws.join("outbox/b.xml.receipt.xml")).expect("receipt");
        reads = receipt.matches("<ReadAt>").count()
            + names(&ws.join("outbox"))
                .iter()
                .filter(|n| n.starts_with("b.xml.read-"))
                .map(|n| {
                    tag(
                        &fs::read_to_string(ws.join("outbox").join(n)).expect("event"),
                        "Read",
                    )
                    .len()
                })
                .sum::<usize>();
        if reads == 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = sim.kill();
    let _ = sim.wait();
    assert_eq!(reads, 4, "{:?}", names(&ws.join("outbox")));

    let b = fs::read_to_string(ws.join("outbox/b.xml.receipt.xml")).expect("receipt");
    assert_eq!(outcome(&b), "Accepted", "{b}");
    assert_eq!(tag(&b, "Status"), vec!["Accepted"; 4]);
    // What v1 wrote is untouched, and nothing of a.xml is reported again.
    for name in [
        "a.xml.receipt.xml",
        "a.xml.read-1.xml",
        "bad.xml.receipt.xml",
    ] {
        assert_eq!(
            fs::read(ws.join("outbox").join(name)).expect("outbox"),
            before(name),
            "{name}"
        );
    }
    let outbox = names(&ws.join("outbox"));
    assert_eq!(
        outbox
            .iter()
            .filter(|n| n.starts_with("a.xml") || n.starts_with("bad.xml"))
            .count(),
        3,
        "{outbox:?}"
    );
    // b's read event file (if its reads came after its receipt) has a new number.
    assert!(
        outbox
            .iter()
            .filter(|n| n.starts_with("b.xml.read-"))
            .all(|n| n != "b.xml.read-1.xml"),
        "{outbox:?}"
    );
    // Every letter reached Altinn once: a's under v1, b's once (never re-sent).
    let (refs, seqs) = processed(&ws.join("altinn"));
    assert_eq!(refs.len(), 8, "{refs:?}");
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
    assert_eq!(seqs.get("VLF-SAK"), Some(&vec![1]));
    assert_eq!(names(&ws.join("archive")), vec!["a.xml", "b.xml"]);

    let out = Command::new(bin())
        .args(["status", "--json", "--config"])
        .arg(&config)
        .output()
        .expect("status");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let states: Vec<&str> = json
        .as_array()
        .expect("array")
        .iter()
        .map(|f| f["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states, vec!["done"; 3]);
}
