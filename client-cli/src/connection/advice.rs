//! What to tell the user for each server error code.

use wardline_protocol::ErrorCode;

/// What to tell the user for each server error code: what happened and what
/// to do next.
pub fn advice(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadFrame => {
            "The server could not read what this client sent. Update wardline, and report this to IT if it persists."
        }
        ErrorCode::BadRequest => {
            "The server refused the request as malformed. Check the command's arguments (see --help)."
        }
        ErrorCode::Unauthenticated => "Your session has ended; run `wardline login`.",
        ErrorCode::AuthFailed => "Wrong username, password or code. Check and try again.",
        ErrorCode::LockedOut => {
            "Too many failed attempts: the account is locked for now. Wait a while, or ask an administrator to unlock it."
        }
        ErrorCode::TotpReplayed => {
            "That code was already used; wait for the next code from your authenticator app."
        }
        ErrorCode::Forbidden => {
            "Your role does not allow this. Ask an administrator if you need it."
        }
        ErrorCode::NotFound => {
            "The server has no such user, device, conversation or code. Check the name or id and try again."
        }
        ErrorCode::NotMember => {
            "You are not a member of that conversation. Ask one of its members to add you."
        }
        ErrorCode::Conflict => {
            "That clashes with something that already exists (for example a username that is taken, or a code that was already used)."
        }
        ErrorCode::TooLarge => "That is too large to send; shorten the message.",
        ErrorCode::RateLimited => "Too many requests; wait a minute and try again.",
        ErrorCode::ResidencyDenied => {
            "The data-residency policy does not allow storing this on that server. Contact IT."
        }
        ErrorCode::InvalidEnvelope => {
            "The recipients' devices changed while the message was being sent; send it again."
        }
        ErrorCode::WipePending => {
            "An administrator has ordered this device to be wiped. Stop using it for Wardline and contact IT."
        }
        ErrorCode::Internal => {
            "The server had an internal fault. Try again shortly, and contact IT if it persists."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_advice_that_ends_in_a_full_stop() {
        let codes: Vec<ErrorCode> = [
            "bad_frame",
            "bad_request",
            "unauthenticated",
            "auth_failed",
            "locked_out",
            "totp_replayed",
            "forbidden",
            "not_found",
            "not_member",
            "conflict",
            "too_large",
            "rate_limited",
            "residency_denied",
            "invalid_envelope",
            "wipe_pending",
            "internal",
        ]
        .iter()
        .map(|c| serde_json::from_value(serde_json::Value::from(*c)).expect("known code"))
        .collect();
        for code in codes {
            assert!(advice(code).ends_with('.'), "{code:?}");
        }
        assert_eq!(
            advice(ErrorCode::AuthFailed),
            "Wrong username, password or code. Check and try again."
        );
    }
}
