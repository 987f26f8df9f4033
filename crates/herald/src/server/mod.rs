//! What the API and webhook roles serve over HTTP: the hardened listener, the routes
//! (campaigns, uploads, suppressions, Meta's webhook, metrics and health), their shared error
//! answer, the failures CSV and the per-campaign metrics.

pub mod api;
pub mod campaign_metrics;
pub mod console;
pub mod cost;
pub mod error;
pub mod follow_up;
pub mod limit;
pub mod listen;
pub mod openapi;
pub mod report;
pub mod session;
pub mod suppressions;
pub mod upload;
