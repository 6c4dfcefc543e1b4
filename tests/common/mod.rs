//! Shared helpers for the integration tests: run the real binary, read its JSON;
//! `sftp` starts a throwaway sshd (scripts/sftp-server).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod sftp;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dpv-batch")
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared reference folder (official Altinn schemas), beside the repo.
pub fn reference() -> PathBuf {
    root().join("../shared/reference")
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
