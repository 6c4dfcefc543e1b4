//! dpv-batch: send Digital Post til Virksomheter through Altinn by dropping
//! batch files in a folder.
//!
//! The stages of the pipeline each live in a module of their own; today:
//! - [`validate`]: the three validation layers (reading, schema, DPV rules)
//!   and export packages.
//! - [`xml`]: the one place that talks to libxml2 (streaming SAX + XSD).
//! - [`gen`]: synthetic batches for demos, tests and benchmarks.
//! - [`altinn`]: Altinn's receipts and read confirmations (write + parse).
//! - [`sim`]: Altinn's batch side, simulated over folders (tests, demos).

pub mod altinn;
pub mod gen;
pub mod sim;
pub mod validate;
pub mod xml;
