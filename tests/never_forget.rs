//! Never forget silently: a lost journal stops the start instead of
//! starting over; remote names are unique per installation for ever (two
//! installations on one Altinn account, a reset state, a journal restored
//! from a backup); no outbox file is ever rewritten; `check-config` sees
//! folders as the filesystem does. The real binary, real SQLite, real
//! folders, the simulator as Altinn.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A workspace; `altinn` may be shared with another workspace.
struct Workspace {
    dir: tempfile::TempDir,
    altinn: PathBuf,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        let altinn = dir.path().join("altinn");
        Workspace::sharing(dir, altinn)
    }

    /// A workspace whose transport is the Altinn folder `altinn`.
    fn sharing(dir: tempfile::TempDir, altinn: PathBuf) -> Workspace {
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
kind = "local"
[transport.local]
root = "{}"
[run]
poll_ms = 20
"#,
            altinn.display()
        );
        fs::write(dir.path().join("dpv.toml"), config).expect("config");
        for sub in [dir.path().join("inbox"), altinn.clone()] {
            fs::create_dir_all(sub).expect("mkdir");
        }
        Workspace { dir, altinn }
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
        self.run_once_cmd(timeout).output().expect("run --once")
    }

    fn run_once_cmd(&self, timeout: &str) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(["run", "--once", "--timeout", timeout, "--config"])
            .arg(self.config());
        cmd
    }

    fn run_once_ok(&self, timeout: &str) {
        let out = self.run_once(timeout);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }

    fn names(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = match fs::read_dir(self.path(sub)) {
            Ok(d) => d
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    fn read(&self, sub: &str) -> String {
        fs::read_to_string(self.path(sub)).unwrap_or_else(|e| panic!("{sub}: {e}"))
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

struct Sim(Child);

impl Sim {
    fn start(root: &Path) -> Sim {
        let child = Command::new(bin())
            .args(["sim", "--poll-ms", "10", "--no-confirmations", "--root"])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sim");
        Sim(child)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A valid batch of `letters` letters; `shipment` also prefixes every
/// SendersReference, so batches of equal-length shipments have equal sizes.
fn batch(shipment: &str, letters: u64) -> Vec<u8> {
    let spec = dpv_batch::gen::Spec {
        letters,
        shipment_reference: shipment.into(),
        reference_prefix: format!("{shipment}-"),
        ..Default::default()
    };
    let mut out = Vec::new();
    dpv_batch::gen::write_batch(&spec, &mut out).expect("gen");
    out
}

/// Every file under `dir`: relative path -> (size, hash of the content),
/// for "nothing moved".
fn tree(dir: &Path) -> BTreeMap<String, (usize, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (usize, u64)>) {
        use std::hash::{Hash, Hasher};
        for e in fs::read_dir(dir).expect("read_dir") {
            let path = e.expect("entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            if path.is_dir() {
                out.insert(format!("{rel}/"), (0, 0));
                walk(root, &path, out);
            } else {
                let bytes = fs::read(&path).expect("read");
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                out.insert(rel, (bytes.len(), h.finish()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Altinn says every letter in `receipt` (a dpv-batch receipt) was read.
fn confirm_reads(altinn: &Path, file_name: &str, receipt: &str, sequence_no: u64) {
    use dpv_batch::altinn::{write_confirmations, Confirmation, Confirmations};
    let refs = tag(receipt, "SendersReference");
    let reportees = tag(receipt, "Reportee");
    let c = Confirmations {
        sequence_no,
        previous_sequence_no: sequence_no - 1,
        system_user_code: "ABC-123".into(),
        shipment_date_time: "2026-01-05T10:00:00".into(),
        items: refs
            .iter()
            .zip(&reportees)
            .map(|(r, o)| Confirmation {
                service_code: "4255".into(),
                service_edition: Some("10".into()),
                reportee: o.to_string(),
                senders_reference: r.to_string(),
                read_date_time: Some("2026-01-05T09:30:00".into()),
                confirmed_date_time: None,
            })
            .collect(),
    };
    let xml = write_confirmations(&c).expect("confirmations");
    let dir = altinn.join("confirmations");
    fs::create_dir_all(&dir).expect("mkdir");
    let tmp = dir.join(format!(".{file_name}.part"));
    fs::write(&tmp, xml).expect("write");
    fs::rename(&tmp, dir.join(file_name)).expect("rename");
}

/// The refusal names what it found, why it stops, and the way back.
fn assert_refusal_explains(out: &Output, found: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for words in [
        "refusing to start",
        "is missing or empty",
        found,
        "nothing was touched",
        "put your latest backup of the journal back",
        ".backup",
        "move the whole state folder aside",
    ] {
        assert!(err.contains(words), "{words:?} not in: {err}");
    }
}

#[test]
fn a_lost_journal_with_staged_work_stops_the_start_until_it_is_restored() {
    let ws = Workspace::new();
    // No Altinn yet: the file is sent and waits in staging for its receipt.
    ws.drop_file("a.xml", &batch("A", 2));
    let out = ws.run_once("1s");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(ws.names("state/staging").len(), 1);
    let journal = ws.path("state/journal.sqlite");
    let backup = ws.path("backup.sqlite");
    fs::copy(&journal, &backup).expect("backup (dpv-batch is stopped)");

    // Deleted: refused, and nothing anywhere is changed (no new journal).
    fs::remove_file(&journal).expect("rm journal");
    let before = tree(ws.dir.path());
    let out = ws.run_once("5s");
    assert_refusal_explains(&out, "1 input file(s) taken in and not finished");
    assert!(stderr(&out).contains("installation id file"));
    assert_eq!(tree(ws.dir.path()), before, "nothing moved");

    // Truncated to 0 bytes: the same.
    fs::write(&journal, b"").expect("truncate");
    let before = tree(ws.dir.path());
    let out = ws.run_once("5s");
    assert_refusal_explains(&out, "staging");
    assert_eq!(tree(ws.dir.path()), before, "nothing moved");

    // Restored as the message says: the file completes, sent once.
    fs::copy(&backup, &journal).expect("restore");
    let _sim = Sim::start(&ws.altinn);
    ws.run_once_ok("60s");
    assert_eq!(outcome(&ws.read("outbox/a.xml.receipt.xml")), "Accepted");
    let (refs, _) = processed(&ws.altinn);
    assert_eq!(refs.len(), 2, "{refs:?}");
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
}

#[test]
fn a_journal_restored_from_an_older_backup_never_reuses_a_remote_name() {
    let ws = Workspace::new();
    let _sim = Sim::start(&ws.altinn);
    ws.drop_file("a.xml", &batch("A", 2));
    ws.run_once_ok("60s");
    let journal = ws.path("state/journal.sqlite");
    let backup = ws.path("backup.sqlite");
    fs::copy(&journal, &backup).expect("backup");
    // After the backup: b.xml is sent.
    ws.drop_file("b.xml", &batch("B", 2));
    ws.run_once_ok("60s");
    // Disaster; the backup comes back. It does not know b.xml, so the next
    // file gets b.xml's file id. c.xml is exactly as large as b.xml.
    fs::copy(&backup, &journal).expect("restore");
    ws.drop_file("c.xml", &batch("C", 2));
    assert_eq!(batch("C", 2).len(), batch("B", 2).len());
    ws.run_once_ok("60s");
    let c = ws.read("outbox/c.xml.receipt.xml");
    assert_eq!(outcome(&c), "Accepted", "{c}");
    let (refs, _) = processed(&ws.altinn);
    assert_eq!(refs.len(), 6, "{refs:?}");
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
    // Three uploads, three names.
    assert_eq!(ws.names("altinn/processed").len(), 3);
}

#[test]
fn a_restored_journal_sets_aside_staged_inputs_it_does_not_know() {
    let ws = Workspace::new();
    // No Altinn: inputs wait in staging.
    ws.drop_file("a.xml", &batch("A", 1));
    assert_eq!(ws.run_once("1s").status.code(), Some(3));
    let journal = ws.path("state/journal.sqlite");
    let backup = ws.path("backup.sqlite");
    fs::copy(&journal, &backup).expect("backup");
    let old_nightly = batch("B", 1);
    ws.drop_file("nightly.xml", &old_nightly);
    assert_eq!(ws.run_once("1s").status.code(), Some(3));
    assert_eq!(
        ws.names("state/staging"),
        vec!["00000001-a.xml", "00000002-nightly.xml"]
    );
    // Restored: the journal knows a.xml only. The next nightly.xml gets
    // the old one's id, and would take its place in staging.
    fs::copy(&backup, &journal).expect("restore");
    ws.drop_file("nightly.xml", &batch("N", 1));
    let _sim = Sim::start(&ws.altinn);
    let out = ws.run_once("60s");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a staged input the journal does not know"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read(ws.path("state/orphaned/00000002-nightly.xml")).expect("set aside"),
        old_nightly
    );
    assert_eq!(outcome(&ws.read("outbox/a.xml.receipt.xml")), "Accepted");
    let receipt = ws.read("outbox/nightly.xml.receipt.xml");
    assert_eq!(tag(&receipt, "SendersReference"), vec!["N-00000000"]);
    assert!(ws.names("state/staging").is_empty());
}

#[test]
fn two_installations_on_one_altinn_account_each_get_every_receipt() {
    let shared = tempfile::tempdir().expect("tempdir");
    let altinn = shared.path().join("altinn");
    let a = Workspace::sharing(tempfile::tempdir().expect("tempdir"), altinn.clone());
    let b = Workspace::sharing(tempfile::tempdir().expect("tempdir"), altinn.clone());
    let _sim = Sim::start(&altinn);
    for i in 0..100 {
        a.drop_file(&format!("{i:03}.xml"), &batch(&format!("A{i:03}"), 1));
        b.drop_file(&format!("{i:03}.xml"), &batch(&format!("B{i:03}"), 1));
    }
    // Both at once, as two servers would.
    let children: Vec<Child> = [&a, &b]
        .iter()
        .map(|ws| {
            ws.run_once_cmd("180s")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    for ws in [&a, &b] {
        let receipts: Vec<String> = ws
            .names("outbox")
            .into_iter()
            .filter(|n| n.ends_with(".receipt.xml"))
            .collect();
        assert_eq!(receipts.len(), 100, "{receipts:?}");
        for r in &receipts {
            let text = ws.read(&format!("outbox/{r}"));
            assert_eq!(outcome(&text), "Accepted", "{r}: {text}");
        }
    }
    let (refs, _) = processed(&altinn);
    assert_eq!(refs.len(), 200);
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
    // Nothing left behind for either of them, nothing taken by the other.
    assert!(fs::read_dir(altinn.join("receipts"))
        .expect("receipts")
        .next()
        .is_none());
    for ws in [&a, &b] {
        assert!(
            ws.names("state/inbound").iter().all(|n| n != "unmatched"),
            "{:?}",
            ws.names("state/inbound")
        );
    }
}

#[test]
fn a_reset_state_never_overwrites_an_unread_read_event() {
    let ws = Workspace::new();
    let first_sim = Sim::start(&ws.altinn);
    ws.drop_file("a.xml", &batch("A", 2));
    ws.run_once_ok("60s");
    let receipt = ws.read("outbox/a.xml.receipt.xml");
    confirm_reads(&ws.altinn, "confirmations-1.xml", &receipt, 1);
    ws.run_once_ok("60s");
    let first = ws.read("outbox/a.xml.read-1.xml");
    assert_eq!(tag(&first, "Read").len(), 2, "{first}");

    // The operator starts afresh on purpose (state moved aside); the
    // fagsystem has not read a.xml.read-1.xml yet. (A new Altinn folder
    // too, so that only the outbox is shared with the old state.)
    fs::rename(ws.path("state"), ws.path("state.old")).expect("move state aside");
    drop(first_sim);
    let altinn = ws.path("altinn-2");
    let config = ws.read("dpv.toml").replace(
        &ws.altinn.display().to_string(),
        &altinn.display().to_string(),
    );
    fs::write(ws.config(), config).expect("config");
    let _sim = Sim::start(&altinn);
    ws.drop_file("a.xml", &batch("N", 2));
    ws.run_once_ok("60s");
    let second = ws.read("outbox/a.2.xml.receipt.xml");
    assert_eq!(outcome(&second), "Accepted", "{second}");
    confirm_reads(&altinn, "confirmations-2.xml", &second, 2);
    ws.run_once_ok("60s");

    assert_eq!(ws.read("outbox/a.xml.read-1.xml"), first, "never rewritten");
    let next = ws.read("outbox/a.xml.read-2.xml");
    assert_eq!(
        tag(&next, "SendersReference"),
        vec!["N-00000000", "N-00000001"],
        "{next}"
    );
    assert_eq!(
        ws.names("outbox"),
        vec![
            "a.2.xml.receipt.xml",
            "a.xml.read-1.xml",
            "a.xml.read-2.xml",
            "a.xml.receipt.xml"
        ]
    );
}

#[test]
fn check_config_refuses_the_same_folder_by_another_path_and_nested_folders() {
    let ws = Workspace::new();
    let config = fs::read_to_string(ws.config()).expect("config");
    let check = |text: String| {
        let path = ws.path("other.toml");
        fs::write(&path, text).expect("write");
        Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .expect("check-config")
    };
    let out = check(config.replace("outbox = \"outbox\"", "outbox = \"inbox/../inbox\""));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("paths.inbox and paths.outbox are the same folder")
            && stderr(&out).contains("inbox/../inbox, really "),
        "{}",
        stderr(&out)
    );
    let out = check(config.replace("archive = \"archive\"", "archive = \"outbox/archive\""));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("paths.archive (") && stderr(&out).contains("is inside paths.outbox"),
        "{}",
        stderr(&out)
    );
    // And `run` will not start on it either.
    let out = Command::new(bin())
        .args(["run", "--once", "--config"])
        .arg(ws.path("other.toml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_missing_damaged_or_foreign_id_file_stops_the_start() {
    let ws = Workspace::new();
    ws.drop_file("a.xml", &batch("A", 1));
    assert_eq!(ws.run_once("1s").status.code(), Some(3));
    let id_file = ws.path("state/installation-id");
    let id = ws.read("state/installation-id");
    assert!(
        id.len() == 17 && id.ends_with('\n'),
        "16 hex digits and a newline: {id:?}"
    );
    let refused = |fix_hint: &str| {
        let before = tree(ws.dir.path());
        let out = ws.run_once("5s");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("refusing to start"), "{err}");
        assert!(err.contains(fix_hint), "{fix_hint:?} not in: {err}");
        assert_eq!(tree(ws.dir.path()), before, "nothing moved");
    };
    // Missing: the journal knows its id and says how to write it back.
    fs::remove_file(&id_file).expect("rm");
    refused(&format!("printf '{}\\n' >", id.trim()));
    // Garbage.
    fs::write(&id_file, "not an id\n").expect("write");
    refused("is damaged");
    // Another installation's.
    fs::write(&id_file, "0123456789abcdef\n").expect("write");
    refused("says this is installation 0123456789abcdef");
    // Unreadable (a folder: even root cannot read that as a file).
    fs::remove_file(&id_file).expect("rm");
    fs::create_dir(&id_file).expect("mkdir");
    refused("cannot read the installation id file");
    // Put back as the message says: it runs, and finishes the file.
    fs::remove_dir(&id_file).expect("rmdir");
    fs::write(&id_file, &id).expect("write back");
    let _sim = Sim::start(&ws.altinn);
    ws.run_once_ok("60s");
    assert_eq!(outcome(&ws.read("outbox/a.xml.receipt.xml")), "Accepted");
}

#[test]
fn concurrent_first_starts_make_one_installation() {
    let ws = Workspace::new();
    let children: Vec<Child> = (0..4)
        .map(|_| {
            ws.run_once_cmd("2s")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run")
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    // Each either ran (nothing to do) or found another running; none was
    // refused for a lost journal, and there is one id, in file and journal.
    for out in &outs {
        let err = stderr(out);
        match out.status.code() {
            Some(0) => {}
            Some(1) => assert!(err.contains("already running"), "{err}"),
            other => panic!("exit {other:?}: {err}"),
        }
    }
    assert!(outs.iter().any(|o| o.status.code() == Some(0)));
    let id = ws.read("state/installation-id");
    let journal = dpv_batch::journal::Journal::open_read_only(&ws.path("state/journal.sqlite"))
        .expect("open");
    assert_eq!(
        journal.installation_id().expect("id").as_deref(),
        Some(id.trim())
    );
}
