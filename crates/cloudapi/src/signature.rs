//! `X-Hub-Signature-256`: Meta signs each webhook body with the app secret.
//!
//! The header is `sha256=` followed by the hex HMAC-SHA256 of the raw body. It is checked over
//! the bytes exactly as received, before any parsing, with a constant-time comparison
//! (`Mac::verify_slice`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header Meta sends.
pub const HEADER: &str = "x-hub-signature-256";
const PREFIX: &str = "sha256=";

/// Why a webhook's signature was refused. Each variant is a 401; they differ only in logs
/// and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the signature does not start with \"sha256=\"")]
    BadPrefix,
    #[error("the signature is not 64 hex digits")]
    BadHex,
    #[error("the body is empty")]
    EmptyBody,
    #[error("the signature does not match the body")]
    Mismatch,
    /// No app secret is configured: nothing can be verified, and a signature made with the
    /// empty key would prove nothing. Every delivery is refused.
    #[error("no app secret is configured, so no signature can be verified")]
    NoSecret,
}

impl SignatureError {
    /// A stable name for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::BadPrefix => "bad_prefix",
            Self::BadHex => "bad_hex",
            Self::EmptyBody => "empty_body",
            Self::Mismatch => "mismatch",
            Self::NoSecret => "no_secret",
        }
    }
}

fn mac(secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    mac
}

/// The header value Meta would send for `body` (the simulator signs with this).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let tag = mac(secret, body).finalize().into_bytes();
    format!("{PREFIX}{}", hex::encode(tag))
}

/// Checks a webhook body against its `X-Hub-Signature-256` header value.
pub fn verify(secret: &[u8], header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .strip_prefix(PREFIX.as_bytes())
        .ok_or(SignatureError::BadPrefix)?;
    let mut expected = [0u8; 32];
    hex::decode_to_slice(hex_digest.trim_ascii_end(), &mut expected)
        .map_err(|_| SignatureError::BadHex)?;
    if body.is_empty() {
        return Err(SignatureError::EmptyBody);
    }
    mac(secret, body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_secret_verifies_nothing() {
        let forged = sign(b"", b"{}");
        assert_eq!(
            verify(b"", Some(forged.as_bytes()), b"{}"),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn sign_then_verify() {
        let sig = sign(b"secret", b"{}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert_eq!(verify(b"secret", Some(sig.as_bytes()), b"{}"), Ok(()));
        assert_eq!(
            verify(
                b"secret",
                Some(sig.to_uppercase().replace("SHA256=", "sha256=").as_bytes()),
                b"{}"
            ),
            Ok(()),
            "hex digits in either case"
        );
    }
}
