//! What a line typed into the chat means: a message with options, or a
//! chat command.
//!
//! ```text
//! Bed 4 obs due at 14:00               a routine message
//! /urgent Bed 4 is deteriorating       urgent
//! /note Plan: IV antibiotics           a clinical note
//! /patient 943 476 5919 Review bloods  tagged with the patient's NHS number
//! /reply 12 Agreed                     answers message #12
//! /urgent /patient 9434765919 Call me  options combine
//! /help, /quit
//! ```

use wardline_protocol::{BodyKind, Priority};

use crate::nhs::{NhsNumber, NhsNumberError};

/// A typed line, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Typed {
    /// A message to send.
    Message(Draft),
    /// Leave the chat.
    Quit,
    /// Show the commands.
    Help,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// The text.
    pub text: String,
    /// Routine or urgent.
    pub priority: Priority,
    /// Message or clinical note.
    pub kind: BodyKind,
    /// The patient tag.
    pub patient: Option<NhsNumber>,
    /// The message (by `seq`) this one answers.
    pub reply_to_seq: Option<u64>,
}

/// Why a line cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    /// A bad NHS number after `/patient`.
    #[error(transparent)]
    Patient(#[from] NhsNumberError),
    /// `/reply` without a message number.
    #[error("write /reply followed by the message number, e.g. /reply 12 Agreed")]
    BadReply,
    /// An unknown `/command`.
    #[error("unknown command {0}; type /help for the list")]
    Unknown(String),
    /// Nothing to send.
    #[error("the message is empty")]
    Empty,
}

/// The chat commands, for `/help`.
pub const HELP: &str =
    "/urgent TEXT · /note TEXT (clinical note) · /patient NHS_NUMBER TEXT · /reply N TEXT · /quit";

/// Understands one typed line.
pub fn parse(line: &str) -> Result<Typed, ComposeError> {
    let mut rest = line.trim();
    let mut draft = Draft {
        text: String::new(),
        priority: Priority::Routine,
        kind: BodyKind::Message,
        patient: None,
        reply_to_seq: None,
    };
    while let Some(after) = rest.strip_prefix('/') {
        let (word, tail) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
        let tail = tail.trim_start();
        match word {
            "quit" | "q" | "exit" => return Ok(Typed::Quit),
            "help" | "h" | "?" => return Ok(Typed::Help),
            "urgent" | "u" => draft.priority = Priority::Urgent,
            "note" | "n" => draft.kind = BodyKind::ClinicalNote,
            "patient" | "p" => {
                let (number, text) = take_nhs_number(tail);
                draft.patient = Some(NhsNumber::parse(&number)?);
                rest = text;
                continue;
            }
            "reply" | "r" => {
                let (n, text) = tail.split_once(char::is_whitespace).unwrap_or((tail, ""));
                draft.reply_to_seq = Some(
                    n.trim_start_matches('#')
                        .parse()
                        .map_err(|_| ComposeError::BadReply)?,
                );
                rest = text.trim_start();
                continue;
            }
            // A line that merely starts with a slash ("/ 2 units") is text.
            "" => break,
            other => return Err(ComposeError::Unknown(format!("/{other}"))),
        }
        rest = tail;
    }
    if rest.is_empty() {
        return Err(ComposeError::Empty);
    }
    draft.text = rest.to_owned();
    Ok(Typed::Message(draft))
}

/// Splits a leading NHS number (10 digits, possibly grouped by spaces or
/// hyphens) off `s`; the number is whatever digits come first.
fn take_nhs_number(s: &str) -> (String, &str) {
    let mut digits = 0;
    let mut end = 0;
    for (i, c) in s.char_indices() {
        if c.is_ascii_digit() {
            digits += 1;
            end = i + 1;
            if digits == 10 {
                break;
            }
        } else if matches!(c, ' ' | '-') && digits > 0 {
            continue;
        } else {
            break;
        }
    }
    if digits == 0 {
        // Let the parser name what was there.
        let word = s.split_whitespace().next().unwrap_or("");
        return (word.to_owned(), s[word.len()..].trim_start());
    }
    (s[..end].to_owned(), s[end..].trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(line: &str) -> Draft {
        match parse(line) {
            Ok(Typed::Message(d)) => d,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn plain_text_is_a_routine_message() {
        let d = draft("  Obs due at 14:00 ");
        assert_eq!(d.text, "Obs due at 14:00");
        assert_eq!((d.priority, d.kind), (Priority::Routine, BodyKind::Message));
    }

    #[test]
    fn options_combine_in_any_order() {
        let d = draft("/urgent /patient 943 476 5919 Call me /now");
        assert_eq!(d.priority, Priority::Urgent);
        assert_eq!(
            d.patient.as_ref().map(NhsNumber::as_str),
            Some("9434765919")
        );
        assert_eq!(d.text, "Call me /now");
        let d = draft("/note /reply #12 Agreed");
        assert_eq!((d.kind, d.reply_to_seq), (BodyKind::ClinicalNote, Some(12)));
        assert_eq!(d.text, "Agreed");
    }

    #[test]
    fn a_bad_patient_number_is_refused() {
        assert!(matches!(
            parse("/patient 9434765918 Review"),
            Err(ComposeError::Patient(NhsNumberError::BadCheckDigit(_)))
        ));
        assert!(matches!(
            parse("/patient Review"),
            Err(ComposeError::Patient(NhsNumberError::NotTenDigits(_)))
        ));
    }

    #[test]
    fn commands_and_mistakes_are_recognised() {
        assert_eq!(parse("/quit"), Ok(Typed::Quit));
        assert_eq!(parse("/help"), Ok(Typed::Help));
        assert_eq!(parse("/urgent"), Err(ComposeError::Empty));
        assert_eq!(parse("   "), Err(ComposeError::Empty));
        assert_eq!(parse("/reply x hi"), Err(ComposeError::BadReply));
        assert!(matches!(
            parse("/frobnicate x"),
            Err(ComposeError::Unknown(_))
        ));
        assert_eq!(draft("/ 2 units").text, "/ 2 units");
    }
}
