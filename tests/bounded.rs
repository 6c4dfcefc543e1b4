//! Bounded work on hostile and runaway input, and messages that point at the
//! real problem (issue 7, sections 4 and 6). Each test asserts behaviour:
//! exact codes and counts, which files are where. Time and memory are
//! measured by `bench/bounded.sh`, not here.

mod common;
use common::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use dpv_batch::altinn::{self, AltinnError};
use dpv_batch::transport::{self, local::Local, ErrorKind, Inbound, Transport};

/// A one-letter batch from `gen`, as text.
fn one_letter() -> String {
    let out = Command::new(bin())
        .args(["gen", "--letters", "1"])
        .output()
        .expect("gen");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).expect("write");
    path
}

/// Validate `bytes` as a file; the JSON report of it and the exit code.
fn check(bytes: &[u8], extra: &[&str]) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "batch.xml", bytes);
    let (code, json, _) = validate_json(&path, extra);
    (code, json)
}

fn messages(report: &serde_json::Value) -> Vec<String> {
    report[0]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

// ---- 4. time and memory stay bounded ---------------------------------------

#[test]
fn an_over_long_title_is_one_error_and_reading_goes_on() {
    // 2 MiB of title: over the 1 MiB any text run may hand the validator.
    // Before, it was valid (and 100 MB of it took 34 s, quadratic).
    let letter = one_letter().replacen(
        "<MessageTitle>",
        &format!("<MessageTitle>{}", "T".repeat(2 << 20)),
        1,
    );
    // A real error after the long text is still found.
    let batch = letter.replacen("<Reportee>974760673", "<Reportee>123", 1);
    let (code, report) = check(batch.as_bytes(), &[]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = batch.lines().collect();
    let title = lines
        .iter()
        .position(|l| l.contains("<MessageTitle>"))
        .unwrap() as u64
        + 1;
    let reportee = lines.iter().position(|l| l.contains("<Reportee>")).unwrap() as u64 + 1;
    assert_eq!(
        errors(&report, None),
        vec![
            (reportee, "DPV003".to_string()),
            (title, "XML903".to_string())
        ]
    );
    assert!(
        messages(&report)[1].contains("MessageTitle is longer than 1048576 bytes"),
        "{report}"
    );
}

#[test]
fn long_runs_of_whitespace_are_not_an_error() {
    // Formatting may be long; only text with content counts as a value.
    let batch = one_letter().replacen(
        "<Correspondence>",
        &format!("<Correspondence>{}", " \n".repeat(1 << 20)),
        1,
    );
    let (code, report) = check(batch.as_bytes(), &[]);
    assert_eq!(errors(&report, None), vec![], "{report}");
    assert_eq!(code, 0);
}

#[test]
fn four_hundred_thousand_errors_are_counted_and_the_first_listed() {
    // 400,000 letters with no content: one schema error each.
    let header = one_letter();
    let start = header.find("<Correspondence>").unwrap();
    let mut batch = header[..start].to_string();
    let letters_line = batch.matches('\n').count() as u64 + 1;
    for _ in 0..400_000 {
        batch.push_str("<Correspondence/>\n");
    }
    batch.push_str("</Correspondences>\n");
    let (code, report) = check(batch.as_bytes(), &["--max-errors", "10"]);
    assert_eq!(code, 1);
    let listed = errors(&report, None);
    assert_eq!(listed.len(), 10);
    assert_eq!(report[0]["errors_not_listed"], 399_990);
    assert_eq!(report[0]["letters"], 400_000);
    // The first ten by position, in order.
    let lines: Vec<u64> = listed.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, (letters_line..letters_line + 10).collect::<Vec<_>>());

    // The text report says how many more there are.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "many.xml", batch.as_bytes());
    let out = Command::new(bin())
        .args(["validate", "--max-errors", "3"])
        .arg(&path)
        .output()
        .expect("validate");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().filter(|l| l.contains("error[")).count(), 3);
    assert!(
        text.contains(
            "... and 399997 more errors, not listed (--max-errors 400000 lists them all)"
        ),
        "{text}"
    );
    assert!(text.contains("INVALID, 400000 errors"), "{text}");
}

#[test]
fn an_inbound_file_over_the_limit_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut local = Local::new(dir.path()).expect("local");
    // Sparse: a gigabyte that costs no disk.
    let huge = dir.path().join("receipts/huge.receipt.xml");
    let f = fs::File::create(&huge).expect("create");
    f.set_len(transport::MAX_INBOUND_BYTES + 1)
        .expect("set_len");
    let dest = dir.path().join("fetched.xml");
    let e = local
        .fetch(Inbound::Receipts, "huge.receipt.xml", &dest)
        .expect_err("refused");
    assert_eq!(e.kind, ErrorKind::Refused);
    assert!(
        e.message
            .contains("is 1073741825 bytes, over the limit of 1073741824 bytes"),
        "{e}"
    );
    assert!(!dest.exists(), "nothing is written");
    assert!(huge.exists(), "left where it is");

    // At the limit it is streamed to the destination.
    f.set_len(1000).expect("set_len");
    local
        .fetch(Inbound::Receipts, "huge.receipt.xml", &dest)
        .expect("fetched");
    assert_eq!(fs::metadata(&dest).expect("dest").len(), 1000);
}

/// A workspace for `run --once` against the simulator (local transport).
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = r#"
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
root = "altinn"
[run]
poll_ms = 20
"#;
    fs::write(dir.path().join("dpv.toml"), config).expect("config");
    for sub in ["inbox", "altinn/receipts"] {
        fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    dir
}

fn run_once(ws: &Path, timeout: &str) -> std::process::Output {
    Command::new(bin())
        .args(["run", "--once", "--timeout", timeout, "--config"])
        .arg(ws.join("dpv.toml"))
        .output()
        .expect("run --once")
}

struct Sim(std::process::Child);

impl Sim {
    fn start(ws: &Path) -> Sim {
        let child = Command::new(bin())
            .args(["sim", "--poll-ms", "10", "--no-confirmations", "--root"])
            .arg(ws.join("altinn"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sim");
        Sim(child)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_huge_inbound_receipt_is_passed_over_and_the_others_are_collected() {
    let ws = workspace();
    let ws = ws.path();
    // It sorts first, so it would be fetched (into memory, before) first.
    let huge = ws.join("altinn/receipts/0-huge.receipt.xml");
    fs::File::create(&huge)
        .and_then(|f| f.set_len(transport::MAX_INBOUND_BYTES + 1))
        .expect("sparse file");
    let _sim = Sim::start(ws);
    fs::write(ws.join("inbox/a.xml"), sample("valid/letters-bokmal.xml")).expect("drop");
    let out = run_once(ws, "60s");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(
        outcome(&fs::read_to_string(ws.join("outbox/a.xml.receipt.xml")).expect("receipt")),
        "Accepted"
    );
    assert_eq!(
        log.matches("over the limit of 1073741824 bytes").count(),
        1,
        "logged once: {log}"
    );
    assert!(huge.exists(), "left where it is");
    assert!(
        !ws.join("state/inbound/bad").exists(),
        "nothing copied aside"
    );
}

#[test]
fn receipts_are_collected_between_large_files() {
    let ws = workspace();
    let ws = ws.path();
    // a.xml is sent; nobody answers yet.
    fs::write(ws.join("inbox/a.xml"), sample("valid/letters-bokmal.xml")).expect("drop");
    assert_eq!(run_once(ws, "1s").status.code(), Some(3));
    // Altinn answers; its receipt (complete: under its final name) waits
    // to be collected.
    let receipts = || -> Vec<String> {
        fs::read_dir(ws.join("altinn/receipts"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".receipt.xml") && !n.starts_with('.'))
            .collect()
    };
    {
        let _sim = Sim::start(ws);
        for _ in 0..3000 {
            if !receipts().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    assert_eq!(receipts().len(), 1);
    // Two large inputs arrive (unreadable: validation is quick, hashing
    // reads them whole). Each is over the bytes validated per tick.
    for name in ["big1.xml", "big2.xml"] {
        fs::File::create(ws.join("inbox").join(name))
            .and_then(|f| f.set_len(17 << 20))
            .expect("sparse file");
    }
    let out = run_once(ws, "60s");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let at = |what: &str| {
        log.find(what)
            .unwrap_or_else(|| panic!("no '{what}' in the log:\n{log}"))
    };
    let receipt = at("receipt=");
    let big1 = at("file=big1.xml id=2 errors=");
    let big2 = at("file=big2.xml id=3 errors=");
    assert!(
        big1 < receipt && receipt < big2,
        "the receipt is collected before the second large file is validated:\n{log}"
    );
}

// ---- 6. messages that point at the real problem ----------------------------

#[test]
fn a_duplicate_attribute_is_one_error() {
    // Before: 19 errors (libxml2 2.9 reads on after a fatal error).
    let batch = one_letter().replacen("<Correspondence>", "<Correspondence a=\"1\" a=\"2\">", 1);
    let (code, report) = check(batch.as_bytes(), &[]);
    assert_eq!(code, 1);
    assert_eq!(errors(&report, None), vec![(5, "XML042".to_string())]);
    assert_eq!(messages(&report), vec!["Attribute a redefined"]);
}

#[test]
fn a_ten_megabyte_attribute_is_one_error() {
    // Before: 148 errors, "Memory allocation failed" among them.
    let batch = one_letter().replacen(
        "<Correspondence>",
        &format!("<Correspondence a=\"{}\">", "x".repeat(10 << 20)),
        1,
    );
    let (code, report) = check(batch.as_bytes(), &[]);
    assert_eq!(code, 1);
    assert_eq!(errors(&report, None), vec![(5, "XML904".to_string())]);
    assert!(
        messages(&report)[0].contains("start tag (or other markup) is longer than 65536 bytes"),
        "{report}"
    );
}

#[test]
fn hostile_markup_gives_one_error_each() {
    let letter = one_letter();
    let cases = [
        // Many attributes (libxml2 checks them pairwise: quadratic).
        (
            "many attributes",
            letter.replacen(
                "<MessageBody>",
                &format!(
                    "<MessageBody><x {}/>",
                    (0..100_000)
                        .map(|i| format!("a{i}=\"\""))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                1,
            ),
            "XML904",
        ),
        // Many distinct names (libxml2's dictionary: 800,000 took 12 s).
        (
            "many names",
            letter.replacen(
                "<MessageBody>",
                &format!(
                    "<MessageBody>{}",
                    (0..60_000).map(|i| format!("<n{i}/>")).collect::<String>()
                ),
                1,
            ),
            "XML905",
        ),
        (
            "many namespaces",
            letter.replacen(
                "<MessageBody>",
                &format!(
                    "<MessageBody>{}",
                    (0..60_000)
                        .map(|i| format!("<x xmlns=\"urn:{i}\"/>"))
                        .collect::<String>()
                ),
                1,
            ),
            "XML905",
        ),
        // Deep nesting: libxml2's own limit, then nothing more.
        (
            "deep nesting",
            letter.replacen(
                "<MessageBody>",
                &format!(
                    "<MessageBody>{}{}",
                    "<a>".repeat(10_000),
                    "</a>".repeat(10_000)
                ),
                1,
            ),
            "XML001",
        ),
        // A processing instruction over libxml2's 10 MB limit.
        (
            "huge PI",
            letter.replacen(
                "<MessageBody>",
                &format!("<?pi {}?><MessageBody>", "x".repeat(11_000_000)),
                1,
            ),
            "XML047",
        ),
    ];
    for (name, batch, expected) in cases {
        let (code, report) = check(batch.as_bytes(), &[]);
        assert_eq!(code, 1, "{name}");
        let found = errors(&report, None);
        assert_eq!(found.len(), 1, "{name}: {report}");
        assert_eq!(found[0].1, expected, "{name}: {report}");
    }
}

#[test]
fn huge_comments_and_many_namespaces_are_read_in_bounded_memory() {
    // Valid documents, however odd: they must stay valid (and cheap). A
    // namespace declared on every element (some exports do) is one name.
    let letter = one_letter();
    let comment = letter.replacen(
        "<MessageBody>",
        &format!("<!--{}--><MessageBody>", "x".repeat(20_000_000)),
        1,
    );
    let namespaces = letter.replacen(
        "<MessageBody>",
        &format!(
            "<MessageBody>{}",
            (0..100_000)
                .map(|i| format!("<x{} xmlns=\"urn:a\"/>", i % 100))
                .collect::<String>()
        ),
        1,
    );
    for (name, batch) in [("comment", comment), ("namespaces", namespaces)] {
        let (code, report) = check(batch.as_bytes(), &[]);
        assert_eq!(errors(&report, None), vec![], "{name}");
        assert_eq!(code, 0, "{name}");
    }
}

#[test]
fn utf32_is_named() {
    // Before: "Document is empty", or an encoder error.
    let letter = one_letter();
    let utf32 = |big_endian: bool, bom: bool| -> Vec<u8> {
        let mut out = Vec::new();
        let text = if bom {
            format!("\u{FEFF}{letter}")
        } else {
            letter.clone()
        };
        for c in text.chars() {
            let n = c as u32;
            out.extend(if big_endian {
                n.to_be_bytes()
            } else {
                n.to_le_bytes()
            });
        }
        out
    };
    for (big_endian, bom) in [(true, true), (false, true), (true, false), (false, false)] {
        let (code, report) = check(&utf32(big_endian, bom), &[]);
        assert_eq!(code, 1);
        assert_eq!(errors(&report, None), vec![(1, "XML902".to_string())]);
        assert_eq!(
            messages(&report),
            vec!["UTF-32 is not supported; save the file as UTF-8 (or UTF-16)"]
        );
    }
}

#[test]
fn a_doctype_in_a_receipt_or_confirmations_is_not_called_a_batch_file() {
    let receipt = format!(
        "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\
         <ReceiptExternal xmlns=\"{}\">&x;</ReceiptExternal>",
        altinn::RECEIPT_NS
    );
    let e = altinn::parse_receipt(&mut receipt.as_bytes()).expect_err("refused");
    assert!(matches!(e, AltinnError::Refused { line: 1, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "line 1: refused: the ReceiptExternal (Altinn receipt, Receipt/2009/10) has a DOCTYPE; \
         Altinn's documents have none, and DTDs and entities are never read (for security)"
    );
    let confirmations = format!(
        "<!DOCTYPE c><CorrespondenceConfirmations xmlns=\"{}\"/>",
        altinn::CONFIRMATIONS_NS
    );
    let e = altinn::parse_confirmations(&mut confirmations.as_bytes()).expect_err("refused");
    let text = e.to_string();
    assert!(
        text.contains("CorrespondenceConfirmations") && text.contains("has a DOCTYPE"),
        "{text}"
    );
    assert!(!text.contains("batch"), "{text}");
}

#[test]
fn a_name_that_differs_only_in_normalisation_says_so() {
    // The batch names the file in NFC; the zip (made on a Mac) holds NFD.
    use std::io::{Read, Write};
    let nfc = "vedtak-\u{e9}.pdf";
    let nfd = "vedtak-e\u{301}.pdf";
    let mut sample_zip = zip::ZipArchive::new(
        fs::File::open(root().join("samples/valid/export-package.zip")).unwrap(),
    )
    .expect("sample zip");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("package.zip");
    let mut out = zip::ZipWriter::new(fs::File::create(&path).expect("create"));
    for i in 0..sample_zip.len() {
        let mut entry = sample_zip.by_index(i).expect("entry");
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read");
        let name = match entry.name() {
            "batch.xml" => {
                bytes = String::from_utf8(bytes)
                    .unwrap()
                    .replace("<FileName>vedtak.pdf<", &format!("<FileName>{nfc}<"))
                    .into_bytes();
                "batch.xml".to_string()
            }
            "vedtak.pdf" => nfd.to_string(),
            other => other.to_string(),
        };
        out.start_file(name, zip::write::SimpleFileOptions::default())
            .expect("start");
        out.write_all(&bytes).expect("write");
    }
    out.finish().expect("finish");
    let (code, report, _) = validate_json(&path, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        errors(&report, None)
            .iter()
            .map(|(_, c)| c.as_str())
            .collect::<Vec<_>>(),
        vec!["DPV015"],
        "{report}"
    );
    let message = &messages(&report)[0];
    assert!(
        message.contains(&format!(
            "it has '{nfd}', which differs only in case, Unicode normalisation"
        )),
        "{message}"
    );
}
