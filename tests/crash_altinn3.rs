//! Crash safety over Altinn 3: `kill -9` the daemon at 20 moments while
//! 1,000 letters flow to the real `sim-altinn3`, kill and restart the
//! simulator once on the way, then let a last run finish, and prove:
//! - every SendersReference was created exactly once (counted in the
//!   simulator's `correspondences/*.json`): a letter in flight at a kill is
//!   settled by its idempotent key, never created again;
//! - every input has exactly one receipt, and it says Accepted;
//! - nothing is left in the inbox or the failed folder.
//!
//! The kill moments are a fixed spread of delays, so they land in every
//! stage (splitting, sending, answering, receipts); the assertions do not
//! depend on where they land.

mod common;
use common::altinn3::SimA3;
use common::*;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

const FILES: usize = 100;
const LETTERS: u64 = 10;

#[test]
fn kill_9_at_20_moments_while_1000_letters_flow_and_the_sim_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    fs::create_dir_all(d.join("inbox")).expect("inbox");
    // Each call takes a while, so kills land with letters in flight.
    let mut sim = SimA3::start(&d.join("altinn3"), &["--latency-ms", "15"]);
    fs::write(
        d.join("dpv.toml"),
        format!(
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
[transport]
kind = "altinn3"
{}
[run]
poll_ms = 20
"#,
            sim.section(d, "")
        ),
    )
    .expect("config");

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

    // From the first moments (taking in, splitting) to the last (answers,
    // receipts): a daemon start takes a few hundred milliseconds.
    let delays_ms = [
        250, 400, 550, 700, 850, 1000, 1150, 1300, 1450, 1600, 1750, 1900, 2050, 2200, 2350, 2500,
        2650, 2800, 2950, 3100,
    ];
    let mut progress = Vec::new();
    for (n, delay) in delays_ms.into_iter().enumerate() {
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
        if n == 9 {
            // Altinn goes away mid-run and comes back (its state kept).
            sim.restart();
        }
        let receipts = fs::read_dir(d.join("outbox"))
            .map(|r| r.count())
            .unwrap_or(0);
        progress.push((delay, receipts, sim.created().len()));
    }
    eprintln!("after each kill (delay ms, receipts, letters created): {progress:?}");
    let out = Command::new(bin())
        .args(["run", "--once", "--timeout", "300s", "--config"])
        .arg(d.join("dpv.toml"))
        .output()
        .expect("run --once");
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
    let outbox = names("outbox");
    let expected: Vec<String> = (0..FILES)
        .map(|i| format!("batch-{i:04}.xml.receipt.xml"))
        .collect();
    assert_eq!(outbox, expected);
    for name in &outbox {
        let r = fs::read_to_string(d.join("outbox").join(name)).expect("receipt");
        assert_eq!(outcome(&r), "Accepted", "{name}: {r}");
        assert_eq!(tag(&r, "CorrespondenceId").len(), LETTERS as usize, "{r}");
    }
    assert!(names("inbox").is_empty(), "{:?}", names("inbox"));
    assert!(names("failed").is_empty(), "{:?}", names("failed"));
    assert_eq!(names("archive").len(), FILES);

    let refs = sim.refs();
    assert_eq!(refs.len(), FILES * LETTERS as usize, "letters missing");
    let twice: Vec<_> = refs.iter().filter(|(_, &n)| n != 1).collect();
    assert!(twice.is_empty(), "created more than once: {twice:?}");
    assert_eq!(sim.created().len(), FILES * LETTERS as usize);
}
