//! crm-username: explains why a Salesforce username is missing from the Account Engagement
//! CRM username dropdown, and how to fix it.
//!
//! # The parts, and which way data flows
//!
//! ```text
//!  Salesforce, AE APIs ──> sources ──> refresh ──> store (Redis or in-process)
//!                                                     │ reads: the small org a query needs
//!                                                     v
//!  Slack (HTTP, Socket Mode) ──> slack ──> state ──> check ──> diagnose, audit (pure)
//!  command line ─────────────> cli ─────────────────┘              │
//!                                                                  v
//!                               Slack, terminal, JSON <── render <─┘
//! ```
//!
//! - [`domain`]: plain data (users, business units, the snapshot, the query, findings); no IO.
//! - [`diagnose`] and [`audit`]: the pure diagnosis and the audit, no IO and no clock.
//! - [`check`]: the service that reads from the [`store`] and diagnoses; the store only reads
//!   and writes (a test, `tests/it/boundaries.rs`, keeps it that way).
//! - [`sources`]: the Salesforce and Account Engagement clients; [`refresh`] turns what they
//!   read into a new generation in the store.
//! - [`render`]: text, JSON and Slack Block Kit out of a diagnosis or an audit.
//! - [`slack`]: routes, signature, commands, events, buttons, Socket Mode, Web API calls;
//!   [`state`] is what every handler shares.
//! - [`app`]: the running bot assembled once (`App::build`), for `serve` and the tests;
//!   [`server`] is its HTTP side; [`cli`] the command line; [`config`] every setting.
//! - [`doctor`]: the checks of a configuration against the real services.
//! - Behind the `demo` feature (in the default build, not in the container image): `fakes`
//!   of the three APIs, the `synthetic` org generator, and the playground page.

pub mod answers;
pub mod app;
pub mod audit;
pub mod background;
pub mod check;
pub mod cli;
pub mod config;
pub mod demo;
pub mod diagnose;
pub mod doctor;
pub mod domain;
#[cfg(feature = "demo")]
pub mod fakes;
mod logging;
pub mod metrics;
#[cfg(feature = "demo")]
mod playground;
pub mod refresh;
pub mod render;
pub mod server;
pub mod slack;
pub mod snapshot_file;
pub mod sources;
pub mod state;
pub mod store;
mod suggest;
#[cfg(feature = "demo")]
pub mod synthetic;
