//! Altinn 3 (the transport lands with the client, `crate::altinn3`).
use super::{Result, Transport, TransportError};

pub fn open(_config: &crate::config::Config) -> Result<Box<dyn Transport>> {
    Err(TransportError::permanent(
        "transport.kind \"altinn3\" is not available in this version",
    ))
}

/// How long after its requested publish time an unpublished letter shows
/// as overdue in `status`.
pub fn overdue_after(_cfg: &crate::config::Config) -> std::time::Duration {
    std::time::Duration::from_secs(3600)
}

/// What Altinn 3's correspondence statuses mean for us (reference §3.1):
/// the one place that knows.
pub mod status {
    /// Published, or something only a published letter can reach.
    pub fn published(status: Option<&str>) -> bool {
        matches!(
            status,
            Some(
                "Published"
                    | "Fetched"
                    | "Read"
                    | "Replied"
                    | "Confirmed"
                    | "PurgedByRecipient"
                    | "Archived"
                    | "AttachmentsDownloaded"
                    | "Forwarded"
            )
        )
    }

    /// Altinn could not publish it.
    pub fn failed(status: Option<&str>) -> bool {
        status == Some("Failed")
    }

    /// Nothing more will happen to it that we report: stop looking.
    /// (`NotFound`: Altinn no longer knows it, e.g. purged.)
    pub fn is_final(status: Option<&str>) -> bool {
        matches!(
            status,
            Some("Failed" | "PurgedByAltinn" | "PurgedByRecipient" | "Archived" | "NotFound")
        )
    }
}
