//! What a request can fail with, and how each failure reaches the wire.
//!
//! Clients see a stable code and a sentence written for them; internal
//! errors are logged here and reach the client only as `internal`.

use wardline_protocol::DeviceId;
use wardline_protocol::wire::{ErrorCode, ErrorFrame};

use crate::store::StoreError;

/// A failed request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    missing_devices: Option<Vec<DeviceId>>,
    extra_devices: Option<Vec<DeviceId>>,
}

impl ApiError {
    /// A failure with a code and a sentence for the user.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            missing_devices: None,
            extra_devices: None,
        }
    }

    /// `bad_request` with a reason.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// `invalid_envelope` naming the devices the key entries got wrong.
    pub fn device_mismatch(missing: Vec<DeviceId>, extra: Vec<DeviceId>) -> Self {
        Self {
            code: ErrorCode::InvalidEnvelope,
            message: "the key entries do not match the conversation's active devices; \
                      refresh the device list and seal again"
                .into(),
            missing_devices: Some(missing),
            extra_devices: Some(extra),
        }
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The frame answering request `re`.
    pub fn into_frame(self, re: Option<u64>) -> ErrorFrame {
        ErrorFrame {
            re,
            code: self.code,
            message: self.message,
            missing_devices: self.missing_devices,
            extra_devices: self.extra_devices,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // A storage failure is a fault of ours, not the client's: log the
        // detail for operators, tell the client only that it may retry.
        // Refused writes were announced once when refusing began; one line
        // per request would flood the log while the disk stays full.
        if matches!(e, StoreError::Refused(_)) {
            tracing::debug!(error = %e, "write refused while serving a request");
        } else {
            tracing::error!(error = %e, "storage error while serving a request");
        }
        ApiError::new(
            ErrorCode::Internal,
            "the server could not complete this request; try again",
        )
    }
}
