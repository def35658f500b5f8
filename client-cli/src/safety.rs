//! Safety numbers: what two people compare in person to be sure that no one
//! has substituted the device keys between them.
//!
//! The safety number of two devices A and B is computed the same way on
//! both, so both screens show the same digits:
//!
//! 1. each device's public keys as 64 bytes: its X25519 key (`kem_pk`)
//!    followed by its Ed25519 key (`sig_pk`);
//! 2. the two 64-byte strings in ascending byte order (so the order of A
//!    and B does not matter);
//! 3. SHA-512 over the ASCII label `wardline/v1/safety-number`, then the
//!    lower string, then the higher one;
//! 4. the first 60 bytes of the digest in 12 chunks of 5 bytes; each chunk,
//!    read as a big-endian 40-bit number, modulo 100000, printed as 5
//!    digits with leading zeros.
//!
//! That is 12 groups of 5 digits (about 199 bits), shown as two rows of
//! six. Any change to either device's keys changes the number.

use ring::digest;
use wardline_protocol::DevicePublicKeys;

const LABEL: &[u8] = b"wardline/v1/safety-number";

/// The safety number of two devices, as 12 groups of 5 digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyNumber([u32; 12]);

impl SafetyNumber {
    /// Computes the number for devices `a` and `b` (in either order).
    pub fn of(a: &DevicePublicKeys, b: &DevicePublicKeys) -> Self {
        let bytes = |k: &DevicePublicKeys| {
            let mut out = [0u8; 64];
            out[..32].copy_from_slice(k.kem_pk.as_bytes());
            out[32..].copy_from_slice(k.sig_pk.as_bytes());
            out
        };
        let (x, y) = (bytes(a), bytes(b));
        let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
        let mut ctx = digest::Context::new(&digest::SHA512);
        ctx.update(LABEL);
        ctx.update(&lo);
        ctx.update(&hi);
        let digest = ctx.finish();
        let d = digest.as_ref();
        let mut groups = [0u32; 12];
        for (i, g) in groups.iter_mut().enumerate() {
            let chunk = &d[i * 5..i * 5 + 5];
            let n = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            *g = u32::try_from(n % 100_000).expect("below 100000");
        }
        Self(groups)
    }

    /// The 12 groups, e.g. `["05817", ...]`.
    pub fn groups(&self) -> Vec<String> {
        self.0.iter().map(|g| format!("{g:05}")).collect()
    }

    /// Two rows of six groups, as shown to people.
    pub fn rows(&self) -> [String; 2] {
        let g = self.groups();
        [g[..6].join(" "), g[6..].join(" ")]
    }
}

/// `05817 ...`: the 12 groups on one line, as in `--json`.
impl std::fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.groups().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use wardline_protocol::{KemPublicKey, SigPublicKey};

    use super::*;

    fn keys(k: u8, s: u8) -> DevicePublicKeys {
        DevicePublicKeys {
            kem_pk: KemPublicKey::from_bytes([k; 32]),
            sig_pk: SigPublicKey::from_bytes([s; 32]),
        }
    }

    #[test]
    fn both_sides_compute_the_same_number() {
        let (a, b) = (keys(1, 2), keys(3, 4));
        assert_eq!(SafetyNumber::of(&a, &b), SafetyNumber::of(&b, &a));
    }

    #[test]
    fn any_key_change_changes_the_number() {
        let (a, b) = (keys(1, 2), keys(3, 4));
        let n = SafetyNumber::of(&a, &b);
        assert_ne!(n, SafetyNumber::of(&a, &keys(3, 5)));
        assert_ne!(n, SafetyNumber::of(&a, &keys(9, 4)));
        assert_ne!(n, SafetyNumber::of(&keys(1, 7), &b));
    }

    #[test]
    fn is_twelve_groups_of_five_digits() {
        let n = SafetyNumber::of(&keys(1, 2), &keys(3, 4));
        let text = n.to_string();
        assert_eq!(text.len(), 12 * 5 + 11);
        assert!(
            text.split(' ')
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );
        let [top, bottom] = n.rows();
        assert_eq!(format!("{top} {bottom}"), text);
    }

    #[test]
    fn matches_the_documented_construction() {
        // Recomputed by hand from the description in the module docs.
        let (a, b) = (keys(0xaa, 0xbb), keys(0x11, 0x22));
        let mut input = LABEL.to_vec();
        input.extend([0x11; 32]);
        input.extend([0x22; 32]);
        input.extend([0xaa; 32]);
        input.extend([0xbb; 32]);
        let d = digest::digest(&digest::SHA512, &input);
        let first = d.as_ref()[..5]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            % 100_000;
        assert_eq!(SafetyNumber::of(&a, &b).groups()[0], format!("{first:05}"));
    }
}
