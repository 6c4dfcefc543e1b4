//! `dpv-batch run`: the pipeline as a daemon, or once (for cron).
//!
//! The pipeline itself is synchronous and journal-driven (see `pipeline`);
//! this module only decides *when* to run a tick:
//! - every `poll_ms` (events get lost on network shares, and receipts arrive
//!   without any local event); the remote folders are listed at most once
//!   per poll whatever else wakes us (see `Pipeline::remote_due`);
//! - at once while the last tick left work that is ready now (`Tick::busy`);
//! - soon after an inbox event that can make a file ready (a file created,
//!   written and closed, or renamed into the inbox), at most once per
//!   [`EVENT_GAP`], so a burst of events costs one scan. Every other event
//!   is ignored: reading the inbox makes the kernel report `IN_OPEN` and
//!   `IN_CLOSE_NOWRITE` on it, and taking a file in makes `IN_MOVED_FROM`,
//!   so reacting to those would make each scan wake the next one and an
//!   idle daemon would spin on a whole core;
//! - never again after SIGTERM/SIGINT. A signal waits for the running tick
//!   to end, so in-flight work drains and the exit is clean; even a
//!   `kill -9` loses nothing, because every step is journalled.
//!
//! Under systemd (`Type=notify`) it also says READY once the pipeline is
//! open, STOPPING on a signal, a STATUS line after each tick, and pings the
//! watchdog; see `systemd` for how a long tick is told from a hung one.
//!
//! With `[metrics] listen`, the HTTP endpoint (`metrics`) runs on this
//! runtime beside the loop: ticks run in `spawn_blocking`, so it answers
//! during a long tick, and the loop tells its [`metrics::Health`] when each
//! tick starts and ends (and how the transport fared).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

use crate::config::Config;
use crate::metrics::{self, TransportHealth};
use crate::pipeline::{Pipeline, PipelineError, Tick};
use crate::systemd::Notifier;

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// `--once`: every file present at the start has its final receipt.
    AllDone,
    /// `--once`: the timeout passed with files still pending.
    TimedOut(Vec<String>),
    /// A signal asked us to stop.
    Stopped,
}

/// The shortest time between two ticks woken by inbox events: a fagsystem
/// dropping hundreds of files in a second gets a scan every 100 ms (each
/// taking up to a tick's worth), not one per file. Capped by `poll_ms`.
pub const EVENT_GAP: Duration = Duration::from_millis(100);

/// When to stop in `--once` mode.
pub struct Once {
    pub timeout: Duration,
}

pub fn run(cfg: Config, once: Option<Once>) -> Result<Ended, PipelineError> {
    run_inner(cfg, once, false)
}

/// Like [`run`]; with `once`, a progress bar on a terminal (`run --once`,
/// the demo) and a summary line at the end.
pub fn run_showing_progress(cfg: Config, once: Option<Once>) -> Result<Ended, PipelineError> {
    run_inner(cfg, once, true)
}

fn run_inner(cfg: Config, once: Option<Once>, progress: bool) -> Result<Ended, PipelineError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PipelineError::Io("cannot start the runtime".into(), e))?;
    runtime.block_on(run_async(cfg, once, progress))
}

async fn run_async(
    cfg: Config,
    once: Option<Once>,
    progress: bool,
) -> Result<Ended, PipelineError> {
    let inbox = cfg.paths.inbox.clone();
    let poll = cfg.run.poll();
    let mut systemd = Notifier::from_env(tick_silence_limit(&cfg));
    let sig = |kind| {
        signal(kind).map_err(|e| PipelineError::Io("cannot install signal handler".into(), e))
    };
    let mut sigterm = sig(SignalKind::terminate())?;
    let mut sigint = sig(SignalKind::interrupt())?;
    let listen = cfg.metrics.listen;
    // The start-up line: what runs, with what, from where.
    let config = cfg
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let transport = format!("{:?}", cfg.transport.kind).to_lowercase();
    let pipeline = Pipeline::open(cfg)?;
    // `[metrics] listen`: bound before the first tick, so a port in use
    // stops the start with a clear message.
    let health = Arc::new(metrics::Health::new(poll));
    if let Some(addr) = listen {
        let handle = metrics::install();
        metrics::serve(addr, handle, health.clone())
            .await
            .map_err(|e| {
                PipelineError::Io(
                    format!("cannot serve [metrics] on {addr} (is another process using it?)"),
                    e,
                )
            })?;
        info!(listen = %addr, "metrics and health on http://{addr}/metrics and /health");
    }
    info!(
        version = %env!("CARGO_PKG_VERSION"),
        config = %config,
        transport = %transport,
        installation = %pipeline.installation_id(),
        inbox = %inbox.display(),
        "dpv-batch running"
    );
    // `--once` on a terminal: a progress bar (none otherwise).
    let mut bar = match (&once, progress) {
        (Some(_), true) => crate::progress::Bar::start("run"),
        _ => None,
    };
    let mut drawn = std::time::Instant::now();
    systemd.ready(&format!("watching {}", inbox.display()));
    // Without a watchdog the timer still exists, but its branches are off.
    let mut watchdog =
        tokio::time::interval(systemd.ping_every().unwrap_or(Duration::from_secs(3600)));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watchdog_on = systemd.ping_every().is_some();
    let mut stop_requested = false;

    // The inbox watcher only wakes the loop; the rescan in every tick is
    // what finds files, so a lost event costs at most one poll interval.
    let (wake_tx, mut wake_rx) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = watch(&inbox, wake_tx);
    // Without a watcher the channel is closed: `recv` would return at once,
    // for ever. Then only the timer wakes us.
    let mut watching = watcher.is_some();
    let event_gap = EVENT_GAP.min(poll);

    let started = Instant::now();
    let at_start: HashSet<String> = pipeline
        .inbox_candidates()
        .unwrap_or_default()
        .into_iter()
        .collect();
    if let Some(bar) = bar.as_mut() {
        if let Ok(c) = counts(&pipeline, at_start.len()) {
            bar.set(c);
        }
    }
    let mut pipeline = Some(pipeline);
    let mut horizon: Option<i64> = None;
    loop {
        let Some(mut p) = pipeline.take() else {
            return Err(PipelineError::Io(
                "internal: pipeline lost".into(),
                std::io::Error::other("lost"),
            ));
        };
        let tick_started = Instant::now();
        health.tick_started();
        let mut handle = tokio::task::spawn_blocking(move || {
            let r = p.tick();
            (p, r)
        });
        // While the tick runs: the watchdog (pinged only while the tick
        // shows progress) and signals (systemd hears STOPPING at once; we
        // stop once the tick is done).
        systemd.tick_started();
        let joined = loop {
            tokio::select! {
                joined = &mut handle => break joined,
                _ = watchdog.tick(), if watchdog_on => systemd.ping_busy(),
                _ = sigterm.recv(), if !stop_requested => {
                    info!("SIGTERM: stopping after the current step");
                    systemd.stopping();
                    stop_requested = true;
                }
                _ = sigint.recv(), if !stop_requested => {
                    info!("SIGINT: stopping after the current step");
                    systemd.stopping();
                    stop_requested = true;
                }
            }
        };
        let (p, result) = joined.map_err(|e| {
            PipelineError::Io(
                "a pipeline tick panicked".into(),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let tick: Tick = match result {
            Ok(t) => t,
            Err(e) => {
                health.tick_ended(tick_started.elapsed(), false, TransportHealth::Up);
                error!(error = %e, "stopping: the pipeline cannot go on");
                systemd.status(&format!("stopped: {e}"));
                return Err(e);
            }
        };
        let transport = match (&tick.transport_error, tick.transport_stopped) {
            (None, _) => TransportHealth::Up,
            (Some(e), false) => TransportHealth::Down(e.clone()),
            (Some(e), true) => TransportHealth::Stopped(e.clone()),
        };
        health.tick_ended(tick_started.elapsed(), true, transport);
        if stop_requested {
            return Ok(Ended::Stopped);
        }
        systemd.status(&tick_status(&tick));
        if let Some(bar) = bar.as_mut() {
            // At most a few times a second: it reads every file's row.
            if drawn.elapsed() >= Duration::from_millis(200) || tick.open == 0 {
                drawn = std::time::Instant::now();
                if let Ok(c) = counts(&p, at_start.len()) {
                    bar.set(c);
                }
            }
        }
        if let Some(once) = &once {
            if let Some(e) = tick.permanent_error.clone() {
                error!(error = %e, "stopping: the transport needs an operator; files stay queued");
                return Err(PipelineError::Transport(crate::transport::TransportError {
                    kind: crate::transport::ErrorKind::Permanent,
                    message: e,
                }));
            }
            let waiting: Vec<String> = p
                .inbox_candidates()
                .unwrap_or_default()
                .into_iter()
                .filter(|n| at_start.contains(n))
                .collect();
            // Done when every file present at the start is done: once they
            // are all taken in, that is every journalled file up to the
            // newest id seen then (files dropped later are not waited for).
            if waiting.is_empty() && horizon.is_none() {
                horizon = Some(p.journal().max_file_id()?);
            }
            if let Some(h) = horizon {
                if tick.open == 0 || p.journal().open_files_upto(h)? == 0 {
                    if let Some(mut bar) = bar.take() {
                        if let Ok(c) = counts(&p, at_start.len()) {
                            bar.set(c);
                        }
                        bar.finish("all done");
                    }
                    return Ok(Ended::AllDone);
                }
            }
            if started.elapsed() >= once.timeout {
                let mut pending: Vec<String> = p
                    .journal()
                    .all_files()?
                    .into_iter()
                    .filter(|f| f.state != crate::journal::FileState::Done)
                    .map(|f| format!("{} ({:?})", f.name, f.state))
                    .collect();
                pending.extend(
                    waiting
                        .into_iter()
                        .map(|n| format!("{n} (not taken in yet)")),
                );
                return Ok(Ended::TimedOut(pending));
            }
        }
        // The next tick: now when work is ready; else at the next poll, and
        // not before the remote folders may be listed again (so that tick
        // does list them); earlier only for an inbox event.
        let mut due = if tick.busy {
            Instant::now()
        } else {
            (tick_started + poll).max(Instant::from_std(p.remote_due()))
        };
        pipeline = Some(p);
        loop {
            tokio::select! {
                _ = sigterm.recv() => { info!("SIGTERM: stopping after the current step"); systemd.stopping(); return Ok(Ended::Stopped); }
                _ = sigint.recv() => { info!("SIGINT: stopping after the current step"); systemd.stopping(); return Ok(Ended::Stopped); }
                _ = watchdog.tick(), if watchdog_on => systemd.ping_idle(),
                _ = tokio::time::sleep_until(due) => break,
                woke = wake_rx.recv(), if watching => match woke {
                    // Events that come while we wait for the gap are merged
                    // into this one wake-up (the channel holds one).
                    Some(()) => due = due.min(tick_started + event_gap),
                    None => watching = false,
                },
            }
        }
    }
}

/// The `systemctl status` line after a tick: short, and the permanent
/// error first, since that is what an operator must act on.
fn tick_status(tick: &Tick) -> String {
    match &tick.permanent_error {
        Some(e) => {
            let e: String = e.chars().take(160).collect();
            format!("transport needs an operator: {e}")
        }
        None if tick.open == 0 => "idle: no file open".into(),
        None => format!("{} file(s) open", tick.open),
    }
}

/// The longest a healthy tick may go without using CPU: waiting for an
/// answer or a connection, or sleeping before a retry, is bounded by the
/// transport's timeouts. Twice the longest of them, and at least 5 minutes
/// (a large fsync, a slow disk), is the watchdog's patience with a silent
/// tick (see `systemd`). Defaults: SFTP 5 min (io_timeout 60 s), Altinn 3
/// 10 min (request_timeout 300 s). An SFTP `io_timeout_ms = 0` (no limit)
/// leaves 5 min: a connection silent for longer is then ended by the
/// watchdog's restart, the only limit there is.
fn tick_silence_limit(cfg: &Config) -> Duration {
    let mut longest = Duration::ZERO;
    if let Some(s) = &cfg.transport.sftp {
        let ms = s
            .io_timeout_ms
            .max(s.connect_timeout_ms)
            .max(s.retry_max_ms);
        longest = longest.max(Duration::from_millis(ms));
    }
    if let Some(a) = &cfg.transport.altinn3 {
        longest = longest.max(a.request_timeout).max(a.connect_timeout);
    }
    (longest * 2).max(Duration::from_secs(300))
}

/// What the progress bar shows: files done (of those journalled, or at
/// least those in the inbox at the start), and their letters and bytes.
fn counts(p: &Pipeline, at_start: usize) -> Result<crate::progress::Counts, PipelineError> {
    let files = p.journal().all_files()?;
    let done: Vec<_> = files
        .iter()
        .filter(|f| f.state == crate::journal::FileState::Done)
        .collect();
    Ok(crate::progress::Counts {
        files: done.len() as u64,
        total_files: files.len().max(at_start) as u64,
        letters: done.iter().map(|f| f.letters.max(0) as u64).sum(),
        bytes: done.iter().map(|f| f.size.max(0) as u64).sum(),
    })
}

/// Can this inbox event make a file ready to take? A new name (created, or
/// renamed into the inbox), a file written and closed (stable mode), or lost
/// events (the kernel's queue overflowed). Never our own scans (`IN_OPEN`,
/// `IN_CLOSE_NOWRITE`), our moves out of the inbox (`IN_MOVED_FROM`), removals
/// (our own, of done markers) or writes still going on (`IN_MODIFY`), and
/// never a temporary or hidden name, which is never taken.
fn can_make_ready(event: &notify::Event) -> bool {
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    use notify::EventKind;
    if event.need_rescan() {
        return true;
    }
    let relevant = match event.kind {
        EventKind::Create(_) => true,
        EventKind::Modify(ModifyKind::Name(mode)) => {
            matches!(mode, RenameMode::To | RenameMode::Both | RenameMode::Any)
        }
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        _ => false,
    };
    // The name it is about: the last path (a rename's new name).
    let temporary = event
        .paths
        .last()
        .and_then(|p| p.file_name())
        .is_some_and(|n| crate::transport::is_temporary(&n.to_string_lossy()));
    relevant && !temporary
}

fn watch(
    inbox: &std::path::Path,
    wake: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // A full channel means a wake-up is already pending: nothing lost.
        // (A watcher error wakes nobody: the periodic rescan covers it.)
        if event.is_ok_and(|e| can_make_ready(&e)) {
            let _ = wake.try_send(());
        }
    })
    .ok()?;
    match watcher.watch(inbox, RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!(error = %e, "no file events for the inbox; relying on the periodic rescan");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, EventKind, Flag, ModifyKind, RemoveKind,
        RenameMode,
    };
    use notify::Event;

    fn ev(kind: EventKind, paths: &[&str]) -> Event {
        paths
            .iter()
            .fold(Event::new(kind), |e, p| e.add_path(p.into()))
    }

    #[test]
    fn only_events_that_can_make_a_file_ready_wake_the_loop() {
        let name = ModifyKind::Name;
        let wake = [
            ev(EventKind::Create(CreateKind::File), &["/in/a.xml"]),
            ev(EventKind::Create(CreateKind::File), &["/in/a.xml.done"]),
            ev(EventKind::Modify(name(RenameMode::To)), &["/in/a.xml"]),
            ev(
                EventKind::Modify(name(RenameMode::Both)),
                &["/in/.a.xml.tmp", "/in/a.xml"],
            ),
            ev(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &["/in/a.xml"],
            ),
            Event::new(EventKind::Other).set_flag(Flag::Rescan),
        ];
        for e in &wake {
            assert!(can_make_ready(e), "{e:?} must wake");
        }
        let ignore = [
            // What our own scan and moves cause.
            ev(
                EventKind::Access(AccessKind::Open(AccessMode::Any)),
                &["/in"],
            ),
            ev(
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                &["/in"],
            ),
            ev(EventKind::Modify(name(RenameMode::From)), &["/in/a.xml"]),
            ev(EventKind::Remove(RemoveKind::File), &["/in/a.xml.done"]),
            // Writes still going on, and temporary names.
            ev(
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                &["/in/a.xml"],
            ),
            ev(EventKind::Create(CreateKind::File), &["/in/.a.xml.tmp"]),
            ev(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &["/in/a.xml.part"],
            ),
            ev(
                EventKind::Modify(name(RenameMode::Both)),
                &["/in/a.xml", "/in/.a.xml.tmp"],
            ),
        ];
        for e in &ignore {
            assert!(!can_make_ready(e), "{e:?} must not wake");
        }
    }
}
