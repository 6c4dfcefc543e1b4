//! `dpv-batch sim`: the simulator as a command. See the parent module for
//! the folder contract and what is simulated.
//!
//! Stopping: SIGINT/SIGTERM set a flag that the poll loop checks (a second
//! signal exits at once), and so does a file `.sim/stop` under the root.
//! Std has no signal API and tokio would be a whole runtime for one flag,
//! so signal-hook's `flag` module sets it (no `unsafe` of our own).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{run_observed, SimOptions, Simulator, StepReport};

/// Arguments of `dpv-batch sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// The simulated Altinn area: upload/, receipts/, processed/,
    /// confirmations/ and the simulator's state in .sim/ (created if missing).
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Process everything due now (batches, then confirmations) and exit.
    #[arg(long)]
    pub once: bool,
    /// Pause between two looks at upload/, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub poll_ms: u64,
    /// Skip files modified less than this many milliseconds ago.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub settle_ms: u64,
    /// Answer a batch only once it has sat this many milliseconds in upload/.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub receipt_delay_ms: u64,
    /// Write read confirmations this many milliseconds after a batch was
    /// processed.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub confirm_delay_ms: u64,
    /// Write no read confirmations.
    #[arg(long)]
    pub no_confirmations: bool,
    /// Reject every letter to this reportee (repeatable).
    #[arg(long = "reject-reportee", value_name = "ORGNR")]
    pub reject_reportees: Vec<String>,
}

impl SimArgs {
    /// The library options these arguments stand for.
    pub fn options(&self) -> SimOptions {
        SimOptions {
            settle: Duration::from_millis(self.settle_ms),
            receipt_delay: Duration::from_millis(self.receipt_delay_ms),
            confirm_delay: (!self.no_confirmations)
                .then(|| Duration::from_millis(self.confirm_delay_ms)),
            poll: Duration::from_millis(self.poll_ms),
            reject_reportees: self.reject_reportees.clone(),
            ..SimOptions::default()
        }
    }
}

/// Run `dpv-batch sim`. Exit 0 when stopped (or after `--once`), 2 on an
/// error (the message says what and where).
pub fn main(args: SimArgs) -> ExitCode {
    let opts = args.options();
    let result = if args.once {
        Simulator::new(&args.root, opts)
            .and_then(|mut sim| sim.step())
            .map(|report| print(&report))
    } else {
        match stop_on_signals() {
            Ok(stop) => run_observed(&args.root, opts, stop, &mut print),
            Err(e) => {
                eprintln!("dpv-batch sim: cannot handle SIGINT/SIGTERM: {e}");
                return ExitCode::from(2);
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dpv-batch sim: {e}");
            ExitCode::from(2)
        }
    }
}

fn print(report: &StepReport) {
    for line in &report.log {
        println!("{line}");
    }
}

/// SIGINT and SIGTERM set the stop flag; a second one, with the flag already
/// set, exits at once with 130 (signal-hook does both in async-signal-safe
/// code: an atomic store, or `_exit`).
fn stop_on_signals() -> std::io::Result<&'static AtomicBool> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    static STOP: AtomicBool = AtomicBool::new(false);
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the earlier signal left it.
        flag::register_conditional_shutdown(signal, 130, &STOP)?;
        flag::register(signal, &STOP)?;
    }
    Ok(&STOP)
}
