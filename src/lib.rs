//! crm-username: explains why a Salesforce username is missing from the Account Engagement
//! CRM username dropdown, and how to fix it.

pub mod app;
pub mod audit;
pub mod check;
pub mod cli;
pub mod config;
pub mod demo;
pub mod diagnose;
pub mod doctor;
pub mod domain;
#[cfg(feature = "demo")]
pub mod fakes;
pub mod logging;
pub mod metrics;
#[cfg(feature = "demo")]
pub mod playground;
pub mod refresh;
pub mod render;
pub mod server;
pub mod slack;
pub mod snapshot_file;
pub mod sources;
pub mod state;
pub mod store;
pub mod suggest;
#[cfg(feature = "demo")]
pub mod synthetic;
