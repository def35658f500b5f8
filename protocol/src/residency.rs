//! Data residency: region codes and the policy that says where data may be stored.
//!
//! The trust's rule R6: data is stored in the UK, the EEA, a country with an
//! adequacy decision of the European Commission, or the US under the EU-US
//! Data Privacy Framework (which replaced the Privacy Shield, invalidated by
//! the Court of Justice in *Schrems II*, 16 July 2020).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

/// A region code that is not two upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("region must be an ISO 3166-1 alpha-2 code in upper case, like GB")]
pub struct RegionError;

/// An ISO 3166-1 alpha-2 region code (`GB` for the United Kingdom).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region([u8; 2]);

impl Region {
    /// The United Kingdom.
    pub const GB: Region = Region(*b"GB");

    /// Parses a two-letter upper-case code.
    pub fn parse(s: &str) -> Result<Self, RegionError> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Region([*a, *b])),
            _ => Err(RegionError),
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only upper-case ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({})", self.as_str())
    }
}

impl Serialize for Region {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Region::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Region {
    type Err = RegionError;
    fn from_str(s: &str) -> Result<Self, RegionError> {
        Region::parse(s)
    }
}

/// The 27 EU member states and Iceland, Liechtenstein and Norway.
pub const EEA: &[&str] = &[
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

/// Countries and territories with an adequacy decision of the European
/// Commission under Article 45 GDPR, other than the US (see [`US_DPF`]).
/// Canada's covers commercial organisations under PIPEDA only.
pub const EC_ADEQUATE: &[&str] = &[
    "AD", "AR", "CA", "CH", "FO", "GB", "GG", "IL", "IM", "JE", "JP", "KR", "NZ", "UY",
];

/// Where [`EC_ADEQUATE`] and [`EEA`] come from, and when they were last checked.
pub const ADEQUACY_SOURCE: &str = "European Commission, 'Adequacy decisions' \
     (commission.europa.eu, data protection, international dimension), as of 2025-09-01";

/// The United States, permitted only for organisations certified under the
/// EU-US Data Privacy Framework (adequacy decision of 10 July 2023).
pub const US_DPF: &str = "US";

/// Which regions data may be stored in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    permitted: BTreeSet<Region>,
}

impl Policy {
    /// The trust's default: the UK, the EEA, EC-adequate countries, and the US
    /// under the Data Privacy Framework.
    pub fn trust_default() -> Self {
        let permitted = EEA
            .iter()
            .chain(EC_ADEQUATE)
            .chain(std::iter::once(&US_DPF))
            .map(|c| Region::parse(c).expect("static region codes are valid"))
            .collect();
        Self { permitted }
    }

    /// A policy permitting exactly `regions`.
    pub fn only(regions: impl IntoIterator<Item = Region>) -> Self {
        Self {
            permitted: regions.into_iter().collect(),
        }
    }

    /// May data tagged `region` be stored under this policy?
    pub fn permits(&self, region: Region) -> bool {
        self.permitted.contains(&region)
    }

    /// The permitted regions, in order.
    pub fn regions(&self) -> impl Iterator<Item = Region> + '_ {
        self.permitted.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Region {
        Region::parse(s).expect("valid")
    }

    #[test]
    fn default_policy_permits_uk_eea_adequate_and_us_dpf() {
        let p = Policy::trust_default();
        for ok in ["GB", "IE", "DE", "NO", "CH", "JP", "US"] {
            assert!(p.permits(r(ok)), "{ok}");
        }
        for no in ["CN", "RU", "IN", "AU", "BR"] {
            assert!(!p.permits(r(no)), "{no}");
        }
    }

    #[test]
    fn region_codes_are_strict() {
        assert!(Region::parse("gb").is_err());
        assert!(Region::parse("GBR").is_err());
        assert!(Region::parse("G").is_err());
        assert_eq!(r("GB"), Region::GB);
    }

    #[test]
    fn eea_has_thirty_members() {
        assert_eq!(EEA.len(), 30);
        let set: BTreeSet<_> = EEA.iter().collect();
        assert_eq!(set.len(), 30);
    }
}
