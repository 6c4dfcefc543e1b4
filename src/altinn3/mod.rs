//! Altinn 3: the Correspondence REST API, which replaced Altinn II's batch
//! interface for DPV in 2026 (issue 8).
//!
//! The fagsystem keeps writing Altinn II batch files; this module turns
//! each letter of a validated batch into an Altinn 3 call and speaks to the
//! API. Files, top to bottom in the order a letter meets them:
//! - [`letters`]: a packaged part → one folder per letter (`letter.json` +
//!   attachment files), streaming, with each letter's idempotent key;
//! - [`mapping`]: every Altinn II field → its Altinn 3 counterpart;
//! - [`rules`]: the A3 rules, what Altinn 3 would refuse (a letter that
//!   fails is never sent);
//! - [`model`]: the JSON shapes of requests and responses;
//! - [`auth`]: Maskinporten's JWT grant and Altinn's token exchange;
//! - [`client`]: the HTTP client (a synchronous facade over its own async
//!   runtime): send, find, overview, check the connection.
//!
//! The API facts behind all of it: `shared/reference/altinn3.md`; the
//! operator's view: `docs/altinn3.md`.

pub mod auth;
pub mod client;
pub mod letters;
pub mod mapping;
pub mod model;
pub mod rules;
