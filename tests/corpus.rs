//! The sample corpus through the real binary: exact exit codes, codes and lines.
//!
//! Every file in `samples/valid` must pass; every file in `samples/invalid`
//! must fail with exactly the errors its `NAME.expect` lists (`LINE CODE`
//! per line, in the order the tool prints them).

mod common;
use common::*;

#[test]
fn valid_samples_pass() {
    let valid = files(&root().join("samples/valid"), &[".xml", ".zip"]);
    assert!(valid.len() >= 6, "the valid corpus is too small: {valid:?}");
    for path in valid {
        let (code, json, _) = validate_json(&path, &[]);
        assert_eq!(
            json[0]["errors"],
            serde_json::json!([]),
            "{}",
            path.display()
        );
        assert_eq!(json[0]["valid"], true, "{}", path.display());
        assert!(
            json[0]["letters"].as_u64().unwrap_or(0) >= 1,
            "{}",
            path.display()
        );
        assert_eq!(code, 0, "{}", path.display());
    }
}

#[test]
fn invalid_samples_fail_with_their_expected_errors() {
    let dir = root().join("samples/invalid");
    let invalid = files(&dir, &[".xml", ".zip"]);
    assert!(
        invalid.len() >= 15,
        "the invalid corpus is too small: {invalid:?}"
    );
    for path in invalid {
        let expect_path = path.with_extension("expect");
        let expect = std::fs::read_to_string(&expect_path)
            .unwrap_or_else(|e| panic!("{} has no .expect file: {e}", path.display()));
        let expected: Vec<(u64, String)> = expect
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (line, code) = l.split_once(' ').expect("LINE CODE");
                (line.parse().expect("line number"), code.trim().to_string())
            })
            .collect();
        assert!(
            !expected.is_empty(),
            "{} expects nothing",
            expect_path.display()
        );
        let (code, json, _) = validate_json(&path, &[]);
        assert_eq!(errors(&json, None), expected, "{}", path.display());
        assert_eq!(json[0]["valid"], false, "{}", path.display());
        assert_eq!(code, 1, "{}", path.display());
        for e in json[0]["errors"].as_array().unwrap() {
            let message = e["message"].as_str().unwrap_or("");
            assert!(
                message.len() > 20,
                "{}: message too thin: {e}",
                path.display()
            );
            assert!(
                !message.contains("{http"),
                "{}: namespace noise: {message}",
                path.display()
            );
        }
    }
}

#[test]
fn text_output_is_compiler_style_and_exit_codes_combine() {
    let good = root().join("samples/valid/letters-bokmal.xml");
    let bad = root().join("samples/invalid/many-errors.xml");
    let out = std::process::Command::new(bin())
        .arg("validate")
        .arg(&good)
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].ends_with("letters-bokmal.xml: valid (4 letters)"),
        "{text}"
    );
    let bad_name = bad.display().to_string();
    let error_lines: Vec<&&str> = lines.iter().filter(|l| l.contains(": error[")).collect();
    assert!(error_lines.len() >= 3, "{text}");
    for l in &error_lines {
        // PATH:LINE:COL: error[CODE]: message
        let rest = l
            .strip_prefix(&format!("{bad_name}:"))
            .expect("path prefix");
        let mut parts = rest.splitn(3, ':');
        let line: u32 = parts.next().unwrap().parse().expect("line");
        let col: u32 = parts.next().unwrap().parse().expect("column");
        assert!(line > 0 && col > 0, "{l}");
        assert!(parts.next().unwrap().starts_with(" error["), "{l}");
    }
    assert!(
        lines.last().unwrap().contains("many-errors.xml: INVALID"),
        "{text}"
    );
}

#[test]
fn usage_and_io_errors_exit_2() {
    let missing = std::process::Command::new(bin())
        .args(["validate", "/nonexistent/batch.xml"])
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stdout).contains("cannot read the file"));
    let usage = std::process::Command::new(bin())
        .arg("validate")
        .output()
        .expect("run");
    assert_eq!(usage.status.code(), Some(2));
    let bad_schema = std::process::Command::new(bin())
        .args(["validate", "--schema", "/nonexistent.xsd"])
        .arg(root().join("samples/valid/letters-bokmal.xml"))
        .output()
        .expect("run");
    assert_eq!(bad_schema.status.code(), Some(2));
}

#[test]
fn runs_from_any_directory_with_the_embedded_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(bin())
        .current_dir(dir.path())
        .arg("validate")
        .arg(root().join("samples/valid/letters-bokmal.xml"))
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
