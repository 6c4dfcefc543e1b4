//! Hostile tests of the merged fixes of issue 7: the interactions between
//! them (two installations and read confirmations, names and the retried
//! writes to the fagsystem's folders). The real binary, real folders, the
//! simulator as Altinn.

mod common;
use common::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A workspace whose transport is the Altinn folder `altinn` (maybe shared).
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new(altinn: &Path) -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
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
kind = "local"
[transport.local]
root = "{}"
[run]
poll_ms = 20
"#,
            altinn.display()
        );
        fs::write(dir.path().join("dpv.toml"), config).expect("config");
        fs::create_dir_all(dir.path().join("inbox")).expect("inbox");
        fs::create_dir_all(altinn).expect("altinn");
        Workspace { dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn drop_file(&self, name: &str, bytes: &[u8]) {
        drop_careful(&self.path("inbox"), name, bytes);
    }

    fn run_once(&self, timeout: &str) -> Output {
        Command::new(bin())
            .args(["run", "--once", "--timeout", timeout, "--config"])
            .arg(self.path("dpv.toml"))
            .output()
            .expect("run --once")
    }

    /// Every file in `sub`, sorted by name, with its text.
    fn texts(&self, sub: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = fs::read_dir(self.path(sub))
            .map(|d| {
                d.map(|e| {
                    let e = e.expect("entry");
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name, fs::read_to_string(e.path()).unwrap_or_default())
                })
                .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A valid batch whose SendersReferences start with `shipment`.
fn batch(shipment: &str, letters: u64) -> Vec<u8> {
    let spec = dpv_batch::gen::Spec {
        letters,
        shipment_reference: shipment.into(),
        reference_prefix: format!("{shipment}-"),
        ..Default::default()
    };
    let mut out = Vec::new();
    dpv_batch::gen::write_batch(&spec, &mut out).expect("gen");
    out
}

/// The simulator, once: answer every batch, write every confirmation due.
fn sim_once(altinn: &Path) {
    let out = Command::new(bin())
        .args(["sim", "--once", "--confirm-delay-ms", "0", "--root"])
        .arg(altinn)
        .output()
        .expect("sim --once");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// How many letters the outbox of `ws` reports read (receipts and read events).
fn reads_reported(ws: &Workspace) -> usize {
    ws.texts("outbox")
        .iter()
        .map(|(_, text)| tag(text, "ReadAt").len())
        .sum()
}

/// Two installations on one Altinn account share its confirmations folder
/// (Altinn names confirmations files by system user, not by batch): each
/// must get the reads of its own letters. Before the fix the first to look
/// took the other's confirmations file, recorded nothing ("read=0") and
/// removed it, so the other never learnt its letters were read.
#[test]
fn two_installations_each_get_the_read_confirmations_of_their_own_letters() {
    let shared = tempfile::tempdir().expect("tempdir");
    let altinn = shared.path().join("altinn");
    let a = Workspace::new(&altinn);
    let b = Workspace::new(&altinn);
    a.drop_file("a.xml", &batch("AAA", 2));
    b.drop_file("b.xml", &batch("BBB", 3));
    // Both upload (no receipts yet: --once ends with "pending").
    for ws in [&a, &b] {
        let out = ws.run_once("1s");
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    }
    sim_once(&altinn);
    let confirmations = fs::read_dir(altinn.join("confirmations"))
        .expect("confirmations")
        .count();
    assert_eq!(confirmations, 2, "one confirmations file per batch");

    // A looks first, then B.
    for ws in [&a, &b] {
        let out = ws.run_once("10s");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    assert_eq!(reads_reported(&a), 2, "{:#?}", a.texts("outbox"));
    assert_eq!(reads_reported(&b), 3, "{:#?}", b.texts("outbox"));
    // Each took its own file away; nothing is left for nobody.
    let left = fs::read_dir(altinn.join("confirmations"))
        .expect("confirmations")
        .count();
    assert_eq!(left, 0);
}

/// A read-only bind mount of a folder over itself; undone on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(dir: &Path) -> ReadOnly {
        let run = |args: &[&str]| {
            Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        assert!(
            run(&["--bind"]),
            "this test needs root to bind-mount {} (CI runs as root)",
            dir.display()
        );
        let ro = ReadOnly(dir.to_path_buf());
        assert!(run(&["-o", "remount,ro,bind"]), "remount read-only");
        assert!(fs::write(dir.join("probe"), "x").is_err(), "still writable");
        ro
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The input `a` and an input named `a.errors.txt` are both rejected while
/// `failed/` cannot be written, so both reserve their names before either
/// writes. `a.errors.txt` must not be given the name of `a`'s errors.txt:
/// before the fix, once `failed/` worked again, the one was renamed over
/// the other (an input or an errors.txt lost, a file rewritten).
#[test]
fn an_input_never_takes_the_name_of_another_inputs_errors_txt_while_writes_wait() {
    let shared = tempfile::tempdir().expect("tempdir");
    let ws = Workspace::new(&shared.path().join("altinn"));
    let failed = ws.path("failed");
    fs::create_dir_all(&failed).expect("failed");
    let read_only = ReadOnly::mount(&failed);
    ws.drop_file("a", b"<not xml, input a");
    ws.drop_file("a.errors.txt", b"<not xml, input a.errors.txt");
    let out = ws.run_once("2s");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    drop(read_only);
    let out = ws.run_once("10s");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let texts = ws.texts("failed");
    let inputs: Vec<&str> = texts
        .iter()
        .filter(|(_, t)| t.starts_with("<not xml"))
        .map(|(n, _)| n.as_str())
        .collect();
    let mut errors: Vec<&str> = texts
        .iter()
        .filter(|(_, t)| !t.starts_with("<not xml"))
        .map(|(_, t)| t.lines().next().unwrap_or(""))
        .collect();
    errors.sort();
    assert_eq!(inputs.len(), 2, "both inputs kept: {texts:#?}");
    assert_eq!(
        errors,
        vec!["a.errors.txt: Rejected", "a: Rejected"],
        "each errors.txt kept: {texts:#?}"
    );
    // a's errors.txt is where the fagsystem looks for it.
    let a_errors = texts.iter().find(|(n, _)| n == "a.errors.txt");
    assert!(
        a_errors.is_some_and(|(_, t)| t.starts_with("a: Rejected")),
        "{texts:#?}"
    );
}
