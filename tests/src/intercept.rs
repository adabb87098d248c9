//! Faults at an exact place, for tests that need one there rather than a share of
//! calls (see [`crate::faults`] for that): an SDK interceptor on one client that
//! refuses chosen calls of one operation before they are sent, or lets them reach
//! the emulator and then replaces the answer with a 500, as when an answer is lost
//! on the way back (the SDK then sends the call again).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
    BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

/// What happens to a chosen call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Fails before it is sent: nothing happens at the service.
    Refused,
    /// Done by the service, then answered with a 500.
    AnswerLost,
}

/// Injects `what` into the attempts of `operation` numbered in `attempts` (0-based,
/// each SDK attempt counted, in the order they are made). Clones share the count.
#[derive(Debug, Clone)]
pub struct InjectAt {
    operation: &'static str,
    attempts: Vec<usize>,
    what: Injected,
    seen: Arc<AtomicUsize>,
}

impl InjectAt {
    pub fn new(operation: &'static str, attempts: &[usize], what: Injected) -> Self {
        Self {
            operation,
            attempts: attempts.to_vec(),
            what,
            seen: Arc::default(),
        }
    }

    /// How many attempts of the operation were made so far.
    pub fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    fn is_ours(&self, cfg: &ConfigBag) -> bool {
        cfg.load::<Metadata>()
            .is_some_and(|m| m.name() == self.operation)
    }
}

/// The 500 a lost answer turns into: the JSON error both services' SDKs read as an
/// internal error, which they retry.
const INTERNAL_ERROR: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"the answer was lost"}"#;

impl Intercept for InjectAt {
    fn name(&self) -> &'static str {
        "InjectAt"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !self.is_ours(cfg) {
            return Ok(());
        }
        let attempt = self.seen.fetch_add(1, Ordering::SeqCst);
        if self.what == Injected::Refused && self.attempts.contains(&attempt) {
            return Err(format!("injected: {} refused", self.operation).into());
        }
        if self.what == Injected::AnswerLost && self.attempts.contains(&attempt) {
            cfg.interceptor_state().store_put(LoseThisAnswer);
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<LoseThisAnswer>().is_some() {
            cfg.interceptor_state().unset::<LoseThisAnswer>();
            let response = context.response_mut();
            *response.status_mut() = StatusCode::try_from(500).expect("a valid status");
            *response.body_mut() = SdkBody::from(INTERNAL_ERROR);
        }
        Ok(())
    }
}

/// Marks an attempt whose answer is to be lost.
#[derive(Debug, Clone)]
struct LoseThisAnswer;

impl aws_smithy_types::config_bag::Storable for LoseThisAnswer {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

/// Makes DynamoDB's first `BatchWriteItem` leave its last write unprocessed, as
/// DynamoDB does under load: the write is taken out of the request before it is
/// sent, and the answer names it in `UnprocessedItems`. Clones share the count.
#[derive(Debug, Clone, Default)]
pub struct LeaveUnprocessed {
    calls: Arc<AtomicUsize>,
}

impl LeaveUnprocessed {
    /// How many `BatchWriteItem` calls were made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The writes taken out of a request, to be named in its answer.
#[derive(Debug, Clone)]
struct TakenOut(String);

impl aws_smithy_types::config_bag::Storable for TakenOut {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl Intercept for LeaveUnprocessed {
    fn name(&self) -> &'static str {
        "LeaveUnprocessed"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let ours = cfg
            .load::<Metadata>()
            .is_some_and(|m| m.name() == "BatchWriteItem");
        if !ours || self.calls.fetch_add(1, Ordering::SeqCst) > 0 {
            return Ok(());
        }
        let request = context.request_mut();
        let mut body: serde_json::Value =
            serde_json::from_slice(request.body().bytes().ok_or("a streaming body")?)?;
        let mut unprocessed = serde_json::Map::new();
        for (table, writes) in body["RequestItems"]
            .as_object_mut()
            .ok_or("no RequestItems")?
        {
            let writes = writes.as_array_mut().ok_or("no writes")?;
            if writes.len() > 1 {
                let last = writes.pop().expect("more than one");
                unprocessed.insert(table.clone(), serde_json::json!([last]));
            }
        }
        let body = body.to_string();
        request
            .headers_mut()
            .insert("content-length", body.len().to_string());
        *request.body_mut() = SdkBody::from(body);
        let answer = serde_json::json!({ "UnprocessedItems": unprocessed });
        cfg.interceptor_state()
            .store_put(TakenOut(answer.to_string()));
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(TakenOut(answer)) = cfg.load::<TakenOut>().cloned() {
            cfg.interceptor_state().unset::<TakenOut>();
            *context.response_mut().body_mut() = SdkBody::from(answer);
        }
        Ok(())
    }
}
