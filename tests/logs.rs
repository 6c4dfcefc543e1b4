//! Logs an operator can use (issue 9, "Logs"), from the real binary:
//! JSON lines that parse and carry each file's id; journald priority
//! prefixes only when `JOURNAL_STREAM` names the stream standard error
//! really is; a bad `RUST_LOG` refused; one start-up line; a transport
//! outage logged once when it starts and once when it ends; and progress
//! only on a terminal.

mod common;
use common::*;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Poll `f` until it holds or `limit` passes.
fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A workspace with a local transport and `extra` appended to the config.
fn workspace(dir: &Path, extra: &str) -> PathBuf {
    let config = dir.join("dpv-batch.toml");
    fs::write(
        &config,
        format!(
            r#"[paths]
inbox = "inbox"
outbox = "outbox"
failed = "failed"
archive = "archive"
state = "state"

[sender]
system_user_code = "ABC-123"

[transport]
kind = "local"
[transport.local]
root = "altinn"

[run]
poll_ms = 100
{extra}"#
        ),
    )
    .unwrap();
    config
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `run --once` on an empty inbox (ends at once); its stderr lines.
fn run_once_empty(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = Command::new(bin());
    cmd.env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .args(["run", "--once", "--config"])
        .arg(config)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run dpv-batch");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    lines(&out.stderr)
}

#[test]
fn json_lines_parse_and_a_files_lines_carry_its_id() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .env_remove("RUST_LOG")
        .args(["demo", "--log-format", "json", "--dir"])
        .arg(tmp.path().join("demo"))
        .output()
        .expect("run the demo");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let events: Vec<serde_json::Value> = lines(&out.stderr)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(events.len() > 20, "{events:?}");
    for e in &events {
        assert!(e["level"].is_string() && e["message"].is_string(), "{e}");
        assert!(e["timestamp"].is_string(), "{e}");
    }
    // The first file's id, from the line that took it in.
    let taken = events
        .iter()
        .find(|e| e["message"] == "taken in" && e["file"] == "nynorsk-english.xml")
        .expect("a 'taken in' line");
    let id = &taken["span"]["id"];
    assert!(id.is_i64(), "{taken}");
    assert_eq!(taken["span"]["name"], "file");
    let story: Vec<&str> = events
        .iter()
        .filter(|e| &e["span"]["id"] == id)
        .filter_map(|e| e["message"].as_str())
        .collect();
    for step in [
        "taken in", "packaged", "uploaded", "receipt", "final", "done",
    ] {
        assert!(
            story.contains(&step),
            "no '{step}' line with id {id}: {story:?}"
        );
    }
    // And no other file's line is in it.
    assert!(events
        .iter()
        .filter(|e| &e["span"]["id"] == id)
        .all(|e| e["file"].is_null() || e["file"] == "nynorsk-english.xml"));
}

#[test]
fn one_start_up_line_and_the_configs_format_which_the_flag_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let config = workspace(tmp.path(), "[log]\nformat = \"json\"\n");
    // The config says JSON.
    let json = run_once_empty(&config, &[], &[]);
    let start: Vec<serde_json::Value> = json
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|e: &serde_json::Value| e["message"] == "dpv-batch running")
        .collect();
    assert_eq!(start.len(), 1, "{json:?}");
    let s = &start[0];
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["config"], config.display().to_string());
    assert_eq!(s["transport"], "local");
    assert_eq!(s["inbox"], tmp.path().join("inbox").display().to_string());
    assert_eq!(s["installation"].as_str().map(str::len), Some(16), "{s}");
    // The flag wins: text.
    let text = run_once_empty(&config, &["--log-format", "text"], &[]);
    let start: Vec<&String> = text
        .iter()
        .filter(|l| l.contains("dpv-batch running"))
        .collect();
    assert_eq!(start.len(), 1, "{text:?}");
    let expected = format!(
        "INFO dpv-batch running version={} config={} transport=local installation=",
        env!("CARGO_PKG_VERSION"),
        config.display()
    );
    assert!(start[0].contains(&expected), "{}", start[0]);
    assert!(text.iter().all(|l| !l.starts_with('{')), "{text:?}");
}

#[test]
fn a_bad_rust_log_is_an_error_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let config = workspace(tmp.path(), "");
    for args in [
        vec!["run", "--once", "--config", config.to_str().unwrap()],
        vec!["validate", "no-such-file.xml"],
    ] {
        let out = Command::new(bin())
            .env("RUST_LOG", "dpv_batch=loud")
            .args(&args)
            .output()
            .expect("run dpv-batch");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("dpv-batch: RUST_LOG='dpv_batch=loud' is not a log filter"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // Nothing ran: the state folder was never made.
    assert!(!tmp.path().join("state").exists());
}

#[test]
fn journald_prefixes_only_when_journal_stream_names_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let config = workspace(tmp.path(), "");
    // Not matching (another stream's dev:inode, or garbage): plain lines
    // with their timestamp.
    for value in ["1:1", "garbage"] {
        let plain = run_once_empty(&config, &[], &[("JOURNAL_STREAM", value)]);
        assert!(!plain.is_empty());
        for l in &plain {
            assert!(!l.starts_with('<'), "{value}: {l}");
            assert!(l.starts_with("20"), "no timestamp: {l}");
        }
    }
    // Matching: see the outage test, which runs with stderr in a file
    // whose dev:inode is in JOURNAL_STREAM.
}

/// A daemon with stderr in a file.
struct Daemon {
    child: std::process::Child,
    log: PathBuf,
}

impl Daemon {
    fn lines(&self) -> Vec<String> {
        lines(&fs::read(&self.log).unwrap_or_default())
    }

    fn count(&self, text: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(text)).count()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_outage_logs_once_when_it_starts_and_once_when_it_ends_with_journald_priorities() {
    let tmp = tempfile::tempdir().unwrap();
    let config = workspace(tmp.path(), "");
    let log = tmp.path().join("stderr.log");
    let stderr = fs::File::create(&log).unwrap();
    let meta = stderr.metadata().unwrap();
    let mut daemon = Daemon {
        child: Command::new(bin())
            // Debug for the pipeline: each failed try shows as "still down".
            .env("RUST_LOG", "info,dpv_batch::pipeline=debug")
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start dpv-batch"),
        log,
    };
    assert!(
        wait_for(Duration::from_secs(30), || daemon
            .count("dpv-batch running")
            == 1),
        "{:?}",
        daemon.lines()
    );
    // The local "Altinn" loses its receipts folder: every listing fails.
    let receipts = tmp.path().join("altinn/receipts");
    let away = tmp.path().join("altinn/receipts.away");
    fs::rename(&receipts, &away).unwrap();
    assert!(
        wait_for(Duration::from_secs(60), || daemon
            .count("transport still down")
            >= 3),
        "{:?}",
        daemon.lines()
    );
    fs::rename(&away, &receipts).unwrap();
    assert!(
        wait_for(Duration::from_secs(60), || daemon.count("transport back")
            == 1),
        "{:?}",
        daemon.lines()
    );
    let lines = daemon.lines();
    let down: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("transport down"))
        .collect();
    assert_eq!(down.len(), 1, "{lines:?}");
    assert!(
        down[0].starts_with("<4>WARN transport down") && down[0].contains("cannot list"),
        "{}",
        down[0]
    );
    let back: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("transport back"))
        .collect();
    assert!(
        back[0].starts_with("<6>INFO transport back") && back[0].contains("down_for="),
        "{}",
        back[0]
    );
    // Every line has its priority and no timestamp (journald stamps it).
    for l in &lines {
        assert!(
            ["<3>ERROR ", "<4>WARN ", "<6>INFO ", "<7>DEBUG "]
                .iter()
                .any(|p| l.starts_with(p)),
            "{l}"
        );
    }
    // Still exactly one of each after more quiet ticks.
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.child.id().to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let status = daemon.child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert_eq!(daemon.count("transport down"), 1);
    assert_eq!(daemon.count("transport back"), 1);
}

#[test]
fn no_progress_output_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .env_remove("RUST_LOG")
        .args(["demo", "--dir"])
        .arg(tmp.path().join("demo"))
        .output()
        .expect("run the demo");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(!bytes.contains(&0x1b), "an escape code in {what}");
        assert!(!bytes.contains(&b'\r'), "a carriage return in {what}");
    }
    let err = String::from_utf8_lossy(&out.stderr);
    // Logs as before (every line a log line), no summary line, no log file.
    assert!(err.lines().all(|l| l.contains(" INFO ")), "{err}");
    assert!(!err.contains("files,"), "{err}");
    assert!(!tmp.path().join("demo/dpv-batch.log").exists());
}

/// On a terminal (a pty from util-linux's `script`), the demo shows a bar
/// and a summary, and its INFO lines go to the log file in the workspace,
/// not above its table.
#[test]
fn on_a_terminal_the_demo_shows_progress_and_keeps_info_lines_in_its_log_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let command = format!("{} demo --dir {}", bin(), dir.display());
    let out = Command::new("script")
        .env_remove("RUST_LOG")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs the demo on a pty");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("run: 8 of 8 files, 17 letters,"), "{text}");
    assert!(text.contains("FILE "), "{text}");
    assert!(!text.contains(" INFO "), "{text}");
    let log = fs::read_to_string(dir.join("dpv-batch.log")).expect("the demo's log file");
    assert!(log.contains("INFO dpv-batch running"), "{log}");
    assert!(
        log.lines().filter(|l| l.contains("taken in")).count() == 8,
        "{log}"
    );
}

/// `validate` of many files: a bar and a summary on a terminal, nothing
/// but the reports otherwise.
#[test]
fn validate_of_many_files_shows_progress_only_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for i in 0..20 {
        let path = tmp.path().join(format!("batch-{i:02}.xml"));
        let out = Command::new(bin())
            .args([
                "gen",
                "--letters",
                "3",
                "--shipment",
                &format!("S-{i}"),
                "--out",
            ])
            .arg(&path)
            .output()
            .expect("gen");
        assert!(out.status.success(), "{out:?}");
        paths.push(path.display().to_string());
    }
    let plain = Command::new(bin())
        .arg("validate")
        .args(&paths)
        .output()
        .expect("validate");
    assert_eq!(plain.status.code(), Some(0), "{plain:?}");
    assert!(plain.stderr.is_empty(), "{plain:?}");
    assert_eq!(String::from_utf8_lossy(&plain.stdout).lines().count(), 20);

    let command = format!("{} validate {}", bin(), paths.join(" "));
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs validate on a pty");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("validate: 20 of 20 files, 60 letters,")
            && text.contains("20 valid, 0 invalid"),
        "{text}"
    );
    assert_eq!(text.matches(": valid (3 letters)").count(), 20, "{text}");
}

/// One event is one line in either format, whatever a name holds: the
/// JSON lines stay JSON and a name with a newline forges no line.
#[test]
fn a_hostile_name_stays_on_its_line_in_text_and_json() {
    let evil = "evil\nERROR forged\u{1b}[2J\u{202e}lmx.xml";
    let shown = r"evil\nERROR forged\x1b[2J\u{202e}lmx.xml";
    for format in ["json", "text"] {
        let tmp = tempfile::tempdir().unwrap();
        let config = workspace(tmp.path(), "");
        fs::create_dir_all(tmp.path().join("inbox")).unwrap();
        // Not a batch: rejected by validation, no transport needed.
        fs::write(tmp.path().join("inbox").join(evil), b"<x/>").unwrap();
        let lines = run_once_empty(&config, &["--log-format", format], &[]);
        assert!(lines.len() >= 3, "{lines:?}");
        for l in &lines {
            assert!(!l.contains('\u{1b}') && !l.contains('\u{202e}'), "{l}");
            assert!(!l.starts_with("ERROR forged"), "{l}");
        }
        if format == "json" {
            let events: Vec<serde_json::Value> = lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
                .collect();
            let taken = events
                .iter()
                .find(|e| e["message"] == "taken in")
                .expect("taken in");
            assert_eq!(taken["file"], shown, "{taken}");
            assert_eq!(taken["span"]["file"], shown, "{taken}");
        } else {
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains(&format!("taken in file={shown} "))),
                "{lines:?}"
            );
        }
    }
}
