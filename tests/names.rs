//! Names of any shape in the inbox (issue 7, section 2): every entry a
//! filesystem allows gets a defined outcome, processed or refused with one
//! receipt the fagsystem can find by the rule in README.md ("Names"):
//! long names are shortened, names that need escaping are refused under
//! their escaped form, symlinks/FIFOs/folders are refused and moved aside
//! without being followed or opened, and no name reaches a log line or the
//! `status` table raw.
//!
//! The real binary, real files, the simulator as Altinn. The expected names
//! are computed here from the documented rule, independently of the code.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new(ready: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            r#"
[paths]
inbox = "inbox"
outbox = "outbox"
failed = "failed"
archive = "archive"
state = "state"
[intake]
ready = "{ready}"
stable_for_ms = 0
[sender]
system_user_code = "ABC-123"
[transport]
kind = "local"
[transport.local]
root = "altinn"
[run]
poll_ms = 20
"#
        );
        fs::write(dir.path().join("dpv.toml"), config).expect("config");
        for sub in ["inbox", "altinn", "outside"] {
            fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        Workspace { dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn inbox(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path("inbox").join(name.as_ref())
    }

    fn sim(&self) -> Sim {
        let child = Command::new(bin())
            .args(["sim", "--poll-ms", "10", "--no-confirmations", "--root"])
            .arg(self.path("altinn"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sim");
        Sim(child)
    }

    /// `run --once`, killed (and the test failed) if it has not ended in 60 s:
    /// a FIFO opened by mistake would block it for ever.
    fn run_once(&self) -> Output {
        // The log goes to a file: a pipe nobody reads would block it.
        let log_path = self.path("run.log");
        let log = fs::File::create(&log_path).expect("log");
        let mut child = Command::new(bin())
            .args(["run", "--once", "--timeout", "30s", "--config"])
            .arg(self.path("dpv.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run --once");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("run --once hangs");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = fs::read(&log_path).expect("log");
        Output {
            status,
            stdout: Vec::new(),
            stderr,
        }
    }

    fn run_once_ok(&self) -> String {
        let out = self.run_once();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{log}");
        log
    }

    fn status(&self) -> String {
        let out = Command::new(bin())
            .args(["status", "--config"])
            .arg(self.path("dpv.toml"))
            .output()
            .expect("status");
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).expect("status is UTF-8")
    }

    /// Every name in a folder, raw.
    fn names(&self, sub: &str) -> BTreeSet<OsString> {
        match fs::read_dir(self.path(sub)) {
            Ok(d) => d.map(|e| e.expect("entry").file_name()).collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    /// The receipt at exactly `name` in the outbox.
    fn receipt_at(&self, name: &str) -> String {
        fs::read_to_string(self.path("outbox").join(name)).unwrap_or_else(|e| {
            panic!(
                "no receipt {name:?} ({e}); outbox holds {:?}",
                self.names("outbox")
            )
        })
    }
}

struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The documented rule: the name as shown, plus the suffix; where that is
/// longer than 250 bytes, the first 200 bytes of the shown name (cut back to
/// a whole character or escape) + `~` + the first 16 hex digits of the
/// SHA-256 of the shown name + the suffix.
fn expected_name(shown: &str, suffix: &str) -> String {
    if shown.len() + suffix.len() <= 250 {
        return format!("{shown}{suffix}");
    }
    // Whole units: an escape (`\xHH`, `\u{..}`, `\n`, `\\`, ...) or a character.
    let mut cut = 0;
    loop {
        let rest = &shown[cut..];
        let unit = if rest.starts_with("\\x") {
            4
        } else if rest.starts_with("\\u{") {
            rest.find('}').expect("closed") + 1
        } else if rest.starts_with('\\') {
            2
        } else {
            rest.chars().next().map_or(1, char::len_utf8)
        };
        if cut + unit > 200 {
            break;
        }
        cut += unit;
    }
    let hash: String = Sha256::digest(shown.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}~{hash}{suffix}", &shown[..cut])
}

fn receipt_name(shown: &str) -> String {
    expected_name(shown, ".receipt.xml")
}

/// A valid batch of two letters whose references no other batch uses.
fn batch(tag: &str) -> Vec<u8> {
    let spec = dpv_batch::gen::Spec {
        shipment_reference: format!("S-{tag}"),
        reference_prefix: format!("R-{tag}-"),
        letters: 2,
        ..dpv_batch::gen::Spec::default()
    };
    let mut out = Vec::new();
    dpv_batch::gen::write_batch(&spec, &mut out).expect("gen");
    out
}

/// A name of exactly `len` bytes ending in `.xml`.
fn name_of_len(len: usize, fill: char) -> String {
    let mut n: String = std::iter::repeat_n(fill, len - 4).collect();
    n.push_str(".xml");
    assert_eq!(n.len(), len);
    n
}

/// Every receipt validates against our receipt schema, refusals included.
fn outbox_schema_valid(ws: &Workspace) {
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
        assert!(problems.is_empty(), "{name:?}: {problems:?}");
    }
}

fn no_temporary_files(ws: &Workspace) {
    for sub in ["outbox", "failed", "archive"] {
        for n in ws.names(sub) {
            assert!(
                !n.as_bytes().starts_with(b"."),
                "{sub} holds a temporary file {n:?}"
            );
        }
    }
}

#[test]
fn names_of_every_length_around_the_limits_get_one_findable_receipt() {
    let ws = Workspace::new("rename");
    let _sim = ws.sim();
    let lengths = [200, 238, 239, 240, 246, 247, 250, 251, 254, 255];
    let names: Vec<String> = lengths
        .iter()
        .enumerate()
        .map(|(i, &len)| name_of_len(len, (b'a' + i as u8) as char))
        .collect();
    for (i, name) in names.iter().enumerate() {
        fs::write(ws.inbox(name), batch(&format!("L{i}"))).expect("write");
    }
    ws.run_once_ok();
    for name in &names {
        let receipt = ws.receipt_at(&receipt_name(name));
        assert_eq!(outcome(&receipt), "Accepted", "{}: {receipt}", name.len());
        assert_eq!(tag(&receipt, "InputFile"), vec![name.as_str()]);
        // The input is archived under a name that fits, by the same rule.
        let archived = ws.path("archive").join(expected_name(name, ""));
        assert!(archived.is_file(), "{} not archived", name.len());
    }
    assert_eq!(ws.names("outbox").len(), names.len(), "one receipt each");
    assert!(ws.names("inbox").is_empty(), "{:?}", ws.names("inbox"));
    assert!(ws.names("failed").is_empty(), "{:?}", ws.names("failed"));
    let (refs, _) = processed(&ws.path("altinn"));
    assert_eq!(refs.len(), 2 * names.len(), "every letter sent");
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
    no_temporary_files(&ws);
    // A re-used long name gets the next free receipt, never the old one rewritten.
    let first = ws.receipt_at(&receipt_name(&names[9]));
    fs::write(ws.inbox(&names[9]), b"<not a batch").expect("write");
    ws.run_once_ok();
    assert_eq!(ws.receipt_at(&receipt_name(&names[9])), first);
    assert_eq!(ws.names("outbox").len(), names.len() + 1);
    // In failed/, the input and its errors.txt, by the same rule.
    let moved = format!("{}.2", expected_name(&names[9], ""));
    let failed: BTreeSet<OsString> = [moved.clone(), format!("{moved}.errors.txt")]
        .into_iter()
        .map(OsString::from)
        .collect();
    assert_eq!(ws.names("failed"), failed);
    let second: Vec<OsString> = ws
        .names("outbox")
        .into_iter()
        .filter(|n| n.len() <= 250 && n.to_string_lossy().ends_with(".2.receipt.xml"))
        .collect();
    assert_eq!(second.len(), 1, "{:?}", ws.names("outbox"));
    no_temporary_files(&ws);
}

#[test]
fn long_names_are_refused_in_done_file_mode_where_no_marker_fits() {
    let ws = Workspace::new("done-file");
    let fits = name_of_len(250, 'f'); // NAME.done is 255 bytes: a marker fits
    let too_long = name_of_len(251, 'g'); // NAME.done would be 256 bytes
    fs::write(ws.inbox(&fits), b"<x/>").expect("write");
    fs::write(ws.inbox(format!("{fits}.done")), b"").expect("marker");
    fs::write(ws.inbox(&too_long), b"<x/>").expect("write");
    ws.run_once_ok();
    for name in [&fits, &too_long] {
        assert_eq!(outcome(&ws.receipt_at(&receipt_name(name))), "Rejected");
    }
    assert!(ws
        .receipt_at(&receipt_name(&too_long))
        .contains("too long for its marker"));
    assert!(ws.names("inbox").is_empty(), "{:?}", ws.names("inbox"));
}

#[test]
fn a_name_that_is_not_utf8_is_refused_under_its_escaped_name() {
    let ws = Workspace::new("rename");
    let raw = OsString::from_vec(b"brev-\xe6\xff.xml".to_vec());
    let content = batch("U");
    fs::write(ws.inbox(&raw), &content).expect("write");
    ws.run_once_ok();
    let shown = r"brev-\xe6\xff.xml";
    let receipt = ws.receipt_at(&receipt_name(shown));
    assert_eq!(outcome(&receipt), "Rejected", "{receipt}");
    assert_eq!(tag(&receipt, "InputFile"), vec![shown]);
    // Moved aside, bytes untouched, with the reason beside it.
    assert_eq!(
        fs::read(ws.path("failed").join(shown)).expect("failed"),
        content
    );
    let why = fs::read_to_string(ws.path("failed").join(format!("{shown}.errors.txt")))
        .expect("errors.txt");
    assert!(why.contains("not UTF-8"), "{why}");
    assert!(ws.names("inbox").is_empty());
    let status = ws.status();
    assert_eq!(status.matches(shown).count(), 1, "{status}");
    assert!(processed(&ws.path("altinn")).0.is_empty(), "nothing sent");

    // The longest such name: its shown form is 1017 bytes, so every output
    // name is shortened, cut between two escapes.
    let mut long = b"a".to_vec();
    long.extend(std::iter::repeat_n(0xffu8, 254));
    fs::write(ws.inbox(OsString::from_vec(long)), b"x").expect("write");
    ws.run_once_ok();
    let long_shown = format!("a{}", r"\xff".repeat(254));
    let name = receipt_name(&long_shown);
    assert!(
        name.starts_with(&format!("a{}~", r"\xff".repeat(49))),
        "{name}"
    );
    assert_eq!(outcome(&ws.receipt_at(&name)), "Rejected");
    let moved = expected_name(&long_shown, "");
    assert!(ws.path("failed").join(&moved).is_file());
    assert!(ws
        .path("failed")
        .join(format!("{moved}.errors.txt"))
        .is_file());
    assert!(ws.names("inbox").is_empty());
}

#[test]
fn a_symlink_is_refused_and_never_followed() {
    let ws = Workspace::new("rename");
    // A valid batch outside the inbox: following the link would send it.
    let target = ws.path("outside/secret.xml");
    let content = batch("SECRET");
    fs::write(&target, &content).expect("target");
    let before = fs::metadata(&target).expect("meta");
    std::os::unix::fs::symlink(&target, ws.inbox("link.xml")).expect("symlink");
    std::os::unix::fs::symlink(ws.path("outside/nothing"), ws.inbox("dangling.xml"))
        .expect("symlink");
    let _sim = ws.sim();
    ws.run_once_ok();
    for name in ["link.xml", "dangling.xml"] {
        let receipt = ws.receipt_at(&receipt_name(name));
        assert_eq!(outcome(&receipt), "Rejected", "{receipt}");
        assert!(receipt.contains("symbolic link"), "{receipt}");
        let moved = ws.path("failed").join(name);
        let meta = fs::symlink_metadata(&moved).expect("moved aside");
        assert!(meta.file_type().is_symlink(), "the link itself moves");
    }
    assert_eq!(fs::read_link(ws.path("failed/link.xml")).unwrap(), target);
    let after = fs::metadata(&target).expect("meta");
    assert_eq!(fs::read(&target).unwrap(), content, "target untouched");
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());
    assert!(!ws.path("outside/nothing").exists(), "nothing created");
    assert!(processed(&ws.path("altinn")).0.is_empty(), "never sent");
    assert!(ws.names("inbox").is_empty());
    outbox_schema_valid(&ws);
}

#[test]
fn a_fifo_or_a_socket_is_refused_without_hanging() {
    use std::os::unix::fs::FileTypeExt;
    let ws = Workspace::new("rename");
    let fifo = ws.inbox("pipe.xml");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let _socket = std::os::unix::net::UnixListener::bind(ws.inbox("sock.xml")).expect("bind");
    ws.run_once_ok();
    let receipt = ws.receipt_at(&receipt_name("pipe.xml"));
    assert_eq!(outcome(&receipt), "Rejected", "{receipt}");
    assert!(receipt.contains("FIFO"), "{receipt}");
    let moved = fs::symlink_metadata(ws.path("failed/pipe.xml")).expect("moved aside");
    assert!(moved.file_type().is_fifo());
    let receipt = ws.receipt_at(&receipt_name("sock.xml"));
    assert!(receipt.contains("socket"), "{receipt}");
    let moved = fs::symlink_metadata(ws.path("failed/sock.xml")).expect("moved aside");
    assert!(moved.file_type().is_socket());
    assert!(ws.names("inbox").is_empty());
    assert_eq!(ws.names("outbox").len(), 2);
    outbox_schema_valid(&ws);
}

#[test]
fn a_folder_is_refused_and_moved_aside_whole() {
    let ws = Workspace::new("rename");
    fs::create_dir_all(ws.inbox("folder.xml/inner")).expect("mkdir");
    fs::write(ws.inbox("folder.xml/inner/a.xml"), b"keep me").expect("write");
    ws.run_once_ok();
    let receipt = ws.receipt_at(&receipt_name("folder.xml"));
    assert_eq!(outcome(&receipt), "Rejected", "{receipt}");
    assert!(receipt.contains("folder"), "{receipt}");
    assert_eq!(
        fs::read(ws.path("failed/folder.xml/inner/a.xml")).expect("contents kept"),
        b"keep me"
    );
    assert!(ws.names("inbox").is_empty());
    let status = ws.status();
    assert_eq!(status.matches("folder.xml").count(), 1, "{status}");
    // A second run finds nothing more to do: exactly one receipt.
    ws.run_once_ok();
    assert_eq!(ws.names("outbox").len(), 1);
}

#[test]
fn control_characters_never_reach_a_log_line_or_the_status_table_raw() {
    let ws = Workspace::new("rename");
    let _sim = ws.sim();
    let evil = "evil\nERROR forged line\x1b[31m\u{202e}lmx.xml";
    let shown = r"evil\nERROR forged line\x1b[31m\u{202e}lmx.xml";
    // Names equal after a careless escaping: a literal backslash-n.
    let literal = r"evil\nERROR forged line.xml";
    let literal_shown = r"evil\\nERROR forged line.xml";
    fs::write(ws.inbox(evil), batch("E")).expect("write");
    fs::write(ws.inbox(literal), batch("F")).expect("write");
    fs::write(ws.inbox("plain.xml"), batch("P")).expect("write");
    let log = ws.run_once_ok();
    assert!(!log.contains('\x1b'), "raw escape in the log:\n{log}");
    assert!(!log.contains('\u{202e}'), "raw bidi control in the log");
    for line in log.lines() {
        assert!(!line.starts_with("ERROR forged"), "forged log line:\n{log}");
    }
    assert!(log.contains(shown), "the name is shown escaped:\n{log}");

    let a = ws.receipt_at(&receipt_name(shown));
    let b = ws.receipt_at(&receipt_name(literal_shown));
    assert_eq!(outcome(&a), "Rejected", "{a}");
    assert_eq!(outcome(&b), "Rejected", "{b}");
    assert_eq!(tag(&a, "InputFile"), vec![shown]);
    assert_eq!(tag(&b, "InputFile"), vec![literal_shown]);
    assert_eq!(outcome(&ws.receipt_at("plain.xml.receipt.xml")), "Accepted");
    assert_eq!(ws.names("outbox").len(), 3);
    let why = fs::read_to_string(ws.path("failed").join(format!("{shown}.errors.txt")))
        .expect("errors.txt");
    assert!(!why.contains('\x1b') && why.lines().count() >= 2, "{why}");
    assert!(why.starts_with(shown), "{why}");

    let status = ws.status();
    assert!(!status.contains('\x1b') && !status.contains('\u{202e}'));
    // A summary, a blank line, the header, then one row per file.
    let rows: Vec<&str> = status.lines().skip(3).collect();
    assert_eq!(rows.len(), 3, "{status}");
    assert_eq!(rows.iter().filter(|r| r.contains(shown)).count(), 1);
    assert_eq!(rows.iter().filter(|r| r.contains(literal_shown)).count(), 1);
    outbox_schema_valid(&ws);
}

#[test]
fn hidden_temporary_and_marker_names_are_left_alone() {
    let ws = Workspace::new("rename");
    let left = [
        ".hidden.xml",
        "a.xml.tmp",
        "b.xml.part",
        ".c.xml.receipt.xml.tmp",
    ];
    for n in left {
        fs::write(ws.inbox(n), b"<x/>").expect("write");
    }
    ws.run_once_ok();
    let expected: BTreeSet<OsString> = left.iter().map(OsString::from).collect();
    assert_eq!(ws.names("inbox"), expected);
    assert!(ws.names("outbox").is_empty());
    assert!(ws.status().starts_with("no files yet"));
}

#[test]
fn read_events_of_a_long_name_fit_too() {
    let ws = Workspace::new("rename");
    let child = Command::new(bin())
        // Reads come in after the receipt is written: they go to event files.
        .args([
            "sim",
            "--poll-ms",
            "10",
            "--confirm-delay-ms",
            "500",
            "--root",
        ])
        .arg(ws.path("altinn"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sim");
    let _sim = Sim(child);
    let name = name_of_len(240, 'r');
    fs::write(ws.inbox(&name), batch("R")).expect("write");
    ws.run_once_ok();
    assert_eq!(outcome(&ws.receipt_at(&receipt_name(&name))), "Accepted");
    // Run until both letters are reported read, in the receipt or an event.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        ws.run_once_ok();
        let receipt = ws.receipt_at(&receipt_name(&name));
        let events: Vec<String> = ws
            .names("outbox")
            .into_iter()
            .map(|n| n.into_string().expect("UTF-8"))
            .filter(|n| n.contains(".read-"))
            .collect();
        let mut reads = receipt.matches("<ReadAt>").count();
        for e in &events {
            let id = e
                .rsplit(".read-")
                .next()
                .and_then(|t| t.strip_suffix(".xml"));
            let id = id.expect("event id");
            assert_eq!(e, &expected_name(&name, &format!(".read-{id}.xml")));
            reads += tag(&ws.receipt_at(e), "Read").len();
        }
        if reads == 2 {
            assert!(!events.is_empty(), "the reads came with the receipt");
            break;
        }
        assert!(Instant::now() < deadline, "reads: {reads}, {events:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    no_temporary_files(&ws);
}

/// A crash between journalling an entry and moving it: the restart finds the
/// entry again from the name as journalled (shown), whatever its shape, and
/// it gets exactly one receipt (not "disappeared" plus a second one).
#[test]
fn entries_of_every_shape_are_found_again_after_a_crash_before_the_move() {
    let ws = Workspace::new("rename");
    ws.run_once_ok(); // the state folder exists, as after any earlier run
    let long = name_of_len(255, 'z');
    let entries: Vec<(OsString, String)> = vec![
        (OsString::from(&long), long.clone()),
        (
            OsString::from_vec(b"nb-\xf8\n.xml".to_vec()),
            r"nb-\xf8\n.xml".to_string(),
        ),
        (OsString::from("link.xml"), "link.xml".to_string()),
        (OsString::from("dir.xml"), "dir.xml".to_string()),
    ];
    fs::write(ws.inbox(&entries[0].0), b"<x/>").expect("write");
    fs::write(ws.inbox(&entries[1].0), b"<x/>").expect("write");
    std::os::unix::fs::symlink(ws.path("outside/none"), ws.inbox("link.xml")).expect("link");
    fs::create_dir(ws.inbox("dir.xml")).expect("dir");
    {
        // What take_in journals first, before the rename a crash interrupted.
        let journal =
            dpv_batch::journal::Journal::open(&ws.path("state/journal.sqlite")).expect("journal");
        for (_, shown) in &entries {
            journal.add_file(shown, 0).expect("add");
        }
    }
    ws.run_once_ok();
    for (_, shown) in &entries {
        let receipt = ws.receipt_at(&receipt_name(shown));
        assert!(!receipt.contains("disappeared"), "{receipt}");
        assert_eq!(outcome(&receipt), "Rejected", "{receipt}");
    }
    assert_eq!(ws.names("outbox").len(), entries.len());
    assert!(ws.names("inbox").is_empty(), "{:?}", ws.names("inbox"));
    assert!(ws.names("state/staging").is_empty());
}

/// `kill -9` at many moments while entries of every shape go through: each
/// still ends with exactly one receipt at its documented name.
#[test]
fn kill_9_while_names_of_every_shape_go_through() {
    let ws = Workspace::new("rename");
    let _sim = ws.sim();
    let mut expected: Vec<(String, &str)> = Vec::new();
    for i in 0..8 {
        let name = name_of_len(240 + 2 * i, (b'a' + i as u8) as char);
        fs::write(ws.inbox(&name), batch(&format!("K{i}"))).expect("write");
        expected.push((name, "Accepted"));
    }
    for i in 0..4 {
        let raw = OsString::from_vec(
            format!("n{i}-")
                .into_bytes()
                .into_iter()
                .chain(*b"\xff\x1b.xml")
                .collect(),
        );
        fs::write(ws.inbox(&raw), b"<x/>").expect("write");
        expected.push((format!(r"n{i}-\xff\x1b.xml"), "Rejected"));
        std::os::unix::fs::symlink("/etc/passwd", ws.inbox(format!("l{i}.xml"))).expect("link");
        expected.push((format!("l{i}.xml"), "Rejected"));
        let fifo = ws.inbox(format!("f{i}.xml"));
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success());
        expected.push((format!("f{i}.xml"), "Rejected"));
        fs::create_dir(ws.inbox(format!("d{i}.xml"))).expect("dir");
        expected.push((format!("d{i}.xml"), "Rejected"));
    }
    for delay in [15, 30, 45, 60, 80, 100, 130, 160, 200, 250] {
        let mut daemon = Command::new(bin())
            .args(["run", "--config"])
            .arg(ws.path("dpv.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("daemon");
        std::thread::sleep(Duration::from_millis(delay));
        daemon.kill().expect("SIGKILL");
        daemon.wait().expect("wait");
    }
    ws.run_once_ok();
    for (shown, want) in &expected {
        assert_eq!(
            outcome(&ws.receipt_at(&receipt_name(shown))),
            *want,
            "{shown}"
        );
    }
    assert_eq!(ws.names("outbox").len(), expected.len());
    assert!(ws.names("inbox").is_empty(), "{:?}", ws.names("inbox"));
    assert!(ws.names("state/staging").is_empty());
    let (refs, _) = processed(&ws.path("altinn"));
    assert_eq!(refs.len(), 16);
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
    no_temporary_files(&ws);
    outbox_schema_valid(&ws);
}

#[test]
fn a_name_with_a_character_xml_cannot_carry_gets_a_well_formed_receipt() {
    // U+FFFE and U+FFFF are allowed in a file name and shown as they are,
    // but XML 1.0 cannot carry them: the receipt names them as escapes.
    let ws = Workspace::new("rename");
    let _sim = ws.sim();
    for (i, c) in ['\u{FFFF}', '\u{FFFE}'].into_iter().enumerate() {
        let name = format!("brev-{c}.xml");
        fs::write(ws.inbox(&name), batch(&format!("NC{i}"))).expect("write");
    }
    ws.run_once_ok();
    outbox_schema_valid(&ws);
    for (c, escaped) in [('\u{FFFF}', r"\u{ffff}"), ('\u{FFFE}', r"\u{fffe}")] {
        let receipt = ws.receipt_at(&receipt_name(&format!("brev-{c}.xml")));
        assert_eq!(outcome(&receipt), "Accepted", "{receipt}");
        assert_eq!(
            tag(&receipt, "InputFile"),
            vec![format!("brev-{escaped}.xml")]
        );
    }
}
