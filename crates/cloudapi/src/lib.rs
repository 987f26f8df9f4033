//! Everything Herald knows about Meta's WhatsApp Cloud API, and nothing else.
//!
//! - [`message`]: outgoing request bodies, typed after Meta's OpenAPI description;
//!   [`validate`] holds the documented limits.
//! - [`response`]: send responses, error bodies, phone number and token info.
//! - [`class`]: the one `ErrorCode → ErrorClass` table the sender acts on.
//! - [`webhook`]: tolerant webhook payload types; [`signature`]: `X-Hub-Signature-256`.
//! - [`client`]: the HTTP client, with no automatic retries.
//!
//! No other crate builds Cloud API JSON by hand or interprets an error code itself.

pub mod class;
pub mod client;
pub mod departure;
pub mod message;
pub mod response;
pub mod secret;
pub mod signature;
pub mod validate;
pub mod webhook;

pub use class::{ErrorClass, TransportFailure, code_label, meaning};
pub use client::{
    Client, ClientConfig, Error, Messages, http_builder, http_builder_for, is_loopback_url,
};
pub use departure::Departure;
pub use message::{Message, SendMessage, SendRequest};
pub use response::{ErrorBody, GraphError, PhoneNumberInfo, SendResponse, TemplateInfo, TokenInfo};
pub use secret::Secret;
pub use signature::SignatureError;
pub use validate::{Options as ValidateOptions, ValidationError, check_field};
pub use webhook::Notification;
