//! Binary values on the wire: standard base64 with padding (RFC 4648 §4).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serializer};

/// Encodes bytes as standard padded base64.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard padded base64; anything else is an error.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(text)
}

/// Serde adapter for byte values: `#[serde(with = "crate::b64")]`.
///
/// Works for `Vec<u8>` and fixed-size arrays; a value of the wrong length is
/// a decode error, so a short key can never reach the crypto code.
pub fn serialize<S: Serializer, T: AsRef<[u8]>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&encode(v))
}

/// See [`serialize`].
pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<Vec<u8>>,
{
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    let bytes = decode(&text).map_err(|_| serde::de::Error::custom("invalid base64"))?;
    let len = bytes.len();
    T::try_from(bytes)
        .map_err(|_| serde::de::Error::custom(format!("unexpected length {len} for this value")))
}
