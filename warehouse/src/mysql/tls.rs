//! The query node's TLS certificate: a PEM chain and a PEM private key, served with rustls and
//! its `ring` provider (named explicitly: other crates in the build bring aws-lc-rs, and rustls
//! refuses to pick between two providers on its own).
//!
//! Certificates get renewed in place (cert-manager rewriting a mounted Secret, an operator
//! running certbot). Every accepted connection first compares the files' modification time and
//! size with those of the loaded pair and reloads on a change, so a renewal needs no restart.
//! A pair that fails to load is logged and the one already loaded keeps being served: a
//! half-written renewal never takes the listener down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// What the reload check compares: modification time and length of (certificate, key).
type Fingerprint = [(Option<SystemTime>, u64); 2];

fn fingerprint(cert: &Path, key: &Path) -> Fingerprint {
    let of = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    };
    [of(cert), of(key)]
}

/// Why a certificate pair cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate chain {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("cannot read the TLS private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the TLS certificate {cert} and key {key} do not make a usable pair: {reason}")]
    Pair { cert: PathBuf, key: PathBuf, reason: String },
}

/// The certificate files and the server configuration last built from them.
#[derive(Debug)]
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<(Fingerprint, Arc<rustls::ServerConfig>)>,
}

impl TlsFiles {
    /// Loads the pair now: a node must not start with a certificate it cannot serve.
    pub fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Self, TlsError> {
        let (cert, key) = (cert.into(), key.into());
        let seen = fingerprint(&cert, &key);
        let config = server_config(&cert, &key)?;
        Ok(TlsFiles { cert, key, current: Mutex::new((seen, config)) })
    }

    /// An acceptor for the next connection, with the pair reloaded first if its files changed.
    pub fn acceptor(&self) -> TlsAcceptor {
        let seen = fingerprint(&self.cert, &self.key);
        let mut current = self.current.lock();
        if current.0 != seen {
            // Retried only when the files change again, not on every connection.
            current.0 = seen;
            match server_config(&self.cert, &self.key) {
                Ok(config) => {
                    tracing::info!(cert = %self.cert.display(), "MySQL TLS certificate reloaded");
                    current.1 = config;
                }
                Err(e) => tracing::error!(error = %e, "MySQL TLS certificate not reloaded; serving the previous one"),
            }
        }
        TlsAcceptor::from(current.1.clone())
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certificate = |reason: String| TlsError::Certificate { path: cert.to_path_buf(), reason };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| certificate(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(certificate("no PEM certificate in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Key { path: key.to_path_buf(), reason: e.to_string() })?;
    let pair = |reason: String| TlsError::Pair { cert: cert.to_path_buf(), key: key.to_path_buf(), reason };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| pair(e.to_string()))?;
    Ok(Arc::new(config))
}
