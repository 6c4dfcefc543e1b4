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
