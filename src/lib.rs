//! dpv-batch: send Digital Post til Virksomheter through Altinn by dropping
//! batch files in a folder.
//!
//! The pipeline, stage by stage, each a module of its own:
//! `intake → validate → package → submit (transport) → receipts → outbox`,
//! with one durable [`journal`] between them, driven by [`pipeline`].
//! - [`validate`]: the three validation layers (reading, schema, DPV rules)
//!   and export packages.
//! - [`package`]: validated input → UTF-8 parts for upload.
//! - [`transport`]: how parts reach Altinn (a local folder or SFTP; Altinn 3 later).
//! - [`outbox`]: receipts and events for the fagsystem.
//! - [`altinn`]: Altinn's receipts and read confirmations (write + parse).
//! - [`altinn3`]: the Altinn 3 Correspondence API: letters, mapping, A3
//!   rules, Maskinporten, the HTTP client.
//! - [`sim`]: Altinn's batch side, simulated over folders (tests, demos).
//! - [`sim_altinn3`]: Altinn 3 Correspondence and Maskinporten, simulated
//!   over HTTP (tests, demos, benchmarks).
//!
//! Infrastructure: [`xml`] (the one place that talks to libxml2), [`config`]
//! (the one place that knows TOML), [`durable`] (atomic writes, fsync),
//! [`installation`] (the installation id, remote names, a lost journal),
//! [`clock`], [`b64`], [`gen`] (synthetic batches), [`systemd`] (Type=notify,
//! the watchdog), [`names`] (how a file name is shown: escaped, in logs,
//! `status`, receipts and outbox names), [`xml_text`] (the one escaping of
//! text in every XML we write).

pub mod altinn;
pub mod altinn3;
pub mod b64;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod durable;
pub mod gen;
pub mod installation;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod ops;
pub mod outbox;
pub mod package;
pub mod pipeline;
pub mod progress;
pub mod sim;
pub mod sim_altinn3;
pub mod status;
pub mod systemd;
pub mod transport;
pub mod validate;
pub mod xml;
pub mod xml_text;
