//! Where to connect: a checked `ws://` or `wss://` URL and, for `wss://`,
//! the [`Trust`] that decides which certificate is the server's.

use std::net::IpAddr;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::http::Uri;

use super::ConnectionError;
use crate::tls::{self, HandshakeError, Trust};

/// A byte stream to the server: plain TCP, or TLS over TCP.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// A server to connect to: a checked `ws://` or `wss://` URL and, for
/// `wss://`, how to trust the server's certificate.
#[derive(Debug, Clone)]
pub struct Endpoint {
    url: String,
    host: String,
    port: u16,
    trust: Option<Trust>,
}

impl Endpoint {
    /// Checks `url` and adds the `/v1` path when none is given.
    ///
    /// `wss://` is allowed to any host but needs `trust`. Plain `ws://` is
    /// allowed only to this computer, because passwords and tokens must
    /// never cross a network unencrypted; `trust` is refused with it, since
    /// a user who gave a pin expects TLS.
    pub fn new(url: &str, trust: Option<Trust>) -> Result<Self, ConnectionError> {
        let bad = |why: &str| {
            ConnectionError::BadUrl(format!("cannot use server address '{url}': {why}"))
        };
        let example = "it must look like wss://wardline.example.nhs.uk/v1 (or ws://127.0.0.1:7443/v1 for a server on this computer)";
        let secure = if url.starts_with("wss://") {
            true
        } else if url.starts_with("ws://") {
            false
        } else {
            return Err(bad(example));
        };
        let uri: Uri = url.parse().map_err(|_| bad(example))?;
        let authority = uri.authority().ok_or_else(|| bad(example))?;
        if authority.as_str().contains('@') {
            return Err(bad("user names and passwords do not belong in the address"));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        if host.is_empty() {
            return Err(bad(example));
        }
        let port = authority
            .port_u16()
            .unwrap_or(if secure { 443 } else { 80 });
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match (secure, &trust) {
            (true, None) => return Err(ConnectionError::NoTrust(url.to_owned())),
            (false, Some(_)) => {
                return Err(bad(
                    "--ca and --pin (WARDLINE_CA, WARDLINE_PIN) apply only to wss:// addresses, and this one is plain ws:// without TLS; use wss://",
                ));
            }
            (false, None) if !loopback => {
                return Err(bad(
                    "plain ws:// (no TLS) is allowed only to a server on this computer (127.0.0.1, ::1 or localhost); use wss:// with --pin or --ca",
                ));
            }
            _ => {}
        }
        let url = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("" | "/") => {
                let scheme = if secure { "wss" } else { "ws" };
                format!("{scheme}://{authority}/v1")
            }
            Some(_) => url.to_owned(),
        };
        Ok(Self {
            url,
            host,
            port,
            trust,
        })
    }

    /// The URL, with its path.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How the server's certificate is trusted (`None` for `ws://`).
    pub fn trust(&self) -> Option<&Trust> {
        self.trust.as_ref()
    }

    /// TCP, then TLS when the URL is `wss://`.
    pub(super) async fn transport(&self) -> Result<Pin<Box<dyn Transport>>, ConnectionError> {
        let unreachable = |reason: String| ConnectionError::Connect {
            url: self.url.clone(),
            reason,
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let Some(trust) = &self.trust else {
            return Ok(Box::pin(tcp));
        };
        match tls::handshake(tcp, &self.host, trust).await {
            Ok(stream) => Ok(Box::pin(stream)),
            Err(HandshakeError::PinMismatch { actual }) => Err(ConnectionError::PinMismatch {
                url: self.url.clone(),
                actual,
            }),
            Err(HandshakeError::Untrusted(reason)) => Err(ConnectionError::Untrusted {
                url: self.url.clone(),
                reason,
                advice: if trust.is_pin() {
                    // The fingerprint matched, so the certificate is right but
                    // the handshake proof is not: an impostor replaying it.
                    "the server showed the pinned certificate but could not prove it holds its private key, so someone may be impersonating the server: report it to IT"
                } else {
                    "check that --ca names the CA that signed the server's certificate, that the address matches a name in the certificate, and that the computer's clock is right"
                },
            }),
            Err(HandshakeError::Other(reason)) => {
                Err(unreachable(format!("TLS handshake failed: {reason}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin() -> Trust {
        Trust::pin(tls::Fingerprint::of(b"a certificate"))
    }

    fn url(url: &str, trust: Option<Trust>) -> String {
        match Endpoint::new(url, trust) {
            Ok(e) => e.url().to_owned(),
            Err(e) => panic!("{url}: {e}"),
        }
    }

    #[test]
    fn accepts_loopback_ws_urls_and_adds_the_v1_path() {
        assert_eq!(url("ws://127.0.0.1:7443", None), "ws://127.0.0.1:7443/v1");
        assert_eq!(url("ws://localhost:7443/", None), "ws://localhost:7443/v1");
        assert_eq!(url("ws://[::1]:80/v1", None), "ws://[::1]:80/v1");
        assert_eq!(url("ws://127.0.0.2/v1", None), "ws://127.0.0.2/v1");
    }

    #[test]
    fn accepts_wss_to_any_host_with_a_pin() -> Result<(), ConnectionError> {
        let e = Endpoint::new("wss://wardline.nhs.example", Some(pin()))?;
        assert_eq!(e.url(), "wss://wardline.nhs.example/v1");
        assert_eq!((e.host.as_str(), e.port), ("wardline.nhs.example", 443));
        let e = Endpoint::new("wss://[2001:db8::7]:7443/v1", Some(pin()))?;
        assert_eq!((e.host.as_str(), e.port), ("2001:db8::7", 7443));
        assert_eq!(
            url("wss://10.0.0.5:7443/v1", Some(pin())),
            "wss://10.0.0.5:7443/v1"
        );
        Ok(())
    }

    #[test]
    fn refuses_plain_text_to_other_hosts_and_says_to_use_wss() {
        for bad in [
            "ws://10.0.0.5:7443/v1",
            "ws://wardline.nhs.example/v1",
            "ws://127.0.0.1.evil.example/v1",
        ] {
            let err = Endpoint::new(bad, None).expect_err(bad).to_string();
            assert!(err.contains("wss://"), "{bad}: {err}");
        }
        for bad in [
            "http://127.0.0.1:7443/v1",
            "127.0.0.1:7443",
            "wss://",
            "ws:///v1",
            "wss://127.0.0.1@evil.example/v1",
        ] {
            assert!(Endpoint::new(bad, Some(pin())).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_wss_without_a_way_to_trust_the_certificate() {
        let err = Endpoint::new("wss://wardline.nhs.example/v1", None).expect_err("no trust");
        assert!(matches!(err, ConnectionError::NoTrust(_)));
        let text = err.to_string();
        for needle in ["--pin", "--ca", "fingerprint", "the server prints it"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }

    #[test]
    fn refuses_a_pin_with_plain_ws() {
        let err = Endpoint::new("ws://127.0.0.1:7443/v1", Some(pin())).expect_err("pin on ws");
        assert!(err.to_string().contains("use wss://"), "{err}");
    }
}
