//! The pipeline over SFTP: the real binary (`run --once`, `run`, `status`)
//! with `[transport] kind = "sftp"` against a real OpenSSH sshd
//! (scripts/sftp-server, through tests/common/sftp.rs), and the simulator
//! (`dpv-batch sim --root <account>`) working directly on the SFTP account's
//! folder on disk, as Altinn's server side would.
//!
//! Assertions are exact: which receipts exist and what each says, which
//! folders hold which files, what is left on the server, and how often each
//! letter reached "Altinn". No sleep-and-hope: where something happens in
//! another process, a bounded poll waits for the condition, and the test
//! asserts it afterwards.
//!
//! Needs root and openssh-server/openssh-client, like tests/sftp.rs; without
//! them every test here FAILS with the reason; DPV_SKIP_SFTP=1 skips them
//! (each says SKIPPED on stderr).

mod common;
use common::sftp::{keygen_fingerprint, Server, SCRIPT};
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A server for test `test`; `None` (with a note on stderr) when DPV_SKIP_SFTP=1.
fn server(test: &str) -> Option<Server> {
    common::sftp::server(&format!("pipeline_sftp::{test}"))
}

/// A workspace (inbox, outbox, failed, archive, state, config) whose
/// transport is the test server's SFTP account.
struct Workspace {
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    key: PathBuf,
}

impl Workspace {
    fn new(server: &Server) -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("inbox")).expect("mkdir");
        Workspace {
            dir,
            port: server.port(),
            user: server.get("SFTP_USER"),
            key: server.path("SFTP_KEY"),
        }
    }

    /// (Re)write the config: `pin` are the host key lines of
    /// `[transport.sftp]` (known_hosts and/or host_key_fingerprints),
    /// `extra` more top-level sections.
    fn write_config(&self, pin: &str, extra: &str) {
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
sequence_numbers = true
[transport]
kind = "sftp"
[transport.sftp]
host = "127.0.0.1"
port = {port}
user = "{user}"
private_key = "{key}"
{pin}
connect_timeout_ms = 5000
io_timeout_ms = 20000
retry_ms = 50
retry_max_ms = 200
[run]
poll_ms = 50
{extra}
"#,
            port = self.port,
            user = self.user,
            key = self.key.display(),
        );
        fs::write(self.config(), config).expect("config");
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn config(&self) -> PathBuf {
        self.path("dpv.toml")
    }

    /// Drop a file into the inbox the way a careful writer does.
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

    fn names(&self, sub: &str) -> BTreeSet<String> {
        names(&self.path(sub))
    }

    fn receipt(&self, input: &str) -> String {
        fs::read_to_string(self.path("outbox").join(format!("{input}.receipt.xml")))
            .unwrap_or_else(|e| panic!("no receipt for {input}: {e}"))
    }

    /// `dpv-batch status --config` (text) and `--json`.
    fn status(&self) -> (String, serde_json::Value) {
        let out = Command::new(bin())
            .args(["status", "--config"])
            .arg(self.config())
            .output()
            .expect("status");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let out = Command::new(bin())
            .args(["status", "--json", "--config"])
            .arg(self.config())
            .output()
            .expect("status --json");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let json = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
        (text, json)
    }

    /// The journal's parts of the one file in it: (remote name, bytes).
    fn parts(&self) -> Vec<(String, u64)> {
        let journal = dpv_batch::journal::open_read_only(&self.path("state/journal.sqlite"))
            .expect("journal");
        let files = journal.all_files().expect("files");
        assert_eq!(files.len(), 1, "{files:?}");
        journal
            .parts_of(files[0].id)
            .expect("parts")
            .into_iter()
            .map(|p| (p.remote_name, p.bytes as u64))
            .collect()
    }
}

/// `dpv-batch sim` on the account folder, its report lines in a file.
/// Stopped with SIGTERM by [`Sim::stop`] (it finishes the step it is in: a
/// batch whose receipt was written is moved to processed/ too), killed on
/// drop.
struct Sim {
    child: Child,
    log: PathBuf,
}

impl Sim {
    fn start(account: &Path, log: PathBuf, extra: &[&str]) -> Sim {
        let child = Command::new(bin())
            .args(["sim", "--poll-ms", "10", "--root"])
            .arg(account)
            .args(extra)
            .stdout(fs::File::create(&log).expect("sim log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start sim");
        Sim { child, log }
    }

    /// Stop it; the batches it decided (answered with a receipt), by upload
    /// name, with how often. A batch delivered again under a name it had
    /// processed (which it only moves, over the earlier copy in processed/,
    /// and so would not show there) fails the test.
    fn stop(mut self) -> BTreeMap<String, usize> {
        signal(&self.child, "TERM");
        let status = self.child.wait().expect("wait for sim");
        assert_eq!(status.code(), Some(0), "sim ended with {status}");
        let log = fs::read_to_string(&self.log).expect("sim log");
        let mut decided = BTreeMap::new();
        for line in log.lines() {
            assert!(
                !line.contains("no new receipt") && !line.contains("decided before"),
                "a batch reached the simulator twice: {line}\n{log}"
            );
            if line.contains(" -> receipts/") {
                let name = line.split(": ").next().unwrap_or("").to_string();
                *decided.entry(name).or_insert(0) += 1;
            }
        }
        decided
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed (if still running) when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {}", child.id());
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn names(dir: &Path) -> BTreeSet<String> {
    match fs::read_dir(dir) {
        Ok(d) => d
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Poll `cond` every 10 ms for at most `limit`; whether it became true.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// known_hosts lines pinning the *wrong* key (the "other" client key the
/// server script makes) for the server's `[127.0.0.1]:PORT`; returns the
/// file and the wrong key's fingerprint.
fn wrong_known_hosts(server: &Server, dir: &Path) -> (PathBuf, String) {
    let other_pub = PathBuf::from(format!("{}.pub", server.get("SFTP_OTHER_KEY")));
    let other = fs::read_to_string(&other_pub).expect("other key");
    let fields: Vec<&str> = other.split_whitespace().collect();
    let kh = dir.join("wrong_known_hosts");
    fs::write(
        &kh,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            server.port(),
            fields[0],
            fields[1]
        ),
    )
    .expect("write known_hosts");
    (kh, keygen_fingerprint(&other_pub))
}

fn known_hosts_line(path: &Path) -> String {
    format!("known_hosts = \"{}\"", path.display())
}

/// The account's upload/ holds nothing: no batch under its final name, no
/// temporary `.NAME.part`.
fn assert_upload_empty(account: &Path) {
    let left = names(&account.join("upload"));
    assert!(left.is_empty(), "left in the account's upload/: {left:?}");
}

/// The account's receipts/ holds nothing (each receipt was removed once
/// journalled).
fn assert_receipts_empty(account: &Path) {
    let left = names(&account.join("receipts"));
    assert!(left.is_empty(), "left in the account's receipts/: {left:?}");
}

#[test]
fn samples_end_to_end_over_sftp() {
    let Some(server) = server("samples_end_to_end_over_sftp") else {
        return;
    };
    let account = server.account();
    let ws = Workspace::new(&server);
    ws.write_config(&known_hosts_line(&server.path("SFTP_KNOWN_HOSTS")), "");
    // Altinn refuses letters to one organisation: that file is partially accepted.
    let sim = Sim::start(
        &account,
        ws.path("sim.log"),
        &["--confirm-delay-ms", "0", "--reject-reportee", "874391506"],
    );
    let inputs: &[(&str, &str, &str)] = &[
        (
            "bokmal.xml",
            "valid/letters-bokmal.xml",
            "PartiallyAccepted",
        ),
        (
            "nynorsk.xml",
            "valid/letters-nynorsk-english.xml",
            "Accepted",
        ),
        ("latin1.xml", "valid/latin1.xml", "Accepted"),
        ("utf16.xml", "valid/utf16be.xml", "Accepted"),
        ("export.zip", "valid/export-package.zip", "Accepted"),
        (
            "bad-orgnr.xml",
            "invalid/dpv003-bad-reportee.xml",
            "Rejected",
        ),
        ("broken.xml", "invalid/not-well-formed.xml", "Rejected"),
        // Same content as bokmal.xml under another name, dropped after it.
        ("bokmal-again.xml", "valid/letters-bokmal.xml", "Rejected"),
    ];
    for (name, src, _) in inputs {
        ws.drop_file(name, &sample(src));
        std::thread::sleep(Duration::from_millis(5)); // distinct mtimes: intake is oldest first
    }
    let started = Instant::now();
    let out = ws.run_once("120s");
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Stop the simulator: it finishes its step, so every batch it answered
    // is in processed/ now.
    let decided = sim.stop();

    // Exactly one receipt per input, with the expected outcome.
    for (name, _, expected) in inputs {
        let r = ws.receipt(name);
        assert_eq!(outcome(&r), *expected, "{name}: {r}");
    }
    let outbox = ws.names("outbox");
    let receipts: BTreeSet<String> = outbox
        .iter()
        .filter(|n| n.ends_with(".receipt.xml"))
        .cloned()
        .collect();
    let want: BTreeSet<String> = inputs
        .iter()
        .map(|(n, _, _)| format!("{n}.receipt.xml"))
        .collect();
    assert_eq!(receipts, want);
    // Anything else in the outbox is a read event (confirmations are on).
    assert!(
        outbox
            .iter()
            .all(|n| n.ends_with(".receipt.xml") || n.contains(".read-")),
        "{outbox:?}"
    );
    // Per-letter detail came back over SFTP: 3 of 4 accepted, one refused.
    let bokmal = ws.receipt("bokmal.xml");
    let statuses = tag(&bokmal, "Status");
    assert_eq!(statuses.iter().filter(|s| **s == "Accepted").count(), 3);
    assert_eq!(statuses.iter().filter(|s| **s == "Rejected").count(), 1);
    assert!(ws.receipt("bokmal-again.xml").contains("duplicate"));

    // Folders: inbox empty, sent ones archived, refused ones failed.
    assert!(ws.names("inbox").is_empty(), "{:?}", ws.names("inbox"));
    assert_eq!(
        ws.names("archive"),
        set(&[
            "bokmal.xml",
            "nynorsk.xml",
            "latin1.xml",
            "utf16.xml",
            "export.zip"
        ])
    );
    let failed: BTreeSet<String> = ["bad-orgnr.xml", "broken.xml", "bokmal-again.xml"]
        .iter()
        .flat_map(|s| [s.to_string(), format!("{s}.errors.txt")])
        .collect();
    assert_eq!(ws.names("failed"), failed);
    // Every receipt fetched was matched to its part (nothing set aside).
    assert!(
        names(&ws.path("state/inbound")).is_empty(),
        "{:?}",
        names(&ws.path("state/inbound"))
    );

    // Every letter of the sent files reached Altinn exactly once; numbers gapless.
    let (refs, seqs) = processed(&account);
    assert_eq!(refs.len(), 4 + 4 + 2 + 2 + 1, "{refs:?}");
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
    let expected: BTreeMap<String, Vec<i64>> = [
        ("BRG-4601", vec![1]),
        ("VLF-SAK", vec![1]),
        ("TRD-5001", vec![1, 2]),
        ("OSL-NAER", vec![1]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(seqs, expected);
    // processed/ holds exactly the parts the receipts name, once each.
    let remote_names: BTreeSet<String> = inputs
        .iter()
        .flat_map(|(n, _, _)| {
            tag(&ws.receipt(n), "RemoteName")
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(remote_names.len(), 5, "{remote_names:?}");
    assert_eq!(names(&account.join("processed")), remote_names);
    let once: BTreeMap<String, usize> = remote_names.iter().map(|n| (n.clone(), 1)).collect();
    assert_eq!(
        decided, once,
        "each part reached the simulator exactly once"
    );

    // Nothing left on the server: no temporary or final names in upload/,
    // every receipt removed after it was journalled.
    assert_upload_empty(&account);
    assert_receipts_empty(&account);
    eprintln!(
        "samples_end_to_end_over_sftp: run --once took {:.1} s",
        took.as_secs_f64()
    );
}

#[test]
fn wrong_pinned_host_key_stops_once_and_loses_nothing() {
    let Some(server) = server("wrong_pinned_host_key_stops_once_and_loses_nothing") else {
        return;
    };
    let account = server.account();
    let ws = Workspace::new(&server);
    let (wrong_kh, expected) = wrong_known_hosts(&server, ws.dir.path());
    let offered = keygen_fingerprint(&server.path("SFTP_HOST_PUBKEY"));
    assert_ne!(expected, offered);
    let sim = Sim::start(&account, ws.path("sim.log"), &["--no-confirmations"]);
    let input = sample("valid/letters-nynorsk-english.xml");
    ws.drop_file("nynorsk.xml", &input);

    // The input must be kept, staged, with the reason in status; nothing
    // sent, no receipt.
    let check_not_sent = |what: &str| {
        assert_upload_empty(&account);
        assert!(names(&account.join("processed")).is_empty(), "{what}");
        assert!(
            ws.names("outbox").is_empty(),
            "{what}: {:?}",
            ws.names("outbox")
        );
        assert!(ws.names("archive").is_empty(), "{what}");
        assert!(ws.names("failed").is_empty(), "{what}");
        assert!(ws.names("inbox").is_empty(), "{what}");
        let staged = ws.names("state/staging");
        assert_eq!(staged.len(), 1, "{what}: {staged:?}");
        let staged = ws.path("state/staging").join(staged.first().unwrap());
        assert_eq!(fs::read(&staged).unwrap(), input, "{what}: the staged copy");
        let (text, json) = ws.status();
        let line = text
            .lines()
            .find(|l| l.contains("nynorsk.xml"))
            .unwrap_or_else(|| panic!("{what}: status does not list the file:\n{text}"));
        assert!(line.contains("Packaged"), "{what}: {line}");
        assert!(line.contains("host key mismatch"), "{what}: {line}");
        assert!(line.contains(&offered), "{what}: {line}");
        assert_eq!(json[0]["state"], "packaged", "{what}: {json}");
        assert!(json[0]["outcome"].is_null(), "{what}: {json}");
        let reason = json[0]["reason"].as_str().unwrap_or("");
        assert!(reason.contains("host key mismatch"), "{what}: {json}");
        // The host key is checked before authenticating: no login at all.
        let log = fs::read_to_string(server.path("SFTP_LOG")).unwrap();
        assert_eq!(
            log.matches("Accepted publickey").count(),
            0,
            "{what}: {log}"
        );
    };

    // 1. known_hosts pins another key for [127.0.0.1]:PORT.
    ws.write_config(&known_hosts_line(&wrong_kh), "");
    let started = Instant::now();
    let out = ws.run_once("60s");
    let took = started.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(20), "took {took:?}: {err}");
    assert!(err.contains("host key mismatch"), "{err}");
    assert!(
        err.contains(&expected),
        "expected fingerprint not named: {err}"
    );
    assert!(
        err.contains(&offered),
        "offered fingerprint not named: {err}"
    );
    check_not_sent("wrong known_hosts");

    // 2. A wrong fingerprint alone: the same, and the file is still kept.
    ws.write_config(&format!("host_key_fingerprints = [\"{expected}\"]"), "");
    let started = Instant::now();
    let out = ws.run_once("60s");
    let took = started.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(20), "took {took:?}: {err}");
    assert!(
        err.contains(&expected) && err.contains(&offered),
        "both fingerprints must be named: {err}"
    );
    check_not_sent("wrong host_key_fingerprints");

    // 3. The right key: the same file goes through, once.
    ws.write_config(&known_hosts_line(&server.path("SFTP_KNOWN_HOSTS")), "");
    let out = ws.run_once("60s");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let decided = sim.stop();
    let r = ws.receipt("nynorsk.xml");
    assert_eq!(outcome(&r), "Accepted", "{r}");
    assert_eq!(ws.names("outbox"), set(&["nynorsk.xml.receipt.xml"]));
    assert_eq!(ws.names("archive"), set(&["nynorsk.xml"]));
    assert_eq!(fs::read(ws.path("archive/nynorsk.xml")).unwrap(), input);
    assert!(ws.names("failed").is_empty());
    assert!(ws.names("state/staging").is_empty());
    let (refs, _) = processed(&account);
    assert_eq!(refs.len(), 4, "{refs:?}");
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
    let remote = tag(&r, "RemoteName")[0].to_string();
    assert_eq!(names(&account.join("processed")), set(&[remote.as_str()]));
    assert_eq!(decided, BTreeMap::from([(remote, 1)]));
    assert_upload_empty(&account);
    assert_receipts_empty(&account);
    let (_, json) = ws.status();
    assert_eq!(json[0]["state"], "done", "{json}");
    assert_eq!(json[0]["outcome"], "Accepted", "{json}");
}

/// The daemon's log line for a part uploaded completely (and renamed),
/// after the file's span (`INFO file{id=1 file=big.xml}: uploaded file=`).
const UPLOADED: &str = ": uploaded file=";

/// What the watcher saw in the account's upload/ during the big upload.
#[derive(Default)]
struct Seen {
    /// Largest size of a temporary `.NAME.part`.
    largest_part: u64,
    /// Every (final name, size) seen, with how often.
    finals: BTreeMap<(String, u64), usize>,
    /// When sshd was killed (None: not yet).
    killed_at_bytes: Option<u64>,
}

#[test]
fn sshd_killed_during_a_large_upload_through_the_pipeline() {
    let Some(mut server) = server("sshd_killed_during_a_large_upload_through_the_pipeline") else {
        return;
    };
    let account = server.account();
    let upload = account.join("upload");
    let ws = Workspace::new(&server);
    // One part of ~200 MB: 10 letters, each with a 15 MB attachment (base64).
    ws.write_config(
        &known_hosts_line(&server.path("SFTP_KNOWN_HOSTS")),
        "[validate]\nmax_attachment_bytes = 50000000\n\
         [package]\nmax_part_bytes = 1000000000\n",
    );
    let big = ws.path("big.xml");
    let out = Command::new(bin())
        .args([
            "gen",
            "--letters",
            "10",
            "--attachment-bytes",
            "15000000",
            "--shipment",
            "BIG-0001",
            "--out",
        ])
        .arg(&big)
        .output()
        .expect("gen");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let input_size = fs::metadata(&big).unwrap().len();
    assert!(
        (150_000_000..250_000_000).contains(&input_size),
        "{input_size}"
    );
    let sim = Sim::start(&account, ws.path("sim.log"), &["--no-confirmations"]);

    // Watch upload/ all along: kill sshd (and its sessions) once the
    // temporary file has passed 20 MB; record every final name and size.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, stop) = (seen.clone(), stop.clone());
        let (upload, envfile) = (upload.clone(), server.envfile.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok(entries) = fs::read_dir(&upload) else {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                };
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    // Gone between readdir and stat: the sim moved it.
                    let Ok(meta) = fs::metadata(e.path()) else {
                        continue;
                    };
                    let mut s = seen.lock().unwrap();
                    if name.starts_with('.') {
                        s.largest_part = s.largest_part.max(meta.len());
                    } else {
                        *s.finals.entry((name, meta.len())).or_insert(0) += 1;
                    }
                    // The first upload of the part (under whatever name)
                    // dies with sshd once it has passed 20 MB.
                    if s.killed_at_bytes.is_none() && meta.len() > 20_000_000 {
                        let out = Command::new("bash")
                            .arg(SCRIPT)
                            .arg("kill")
                            .arg(&envfile)
                            .output()
                            .unwrap();
                        assert!(out.status.success(), "{}", stderr(&out));
                        s.killed_at_bytes = Some(meta.len());
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };

    // The daemon, logging to a file we can read while it runs.
    let log_path = ws.path("daemon.log");
    let mut daemon = KillOnDrop(
        Command::new(bin())
            .args(["run", "--config"])
            .arg(ws.config())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("daemon"),
    );
    let log = || fs::read_to_string(&log_path).unwrap_or_default();
    fs::rename(&big, ws.path("inbox/big.xml")).unwrap();

    let started = Instant::now();
    // Until sshd is killed (at ~20 MB of ~200 MB), no file may show under
    // a final name: the upload is far from complete.
    let killed = wait_for(Duration::from_secs(120), || {
        let s = seen.lock().unwrap();
        s.killed_at_bytes.is_some() || !s.finals.is_empty()
    });
    {
        let s = seen.lock().unwrap();
        assert!(
            s.finals.is_empty(),
            "a file appeared under a final name (name, size: times seen) while the upload \
             was still running: {:?}; daemon log:\n{}",
            s.finals,
            log()
        );
    }
    assert!(
        killed,
        "the upload never passed 20 MB (largest temporary file: {} bytes); daemon log:\n{}",
        seen.lock().unwrap().largest_part,
        log()
    );
    let killed_after = started.elapsed();
    // Whatever passed 20 MB must have been the temporary file: the part is
    // journalled (packaged) by now, and no file in upload/ so far may have
    // carried its final name with any other than its final size.
    let (remote, bytes) = ws.parts()[0].clone();
    {
        let s = seen.lock().unwrap();
        for (name, size) in s.finals.keys() {
            assert_eq!(
                (name.as_str(), *size),
                (remote.as_str(), bytes),
                "a file under a final name, not of the part's final size, during the upload: {:?}",
                s.finals
            );
        }
    }
    // The daemon notices (the transport gives up after its tries: a
    // transient error) and keeps running; only then is sshd started again.
    assert!(
        wait_for(Duration::from_secs(60), || log().contains("transport down")),
        "the daemon did not report the dead server:\n{}",
        log()
    );
    assert!(
        daemon.0.try_wait().unwrap().is_none(),
        "the daemon ended:\n{}",
        log()
    );
    assert!(!log().contains(UPLOADED), "{}", log());
    server.script("restart");

    // The daemon uploads the part again by itself.
    assert!(
        wait_for(Duration::from_secs(300), || log().contains(UPLOADED)),
        "the daemon did not upload the part after sshd came back:\n{}",
        log()
    );
    // The outage was logged once when it began and once when it ended,
    // not on every try.
    assert!(
        wait_for(Duration::from_secs(30), || log().contains("transport back")),
        "{}",
        log()
    );
    assert_eq!(log().matches("transport down").count(), 1, "{}", log());
    assert_eq!(log().matches("transport back").count(), 1, "{}", log());
    signal(&daemon.0, "TERM");
    let status = daemon.0.wait().expect("wait for daemon");
    assert_eq!(status.code(), Some(0), "{}", log());
    let out = ws.run_once("300s");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let took = started.elapsed();
    let decided = sim.stop();
    stop.store(true, Ordering::SeqCst);
    watcher.join().expect("watcher");

    // One receipt, Accepted; the input archived whole.
    let r = ws.receipt("big.xml");
    assert_eq!(outcome(&r), "Accepted", "{r}");
    assert_eq!(ws.names("outbox"), set(&["big.xml.receipt.xml"]));
    assert_eq!(ws.names("archive"), set(&["big.xml"]));
    assert_eq!(
        fs::metadata(ws.path("archive/big.xml")).unwrap().len(),
        input_size
    );
    assert!(ws.names("failed").is_empty());

    // One part; "Altinn" processed exactly one copy of it, whole.
    let parts = ws.parts();
    assert_eq!(parts, [(remote.clone(), bytes)]);
    assert!(bytes > 150_000_000, "{bytes}");
    let processed_dir = account.join("processed");
    assert_eq!(names(&processed_dir), set(&[remote.as_str()]));
    assert_eq!(
        fs::metadata(processed_dir.join(&remote)).unwrap().len(),
        bytes
    );
    let (refs, _) = processed(&account);
    let want: BTreeMap<String, usize> = (0..10).map(|i| (format!("BIG-0001-{i:08}"), 1)).collect();
    assert_eq!(refs, want);
    assert_eq!(decided, BTreeMap::from([(remote.clone(), 1)]));
    // Uploaded completely exactly once (by the daemon, after the restart).
    assert_eq!(log().matches(UPLOADED).count(), 1, "{}", log());
    assert!(!stderr(&out).contains(UPLOADED), "{}", stderr(&out));

    // The final name never held anything but the whole part.
    let s = seen.lock().unwrap();
    let killed_at = s.killed_at_bytes.unwrap();
    assert!(killed_at < bytes, "killed at {killed_at} of {bytes}");
    assert!(
        !s.finals.is_empty(),
        "the watcher never saw the final name (it polls every ms)"
    );
    for (name, size) in s.finals.keys() {
        assert_eq!(
            (name.as_str(), *size),
            (remote.as_str(), bytes),
            "a file under a final name with another size: {:?}",
            s.finals
        );
    }
    assert_upload_empty(&account);
    assert_receipts_empty(&account);
    eprintln!(
        "sshd_killed_during_a_large_upload: {bytes} bytes, killed at {killed_at} after {:.1} s, \
         done after {:.1} s",
        killed_after.as_secs_f64(),
        took.as_secs_f64()
    );
}

#[test]
fn upload_folder_without_write_permission_stops_once_and_loses_nothing() {
    let Some(server) =
        server("upload_folder_without_write_permission_stops_once_and_loses_nothing")
    else {
        return;
    };
    let account = server.account();
    let upload = account.join("upload");
    let ws = Workspace::new(&server);
    ws.write_config(&known_hosts_line(&server.path("SFTP_KNOWN_HOSTS")), "");
    let sim = Sim::start(&account, ws.path("sim.log"), &["--no-confirmations"]);
    let input = sample("valid/letters-bokmal.xml");
    ws.drop_file("bokmal.xml", &input);

    // The account (not root: sshd drops to the test user) may not write there.
    fs::set_permissions(&upload, fs::Permissions::from_mode(0o555)).unwrap();
    let started = Instant::now();
    let out = ws.run_once("60s");
    let took = started.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(20), "took {took:?}: {err}");
    assert!(
        err.to_lowercase().contains("permission denied"),
        "no permission message: {err}"
    );
    assert!(err.contains("upload"), "the folder is not named: {err}");

    assert_upload_empty(&account);
    assert!(names(&account.join("processed")).is_empty());
    assert!(ws.names("outbox").is_empty(), "{:?}", ws.names("outbox"));
    assert!(ws.names("archive").is_empty());
    assert!(ws.names("failed").is_empty());
    let staged = ws.names("state/staging");
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert_eq!(
        fs::read(ws.path("state/staging").join(staged.first().unwrap())).unwrap(),
        input
    );
    let (text, json) = ws.status();
    let line = text
        .lines()
        .find(|l| l.contains("bokmal.xml"))
        .unwrap_or_else(|| panic!("status does not list the file:\n{text}"));
    assert!(line.contains("Packaged"), "{line}");
    assert!(line.to_lowercase().contains("permission denied"), "{line}");
    assert_eq!(json[0]["state"], "packaged", "{json}");
    let reason = json[0]["reason"].as_str().unwrap_or("").to_lowercase();
    assert!(reason.contains("permission denied"), "{json}");

    // The operator fixes the folder: the same file goes through, once.
    fs::set_permissions(&upload, fs::Permissions::from_mode(0o755)).unwrap();
    let out = ws.run_once("60s");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let decided = sim.stop();
    let r = ws.receipt("bokmal.xml");
    assert_eq!(outcome(&r), "Accepted", "{r}");
    assert_eq!(ws.names("outbox"), set(&["bokmal.xml.receipt.xml"]));
    assert_eq!(ws.names("archive"), set(&["bokmal.xml"]));
    let remote = tag(&r, "RemoteName")[0].to_string();
    assert_eq!(names(&account.join("processed")), set(&[remote.as_str()]));
    assert_eq!(decided, BTreeMap::from([(remote, 1)]));
    let (refs, _) = processed(&account);
    assert_eq!(refs.len(), 4, "{refs:?}");
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");
    assert_upload_empty(&account);
    assert_receipts_empty(&account);
}
