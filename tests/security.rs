//! Hostile input: each is refused fast, with a clear message, and leaves no trace.
//!
//! Run in an empty working directory with an empty TMPDIR, so "no side
//! effect" can be checked as "both are still empty afterwards".

mod common;
use common::*;

use std::path::Path;
use std::time::{Duration, Instant};

fn refuse(sample: &str, code: &str, words: &str) {
    let path = root().join("samples/invalid").join(sample);
    let cwd = tempfile::tempdir().expect("tempdir");
    let tmp = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let out = std::process::Command::new(bin())
        .current_dir(cwd.path())
        .env("TMPDIR", tmp.path())
        .args(["validate", "--format", "json"])
        .arg(&path)
        .output()
        .expect("run");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "{sample} took {took:?}");
    assert_eq!(out.status.code(), Some(1), "{sample}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let errors = json[0]["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{sample}: {errors:?}");
    assert_eq!(errors[0]["code"], code, "{sample}");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(message.contains(words), "{sample}: {message}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("root:x:0"),
        "{sample}: local file content leaked"
    );
    for dir in [cwd.path(), tmp.path()] {
        assert_eq!(entries(dir), 0, "{sample} left files in {}", dir.display());
    }
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).expect("read_dir").count()
}

#[test]
fn external_entity_is_refused() {
    refuse("xxe.xml", "XML900", "DOCTYPE");
}

#[test]
fn entity_expansion_bomb_is_refused() {
    refuse("entity-bomb.xml", "XML900", "DOCTYPE");
}

#[test]
fn zip_slip_is_refused() {
    refuse("zip-slip.zip", "PKG001", "'..'");
}

#[test]
fn zip_bomb_is_refused() {
    refuse("zip-bomb.zip", "PKG005", "compression bomb");
}

// ---- export packages: what is validated is what is sent ---------------------
//
// A package whose entry names leave any doubt about which entry is the batch
// or which file an attachment is, is refused as a whole (PKG007/PKG008), so
// validation and packaging can never judge one entry and send another.

use common::zips::{batch_with, entry, sample_batch, symlink, zip, Entry};

/// Validate a zip made here: exit code and every error's (code, message).
fn validate_zip(entries: &[Entry], extra: &[&str]) -> (i32, Vec<(String, String)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("package.zip");
    std::fs::write(&path, zip(entries)).expect("write zip");
    let (code, json, _) = validate_json(&path, extra);
    let errors = json[0]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    (code, errors)
}

/// The package is refused with `count` errors, all `code`, the first saying `words`.
fn refused(entries: &[Entry], code: &str, count: usize, words: &str) {
    let (exit, errors) = validate_zip(entries, &[]);
    assert_eq!(exit, 1, "{errors:?}");
    assert_eq!(errors.len(), count, "{errors:?}");
    assert!(errors.iter().all(|(c, _)| c == code), "{errors:?}");
    assert!(errors[0].1.contains(words), "{errors:?}");
}

fn pdf() -> Entry {
    entry("vedtak.pdf", b"%PDF-1.4 vedtak")
}

fn txt() -> Entry {
    entry("vedlegg.txt", b"vilkaar")
}

#[test]
fn a_well_formed_hand_made_package_is_valid() {
    // The helper's zips are sound: the same entries without a trick pass.
    let (exit, errors) = validate_zip(&[entry("batch.xml", &sample_batch()), pdf(), txt()], &[]);
    assert_eq!((exit, errors), (0, vec![]));
}

#[test]
fn a_batch_behind_a_backslash_is_refused() {
    // `old\batch.xml` is a file in a folder to one reader and a root file to
    // another: validation judged batch.xml, the packager sent this one.
    let unvalidated = batch_with("BEV-2026-331907", "NOT-VALIDATED-1");
    refused(
        &[
            entry("old\\batch.xml", &unvalidated),
            entry("batch.xml", &sample_batch()),
            pdf(),
            txt(),
        ],
        "PKG007",
        1,
        "'old\\batch.xml' contains a path",
    );
}

#[test]
fn entries_in_folders_and_links_are_refused() {
    let batch = || entry("batch.xml", &sample_batch());
    refused(
        &[batch(), entry("vedlegg/vedtak.pdf", b"x"), pdf(), txt()],
        "PKG007",
        1,
        "'vedlegg/vedtak.pdf' contains a path",
    );
    refused(
        &[batch(), entry("vedlegg/", b""), pdf(), txt()],
        "PKG007",
        1,
        "'vedlegg/' is a folder",
    );
    // A link is no file of the package; its "content" names one elsewhere.
    refused(
        &[batch(), symlink("vedtak.pdf", "/etc/passwd"), txt()],
        "PKG007",
        1,
        "'vedtak.pdf' is a symbolic link",
    );
}

#[test]
fn duplicate_entry_names_are_refused() {
    // The zip library keeps only the last of two equal names: without the
    // central directory walk the first would be invisible.
    let unvalidated = batch_with("BEV-2026-331907", "NOT-VALIDATED-1");
    refused(
        &[
            entry("batch.xml", &sample_batch()),
            pdf(),
            txt(),
            entry("batch.xml", &unvalidated),
        ],
        "PKG008",
        1,
        "more than one entry named 'batch.xml'",
    );
    refused(
        &[
            entry("batch.xml", &sample_batch()),
            pdf(),
            txt(),
            entry("vedtak.pdf", &[b'x'; 5000]),
        ],
        "PKG008",
        1,
        "more than one entry named 'vedtak.pdf'",
    );
}

#[test]
fn names_equal_after_case_folding_or_nfc_are_refused() {
    let batch = || entry("batch.xml", &sample_batch());
    refused(
        &[batch(), pdf(), txt(), entry("Vedtak.PDF", b"other")],
        "PKG008",
        1,
        "'vedtak.pdf' and 'Vedtak.PDF' differ only in case",
    );
    refused(
        &[batch(), pdf(), txt(), entry("BATCH.xml", &sample_batch())],
        "PKG008",
        1,
        "differ only in case",
    );
    // "é" composed (NFC) and decomposed (NFD, as macOS writes names).
    refused(
        &[
            batch(),
            pdf(),
            txt(),
            entry("vilk\u{e5}r.txt", b"a"),
            entry("vilka\u{30a}r.txt", b"b"),
        ],
        "PKG008",
        1,
        "two Unicode normalisation forms",
    );
}

#[test]
fn names_equal_but_for_invisible_characters_or_trailing_blanks_are_refused() {
    let batch = || entry("batch.xml", &sample_batch());
    refused(
        &[batch(), pdf(), txt(), entry("ved\u{200b}tak.pdf", b"other")],
        "PKG008",
        1,
        "'vedtak.pdf' and 'ved\\u{200b}tak.pdf' differ only in invisible characters",
    );
    refused(
        &[batch(), pdf(), txt(), entry("vedtak.pdf. ", b"other")],
        "PKG008",
        1,
        "differ only in trailing dots or blanks",
    );
}

#[test]
fn an_entry_hidden_from_the_end_record_is_refused() {
    // Four records in the central directory, but the end record counts
    // three: some unpackers see the fourth, some do not.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("package.zip");
    let mut bytes = zip(&[
        entry("batch.xml", &sample_batch()),
        pdf(),
        txt(),
        entry("hidden.xml", b"<x/>"),
    ]);
    let end = bytes.len() - 22;
    bytes[end + 8..end + 12].copy_from_slice(&[3, 0, 3, 0]);
    std::fs::write(&path, bytes).expect("write");
    let (exit, json, _) = validate_json(&path, &[]);
    assert_eq!(exit, 1);
    let errors = json[0]["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{json}");
    assert_eq!(errors[0]["code"], "PKG006");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("lists an entry 'hidden.xml' that its end record does not count"),
        "{json}"
    );
}

#[test]
fn names_with_control_characters_or_bad_utf8_are_refused() {
    let batch = || entry("batch.xml", &sample_batch());
    let (exit, errors) = validate_zip(
        &[batch(), pdf(), txt(), entry("a\nERROR forged.pdf", b"x")],
        &[],
    );
    assert_eq!(exit, 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "PKG007");
    assert!(
        errors[0]
            .1
            .contains("'a\\nERROR forged.pdf' contains a control character"),
        "the name is shown escaped: {errors:?}"
    );
    let bad_utf8 = Entry {
        name: b"vedlegg-\xff.pdf".to_vec(),
        ..entry("x", b"x")
    };
    refused(
        &[batch(), pdf(), txt(), bad_utf8],
        "PKG007",
        1,
        "not valid UTF-8",
    );
}

#[test]
fn a_long_file_name_cannot_reach_a_different_entry() {
    // FileName was cut to 512 bytes for the size check (finding the small
    // entry) but used whole by the packager (inlining the large one).
    let long = format!("{}-big.pdf", "A".repeat(512));
    let batch = batch_with("<FileName>vedtak.pdf<", &format!("<FileName>{long}<"));
    let (exit, errors) = validate_zip(
        &[
            entry("batch.xml", &batch),
            entry(&"A".repeat(512), b"small"),
            entry(&long, &[b'x'; 2000]),
            txt(),
        ],
        &["--max-attachment-bytes", "1000"],
    );
    assert_eq!(exit, 1, "{errors:?}");
    let codes: Vec<&str> = errors.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(codes, ["PKG007", "PKG007"], "{errors:?}");
    assert!(errors[0].1.contains("longer than 255 bytes"), "{errors:?}");
}

#[test]
fn a_path_after_byte_512_of_a_file_name_is_found() {
    // A plain batch (inline Data): the path check sees the whole FileName.
    let name = format!("{}/../../x", "A".repeat(600));
    let batch = String::from_utf8(batch_with(
        "<FileName>vedtak.pdf<",
        &format!("<FileName>{name}<"),
    ))
    .unwrap()
    .replacen("<Data></Data>", "<Data>SGVsbG8=</Data>", 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("batch.xml");
    std::fs::write(&path, batch).expect("write");
    let (exit, json, _) = validate_json(&path, &[]);
    assert_eq!(exit, 1);
    let codes: Vec<(u64, String)> = errors(&json, None);
    assert_eq!(
        codes,
        [(20, "DPV021".to_string()), (20, "DPV014".to_string())],
        "{json}"
    );
}
