//! TLS to the server: rustls on the ring provider, with no system roots.
//!
//! The client trusts exactly what the operator tells it to, in one of two
//! ways ([`Trust`]):
//!
//! * a CA: PEM certificates (`--ca FILE`); the server's chain must lead to
//!   one of them and its certificate must name the host and be in date,
//!   checked by rustls's WebPKI verifier;
//! * a pin: the SHA-256 fingerprint of the server's own certificate
//!   (`--pin`), as the server prints it at start. The leaf certificate's
//!   hash must equal it (compared in constant time); its name and dates are
//!   not checked, since a pinned self-signed certificate vouches for
//!   nothing but itself. The handshake signature is still verified, so only
//!   the holder of that certificate's private key can complete it.
//!
//! There are deliberately no system roots: a hospital deployment names its
//! CA, and a public CA would let anyone who can obtain a certificate for the
//! host name read clinical traffic.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use ring::digest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, SignatureScheme};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Why a `--ca` or `--pin` cannot be used.
#[derive(Debug, Error)]
pub enum TrustError {
    /// The CA file could not be read.
    #[error("cannot read the CA certificate file {path}: {why}")]
    ReadCa {
        /// The file, as given.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// The CA text holds no usable certificate.
    #[error(
        "{origin} holds no usable PEM certificate ({why}); --ca needs the CA certificate that signed the server's certificate, in PEM (-----BEGIN CERTIFICATE-----)"
    )]
    BadCa {
        /// Where the text came from.
        origin: String,
        /// What is wrong.
        why: String,
    },
    /// The pin is not a SHA-256 fingerprint.
    #[error(
        "--pin must be the SHA-256 fingerprint of the server's certificate: 64 hexadecimal digits, with or without colons (AB:CD:...), as the server prints it at start ({0})"
    )]
    BadPin(String),
    /// Both ways of trusting were given.
    #[error(
        "give either --ca (WARDLINE_CA) or --pin (WARDLINE_PIN), not both: a pinned certificate needs no CA"
    )]
    Both,
}

/// Why a TLS handshake failed, as far as the user can act on it.
#[derive(Debug, Error)]
pub(crate) enum HandshakeError {
    /// The server's certificate is not the pinned one.
    #[error("the certificate's fingerprint did not match the pinned one")]
    PinMismatch {
        /// The fingerprint of the certificate the server presented.
        actual: Fingerprint,
    },
    /// The certificate does not chain to the CA, has expired, or does not
    /// name the host.
    #[error("{0}")]
    Untrusted(String),
    /// Anything else (network, protocol).
    #[error("{0}")]
    Other(String),
}

/// The SHA-256 of a DER certificate: what `--pin` names. Not a secret, so
/// it prints; comparisons are constant-time all the same, so a pin check
/// reveals nothing about how close a guess came.
#[derive(Clone, Copy)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `cert`, a DER-encoded certificate.
    pub fn of(cert: &[u8]) -> Self {
        let hash = digest::digest(&digest::SHA256, cert);
        let mut out = [0u8; 32];
        out.copy_from_slice(hash.as_ref());
        Self(out)
    }

    /// Parses 64 hex digits, any case, with or without colons between bytes.
    pub fn parse(text: &str) -> Result<Self, TrustError> {
        let digits: Vec<u8> = text.trim().bytes().filter(|b| *b != b':').collect();
        if let Some(bad) = digits.iter().find(|b| !b.is_ascii_hexdigit()) {
            return Err(TrustError::BadPin(format!(
                "'{}' is not a hexadecimal digit",
                char::from(*bad).escape_default()
            )));
        }
        if digits.len() != 64 {
            return Err(TrustError::BadPin(format!(
                "got {} hexadecimal digits",
                digits.len()
            )));
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        Ok(Self(out))
    }

    /// Whether `other` is the same fingerprint, in constant time.
    pub fn matches(&self, other: &Fingerprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        // Callers check `is_ascii_hexdigit` first.
        _ => 0,
    }
}

/// Uppercase, colon-separated: the server's format.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// How to trust a `wss://` server: a CA, or the pinned fingerprint of the
/// server's certificate. Built only from checked input, so a `Trust` always
/// holds at least one certificate or a well-formed pin.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "TrustRepr", into = "TrustRepr")]
pub struct Trust(Arc<Anchor>);

enum Anchor {
    /// The PEM text (kept so the keystore can store exactly what was given)
    /// and the certificates in it.
    Ca {
        pem: String,
        certs: Vec<CertificateDer<'static>>,
    },
    Pin(Fingerprint),
}

/// How a [`Trust`] is kept in the keystore.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum TrustRepr {
    CaPem(String),
    Pin(String),
}

impl TryFrom<TrustRepr> for Trust {
    type Error = TrustError;

    fn try_from(repr: TrustRepr) -> Result<Self, TrustError> {
        match repr {
            TrustRepr::CaPem(pem) => Trust::ca_pem(pem, "the CA stored in the keystore"),
            TrustRepr::Pin(pin) => Fingerprint::parse(&pin).map(Trust::pin),
        }
    }
}

impl From<Trust> for TrustRepr {
    fn from(trust: Trust) -> Self {
        match &*trust.0 {
            Anchor::Ca { pem, .. } => TrustRepr::CaPem(pem.clone()),
            Anchor::Pin(pin) => TrustRepr::Pin(pin.to_string()),
        }
    }
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Trust({self})")
    }
}

/// For people: what the client trusts.
impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Anchor::Ca { certs, .. } => write!(f, "CA file with {} certificate(s)", certs.len()),
            Anchor::Pin(pin) => write!(f, "certificate pinned to {pin}"),
        }
    }
}

impl Trust {
    /// Trust in exactly the certificate with this fingerprint.
    pub fn pin(fingerprint: Fingerprint) -> Self {
        Self(Arc::new(Anchor::Pin(fingerprint)))
    }

    /// Trust in the CA certificates in `pem`; `source` says where the text
    /// came from, for errors.
    pub fn ca_pem(pem: String, source: &str) -> Result<Self, TrustError> {
        let bad = |why: String| TrustError::BadCa {
            origin: source.to_owned(),
            why,
        };
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no CERTIFICATE block".into()));
        }
        // Fail now rather than at the first connection: the store refuses
        // certificates it cannot use as trust anchors.
        let mut roots = rustls::RootCertStore::empty();
        for c in &certs {
            roots.add(c.clone()).map_err(|e| bad(e.to_string()))?;
        }
        Ok(Self(Arc::new(Anchor::Ca { pem, certs })))
    }

    /// The trust the command line asks for: `--ca FILE` or `--pin SHA256`
    /// (at most one), or `None`.
    pub fn from_args(ca: Option<&Path>, pin: Option<&str>) -> Result<Option<Self>, TrustError> {
        match (ca, pin) {
            (Some(_), Some(_)) => Err(TrustError::Both),
            (None, Some(pin)) => Fingerprint::parse(pin).map(|p| Some(Self::pin(p))),
            (Some(path), None) => {
                let pem = std::fs::read_to_string(path).map_err(|e| TrustError::ReadCa {
                    path: path.display().to_string(),
                    why: e.to_string(),
                })?;
                Self::ca_pem(pem, &path.display().to_string()).map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// Whether this is a pin (rather than a CA).
    pub fn is_pin(&self) -> bool {
        matches!(*self.0, Anchor::Pin(_))
    }

    /// A rustls client configuration that trusts what `self` says.
    fn client_config(&self) -> Result<ClientConfig, HandshakeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| HandshakeError::Other(e.to_string()))?;
        let config = match &*self.0 {
            Anchor::Ca { certs, .. } => {
                let mut roots = rustls::RootCertStore::empty();
                for c in certs {
                    roots
                        .add(c.clone())
                        .map_err(|e| HandshakeError::Untrusted(e.to_string()))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Anchor::Pin(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(*pin, &provider)))
                .with_no_client_auth(),
        };
        Ok(config)
    }
}

/// Runs the TLS handshake on `tcp` for `host` (a DNS name or an IP address,
/// without brackets), trusting what `trust` says.
pub(crate) async fn handshake(
    tcp: TcpStream,
    host: &str,
    trust: &Trust,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| HandshakeError::Other(format!("'{host}' is not a usable host name: {e}")))?;
    let connector = TlsConnector::from(Arc::new(trust.client_config()?));
    connector.connect(name, tcp).await.map_err(|e| classify(&e))
}

/// Turns what tokio-rustls reports into something the user can act on.
fn classify(err: &std::io::Error) -> HandshakeError {
    let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return HandshakeError::Other(err.to_string());
    };
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            match other.0.downcast_ref::<PinMismatch>() {
                Some(m) => HandshakeError::PinMismatch { actual: m.actual },
                None => HandshakeError::Untrusted(tls.to_string()),
            }
        }
        rustls::Error::InvalidCertificate(_) => HandshakeError::Untrusted(tls.to_string()),
        _ => HandshakeError::Other(tls.to_string()),
    }
}

/// Carried inside rustls's error so [`classify`] can say which certificate
/// the server presented.
#[derive(Debug, Error)]
#[error("the server's certificate fingerprint {actual} is not the pinned one")]
struct PinMismatch {
    actual: Fingerprint,
}

/// Accepts exactly the certificate whose SHA-256 is pinned, and checks the
/// handshake signature against it with rustls's own helpers.
#[derive(Debug)]
struct PinnedVerifier {
    pin: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    fn new(pin: Fingerprint, provider: &CryptoProvider) -> Self {
        Self {
            pin,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Name and validity dates are ignored on purpose: the pin names this
        // exact certificate, which is typically self-signed for the server.
        let actual = Fingerprint::of(end_entity.as_ref());
        if actual.matches(&self.pin) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch { actual })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRINTED: &str = "3A:91:0F:5C:D2:7B:E8:14:6A:C0:93:2F:B5:58:E1:07:4D:9C:A6:32:F0:1B:8E:77:C5:29:6D:B3:04:EA:58:1F";

    #[test]
    fn parses_the_servers_format_and_prints_it_back() -> Result<(), TrustError> {
        let fp = Fingerprint::parse(PRINTED)?;
        assert_eq!(fp.to_string(), PRINTED);
        Ok(())
    }

    #[test]
    fn accepts_pins_without_colons_in_any_case() -> Result<(), TrustError> {
        let bare: String = PRINTED.chars().filter(|c| *c != ':').collect();
        for text in [bare.to_lowercase(), bare.clone(), format!("  {bare}\n")] {
            assert!(Fingerprint::parse(&text)?.matches(&Fingerprint::parse(PRINTED)?));
        }
        Ok(())
    }

    #[test]
    fn rejects_pins_of_the_wrong_length_or_alphabet() {
        for bad in [
            "",
            "AB:CD",
            &PRINTED[..PRINTED.len() - 3],
            &format!("{PRINTED}:00"),
            &PRINTED.replace('3', "G"),
            "sha256/3A910F5CD27BE8146AC0932FB558E1074D9CA632F01B8E77C5296DB304EA581F",
        ] {
            let err = Fingerprint::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("64 hexadecimal digits"), "{err}");
        }
    }

    #[test]
    fn fingerprint_is_the_sha256_of_the_der_bytes() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            Fingerprint::of(b"abc").to_string(),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn pinned_verifier_accepts_only_the_pinned_certificate() {
        let provider = rustls::crypto::ring::default_provider();
        let cert = CertificateDer::from(b"not really DER, but hashed all the same".to_vec());
        let name = ServerName::try_from("wardline.example").expect("valid name");
        let now = UnixTime::now();

        let right = PinnedVerifier::new(Fingerprint::of(cert.as_ref()), &provider);
        assert!(
            right
                .verify_server_cert(&cert, &[], &name, &[], now)
                .is_ok()
        );

        let wrong = PinnedVerifier::new(Fingerprint::of(b"another certificate"), &provider);
        let err = wrong
            .verify_server_cert(&cert, &[], &name, &[], now)
            .expect_err("a different certificate");
        let rustls::Error::InvalidCertificate(CertificateError::Other(other)) = &err else {
            panic!("unexpected error {err:?}");
        };
        let mismatch = other
            .0
            .downcast_ref::<PinMismatch>()
            .expect("a PinMismatch");
        assert!(mismatch.actual.matches(&Fingerprint::of(cert.as_ref())));
    }

    #[test]
    fn trust_round_trips_through_the_keystore_format() -> Result<(), Box<dyn std::error::Error>> {
        let trust = Trust::pin(Fingerprint::parse(PRINTED)?);
        let json = serde_json::to_string(&trust)?;
        assert_eq!(json, format!(r#"{{"pin":"{PRINTED}"}}"#));
        let back: Trust = serde_json::from_str(&json)?;
        assert_eq!(back.to_string(), trust.to_string());

        assert!(serde_json::from_str::<Trust>(r#"{"pin":"12"}"#).is_err());
        assert!(serde_json::from_str::<Trust>(r#"{"ca_pem":"no certificate here"}"#).is_err());
        Ok(())
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let err = Trust::ca_pem("just text\n".into(), "ca.pem").expect_err("no cert");
        assert!(err.to_string().contains("ca.pem"), "{err}");
        assert!(matches!(
            Trust::from_args(Some(Path::new("/nonexistent/ca.pem")), None),
            Err(TrustError::ReadCa { .. })
        ));
        assert!(matches!(
            Trust::from_args(Some(Path::new("ca.pem")), Some(PRINTED)),
            Err(TrustError::Both)
        ));
    }
}
