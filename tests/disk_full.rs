//! A full disk: the pipeline's folders on a tiny tmpfs that fills up while a
//! batch is being packaged. Nothing may be lost or sent twice: the run ends
//! without a receipt, the input is still there, and once space is freed the
//! same input completes, each letter reaching Altinn exactly once.
//!
//! Needs root (to mount a tmpfs), as CI has.

mod common;
use common::*;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Mount {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "this test needs root to mount a tmpfs at {} (CI runs as root)",
        dir.display()
    );
    Mount(dir.to_path_buf())
}

#[test]
fn a_full_disk_loses_and_doubles_nothing() {
    let outer = tempfile::tempdir().expect("tempdir");
    let small = outer.path().join("small");
    fs::create_dir_all(&small).expect("mkdir");
    let _mount = mount_tmpfs(&small, "3m");
    let altinn = outer.path().join("altinn");
    fs::create_dir_all(&altinn).expect("mkdir");
    for sub in ["inbox", "outbox", "failed", "archive", "state"] {
        fs::create_dir_all(small.join(sub)).expect("mkdir");
    }
    let config = outer.path().join("dpv.toml");
    fs::write(
        &config,
        format!(
            r#"
[paths]
inbox = "{s}/inbox"
outbox = "{s}/outbox"
failed = "{s}/failed"
archive = "{s}/archive"
state = "{s}/state"
[intake]
ready = "rename"
[sender]
system_user_code = "ABC-123"
# Numbering makes packaging rewrite the batch (a plain UTF-8 batch would
# be passed through by a hard link and need no space at all).
sequence_numbers = true
[transport]
kind = "local"
[transport.local]
root = "{a}"
[run]
poll_ms = 20
"#,
            s = small.display(),
            a = altinn.display()
        ),
    )
    .expect("config");

    // A batch of about 1.6 MB: it fits once, but not twice (input + parts).
    let tmp = small.join("inbox/.big.xml.tmp");
    let out = Command::new(bin())
        .args([
            "gen",
            "--letters",
            "40",
            "--attachment-bytes",
            "30000",
            "--shipment",
            "BIG",
            "-o",
        ])
        .arg(&tmp)
        .output()
        .expect("gen");
    assert!(out.status.success());
    fs::rename(&tmp, small.join("inbox/big.xml")).expect("rename");

    let mut sim = Command::new(bin())
        .args(["sim", "--poll-ms", "10", "--no-confirmations", "--root"])
        .arg(&altinn)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sim");

    let run = |timeout: &str| {
        Command::new(bin())
            .args(["run", "--once", "--timeout", timeout, "--config"])
            .arg(&config)
            .output()
            .expect("run")
    };
    let first = run("3s");
    let log = String::from_utf8_lossy(&first.stderr).to_string();
    eprintln!(
        "first run, disk full: exit {:?}\n{log}",
        first.status.code()
    );
    assert_ne!(
        first.status.code(),
        Some(0),
        "it cannot have finished: {log}"
    );
    assert!(
        log.contains("No space left on device"),
        "the log says why: {log}"
    );
    assert!(
        fs::read_dir(small.join("outbox"))
            .expect("outbox")
            .next()
            .is_none(),
        "no receipt yet"
    );
    let staged: Vec<_> = fs::read_dir(small.join("state/staging"))
        .expect("staging")
        .collect();
    assert_eq!(staged.len(), 1, "the input is kept in staging");

    // Space comes back: the same input completes, exactly once.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&small)
        .status()
        .expect("remount");
    assert!(grown.success());
    let second = run("60s");
    // SIGTERM, not SIGKILL: the simulator finishes the batch it is on (it
    // writes the receipt, then moves the batch to processed/), so the count
    // below does not depend on when the kill lands.
    let _ = Command::new("kill")
        .args(["-TERM", &sim.id().to_string()])
        .status();
    let _ = sim.wait();
    assert_eq!(
        second.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let receipt = fs::read_to_string(small.join("outbox/big.xml.receipt.xml")).expect("receipt");
    assert!(receipt.contains("<Outcome>Accepted</Outcome>"), "{receipt}");
    let mut refs = std::collections::BTreeMap::new();
    for e in fs::read_dir(altinn.join("processed")).expect("processed") {
        let text = fs::read_to_string(e.expect("entry").path()).expect("read");
        for part in text.split("<Correspondence>").skip(1) {
            let r = part
                .split("<SendersReference>")
                .nth(1)
                .and_then(|s| s.split('<').next())
                .unwrap_or("");
            *refs.entry(r.to_string()).or_insert(0usize) += 1;
        }
    }
    assert_eq!(refs.len(), 40);
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
}
