//! `dpv-batch sim-altinn3`: Altinn 3 Correspondence, Maskinporten and the
//! token exchange, simulated over real HTTP for tests, demos and benchmarks.
//!
//! The simulator answers `POST {api_base}/correspondence` as the real server
//! (`Altinn/altinn-correspondence` 1.3.0) would for the same body: the same
//! HTTP status, the same `errorCode`, in the same order of checks. The C# it
//! mirrors is named in each module; where it can only approximate (plain-text
//! detection, phone numbers) the function says so.
//!
//! # Contract (tests outside the project rely on it)
//! ```text
//! dpv-batch sim-altinn3 --listen 127.0.0.1:PORT --root DIR --client-key PUBLIC.pem
//!     [--resource ID[:confidential]]... [--unknown-recipient ID]... [--fail-at-publish ID]...
//!     [--reserved ID]... [--latency-ms N] [--rate-429 P] [--rate-5xx P]
//!     [--drop-after-commit P] [--publish-delay-ms N]
//! ```
//! - Once listening (PORT 0: any free port) it writes `DIR/sim.toml`, exactly
//!   four lines: `api_base`, `token_url`, `audience`, `exchange_url`.
//! - Every created correspondence is `DIR/correspondences/<id>.json`: the
//!   request in the JSON shape of `InitializeCorrespondencesExt` (also when it
//!   came as multipart), plus top-level `correspondenceId` and `status`, kept
//!   current as the status changes.
//! - State lives in `DIR` ([`store`]) and survives restarts: correspondences,
//!   attachments, idempotent keys, the token secret.
//!
//! # Routes
//! | route | what |
//! |---|---|
//! | `POST /maskinporten/token` | JWT grant → Maskinporten token ([`auth`]) |
//! | `GET /authentication/api/v1/exchange/maskinporten` | Maskinporten token → Altinn token (bare string, 30 min) |
//! | `POST /correspondence/api/v1/correspondence` | initialize (JSON) |
//! | `POST /correspondence/api/v1/correspondence/upload` | initialize + files (multipart, streamed to disk) |
//! | `GET /correspondence/api/v1/correspondence/{id}` (`/details`) | overview (details) |
//! | `GET /correspondence/api/v1/correspondence?resourceId=&role=&…` | search: `{"ids":[…]}` |
//! | `DELETE /correspondence/api/v1/correspondence/{id}/purge` | purge before publication |
//! | `POST /correspondence/api/v1/attachment`, `POST …/attachment/{id}/upload`, `GET`/`DELETE …/attachment/{id}` | the attachment API |
//! | `POST /_sim/correspondence/{id}/read` | **test hook**: the recipient reads the letter |
//!
//! # The test hook: marking letters Read
//! `POST http://ADDR/_sim/correspondence/{correspondenceId}/read` (no token)
//! adds `Fetched` and `Read` to a published correspondence and answers its
//! overview (200); 404 for an unknown one, 409 for one not published (or
//! failed). From a shell: `dpv-batch sim-altinn3 --root DIR --mark-read ID`
//! does the same against the simulator serving `DIR`.
//!
//! # Status machine ([`state`])
//! Created `Initialized`, plus `ReadyForPublish` when every attachment is
//! already published, or `Reserved` for a KRR-reserved recipient among
//! several. At `max(requestedPublishTime, created) + --publish-delay-ms` the
//! publish job runs: `Failed` (statusText: Altinn's reason) for a
//! `--fail-at-publish` recipient or a Reserved one, else `ReadyForPublish`
//! and `Published`. The clock drives it on every request and from a ticker that
//! sleeps until the next job falls due, so the files on disk follow even when
//! nobody asks.
//!
//! # Faults
//! `--latency-ms` delays every call; `--rate-429` answers API calls 429 with
//! `Retry-After: 1`, `--rate-5xx` 500/502/503 (both before the request is
//! handled); `--drop-after-commit` creates (correspondence or attachment),
//! stores, then closes the connection without an answer ([`conn`]).
//!
//! # Where it differs from Altinn (on purpose, or because it cannot know)
//! - Register: every organisation number that passes mod-11 and every valid
//!   person number exists, except the `--unknown-recipient`s. (Altinn's own
//!   tests mock a register that knows anything, e.g. `123456789`; TT02 knows
//!   only its test entities.)
//! - KRR: `--reserved` may name an organisation too (the real KRR holds
//!   persons only), so the Reserved paths can be driven with DPV's
//!   organisation recipients.
//! - One caller identity: every token acts for the service owner, Digdir
//!   (991825827), who may use every resource; `role=Recipient` finds nothing.
//! - Not simulated: notifications (none are sent; `notifications` is empty),
//!   Dialogporten (a dialog-id reference is always 404/1054; publication does
//!   not wait for a dialog), access lists and resource policies (4001 never),
//!   roles of confidential recipients (1044 never), upload checksums (2008
//!   never), attachment expiry over time, recipients' own calls. The malware
//!   scan of an upload passes at once. Altinn's Markdown check of bodies (1003)
//!   accepts everything today, and so does the simulator.
//! - Approximated: plain-text detection of titles and message senders, mobile
//!   numbers outside Norway ([`rules`] says how).
//! - Limits of its own, to protect itself: a JSON body over 64 MiB is 413, a
//!   multipart text field over 4 MiB is 413; more than 1024 form values is
//!   ASP.NET's default 400.

pub mod auth;
pub mod cli;
pub mod conn;
pub mod model;
pub mod problem;
pub mod routes;
pub mod rules;
pub mod state;
pub mod store;
pub mod validate;
