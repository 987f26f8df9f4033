//! Herald's binary, as a library so its parts can be tested in-process: configuration, the
//! HTTP API, the long-running roles and their shutdown, the campaign commands, `doctor` and
//! the demo. `main.rs` only parses the command line and calls in here.

pub mod api;
pub mod app;
pub mod campaign_metrics;
pub mod client;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod listen;
pub mod report;
pub mod suppressions;
pub mod telemetry;
pub mod upload;
