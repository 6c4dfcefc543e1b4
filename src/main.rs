//! The `dpv-batch` command line: one binary, one subcommand per job.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use dpv_batch::config::LogFormat;
use dpv_batch::gen;
use dpv_batch::sim::cli::SimArgs;
use dpv_batch::sim_altinn3::cli::SimAltinn3Args;
use dpv_batch::validate::{report, Options, Validator};

#[derive(Parser)]
#[command(
    name = "dpv-batch",
    version,
    about = "Digital Post til Virksomheter through Altinn, from a folder"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text (key=value) or JSON (one object a line); wins
    /// over the config's `[log] format`.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<Format>,
}

#[derive(Clone, Copy, ValueEnum)]
enum DemoTransport {
    Local,
    Altinn3,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Altinn2,
    Altinn3,
}

#[derive(Subcommand)]
enum Command {
    /// Check batch files (XML or export-package .zip): reading, Altinn's XSD,
    /// and the DPV rules. Exit 0: all valid; 1: some invalid; 2: usage or I/O error.
    #[command(display_order = 5)]
    Validate {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Use this XSD instead of the embedded Altinn correspondence schema.
        #[arg(long, value_name = "FILE")]
        schema: Option<PathBuf>,
        /// Largest attachment accepted, in bytes (decoded).
        #[arg(long, value_name = "BYTES", default_value_t = 100 * 1024 * 1024)]
        max_attachment_bytes: u64,
        /// List at most this many errors per file (all are counted).
        #[arg(long, default_value_t = 1000)]
        max_errors: usize,
        /// What the files must be fit for: altinn2 (the batch itself), or
        /// altinn3 (also the A3 rules: what Altinn 3 would refuse).
        #[arg(long, value_enum, default_value = "altinn2")]
        target: Target,
        /// With --target altinn3: the dpv-batch config whose
        /// [transport.altinn3] (resources, default_body) is used.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Files to check.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Write a synthetic, valid batch (for trying things out and benchmarks).
    #[command(display_order = 7)]
    Gen {
        /// Number of letters.
        #[arg(long, default_value_t = 10)]
        letters: u64,
        /// One attachment per letter of this many bytes (0: none).
        #[arg(long, default_value_t = 0)]
        attachment_bytes: usize,
        /// ShipmentReference; also the prefix of every SendersReference.
        #[arg(long, default_value = "GEN-0001")]
        shipment: String,
        /// Output file (default: standard output).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Run the pipeline: watch the inbox, validate, package, submit, collect
    /// receipts, write the outbox. SIGTERM/SIGINT stop it cleanly.
    #[command(display_order = 2)]
    Run {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Process what is in the inbox now, wait for the final receipts,
        /// then exit: 0 all done, 3 some still pending at the timeout.
        #[arg(long)]
        once: bool,
        /// With --once: how long to wait, e.g. 300s, 10m, 1h.
        #[arg(long, default_value = "300s", value_parser = dpv_batch::config::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Every input file with its state, age and last error.
    #[command(display_order = 3)]
    Status {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Only files in this state (received, staged, packaged,
        /// submitted, finishing, done).
        #[arg(long, value_parser = dpv_batch::status::filter::parse_state)]
        state: Option<dpv_batch::journal::FileState>,
        /// Only files received since: a duration back (2h, 7d) or a UTC
        /// date or time (2026-11-28, 2026-11-28T12:00:00Z).
        #[arg(long, value_name = "DURATION|DATE", value_parser = dpv_batch::status::filter::parse_since)]
        since: Option<String>,
        /// Only this file (an id, or a name: input, failed/archive or
        /// receipt name); one file is shown with its parts and letters.
        #[arg(long, value_name = "NAME|ID")]
        file: Option<String>,
        /// For monitors and cron: one summary line and a Nagios-style exit
        /// code: 0 OK, 1 WARNING (receipts overdue, the transport retrying
        /// or throttled), 2 CRITICAL (the transport needs an operator, or
        /// work waits and nothing moves), 3 UNKNOWN (config or journal
        /// unreadable).
        #[arg(long, conflicts_with = "json")]
        check: bool,
    },
    /// Send a failed or archived file again, as a new input with its own
    /// receipt (safe while the daemon runs; it takes it in at its next tick).
    #[command(display_order = 3)]
    Replay {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Also send content Altinn already has (past the duplicate check).
        #[arg(long)]
        force: bool,
        /// The file's journal id (see `status`), or its name in failed/ or archive/.
        #[arg(value_name = "NAME|ID")]
        target: String,
    },
    /// Retention: remove what was finished longer ago than --older-than
    /// from archive/, failed/, the outbox and the journal.
    #[command(display_order = 3)]
    Purge {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// e.g. 90d, 12w, 2160h; at least 1d.
        #[arg(long, value_name = "DURATION", value_parser = parse_retention)]
        older_than: std::time::Duration,
        /// List exactly what would go; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check a config file and explain every problem.
    #[command(display_order = 4)]
    CheckConfig {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Also connect: Altinn 3 fetches a token and makes one harmless
        /// read (and says which step failed: key, client, scope, exchange,
        /// API); SFTP logs in and looks at the folders.
        #[arg(long)]
        connect: bool,
    },
    /// Try it out: a workspace with the simulator, the samples dropped in,
    /// run until every receipt is in, and a table of what happened.
    #[command(display_order = 1)]
    Demo {
        /// Workspace folder (default: ./dpv-demo).
        #[arg(long, default_value = "dpv-demo")]
        dir: PathBuf,
        /// `local`: Altinn II's batch area as a folder; `altinn3`: the
        /// Correspondence API (the Altinn 3 simulator runs alongside).
        #[arg(long, value_enum, default_value = "local")]
        transport: DemoTransport,
    },
    /// Simulate Altinn's batch side over folders (for tests and demos):
    /// answer batches in DIR/upload with receipts, then read confirmations.
    #[command(display_order = 6)]
    Sim(SimArgs),
    /// Split a packaged part into Altinn 3 letter folders (developer tool;
    /// bench/altinn3-split.sh uses it). Prints one line per letter.
    #[command(hide = true)]
    Altinn3Split {
        /// The dpv-batch config ([transport.altinn3] is used); without it the
        /// two published resources (4255/10, 5504/1).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        part: PathBuf,
        out_dir: PathBuf,
    },
    /// Simulate Altinn 3 Correspondence, Maskinporten and the token exchange
    /// over HTTP (for tests and demos); DIR/sim.toml says where.
    #[command(display_order = 6)]
    SimAltinn3(SimAltinn3Args),
    /// Upload one file with the configured transport (developer tool; the
    /// SFTP benchmark uses it). Exit 0: uploaded; 1: transient error; 2: other.
    #[command(hide = true)]
    SftpPut {
        /// The dpv-batch config file ([transport] is used).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Remote name (default: the local file's name).
        #[arg(long)]
        name: Option<String>,
        /// The file to upload.
        local: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A RUST_LOG that does not parse stops us before anything runs.
    let directives = match dpv_batch::logging::directives() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("dpv-batch: {e}");
            return ExitCode::from(2);
        }
    };
    let flag = cli.log_format.map(|f| match f {
        Format::Text => LogFormat::Text,
        Format::Json => LogFormat::Json,
    });
    // `run` logs in its config's format (the flag wins), so it sets up
    // logging once the config is read; everything else does it now.
    let log = |format: Option<LogFormat>, quiet_terminal: bool| {
        let setup = dpv_batch::logging::Setup {
            format: flag.or(format).unwrap_or_default(),
            quiet_terminal,
        };
        if let Err(e) = dpv_batch::logging::init(setup, directives.as_deref()) {
            eprintln!("dpv-batch: cannot set up logging: {e}");
        }
    };
    match &cli.command {
        Command::Run { .. } => {}
        // The demo on a terminal: its table must not scroll away under
        // INFO lines, so only warnings show; the whole log is in the
        // workspace (see demo).
        Command::Demo { .. } => log(
            None,
            dpv_batch::progress::on_terminal() && directives.is_none(),
        ),
        _ => log(None, false),
    }
    match cli.command {
        Command::Run {
            config,
            once,
            timeout,
        } => {
            let cfg = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            log(Some(cfg.log.format), false);
            run(cfg, once.then_some(timeout))
        }
        Command::Status {
            config,
            check: true,
            ..
        } => {
            let (level, line) = dpv_batch::status::check(&config);
            let _ = print_stdout(&format!("{line}\n"));
            ExitCode::from(level as u8)
        }
        Command::Status {
            config,
            json,
            state,
            since,
            file,
            ..
        } => status(
            &config,
            json,
            &dpv_batch::status::filter::Filter { state, since, file },
        ),
        Command::Replay {
            config,
            force,
            target,
        } => replay(&config, &target, force),
        Command::Purge {
            config,
            older_than,
            dry_run,
        } => purge(&config, older_than, dry_run),
        Command::CheckConfig { config, connect } => check_config(&config, connect),
        Command::Demo { dir, transport } => match dpv_batch::demo::run_with(
            &dir,
            match transport {
                DemoTransport::Local => dpv_batch::demo::DemoTransport::Local,
                DemoTransport::Altinn3 => dpv_batch::demo::DemoTransport::Altinn3,
            },
        ) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("dpv-batch demo: {e}");
                ExitCode::from(1)
            }
        },
        Command::Sim(args) => dpv_batch::sim::cli::main(args),
        Command::Altinn3Split {
            config,
            part,
            out_dir,
        } => altinn3_split(config.as_deref(), &part, &out_dir),
        Command::SimAltinn3(args) => dpv_batch::sim_altinn3::cli::main(args),
        Command::SftpPut {
            config,
            name,
            local,
        } => put(&config, name, &local),
        Command::Validate {
            format,
            schema,
            max_attachment_bytes,
            max_errors,
            target,
            config,
            paths,
        } => {
            let mut options = Options::default();
            options.rules.max_attachment_bytes = max_attachment_bytes;
            options.package.max_entry_bytes =
                options.package.max_entry_bytes.max(max_attachment_bytes);
            options.max_errors = max_errors;
            options.keep_letters = false;
            let altinn3 = match (target, &config) {
                (Target::Altinn2, None) => None,
                (Target::Altinn2, Some(_)) => {
                    eprintln!("dpv-batch validate: --config is for --target altinn3");
                    return ExitCode::from(2);
                }
                (Target::Altinn3, config) => {
                    match dpv_batch::altinn3::letters::SplitOptions::for_validate(config.as_deref())
                    {
                        Ok(o) => Some(o),
                        Err(e) => {
                            eprintln!("dpv-batch validate: {e}");
                            return ExitCode::from(2);
                        }
                    }
                }
            };
            validate(format, schema, options, altinn3.as_ref(), &paths)
        }
        Command::Gen {
            letters,
            attachment_bytes,
            shipment,
            out,
        } => {
            let spec = gen::Spec {
                letters,
                attachment_bytes,
                reference_prefix: format!("{shipment}-"),
                shipment_reference: shipment,
                ..gen::Spec::default()
            };
            let result = match &out {
                Some(path) => File::create(path).and_then(|mut f| gen::write_batch(&spec, &mut f)),
                None => gen::write_batch(&spec, &mut std::io::stdout().lock()),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dpv-batch gen: cannot write the batch: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn altinn3_split(
    config: Option<&std::path::Path>,
    part: &std::path::Path,
    out_dir: &std::path::Path,
) -> ExitCode {
    use dpv_batch::altinn3::letters;
    let result = letters::SplitOptions::for_validate(config).and_then(|mut o| {
        o.write_files = true;
        letters::split(part, out_dir, &o).map_err(|e| e.to_string())
    });
    match result {
        Ok(letters) => {
            for l in &letters {
                let verdict = match l.refused.first() {
                    None => "ok".to_string(),
                    Some(f) => format!("refused {}: {}", f.code, f.message),
                };
                println!(
                    "L{:05} {} {} attachments={} bytes={} {verdict}",
                    l.index,
                    l.senders_reference,
                    l.idempotent_key,
                    l.attachments.len(),
                    l.attachment_bytes()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dpv-batch altinn3-split: {e}");
            ExitCode::from(2)
        }
    }
}

fn put(config: &std::path::Path, name: Option<String>, local: &std::path::Path) -> ExitCode {
    let config = match dpv_batch::config::Config::load_checked(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dpv-batch sftp-put: {e}");
            return ExitCode::from(2);
        }
    };
    let name = match name.or_else(|| {
        local
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
    }) {
        Some(n) => n,
        None => {
            eprintln!("dpv-batch sftp-put: give --name for {}", local.display());
            return ExitCode::from(2);
        }
    };
    let size = std::fs::metadata(local).map(|m| m.len()).unwrap_or(0);
    let started = std::time::Instant::now();
    let result = match &config.transport.sftp {
        // SFTP directly, to tell the negotiated cipher (benchmarks).
        Some(cfg) if config.transport.kind == dpv_batch::config::TransportKind::Sftp => {
            use dpv_batch::transport::FileTransport;
            dpv_batch::transport::sftp::Sftp::new(cfg).and_then(|mut t| {
                t.upload(local, &name)?;
                Ok(format!(
                    "{}, cipher {}",
                    t.describe(),
                    t.cipher().unwrap_or_default()
                ))
            })
        }
        _ => dpv_batch::transport::open_files(&config).and_then(|mut t| {
            t.upload(local, &name)?;
            Ok(t.describe())
        }),
    };
    match result {
        Ok(target) => {
            let secs = started.elapsed().as_secs_f64();
            println!(
                "uploaded {} as {name} to {target}: {size} bytes in {secs:.2} s ({:.1} MB/s)",
                local.display(),
                size as f64 / 1e6 / secs.max(1e-9)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dpv-batch sftp-put: {e}");
            match e.kind {
                dpv_batch::transport::ErrorKind::Transient => ExitCode::from(1),
                dpv_batch::transport::ErrorKind::Permanent => ExitCode::from(2),
                dpv_batch::transport::ErrorKind::Refused => ExitCode::from(2),
            }
        }
    }
}

/// `validate` shows progress on a terminal from this many files, or bytes.
const VALIDATE_PROGRESS_FILES: usize = 20;
const VALIDATE_PROGRESS_BYTES: u64 = 16 << 20;

fn validate(
    format: Format,
    schema: Option<PathBuf>,
    options: Options,
    altinn3: Option<&dpv_batch::altinn3::letters::SplitOptions>,
    paths: &[PathBuf],
) -> ExitCode {
    let validator = match &schema {
        None => Validator::new(options),
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => Validator::with_schema(&bytes, options),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        },
    };
    let validator = match validator {
        Ok(v) => v,
        Err(e) => {
            eprintln!("dpv-batch validate: the schema cannot be used: {e}");
            return ExitCode::from(2);
        }
    };
    let mut reports = Vec::with_capacity(paths.len());
    let mut stdout = std::io::stdout().lock();
    // Large inputs on a terminal: a progress bar (files, letters, bytes).
    let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let large = paths.len() >= VALIDATE_PROGRESS_FILES
        || paths.iter().map(size).sum::<u64>() >= VALIDATE_PROGRESS_BYTES;
    let mut bar = large
        .then(|| dpv_batch::progress::Bar::start("validate"))
        .flatten();
    let mut counts = dpv_batch::progress::Counts {
        total_files: paths.len() as u64,
        ..Default::default()
    };
    for path in paths {
        let mut r = validator.validate_path(path);
        if let Some(opts) = altinn3 {
            dpv_batch::altinn3::rules::add_to_report(&mut r, path, opts);
        }
        if let Format::Text = format {
            dpv_batch::progress::suspend(|| {
                let _ = stdout.write_all(report::text(&r).as_bytes());
                let _ = stdout.flush();
            });
        }
        counts.files += 1;
        counts.letters += r.letters as u64;
        counts.bytes += size(path);
        if let Some(bar) = bar.as_mut() {
            bar.set(counts);
        }
        reports.push(r);
    }
    if let Some(bar) = bar {
        let valid = reports.iter().filter(|r| r.valid).count();
        bar.finish(&format!("{valid} valid, {} invalid", reports.len() - valid));
    }
    if let Format::Json = format {
        let _ = writeln!(stdout, "{}", report::json(&reports));
    }
    let unreadable = reports
        .iter()
        .any(|r| r.errors.iter().any(|e| e.code == "XML901" && e.line == 0));
    if unreadable {
        ExitCode::from(2)
    } else if reports.iter().all(|r| r.valid) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn load_config(path: &std::path::Path) -> Result<dpv_batch::config::Config, ExitCode> {
    dpv_batch::config::Config::load_checked(path).map_err(|e| {
        eprintln!("dpv-batch: {e}");
        ExitCode::from(2)
    })
}

fn run(cfg: dpv_batch::config::Config, once: Option<std::time::Duration>) -> ExitCode {
    use dpv_batch::daemon::{self, Ended};
    match daemon::run_showing_progress(cfg, once.map(|timeout| daemon::Once { timeout })) {
        Ok(Ended::AllDone) | Ok(Ended::Stopped) => ExitCode::SUCCESS,
        Ok(Ended::TimedOut(pending)) => {
            eprintln!(
                "dpv-batch: timed out with {} file(s) still pending:",
                pending.len()
            );
            for p in pending {
                eprintln!("  {p}");
            }
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("dpv-batch: {e}");
            ExitCode::from(1)
        }
    }
}

fn replay(config: &std::path::Path, target: &str, force: bool) -> ExitCode {
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match dpv_batch::ops::replay::request(&cfg, target, force) {
        Ok(r) => {
            let _ = print_stdout(&dpv_batch::ops::replay::text(&r));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dpv-batch replay: {e}");
            ExitCode::from(1)
        }
    }
}

/// `purge --older-than`: a duration of at least a day. Shorter is almost
/// always a slip (`90s` for `90d`) that would take every finished input and
/// receipts the fagsystem has not read yet.
fn parse_retention(s: &str) -> Result<std::time::Duration, String> {
    let d = dpv_batch::config::parse_duration(s)?;
    if d < std::time::Duration::from_secs(86_400) {
        return Err(format!(
            "'{s}' is less than a day; purge keeps at least a day (did you mean '{}d'?)",
            s.trim_end_matches(|c: char| c.is_alphabetic()).trim()
        ));
    }
    Ok(d)
}

fn purge(config: &std::path::Path, older_than: std::time::Duration, dry_run: bool) -> ExitCode {
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match dpv_batch::ops::purge::run(&cfg, older_than, dry_run) {
        Ok(r) => {
            let _ = print_stdout(&dpv_batch::ops::purge::text(&r));
            if r.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("dpv-batch purge: {e}");
            ExitCode::from(1)
        }
    }
}

fn status(
    config: &std::path::Path,
    json: bool,
    filter: &dpv_batch::status::filter::Filter,
) -> ExitCode {
    use dpv_batch::status::filter;
    let cfg = match dpv_batch::config::Config::load_without_secrets(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dpv-batch: {e}");
            return ExitCode::from(2);
        }
    };
    match dpv_batch::status::report(&cfg) {
        Ok(mut report) => {
            let journalled = report.files.len();
            report.files = filter::apply(std::mem::take(&mut report.files), filter);
            // One file named: in full, with its parts and letters.
            if let ([one], Some(_)) = (report.files.as_slice(), &filter.file) {
                return match filter::detail(&cfg, one.id) {
                    Ok(d) => {
                        let text = if json {
                            serde_json::to_string_pretty(&d).unwrap_or_default() + "\n"
                        } else {
                            filter::detail_text(&d)
                        };
                        match print_stdout(&text) {
                            Ok(()) => ExitCode::SUCCESS,
                            Err(_) => ExitCode::from(1),
                        }
                    }
                    Err(e) => {
                        eprintln!("dpv-batch status: {e}");
                        ExitCode::from(1)
                    }
                };
            }
            let text = if json {
                serde_json::to_string_pretty(&report.files).unwrap_or_default() + "\n"
            } else if report.files.is_empty() && journalled > 0 {
                // Not "no files yet": there are, the filters let none through.
                dpv_batch::status::header(&report)
                    + &format!("no file matches ({journalled} in the journal)\n")
            } else {
                dpv_batch::status::header(&report) + &dpv_batch::status::text(&report.files)
            };
            match print_stdout(&text) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dpv-batch status: cannot write the output: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            eprintln!("dpv-batch status: {e}");
            ExitCode::from(1)
        }
    }
}

/// Write `text` to standard output. A reader that went away (`| head`)
/// is no error: it has what it wanted, so we stop quietly (`println!`
/// would panic).
fn print_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn check_config(config: &std::path::Path, connect: bool) -> ExitCode {
    use dpv_batch::config::{Config, ConfigError};
    let inspection = match Config::inspect(config) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("dpv-batch: {e}");
            return ExitCode::from(2);
        }
    };
    // Where values came from (never the values: they may be secrets).
    let mut origins = String::new();
    for (key, var) in &inspection.from_env {
        origins.push_str(&format!("{key}: from the environment ({var})\n"));
    }
    for (key, file) in &inspection.from_files {
        origins.push_str(&format!("{key}: from the file {}\n", file.display()));
    }
    let _ = print_stdout(&origins);
    let cfg = match inspection.config {
        Some(cfg) if inspection.problems.is_empty() => cfg,
        _ => {
            let e = ConfigError::Invalid(config.to_path_buf(), inspection.problems);
            eprintln!("dpv-batch: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = print_stdout(&format!("{}: OK\n", config.display()));
    if !connect {
        return ExitCode::SUCCESS;
    }
    match dpv_batch::transport::check_connection(&cfg) {
        Ok(what) => {
            let _ = print_stdout(&format!("connect: OK ({what})\n"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dpv-batch check-config: connect: {e}");
            ExitCode::from(1)
        }
    }
}
