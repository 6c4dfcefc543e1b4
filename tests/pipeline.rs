//! The pipeline end to end: the real binary, a real SQLite journal, real
//! folders, and the simulator as Altinn. Assertions are exact: which
//! receipts exist, what each says, which folders hold which files, and how
//! often each letter reached "Altinn".

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A workspace: inbox, outbox, failed, archive, state, altinn, and a config.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new(ready: &str, extra: &str) -> Workspace {
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
ready = "{ready}"
stable_for_ms = 1000
[sender]
system_user_code = "ABC-123"
sequence_numbers = true
[transport]
kind = "local"
[transport.local]
root = "altinn"
[run]
poll_ms = 50
{extra}
"#
        );
        fs::write(dir.path().join("dpv.toml"), config).expect("config");
        for sub in ["inbox", "altinn"] {
            fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        Workspace { dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn config(&self) -> PathBuf {
        self.path("dpv.toml")
    }

    /// Drop a file into the inbox the way a careful writer does.
    fn drop_file(&self, name: &str, bytes: &[u8]) {
        drop_careful(&self.path("inbox"), name, bytes);
    }

    fn sim(&self, extra: &[&str]) -> Sim {
        let child = Command::new(bin())
            .args(["sim", "--poll-ms", "10", "--root"])
            .arg(self.path("altinn"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sim");
        Sim { child }
    }

    /// `run --once` that must end with every file done (exit 0).
    fn run_once_ok(&self, timeout: &str) {
        let out = self.run_once(timeout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn run_once(&self, timeout: &str) -> std::process::Output {
        Command::new(bin())
            .args(["run", "--once", "--timeout", timeout, "--config"])
            .arg(self.config())
            .output()
            .expect("run --once")
    }

    fn names(&self, sub: &str) -> BTreeSet<String> {
        match fs::read_dir(self.path(sub)) {
            Ok(d) => d
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    fn receipt(&self, input: &str) -> String {
        fs::read_to_string(self.path("outbox").join(format!("{input}.receipt.xml")))
            .unwrap_or_else(|e| panic!("no receipt for {input}: {e}"))
    }
}

struct Sim {
    child: Child,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every receipt and event file validates against our receipt schema.
fn assert_outbox_schema_valid(ws: &Workspace) {
    let xsd = fs::read(root().join("schemas/dpv-batch-receipt.xsd")).expect("xsd");
    let schema = dpv_batch::xml::Schema::compile(&xsd).expect("compile receipt xsd");
    struct Nothing;
    impl dpv_batch::xml::Events for Nothing {
        fn start(&mut self, _: &[u8], _: bool, _: dpv_batch::xml::Pos) {}
        fn text(&mut self, _: &[u8]) {}
        fn end(&mut self, _: &[u8], _: dpv_batch::xml::Pos) {}
    }
    for name in ws.names("outbox") {
        let bytes = fs::read(ws.path("outbox").join(&name)).expect("read");
        let problems = dpv_batch::xml::parse(Some(&schema), &mut &bytes[..], &mut Nothing);
        assert!(
            problems.is_empty(),
            "{name} does not match dpv-batch-receipt.xsd: {problems:?}"
        );
    }
}

#[test]
fn samples_end_to_end_exact_receipts_and_folders() {
    let ws = Workspace::new("rename", "");
    // Altinn refuses letters to one organisation: that file is partially accepted.
    let _sim = ws.sim(&["--confirm-delay-ms", "0", "--reject-reportee", "874391506"]);
    let inputs: &[(&str, &str, &str)] = &[
        (
            "bokmal.xml",
            "valid/letters-bokmal.xml",
            "PartiallyAccepted",
        ),
        (
            "nynorsk.xml",
            "valid/letters-nynorsk-english.xml",
            "Accepted",
        ),
        ("latin1.xml", "valid/latin1.xml", "Accepted"),
        ("utf16.xml", "valid/utf16be.xml", "Accepted"),
        ("export.zip", "valid/export-package.zip", "Accepted"),
        (
            "bad-orgnr.xml",
            "invalid/dpv003-bad-reportee.xml",
            "Rejected",
        ),
        ("xxe.xml", "invalid/xxe.xml", "Rejected"),
        ("bomb.zip", "invalid/zip-bomb.zip", "Rejected"),
        ("broken.xml", "invalid/not-well-formed.xml", "Rejected"),
        // Same content as bokmal.xml under another name, dropped after it.
        ("bokmal-again.xml", "valid/letters-bokmal.xml", "Rejected"),
    ];
    for (name, src, _) in inputs {
        ws.drop_file(name, &sample(src));
        std::thread::sleep(Duration::from_millis(5)); // distinct mtimes: intake is oldest first
    }
    ws.run_once_ok("60s");

    // Exactly one receipt per input, with the expected outcome.
    for (name, _, expected) in inputs {
        let r = ws.receipt(name);
        assert_eq!(outcome(&r), *expected, "{name}: {r}");
    }
    let receipts: Vec<String> = ws
        .names("outbox")
        .into_iter()
        .filter(|n| n.ends_with(".receipt.xml"))
        .collect();
    assert_eq!(receipts.len(), inputs.len(), "{receipts:?}");

    // Per-letter detail: 3 of 4 accepted, the refused one named.
    let bokmal = ws.receipt("bokmal.xml");
    assert_eq!(
        tag(&bokmal, "Status")
            .iter()
            .filter(|s| **s == "Accepted")
            .count(),
        3
    );
    assert_eq!(
        tag(&bokmal, "Status")
            .iter()
            .filter(|s| **s == "Rejected")
            .count(),
        1
    );
    // Local errors carry line and column.
    let bad = ws.receipt("bad-orgnr.xml");
    assert_eq!(bad.matches("code=\"DPV003\"").count(), 4, "{bad}");
    assert!(
        bad.contains("<Error line=\"10\" column=\"15\" code=\"DPV003\""),
        "{bad}"
    );
    assert!(ws.receipt("bokmal-again.xml").contains("duplicate"));

    // Folders: inbox empty, sent ones archived, refused ones failed with reasons.
    assert!(ws.names("inbox").is_empty(), "{:?}", ws.names("inbox"));
    let archived: BTreeSet<String> = [
        "bokmal.xml",
        "nynorsk.xml",
        "latin1.xml",
        "utf16.xml",
        "export.zip",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(ws.names("archive"), archived);
    let failed: BTreeSet<String> = [
        "bad-orgnr.xml",
        "xxe.xml",
        "bomb.zip",
        "broken.xml",
        "bokmal-again.xml",
    ]
    .iter()
    .flat_map(|s| [s.to_string(), format!("{s}.errors.txt")])
    .collect();
    assert_eq!(ws.names("failed"), failed);
    let why = fs::read_to_string(ws.path("failed/bad-orgnr.xml.errors.txt")).expect("errors.txt");
    assert!(why.contains("bad-orgnr.xml:10:15: error[DPV003]"), "{why}");

    // Every letter of the sent files reached Altinn exactly once; numbers gapless.
    let (refs, seqs) = processed(&ws.path("altinn"));
    assert_eq!(refs.len(), 4 + 4 + 2 + 2 + 1, "{refs:?}");
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
    // SequenceNo counts per SystemUserCode: two files share TRD-5001.
    let expected: BTreeMap<String, Vec<i64>> = [
        ("BRG-4601", vec![1]),
        ("VLF-SAK", vec![1]),
        ("TRD-5001", vec![1, 2]),
        ("OSL-NAER", vec![1]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(seqs, expected);
    assert_outbox_schema_valid(&ws);
}

#[test]
fn read_confirmations_become_new_event_files() {
    let ws = Workspace::new("rename", "");
    let _sim = ws.sim(&["--confirm-delay-ms", "0"]);
    ws.drop_file("nynorsk.xml", &sample("valid/letters-nynorsk-english.xml"));
    ws.run_once_ok("60s");
    let receipt_before = ws.receipt("nynorsk.xml");
    // Run until the confirmations for all four letters are in.
    let mut reads = 0;
    for _ in 0..200 {
        let out = ws.run_once("10s");
        assert_eq!(out.status.code(), Some(0));
        reads = ws
            .names("outbox")
            .iter()
            .filter(|n| n.contains(".read-"))
            .map(|n| {
                tag(
                    &fs::read_to_string(ws.path("outbox").join(n)).unwrap(),
                    "Read",
                )
                .len()
            })
            .sum::<usize>()
            + receipt_before.matches("<ReadAt>").count();
        if reads == 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        reads,
        4,
        "every letter read exactly once: {:?}",
        ws.names("outbox")
    );
    // The receipt already written is never rewritten.
    assert_eq!(ws.receipt("nynorsk.xml"), receipt_before);
    assert_outbox_schema_valid(&ws);
}

/// A writer that takes its time must never be taken early, in each mode.
fn slow_writer(ready: &str) {
    let ws = Workspace::new(ready, "");
    let _sim = ws.sim(&["--no-confirmations"]);
    let mut daemon = Command::new(bin())
        .args(["run", "--config"])
        .arg(ws.config())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    let content = sample("valid/letters-nynorsk-english.xml");
    let inbox = ws.path("inbox");
    let target = match ready {
        "rename" => inbox.join(".slow.xml.tmp"),
        _ => inbox.join("slow.xml"),
    };
    // Write in 12 pieces, 150 ms apart: 1.8 s in all, longer than
    // stable_for_ms (1 s) as a whole but with no pause as long as it.
    {
        use std::io::Write;
        let mut f = fs::File::create(&target).expect("create");
        for chunk in content.chunks(content.len().div_ceil(12)) {
            f.write_all(chunk).expect("write");
            f.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    match ready {
        "rename" => fs::rename(&target, inbox.join("slow.xml")).expect("rename"),
        "done-file" => fs::write(inbox.join("slow.xml.done"), "").expect("marker"),
        _ => {}
    }
    // Stop the daemon (it may or may not have finished the file) and let a
    // --once run finish whatever is left.
    let pid = daemon.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    assert_eq!(daemon.wait().expect("wait").code(), Some(0));
    ws.run_once_ok("60s");
    let receipt = ws.receipt("slow.xml");
    assert_eq!(outcome(&receipt), "Accepted", "{receipt}");
    let archived = fs::read(ws.path("archive/slow.xml")).expect("archived");
    assert_eq!(archived, content, "the whole file was taken");
    assert_eq!(ws.names("outbox").len(), 1);
    assert!(ws.names("failed").is_empty());
}

#[test]
fn slow_writer_stable_mode() {
    slow_writer("stable");
}

#[test]
fn slow_writer_done_file_mode() {
    slow_writer("done-file");
}

#[test]
fn slow_writer_rename_mode() {
    slow_writer("rename");
}

#[test]
fn status_and_check_config_speak_plainly() {
    let ws = Workspace::new("rename", "");
    let _sim = ws.sim(&["--no-confirmations"]);
    ws.drop_file("bad.xml", &sample("invalid/dpv003-bad-reportee.xml"));
    ws.run_once_ok("30s");
    let out = Command::new(bin())
        .args(["status", "--config"])
        .arg(ws.config())
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bad.xml") && text.contains("Rejected") && text.contains("DPV003"),
        "{text}"
    );
    let out = Command::new(bin())
        .args(["status", "--json", "--config"])
        .arg(ws.config())
        .output()
        .expect("status");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json[0]["state"], "done");
    assert_eq!(json[0]["outcome"], "Rejected");

    fs::write(ws.path("broken.toml"), "[paths]\ninbox = 1\n").expect("write");
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(ws.path("broken.toml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("inbox"));
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(ws.config())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn once_times_out_with_exit_3_when_altinn_does_not_answer() {
    let ws = Workspace::new("rename", "");
    // No simulator: nobody answers.
    ws.drop_file("a.xml", &sample("valid/letters-bokmal.xml"));
    let out = ws.run_once("1s");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a.xml (Submitted)"));
    assert!(
        ws.names("outbox").is_empty(),
        "no receipt before the outcome is final"
    );
    // Altinn comes back: the same file completes, sent once.
    let _sim = ws.sim(&["--no-confirmations"]);
    ws.run_once_ok("30s");
    assert_eq!(outcome(&ws.receipt("a.xml")), "Accepted");
    let (refs, _) = processed(&ws.path("altinn"));
    assert!(
        refs.values().all(|&n| n == 1) && refs.len() == 4,
        "{refs:?}"
    );
}

#[test]
fn sigterm_stops_cleanly() {
    let ws = Workspace::new("rename", "");
    let mut daemon = Command::new(bin())
        .args(["run", "--config"])
        .arg(ws.config())
        .stderr(Stdio::piped())
        .spawn()
        .expect("daemon");
    // Wait until it says it is running (signal handlers are in place by then).
    use std::io::{BufRead, BufReader};
    let stderr = daemon.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let up = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("dpv-batch running"));
    assert!(up, "the daemon never said it was running");
    let pid = daemon.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = daemon.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
}

#[test]
fn every_sample_end_to_end() {
    let ws = Workspace::new("rename", "");
    let _sim = ws.sim(&["--no-confirmations"]);
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    for (dir, outcome) in [("valid", "Accepted"), ("invalid", "Rejected")] {
        for path in files(&root().join("samples").join(dir), &[".xml", ".zip"]) {
            let name = format!("{dir}-{}", path.file_name().unwrap().to_string_lossy());
            ws.drop_file(&name, &fs::read(&path).expect("read"));
            expected.insert(name, outcome);
        }
    }
    ws.run_once_ok("120s");
    let got: BTreeMap<String, String> = expected
        .keys()
        .map(|name| (name.clone(), outcome(&ws.receipt(name)).to_string()))
        .collect();
    let want: BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(ws.names("outbox").len(), expected.len());
    let valid = expected.values().filter(|v| **v == "Accepted").count();
    assert_eq!(ws.names("archive").len(), valid);
    assert_eq!(ws.names("failed").len(), 2 * (expected.len() - valid));
    assert!(ws.names("inbox").is_empty());
    let (refs, _) = processed(&ws.path("altinn"));
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
    assert_outbox_schema_valid(&ws);
}

#[test]
fn the_same_name_dropped_again_gets_its_own_receipt() {
    let ws = Workspace::new("rename", "");
    let _sim = ws.sim(&["--no-confirmations"]);
    ws.drop_file("nightly.xml", &sample("valid/letters-bokmal.xml"));
    ws.run_once_ok("30s");
    // The next night: same name, new content. Nothing is overwritten.
    ws.drop_file("nightly.xml", &sample("valid/letters-nynorsk-english.xml"));
    ws.run_once_ok("30s");
    let outbox: Vec<String> = ws.names("outbox").into_iter().collect();
    assert_eq!(
        outbox,
        vec!["nightly.2.xml.receipt.xml", "nightly.xml.receipt.xml"]
    );
    let archive: Vec<String> = ws.names("archive").into_iter().collect();
    assert_eq!(archive, vec!["nightly.2.xml", "nightly.xml"]);
    assert_eq!(
        fs::read(ws.path("archive/nightly.xml")).unwrap(),
        sample("valid/letters-bokmal.xml")
    );
    assert_eq!(
        fs::read(ws.path("archive/nightly.2.xml")).unwrap(),
        sample("valid/letters-nynorsk-english.xml")
    );
    assert_eq!(outcome(&ws.receipt("nightly.xml")), "Accepted");
    let second = fs::read_to_string(ws.path("outbox/nightly.2.xml.receipt.xml")).unwrap();
    assert_eq!(outcome(&second), "Accepted");
}

#[test]
fn a_refused_sequence_number_is_used_again_and_the_counter_can_be_moved_on() {
    let ws = Workspace::new("rename", "");
    // Altinn already has SequenceNo 1 from ABC-123 (another tool sent it).
    let gen = Command::new(bin())
        .args(["gen", "--letters", "1", "--shipment", "SEED"])
        .output()
        .unwrap();
    let seed = String::from_utf8(gen.stdout).unwrap().replace(
        "<ShipmentReference>SEED</ShipmentReference>",
        "<ShipmentReference>SEED</ShipmentReference><SequenceNo>1</SequenceNo>",
    );
    fs::create_dir_all(ws.path("altinn/upload")).unwrap();
    fs::write(ws.path("altinn/upload/seed.xml"), seed).unwrap();
    let seeded = Command::new(bin())
        .args(["sim", "--once", "--no-confirmations", "--root"])
        .arg(ws.path("altinn"))
        .output()
        .unwrap();
    assert!(seeded.status.success());
    assert!(
        fs::read_to_string(ws.path("altinn/receipts/seed.xml.receipt.xml"))
            .unwrap()
            .contains("OK")
    );
    fs::remove_file(ws.path("altinn/receipts/seed.xml.receipt.xml")).unwrap();

    let _sim = ws.sim(&["--no-confirmations"]);
    let batch = |shipment: &str| {
        let out = Command::new(bin())
            .args(["gen", "--letters", "2", "--shipment", shipment])
            .output()
            .unwrap();
        out.stdout
    };
    // We start at 1: refused (Altinn expects 2), and 1 is not used up.
    ws.drop_file("a.xml", &batch("A"));
    ws.run_once_ok("30s");
    let a = ws.receipt("a.xml");
    assert_eq!(outcome(&a), "Rejected", "{a}");
    assert_eq!(tag(&a, "SequenceNo"), vec!["1"]);
    ws.drop_file("b.xml", &batch("B"));
    ws.run_once_ok("30s");
    let b = ws.receipt("b.xml");
    assert_eq!(outcome(&b), "Rejected", "{b}");
    assert_eq!(
        tag(&b, "SequenceNo"),
        vec!["1"],
        "the refused number was given back"
    );
    // The operator moves the counter on to Altinn's.
    let config = fs::read_to_string(ws.config()).unwrap().replace(
        "sequence_numbers = true",
        "sequence_numbers = true\nfirst_sequence_no = 2",
    );
    fs::write(ws.config(), config).unwrap();
    ws.drop_file("c.xml", &batch("C"));
    ws.run_once_ok("30s");
    let c = ws.receipt("c.xml");
    assert_eq!(outcome(&c), "Accepted", "{c}");
    assert_eq!(tag(&c, "SequenceNo"), vec!["2"]);
}
