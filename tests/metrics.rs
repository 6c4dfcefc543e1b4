//! Monitoring end to end: the real daemon (`dpv-batch run`) with
//! `[metrics] listen`, scraped over real HTTP; the Altinn II simulator as
//! Altinn; `status` and `status --check` read the real journal while the
//! daemon runs. Every wait polls with a deadline.

mod common;
use common::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (bound and released; nothing else here takes ports).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// A workspace with the local transport (`altinn/`) and `[metrics]` on a free port.
struct Workspace {
    dir: tempfile::TempDir,
    port: u16,
}

impl Workspace {
    fn new(transport: &str, run: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
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
{transport}
[run]
poll_ms = 50
{run}
[metrics]
listen = "127.0.0.1:{port}"
"#
        );
        fs::write(dir.path().join("dpv.toml"), config).expect("config");
        for sub in ["inbox", "altinn"] {
            fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        Workspace { dir, port }
    }

    fn local(run: &str) -> Workspace {
        Workspace::new(
            "[transport]\nkind = \"local\"\n[transport.local]\nroot = \"altinn\"",
            run,
        )
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn config(&self) -> PathBuf {
        self.path("dpv.toml")
    }

    /// Drop `n` distinct valid batches of `letters` letters each.
    fn drop_batches(&self, n: usize, letters: u64) {
        for i in 1..=n {
            let spec = dpv_batch::gen::Spec {
                shipment_reference: format!("M-{i:04}"),
                reference_prefix: format!("M-{i:04}-"),
                letters,
                ..dpv_batch::gen::Spec::default()
            };
            let mut bytes = Vec::new();
            dpv_batch::gen::write_batch(&spec, &mut bytes).expect("gen");
            drop_careful(&self.path("inbox"), &format!("b{i:04}.xml"), &bytes);
        }
    }

    fn sim(&self) -> Killed {
        let child = Command::new(bin())
            .args(["sim", "--poll-ms", "10", "--no-confirmations", "--root"])
            .arg(self.path("altinn"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sim");
        Killed(child)
    }

    /// `dpv-batch run` (the daemon), its log in `run.log`.
    fn daemon(&self) -> Killed {
        let log = fs::File::create(self.path("run.log")).expect("log");
        let child = Command::new(bin())
            .args(["run", "--config"])
            .arg(self.config())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start run");
        Killed(child)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("run.log")).unwrap_or_default()
    }

    /// GET `path` on the metrics endpoint: (status, body), or None while
    /// nothing answers.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        let r = client
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .ok()?;
        let code = r.status().as_u16();
        Some((code, r.text().ok()?))
    }

    fn scrape(&self) -> String {
        match self.get("/metrics") {
            Some((200, body)) => body,
            other => panic!("/metrics: {other:?}"),
        }
    }

    /// The value of the sample `series` (name and labels exactly as rendered).
    fn metric(&self, series: &str) -> Option<f64> {
        value(&self.scrape(), series)
    }

    fn status(&self) -> String {
        let out = Command::new(bin())
            .args(["status", "--config"])
            .arg(self.config())
            .output()
            .expect("status");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `status --check`: (exit code, stdout).
    fn check(&self) -> (i32, String) {
        check(&self.config())
    }
}

fn check(config: &Path) -> (i32, String) {
    let out = Command::new(bin())
        .args(["status", "--check", "--config"])
        .arg(config)
        .output()
        .expect("status --check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A child process killed (and reaped) when dropped.
struct Killed(Child);

impl Killed {
    /// SIGTERM, and wait for the clean exit.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn scrape_counts_files_and_letters_exactly_and_health_follows_the_transport() {
    let ws = Workspace::local("");
    let sim = ws.sim();
    let daemon = ws.daemon();
    wait_for("/health to answer 200", Duration::from_secs(30), || {
        matches!(ws.get("/health"), Some((200, _)))
    });
    assert_eq!(ws.get("/health"), Some((200, "ok\n".to_string())));

    ws.drop_batches(5, 3);
    wait_for("5 files done", Duration::from_secs(60), || {
        ws.metric("dpv_batch_files{state=\"done\"}") == Some(5.0)
    });
    let m = ws.scrape();
    for (series, expected) in [
        ("dpv_batch_files{state=\"done\"}", 5.0),
        ("dpv_batch_files{state=\"received\"}", 0.0),
        ("dpv_batch_files{state=\"staged\"}", 0.0),
        ("dpv_batch_files{state=\"packaged\"}", 0.0),
        ("dpv_batch_files{state=\"submitted\"}", 0.0),
        ("dpv_batch_files{state=\"finishing\"}", 0.0),
        ("dpv_batch_letters_sent_total", 15.0),
        ("dpv_batch_letters_accepted_total", 15.0),
        ("dpv_batch_letters_refused_total", 0.0),
        ("dpv_batch_receipts_overdue", 0.0),
        ("dpv_batch_transport_up", 1.0),
        (
            &format!(
                "dpv_batch_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
    ] {
        assert_eq!(value(&m, series), Some(expected), "{series} in\n{m}");
    }
    // Bytes sent: exactly the five parts in the transport's folder.
    let uploaded: u64 = files(&ws.path("altinn/processed"), &[".xml"])
        .iter()
        .chain(files(&ws.path("altinn/upload"), &[".xml"]).iter())
        .map(|p| fs::metadata(p).expect("part").len())
        .sum();
    assert_eq!(
        value(&m, "dpv_batch_sent_bytes_total"),
        Some(uploaded as f64),
        "{m}"
    );
    // The histograms: every tick and every upload is counted.
    assert!(value(&m, "dpv_batch_tick_duration_seconds_count").unwrap_or(0.0) >= 1.0);
    assert_eq!(
        value(&m, "dpv_batch_upload_duration_seconds_count"),
        Some(5.0),
        "{m}"
    );
    assert!(
        m.contains("dpv_batch_tick_duration_seconds_bucket{le=\"0.005\"}"),
        "{m}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = value(&m, "dpv_batch_last_successful_tick_timestamp_seconds").unwrap_or(0.0);
    assert!((now - last).abs() < 60.0, "last tick {last}, now {now}");

    let (code, line) = ws.check();
    assert_eq!(
        (code, line.as_str()),
        (
            0,
            "DPV-BATCH OK - 0 file(s) in progress, 5 done | files_open=0 overdue=0 letters_overdue=0\n"
        )
    );

    // Break the transport: its receipts folder becomes a file, so listing
    // it fails (a transient error: retried with backoff).
    drop(sim);
    let receipts = ws.path("altinn/receipts");
    fs::remove_dir_all(&receipts).expect("rm receipts");
    fs::write(&receipts, "not a folder").expect("file");
    wait_for("/health to say 503", Duration::from_secs(30), || {
        matches!(ws.get("/health"), Some((503, _)))
    });
    let (_, body) = ws.get("/health").expect("health");
    assert!(
        body.starts_with("transport down: cannot list ") && body.contains("receipts"),
        "{body}"
    );
    assert_eq!(body.lines().count(), 1, "{body}");
    assert_eq!(ws.metric("dpv_batch_transport_up"), Some(0.0));
    let (code, line) = ws.check();
    assert_eq!(code, 1, "{line}");
    assert!(
        line.starts_with("DPV-BATCH WARNING - transport: cannot list "),
        "{line}"
    );

    // Mended: healthy again (within the backoff, a few seconds).
    fs::remove_file(&receipts).expect("rm file");
    fs::create_dir(&receipts).expect("mkdir");
    wait_for("/health to say 200 again", Duration::from_secs(60), || {
        matches!(ws.get("/health"), Some((200, _)))
    });
    assert_eq!(ws.metric("dpv_batch_transport_up"), Some(1.0));
    wait_for("status --check OK again", Duration::from_secs(30), || {
        ws.check().0 == 0
    });
    daemon.stop();
}

#[test]
fn a_receipt_that_does_not_come_is_overdue_once_in_the_log_and_in_status() {
    // No simulator: nobody answers the part.
    let ws = Workspace::local("receipt_deadline = \"1s\"");
    let daemon = ws.daemon();
    ws.drop_batches(1, 2);
    wait_for("an overdue receipt", Duration::from_secs(30), || {
        ws.get("/metrics")
            .is_some_and(|(_, m)| value(&m, "dpv_batch_receipts_overdue") == Some(1.0))
    });
    // Many more ticks go by: still overdue, still warned about once.
    let ticks = |ws: &Workspace| {
        ws.metric("dpv_batch_tick_duration_seconds_count")
            .unwrap_or(0.0)
    };
    let seen = ticks(&ws);
    wait_for("20 more ticks", Duration::from_secs(30), || {
        ticks(&ws) >= seen + 20.0
    });
    assert_eq!(ws.metric("dpv_batch_receipts_overdue"), Some(1.0));
    assert_eq!(ws.metric("dpv_batch_files{state=\"submitted\"}"), Some(1.0));
    assert_eq!(
        ws.log().matches("receipt overdue").count(),
        1,
        "{}",
        ws.log()
    );

    let status = ws.status();
    assert!(
        status.contains(
            "receipts overdue: 1 part(s) of 1 file(s) without Altinn's receipt past run.receipt_deadline:\n  b0001.xml (id 1): 1 part(s), the first "
        ),
        "{status}"
    );
    let (code, line) = ws.check();
    assert_eq!(code, 1, "{line}");
    assert!(
        line.starts_with("DPV-BATCH WARNING - 1 receipt(s) overdue (oldest "),
        "{line}"
    );
    assert!(
        line.ends_with(" | files_open=1 overdue=1 letters_overdue=0\n"),
        "{line}"
    );

    // Altinn answers after all: nothing overdue, the check is OK.
    let _sim = ws.sim();
    wait_for("the file done", Duration::from_secs(30), || {
        ws.metric("dpv_batch_files{state=\"done\"}") == Some(1.0)
    });
    wait_for("nothing overdue", Duration::from_secs(30), || {
        ws.metric("dpv_batch_receipts_overdue") == Some(0.0)
    });
    assert_eq!(ws.metric("dpv_batch_letters_accepted_total"), Some(2.0));
    assert!(!ws.status().contains("receipts overdue"));
    assert_eq!(ws.check().0, 0);
    daemon.stop();
    assert_eq!(
        ws.log().matches("receipt overdue").count(),
        1,
        "{}",
        ws.log()
    );
}

#[test]
fn a_transport_that_needs_an_operator_is_critical_and_unhealthy() {
    let Some(server) = common::sftp::server(
        "metrics::a_transport_that_needs_an_operator_is_critical_and_unhealthy",
    ) else {
        return;
    };
    // The upload folder does not exist on the server: a configuration
    // problem, permanent (retrying cannot fix it).
    let transport = format!(
        r#"[transport]
kind = "sftp"
[transport.sftp]
host = "127.0.0.1"
port = {port}
user = "{user}"
private_key = "{key}"
known_hosts = "{kh}"
upload_dir = "no-such-folder"
connect_timeout_ms = 5000
retry_ms = 50
retry_max_ms = 200"#,
        port = server.port(),
        user = server.get("SFTP_USER"),
        key = server.path("SFTP_KEY").display(),
        kh = server.path("SFTP_KNOWN_HOSTS").display(),
    );
    let ws = Workspace::new(&transport, "");
    let daemon = ws.daemon();
    ws.drop_batches(1, 2);
    wait_for("status --check CRITICAL", Duration::from_secs(60), || {
        ws.check().0 == 2
    });
    let (_, line) = ws.check();
    assert!(
        line.starts_with("DPV-BATCH CRITICAL - transport stopped since ")
            && line.contains("an operator must act")
            && line.contains("no-such-folder")
            && line.ends_with(" | files_open=1 overdue=0 letters_overdue=0\n"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");
    let (code, body) = ws.get("/health").expect("health");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.starts_with("transport stopped, an operator must act: ")
            && body.contains("no-such-folder"),
        "{body}"
    );
    assert_eq!(ws.metric("dpv_batch_transport_up"), Some(0.0));
    daemon.stop();
}

#[test]
fn a_port_in_use_stops_the_start_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let mut ws = Workspace::local("");
    ws.port = port;
    let text = fs::read_to_string(ws.config())
        .expect("config")
        .lines()
        .map(|l| {
            if l.starts_with("listen = ") {
                format!("listen = \"127.0.0.1:{port}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(ws.config(), text).expect("config");
    let out = Command::new(bin())
        .args(["run", "--config"])
        .arg(ws.config())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "dpv-batch: cannot serve [metrics] on 127.0.0.1:{port} (is another process using it?): Address already in use"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_is_unknown_without_a_config_or_a_journal() {
    let ws = Workspace::local("");
    let (code, line) = check(&ws.path("missing.toml"));
    assert_eq!(code, 3, "{line}");
    assert!(
        line.starts_with("DPV-BATCH UNKNOWN - cannot read the config: "),
        "{line}"
    );
    let (code, line) = ws.check();
    assert_eq!(code, 3, "{line}");
    assert!(
        line.starts_with("DPV-BATCH UNKNOWN - no journal at "),
        "{line}"
    );
}
