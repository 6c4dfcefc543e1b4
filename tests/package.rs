//! Packaging: parts are valid batches, split at the limits, numbered, with
//! every letter exactly once; encodings normalised; export zips inlined.

mod common;
use common::*;

use std::path::Path;

use dpv_batch::package::{package, PackOptions, Packed};
use dpv_batch::validate::{Options, Validator};

fn opts(bytes: u64, letters: u64, first: Option<i64>) -> PackOptions {
    PackOptions {
        max_part_bytes: bytes,
        max_part_letters: letters,
        numbered: first.is_some(),
        name_prefix: "dpv-00000001".into(),
    }
}

fn gen(path: &Path, letters: u64, attachment: usize) {
    let spec = dpv_batch::gen::Spec {
        letters,
        attachment_bytes: attachment,
        ..Default::default()
    };
    let mut f = std::fs::File::create(path).unwrap();
    dpv_batch::gen::write_batch(&spec, &mut f).unwrap();
}

/// Every part is a valid batch; returns all SendersReferences in order.
fn check_parts(packed: &Packed) -> Vec<String> {
    let v = Validator::new(Options::default()).unwrap();
    let mut refs = Vec::new();
    for p in &packed.parts {
        let r = v.validate_path(&p.path);
        assert!(r.valid, "{}: {:?}", p.path.display(), r.errors);
        assert_eq!(r.letters as usize, p.letters.len());
        assert_eq!(
            std::fs::metadata(&p.path).unwrap().len(),
            p.bytes,
            "{}",
            p.path.display()
        );
        let text = std::fs::read_to_string(&p.path).unwrap();
        assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
        assert!(text.contains(&format!(
            "<ShipmentReference>{}</ShipmentReference>",
            p.shipment_reference
        )));
        refs.extend(p.letters.iter().map(|(r, _)| r.clone()));
    }
    refs
}

#[test]
fn splits_by_letters_with_sequence_number_slots() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.xml");
    gen(&input, 25, 300);
    let packed = package(
        &input,
        &dir.path().join("parts"),
        &opts(1 << 30, 10, Some(41)),
        None,
    )
    .unwrap();
    let sizes: Vec<usize> = packed.parts.iter().map(|p| p.letters.len()).collect();
    assert_eq!(sizes, vec![10, 10, 5]);
    // Numbers are written into each part's slot just before upload.
    for (i, p) in packed.parts.iter().enumerate() {
        assert_eq!(p.sequence_no, None);
        let slot = p.sequence_slot.expect("a SequenceNo slot");
        dpv_batch::package::write_sequence_no(&p.path, slot, 41 + i as i64).unwrap();
        assert_eq!(
            std::fs::metadata(&p.path).unwrap().len(),
            p.bytes,
            "the slot keeps the size"
        );
    }
    let shipments: Vec<&str> = packed
        .parts
        .iter()
        .map(|p| p.shipment_reference.as_str())
        .collect();
    assert_eq!(shipments, vec!["GEN-0001", "GEN-0001-2", "GEN-0001-3"]);
    let refs = check_parts(&packed);
    let expected: Vec<String> = (0..25).map(|i| format!("GEN-0001-{i:08}")).collect();
    assert_eq!(refs, expected);
    assert_eq!(packed.system_user_code, "ABC-123");
    assert!(std::fs::read_to_string(&packed.parts[1].path)
        .unwrap()
        .contains("<SequenceNo>42</SequenceNo>"));
}

#[test]
fn splits_by_bytes_and_keeps_parts_under_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.xml");
    gen(&input, 40, 3000);
    let limit = 64 * 1024;
    let packed = package(
        &input,
        &dir.path().join("parts"),
        &opts(limit, 1000, None),
        None,
    )
    .unwrap();
    assert!(packed.parts.len() >= 3, "{} parts", packed.parts.len());
    for p in &packed.parts {
        assert!(p.bytes <= limit, "part {} is {} bytes", p.part_no, p.bytes);
        assert_eq!(p.sequence_no, None);
    }
    assert_eq!(check_parts(&packed).len(), 40);
}

#[test]
fn encodings_are_normalised_to_utf8_and_values_kept() {
    let dir = tempfile::tempdir().unwrap();
    for sample in [
        "utf16le.xml",
        "utf16be.xml",
        "latin1.xml",
        "utf8-bom.xml",
        "letters-bokmal.xml",
    ] {
        let input = root().join("samples/valid").join(sample);
        let out = dir.path().join(sample);
        let packed = package(&input, &out, &opts(1 << 30, 1000, None), None).unwrap();
        assert_eq!(packed.parts.len(), 1, "{sample}");
        check_parts(&packed);
        let text = std::fs::read_to_string(&packed.parts[0].path).unwrap();
        assert!(
            text.contains('ø') || text.contains('å') || text.contains('æ'),
            "{sample}: æøå lost"
        );
    }
}

#[test]
fn export_package_attachments_are_inlined() {
    let dir = tempfile::tempdir().unwrap();
    let input = root().join("samples/valid/export-package.zip");
    let packed = package(&input, dir.path(), &opts(1 << 30, 1000, None), None).unwrap();
    check_parts(&packed);
    let text = std::fs::read_to_string(&packed.parts[0].path).unwrap();
    assert!(
        !text.contains("<Data></Data>") && !text.contains("<Data/>"),
        "{text}"
    );
    // The inlined data is the zip entry's content.
    let src = root().join("samples/src/export-package");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "xml") {
            continue;
        }
        let encoded = dpv_batch::b64::encode(&std::fs::read(&path).unwrap());
        let first_line = encoded.lines().next().unwrap();
        assert!(text.contains(first_line), "{} not inlined", path.display());
    }
}

#[test]
fn foreign_markup_in_message_body_stays_well_formed() {
    // MessageBody is xs:anyType: a prefixed element whose attribute uses the
    // same prefix must get one namespace declaration, not two.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.xml");
    gen(&input, 2, 0);
    let text = std::fs::read_to_string(&input).unwrap().replacen(
        "<MessageBody>",
        r#"<MessageBody><h:p xmlns:h="urn:example:html" h:class="a &amp; b">tekst &lt;3</h:p><q xmlns="">plain</q>"#,
        1,
    );
    std::fs::write(&input, text).unwrap();
    let packed = package(
        &input,
        &dir.path().join("parts"),
        &opts(1 << 30, 1000, None),
        None,
    )
    .unwrap();
    check_parts(&packed);
    let out = std::fs::read_to_string(&packed.parts[0].path).unwrap();
    assert!(
        out.contains(r#"<h:p xmlns:h="urn:example:html" h:class="a &amp; b">tekst &lt;3</h:p><q xmlns="">plain</q>"#),
        "{out}"
    );
}

#[test]
fn passthrough_only_for_inputs_that_need_no_rewrite() {
    use dpv_batch::package::{passthrough, Known};
    let dir = tempfile::tempdir().unwrap();
    let letters = vec![("R1".to_string(), "974760673".to_string())];
    let known = Known {
        system_user_code: "ABC-123",
        shipment_reference: "S",
        sequence_no: Some("1187"),
        letters: &letters,
    };
    let utf8 = root().join("samples/valid/letters-bokmal.xml");
    let out = dir.path().join("a");
    let p = passthrough(&utf8, &out, &opts(1 << 30, 1000, None), &known)
        .unwrap()
        .expect("passed through");
    assert_eq!(
        std::fs::read(&p.parts[0].path).unwrap(),
        std::fs::read(&utf8).unwrap()
    );
    assert_eq!(
        p.parts[0].sequence_no,
        Some(1187),
        "the input's own SequenceNo is recorded"
    );
    for (sample, why) in [
        ("valid/latin1.xml", "ISO-8859-1 is re-encoded"),
        ("valid/utf16le.xml", "UTF-16 is re-encoded"),
        ("valid/export-package.zip", "attachments are inlined"),
    ] {
        let r = passthrough(
            &root().join("samples").join(sample),
            &dir.path().join("b"),
            &opts(1 << 30, 1000, None),
            &known,
        );
        assert!(r.unwrap().is_none(), "{why}");
    }
    let numbered = passthrough(
        &utf8,
        &dir.path().join("c"),
        &opts(1 << 30, 1000, Some(1)),
        &known,
    );
    assert!(numbered.unwrap().is_none(), "numbering needs the slot");
    let too_big = passthrough(
        &utf8,
        &dir.path().join("d"),
        &opts(1000, 1000, None),
        &known,
    );
    assert!(too_big.unwrap().is_none(), "splitting needs a rewrite");
}

// ---- export packages: the packager sends exactly what the validator judged ---

use common::zips::{batch_with, entry, sample_batch, zip, Entry};
use dpv_batch::package::PackError;
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn no_blanks(s: &str) -> String {
    s.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

fn write_zip(dir: &Path, entries: &[Entry]) -> std::path::PathBuf {
    let path = dir.join("package.zip");
    std::fs::write(&path, zip(entries)).unwrap();
    path
}

#[test]
fn the_packager_sends_exactly_the_entries_the_validator_judged() {
    let dir = tempfile::tempdir().unwrap();
    // Attachments by a plain name and by a non-ASCII one; a decoy that only
    // free markup in MessageBody (xs:anyType) names; and a Data slot there,
    // which is no attachment and must stay as written.
    let body = "<MessageBody><FileName>decoy.bin</FileName><Data></Data></MessageBody>";
    let batch = String::from_utf8(batch_with(
        "<FileName>vedlegg.txt<",
        "<FileName>vilkår é.txt<",
    ))
    .unwrap();
    let batch = regex_free_replace(&batch, "<MessageBody>", "</MessageBody>", body).into_bytes();
    let pdf: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let txt = "Vilkår for bevillingen\n".repeat(50).into_bytes();
    let decoy = vec![b'D'; 4000];
    let input = write_zip(
        dir.path(),
        &[
            entry("batch.xml", &batch),
            entry("vedtak.pdf", &pdf),
            entry("vilkår é.txt", &txt),
            entry("decoy.bin", &decoy),
        ],
    );
    let v = Validator::new(Options::default()).unwrap();
    let report = v.validate_path(&input);
    assert!(report.valid, "{:?}", report.errors);
    let index = report.package.as_ref().expect("a valid package's index");
    assert_eq!(index.batch().name, "batch.xml");
    assert_eq!(
        index.batch().sha256,
        sha(&batch),
        "the batch judged is the one written"
    );
    let packed = package(
        &input,
        &dir.path().join("parts"),
        &opts(1 << 30, 1000, None),
        Some(index),
    )
    .unwrap();
    assert_eq!(packed.parts.len(), 1);
    let part = std::fs::read_to_string(&packed.parts[0].path).unwrap();
    check_parts(&packed);
    assert_eq!(packed.parts[0].letters, report.letter_refs);
    assert!(
        part.contains(body),
        "MessageBody's markup is not an attachment: {part}"
    );

    // Every attachment sent is, byte for byte, the entry the index measured.
    let mut sent = Vec::new();
    for attachment in part.split("<BinaryAttachment>").skip(1) {
        let name = tag(attachment, "FileName")[0];
        let data = no_blanks(tag(attachment, "Data")[0]);
        let judged = index.attachment(name).expect("judged by the validator");
        let bytes = if name == "vedtak.pdf" { &pdf } else { &txt };
        assert_eq!(judged.sha256, sha(bytes), "{name}");
        assert_eq!(judged.size, bytes.len() as u64, "{name}");
        assert_eq!(data, no_blanks(&dpv_batch::b64::encode(bytes)), "{name}");
        sent.push(name.to_string());
    }
    assert_eq!(sent, ["vedtak.pdf", "vilkår é.txt"]);
}

/// `text` with everything from `open` to `close` (inclusive) replaced by `with`.
fn regex_free_replace(text: &str, open: &str, close: &str, with: &str) -> String {
    let a = text.find(open).expect("open");
    let b = text[a..].find(close).expect("close") + a + close.len();
    format!("{}{with}{}", &text[..a], &text[b..])
}

#[test]
fn a_package_changed_after_validation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let entries = |pdf: &[u8], batch: Vec<u8>| {
        vec![
            entry("batch.xml", &batch),
            entry("vedtak.pdf", pdf),
            entry("vedlegg.txt", b"vilkaar"),
        ]
    };
    let input = write_zip(dir.path(), &entries(b"%PDF-1 one", sample_batch()));
    let v = Validator::new(Options::default()).unwrap();
    let report = v.validate_path(&input);
    assert!(report.valid, "{:?}", report.errors);
    let index = report.package.expect("index");
    // Same names, same lengths, other bytes: an attachment, then the batch.
    let same_length = batch_with("BEV-2026-331907", "BEV-2026-999999");
    for (changed, what) in [
        (entries(b"%PDF-1 two", sample_batch()), "vedtak.pdf"),
        (entries(b"%PDF-1 one", same_length), "batch.xml"),
        (entries(b"%PDF-1 one, longer", sample_batch()), "vedtak.pdf"),
    ] {
        write_zip(dir.path(), &changed);
        let out = dir.path().join("parts");
        match package(&input, &out, &opts(1 << 30, 1000, None), Some(&index)) {
            Err(PackError::Input(m)) => assert!(
                m.contains(&format!("entry '{what}'"))
                    && m.contains("not the one that was validated"),
                "{m}"
            ),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn a_package_is_refused_by_the_packager_on_its_own_too() {
    // Without a validation report the packager reads the package through the
    // same index, and refuses what validation refuses.
    let dir = tempfile::tempdir().unwrap();
    let input = write_zip(
        dir.path(),
        &[
            entry(
                "old\\batch.xml",
                &batch_with("BEV-2026-331907", "NOT-VALIDATED-1"),
            ),
            entry("batch.xml", &sample_batch()),
            entry("vedtak.pdf", b"%PDF"),
            entry("vedlegg.txt", b"txt"),
        ],
    );
    match package(
        &input,
        &dir.path().join("parts"),
        &opts(1 << 30, 1000, None),
        None,
    ) {
        Err(PackError::Input(m)) => assert!(m.contains("'old\\batch.xml' contains a path"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn whole_values_are_what_validation_reports_and_packaging_writes() {
    // References past 512 bytes were cut in the report (and so in the
    // journal, which matches Altinn's receipts by them) but not in the parts.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.xml");
    gen(&input, 2, 0);
    let shipment = format!("SHIP-{}", "s".repeat(700));
    let reference = format!("REF-{}", "r".repeat(1000));
    let text = std::fs::read_to_string(&input)
        .unwrap()
        .replacen(
            "<ShipmentReference>GEN-0001<",
            &format!("<ShipmentReference>{shipment}<"),
            1,
        )
        .replacen(
            "<SendersReference>GEN-0001-00000000<",
            &format!("<SendersReference>{reference}<"),
            1,
        );
    std::fs::write(&input, text).unwrap();
    let report = Validator::new(Options::default())
        .unwrap()
        .validate_path(&input);
    assert!(report.valid, "{:?}", report.errors);
    assert_eq!(report.letter_refs[0].0, reference);
    assert_eq!(
        report.shipment_reference.as_deref(),
        Some(shipment.as_str())
    );
    let packed = package(
        &input,
        &dir.path().join("parts"),
        &opts(1 << 30, 1000, Some(1)),
        None,
    )
    .unwrap();
    assert_eq!(packed.parts[0].letters, report.letter_refs);
    assert_eq!(packed.parts[0].shipment_reference, shipment);
}

#[test]
fn hostile_packages_are_refused_by_the_pipeline_and_nothing_is_sent() {
    // The real binary, end to end: each package gets a Rejected receipt
    // naming its code, and not one byte reaches "Altinn".
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("dpv.toml"),
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
root = "altinn"
[run]
poll_ms = 50
"#,
    )
    .unwrap();
    for sub in ["inbox", "altinn"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let unvalidated = batch_with("BEV-2026-331907", "NOT-VALIDATED-1");
    let pdf = || entry("vedtak.pdf", b"%PDF-1.4");
    let txt = || entry("vedlegg.txt", b"vilkaar");
    let cases: Vec<(&str, Vec<Entry>, &str)> = vec![
        (
            "backslash.zip",
            vec![
                entry("old\\batch.xml", &unvalidated),
                entry("batch.xml", &sample_batch()),
                pdf(),
                txt(),
            ],
            "PKG007",
        ),
        (
            "two-batches.zip",
            vec![
                entry("batch.xml", &sample_batch()),
                pdf(),
                txt(),
                entry("batch.xml", &unvalidated),
            ],
            "PKG008",
        ),
        (
            "two-pdfs.zip",
            vec![
                entry("batch.xml", &sample_batch()),
                pdf(),
                txt(),
                entry("vedtak.pdf", &[b'x'; 3000]),
            ],
            "PKG008",
        ),
        (
            "case.zip",
            vec![
                entry("batch.xml", &sample_batch()),
                pdf(),
                txt(),
                entry("VEDTAK.pdf", b"other"),
            ],
            "PKG008",
        ),
    ];
    for (name, entries, _) in &cases {
        let tmp = root.join("inbox").join(format!(".{name}.tmp"));
        std::fs::write(&tmp, zip(entries)).unwrap();
        std::fs::rename(&tmp, root.join("inbox").join(name)).unwrap();
    }
    let out = std::process::Command::new(bin())
        .args(["run", "--once", "--timeout", "20s", "--config"])
        .arg(root.join("dpv.toml"))
        .output()
        .expect("run --once");
    assert_eq!(
        out.status.code(),
        Some(0),
        "every input done: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, _, code) in &cases {
        let receipt =
            std::fs::read_to_string(root.join("outbox").join(format!("{name}.receipt.xml")))
                .unwrap_or_else(|e| panic!("no receipt for {name}: {e}"));
        assert_eq!(outcome(&receipt), "Rejected", "{name}: {receipt}");
        assert!(
            receipt.contains(&format!("code=\"{code}\"")),
            "{name}: {receipt}"
        );
    }
    let sent = files_under(&root.join("altinn"));
    assert!(sent.is_empty(), "sent to Altinn: {sent:?}");
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}
