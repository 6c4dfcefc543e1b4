//! `dpv-batch demo`: the whole product in one command, on an embedded default.
//!
//! It makes a workspace (inbox, outbox, failed, archive, state, and a folder
//! standing in for Altinn), writes a config using the local transport, runs
//! the Altinn simulator in a thread, drops the embedded samples into the
//! inbox, runs the pipeline until every file has its final receipt, and
//! prints what happened and where to look. The samples are built into the
//! binary, so it runs from any directory.
//!
//! `--transport altinn3` does the same through Altinn 3: `dpv-batch
//! sim-altinn3` runs as a child of this process on a free port (with the
//! test key pair built into the binary; never a real key), the config's
//! `[transport.altinn3]` points at it, and every letter is a REST call.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::daemon::{self, Ended};
use crate::durable;
use crate::sim::{self, SimOptions};

/// Marks a folder as a demo workspace, so a second demo may clear it.
const MARKER: &str = ".dpv-demo";
/// The simulated Altinn refuses letters to this organisation, to show a
/// partially accepted file.
const REFUSED_REPORTEE: &str = "874391506";

const SAMPLES: &[(&str, &[u8])] = &[
    (
        "nightly-bokmal.xml",
        include_bytes!("../samples/valid/letters-bokmal.xml"),
    ),
    (
        "nynorsk-english.xml",
        include_bytes!("../samples/valid/letters-nynorsk-english.xml"),
    ),
    (
        "legacy-latin1.xml",
        include_bytes!("../samples/valid/latin1.xml"),
    ),
    (
        "utf16-export.xml",
        include_bytes!("../samples/valid/utf16le.xml"),
    ),
    (
        "export-package.zip",
        include_bytes!("../samples/valid/export-package.zip"),
    ),
    (
        "wrong-orgnr.xml",
        include_bytes!("../samples/invalid/dpv003-bad-reportee.xml"),
    ),
    (
        "hostile-xxe.xml",
        include_bytes!("../samples/invalid/xxe.xml"),
    ),
    // The same content as the first file, dropped again: refused as a duplicate.
    (
        "nightly-bokmal-again.xml",
        include_bytes!("../samples/valid/letters-bokmal.xml"),
    ),
];

/// Drop the samples into the inbox, each with a modification time a second
/// after the one before: files are taken in oldest first, so the demo's
/// story (the original, then its duplicate) does not depend on two files
/// written in the same instant sorting by name.
fn drop_samples(inbox: &Path) -> Result<(), String> {
    let first = std::time::SystemTime::now() - Duration::from_secs(SAMPLES.len() as u64 + 1);
    for (i, (name, bytes)) in SAMPLES.iter().enumerate() {
        let path = inbox.join(name);
        durable::write_atomic(&path, bytes).map_err(|e| e.to_string())?;
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(first + Duration::from_secs(i as u64)))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn prepare(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        let is_demo = dir.join(MARKER).exists();
        let empty = fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !is_demo && !empty {
            return Err(format!(
                "{} exists and is not a demo workspace; give another --dir",
                dir.display()
            ));
        }
        fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    for sub in ["inbox", "outbox", "failed", "archive", "state", "altinn"] {
        fs::create_dir_all(dir.join(sub))
            .map_err(|e| format!("cannot create {}/{sub}: {e}", dir.display()))?;
    }
    fs::write(dir.join(MARKER), "").map_err(|e| e.to_string())?;
    // On a terminal only warnings are shown (the table below must not
    // scroll away); the whole log goes here.
    let log = dir.join(LOG_FILE);
    if crate::logging::also_to_file(&log)
        .map_err(|e| format!("cannot write {}: {e}", log.display()))?
    {
        println!("dpv-batch demo: the whole log is in {}", log.display());
    }
    Ok(())
}

/// The demo's log file in its workspace (see `prepare`).
const LOG_FILE: &str = "dpv-batch.log";

const CONFIG: &str = r#"# dpv-batch demo configuration (paths are relative to this file)
[paths]
inbox = "inbox"
outbox = "outbox"
failed = "failed"
archive = "archive"
state = "state"

[intake]
ready = "rename"      # the demo drops files under a temporary name and renames them

[sender]
system_user_code = "ABC-123"
sequence_numbers = true

[transport]
kind = "local"
[transport.local]
root = "altinn"       # the simulated Altinn reads and writes here

[run]
poll_ms = 100
"#;

/// Which transport the demo shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoTransport {
    /// Altinn II's batch area as a folder, with `dpv-batch sim`.
    Local,
    /// Altinn 3's Correspondence API, with `dpv-batch sim-altinn3`.
    Altinn3,
}

/// Run the demo in `dir` over `transport`; returns the process exit code.
pub fn run_with(dir: &Path, transport: DemoTransport) -> Result<u8, String> {
    match transport {
        DemoTransport::Local => run(dir),
        DemoTransport::Altinn3 => run_altinn3(dir),
    }
}

/// The throwaway test key pair (tests/fixtures/altinn3): the demo's
/// "Maskinporten client". Never a real key.
const TEST_KEY: &[u8] = include_bytes!("../tests/fixtures/altinn3/client.pem");
const TEST_PUBLIC_KEY: &[u8] = include_bytes!("../tests/fixtures/altinn3/client.pub.pem");

/// The simulator as a child process, stopped when dropped.
struct SimChild(Child);

impl Drop for SimChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The demo over Altinn 3.
fn run_altinn3(dir: &Path) -> Result<u8, String> {
    prepare(dir)?;
    let dir = dir.canonicalize().map_err(|e| e.to_string())?;
    let sim_root = dir.join("altinn3");
    let key = dir.join("client.pem");
    let public = dir.join("client.pub.pem");
    fs::write(&key, TEST_KEY).map_err(|e| e.to_string())?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    fs::write(&public, TEST_PUBLIC_KEY).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let _sim = SimChild(
        Command::new(exe)
            .arg("sim-altinn3")
            .args(["--listen", "127.0.0.1:0", "--root"])
            .arg(&sim_root)
            .arg("--client-key")
            .arg(&public)
            .args(["--unknown-recipient", REFUSED_REPORTEE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the Altinn 3 simulator: {e}"))?,
    );
    let started = std::time::Instant::now();
    let sim_toml = loop {
        match fs::read_to_string(sim_root.join("sim.toml")) {
            Ok(t) if t.lines().count() >= 4 => break t,
            _ if started.elapsed() > Duration::from_secs(30) => {
                return Err("the Altinn 3 simulator did not start".into())
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let config = CONFIG
        .replace("sequence_numbers = true\n", "")
        .replace(
            "kind = \"local\"\n[transport.local]\nroot = \"altinn\"       # the simulated Altinn reads and writes here\n",
            &format!(
                "kind = \"altinn3\"\n[transport.altinn3]\nenvironment = \"custom\"   # the simulator: its sim.toml gave the four URLs\n\
                 route = \"direct\"\n{sim_toml}client_id = \"dpv-batch-demo\"\n\
                 private_key = \"client.pem\"   # the TEST key built into dpv-batch\n\
                 key_id = \"demo\"\npoll_interval = \"1s\"\n\
                 [transport.altinn3.resources]\n\"4255\" = \"eformidling-dpv-administrasjon\"\n\
                 \"5504\" = {{ resource = \"eformidling-dpv-taushetsbelagt\", confidential = true }}\n"
            ),
        );
    let config_path = dir.join("dpv-batch.toml");
    fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let cfg = Config::load_checked(&config_path).map_err(|e| e.to_string())?;
    drop_samples(&cfg.paths.inbox)?;
    println!(
        "dpv-batch demo: {} files dropped into {}, sent through Altinn 3 (simulated at {})",
        SAMPLES.len(),
        cfg.paths.inbox.display(),
        sim_toml
            .lines()
            .next()
            .and_then(|l| l.split('"').nth(1))
            .unwrap_or("?")
    );
    let ended = daemon::run_showing_progress(
        cfg.clone(),
        Some(daemon::Once {
            timeout: Duration::from_secs(60),
        }),
    )
    .map_err(|e| e.to_string())?;
    print_summary(&dir, &cfg, &sim_root.join("correspondences"))?;
    Ok(match ended {
        Ended::AllDone | Ended::Stopped => 0,
        Ended::TimedOut(_) => 3,
    })
}

/// Run the demo in `dir`; returns the process exit code.
pub fn run(dir: &Path) -> Result<u8, String> {
    prepare(dir)?;
    let dir = dir.canonicalize().map_err(|e| e.to_string())?;
    let config_path = dir.join("dpv-batch.toml");
    fs::write(&config_path, CONFIG).map_err(|e| e.to_string())?;
    let cfg = Config::load_checked(&config_path).map_err(|e| e.to_string())?;

    // Altinn, simulated, on its own thread (its validator is not Send).
    let stop = Arc::new(AtomicBool::new(false));
    let sim_root = dir.join("altinn");
    let sim_stop = stop.clone();
    let sim_thread = std::thread::spawn(move || {
        let opts = SimOptions {
            poll: Duration::from_millis(50),
            confirm_delay: Some(Duration::from_millis(300)),
            reject_reportees: vec![REFUSED_REPORTEE.to_string()],
            ..SimOptions::default()
        };
        sim::run(&sim_root, opts, &sim_stop).map_err(|e| e.to_string())
    });

    drop_samples(&cfg.paths.inbox)?;
    println!(
        "dpv-batch demo: {} files dropped into {}",
        SAMPLES.len(),
        cfg.paths.inbox.display()
    );
    let ended = daemon::run_showing_progress(
        cfg.clone(),
        Some(daemon::Once {
            timeout: Duration::from_secs(60),
        }),
    );
    // Give the simulator a moment to send read confirmations, then a last pass.
    std::thread::sleep(Duration::from_millis(600));
    let _ = daemon::run(
        cfg.clone(),
        Some(daemon::Once {
            timeout: Duration::from_secs(5),
        }),
    );
    stop.store(true, Ordering::SeqCst);
    let sim_result = sim_thread
        .join()
        .map_err(|_| "the simulator thread panicked".to_string())?;
    sim_result?;
    let ended = ended.map_err(|e| e.to_string())?;

    print_summary(&dir, &cfg, &dir.join("altinn/processed"))?;
    Ok(match ended {
        Ended::AllDone | Ended::Stopped => 0,
        Ended::TimedOut(_) => 3,
    })
}

fn print_summary(dir: &Path, cfg: &Config, received: &Path) -> Result<(), String> {
    let rows = crate::status::rows(cfg).map_err(|e| e.to_string())?;
    println!();
    println!("{:<26} {:<18} {:>7}  WHY", "FILE", "OUTCOME", "LETTERS");
    for r in rows.iter().rev() {
        let outcome = r.outcome.map(|o| o.as_str()).unwrap_or("(pending)");
        let mut why = r.reason.clone().unwrap_or_default();
        if why.len() > 90 {
            let cut = (0..=90)
                .rev()
                .find(|&i| why.is_char_boundary(i))
                .unwrap_or(0);
            why.truncate(cut);
            why.push('…');
        }
        println!("{:<26} {:<18} {:>7}  {}", r.name, outcome, r.letters, why);
    }
    let count = |p: &PathBuf| fs::read_dir(p).map(|d| d.count()).unwrap_or(0);
    println!();
    println!("Where to look:");
    println!(
        "  receipts for the fagsystem  {}  ({} files)",
        cfg.paths.outbox.display(),
        count(&cfg.paths.outbox)
    );
    println!(
        "  sent inputs                 {}",
        cfg.paths.archive.display()
    );
    println!(
        "  rejected inputs + reasons   {}  (NAME.errors.txt)",
        cfg.paths.failed.display()
    );
    println!("  what Altinn received        {}", received.display());
    println!(
        "  the config                  {}",
        dir.join("dpv-batch.toml").display()
    );
    println!(
        "  status                      dpv-batch status --config {}",
        dir.join("dpv-batch.toml").display()
    );
    Ok(())
}
