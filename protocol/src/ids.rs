//! Identifiers as validated newtypes: an invalid id cannot exist.
//!
//! User, device and conversation ids are opaque strings chosen by the server
//! (UUIDv7 in this implementation, but peers must not assume a format), so
//! they are only checked for a safe alphabet and length. A message id is made
//! by the sender and must be a UUIDv7, which makes ids time-ordered and hard
//! to collide.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

/// The longest opaque id accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum IdError {
    /// The id is empty.
    #[error("id is empty")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("id is longer than {MAX_ID_LEN} bytes")]
    TooLong,
    /// The id holds a character outside `A-Z a-z 0-9 - _ .`.
    #[error("id may hold only letters, digits, '-', '_' and '.'")]
    BadCharacter,
    /// A message id is not a hyphenated UUID version 7.
    #[error("message id must be a UUIDv7 in hyphenated form")]
    NotUuidV7,
}

fn check_opaque(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` as an id.
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_opaque(&s)?;
                Ok(Self(s))
            }

            /// A fresh, time-ordered id (UUIDv7).
            pub fn generate_v7(unix_millis: u64, random: [u8; 10]) -> Self {
                Self(uuid_v7(unix_millis, random).hyphenated().to_string())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
    };
}

opaque_id!(
    /// A user account.
    UserId
);
opaque_id!(
    /// One device (a keystore with its own key pairs) of a user.
    DeviceId
);
opaque_id!(
    /// A conversation: one-to-one or a care-team group.
    ConversationId
);

/// A message, named by its sender with a UUIDv7.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(uuid::Uuid);

impl MessageId {
    /// Validates `s` as a hyphenated UUIDv7.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        // `Uuid::try_parse` also takes braced and URN forms; the wire carries
        // only the 36-character hyphenated one, and the signed header depends
        // on the exact text, so accept nothing else.
        if s.len() != 36 {
            return Err(IdError::NotUuidV7);
        }
        let u = uuid::Uuid::try_parse(s).map_err(|_| IdError::NotUuidV7)?;
        if u.get_version_num() != 7 || u.hyphenated().to_string() != s.to_ascii_lowercase() {
            return Err(IdError::NotUuidV7);
        }
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(IdError::NotUuidV7);
        }
        Ok(Self(u))
    }

    /// A new message id for a message sent at `unix_millis`.
    pub fn generate_v7(unix_millis: u64, random: [u8; 10]) -> Self {
        Self(uuid_v7(unix_millis, random))
    }

    /// The id's 16 bytes, for compact storage keys.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The id as hyphenated lower-case text.
    pub fn to_text(&self) -> String {
        self.0.hyphenated().to_string()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0.hyphenated())
    }
}

impl Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.hyphenated())
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for MessageId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

fn uuid_v7(unix_millis: u64, random: [u8; 10]) -> uuid::Uuid {
    uuid::Builder::from_unix_timestamp_millis(unix_millis, &random).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_ids_accept_server_and_vector_forms() {
        assert!(UserId::parse("u-alice").is_ok());
        assert!(DeviceId::parse("0193f7c2-6a1e-7c3d-9b2a-3f4e5d6c7b8a").is_ok());
    }

    #[test]
    fn rejects_empty_long_and_odd_ids() {
        assert_eq!(UserId::parse(""), Err(IdError::Empty));
        assert_eq!(UserId::parse("a".repeat(65)), Err(IdError::TooLong));
        assert_eq!(UserId::parse("a b"), Err(IdError::BadCharacter));
        assert_eq!(UserId::parse("a/../b"), Err(IdError::BadCharacter));
    }

    #[test]
    fn message_ids_must_be_lowercase_hyphenated_v7() {
        let ok = "0193f7c2-6a1e-7c3d-9b2a-3f4e5d6c7b8a";
        assert_eq!(MessageId::parse(ok).expect("valid").to_text(), ok);
        assert!(MessageId::parse("0193f7c2-6a1e-4c3d-9b2a-3f4e5d6c7b8a").is_err());
        assert!(MessageId::parse("0193F7C2-6A1E-7C3D-9B2A-3F4E5D6C7B8A").is_err());
        assert!(MessageId::parse("0193f7c26a1e7c3d9b2a3f4e5d6c7b8a").is_err());
        assert!(MessageId::parse("0193f7c2-6a1e-7c3d-9b2a-3f4e5d6c7b8ax").is_err());
    }

    #[test]
    fn generated_ids_are_v7_and_ordered_by_time() {
        let a = MessageId::generate_v7(1_000, [0xff; 10]);
        let b = MessageId::generate_v7(1_001, [0; 10]);
        assert!(a < b);
        assert!(MessageId::parse(&a.to_text()).is_ok());
        let c = ConversationId::generate_v7(5, [1; 10]);
        assert_eq!(c.as_str().len(), 36);
    }
}

/// An organisational username: 1 to 64 of `a-z 0-9 . - _`, starting with a
/// letter or digit. Lower case only, so `JSmith` and `jsmith` cannot be two
/// accounts.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Username(String);

/// Why a string is not a valid username.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error(
    "username must be 1 to 64 characters of a-z, 0-9, '.', '-' or '_', starting with a letter or digit"
)]
pub struct UsernameError;

impl Username {
    /// Validates `s` as a username.
    pub fn parse(s: impl Into<String>) -> Result<Self, UsernameError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
            });
        if ok { Ok(Self(s)) } else { Err(UsernameError) }
    }

    /// The username as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({})", self.0)
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Username::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Username {
    type Err = UsernameError;
    fn from_str(s: &str) -> Result<Self, UsernameError> {
        Username::parse(s)
    }
}
