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
        drop_careful(&self.path("inbox"), name, bytes);
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

/// `gen --letters N --shipment S` into the inbox as `name`.
fn gen_batch(ws: &Workspace, name: &str, letters: u64, shipment: &str) {
    let out = Command::new(bin())
        .args([
            "gen",
            "--letters",
            &letters.to_string(),
            "--shipment",
            shipment,
        ])
        .output()
        .expect("gen");
    assert!(out.status.success());
    ws.drop_file(name, &out.stdout);
}

/// Wait (up to `limit`) until `probe` holds; false if it never did.
fn wait_for(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if probe() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    probe()
}

/// Altinn refuses one letter (an unknown recipient, 404/1029): that letter
/// is rejected with Altinn's reasons, the other three are created, and the
/// file is PartiallyAccepted.
#[test]
fn a_refused_letter_does_not_stop_the_others() {
    let ws = Workspace::new();
    let sim = SimA3::start(&ws.path("altinn3"), &["--unknown-recipient", "874391506"]);
    ws.configure(&sim, "");
    ws.drop_file("bokmal.xml", &sample("valid/letters-bokmal.xml"));
    ws.run_once_ok("60s");
    let r = ws.receipt("bokmal.xml");
    assert_eq!(outcome(&r), "PartiallyAccepted", "{r}");
    assert_eq!(
        letter_statuses(&r),
        vec![
            ("BYGG-2026-004711-V1".into(), "Accepted".into()),
            ("EIENDOMSSKATT-2026-120045".into(), "Accepted".into()),
            ("POST-2026-331907".into(), "Accepted".into()),
            ("OPPVEKST-2026-0093".into(), "Rejected".into()),
        ]
    );
    let refused = r.split("<Letter>").nth(4).expect("fourth letter");
    assert!(
        refused.contains("<Refusal http=\"404\" errorCode=\"1029\""),
        "{refused}"
    );
    assert!(tag(refused, "CorrespondenceId").is_empty());
    let refs = sim.refs();
    assert_eq!(refs.len(), 3, "{refs:?}");
    assert!(!refs.contains_key("OPPVEKST-2026-0093"));
    assert_eq!(ws.names("archive").len(), 1);
    assert_outbox_schema_valid(&ws);
}

/// 429 storms, 5xx and answers lost after Altinn committed (10%): every
/// letter is created exactly once, every file gets one Accepted receipt,
/// and `status` said we were throttled while it happened.
#[test]
fn faults_429_5xx_and_lost_answers_create_each_letter_once() {
    let ws = Workspace::new();
    let sim = SimA3::start(
        &ws.path("altinn3"),
        &[
            "--rate-429",
            "0.2",
            "--rate-5xx",
            "0.1",
            "--drop-after-commit",
            "0.1",
        ],
    );
    ws.configure(&sim, "");
    for i in 0..4 {
        gen_batch(&ws, &format!("b{i}.xml"), 25, &format!("F{i}"));
    }
    let mut daemon = Command::new(bin())
        .args(["run", "--config"])
        .arg(ws.config())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("daemon");
    let said = wait_for(Duration::from_secs(60), || {
        ws.status().contains("throttling us")
    });
    // Receipts under their final names (a hidden .tmp is one being written).
    let done = wait_for(Duration::from_secs(240), || {
        ws.names("outbox")
            .iter()
            .filter(|n| !n.starts_with('.') && n.ends_with(".receipt.xml"))
            .count()
            == 4
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(said, "status never said we were throttled");
    assert!(done, "{:?}\n{}", ws.names("outbox"), ws.status());
    for i in 0..4 {
        let r = ws.receipt(&format!("b{i}.xml"));
        assert_eq!(outcome(&r), "Accepted", "{r}");
    }
    let refs = sim.refs();
    assert_eq!(refs.len(), 100, "every letter created");
    let twice: Vec<_> = refs.iter().filter(|(_, &n)| n != 1).collect();
    assert!(twice.is_empty(), "created more than once: {twice:?}");
    assert_outbox_schema_valid(&ws);
}

/// A key Altinn does not accept stops the transport: nothing is sent,
/// `run --once` ends with the reason, `status` says it; with the right key
/// everything goes, once. A token Altinn stops accepting (its secret
/// rotated while we hold one) is refreshed once and the letters go on.
#[test]
fn wrong_key_stops_and_a_rejected_token_is_refreshed() {
    let ws = Workspace::new();
    let mut sim = SimA3::start(&ws.path("altinn3"), &[]);
    ws.configure(&sim, "");
    // Another RSA key than the one the simulator knows.
    let right = fs::read(ws.path("client.pem")).expect("key");
    let wrong = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl");
    assert!(wrong.status.success());
    fs::write(ws.path("client.pem"), &wrong.stdout).expect("wrong key");
    ws.drop_file("a.xml", &sample("valid/letters-nynorsk-english.xml"));
    let out = ws.run_once("30s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("key"), "the key is named: {stderr}");
    assert!(sim.created().is_empty());
    assert!(ws.names("outbox").is_empty());
    let status = ws.status();
    assert!(status.contains("transport: "), "{status}");
    // check-config --connect says which step failed.
    let out = Command::new(bin())
        .args(["check-config", "--connect", "--config"])
        .arg(ws.config())
        .output()
        .expect("check-config");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the key step failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    fs::write(ws.path("client.pem"), &right).expect("right key");
    let out = Command::new(bin())
        .args(["check-config", "--connect", "--config"])
        .arg(ws.config())
        .output()
        .expect("check-config");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ws.run_once_ok("60s");
    assert_eq!(outcome(&ws.receipt("a.xml")), "Accepted");
    assert!(!ws.status().contains("transport: "), "{}", ws.status());

    // The daemon holds a token; the simulator forgets its secret and comes
    // back: the token is refused (401), a fresh one is fetched, and the next
    // file goes.
    let mut daemon = Command::new(bin())
        .args(["run", "--config"])
        .arg(ws.config())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("daemon");
    gen_batch(&ws, "b.xml", 3, "TOKEN-1");
    assert!(wait_for(Duration::from_secs(60), || ws
        .names("outbox")
        .contains("b.xml.receipt.xml")));
    sim.kill();
    fs::remove_file(ws.path("altinn3/state/token-secret")).expect("token secret");
    sim.restart();
    gen_batch(&ws, "c.xml", 3, "TOKEN-2");
    let done = wait_for(Duration::from_secs(60), || {
        ws.names("outbox").contains("c.xml.receipt.xml")
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(done, "{}", ws.status());
    assert_eq!(outcome(&ws.receipt("c.xml")), "Accepted");
    let refs = sim.refs();
    assert_eq!(refs.len(), 4 + 3 + 3);
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
}

/// What happens after the receipt reaches the fagsystem as new files:
/// published, failed at publication (with Altinn's reason), read. With
/// receipt_after = "published" the receipt waits and says it all.
#[test]
fn later_statuses_become_event_files_and_receipts_can_wait_for_publication() {
    let ws = Workspace::new();
    let sim = SimA3::start(
        &ws.path("altinn3"),
        &[
            "--fail-at-publish",
            "874391506",
            "--publish-delay-ms",
            "1500",
        ],
    );
    ws.configure(&sim, "");
    ws.drop_file("bokmal.xml", &published_now(""));
    ws.run_once_ok("60s");
    let receipt = ws.receipt("bokmal.xml");
    assert_eq!(outcome(&receipt), "Accepted", "{receipt}");
    assert_eq!(tag(&receipt, "PublishedAt").len(), 0, "not yet published");
    // Keep running until the news is out.
    let news = |kind: &str| -> Vec<String> {
        ws.names("outbox")
            .into_iter()
            .filter(|n| n.starts_with(&format!("bokmal.xml.{kind}-")))
            .flat_map(|n| {
                let x = fs::read_to_string(ws.path("outbox").join(&n)).unwrap_or_default();
                tag(&x, "SendersReference")
                    .into_iter()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let mut daemon = Command::new(bin())
        .args(["run", "--config"])
        .arg(ws.config())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("daemon");
    let published = wait_for(Duration::from_secs(60), || {
        news("published").len() == 3 && news("failed").len() == 1
    });
    // The recipient reads one letter.
    assert!(published, "{:?}", ws.names("outbox"));
    let first = tag(&receipt, "CorrespondenceId")[0].to_string();
    assert!(sim.mark_read(&first), "mark read");
    let read = wait_for(Duration::from_secs(60), || news("read").len() == 1);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(read, "{:?}", ws.names("outbox"));
    assert_eq!(news("failed"), vec!["OPPVEKST-2026-0093"]);
    let failed_file = ws
        .names("outbox")
        .into_iter()
        .find(|n| n.starts_with("bokmal.xml.failed-"))
        .unwrap();
    let failed = fs::read_to_string(ws.path("outbox").join(failed_file)).unwrap();
    assert_eq!(tag(&failed, "Reason").len(), 1, "{failed}");
    assert_eq!(news("read"), vec!["BYGG-2026-004711-V1"]);
    assert_eq!(
        ws.receipt("bokmal.xml"),
        receipt,
        "the receipt is never rewritten"
    );
    assert_outbox_schema_valid(&ws);

    // Hold the receipt until publication: the same letters, another file.
    let ws2 = Workspace::new();
    ws2.configure(&sim, "receipt_after = \"published\"");
    ws2.drop_file("held.xml", &published_now("HOLD-"));
    ws2.run_once_ok("60s");
    let held = ws2.receipt("held.xml");
    assert_eq!(outcome(&held), "PartiallyAccepted", "{held}");
    assert_eq!(tag(&held, "PublishedAt").len(), 3, "{held}");
    let failed = held.split("<Letter>").nth(4).unwrap();
    assert_eq!(tag(failed, "Status"), vec!["Rejected"]);
    assert_eq!(tag(failed, "AltinnStatus"), vec!["Failed"]);
    assert!(
        tag(failed, "Text")[0].contains("could not publish"),
        "{failed}"
    );
    assert_outbox_schema_valid(&ws2);
}

/// letters-bokmal.xml to be published at once (its VisibleDateTime is a
/// year back), its SendersReferences prefixed with `prefix`.
fn published_now(prefix: &str) -> Vec<u8> {
    String::from_utf8(sample("valid/letters-bokmal.xml"))
        .unwrap()
        .replace("<VisibleDateTime>2026-12-01", "<VisibleDateTime>2025-12-01")
        .replace("<SendersReference>", &format!("<SendersReference>{prefix}"))
        .into_bytes()
}

/// A letter Altinn keeps unpublished `overdue_after` past its requested
/// publish time shows as overdue in `status`.
#[test]
fn unpublished_letters_show_as_overdue_in_status() {
    let ws = Workspace::new();
    let sim = SimA3::start(&ws.path("altinn3"), &["--publish-delay-ms", "3600000"]);
    ws.configure(&sim, "overdue_after = \"1s\"");
    ws.drop_file("late.xml", &published_now("LATE-"));
    ws.run_once_ok("60s");
    assert_eq!(outcome(&ws.receipt("late.xml")), "Accepted");
    // Still unpublished a second after: overdue, each letter named.
    let overdue = wait_for(Duration::from_secs(30), || {
        ws.status().contains("LATE-BYGG-2026-004711-V1 in late.xml")
    });
    let status = ws.status();
    assert!(overdue, "{status}");
    assert!(status.contains("overdue:"), "{status}");
    assert_eq!(status.matches(" in late.xml: ").count(), 4, "{status}");
}

/// Letters in flight when Altinn could not be reached are sent again, with
/// the same keys, once it is back; one that Altinn then refuses is refused
/// for that letter only.
#[test]
fn a_letter_refused_after_a_restart() {
    let ws = Workspace::new();
    let mut sim = SimA3::start(&ws.path("altinn3"), &[]);
    ws.configure(&sim, "");
    sim.kill();
    ws.drop_file("late.xml", &published_now("R-"));
    let out = ws.run_once("5s");
    assert_eq!(out.status.code(), Some(3), "pending while Altinn is away");
    assert!(ws.names("outbox").is_empty());
    assert!(ws.status().contains("waiting to send"), "{}", ws.status());
    sim.restart_with(&["--unknown-recipient", "874391506"]);
    ws.run_once_ok("60s");
    let r = ws.receipt("late.xml");
    assert_eq!(outcome(&r), "PartiallyAccepted", "{r}");
    let refused = r.split("<Letter>").nth(4).expect("fourth letter");
    assert!(refused.contains("errorCode=\"1029\""), "{refused}");
    let refs = sim.refs();
    assert_eq!(refs.len(), 3, "{refs:?}");
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
}

/// Altinn is away while 100 letters go out, so all 100 are left in flight;
/// it comes back answering 5xx to 30% of calls. Each tick looks the 100 up
/// by key, and a look-up is one call: some always fail. Those wait for the
/// next tick, but the letters Altinn said it does not have are sent now, so
/// the file gets its receipt (a failed look-up once held back all of them,
/// for ever, with the transport backing off further each time).
#[test]
fn letters_left_in_flight_are_sent_though_some_look_ups_fail() {
    let ws = Workspace::new();
    let mut sim = SimA3::start(&ws.path("altinn3"), &[]);
    ws.configure(&sim, "");
    sim.kill();
    gen_batch(&ws, "many.xml", 100, "LOOK");
    let out = ws.run_once("3s");
    assert_eq!(out.status.code(), Some(3), "pending while Altinn is away");
    sim.restart_with(&["--rate-5xx", "0.3"]);
    ws.run_once_ok("90s");
    assert_eq!(outcome(&ws.receipt("many.xml")), "Accepted");
    let refs = sim.refs();
    assert_eq!(refs.len(), 100, "{refs:?}");
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
}

/// Altinn answers "created", then loses the letters (its state wiped):
/// polling finds them gone (404) and stops; nothing is sent again, and the
/// receipt already written stands.
#[test]
fn an_altinn_that_forgets_its_letters_does_not_make_us_send_them_again() {
    let ws = Workspace::new();
    let mut sim = SimA3::start(&ws.path("altinn3"), &[]);
    ws.configure(&sim, "");
    ws.drop_file("a.xml", &published_now("GONE-"));
    ws.run_once_ok("60s");
    let receipt = ws.receipt("a.xml");
    assert_eq!(outcome(&receipt), "Accepted");
    assert_eq!(sim.created().len(), 4);
    sim.kill();
    fs::remove_dir_all(ws.path("altinn3")).expect("wipe");
    sim.restart();
    let mut daemon = Command::new(bin())
        .args(["run", "--config"])
        .arg(ws.config())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("daemon");
    let gone = wait_for(Duration::from_secs(60), || {
        fs::read_to_string(ws.path("state/metrics.prom"))
            .unwrap_or_default()
            .contains("dpv_batch_letters{status=\"NotFound\"} 4")
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        gone,
        "{}",
        fs::read_to_string(ws.path("state/metrics.prom")).unwrap_or_default()
    );
    assert!(sim.created().is_empty(), "nothing sent again");
    assert_eq!(ws.receipt("a.xml"), receipt);
    assert!(ws.names("failed").is_empty());
}

/// The daemon's peak resident memory (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A 200 MB attachment goes through in flat memory: decoded to disk while
/// the batch is split, streamed to the attachment API. The bound is a
/// behavioural one with a generous margin (the batch is 270 MB of base64).
#[test]
fn a_200_mb_attachment_in_flat_memory() {
    let ws = Workspace::new();
    let sim = SimA3::start(&ws.path("altinn3"), &[]);
    ws.configure(&sim, "");
    // Attachments up to 300 MB are accepted here (100 MB by default).
    let mut config = fs::read_to_string(ws.config()).expect("config");
    config.push_str("[validate]\nmax_attachment_bytes = 300000000\n");
    fs::write(ws.config(), config).expect("config");
    let tmp = ws.path("inbox/.big.xml.tmp");
    let out = Command::new(bin())
        .args([
            "gen",
            "--letters",
            "1",
            "--attachment-bytes",
            "200000000",
            "--shipment",
            "BIG",
            "-o",
        ])
        .arg(&tmp)
        .output()
        .expect("gen");
    assert!(out.status.success());
    fs::rename(&tmp, ws.path("inbox/big.xml")).expect("rename");
    let mut daemon = Command::new(bin())
        .args(["run", "--config"])
        .arg(ws.config())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("daemon");
    let pid = daemon.id();
    let mut peak = 0;
    let done = wait_for(Duration::from_secs(600), || {
        peak = peak.max(peak_rss(pid));
        ws.names("outbox").contains("big.xml.receipt.xml")
    });
    peak = peak.max(peak_rss(pid));
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(done, "{}", ws.status());
    assert_eq!(outcome(&ws.receipt("big.xml")), "Accepted");
    let created = sim.created();
    assert_eq!(created.len(), 1);
    eprintln!("peak RSS of the daemon: {} MiB", peak >> 20);
    assert!(peak > 0, "VmHWM read");
    assert!(
        peak < 128 << 20,
        "the daemon's memory grew with the attachment: peak {} MiB",
        peak >> 20
    );
    // Altinn got all of it.
    let sizes: Vec<u64> = fs::read_dir(ws.path("altinn3/attachments"))
        .expect("attachments")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .collect();
    assert_eq!(sizes, vec![200_000_000]);
}

/// `demo --transport altinn3`: one command, the simulator as its child.
#[test]
fn demo_over_altinn3_in_one_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join("demo");
    let out = Command::new(bin())
        .args(["demo", "--transport", "altinn3", "--dir"])
        .arg(&demo)
        .output()
        .expect("demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("nightly-bokmal.xml         PartiallyAccepted"),
        "{stdout}"
    );
    assert_eq!(fs::read_dir(demo.join("outbox")).unwrap().count(), 8);
    // 4 + 4 + 2 + 2 + 1 letters sent, one refused by Altinn.
    assert_eq!(
        fs::read_dir(demo.join("altinn3/correspondences"))
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json"))
            .count(),
        12
    );
}

/// A Maskinporten client without the API's write scope (the wrong client
/// for sending): Altinn answers 403 and the transport stops; nothing is
/// created, `run --once` ends with the reason and `status` says it. (Its
/// token still reads, so `check-config --connect`, which makes one harmless
/// read, passes: a known limit of a read-only probe.)
#[test]
fn a_client_without_the_scopes_is_stopped() {
    let ws = Workspace::new();
    let sim = SimA3::start(&ws.path("altinn3"), &[]);
    ws.configure(&sim, "scopes = [\"altinn:correspondence.read\"]");
    ws.drop_file("a.xml", &sample("valid/letters-nynorsk-english.xml"));
    let out = ws.run_once("30s");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sim.created().is_empty());
    assert!(ws.names("outbox").is_empty());
    assert!(ws.status().contains("transport: "), "{}", ws.status());
}
