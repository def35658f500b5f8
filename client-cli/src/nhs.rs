//! NHS numbers: ten digits whose last is a modulus-11 check digit.
//!
//! A mistyped NHS number attaches a clinical message to the wrong patient, so
//! the client refuses one whose check digit is wrong before anything is sent.

use std::fmt;

use thiserror::Error;

/// Why a string is not an NHS number. Carries the text as typed so the user
/// sees which number was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NhsNumberError {
    /// Not ten digits (spaces and hyphens between digits are allowed).
    #[error("'{0}' is not an NHS number: it must be 10 digits, like 943 476 5919")]
    NotTenDigits(String),
    /// Ten digits, but the check digit does not match.
    #[error(
        "'{0}' is not a valid NHS number: its check digit is wrong. Check the number against the patient's record"
    )]
    BadCheckDigit(String),
}

/// A validated NHS number, held as its ten digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Validates `text`: ten digits, optionally grouped with spaces or
    /// hyphens, with a correct modulus-11 check digit.
    pub fn parse(text: &str) -> Result<Self, NhsNumberError> {
        let digits: Vec<u32> = text
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .map(|c| c.to_digit(10))
            .collect::<Option<_>>()
            .ok_or_else(|| NhsNumberError::NotTenDigits(text.to_owned()))?;
        if digits.len() != 10 {
            return Err(NhsNumberError::NotTenDigits(text.to_owned()));
        }
        let sum: u32 = digits[..9]
            .iter()
            .zip((2..=10).rev())
            .map(|(d, w)| d * w)
            .sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            // No NHS number is ever issued whose check digit would be 10.
            10 => return Err(NhsNumberError::BadCheckDigit(text.to_owned())),
            c => c,
        };
        if check != digits[9] {
            return Err(NhsNumberError::BadCheckDigit(text.to_owned()));
        }
        Ok(Self(digits.iter().map(|d| d.to_string()).collect()))
    }

    /// The ten digits, as carried in a message body.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 3-3-4 grouping people read, e.g. `943 476 5919`.
    pub fn grouped(digits: &str) -> String {
        if digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()) {
            format!("{} {} {}", &digits[..3], &digits[3..6], &digits[6..])
        } else {
            digits.to_owned()
        }
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Self::grouped(&self.0))
    }
}

impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NhsNumber({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_numbers_in_common_spellings() {
        for ok in ["9434765919", "943 476 5919", "943-476-5919", "4010232137"] {
            assert!(NhsNumber::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            NhsNumber::parse("943 476 5919").expect("valid").as_str(),
            "9434765919"
        );
    }

    #[test]
    fn rejects_a_wrong_check_digit_naming_the_number() {
        let err = NhsNumber::parse("9434765918").expect_err("bad check digit");
        assert!(matches!(err, NhsNumberError::BadCheckDigit(_)));
        assert!(err.to_string().contains("9434765918"));
    }

    #[test]
    fn rejects_numbers_whose_check_digit_would_be_ten() {
        // 6 at weight 2 sums to 12; 11 - (12 mod 11) = 10, which is never issued.
        for last in 0..=9 {
            let n = format!("000000006{last}");
            assert!(NhsNumber::parse(&n).is_err(), "{n}");
        }
    }

    #[test]
    fn check_digit_eleven_becomes_zero() {
        // 000000000: sum 0, 11 - 0 = 11, which maps to 0.
        assert!(NhsNumber::parse("0000000000").is_ok());
    }

    #[test]
    fn rejects_wrong_length_and_letters() {
        for bad in [
            "943476591",
            "94347659190",
            "94347659l9",
            "",
            "+449434765919",
        ] {
            assert!(
                matches!(NhsNumber::parse(bad), Err(NhsNumberError::NotTenDigits(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn groups_for_display() {
        assert_eq!(NhsNumber::grouped("9434765919"), "943 476 5919");
        assert_eq!(NhsNumber::grouped("12"), "12");
    }
}
