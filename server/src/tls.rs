//! TLS for the client listener: rustls on the ring provider.
//!
//! Either PEM files given by the operator, or (`--dev-tls`) a self-signed
//! certificate for the listen address kept in the data directory, whose
//! SHA-256 fingerprint clients pin.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::digest;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Config, Tls};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing or unreadable.
    #[error("cannot read {path}: {why}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The certificate and key do not make a usable configuration.
    #[error("tls.cert/tls.key are not a usable certificate and key: {0}")]
    Invalid(String),
    /// The development certificate could not be made.
    #[error("cannot create the development certificate: {0}")]
    Dev(String),
}

/// A ready TLS acceptor and the certificate's fingerprint.
#[derive(Clone)]
pub struct Acceptor {
    /// Accepts TLS connections.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// SHA-256 of the leaf certificate, as colon-separated hex.
    pub fingerprint: String,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// The colon-separated SHA-256 of a DER certificate (what clients pin).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    digest::digest(&digest::SHA256, cert.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Builds the acceptor the configuration asks for, if any.
pub fn acceptor(config: &Config) -> Result<Option<Acceptor>, TlsError> {
    let (cert_path, key_path) = match &config.tls {
        Tls::Off => return Ok(None),
        Tls::Files { cert, key } => (cert.clone(), key.clone()),
        Tls::Dev => dev_certificate(config)?,
    };
    let read_err = |path: &Path, e: rustls_pki_types::pem::Error| TlsError::Read {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| read_err(&cert_path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(&cert_path, e))?;
    let leaf = chain.first().ok_or_else(|| {
        TlsError::Invalid(format!("{} holds no certificate", cert_path.display()))
    })?;
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| read_err(&key_path, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    Ok(Some(Acceptor {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        fingerprint,
    }))
}

/// Creates (once) a self-signed certificate for the listen address and
/// `localhost` under `<data-dir>/dev-tls/`.
fn dev_certificate(config: &Config) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = config.data_dir.join("dev-tls");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir).map_err(|e| TlsError::Dev(e.to_string()))?;
    let mut names = vec!["localhost".to_string()];
    let ip = config.listen.ip();
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    let made =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Dev(e.to_string()))?;
    let write = |path: &Path, text: String, mode: u32| -> Result<(), TlsError> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .map_err(|e| TlsError::Dev(e.to_string()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| TlsError::Dev(e.to_string()))
    };
    write(&key, made.signing_key.serialize_pem(), 0o600)?;
    write(&cert, made.cert.pem(), 0o644)?;
    Ok((cert, key))
}
