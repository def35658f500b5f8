//! The client's TLS checks against hand-built TLS servers: a server that
//! presents the trusted certificate but signs the handshake with another
//! key must be refused, whether the certificate is pinned or trusted as a
//! CA. This is what the handshake-signature check is for: a certificate is
//! public, so presenting it proves nothing.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use wardline_cli::connection::{Connection, ConnectionError, Endpoint};
use wardline_cli::tls::{Fingerprint, Trust};
use wardline_server::config::Tls;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A development certificate and key, made by the server's own code.
struct DevCert {
    _dir: tempfile::TempDir,
    cert_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    fingerprint: String,
}

fn dev_cert() -> Result<DevCert, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config =
        wardline_server::Config::new("127.0.0.1:7443".parse()?, dir.path().to_path_buf());
    config.tls = Tls::Dev;
    let acceptor = wardline_server::tls::acceptor(&config)?.ok_or("TLS is configured")?;
    let files = dir.path().join("dev-tls");
    let cert_pem = std::fs::read_to_string(files.join("cert.pem"))?;
    Ok(DevCert {
        cert: CertificateDer::from_pem_slice(cert_pem.as_bytes())?,
        key: PrivateKeyDer::from_pem_file(Path::new(&files.join("key.pem")))?,
        cert_pem,
        fingerprint: acceptor.fingerprint,
        _dir: dir,
    })
}

/// Always presents the same certificate and key, matching or not.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A one-connection WebSocket server over TLS presenting `cert` but
/// signing with `key`.
async fn serve_once(
    cert: &CertificateDer<'static>,
    key: &PrivateKeyDer<'static>,
) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let signer = rustls::crypto::ring::sign::any_supported_type(key)?;
    let certified = Arc::new(CertifiedKey::new(vec![cert.clone()], signer));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(Fixed(certified)));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        if let Ok(tls) = acceptor.accept(tcp).await {
            // Completes the upgrade, so an honest server is fully usable.
            let _ = tokio_tungstenite::accept_async(tls).await;
        }
    });
    Ok(addr)
}

fn trusts(real: &DevCert) -> Result<Vec<Trust>, Box<dyn std::error::Error>> {
    Ok(vec![
        Trust::pin(Fingerprint::parse(&real.fingerprint)?),
        Trust::ca_pem(real.cert_pem.clone(), "the test certificate")?,
    ])
}

#[tokio::test]
async fn the_trusted_certificate_with_its_own_key_is_accepted() -> TestResult {
    let real = dev_cert()?;
    for trust in trusts(&real)? {
        let addr = serve_once(&real.cert, &real.key).await?;
        let endpoint = Endpoint::new(&format!("wss://{addr}/v1"), Some(trust.clone()))?;
        let conn = Connection::connect(&endpoint).await;
        assert!(conn.is_ok(), "{trust}: {:?}", conn.err());
    }
    Ok(())
}

#[tokio::test]
async fn the_trusted_certificate_signed_with_another_key_is_refused() -> TestResult {
    let real = dev_cert()?;
    let impostor = dev_cert()?;
    for trust in trusts(&real)? {
        let addr = serve_once(&real.cert, &impostor.key).await?;
        let endpoint = Endpoint::new(&format!("wss://{addr}/v1"), Some(trust.clone()))?;
        let err = Connection::connect(&endpoint)
            .await
            .expect_err("an impostor must not get through");
        assert!(
            matches!(err, ConnectionError::Untrusted { .. }),
            "{trust}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("BadSignature"), "refused for the key: {text}");
        assert!(text.contains("nothing was sent"), "{text}");
        if trust.is_pin() {
            assert!(text.contains("impersonating"), "{text}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn another_certificate_is_refused_with_its_fingerprint() -> TestResult {
    let real = dev_cert()?;
    let other = dev_cert()?;
    let addr = serve_once(&other.cert, &other.key).await?;
    let trust = Trust::pin(Fingerprint::parse(&real.fingerprint)?);
    let endpoint = Endpoint::new(&format!("wss://{addr}/v1"), Some(trust))?;
    match Connection::connect(&endpoint).await {
        Err(ConnectionError::PinMismatch { actual, .. }) => {
            assert_eq!(actual.to_string(), other.fingerprint);
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
    Ok(())
}
