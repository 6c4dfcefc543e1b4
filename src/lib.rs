//! dpv-batch: send Digital Post til Virksomheter through Altinn by dropping
//! batch files in a folder.
//!
//! The stages of the pipeline each live in a module of their own; today:
//! - [`validate`]: the three validation layers (reading, schema, DPV rules)
//!   and export packages.
//! - [`xml`]: the one place that talks to libxml2 (streaming SAX + XSD).
//! - [`gen`]: synthetic batches for demos, tests and benchmarks.

pub mod b64;
pub mod clock;
pub mod config;
pub mod durable;
pub mod gen;
pub mod journal;
pub mod outbox;
pub mod package;
pub mod transport;
pub mod validate;
pub mod xml;
