//! Altinn's error answers, in the three shapes the real server uses.
//!
//! 1. *Domain errors* (the handler refused the request): RFC 9110 ProblemDetails
//!    with Altinn's integer `errorCode`, the string `code` (`CORR-01034`) and a
//!    `traceId` — `ProblemDetailsHelper.ToProblemResult` in
//!    `Altinn.Correspondence.API/Helpers/ProblemDetailsHelper.cs`.
//! 2. *Model-validation errors* (`[ApiController]` refused the body before any
//!    handler ran): status 400, `code` `STD-00000`, `validationErrors` and the
//!    legacy `errors` map, and **no** `errorCode` — `ToValidationProblemResult`.
//! 3. Odd ones: authentication failures are bare 401/403 without a body, the
//!    Accept check answers 406 in plain text, an unknown notification template
//!    is a JSON string with status 400.
//!
//! The table below is a copy of the codes of `Altinn.Correspondence.Application/
//! Errors.cs` the simulator can produce, with Altinn's own messages (clients and
//! receipts show them), so a test can compare a sim answer with the real one.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// One of Altinn's domain errors: its code, HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AltinnError {
    pub code: u32,
    pub status: StatusCode,
    pub message: String,
}

impl AltinnError {
    fn new(code: u32, status: StatusCode, message: impl Into<String>) -> Self {
        AltinnError {
            code,
            status,
            message: message.into(),
        }
    }

    /// `"CORR-01034"`: the domain, a dash, five digits.
    pub fn code_string(&self) -> String {
        format!("CORR-{:05}", self.code)
    }
}

/// Errors.cs, the subset the simulator produces. Functions rather than
/// constants where Altinn's message carries data.
pub mod codes {
    use super::AltinnError;
    use axum::http::StatusCode as S;

    const B: S = S::BAD_REQUEST;

    pub fn not_found() -> AltinnError {
        AltinnError::new(
            1001,
            S::NOT_FOUND,
            "The requested correspondence was not found",
        )
    }
    pub fn title_not_plain() -> AltinnError {
        AltinnError::new(1002, B, "Message title must be plain text")
    }
    pub fn files_mismatch() -> AltinnError {
        AltinnError::new(
            1005,
            B,
            "Mismatch between uploaded files and attachment metadata",
        )
    }
    pub fn duplicate_recipients() -> AltinnError {
        AltinnError::new(1006, B, "Recipients must be unique")
    }
    pub fn existing_attachment_not_found() -> AltinnError {
        AltinnError::new(1007, B, "Existing attachment not found")
    }
    pub fn due_before_now() -> AltinnError {
        AltinnError::new(1008, B, "DueDateTime cannot be prior to today")
    }
    pub fn due_before_publish() -> AltinnError {
        AltinnError::new(
            1009,
            B,
            "DueDateTime cannot be prior to RequestedPublishTime",
        )
    }
    pub fn cannot_purge_published() -> AltinnError {
        AltinnError::new(
            1013,
            B,
            "Sender cannot delete correspondence that has been published",
        )
    }
    pub fn already_purged() -> AltinnError {
        AltinnError::new(1014, B, "Correspondence has already been purged")
    }
    pub fn due_required() -> AltinnError {
        AltinnError::new(
            1016,
            B,
            "DueDateTime is required when confirmation is needed",
        )
    }
    pub fn attachment_not_published() -> AltinnError {
        AltinnError::new(1018, B, "Attachment is not published")
    }
    pub fn invalid_language() -> AltinnError {
        AltinnError::new(1023, B, "Invalid language chosen. Supported languages is Norsk bokmål (nb), Nynorsk (nn) and English (en)")
    }
    pub fn invalid_date_range() -> AltinnError {
        AltinnError::new(1027, B, "From date cannot be after to date")
    }
    pub fn recipients_not_found(recipients: &[String]) -> AltinnError {
        AltinnError::new(
            1029,
            S::NOT_FOUND,
            format!(
                "Could not find partyId for the following recipients: {}",
                recipients.join(", ")
            ),
        )
    }
    pub fn recipient_reserved(recipient: &str) -> AltinnError {
        AltinnError::new(1030, S::UNPROCESSABLE_ENTITY, format!("Recipient {recipient} has reserved themselves from public correspondences. Can be overridden using the 'IgnoreReservation' flag."))
    }
    pub fn duplicate_idempotent_key() -> AltinnError {
        AltinnError::new(
            1034,
            S::CONFLICT,
            "A correspondence with the same idempotent key already exists",
        )
    }
    pub fn invalid_reply_options() -> AltinnError {
        AltinnError::new(
            1035,
            B,
            "Reply options must be well-formed URIs and HTTPS with a max length of 255 characters",
        )
    }
    pub fn invalid_resource() -> AltinnError {
        AltinnError::new(
            1036,
            B,
            "ResourceId must match an existing resource in the resource registry",
        )
    }
    pub fn too_many_attachments() -> AltinnError {
        AltinnError::new(
            1038,
            B,
            "A correspondence cannot contain more than 100 attachments in total",
        )
    }
    pub fn sender_not_plain() -> AltinnError {
        AltinnError::new(1039, B, "Message sender must be plain text")
    }
    pub fn transmission_one_recipient() -> AltinnError {
        AltinnError::new(
            1045,
            B,
            "Transmission correspondences only support one recipient",
        )
    }
    pub fn key_with_many_recipients() -> AltinnError {
        AltinnError::new(
            1047,
            B,
            "Idempotency key is not supported for requests with multiple recipients",
        )
    }
    pub fn invalid_dialog_id() -> AltinnError {
        AltinnError::new(1048, B, "DialogId must be a valid non-empty GUID")
    }
    pub fn transmission_gui_actions() -> AltinnError {
        AltinnError::new(1051, B, "Correspondences with GUI actions (ReplyOptions or IsConfirmationNeeded) cannot be sent as transmissions")
    }
    pub fn many_transmission_types() -> AltinnError {
        AltinnError::new(
            1052,
            B,
            "Only one DialogportenTransmissionType external reference is allowed",
        )
    }
    pub fn transmission_type_needs_dialog() -> AltinnError {
        AltinnError::new(1053, B, "DialogportenTransmissionType external reference requires a DialogportenDialogId external reference")
    }
    pub fn dialog_not_found() -> AltinnError {
        AltinnError::new(
            1054,
            S::NOT_FOUND,
            "Dialogporten dialog with the given id was not found",
        )
    }
    pub fn confidential_without_flag() -> AltinnError {
        AltinnError::new(1060, B, "Confidential correspondences (resources with the access package post-til-virksomheten-med-taushetsbelagt-innhold) cannot be initialized without setting the 'IsConfidential' flag to true")
    }
    pub fn flag_without_confidential() -> AltinnError {
        AltinnError::new(1061, B, "Correspondences cannot be initialized with 'IsConfidential' flag set to true if the resource is not confidential")
    }
    pub fn forwarding_large_attachments() -> AltinnError {
        AltinnError::new(
            1069,
            B,
            "Correspondence cannot allow forwarding if the total size of attachments exceeds 10 MB",
        )
    }
    pub fn attachment_not_found() -> AltinnError {
        AltinnError::new(2001, S::NOT_FOUND, "The requested attachment was not found")
    }
    pub fn upload_failed() -> AltinnError {
        AltinnError::new(2002, S::BAD_GATEWAY, "Error occurred during upload")
    }
    pub fn upload_to_linked() -> AltinnError {
        AltinnError::new(
            2003,
            B,
            "Cannot upload attachment to a correspondence that has been created",
        )
    }
    pub fn invalid_file_size(max: &str) -> AltinnError {
        AltinnError::new(
            2004,
            B,
            format!("File must have content and has a max file size of {max}"),
        )
    }
    pub fn already_uploaded() -> AltinnError {
        AltinnError::new(2005, B, "File has already been or is being uploaded")
    }
    pub fn attachment_purged() -> AltinnError {
        AltinnError::new(2006, B, "File has already been purged")
    }
    pub fn attachment_linked() -> AltinnError {
        AltinnError::new(
            2007,
            B,
            "Attachment cannot be purged as it is linked to at least one existing correspondence",
        )
    }
    pub fn filename_missing() -> AltinnError {
        AltinnError::new(2010, B, "Filename is missing")
    }
    pub fn filename_too_long() -> AltinnError {
        AltinnError::new(2011, B, "Filename is too long")
    }
    pub fn filename_invalid() -> AltinnError {
        AltinnError::new(2012, B, "Filename contains invalid characters. The ruleset is based on Windows file naming convention which is defined here: https://learn.microsoft.com/en-us/windows/win32/fileio/naming-a-file#file-and-directory-names")
    }
    pub fn filetype_not_allowed() -> AltinnError {
        AltinnError::new(2013, B, "Filetype not allowed")
    }
    pub fn expiration_too_soon(days: u32) -> AltinnError {
        AltinnError::new(
            2017,
            B,
            format!("Attachment expirationTime must be at least {days} days from now"),
        )
    }
    pub fn reserved_windows_name() -> AltinnError {
        AltinnError::new(2021, B, "The filename uses a Windows reserved name. Files cannot be named CON, PRN, AUX, NUL, COM1-COM9, or LPT1-LPT9 (e.g., 'CON.txt' is not allowed, but 'CONSOLE.txt' is).")
    }
    pub fn missing_email() -> AltinnError {
        AltinnError::new(
            3002,
            B,
            "Email body and subject must be provided when sending email notifications",
        )
    }
    pub fn missing_email_reminder() -> AltinnError {
        AltinnError::new(3003, B, "Reminder email body and subject must be provided when sending reminder email notifications")
    }
    pub fn missing_sms() -> AltinnError {
        AltinnError::new(
            3004,
            B,
            "SMS body must be provided when sending SMS notifications",
        )
    }
    pub fn missing_sms_reminder() -> AltinnError {
        AltinnError::new(
            3005,
            B,
            "Reminder SMS body must be provided when sending reminder SMS notifications",
        )
    }
    pub fn missing_preferred() -> AltinnError {
        AltinnError::new(3006, B, "Email body, subject and SMS body must be provided when sending preferred notifications")
    }
    pub fn missing_preferred_reminder() -> AltinnError {
        AltinnError::new(3007, B, "Reminder email body, subject and SMS body must be provided when sending reminder preferred notifications")
    }
    pub fn invalid_email() -> AltinnError {
        AltinnError::new(3011, B, "Invalid email provided for custom recipient.")
    }
    pub fn invalid_mobile() -> AltinnError {
        AltinnError::new(3012, B, "Invalid mobile number provided. Mobile number can contain only '+' and numeric characters, and it must adhere to the E.164 standard.")
    }
    pub fn recipient_name_with_address() -> AltinnError {
        AltinnError::new(3015, B, "Recipient overrides with email or mobile number are not allowed when using notification recipient name because of name lookup")
    }
    pub fn custom_recipient_many_recipients() -> AltinnError {
        AltinnError::new(
            3017,
            B,
            "Custom recipient with multiple recipients is not allowed",
        )
    }
    pub fn custom_recipient_many_ids() -> AltinnError {
        AltinnError::new(
            3018,
            B,
            "Custom recipient with multiple identifiers is not allowed",
        )
    }
    pub fn custom_recipient_no_id() -> AltinnError {
        AltinnError::new(
            3019,
            B,
            "Custom recipient without identifier is not allowed",
        )
    }
    pub fn override_without_custom() -> AltinnError {
        AltinnError::new(3022, B, "OverrideRegisteredContactInformation flag can only be used when CustomRecipients is provided")
    }
    pub fn missing_email_and_sms() -> AltinnError {
        AltinnError::new(3024, B, "Email body, subject and SMS body must be provided when sending email and SMS notifications")
    }
    pub fn missing_email_and_sms_reminder() -> AltinnError {
        AltinnError::new(3025, B, "Reminder email body, subject and SMS body must be provided when sending reminder email and SMS notifications")
    }
    /// Only in the message of the mapper's plain `BadRequest(string)`.
    pub const INVALID_TEMPLATE: &str = "Invalid notification template";
}

/// A W3C trace id as ASP.NET's `Activity.Current.Id` prints it.
pub fn trace_id() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("00-{a}-{}-00", &b[..16])
}

/// `type` and `title` for a status, as `ProblemDetailsHelper.StatusCodeMappings`.
fn type_and_title(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.1",
            "Bad Request",
        ),
        401 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.2",
            "Unauthorized",
        ),
        403 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.4",
            "Forbidden",
        ),
        404 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.5",
            "Not Found",
        ),
        408 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.9",
            "Request Timeout",
        ),
        409 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.10",
            "Conflict",
        ),
        422 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.21",
            "Unprocessable Entity",
        ),
        451 => (
            "https://tools.ietf.org/html/rfc7725#section-3",
            "Unavailable For Legal Reasons",
        ),
        500 => (
            "https://tools.ietf.org/html/rfc9110#section-15.6.1",
            "Internal Server Error",
        ),
        502 => (
            "https://tools.ietf.org/html/rfc9110#section-15.6.3",
            "Bad Gateway",
        ),
        _ => ("about:blank", "Error"),
    }
}

/// `application/problem+json` with the given status.
fn problem_json(status: StatusCode, body: Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json; charset=utf-8"),
    );
    r
}

impl IntoResponse for AltinnError {
    fn into_response(self) -> Response {
        let (ty, title) = type_and_title(self.status);
        problem_json(
            self.status,
            json!({
                "type": ty,
                "title": title,
                "status": self.status.as_u16(),
                "detail": self.message,
                "code": self.code_string(),
                "traceId": trace_id(),
                "errorCode": self.code,
            }),
        )
    }
}

/// One model-state error: the key (a property path such as
/// `Correspondence.Content.MessageTitle`, or `$.correspondence` for a JSON
/// error) and ASP.NET's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    pub key: String,
    pub message: String,
}

impl ModelError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ModelError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The 400 `[ApiController]` answers when binding or DataAnnotations fail.
pub fn validation_problem(errors: &[ModelError]) -> Response {
    let (ty, title) = type_and_title(StatusCode::BAD_REQUEST);
    let validation: Vec<Value> = errors
        .iter()
        .map(|e| {
            json!({
                "code": "CORR.VLD-00000",
                "detail": e.message,
                "paths": [e.key.replace('.', "/")],
            })
        })
        .collect();
    let mut legacy = serde_json::Map::new();
    for e in errors {
        let entry = legacy
            .entry(e.key.clone())
            .or_insert_with(|| Value::Array(vec![]));
        if let Value::Array(list) = entry {
            list.push(Value::String(e.message.clone()));
        }
    }
    problem_json(
        StatusCode::BAD_REQUEST,
        json!({
            "type": ty,
            "title": title,
            "status": 400,
            "detail": "One or more validation errors occurred.",
            "code": "STD-00000",
            "validationErrors": validation,
            "errors": legacy,
            "traceId": trace_id(),
        }),
    )
}

/// The mapper's `BadRequest(message)`: a JSON string, status 400.
pub fn bad_request_string(message: &str) -> Response {
    let mut r = (StatusCode::BAD_REQUEST, Value::from(message).to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// JwtBearer's challenge: 401, `WWW-Authenticate`, no body.
pub fn unauthorized(reason: &str) -> Response {
    let value = format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"");
    let mut r = StatusCode::UNAUTHORIZED.into_response();
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// 401 for a request without any token: `WWW-Authenticate: Bearer`.
pub fn unauthenticated() -> Response {
    let mut r = StatusCode::UNAUTHORIZED.into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// A failed authorization policy: 403, no body.
pub fn forbidden() -> Response {
    StatusCode::FORBIDDEN.into_response()
}

/// `AcceptHeaderValidationMiddleware`: 406 in plain text.
pub fn not_acceptable() -> Response {
    (
        StatusCode::NOT_ACCEPTABLE,
        "This endpoint does not support the requested Accept header. Supported Accept headers are: application/json, */*.",
    )
        .into_response()
}

/// The 415 that endpoint selection answers for a wrong Content-Type.
pub fn unsupported_media_type() -> Response {
    StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_strings_have_five_digits() {
        assert_eq!(
            codes::duplicate_idempotent_key().code_string(),
            "CORR-01034"
        );
        assert_eq!(codes::filetype_not_allowed().code_string(), "CORR-02013");
    }

    #[test]
    fn trace_ids_look_like_activity_ids() {
        let t = trace_id();
        assert_eq!(t.len(), 55, "{t}");
        assert!(t.starts_with("00-") && t.ends_with("-00"));
    }
}
