//! `dpv-batch demo`: the whole product in one command, on an embedded default.
//!
//! It makes a workspace (inbox, outbox, failed, archive, state, and a folder
//! standing in for Altinn), writes a config using the local transport, runs
//! the Altinn simulator in a thread, drops the embedded samples into the
//! inbox, runs the pipeline until every file has its final receipt, and
//! prints what happened and where to look. The samples are built into the
//! binary, so it runs from any directory.

use std::fs;
use std::path::{Path, PathBuf};
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
    Ok(())
}

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

    for (name, bytes) in SAMPLES {
        durable::write_atomic(&cfg.paths.inbox.join(name), bytes).map_err(|e| e.to_string())?;
    }
    println!(
        "dpv-batch demo: {} files dropped into {}",
        SAMPLES.len(),
        cfg.paths.inbox.display()
    );
    let ended = daemon::run(
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

    print_summary(&dir, &cfg)?;
    Ok(match ended {
        Ended::AllDone | Ended::Stopped => 0,
        Ended::TimedOut(_) => 3,
    })
}

fn print_summary(dir: &Path, cfg: &Config) -> Result<(), String> {
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
    println!(
        "  what Altinn received        {}",
        dir.join("altinn/processed").display()
    );
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
