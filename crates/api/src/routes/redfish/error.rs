//! Redfish's error answers (DSP0266 "Error responses"): one `error` object whose `code` is a
//! message id of DMTF's Base message registry, a `message`, and `@Message.ExtendedInfo` with that
//! message, its arguments, severity and resolution. Every failure of the Redfish service, vine's
//! own refusals included, answers in this shape with the status vine gives it.

use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::routes::ApiError;

/// The message registry the ids below come from (DMTF `Base.1.16.0`).
pub const REGISTRY: &str = "Base.1.16.0";

/// A Base registry message this service answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageId {
    /// Anything without a more precise message; the resolution says what to do.
    GeneralError,
    /// A resource of a type and name that does not exist (or the caller may not see).
    ResourceNotFound,
    /// No resource at a URI.
    ResourceMissingAtURI,
    /// No credentials, or credentials that are not (or no longer) valid.
    NoValidSession,
    /// Valid credentials without the right.
    InsufficientPrivilege,
    /// A body that is not JSON.
    MalformedJSON,
    /// A required property of a create request is missing.
    PropertyMissing,
    /// A required action parameter is missing.
    ActionParameterMissing,
    /// An action parameter the action does not have.
    ActionParameterUnknown,
    /// An action parameter of the wrong JSON type.
    ActionParameterValueTypeError,
    /// An action parameter outside its allowable values.
    ActionParameterValueNotInList,
    /// The service failed.
    InternalError,
}

impl MessageId {
    fn name(self) -> &'static str {
        match self {
            MessageId::GeneralError => "GeneralError",
            MessageId::ResourceNotFound => "ResourceNotFound",
            MessageId::ResourceMissingAtURI => "ResourceMissingAtURI",
            MessageId::NoValidSession => "NoValidSession",
            MessageId::InsufficientPrivilege => "InsufficientPrivilege",
            MessageId::MalformedJSON => "MalformedJSON",
            MessageId::PropertyMissing => "PropertyMissing",
            MessageId::ActionParameterMissing => "ActionParameterMissing",
            MessageId::ActionParameterUnknown => "ActionParameterUnknown",
            MessageId::ActionParameterValueTypeError => "ActionParameterValueTypeError",
            MessageId::ActionParameterValueNotInList => "ActionParameterValueNotInList",
            MessageId::InternalError => "InternalError",
        }
    }

    /// The registry's severity of the message.
    fn severity(self) -> &'static str {
        match self {
            MessageId::PropertyMissing
            | MessageId::ActionParameterUnknown
            | MessageId::ActionParameterValueTypeError
            | MessageId::ActionParameterValueNotInList => "Warning",
            MessageId::GeneralError
            | MessageId::ResourceNotFound
            | MessageId::ResourceMissingAtURI
            | MessageId::NoValidSession
            | MessageId::InsufficientPrivilege
            | MessageId::MalformedJSON
            | MessageId::ActionParameterMissing
            | MessageId::InternalError => "Critical",
        }
    }

    /// `Base.1.16.0.Name`.
    pub fn qualified(self) -> String {
        format!("{REGISTRY}.{}", self.name())
    }
}

/// A Redfish error answer.
#[derive(Debug)]
pub struct RfError {
    status: StatusCode,
    id: MessageId,
    message: String,
    args: Vec<String>,
    resolution: String,
    retry_after_s: Option<u64>,
}

#[derive(Serialize)]
struct ErrorDocument {
    error: ErrorObject,
}

#[derive(Serialize)]
struct ErrorObject {
    code: String,
    message: String,
    #[serde(rename = "@Message.ExtendedInfo")]
    extended_info: Vec<Message>,
}

/// One `Message` (Message.v1_1_1).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Message {
    #[serde(rename = "@odata.type")]
    odata_type: &'static str,
    message_id: String,
    message: String,
    message_args: Vec<String>,
    severity: &'static str,
    message_severity: &'static str,
    resolution: String,
}

impl RfError {
    /// An error with `status`, message `id` and its arguments; `message` says what happened.
    pub fn new(status: StatusCode, id: MessageId, message: impl Into<String>, args: &[&str]) -> RfError {
        RfError {
            status,
            id,
            message: message.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            resolution: String::new(),
            retry_after_s: None,
        }
    }

    /// The same error with what to do about it.
    pub fn resolve(mut self, resolution: impl Into<String>) -> RfError {
        self.resolution = resolution.into();
        self
    }

    /// 404: no `kind` named `name` (or none the caller may see).
    pub fn not_found(kind: &str, name: &str) -> RfError {
        RfError::new(
            StatusCode::NOT_FOUND,
            MessageId::ResourceNotFound,
            format!("The requested resource of type {kind} named '{name}' was not found."),
            &[kind, name],
        )
        .resolve("Provide a valid resource identifier and resubmit the request.")
    }

    /// 404: nothing at `uri`.
    pub fn missing(uri: &str) -> RfError {
        RfError::new(
            StatusCode::NOT_FOUND,
            MessageId::ResourceMissingAtURI,
            format!("The resource at the URI '{uri}' was not found."),
            &[uri],
        )
        .resolve("Place a valid resource at the URI or correct the URI and resubmit the request.")
    }

    /// 400: a body that is not a JSON object.
    pub fn malformed(why: &str) -> RfError {
        RfError::new(
            StatusCode::BAD_REQUEST,
            MessageId::MalformedJSON,
            format!(
                "The request body submitted was malformed JSON and could not be parsed by the receiving \
                 service: {why}"
            ),
            &[],
        )
        .resolve("Ensure that the request body is valid JSON and resubmit the request.")
    }

    /// The HTTP status.
    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message id.
    #[cfg(test)]
    pub fn id(&self) -> MessageId {
        self.id
    }
}

/// vine's own refusals (rights, the daemon's answers, logins) keep their status and sentence.
impl From<ApiError> for RfError {
    fn from(e: ApiError) -> RfError {
        let id = match e.status() {
            StatusCode::UNAUTHORIZED => MessageId::NoValidSession,
            StatusCode::FORBIDDEN => MessageId::InsufficientPrivilege,
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => MessageId::GeneralError,
            s if s.is_server_error() && s != StatusCode::SERVICE_UNAVAILABLE => MessageId::InternalError,
            _ => MessageId::GeneralError,
        };
        let mut r = RfError::new(e.status(), id, e.message(), &[]).resolve(e.message());
        r.retry_after_s = e.retry_after_s();
        r
    }
}

impl IntoResponse for RfError {
    fn into_response(self) -> Response {
        let code = self.id.qualified();
        let doc = ErrorDocument {
            error: ErrorObject {
                code: code.clone(),
                message: self.message.clone(),
                extended_info: vec![Message {
                    odata_type: "#Message.v1_1_1.Message",
                    message_id: code,
                    message: self.message,
                    message_args: self.args,
                    severity: self.id.severity(),
                    message_severity: self.id.severity(),
                    resolution: if self.resolution.is_empty() { "None.".into() } else { self.resolution },
                }],
            },
        };
        let mut r = (self.status, Json(doc)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"vine\""));
        }
        if let Some(s) = self.retry_after_s {
            r.headers_mut().insert(RETRY_AFTER, s.into());
        }
        r
    }
}

/// A Redfish handler's result.
pub type RfResult<T> = Result<T, RfError>;

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(r: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.expect("a small body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[tokio::test]
    async fn an_error_answers_with_the_base_registry_id_and_its_extended_info() {
        let r = RfError::new(
            StatusCode::BAD_REQUEST,
            MessageId::ActionParameterValueNotInList,
            "The value 'Explode' for the parameter ResetType in the action ComputerSystem.Reset is not in the \
             list of acceptable values.",
            &["Explode", "ResetType", "ComputerSystem.Reset"],
        )
        .into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let v = body_of(r).await;
        assert_eq!(v["error"]["code"], "Base.1.16.0.ActionParameterValueNotInList");
        let info = &v["error"]["@Message.ExtendedInfo"][0];
        assert_eq!(info["MessageId"], "Base.1.16.0.ActionParameterValueNotInList");
        assert_eq!(info["MessageArgs"], serde_json::json!(["Explode", "ResetType", "ComputerSystem.Reset"]));
        assert_eq!(info["Severity"], "Warning");
    }

    #[tokio::test]
    async fn vine_refusals_keep_their_status_and_sentence() {
        let e =
            RfError::from(ApiError::new(StatusCode::CONFLICT, "cannot start 'web1': it is already running"));
        assert_eq!((e.status(), e.id()), (StatusCode::CONFLICT, MessageId::GeneralError));
        let v = body_of(e.into_response()).await;
        assert_eq!(v["error"]["message"], "cannot start 'web1': it is already running");
        let r = RfError::from(ApiError::new(StatusCode::UNAUTHORIZED, "not logged in")).into_response();
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Basic realm=\"vine\"");
        assert_eq!(body_of(r).await["error"]["code"], "Base.1.16.0.NoValidSession");
    }
}
