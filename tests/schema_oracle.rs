//! Our `schemas/` XSD against Altinn's official one, as a test oracle.
//!
//! Our schema is written to have exactly the official structure (names,
//! order, types, facets, namespace) without Altinn's annotation prose. This
//! proves it: on every XML file of the corpus, and on mutants of the valid
//! samples (each leaf element removed, each leaf value replaced by junk),
//! both schemas give the same schema findings, line by line. The official
//! file is used twice: its original UTF-16LE bytes and its UTF-8 copy.
//!
//! The official files live outside this repository (`../shared/reference`):
//! without them the test says SKIPPED and passes, unless
//! `DPV_REQUIRE_ORACLE=1` (as .ci/run sets) makes it fail.

mod common;
use common::*;

use dpv_batch::validate::{Finding, Layer, Options, Validator, EMBEDDED_XSD};

fn schema_findings(v: &Validator, name: &str, bytes: &[u8]) -> Vec<(u32, u32, String)> {
    let report = v.validate_xml(name.to_string(), &mut &bytes[..], None);
    report
        .errors
        .into_iter()
        .filter(|f: &Finding| f.layer != Layer::Rules)
        .map(|f| (f.line, f.column, f.code))
        .collect()
}

fn official(dir: &std::path::Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("official schema {}: {e}", path.display()))
}

/// Leaf elements `<X>value</X>` on one line: (line index, start, end of value).
fn leaves(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let t = l.trim();
            let name = t.strip_prefix('<')?.split(['>', ' ']).next()?;
            (t.ends_with(&format!("</{name}>")) && !name.starts_with(['/', '?', '!']))
                .then(|| (i, name.to_string()))
        })
        .collect()
}

fn mutants(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, name) in leaves(text) {
        let mut removed = lines.clone();
        removed[i] = "";
        out.push((
            format!("without {name} (line {})", i + 1),
            removed.join("\n"),
        ));
        let mut junk = lines.clone();
        let replaced = format!("<{name}>x\u{e6}-not-a-value-{}</{name}>", "9".repeat(520));
        let indent = &lines[i][..lines[i].len() - lines[i].trim_start().len()];
        let line = format!("{indent}{replaced}");
        junk[i] = &line;
        out.push((format!("junk in {name} (line {})", i + 1), junk.join("\n")));
    }
    out
}

#[test]
fn our_schema_and_the_official_one_agree_on_every_file() {
    // Without Altinn's files (a clone on its own) there is no oracle.
    let Some(altinn) = official_altinn("schema_oracle") else {
        return;
    };
    let official = |name: &str| official(&altinn, name);
    let ours = Validator::new(Options::default()).expect("embedded schema");
    let utf8 = Validator::with_schema(
        &official("correspondence.2022.11.utf8.xsd"),
        Options::default(),
    )
    .expect("official UTF-8 schema compiles");
    let utf16_bytes =
        official("schemas.altinn.no.services.intermediary.correspondence.2022.11.xsd");
    assert_eq!(
        &utf16_bytes[..2],
        b"\xff\xfe",
        "the official file is UTF-16LE with BOM"
    );
    let utf16 =
        Validator::with_schema(&utf16_bytes, Options::default()).expect("official UTF-16 schema");
    assert_ne!(
        EMBEDDED_XSD,
        &official("correspondence.2022.11.utf8.xsd")[..]
    );

    let mut corpus: Vec<(String, Vec<u8>)> = Vec::new();
    for dir in ["samples/valid", "samples/invalid"] {
        for path in files(&root().join(dir), &[".xml"]) {
            let bytes = std::fs::read(&path).expect("read sample");
            corpus.push((path.display().to_string(), bytes));
        }
    }
    let base = std::fs::read_to_string(root().join("samples/valid/letters-nynorsk-english.xml"))
        .expect("sample");
    let mutated = mutants(&base);
    assert!(mutated.len() > 40, "too few mutants: {}", mutated.len());
    corpus.extend(mutated.into_iter().map(|(n, t)| (n, t.into_bytes())));

    let (mut valid, mut invalid) = (0, 0);
    for (name, bytes) in &corpus {
        let a = schema_findings(&ours, name, bytes);
        let b = schema_findings(&utf8, name, bytes);
        let c = schema_findings(&utf16, name, bytes);
        assert_eq!(a, b, "{name}: ours vs official (UTF-8)");
        assert_eq!(a, c, "{name}: ours vs official (UTF-16)");
        if a.iter().any(|(_, _, code)| code.starts_with("XSD")) {
            invalid += 1
        } else {
            valid += 1
        }
    }
    // The corpus must exercise both verdicts, or agreeing proves little.
    assert!(
        valid >= 6 && invalid >= 30,
        "valid {valid}, invalid {invalid}"
    );
}
