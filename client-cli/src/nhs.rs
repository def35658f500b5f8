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

/// Valid NHS numbers written in `text`: ten digits, either run together or
/// grouped 3-3-4 with single spaces or hyphens, not part of a longer run of
/// digits or letters. Numbers whose check digit is wrong are left out (they
/// are more likely phone numbers or bleep numbers than patients).
pub fn find_in_text(text: &str) -> Vec<NhsNumber> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !chars[i - 1].is_alphanumeric();
        if starts_word
            && chars[i].is_ascii_digit()
            && let Some(len) = nhs_shape_at(&chars[i..])
            && let Ok(n) = NhsNumber::parse(&chars[i..i + len].iter().collect::<String>())
        {
            if !found.contains(&n) {
                found.push(n);
            }
            i += len;
            continue;
        }
        i += 1;
    }
    found
}

/// The length of an NHS-number-shaped token at the start of `s`, if any.
fn nhs_shape_at(s: &[char]) -> Option<usize> {
    let digits = |from: usize, n: usize| {
        s.len() >= from + n && s[from..from + n].iter().all(char::is_ascii_digit)
    };
    let ends_at = |len: usize| s.get(len).is_none_or(|c| !c.is_alphanumeric());
    if digits(0, 10) && ends_at(10) {
        return Some(10);
    }
    let sep = |at: usize| matches!(s.get(at), Some(' ' | '-'));
    if digits(0, 3)
        && sep(3)
        && digits(4, 3)
        && sep(7)
        && s.get(3) == s.get(7)
        && digits(8, 4)
        && ends_at(12)
    {
        return Some(12);
    }
    None
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
    fn finds_valid_numbers_in_free_text_in_common_spellings() {
        let found = |t: &str| -> Vec<String> {
            find_in_text(t)
                .iter()
                .map(|n| n.as_str().to_owned())
                .collect()
        };
        assert_eq!(found("Pt 943 476 5919 in bay 4"), ["9434765919"]);
        assert_eq!(found("NHS no. 943-476-5919."), ["9434765919"]);
        assert_eq!(found("(9434765919)"), ["9434765919"]);
        assert_eq!(
            found("9434765919 and 4010232137"),
            ["9434765919", "4010232137"]
        );
    }

    #[test]
    fn ignores_numbers_that_are_not_nhs_numbers() {
        for text in [
            "bleep 9434765918",
            "call 07700 900123",
            "ref 94347659190",
            "x9434765919",
            "943 476-5919",
            "obs at 14:00, BP 120/80",
        ] {
            assert!(find_in_text(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn groups_for_display() {
        assert_eq!(NhsNumber::grouped("9434765919"), "943 476 5919");
        assert_eq!(NhsNumber::grouped("12"), "12");
    }
}
