//! `wardline export --post URL`: the transaction bundle POSTed to a FHIR
//! server's base URL.
//!
//! A deliberately small HTTP/1.1 client rather than an HTTP library: one
//! request per export, `Connection: close`, the response read to its end
//! (bounded in size and time) and parsed with `httparse`; TLS is the same
//! tokio-rustls this client uses for Wardline, trusting only what the
//! operator names (`--fhir-ca`, `--fhir-pin`), never the system's roots.
//! hyper and its stack would add a dozen crates to a client that runs on
//! clinical workstations, for a single POST. Plain `http://` is allowed
//! only to this computer, as with `ws://`.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::http::Uri;

use crate::error::Error;
use crate::tls::{self, HandshakeError, Trust};

/// The environment variable holding a bearer token for the FHIR server
/// (never a flag: command lines are visible to other users).
pub const TOKEN_ENV: &str = "WARDLINE_FHIR_TOKEN";
const TIMEOUT: Duration = Duration::from_secs(60);
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Where to POST: a checked URL and how to trust it.
#[derive(Debug, Clone)]
pub struct Target {
    url: String,
    host: String,
    port: u16,
    authority: String,
    path: String,
    trust: Option<Trust>,
}

impl Target {
    /// Checks `url`: `https://` with `trust`, or `http://` to this computer.
    pub fn new(url: &str, trust: Option<Trust>) -> Result<Self, Error> {
        let bad = |why: &str| Error::Usage(format!("cannot post to '{url}': {why}"));
        let secure = match url.split_once("://").map(|(s, _)| s) {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("give the FHIR server's base URL, https://HOST/PATH")),
        };
        let uri: Uri = url.parse().map_err(|_| bad("it is not a URL"))?;
        let authority = uri.authority().ok_or_else(|| bad("it names no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "credentials do not belong in the URL; set WARDLINE_FHIR_TOKEN",
            ));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match (secure, &trust) {
            (true, None) => {
                return Err(bad(
                    "this client trusts no CA by default: pass --fhir-ca FILE (the CA that signed the FHIR server's certificate) or --fhir-pin SHA256",
                ));
            }
            (false, Some(_)) => return Err(bad("--fhir-ca and --fhir-pin need https://")),
            (false, None) if !loopback => {
                return Err(bad(
                    "plain http:// is allowed only to this computer; patient data must cross a network encrypted (https://)",
                ));
            }
            _ => {}
        }
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") => "/".to_owned(),
            Some(p) => p.to_owned(),
        };
        Ok(Self {
            url: url.to_owned(),
            port: authority
                .port_u16()
                .unwrap_or(if secure { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            host,
            path,
            trust,
        })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// What the FHIR server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The HTTP status.
    pub status: u16,
    /// Entries the server created (`201`).
    pub created: usize,
    /// Entries it found already there (`200`: conditional create matched).
    pub existing: usize,
}

/// POSTs `bundle` (a transaction bundle's JSON) to `target`.
pub async fn post(target: &Target, bundle: &[u8], token: Option<&str>) -> Result<Posted, Error> {
    let failed = |why: String| Error::Refused(format!("posting to {} failed: {why}", target.url));
    let exchange = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| failed(format!("cannot connect ({e})")))?;
        match &target.trust {
            None => send(tcp, target, bundle, token).await,
            Some(trust) => {
                let tls = tls::handshake(tcp, &target.host, trust)
                    .await
                    .map_err(|e| match e {
                        HandshakeError::PinMismatch { actual } => failed(format!(
                            "the server's certificate is not the pinned one (it is {actual})"
                        )),
                        other => failed(format!("TLS: {other}")),
                    })?;
                send(tls, target, bundle, token).await
            }
        }
    };
    let raw = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| failed(format!("no answer within {} seconds", TIMEOUT.as_secs())))??;
    let (status, reason, body) = parse_response(&raw).map_err(failed)?;
    if !(200..300).contains(&status) {
        return Err(failed(format!(
            "the FHIR server answered HTTP {status} {reason}{}",
            diagnostics(&body)
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        )));
    }
    let (created, existing) = count_outcomes(&body);
    Ok(Posted {
        status,
        created,
        existing,
    })
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    target: &Target,
    bundle: &[u8],
    token: Option<&str>,
) -> Result<Vec<u8>, Error> {
    let failed = |why: String| Error::Refused(format!("posting to {} failed: {why}", target.url));
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/fhir+json\r\nAccept: application/fhir+json\r\nPrefer: return=minimal\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: wardline/{}\r\n",
        target.path,
        target.authority,
        bundle.len(),
        env!("CARGO_PKG_VERSION")
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| failed(e.to_string()))?;
    stream
        .write_all(bundle)
        .await
        .map_err(|e| failed(e.to_string()))?;
    stream.flush().await.map_err(|e| failed(e.to_string()))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_RESPONSE_BYTES {
                    return Err(failed("the answer is too large".into()));
                }
            }
            // Servers often close without TLS close_notify; what arrived
            // is judged by its own framing below.
            Err(_) if !raw.is_empty() => break,
            Err(e) => return Err(failed(e.to_string())),
        }
    }
    Ok(raw)
}

/// Status, reason and body of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> Result<(u16, String, Vec<u8>), String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the answer was cut short".into()),
        Err(e) => return Err(format!("the answer is not HTTP ({e})")),
    };
    let status = response.code.ok_or("the answer has no status")?;
    let reason = response.reason.unwrap_or("").to_owned();
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let rest = &raw[head_len..];
    let body = if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| "a bad Content-Length")?;
        rest.get(..len).ok_or("the answer was cut short")?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, reason, body))
}

/// Decodes a chunked body (RFC 9112 §7.1); trailers are ignored.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk was cut short")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "a bad chunk")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "a bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("a chunk was cut short")?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("a chunk was cut short")?;
    }
}

/// How many entries of a transaction-response bundle were created, and
/// how many were found already there.
fn count_outcomes(body: &[u8]) -> (usize, usize) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (0, 0);
    };
    let statuses: Vec<&str> = v["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|x| x["response"]["status"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let created = statuses.iter().filter(|s| s.starts_with("201")).count();
    let existing = statuses.iter().filter(|s| s.starts_with("200")).count();
    (created, existing)
}

/// The first issue of an OperationOutcome, for an error message.
fn diagnostics(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let issue = v["issue"].as_array()?.first()?;
    let text = issue["diagnostics"]
        .as_str()
        .or_else(|| issue["details"]["text"].as_str())?;
    // Bounded: it goes to a terminal and perhaps a log.
    Some(crate::output::clean(
        &text.chars().take(300).collect::<String>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_answers_are_decoded() -> Result<(), String> {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let (status, reason, body) = parse_response(raw)?;
        assert_eq!((status, reason.as_str()), (200, "OK"));
        assert_eq!(body, b"hello world");
        assert!(dechunk(b"5\r\nhel").is_err());
        Ok(())
    }

    #[test]
    fn content_length_bounds_the_body() -> Result<(), String> {
        let raw = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}trailing";
        let (status, _, body) = parse_response(raw)?;
        assert_eq!((status, body.as_slice()), (400, &b"{}"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err());
        assert!(parse_response(b"garbage").is_err());
        Ok(())
    }

    #[test]
    fn outcomes_and_diagnostics_are_read_from_fhir_answers() {
        let bundle = br#"{"resourceType":"Bundle","type":"transaction-response","entry":[
            {"response":{"status":"201 Created"}},{"response":{"status":"201"}},
            {"response":{"status":"200 OK"}}]}"#;
        assert_eq!(count_outcomes(bundle), (2, 1));
        let outcome = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"Unknown system\u001b[2J"}]}"#;
        assert_eq!(
            diagnostics(outcome).as_deref(),
            Some("Unknown system\u{fffd}[2J")
        );
    }

    #[test]
    fn plain_http_only_to_this_computer_and_https_only_with_trust() {
        assert!(Target::new("http://127.0.0.1:8080/fhir", None).is_ok());
        for bad in [
            "http://fhir.trust.nhs.uk/fhir",
            "https://fhir.trust.nhs.uk/fhir",
            "ftp://127.0.0.1/fhir",
            "https://user:pw@fhir.trust.nhs.uk/fhir",
        ] {
            assert!(Target::new(bad, None).is_err(), "{bad}");
        }
        let pin = Trust::pin(tls::Fingerprint::of(b"a certificate"));
        let t = Target::new("https://fhir.trust.nhs.uk/r4", Some(pin)).expect("with a pin");
        assert_eq!(
            (t.port, t.path.as_str(), t.authority.as_str()),
            (443, "/r4", "fhir.trust.nhs.uk")
        );
    }
}
