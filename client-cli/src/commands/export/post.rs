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
use crate::output::plural;
use crate::output::record::FailedEntry;
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

/// How far a failed post got, as far as this client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// Nothing reached the FHIR server (no connection, or TLS failed).
    NotSent,
    /// The request went out but no usable answer came back: the server
    /// may or may not have applied it.
    Unknown,
    /// The server refused the transaction (an HTTP status other than 2xx).
    /// A FHIR server applies a transaction whole or not at all.
    Refused,
    /// The server answered 2xx but reported some entries as failed.
    PartlyRefused,
}

/// Why a post failed.
#[derive(Debug, Clone)]
pub struct PostError {
    /// What went wrong, a clause for a sentence ("the FHIR server answered
    /// HTTP 401 Unauthorized: ...").
    pub reason: String,
    /// How far it got.
    pub reached: Reached,
    /// The HTTP status, when the server answered.
    pub http_status: Option<u16>,
    /// The entries the answer names as failed, with what it said of each.
    pub failed_entries: Vec<FailedEntry>,
}

impl PostError {
    fn new(reached: Reached, reason: String) -> Self {
        Self {
            reason,
            reached,
            http_status: None,
            failed_entries: Vec::new(),
        }
    }
}

/// POSTs `bundle` (a transaction bundle's JSON) to `target`.
pub async fn post(
    target: &Target,
    bundle: &[u8],
    token: Option<&str>,
) -> Result<Posted, PostError> {
    let not_sent = |why: String| PostError::new(Reached::NotSent, why);
    let connect = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| not_sent(format!("cannot connect ({e})")))?;
        match &target.trust {
            None => Ok(Stream::Plain(tcp)),
            Some(trust) => tls::handshake(tcp, &target.host, trust)
                .await
                .map(|t| Stream::Tls(Box::new(t)))
                .map_err(|e| match e {
                    HandshakeError::PinMismatch { actual } => not_sent(format!(
                        "the server's certificate is not the pinned one (it is {actual})"
                    )),
                    other => not_sent(format!("TLS: {other}")),
                }),
        }
    };
    let no_answer = || format!("no answer within {} seconds", TIMEOUT.as_secs());
    let stream = tokio::time::timeout(TIMEOUT, connect)
        .await
        .map_err(|_| not_sent(no_answer()))??;
    let exchange = async {
        match stream {
            Stream::Plain(tcp) => send(tcp, target, bundle, token).await,
            Stream::Tls(tls) => send(*tls, target, bundle, token).await,
        }
    };
    let unknown = |why: String| PostError::new(Reached::Unknown, why);
    let raw = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| unknown(no_answer()))?
        .map_err(unknown)?;
    let (status, reason, body) = parse_response(&raw).map_err(unknown)?;
    if !(200..300).contains(&status) {
        return Err(PostError {
            reason: format!(
                "the FHIR server answered HTTP {status} {reason}{}",
                diagnostics(&body)
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
            reached: Reached::Refused,
            http_status: Some(status),
            failed_entries: failed_entries(bundle, &body),
        });
    }
    // A 2xx is a success only with the transaction-response a FHIR server
    // gives: a proxy's HTML page, an empty body or a short bundle says
    // nothing of what was stored.
    let outcomes = Outcomes::of(&body, sent_entries(bundle)).map_err(|what| PostError {
        reason: format!("the FHIR server answered HTTP {status} {reason} but {what}"),
        reached: Reached::Unknown,
        http_status: Some(status),
        failed_entries: Vec::new(),
    })?;
    if !outcomes.failed.is_empty() {
        let failed = outcomes.failed.len();
        return Err(PostError {
            reason: format!(
                "the FHIR server answered HTTP {status} {reason} but reports {} of the {} as failed",
                plural(failed, "entry", "entries"),
                outcomes.total
            ),
            reached: Reached::PartlyRefused,
            http_status: Some(status),
            failed_entries: describe(bundle, outcomes.failed),
        });
    }
    Ok(Posted {
        status,
        created: outcomes.created,
        existing: outcomes.existing,
    })
}

/// A connection to the FHIR server, before the request.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    target: &Target,
    bundle: &[u8],
    token: Option<&str>,
) -> Result<Vec<u8>, String> {
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
    let failed = |e: std::io::Error| format!("the connection failed ({e})");
    stream.write_all(head.as_bytes()).await.map_err(failed)?;
    stream.write_all(bundle).await.map_err(failed)?;
    stream.flush().await.map_err(failed)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_RESPONSE_BYTES {
                    return Err("the answer is too large".into());
                }
            }
            // Servers often close without TLS close_notify; what arrived
            // is judged by its own framing below.
            Err(_) if !raw.is_empty() => break,
            Err(e) => return Err(failed(e)),
        }
    }
    if raw.is_empty() {
        return Err("the server closed the connection without answering".into());
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

/// What a transaction-response bundle says of each entry.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcomes {
    /// Entries in the answer.
    total: usize,
    /// Created (`201`).
    created: usize,
    /// Found already there (`200`: the conditional create matched).
    existing: usize,
    /// Any other status: the position, the status and what the entry's
    /// own OperationOutcome says.
    failed: Vec<(usize, Option<String>, Option<String>)>,
}

impl Outcomes {
    /// Reads the answer to a transaction of `sent` entries; the error,
    /// when it is not a transaction-response with one entry for each,
    /// says what it is instead.
    fn of(body: &[u8], sent: usize) -> Result<Self, String> {
        let mut out = Self::default();
        let v = match serde_json::from_slice::<Value>(body) {
            Ok(v) if v["resourceType"] == "Bundle" && v["type"] == "transaction-response" => v,
            Ok(v) => return Err(not_a_response(Some(&v), body)),
            Err(_) => return Err(not_a_response(None, body)),
        };
        let entries = v["entry"].as_array().map_or(&[][..], Vec::as_slice);
        if entries.len() != sent {
            return Err(format!(
                "its transaction-response has {} for the {} sent",
                plural(entries.len(), "entry", "entries"),
                sent
            ));
        }
        out.total = entries.len();
        for (i, e) in entries.iter().enumerate() {
            let status = e["response"]["status"].as_str().unwrap_or("").trim();
            let code = status_code(status);
            if code == Some(201) {
                out.created += 1;
            } else if code == Some(200) {
                out.existing += 1;
            } else if !code.is_some_and(|c| (200..300).contains(&c)) {
                let said = outcome_text(&e["response"]["outcome"]);
                let status = (!status.is_empty()).then(|| bounded(status, 60));
                out.failed.push((i, status, said));
            }
        }
        Ok(out)
    }
}

/// The HTTP status code at the start of a `response.status` ("201 Created").
fn status_code(status: &str) -> Option<u16> {
    let code = status.split_whitespace().next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// How many entries the transaction bundle `bundle` holds.
fn sent_entries(bundle: &[u8]) -> usize {
    serde_json::from_slice::<Value>(bundle)
        .ok()
        .and_then(|v| v["entry"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// What an answer that is not a transaction-response is, for an error
/// message (`json`: the body parsed, when it is JSON).
fn not_a_response(json: Option<&Value>, body: &[u8]) -> String {
    let Some(v) = json else {
        let text = String::from_utf8_lossy(body);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return "its answer is empty, not a FHIR transaction-response".into();
        }
        return format!(
            "its answer is not FHIR JSON, not a transaction-response (it begins \"{}\")",
            bounded(&text, 80)
        );
    };
    let text = |k: &str| v[k].as_str().map(|t| bounded(t, 60));
    match (text("resourceType"), text("type")) {
        (Some(r), t) if r == "Bundle" => format!(
            "its answer is a Bundle of type {}, not a transaction-response",
            t.unwrap_or_else(|| "(none)".into())
        ),
        (Some(r), _) => format!(
            "its answer is a FHIR {r}, not a transaction-response{}",
            outcome_text(v)
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ),
        (None, _) => "its answer is JSON but not a FHIR transaction-response".into(),
    }
}

/// The most failed entries named (a refused bundle of thousands of
/// messages need not be listed whole).
const MAX_FAILED_ENTRIES: usize = 100;

/// The entries of `bundle` that an OperationOutcome answer names, by
/// `Bundle.entry[N]` in an issue's `expression` or `location`, or failing
/// those, in its `diagnostics`.
fn failed_entries(bundle: &[u8], body: &[u8]) -> Vec<FailedEntry> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let Some(issues) = v["issue"].as_array() else {
        return Vec::new();
    };
    let mut named: Vec<(usize, Option<String>, Option<String>)> = Vec::new();
    for issue in issues {
        let paths = ["expression", "location"]
            .iter()
            .filter_map(|k| issue[*k].as_array())
            .flatten()
            .filter_map(Value::as_str);
        let index = paths
            .filter_map(entry_index)
            .next()
            .or_else(|| issue["diagnostics"].as_str().and_then(entry_index));
        if let Some(i) = index
            && !named.iter().any(|(j, _, _)| *j == i)
        {
            named.push((i, None, outcome_issue_text(issue)));
        }
    }
    describe(bundle, named)
}

/// `N` of the first `entry[N]` in `text`.
fn entry_index(text: &str) -> Option<usize> {
    let at = text.find("entry[")? + "entry[".len();
    let digits = &text[at..];
    let end = digits.find(']')?;
    digits[..end].trim().parse().ok()
}

/// Names the entries of `bundle` at the given positions: their resource
/// type and the message each carries or attests.
fn describe(
    bundle: &[u8],
    failed: Vec<(usize, Option<String>, Option<String>)>,
) -> Vec<FailedEntry> {
    let sent: Value = serde_json::from_slice(bundle).unwrap_or(Value::Null);
    failed
        .into_iter()
        .take(MAX_FAILED_ENTRIES)
        .map(|(index, status, diagnostics)| {
            let entry = &sent["entry"][index];
            let resource = &entry["resource"];
            let resource_type = resource["resourceType"].as_str().map(str::to_owned);
            let urn = match resource_type.as_deref() {
                Some("Provenance") => resource["target"][0]["reference"].as_str(),
                _ => entry["fullUrl"].as_str(),
            };
            let msg_id = urn
                .and_then(|u| u.strip_prefix("urn:uuid:"))
                .map(str::to_owned);
            FailedEntry {
                index,
                resource_type,
                msg_id,
                status,
                diagnostics,
            }
        })
        .collect()
}

/// A bounded, printable copy of what a server said.
fn bounded(text: &str, max: usize) -> String {
    crate::output::clean(&text.chars().take(max).collect::<String>())
}

/// The text of one OperationOutcome issue.
fn outcome_issue_text(issue: &Value) -> Option<String> {
    let text = issue["diagnostics"]
        .as_str()
        .or_else(|| issue["details"]["text"].as_str())?;
    // Bounded: it goes to a terminal and perhaps a log.
    Some(bounded(text, 300))
}

/// The first issue of an OperationOutcome.
fn outcome_text(outcome: &Value) -> Option<String> {
    outcome_issue_text(outcome["issue"].as_array()?.first()?)
}

/// The first issue of an OperationOutcome, for an error message.
fn diagnostics(body: &[u8]) -> Option<String> {
    outcome_text(&serde_json::from_slice(body).ok()?)
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
        let o = Outcomes::of(bundle, 3).expect("a transaction-response");
        assert_eq!((o.total, o.created, o.existing), (3, 2, 1));
        assert!(o.failed.is_empty());
        let outcome = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"Unknown system\u001b[2J"}]}"#;
        assert_eq!(
            diagnostics(outcome).as_deref(),
            Some("Unknown system\u{fffd}[2J")
        );
    }

    #[test]
    fn only_a_transaction_response_with_an_entry_for_each_sent_counts() {
        let refused =
            |body: &[u8], sent: usize| Outcomes::of(body, sent).expect_err("not a success");
        assert_eq!(
            refused(b"", 4),
            "its answer is empty, not a FHIR transaction-response"
        );
        let html = refused(b"<html>\n<body>Proxy login</body></html>", 4);
        assert!(html.contains("not FHIR JSON"), "{html}");
        assert!(html.contains("\"<html> <body>Proxy login"), "{html}");
        assert_eq!(
            refused(br#"{"resourceType":"Bundle","type":"searchset"}"#, 4),
            "its answer is a Bundle of type searchset, not a transaction-response"
        );
        let outcome = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"information","diagnostics":"queued"}]}"#;
        assert_eq!(
            refused(outcome, 4),
            "its answer is a FHIR OperationOutcome, not a transaction-response: queued"
        );
        let two = br#"{"resourceType":"Bundle","type":"transaction-response","entry":[
            {"response":{"status":"201 Created"}},{"response":{"status":"201 Created"}}]}"#;
        assert_eq!(
            refused(two, 4),
            "its transaction-response has 2 entries for the 4 sent"
        );
        assert!(Outcomes::of(two, 2).is_ok());
        let none = br#"{"resourceType":"Bundle","type":"transaction-response"}"#;
        assert_eq!(
            refused(none, 4),
            "its transaction-response has 0 entries for the 4 sent"
        );
        // An entry without a 2xx status is a failed entry.
        let odd = br#"{"resourceType":"Bundle","type":"transaction-response","entry":[
            {"response":{"status":"2"}},{"response":{}},{"response":{"status":"204"}}]}"#;
        let o = Outcomes::of(odd, 3).expect("a transaction-response");
        assert_eq!(o.failed.iter().map(|f| f.0).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(sent_entries(&sent()), 4);
    }

    /// A transaction bundle of two messages, as the client sends it.
    fn sent() -> Vec<u8> {
        serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:m-1", "resource": {"resourceType": "Communication"}},
            {"fullUrl": "urn:uuid:p-1", "resource": {"resourceType": "Provenance",
                "target": [{"reference": "urn:uuid:m-1"}]}},
            {"fullUrl": "urn:uuid:m-2", "resource": {"resourceType": "Communication"}},
            {"fullUrl": "urn:uuid:p-2", "resource": {"resourceType": "Provenance",
                "target": [{"reference": "urn:uuid:m-2"}]}},
        ]})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn entries_a_transaction_response_reports_as_failed_are_named() {
        let answer = br#"{"resourceType":"Bundle","type":"transaction-response","entry":[
            {"response":{"status":"201 Created"}},{"response":{"status":"201"}},
            {"response":{"status":"422 Unprocessable Entity","outcome":{"resourceType":"OperationOutcome",
              "issue":[{"severity":"error","code":"invalid","diagnostics":"subject unknown"}]}}},
            {"response":{"status":"200 OK"}}]}"#;
        let o = Outcomes::of(answer, 4).expect("a transaction-response");
        assert_eq!((o.total, o.created, o.existing), (4, 2, 1));
        let named = describe(&sent(), o.failed);
        assert_eq!(
            named,
            [FailedEntry {
                index: 2,
                resource_type: Some("Communication".into()),
                msg_id: Some("m-2".into()),
                status: Some("422 Unprocessable Entity".into()),
                diagnostics: Some("subject unknown".into()),
            }]
        );
        assert_eq!(
            named[0].describe(),
            "entry 2 (the Communication of message m-2): 422 Unprocessable Entity: subject unknown"
        );
    }

    #[test]
    fn entries_an_operation_outcome_names_are_found_by_path_or_text() {
        let answer = br#"{"resourceType":"OperationOutcome","issue":[
            {"severity":"error","code":"invalid","diagnostics":"bad target","expression":["Bundle.entry[3].resource.target[0]"]},
            {"severity":"error","code":"invalid","diagnostics":"entry[1] Provenance: a second problem"},
            {"severity":"error","code":"invalid","diagnostics":"entry[3] said again"},
            {"severity":"error","code":"security","diagnostics":"no entry named here"}]}"#;
        let named = failed_entries(&sent(), answer);
        let ids: Vec<(usize, Option<&str>)> = named
            .iter()
            .map(|f| (f.index, f.msg_id.as_deref()))
            .collect();
        assert_eq!(ids, [(3, Some("m-2")), (1, Some("m-1"))]);
        assert_eq!(named[0].diagnostics.as_deref(), Some("bad target"));
        assert_eq!(named[0].resource_type.as_deref(), Some("Provenance"));
        // An index past the end is still reported, without a message.
        let beyond = failed_entries(
            &sent(),
            br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"x","diagnostics":"Bundle.entry[9] is odd"}]}"#,
        );
        assert_eq!((beyond[0].index, beyond[0].msg_id.as_ref()), (9, None));
        assert!(failed_entries(&sent(), b"not json").is_empty());
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
