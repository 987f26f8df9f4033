//! Herald's binary, as a library so its parts can be tested in-process. [`server`] is what the
//! API and webhook roles serve over HTTP; [`cli`] holds the commands that are clients of that
//! API or stand alone (campaigns, suppressions, `doctor`, the demo); [`config`], [`telemetry`]
//! and [`app`] (the long-running roles and their shutdown) serve both. `main.rs` only parses
//! the command line and calls in here.

pub mod app;
pub mod cli;
pub mod config;
pub mod server;
pub mod telemetry;
