//! Shared helpers for the integration tests: run the real binary, read its JSON;
//! `sftp` starts a throwaway sshd (scripts/sftp-server).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod altinn3;
pub mod ops;
pub mod sftp;
pub mod zips;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dpv-batch")
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared reference folder (official Altinn schemas), beside the repo;
/// `DPV_REFERENCE_DIR` names another.
pub fn reference() -> PathBuf {
    std::env::var_os("DPV_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/reference"))
}

/// The folder of Altinn's official files (`reference()/altinn`), or `None`
/// when this clone has none beside it: then the test that needs it says
/// "SKIPPED" on stderr and passes, unless `DPV_REQUIRE_ORACLE=1` (set by
/// .ci/run), which makes it fail with the reason.
pub fn official_altinn(test: &str) -> Option<PathBuf> {
    use std::io::Write;
    let dir = reference().join("altinn");
    if dir.is_dir() {
        return Some(dir);
    }
    let why = format!(
        "{} is not there (Altinn's official schemas, from the shared reference folder beside this clone)",
        dir.display()
    );
    assert!(
        std::env::var("DPV_REQUIRE_ORACLE").as_deref() != Ok("1"),
        "{test}: {why}; DPV_REQUIRE_ORACLE=1 makes this test mandatory"
    );
    // Straight to stderr: the test harness would swallow eprintln!.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why}; set DPV_REQUIRE_ORACLE=1 to make this an error"
    );
    None
}

/// Files in `dir` (not recursive) whose name ends with one of `exts`, sorted.
pub fn files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            exts.iter().any(|ext| name.ends_with(ext))
        })
        .collect();
    out.sort();
    out
}

/// `dpv-batch validate --format json [extra...] path`: exit code and the parsed report.
pub fn validate_json(path: &Path, extra: &[&str]) -> (i32, serde_json::Value, Output) {
    let out = Command::new(bin())
        .arg("validate")
        .arg("--format")
        .arg("json")
        .args(extra)
        .arg(path)
        .output()
        .expect("run dpv-batch");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "output of {} is not JSON ({e}):\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), json, out)
}

/// `(line, code)` of every error of the first file in a JSON report, optionally one layer.
pub fn errors(report: &serde_json::Value, layer: Option<&str>) -> Vec<(u64, String)> {
    report[0]["errors"]
        .as_array()
        .expect("errors array")
        .iter()
        .filter(|e| layer.is_none_or(|l| e["layer"] == l))
        .map(|e| {
            (
                e["line"].as_u64().expect("line"),
                e["code"].as_str().expect("code").to_string(),
            )
        })
        .collect()
}

/// The texts of every `<name>...</name>` in `xml` (no nesting, no attributes).
pub fn tag<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    xml.split(&open)
        .skip(1)
        .filter_map(|s| s.split(&close).next())
        .collect()
}

/// The Outcome of a dpv-batch receipt.
/// Drop a file into `inbox` the way a careful writer does: a hidden
/// temporary name first, then a rename, so it is never seen half written.
pub fn drop_careful(inbox: &Path, name: &str, bytes: &[u8]) {
    let tmp = inbox.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, inbox.join(name)).expect("rename");
}

pub fn outcome(xml: &str) -> &str {
    tag(xml, "Outcome").first().copied().unwrap_or("")
}

/// A file of the sample corpus, e.g. `valid/latin1.xml`.
pub fn sample(rel: &str) -> Vec<u8> {
    std::fs::read(root().join("samples").join(rel)).expect("sample")
}

/// Every batch the simulated Altinn at `altinn` processed (its processed/):
/// SendersReference -> how often, and the SequenceNos per SystemUserCode.
#[allow(clippy::type_complexity)]
pub fn processed(
    altinn: &Path,
) -> (
    std::collections::BTreeMap<String, usize>,
    std::collections::BTreeMap<String, Vec<i64>>,
) {
    let dir = altinn.join("processed");
    let mut refs = std::collections::BTreeMap::new();
    let mut seqs: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    let listed = if dir.exists() {
        files(&dir, &[""])
    } else {
        Vec::new()
    };
    for path in listed {
        let text = std::fs::read_to_string(&path).expect("read processed");
        // The letter's own reference: the first in each Correspondence
        // (attachments may have SendersReferences of their own).
        for letter in text.split("<Correspondence>").skip(1) {
            if let Some(r) = tag(letter, "SendersReference").first() {
                *refs.entry(r.to_string()).or_insert(0) += 1;
            }
        }
        let code = tag(&text, "SystemUserCode")
            .first()
            .map(|c| c.to_string())
            .unwrap_or_default();
        for s in tag(&text, "SequenceNo") {
            seqs.entry(code.clone())
                .or_default()
                .push(s.parse().expect("SequenceNo"));
        }
    }
    for v in seqs.values_mut() {
        v.sort();
    }
    (refs, seqs)
}
