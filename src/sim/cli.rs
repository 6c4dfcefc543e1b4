//! `dpv-batch sim`: the simulator as a command. See the parent module for
//! the folder contract and what is simulated.
//!
//! Stopping: SIGINT/SIGTERM set a flag that the poll loop checks (a second
//! signal exits at once), and so does a file `.sim/stop` under the root.
//! Std has no signal API and tokio would be a whole runtime for one flag,
//! so the handler is installed with libc's `signal` directly (Unix only).

use std::path::PathBuf;
use std::process::ExitCode;
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
        signals::install();
        run_observed(&args.root, opts, signals::flag(), &mut print)
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

#[cfg(unix)]
mod signals {
    use std::ffi::c_int;
    use std::sync::atomic::{AtomicBool, Ordering};

    static STOP: AtomicBool = AtomicBool::new(false);

    const SIGINT: c_int = 2;
    const SIGTERM: c_int = 15;

    extern "C" {
        fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
        fn _exit(status: c_int) -> !;
    }

    extern "C" fn on_signal(_: c_int) {
        // Only async-signal-safe work here: an atomic swap, or _exit.
        if STOP.swap(true, Ordering::SeqCst) {
            // SAFETY: _exit is async-signal-safe.
            unsafe { _exit(130) }
        }
    }

    pub fn install() {
        // SAFETY: the handler only touches an atomic (or calls _exit), which
        // is allowed in a signal handler.
        unsafe {
            signal(SIGINT, on_signal);
            signal(SIGTERM, on_signal);
        }
    }

    pub fn flag() -> &'static AtomicBool {
        &STOP
    }
}

#[cfg(not(unix))]
mod signals {

    static STOP: AtomicBool = AtomicBool::new(false);

    pub fn install() {}

    pub fn flag() -> &'static AtomicBool {
        &STOP
    }
}
