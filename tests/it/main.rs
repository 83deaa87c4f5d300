//! The integration tests: one binary, one module per area. `common` holds what they share.
//! They drive the fakes and the synthetic org of the `demo` feature (in the default build).
#![cfg(feature = "demo")]

mod common;

mod answer_memo;
mod audit;
mod boundaries;
mod cli;
mod cli_live;
mod client_reads;
mod connection_limits;
mod doctor;
mod fakes_scale;
mod faults;
mod followups;
mod format_versions;
mod home;
mod hostile_input;
mod incremental;
mod loadgen;
mod logs;
mod playground_followups;
mod prometheus_rule;
mod redis_deployments;
mod refresh;
mod render;
mod salesforce_auth;
mod schemas;
mod separate_refresher;
mod shortcut;
mod slack;
mod slack_audit;
mod snapshot_file;
mod socket_mode;
mod sources;
mod store;
mod synthetic;
mod usergroups;
mod web_api;
