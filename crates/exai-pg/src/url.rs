//! The database URL: libpq's `sslmode` semantics on top of the client's own parser, and a
//! redacted form for every place a URL is shown (logs, errors, health, the dashboard).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::{PgError, Result};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, no certificate check (libpq's default; also `allow`).
    Prefer,
    /// TLS or fail; no certificate check (as libpq, unless `sslrootcert` is given).
    Require,
    /// TLS; the chain must lead to a trusted root (`sslrootcert`, else the system's roots).
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Whether `s` names a PostgreSQL database (`postgres://`, `postgresql://`).
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// A parsed database URL.
#[derive(Clone)]
pub struct DatabaseUrl {
    pub config: postgres::Config,
    pub ssl: SslMode,
    pub root_cert: Option<PathBuf>,
    redacted: String,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("url", &self.redacted)
            .field("ssl", &self.ssl)
            .finish()
    }
}

/// `url` with its password replaced by `***` (URL and `key=value` forms).
pub fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let mut out = url[..scheme_end + 3].to_string();
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        let tail = &rest[authority_end..];
        match tail.split_once('?') {
            Some((path, query)) => {
                out.push_str(path);
                out.push('?');
                let params: Vec<String> = query
                    .split('&')
                    .map(|p| match p.split_once('=') {
                        Some((k, _)) if k == "password" => format!("{k}=***"),
                        _ => p.to_string(),
                    })
                    .collect();
                out.push_str(&params.join("&"));
            }
            None => out.push_str(tail),
        }
        return out;
    }
    url.split_whitespace()
        .map(|p| match p.split_once('=') {
            Some(("password", _)) => "password=***".to_string(),
            _ => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl DatabaseUrl {
    /// Parse a `postgres://` URL or a libpq `key=value` string. `sslmode` takes all of libpq's
    /// values (the client library alone knows only three); `sslrootcert` names a PEM file.
    pub fn parse(url: &str) -> Result<DatabaseUrl> {
        let redacted = redact(url);
        let bad = |reason: String| PgError::Url {
            url: redacted.clone(),
            reason,
        };
        let mut ssl = None;
        let mut root_cert = None;
        let mut take = |key: &str, value: &str| -> Result<bool> {
            match key {
                "sslmode" => {
                    ssl = Some(SslMode::parse(value).ok_or_else(|| {
                        bad(format!(
                            "sslmode `{value}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                        ))
                    })?);
                    Ok(true)
                }
                "sslrootcert" => {
                    root_cert = Some(PathBuf::from(value));
                    Ok(true)
                }
                "sslcert" | "sslkey" | "sslpassword" | "sslcrl" => Err(bad(format!(
                    "`{key}` (client certificates) is not supported; use password or trust authentication over TLS"
                ))),
                _ => Ok(false),
            }
        };
        let cleaned = if is_postgres_url(url) {
            match url.split_once('?') {
                Some((base, query)) => {
                    let mut kept = Vec::new();
                    for param in query.split('&').filter(|p| !p.is_empty()) {
                        let (k, v) = param.split_once('=').unwrap_or((param, ""));
                        if !take(k, &percent_decode(v))? {
                            kept.push(param);
                        }
                    }
                    if kept.is_empty() {
                        base.to_string()
                    } else {
                        format!("{base}?{}", kept.join("&"))
                    }
                }
                None => url.to_string(),
            }
        } else if url.contains('=') {
            let mut kept = Vec::new();
            for part in url.split_whitespace() {
                let (k, v) = part.split_once('=').unwrap_or((part, ""));
                if !take(k, v.trim_matches('\''))? {
                    kept.push(part);
                }
            }
            kept.join(" ")
        } else {
            return Err(bad(
                "expected postgres://user:password@host:port/database (or libpq key=value pairs)"
                    .into(),
            ));
        };
        let mut config: postgres::Config = cleaned
            .parse()
            .map_err(|e: postgres::Error| bad(crate::error::describe(&e)))?;
        if config.get_hosts().is_empty() {
            return Err(bad("no host given".into()));
        }
        // An explicit root certificate asks for verification even under `require`, as in libpq.
        let ssl = match (ssl.unwrap_or(SslMode::Prefer), &root_cert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        };
        config.ssl_mode(match ssl {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        });
        if config.get_application_name().is_none() {
            config.application_name("exai");
        }
        Ok(DatabaseUrl {
            config,
            ssl,
            root_cert,
            redacted,
        })
    }

    /// The URL as it may be shown: password replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The TLS client configuration `sslmode` asks for (`None`: plain TCP).
    pub fn tls(&self) -> Result<Option<rustls::ClientConfig>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.tls_error(e.to_string()))?;
        let config = match self.ssl {
            SslMode::Disable => return Ok(None),
            SslMode::Prefer | SslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoCertificateCheck(provider)))
                .with_no_client_auth(),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = Arc::new(self.roots()?);
                let webpki =
                    rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                        .build()
                        .map_err(|e| self.tls_error(e.to_string()))?;
                if self.ssl == SslMode::VerifyFull {
                    builder.with_webpki_verifier(webpki).with_no_client_auth()
                } else {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                        .with_no_client_auth()
                }
            }
        };
        Ok(Some(config))
    }

    fn tls_error(&self, reason: String) -> PgError {
        PgError::Url {
            url: self.redacted.clone(),
            reason: format!("TLS set-up failed: {reason}"),
        }
    }

    fn roots(&self) -> Result<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect())
                    .map_err(|e| {
                        self.tls_error(format!("cannot read sslrootcert {}: {e}", path.display()))
                    })?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(self.tls_error(format!(
                        "sslrootcert {} holds no usable certificate",
                        path.display()
                    )));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(self.tls_error(format!(
                        "sslmode={} needs trusted roots, and the system has none; give sslrootcert=/path/to/ca.pem",
                        self.ssl.as_str()
                    )));
                }
            }
        }
        Ok(roots)
    }
}

/// `prefer`/`require`: encrypted, the certificate unchecked (libpq's own meaning of those modes).
#[derive(Debug)]
struct NoCertificateCheck(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must be trusted; the name need not match.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://alice:s3cr%40t@db.example.com:5432/exai?sslmode=require"),
            "postgres://alice:***@db.example.com:5432/exai?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://bob@localhost/x?password=hunter2&sslmode=disable"),
            "postgresql://bob@localhost/x?password=***&sslmode=disable"
        );
        assert_eq!(
            redact("host=/tmp user=me password=pw dbname=x"),
            "host=/tmp user=me password=*** dbname=x"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn all_of_libpqs_sslmodes_parse() {
        for (given, want) in [
            ("", SslMode::Prefer),
            ("?sslmode=disable", SslMode::Disable),
            ("?sslmode=allow", SslMode::Prefer),
            ("?sslmode=require", SslMode::Require),
            ("?sslmode=verify-ca", SslMode::VerifyCa),
            (
                "?sslmode=verify-full&connect_timeout=3",
                SslMode::VerifyFull,
            ),
            (
                "?sslmode=require&sslrootcert=%2Ftmp%2Fca.pem",
                SslMode::VerifyCa,
            ),
        ] {
            let url = DatabaseUrl::parse(&format!(
                "postgres://u:p@db.supabase.co:5432/postgres{given}"
            ))
            .unwrap();
            assert_eq!(url.ssl, want, "{given}");
            assert!(!format!("{url:?}").contains(":p@"));
        }
        let url = DatabaseUrl::parse("postgres://u@h/d?sslrootcert=%2Ftmp%2Fca.pem").unwrap();
        assert_eq!(
            url.root_cert.as_deref(),
            Some(std::path::Path::new("/tmp/ca.pem"))
        );
        let err = DatabaseUrl::parse("postgres://u:pw@h/d?sslmode=maybe")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sslmode `maybe`") && !err.contains("pw@"),
            "{err}"
        );
        let err = DatabaseUrl::parse("postgres://u@h/d?sslcert=a.pem")
            .unwrap_err()
            .to_string();
        assert!(err.contains("client certificates"), "{err}");
        assert!(DatabaseUrl::parse("mysql is not it").is_err());
        // TLS set-up for the unchecked modes needs no roots.
        assert!(
            DatabaseUrl::parse("postgres://h/d?sslmode=require")
                .unwrap()
                .tls()
                .unwrap()
                .is_some()
        );
        assert!(
            DatabaseUrl::parse("postgres://h/d?sslmode=disable")
                .unwrap()
                .tls()
                .unwrap()
                .is_none()
        );
    }
}
