//! Redis over TLS (`rediss://`): which CA to trust, which certificate to show, and errors that
//! say which of them is wrong.
//!
//! Managed Redis services (ElastiCache with encryption in transit, Azure Cache for Redis,
//! Memorystore, Redis Cloud, Upstash) take TLS connections only. A URL `rediss://…` verifies
//! the server's certificate against the system's trusted roots, or against [`RedisTls::ca_pem`]
//! when given (a private CA, such as Memorystore's or one's own); the host name in the URL must
//! be one the certificate names. A Redis that asks clients for a certificate
//! (`tls-auth-clients yes`) is shown [`RedisTls::client`]. Certificate checks are never turned
//! off: a URL with `#insecure` is refused.

use herald_store::StoreError;
use redis::{ClientTlsConfig, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What a TLS connection to Redis trusts and shows (PEM). Empty: the system's roots, no
/// client certificate.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// The CA certificates that may sign Redis's certificate, instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate chain and its private key, for a Redis that asks for one.
    pub client: Option<ClientCert>,
}

/// A client certificate chain and its private key (PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Certificates are public, but a key is not: show only what is set.
        f.debug_struct("RedisTls")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<set>"))
            .field("client", &self.client.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl RedisTls {
    fn is_empty(&self) -> bool {
        self.ca_pem.is_none() && self.client.is_none()
    }

    /// Each PEM holds what it should (the Redis client would take a file without a
    /// certificate for an empty list, and fail only at the handshake).
    fn check_pem(&self) -> Result<(), StoreError> {
        let invalid = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Invalid(format!("redis TLS: {what}: {e}"))
        };
        let certs = |pem: &[u8], what: &str| -> Result<(), StoreError> {
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                cert.map_err(|e| invalid(what, &e))?;
                n += 1;
            }
            if n == 0 {
                return Err(invalid(what, &"holds no PEM certificate"));
            }
            Ok(())
        };
        if let Some(ca) = &self.ca_pem {
            certs(ca, "the CA file (store.tls_ca_file)")?;
        }
        if let Some(c) = &self.client {
            certs(&c.cert_pem, "the client certificate (store.tls_cert_file)")?;
            PrivateKeyDer::from_pem_slice(&c.key_pem)
                .map_err(|e| invalid("the client key (store.tls_key_file)", &e))?;
        }
        Ok(())
    }

    /// The certificates for the Redis client, when any differ from the defaults.
    pub(crate) fn certificates(&self) -> Option<TlsCertificates> {
        if self.is_empty() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: self.client.as_ref().map(|c| ClientTlsConfig {
                client_cert: c.cert_pem.clone(),
                client_key: c.key_pem.clone(),
            }),
            root_cert: self.ca_pem.clone(),
        })
    }
}

/// Whether `urls` (one node, or a Cluster's comma-separated nodes, already split) use TLS:
/// all of them or none, never with `#insecure`, and with TLS whenever certificates are given.
pub(crate) fn check(urls: &[&str], tls: &RedisTls) -> Result<bool, StoreError> {
    let secure = |u: &str| u.starts_with("rediss://");
    let on = urls.iter().any(|u| secure(u));
    if on && !urls.iter().all(|u| secure(u)) {
        return Err(StoreError::Invalid(
            "redis url: some nodes are rediss:// (TLS) and some redis://: a Cluster's nodes \
             are all one or the other"
                .into(),
        ));
    }
    if urls.iter().any(|u| u.contains("#insecure")) {
        return Err(StoreError::Invalid(
            "redis url: #insecure would accept any certificate, and Herald always checks \
             Redis's: remove it, and give the CA that signed Redis's certificate \
             (store.tls_ca_file) if it is not one the system trusts"
                .into(),
        ));
    }
    if !on && !tls.is_empty() {
        return Err(StoreError::Invalid(
            "redis url: TLS certificates are configured (store.tls_*) but the URL is redis://, \
             which does not use TLS: write rediss://"
                .into(),
        ));
    }
    tls.check_pem()?;
    if on {
        // The Redis client builds its TLS configuration with the process's provider; install
        // it (ring, as for every other TLS client here) if nothing has yet.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    Ok(on)
}

/// What to do about a failed connection over TLS, judged from the error's text (the TLS
/// library's alerts and verifier errors reach us only as text), or `None` when it is not
/// about TLS.
pub(crate) fn remedy(error: &str) -> Option<&'static str> {
    let e = error.to_ascii_lowercase();
    if e.contains("unknownissuer") || e.contains("unknown issuer") {
        Some(
            "Redis's certificate is not signed by a CA this process trusts: set \
             store.tls_ca_file to the CA that signed it",
        )
    } else if e.contains("badsignature") || e.contains("bad signature") {
        Some(
            "Redis's certificate names a CA this process trusts, but that CA did not sign it \
             (a CA renewed under the same name?): set store.tls_ca_file to the CA that signed it",
        )
    } else if e.contains("notvalidforname") || e.contains("not valid for name") {
        Some(
            "Redis's certificate does not name the host in the URL: connect by a name \
             (or IP address) the certificate lists",
        )
    } else if e.contains("certificaterequired") || e.contains("certificate required") {
        Some(
            "Redis asks for a client certificate: set store.tls_cert_file and \
             store.tls_key_file",
        )
    } else if e.contains("expired") && e.contains("cert") {
        Some("Redis's certificate has expired (or is not valid yet): renew it")
    } else if e.contains("invalidcontenttype")
        || e.contains("corrupt message")
        || e.contains("invalidmessage")
    {
        Some("Redis did not answer in TLS: is it a plain redis:// port?")
    } else if e.contains("pem") || e.contains("trust anchor") || e.contains("private key") {
        Some("a TLS certificate or key file is not valid PEM")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ca() -> RedisTls {
        RedisTls {
            ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            client: None,
        }
    }

    #[test]
    fn urls_must_agree_on_tls() {
        assert!(!check(&["redis://a:1"], &RedisTls::default()).unwrap());
        assert!(check(&["rediss://a:1", "rediss://b:1"], &RedisTls::default()).unwrap());
        let mixed = check(&["rediss://a:1", "redis://b:1"], &RedisTls::default()).unwrap_err();
        assert!(
            mixed.to_string().contains("some nodes are rediss://"),
            "{mixed}"
        );
        let plain = check(&["redis://a:1"], &ca()).unwrap_err();
        assert!(plain.to_string().contains("write rediss://"), "{plain}");
        let insecure = check(&["rediss://a:1/#insecure"], &RedisTls::default()).unwrap_err();
        assert!(
            insecure.to_string().contains("store.tls_ca_file"),
            "{insecure}"
        );
    }

    #[test]
    fn tls_failures_name_their_remedy() {
        let cases = [
            (
                "invalid peer certificate: UnknownIssuer",
                "store.tls_ca_file",
            ),
            ("invalid peer certificate: BadSignature", "did not sign it"),
            (
                "invalid peer certificate: NotValidForName",
                "does not name the host",
            ),
            (
                "received fatal alert: CertificateRequired",
                "store.tls_cert_file",
            ),
            ("invalid peer certificate: Expired", "expired"),
        ];
        for (error, says) in cases {
            let remedy = remedy(error).unwrap_or_default();
            assert!(remedy.contains(says), "{error}: {remedy}");
            // One sentence, as it reads in a log line (a string broken without `\` keeps
            // its indentation).
            assert!(!remedy.contains("  "), "{error}: {remedy:?}");
        }
        assert_eq!(remedy("Connection refused (os error 111)"), None);
    }

    #[test]
    fn debug_shows_no_key() {
        let tls = RedisTls {
            ca_pem: None,
            client: Some(ClientCert {
                cert_pem: b"CERT".to_vec(),
                key_pem: b"SECRET KEY".to_vec(),
            }),
        };
        let shown = format!("{tls:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("<set>"), "{shown}");
    }
}
