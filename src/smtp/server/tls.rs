//! STARTTLS: the rustls server configuration, loaded once from `server.tls_cert` and
//! `server.tls_key` (PEM). TLS 1.2 and 1.3 only, with the ring provider and rustls' safe
//! default cipher suites; no client certificates (the client is an MTA, authorised by address).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::{self, pki_types::CertificateDer, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::ServerError;

/// Builds the acceptor from a PEM certificate chain and a PEM private key.
pub fn load_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServerError> {
    let tls_err = |m: String| ServerError::Tls(m);
    let open = |p: &Path| {
        File::open(p)
            .map(BufReader::new)
            .map_err(|e| tls_err(format!("cannot read {}: {e}", p.display())))
    };
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(format!("{}: bad PEM: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(tls_err(format!("{}: no certificate found", cert.display())));
    }
    let key_der = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|e| tls_err(format!("{}: bad PEM: {e}", key.display())))?
        .ok_or_else(|| tls_err(format!("{}: no private key found", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls_err(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| tls_err(format!("{} / {}: {e}", cert.display(), key.display())))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
