//! The pipeline over Altinn 3, end to end: the real binary, a real SQLite
//! journal, real folders, and the real `dpv-batch sim-altinn3` over real
//! HTTP as Altinn. Assertions are exact: which receipts exist, what each
//! says, and how often each SendersReference was created in "Altinn"
//! (counted from the simulator's `correspondences/*.json`).

mod common;
use common::altinn3::SimA3;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A workspace: inbox, outbox, failed, archive, state, the simulator's
/// folder, and a config pointing at the simulator.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("inbox")).expect("inbox");
        Workspace { dir }
    }

    /// Write the config for `sim`, with `extra` keys in [transport.altinn3].
    fn configure(&self, sim: &SimA3, extra: &str) {
        let config = format!(
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
kind = "altinn3"
{}
[run]
poll_ms = 50
"#,
            sim.section(self.dir.path(), extra)
        );
        fs::write(self.config(), config).expect("config");
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn config(&self) -> PathBuf {
        self.path("dpv.toml")
    }

    fn drop_file(&self, name: &str, bytes: &[u8]) {
        let tmp = self.path("inbox").join(format!(".{name}.tmp"));
        fs::write(&tmp, bytes).expect("write");
        fs::rename(&tmp, self.path("inbox").join(name)).expect("rename");
    }

    fn run_once(&self, timeout: &str) -> Output {
        Command::new(bin())
            .args(["run", "--once", "--timeout", timeout, "--config"])
            .arg(self.config())
            .output()
            .expect("run --once")
    }

    fn run_once_ok(&self, timeout: &str) {
        let out = self.run_once(timeout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn names(&self, sub: &str) -> BTreeSet<String> {
        match fs::read_dir(self.path(sub)) {
            Ok(d) => d
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    fn receipt(&self, input: &str) -> String {
        fs::read_to_string(self.path("outbox").join(format!("{input}.receipt.xml")))
            .unwrap_or_else(|e| panic!("no receipt for {input}: {e}"))
    }

    fn status(&self) -> String {
        let out = Command::new(bin())
            .args(["status", "--config"])
            .arg(self.config())
            .output()
            .expect("status");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Every receipt and event file validates against our receipt schema.
fn assert_outbox_schema_valid(ws: &Workspace) {
    let xsd = fs::read(root().join("schemas/dpv-batch-receipt.xsd")).expect("xsd");
    let schema = dpv_batch::xml::Schema::compile(&xsd).expect("compile receipt xsd");
    struct Nothing;
    impl dpv_batch::xml::Events for Nothing {
        fn start(&mut self, _: &[u8], _: bool, _: dpv_batch::xml::Pos) {}
        fn text(&mut self, _: &[u8]) {}
        fn end(&mut self, _: &[u8], _: dpv_batch::xml::Pos) {}
    }
    for name in ws.names("outbox") {
        let bytes = fs::read(ws.path("outbox").join(&name)).expect("read");
        let problems = dpv_batch::xml::parse(Some(&schema), &mut &bytes[..], &mut Nothing);
        assert!(
            problems.is_empty(),
            "{name} does not match dpv-batch-receipt.xsd: {problems:?}"
        );
    }
}

/// (SendersReference, Status) of every letter in a receipt, in order.
fn letter_statuses(receipt: &str) -> Vec<(String, String)> {
    receipt
        .split("<Letter>")
        .skip(1)
        .map(|l| {
            (
                tag(l, "SendersReference")[0].to_string(),
                tag(l, "Status")[0].to_string(),
            )
        })
        .collect()
}

/// Every valid sample goes through Altinn 3; every letter is created
/// exactly once, with the id the receipt reports; the invalid samples are
/// refused before anything is sent.
#[test]
fn every_sample_end_to_end_over_altinn3() {
    let ws = Workspace::new();
    let sim = SimA3::start(&ws.path("altinn3"), &[]);
    ws.configure(&sim, "");
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    for (dir, outcome) in [("valid", "Accepted"), ("invalid", "Rejected")] {
        for path in files(&root().join("samples").join(dir), &[".xml", ".zip"]) {
            let name = format!("{dir}-{}", path.file_name().unwrap().to_string_lossy());
            ws.drop_file(&name, &fs::read(&path).expect("read"));
            expected.insert(name, outcome);
        }
    }
    ws.run_once_ok("120s");
    let got: BTreeMap<String, String> = expected
        .keys()
        .map(|name| (name.clone(), outcome(&ws.receipt(name)).to_string()))
        .collect();
    let want: BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(ws.names("outbox").len(), expected.len());

    // Each letter of each valid file: created once, under the id its
    // receipt names, with its own idempotent key.
    let created = sim.created();
    let by_id: BTreeMap<String, &serde_json::Value> = created
        .iter()
        .map(|c| (c["correspondenceId"].as_str().unwrap().to_string(), c))
        .collect();
    let mut letters = 0;
    for (name, outcome) in &expected {
        if *outcome != "Accepted" {
            continue;
        }
        let r = ws.receipt(name);
        for l in r.split("<Letter>").skip(1) {
            letters += 1;
            assert_eq!(tag(l, "Status"), vec!["Accepted"], "{name}: {l}");
            let id = tag(l, "CorrespondenceId")[0];
            let c = by_id
                .get(id)
                .unwrap_or_else(|| panic!("{name}: {id} was not created"));
            assert_eq!(
                c["correspondence"]["sendersReference"].as_str(),
                Some(tag(l, "SendersReference")[0]),
                "{name}"
            );
            assert!(c["idempotentKey"].as_str().is_some(), "{c}");
        }
    }
    assert_eq!(
        created.len(),
        letters,
        "created exactly the accepted letters"
    );
    let refs = sim.refs();
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
    let keys: BTreeSet<&str> = created
        .iter()
        .map(|c| c["idempotentKey"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), created.len(), "one key per letter");
    assert!(ws.names("inbox").is_empty());
    assert_outbox_schema_valid(&ws);
}
