//! What `ingest` and `api` share at the HTTP edge: the error body, JSON replies,
//! reading a request body within the limits, and authentication.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::access::{self, Credential, Decision, Scope};
use crate::event::FieldError;
use crate::store::{Store, StoreError};
use crate::{keys, portal};

/// The largest request body accepted, checked before the body is parsed…
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// …and the largest of `POST /v1/events/batch`.
pub const MAX_BATCH_BODY_BYTES: usize = 1024 * 1024;

/// An error reply: `{"error": {"code": …, "message": …}}` with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    allow: Option<&'static str>,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            allow: None,
            retry_after: None,
        }
    }

    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_error", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send a platform key, or a portal token that has not expired or been revoked, \
             as `Authorization: Bearer <key>`",
        )
    }

    /// A portal token on a route for platform keys only.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a portal token may not use this route; it takes a platform key",
        )
    }

    /// An action the account's settings (or the state of a request) forbid.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// `allow` lists the methods the route takes, for the `Allow` header.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this route takes {allow}"),
            )
        }
    }

    /// `what` (the body, an event) is over `limit` bytes.
    pub fn payload_too_large(what: &str, limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("{what} is over {} KiB", limit / 1024),
        )
    }

    /// The first request with this idempotency key is still at work: try again after `retry_after`.
    pub fn in_progress(retry_after: std::time::Duration) -> Self {
        Self {
            retry_after: Some(retry_after.as_secs().max(1)),
            ..Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "the first request with this idempotency key is still in progress; retry after the time in Retry-After",
            )
        }
    }

    pub fn idempotency_key_reused() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this idempotency key was already used for a different event of this account",
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as `content-type: application/json`",
        )
    }

    /// A failure of ours; the details go to the log, not to the caller.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "something went wrong on our side; it is safe to retry",
        )
    }

    /// The contract's error body, `{"error": {"code", "message"}}`.
    pub fn body(&self) -> Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }

    pub fn into_response(self) -> Response<Body> {
        let mut response = json(self.status, &self.body());
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        Self::validation(error.to_string())
    }
}

pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    let text = serde_json::to_string(body).expect("reply bodies serialise");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(text))
        .expect("a status and a static header make a valid response")
}

pub fn no_content() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::Empty)
        .expect("a bare status makes a valid response")
}

pub fn header_value<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The body as a JSON object, or the contract's error: 413 over [`MAX_BODY_BYTES`]
/// (before any parsing), 415 for a non-JSON content type, 400 `invalid_json` otherwise.
/// An empty body reads as `{}`: for routes whose body is optional.
pub fn json_object(req: &Request) -> Result<Map<String, Value>, ApiError> {
    read_object(req, MAX_BODY_BYTES, false)
}

/// [`json_object`] for a route whose body is required, within `max_bytes`: an empty
/// body is not JSON (400 `invalid_json`).
pub fn required_json_object(
    req: &Request,
    max_bytes: usize,
) -> Result<Map<String, Value>, ApiError> {
    read_object(req, max_bytes, true)
}

fn read_object(
    req: &Request,
    max_bytes: usize,
    required: bool,
) -> Result<Map<String, Value>, ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > max_bytes {
        return Err(ApiError::payload_too_large("the body", max_bytes));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return if required {
            Err(ApiError::invalid_json(
                "the body is empty; send a JSON object",
            ))
        } else {
            Ok(Map::new())
        };
    }
    if !header_value(req, "content-type").is_some_and(is_json_media_type) {
        return Err(ApiError::unsupported_media_type());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::invalid_json("the body must be a JSON object")),
        Err(e) => Err(ApiError::invalid_json(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// The credential of an `Authorization` value `Bearer <credential>`: the scheme in any
/// case and the space after it any run of spaces or tabs (RFC 9110, 11.1 and 11.4).
fn bearer_credential(value: &str) -> Option<&str> {
    let (scheme, credential) = value.split_once([' ', '\t'])?;
    let credential = credential.trim_matches([' ', '\t']);
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

/// Who sent `Authorization: Bearer <key>`: a platform key, or a live portal token
/// of an account. Neither the key nor the token is ever logged.
pub async fn authenticate(store: &Store, req: &Request) -> Result<Credential, ApiError> {
    let secret = header_value(req, "authorization")
        .and_then(bearer_credential)
        .ok_or_else(ApiError::unauthorized)?;
    let found = if portal::is_token(secret) {
        portal_credential(store, secret).await
    } else {
        store
            .api_key_exists(&keys::hash(secret))
            .await
            .map(|exists| exists.then_some(Credential::Platform))
    };
    match found {
        Ok(Some(credential)) => Ok(credential),
        Ok(None) => Err(ApiError::unauthorized()),
        Err(e) => {
            tracing::error!(error = %e, "could not check a credential");
            Err(ApiError::internal())
        }
    }
}

/// The account a portal token opens, while it is live.
async fn portal_credential(store: &Store, token: &str) -> Result<Option<Credential>, StoreError> {
    let Some(stored) = store.portal_token(&keys::hash(token)).await? else {
        return Ok(None);
    };
    let generation = store.portal_generation(&stored.account).await?;
    Ok(stored
        .is_live(OffsetDateTime::now_utc(), generation)
        .then_some(Credential::Portal {
            account: stored.account,
        }))
}

/// [`authenticate`], then what the credential may do on a route of `scope`: the
/// credential, or 401, 403 or 404 as [`access::decide`] says.
pub async fn admit(store: &Store, req: &Request, scope: Scope<'_>) -> Result<Credential, ApiError> {
    let credential = authenticate(store, req).await?;
    match access::decide(&credential, scope) {
        Decision::Allow => Ok(credential),
        Decision::Forbidden => Err(ApiError::forbidden()),
        Decision::NotFound => Err(ApiError::not_found(format!(
            "no route {}",
            req.uri().path()
        ))),
    }
}

/// Where the caller reached the API, e.g. `https://api.example.com`: the domain
/// API Gateway names (else the `Host` header), with the scheme it was reached by
/// (`X-Forwarded-Proto`, `https` when absent). `None` when no host is known.
pub fn request_origin(req: &Request) -> Option<String> {
    let domain = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.domain_name.clone(),
        _ => None,
    };
    let host = domain
        .filter(|d| !d.is_empty())
        .or_else(|| header_value(req, "host").map(str::to_string))?;
    let scheme = match header_value(req, "x-forwarded-proto") {
        Some("http") => "http",
        _ => "https",
    };
    Some(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(content_type: Option<&str>, body: &str) -> Request {
        let mut builder = lambda_http::http::Request::builder()
            .method("POST")
            .uri("/v1/events");
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        builder.body(Body::Text(body.to_string())).unwrap()
    }

    #[test]
    fn reads_json_objects_and_refuses_the_rest_with_the_contract_codes() {
        let ok = json_object(&request(
            Some("application/json; charset=utf-8"),
            r#"{"a":1}"#,
        ))
        .unwrap();
        assert_eq!(ok["a"], 1);
        assert!(json_object(&request(None, "")).unwrap().is_empty());
        for empty in ["", " \n"] {
            let error = required_json_object(&request(None, empty), MAX_BODY_BYTES).unwrap_err();
            assert_eq!(error.code, "invalid_json");
        }
        assert!(json_object(&request(Some("application/cloudevents+json"), "{}")).is_ok());
        for (content_type, body, code) in [
            (Some("application/json"), "{nope", "invalid_json"),
            (Some("application/json"), "[1,2]", "invalid_json"),
            (Some("application/json"), "\"text\"", "invalid_json"),
            (Some("text/plain"), "{}", "unsupported_media_type"),
            (None, "{}", "unsupported_media_type"),
        ] {
            let error = json_object(&request(content_type, body)).unwrap_err();
            assert_eq!(error.code, code, "{content_type:?} {body}");
        }
    }

    #[test]
    fn oversized_bodies_are_refused_before_parsing() {
        let huge = "x".repeat(MAX_BODY_BYTES + 1);
        let error = json_object(&request(Some("application/json"), &huge)).unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error.code, "payload_too_large");
        let batch = "x".repeat(MAX_BODY_BYTES * 2);
        let request = request(Some("application/json"), &batch);
        assert!(
            required_json_object(&request, MAX_BATCH_BODY_BYTES)
                .is_err_and(|e| e.code == "invalid_json")
        );
    }

    #[test]
    fn in_progress_says_when_to_retry() {
        let response = ApiError::in_progress(std::time::Duration::from_millis(300)).into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()["retry-after"], "1");
        let response = ApiError::in_progress(std::time::Duration::from_secs(7)).into_response();
        assert_eq!(response.headers()["retry-after"], "7");
    }

    #[test]
    fn the_origin_is_the_domain_reached_with_its_scheme() {
        let at = |headers: &[(&str, &str)]| {
            let mut builder = lambda_http::http::Request::builder().uri("/v1/x");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            request_origin(&builder.body(Body::Empty).unwrap())
        };
        assert_eq!(at(&[]), None);
        assert_eq!(
            at(&[("host", "api.example.com")]).as_deref(),
            Some("https://api.example.com")
        );
        assert_eq!(
            at(&[("host", "127.0.0.1:3000"), ("x-forwarded-proto", "http")]).as_deref(),
            Some("http://127.0.0.1:3000")
        );
        assert_eq!(
            at(&[("host", "h"), ("x-forwarded-proto", "gopher")]).as_deref(),
            Some("https://h")
        );
    }

    #[test]
    fn error_replies_have_the_contract_shape() {
        let response = ApiError::method_not_allowed("GET, POST").into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()["allow"], "GET, POST");
        let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed");
        assert!(body["error"]["message"].is_string());
    }

    #[test]
    fn a_bearer_credential_is_read_whatever_the_scheme_s_case() {
        for value in [
            "Bearer hlk_1",
            "bearer hlk_1",
            "BEARER hlk_1",
            "Bearer\thlk_1",
            "Bearer   hlk_1 ",
        ] {
            assert_eq!(bearer_credential(value), Some("hlk_1"), "{value:?}");
        }
        for value in ["Basic hlk_1", "Bearer", "Bearer ", "Bearerhlk_1", "hlk_1"] {
            assert_eq!(bearer_credential(value), None, "{value:?}");
        }
    }
}
