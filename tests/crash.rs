//! Crash safety: `kill -9` the daemon at many moments during a run of a few
//! hundred files, restart it each time, and prove that nothing was lost or
//! sent twice:
//! - every input has exactly one receipt, and it says Accepted;
//! - every SendersReference reached the simulated Altinn exactly once
//!   (counted over everything it processed);
//! - the SequenceNos Altinn saw are exactly 1..=N: no gap, no repeat;
//! - nothing is left in the inbox, the failed folder or the upload folder.
//!
//! The kill moments vary (a fixed spread of delays) so they land in every
//! stage; the assertions do not depend on where they land.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

const FILES: usize = 240;
const LETTERS: u64 = 3;

/// dpv-batch numbers the batches: each file is rewritten into parts of 2
/// letters, and each part waits for the answer to the one before.
#[test]
fn kill_9_at_many_moments_numbered_parts() {
    kill_9_at_many_moments(true);
}

/// Batches go as they are: each is sent while it is validated and made
/// visible after.
#[test]
fn kill_9_at_many_moments_passed_through() {
    kill_9_at_many_moments(false);
}

fn kill_9_at_many_moments(numbered: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let packaging = if numbered {
        "sequence_numbers = true\n[package]\nmax_part_letters = 2"
    } else {
        "sequence_numbers = false"
    };
    fs::write(
        d.join("dpv.toml"),
        r#"
[paths]
inbox = "inbox"
outbox = "outbox"
failed = "failed"
archive = "archive"
state = "state"
[intake]
ready = "rename"
[sender]
system_user_code = "ABC-123"
PACKAGING
[transport]
kind = "local"
[transport.local]
root = "altinn"
[run]
poll_ms = 20
"#
        .replace("PACKAGING", packaging),
    )
    .expect("config");
    fs::create_dir_all(d.join("inbox")).expect("inbox");
    fs::create_dir_all(d.join("altinn")).expect("altinn");

    // Every file has its own references; 2 letters per part means most files
    // are split in two, so part ordering and numbering are exercised too.
    for i in 0..FILES {
        let name = format!("batch-{i:04}.xml");
        let tmp = d.join("inbox").join(format!(".{name}.tmp"));
        let out = Command::new(bin())
            .args([
                "gen",
                "--letters",
                &LETTERS.to_string(),
                "--shipment",
                &format!("S{i:04}"),
                "-o",
            ])
            .arg(&tmp)
            .output()
            .expect("gen");
        assert!(out.status.success());
        fs::rename(&tmp, d.join("inbox").join(&name)).expect("rename");
    }

    let mut sim = Command::new(bin())
        .args(["sim", "--poll-ms", "5", "--no-confirmations", "--root"])
        .arg(d.join("altinn"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sim");

    // Kill the daemon again and again, each time after a different while.
    // A tick takes in and packages up to 16 files, a few hundred ms here: the
    // short delays land inside the first stages, the long ones in uploads,
    // receipts and the outbox.
    let delays_ms = [
        30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 130, 170, 200, 230, 260, 290, 320, 350, 110,
        140,
    ];
    let mut progress = Vec::new();
    for delay in delays_ms {
        let mut daemon = Command::new(bin())
            .args(["run", "--config"])
            .arg(d.join("dpv.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("daemon");
        std::thread::sleep(Duration::from_millis(delay));
        daemon.kill().expect("SIGKILL"); // Child::kill sends SIGKILL
        daemon.wait().expect("wait");
        let done = fs::read_dir(d.join("outbox"))
            .map(|r| r.count())
            .unwrap_or(0);
        let processed = fs::read_dir(d.join("altinn/processed"))
            .map(|r| r.count())
            .unwrap_or(0);
        progress.push((delay, done, processed));
    }
    eprintln!("after each kill (delay ms, receipts written, parts Altinn processed): {progress:?}");
    // Then let it finish.
    let out = Command::new(bin())
        .args(["run", "--once", "--timeout", "180s", "--config"])
        .arg(d.join("dpv.toml"))
        .output()
        .expect("run --once");
    let _ = sim.kill();
    let _ = sim.wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let names = |sub: &str| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d.join(sub))
            .map(|r| {
                r.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };

    // One receipt per input, each Accepted, nothing else in the outbox.
    let outbox = names("outbox");
    let expected: Vec<String> = (0..FILES)
        .map(|i| format!("batch-{i:04}.xml.receipt.xml"))
        .collect();
    assert_eq!(outbox, expected);
    for name in &outbox {
        let r = fs::read_to_string(d.join("outbox").join(name)).expect("receipt");
        assert!(r.contains("<Outcome>Accepted</Outcome>"), "{name}: {r}");
    }
    assert_eq!(names("archive").len(), FILES);
    assert!(names("inbox").is_empty(), "{:?}", names("inbox"));
    assert!(names("failed").is_empty(), "{:?}", names("failed"));
    assert!(
        names("altinn/upload").is_empty(),
        "left in upload: {:?}",
        names("altinn/upload")
    );

    // What "Altinn" processed: each letter exactly once, numbers gapless.
    let mut refs: BTreeMap<String, usize> = BTreeMap::new();
    let mut seqs: Vec<i64> = Vec::new();
    for name in names("altinn/processed") {
        let text = fs::read_to_string(d.join("altinn/processed").join(&name)).expect("processed");
        for part in text.split("<SendersReference>").skip(1) {
            let r = part.split('<').next().unwrap_or("").to_string();
            *refs.entry(r).or_insert(0) += 1;
        }
        let seq: Option<i64> = text
            .split("<SequenceNo>")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .and_then(|s| s.parse().ok());
        assert_eq!(seq.is_some(), numbered, "{name}");
        seqs.extend(seq);
    }
    assert_eq!(refs.len(), FILES * LETTERS as usize, "letters missing");
    let doubled: Vec<_> = refs.iter().filter(|(_, &n)| n != 1).collect();
    assert!(
        doubled.is_empty(),
        "letters sent more than once: {doubled:?}"
    );
    seqs.sort();
    let n = seqs.len() as i64;
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<i64>>(),
        "SequenceNo not gapless"
    );
    // No receipt the simulator wrote was anything but OK.
    for name in names("altinn/receipts") {
        let text = fs::read_to_string(d.join("altinn/receipts").join(&name)).unwrap_or_default();
        assert!(
            !text.contains("Rejected") && !text.contains("ValidationFailed"),
            "{name}"
        );
    }
}
