//! `dpv-batch sim` end to end: the real binary, `--once`, temp folders.
//! Every run processes exactly what is due, so nothing here sleeps.

mod common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use dpv_batch::altinn::{parse_confirmations, parse_receipt, BatchReceipt, ReceiptStatus};

const BIN: &str = env!("CARGO_BIN_EXE_dpv-batch");

/// Run the binary; it must succeed. Returns stdout.
fn run(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run dpv-batch");
    assert!(
        out.status.success(),
        "dpv-batch {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sim(root: &Path, extra: &[&str]) -> String {
    let root = root.to_str().expect("utf-8 temp path");
    let mut args = vec!["sim", "--root", root, "--once"];
    args.extend_from_slice(extra);
    run(&args)
}

/// A generated valid batch's XML (letters' SendersReferences are
/// `<shipment>-<n:08>`, reportees rotate through `gen::REPORTEES`).
fn generate(shipment: &str, letters: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.xml");
    run(&[
        "gen",
        "--letters",
        &letters.to_string(),
        "--shipment",
        shipment,
        "--out",
        path.to_str().unwrap(),
    ]);
    fs::read_to_string(path).unwrap()
}

fn with_sequence_no(xml: &str, n: u64) -> String {
    xml.replacen(
        "</ShipmentReference>",
        &format!("</ShipmentReference>\n  <SequenceNo>{n}</SequenceNo>"),
        1,
    )
}

/// Upload as the sender does: temporary hidden name, then rename.
fn upload(root: &Path, name: &str, xml: &str) {
    let dir = root.join("upload");
    fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!(".{name}.part"));
    fs::write(&tmp, xml).unwrap();
    fs::rename(tmp, dir.join(name)).unwrap();
}

fn receipt_path(root: &Path, name: &str) -> PathBuf {
    root.join("receipts").join(format!("{name}.receipt.xml"))
}

fn receipt(root: &Path, name: &str) -> BatchReceipt {
    let path = receipt_path(root, name);
    let mut f = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_receipt(&mut f).unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

fn statuses(r: &BatchReceipt) -> Vec<ReceiptStatus> {
    r.letters.iter().map(|l| l.status).collect()
}

#[test]
fn a_valid_batch_gets_an_ok_receipt_and_confirmations() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    upload(root, "b.xml", &generate("SHIP-1", 5));
    // Files still being written are never touched.
    fs::write(root.join("upload/.c.xml.part"), "<half").unwrap();
    fs::write(root.join("upload/d.xml.tmp"), "<half").unwrap();
    fs::write(root.join("upload/e.part"), "<half").unwrap();

    let out = sim(root, &["--confirm-delay-ms", "0"]);
    assert!(out.contains("b.xml: OK"), "{out}");

    let r = receipt(root, "b.xml");
    assert_eq!(r.status, ReceiptStatus::Ok);
    assert_eq!(r.shipment_reference, "SHIP-1");
    assert_eq!(r.letters.len(), 5);
    assert_eq!(statuses(&r), vec![ReceiptStatus::Ok; 5]);
    let refs: Vec<&str> = r
        .letters
        .iter()
        .map(|l| l.senders_reference.as_str())
        .collect();
    assert_eq!(refs[0], "SHIP-1-00000000");
    assert_eq!(refs[4], "SHIP-1-00000004");

    assert_eq!(names(&root.join("receipts")), ["b.xml.receipt.xml"]);
    assert_eq!(names(&root.join("processed")), ["b.xml"]);
    assert_eq!(
        names(&root.join("upload")),
        [".c.xml.part", "d.xml.tmp", "e.part"]
    );

    assert_eq!(
        names(&root.join("confirmations")),
        ["confirmations-00000001.xml"]
    );
    let path = root.join("confirmations/confirmations-00000001.xml");
    let c = parse_confirmations(&mut File::open(&path).unwrap()).unwrap();
    assert_eq!((c.sequence_no, c.previous_sequence_no), (1, 0));
    assert_eq!(c.system_user_code, "ABC-123");
    assert_eq!(c.items.len(), 5);
    assert!(c.items.iter().all(|i| i.read_date_time.is_some()));
    assert_eq!(c.items[0].senders_reference, "SHIP-1-00000000");

    // The file is valid by Altinn's own schema (when it is on this machine).
    if let Some(altinn) = common::official_altinn("sim: confirmations by Altinn's schema") {
        let xsd = fs::read(altinn.join("correspondence.confirmations.2010.10.xsd")).unwrap();
        let schema = dpv_batch::xml::Schema::compile(&xsd).unwrap();
        struct Nothing;
        impl dpv_batch::xml::Events for Nothing {
            fn start(&mut self, _: &[u8], _: bool, _: dpv_batch::xml::Pos) {}
            fn text(&mut self, _: &[u8]) {}
            fn end(&mut self, _: &[u8], _: dpv_batch::xml::Pos) {}
        }
        let problems =
            dpv_batch::xml::parse(Some(&schema), &mut File::open(&path).unwrap(), &mut Nothing);
        assert!(problems.is_empty(), "{problems:?}");
    }

    // Nothing more to do: a second run changes nothing.
    let out = sim(root, &["--confirm-delay-ms", "0"]);
    assert_eq!(out, "");
    assert_eq!(names(&root.join("confirmations")).len(), 1);
}

#[test]
fn confirmations_wait_for_their_delay_or_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    upload(root, "a.xml", &generate("A", 2));
    sim(root, &["--confirm-delay-ms", "3600000"]);
    assert_eq!(receipt(root, "a.xml").status, ReceiptStatus::Ok);
    assert!(names(&root.join("confirmations")).is_empty());

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    upload(root, "a.xml", &generate("A", 2));
    sim(root, &["--no-confirmations"]);
    assert_eq!(receipt(root, "a.xml").status, ReceiptStatus::Ok);
    assert!(names(&root.join("confirmations")).is_empty());
}

#[test]
fn a_batch_waits_for_the_receipt_delay_and_settle_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    upload(root, "a.xml", &generate("A", 1));
    sim(root, &["--receipt-delay-ms", "3600000"]);
    sim(root, &["--settle-ms", "3600000"]);
    assert_eq!(names(&root.join("upload")), ["a.xml"]);
    assert!(names(&root.join("receipts")).is_empty());
    sim(root, &[]);
    assert_eq!(receipt(root, "a.xml").status, ReceiptStatus::Ok);
}

#[test]
fn a_sequence_gap_is_rejected_and_does_not_advance_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let args = ["--no-confirmations"];
    upload(root, "1.xml", &with_sequence_no(&generate("S1", 2), 7));
    sim(root, &args);
    assert_eq!(receipt(root, "1.xml").status, ReceiptStatus::Ok);

    upload(root, "2.xml", &with_sequence_no(&generate("S2", 2), 9));
    sim(root, &args);
    let r = receipt(root, "2.xml");
    assert_eq!(r.status, ReceiptStatus::Rejected);
    assert!(r.text.contains("expected 8, got 9"), "{}", r.text);
    assert!(r.letters.is_empty());
    assert_eq!(names(&root.join("processed")), ["1.xml", "2.xml"]);

    // A repeat of the last number is refused too; the next correct one is taken.
    upload(root, "3.xml", &with_sequence_no(&generate("S3", 2), 7));
    upload(root, "4.xml", &with_sequence_no(&generate("S4", 2), 8));
    sim(root, &args);
    let r = receipt(root, "3.xml");
    assert_eq!(r.status, ReceiptStatus::Rejected);
    assert!(r.text.contains("expected 8, got 7"), "{}", r.text);
    let r = receipt(root, "4.xml");
    assert_eq!(r.status, ReceiptStatus::Ok);
    assert_eq!(statuses(&r), vec![ReceiptStatus::Ok; 2]);
}

#[test]
fn a_repeated_senders_reference_is_rejected_for_that_letter_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    upload(root, "a.xml", &generate("S1", 3));
    sim(root, &["--confirm-delay-ms", "0"]);
    assert_eq!(
        statuses(&receipt(root, "a.xml")),
        vec![ReceiptStatus::Ok; 3]
    );

    let second = generate("S2", 3).replace("S2-00000001", "S1-00000001");
    upload(root, "b.xml", &second);
    sim(root, &["--confirm-delay-ms", "0"]);
    let r = receipt(root, "b.xml");
    assert_eq!(r.status, ReceiptStatus::Ok);
    assert_eq!(
        statuses(&r),
        [
            ReceiptStatus::Ok,
            ReceiptStatus::Rejected,
            ReceiptStatus::Ok
        ]
    );
    assert_eq!(r.letters[1].senders_reference, "S1-00000001");
    assert!(r.letters[1].text.contains("already received"));

    // Confirmations only for the accepted letters, chained per system user.
    assert_eq!(
        names(&root.join("confirmations")),
        ["confirmations-00000001.xml", "confirmations-00000002.xml"]
    );
    let path = root.join("confirmations/confirmations-00000002.xml");
    let c = parse_confirmations(&mut File::open(path).unwrap()).unwrap();
    assert_eq!((c.sequence_no, c.previous_sequence_no), (2, 1));
    let refs: Vec<&str> = c
        .items
        .iter()
        .map(|i| i.senders_reference.as_str())
        .collect();
    assert_eq!(refs, ["S2-00000000", "S2-00000002"]);
}

#[test]
fn letters_to_a_rejected_reportee_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Letters 1 and 9 go to the second of gen's reportees.
    upload(root, "a.xml", &generate("R", 10));
    let reportee = dpv_batch::gen::REPORTEES[1];
    sim(
        root,
        &[
            "--confirm-delay-ms",
            "0",
            "--reject-reportee",
            reportee,
            "--reject-reportee",
            "000000000",
        ],
    );
    let r = receipt(root, "a.xml");
    assert_eq!(r.status, ReceiptStatus::Ok);
    let rejected: Vec<usize> = r
        .letters
        .iter()
        .enumerate()
        .filter(|(_, l)| l.status == ReceiptStatus::Rejected)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(rejected, [1, 9]);
    assert!(r.letters[1].text.contains(reportee));
    let path = root.join("confirmations/confirmations-00000001.xml");
    let c = parse_confirmations(&mut File::open(path).unwrap()).unwrap();
    assert_eq!(c.items.len(), 8);
    assert!(c.items.iter().all(|i| i.reportee != reportee));
}

#[test]
fn an_invalid_batch_fails_validation_and_its_references_stay_free() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let good = generate("V", 2);
    // A wrong check digit: DPV003.
    let bad = good.replacen("<Reportee>974760673<", "<Reportee>974760674<", 1);
    assert_ne!(good, bad);
    upload(root, "a.xml", &bad);
    upload(root, "z.xml", "this is not XML");
    sim(root, &["--confirm-delay-ms", "0"]);
    let r = receipt(root, "a.xml");
    assert_eq!(r.status, ReceiptStatus::ValidationFailed);
    assert!(r.text.contains("DPV003"), "{}", r.text);
    assert!(r.letters.is_empty());
    assert_eq!(r.shipment_reference, "V");
    let z = receipt(root, "z.xml");
    assert_eq!(z.status, ReceiptStatus::ValidationFailed);
    assert_eq!(names(&root.join("processed")), ["a.xml", "z.xml"]);
    assert!(names(&root.join("confirmations")).is_empty());

    // Fixed and sent again: accepted, nothing "already received".
    upload(root, "b.xml", &good);
    sim(root, &["--confirm-delay-ms", "0"]);
    assert_eq!(
        statuses(&receipt(root, "b.xml")),
        vec![ReceiptStatus::Ok; 2]
    );
}

#[test]
fn a_batch_already_in_processed_is_only_moved() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let xml = generate("P", 1);
    fs::create_dir_all(root.join("processed")).unwrap();
    fs::write(root.join("processed/a.xml"), &xml).unwrap();
    upload(root, "a.xml", &xml);
    sim(root, &[]);
    assert!(names(&root.join("upload")).is_empty());
    assert_eq!(names(&root.join("processed")), ["a.xml"]);
    assert!(names(&root.join("receipts")).is_empty());
}

#[test]
fn a_bad_root_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    let out = Command::new(BIN)
        .args(["sim", "--once", "--root", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot create the folder"), "{err}");
}

#[test]
fn sigterm_and_sigint_stop_a_running_simulator_cleanly() {
    for signal in ["-TERM", "-INT"] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .args(["sim", "--poll-ms", "10", "--root"])
            .arg(dir.path())
            .spawn()
            .expect("start sim");
        // `.sim/` is made after the handlers are installed: from then on a
        // signal asks the loop to stop instead of killing the process.
        let state = dir.path().join(".sim");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !state.exists() {
            assert!(std::time::Instant::now() < deadline, "sim never started");
            std::thread::yield_now();
        }
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{signal}: {status:?}");
    }
}
