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
    let packed = package(&input, &dir.path().join("parts"), &opts(limit, 1000, None)).unwrap();
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
        let packed = package(&input, &out, &opts(1 << 30, 1000, None)).unwrap();
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
    let packed = package(&input, dir.path(), &opts(1 << 30, 1000, None)).unwrap();
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
