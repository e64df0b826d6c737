//! TLS on the Kafka listener (rustls with the ring provider, chosen explicitly: the broker is
//! built together with crates that bring aws-lc-rs). The certificate chain and private key are
//! PEM files; when either file changes (cert-manager renewing a Kubernetes Secret, say) the next
//! connection is served with the new pair, with no restart. A pair that does not load is
//! logged and the previous one stays in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

#[derive(Debug)]
struct Loaded {
    config: Arc<ServerConfig>,
    /// Modification times of (cert, key) the config was built from.
    stamps: (Option<SystemTime>, Option<SystemTime>),
}

#[derive(Debug)]
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    loaded: RwLock<Loaded>,
}

fn stamp(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ServerTls {
    /// Loads the pair; an error names the file and what is wrong with it.
    pub fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Self, String> {
        let (cert, key) = (cert.into(), key.into());
        let stamps = (stamp(&cert), stamp(&key));
        let config = build(&cert, &key)?;
        Ok(ServerTls { cert, key, loaded: RwLock::new(Loaded { config, stamps }) })
    }

    /// An acceptor with the current pair, reloading it first if a file changed.
    pub fn acceptor(&self) -> TlsAcceptor {
        let stamps = (stamp(&self.cert), stamp(&self.key));
        {
            let loaded = self.loaded.read();
            if loaded.stamps == stamps {
                return TlsAcceptor::from(loaded.config.clone());
            }
        }
        let mut loaded = self.loaded.write();
        if loaded.stamps != stamps {
            match build(&self.cert, &self.key) {
                Ok(config) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    loaded.config = config;
                }
                Err(e) => tracing::error!(error = %e, "cannot reload the TLS certificate; keeping the previous one"),
            }
            // Either way, not again until the files change again.
            loaded.stamps = stamps;
        }
        TlsAcceptor::from(loaded.config.clone())
    }
}

fn build(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("TLS certificate {}: no certificate in the file", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| format!("TLS certificate {} and key {}: {e}", cert.display(), key.display()))?;
    Ok(Arc::new(config))
}
