//! Wardline protocol v1: what a client and a server must agree on.
//!
//! * [`ids`]: validated identifiers.
//! * [`wire`]: request, reply and push frames; decoding with stable error codes.
//! * [`envelope`]: sealing and opening end-to-end encrypted messages.
//! * [`keys`]: device key pairs.
//! * [`residency`]: region codes and the storage policy.
//!
//! The crate is pure: no I/O, no clock, no async runtime. Randomness comes
//! from the OS unless a `*_with_rng` function is given a generator.
//!
//! Alice seals a note to Bob's device; Bob opens it:
//!
//! ```
//! use wardline_protocol::{envelope, Body, BodyKind, DeviceId, DeviceSecrets, Header,
//!     MessageId, ConversationId, Priority, Recipient, Region, Timestamp, UserId};
//!
//! let alice = DeviceSecrets::generate();
//! let bob = DeviceSecrets::generate();
//! let bob_device = DeviceId::parse("d-bob-1")?;
//!
//! let header = Header {
//!     msg_id: MessageId::generate_v7(1_795_419_114_123, [7; 10]),
//!     conv_id: ConversationId::parse("c-ward10")?,
//!     sender_user: UserId::parse("u-alice")?,
//!     sender_device: DeviceId::parse("d-alice-1")?,
//!     sent_at: Timestamp::parse("2026-11-23T07:31:54.123Z")?,
//!     priority: Priority::Urgent,
//!     residency: Region::GB,
//! };
//! let body = Body { text: "Bed 4: repeat ECG now".into(), kind: BodyKind::ClinicalNote,
//!     patient: None, reply_to: None };
//! let sealed = envelope::seal(header, &body, &alice,
//!     &[Recipient { device_id: bob_device.clone(), kem_pk: bob.public().kem_pk }])?;
//!
//! let opened = envelope::open(&sealed, &bob_device, &bob, &alice.public().sig_pk)?;
//! assert_eq!(opened, body);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod audit;
pub mod b64;
pub mod envelope;
pub mod ids;
pub mod keys;
pub mod record;
pub mod residency;
pub mod rng;
pub mod secret;
pub mod timestamp;
pub mod wipe;
pub mod wire;

pub use envelope::{
    Body, BodyKind, Envelope, EnvelopeError, Header, KeyEntry, Patient, Priority, Recipient,
};
pub use ids::{ConversationId, DeviceId, IdError, MessageId, UserId, Username};
pub use keys::{DevicePublicKeys, DeviceSecrets, KemPublicKey, SigPublicKey};
pub use residency::{Policy, Region};
pub use secret::Secret;
pub use timestamp::Timestamp;
pub use wire::{ErrorCode, Request, Role};
