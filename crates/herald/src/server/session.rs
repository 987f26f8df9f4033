//! Console sessions: the API key, presented once on the sign-in page, is exchanged for a
//! signed cookie (`HttpOnly`, `SameSite=Strict`, `Secure` behind HTTPS). Nothing is stored:
//! the cookie carries its expiry and a nonce, signed with a key derived from the API key, so
//! every API replica accepts it and changing the key signs everyone out. A request the
//! cookie authenticates may change something only with the session's CSRF token in
//! `X-Herald-CSRF` (the console's pages carry it; another site cannot read it).

use axum::http::{HeaderMap, HeaderValue, header};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "herald_session";
/// The header a cookie-authenticated request that changes something must carry.
pub const CSRF_HEADER: &str = "x-herald-csrf";

/// Signs and checks sessions for one API key.
#[derive(Clone)]
pub struct Sessions {
    key: [u8; 32],
    lifetime_secs: u64,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

/// A valid session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// What a page must send back in `X-Herald-CSRF`.
    pub csrf: String,
}

impl Sessions {
    pub fn new(api_key: &str, lifetime_secs: u64) -> Self {
        let mut h = Sha256::new();
        h.update(b"herald console session\0");
        h.update(api_key.as_bytes());
        Self {
            key: h.finalize().into(),
            lifetime_secs,
        }
    }

    fn mac(&self, parts: &[&str]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(b".");
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// A new session's cookie value, valid from `now_secs` for the configured lifetime.
    pub fn issue(&self, now_secs: u64) -> String {
        let expires = (now_secs + self.lifetime_secs).to_string();
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let sig = self.mac(&["session", &expires, &nonce]);
        format!("{expires}.{nonce}.{sig}")
    }

    /// The session a cookie value stands for, if it is ours and has not expired.
    pub fn check(&self, value: &str, now_secs: u64) -> Option<Session> {
        let mut parts = value.split('.');
        let (expires, nonce, sig) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let want = self.mac(&["session", expires, nonce]);
        if !bool::from(want.as_bytes().ct_eq(sig.as_bytes())) {
            return None;
        }
        if expires.parse::<u64>().ok()? <= now_secs {
            return None;
        }
        Some(Session {
            csrf: self.mac(&["csrf", nonce]),
        })
    }

    /// The session the request's cookie carries.
    pub fn from_headers(&self, headers: &HeaderMap, now_secs: u64) -> Option<Session> {
        cookie(headers, COOKIE).and_then(|v| self.check(v, now_secs))
    }

    /// `Set-Cookie` for a new session; `Secure` when the request reached us over HTTPS (a
    /// proxy says so in `X-Forwarded-Proto`).
    pub fn set_cookie(&self, value: &str, request: &HeaderMap) -> HeaderValue {
        let secure = if over_https(request) { "; Secure" } else { "" };
        let v = format!(
            "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.lifetime_secs
        );
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
    }
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie(request: &HeaderMap) -> HeaderValue {
    let secure = if over_https(request) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
    ))
    .unwrap_or(HeaderValue::from_static(""))
}

fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The value of cookie `name`, from any `Cookie` header.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_session_holds_until_it_expires_and_only_under_its_key() {
        let s = Sessions::new("key-1", 100);
        let v = s.issue(1_000);
        let session = s.check(&v, 1_050).unwrap();
        assert_eq!(session.csrf.len(), 64);
        assert!(s.check(&v, 1_100).is_none(), "expired");
        assert!(Sessions::new("key-2", 100).check(&v, 1_050).is_none());
        // Tampering with the expiry breaks the signature.
        let (_, rest) = v.split_once('.').unwrap();
        assert!(s.check(&format!("9999999999.{rest}"), 1_050).is_none());
        assert!(s.check("", 0).is_none() && s.check("a.b.c.d", 0).is_none());
        // Two sessions have different CSRF tokens.
        assert_ne!(s.check(&s.issue(1_000), 1_001).unwrap().csrf, session.csrf);
    }

    #[test]
    fn the_cookie_is_found_among_others_and_flagged() {
        let s = Sessions::new("k", 60);
        let v = s.issue(0);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=1; {COOKIE}={v}; b=2")).unwrap(),
        );
        assert!(s.from_headers(&h, 1).is_some());
        let set = s.set_cookie(&v, &h);
        let set = set.to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && !set.contains("Secure")
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(s.set_cookie(&v, &h).to_str().unwrap().ends_with("; Secure"));
    }
}
