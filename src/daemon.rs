//! `dpv-batch run`: the pipeline as a daemon, or once (for cron).
//!
//! The pipeline itself is synchronous and journal-driven (see `pipeline`);
//! this module only decides *when* to run a tick: when the inbox changes
//! (inotify, through `notify`), every `poll_ms` anyway (events get lost on
//! network shares, and receipts arrive without any local event), and never
//! again after SIGTERM/SIGINT. A signal waits for the running tick to end,
//! so in-flight work drains and the exit is clean; even a `kill -9` loses
//! nothing, because every step is journalled.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

use crate::config::Config;
use crate::pipeline::{Pipeline, PipelineError, Tick};

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

/// When to stop in `--once` mode.
pub struct Once {
    pub timeout: Duration,
}

pub fn run(cfg: Config, once: Option<Once>) -> Result<Ended, PipelineError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PipelineError::Io("cannot start the runtime".into(), e))?;
    runtime.block_on(run_async(cfg, once))
}

async fn run_async(cfg: Config, once: Option<Once>) -> Result<Ended, PipelineError> {
    let inbox = cfg.paths.inbox.clone();
    let poll = Duration::from_millis(cfg.run.poll_ms.max(10));
    let sig = |kind| {
        signal(kind).map_err(|e| PipelineError::Io("cannot install signal handler".into(), e))
    };
    let mut sigterm = sig(SignalKind::terminate())?;
    let mut sigint = sig(SignalKind::interrupt())?;
    let pipeline = Pipeline::open(cfg)?;
    info!(inbox = %inbox.display(), "dpv-batch running");

    // The inbox watcher only wakes the loop; the rescan in every tick is
    // what finds files, so a lost event costs at most one poll interval.
    let (wake_tx, mut wake_rx) = tokio::sync::mpsc::channel::<()>(1);
    let _watcher = watch(&inbox, wake_tx);

    let started = Instant::now();
    let at_start: HashSet<String> = pipeline
        .inbox_candidates()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut pipeline = Some(pipeline);
    let mut horizon: Option<i64> = None;
    loop {
        let Some(mut p) = pipeline.take() else {
            return Err(PipelineError::Io(
                "internal: pipeline lost".into(),
                std::io::Error::other("lost"),
            ));
        };
        let (p, result) = tokio::task::spawn_blocking(move || {
            let r = p.tick();
            (p, r)
        })
        .await
        .map_err(|e| {
            PipelineError::Io(
                "a pipeline tick panicked".into(),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let tick: Tick = match result {
            Ok(t) => t,
            Err(e) => {
                error!(error = %e, "stopping: the pipeline cannot go on");
                return Err(e);
            }
        };
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
        pipeline = Some(p);
        let pause = if tick.busy { Duration::ZERO } else { poll };
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: stopping after the current step"); return Ok(Ended::Stopped); }
            _ = sigint.recv() => { info!("SIGINT: stopping after the current step"); return Ok(Ended::Stopped); }
            _ = wake_rx.recv() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

fn watch(
    inbox: &std::path::Path,
    wake: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let mut watcher = notify::recommended_watcher(move |_event| {
        // A full channel means a wake-up is already pending: nothing lost.
        let _ = wake.try_send(());
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
