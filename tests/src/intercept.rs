//! Faults at an exact place, for tests that need one there rather than a share of
//! calls (see [`crate::faults`] for that): an SDK interceptor on one client that
//! refuses chosen calls of one operation before they are sent, or lets them reach
//! the emulator and then replaces the answer with a 500, as when an answer is lost
//! on the way back (the SDK then sends the call again).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeSerializationInterceptorContextMut,
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::batch_get_item::{BatchGetItemInput, BatchGetItemOutput};
use aws_sdk_dynamodb::operation::batch_write_item::{BatchWriteItemInput, BatchWriteItemOutput};
use aws_sdk_dynamodb::types::{KeysAndAttributes, WriteRequest};
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

/// Makes DynamoDB's first `BatchWriteItem` (or `BatchGetItem`) leave its last
/// write (or key) of each table unprocessed, as DynamoDB does under load: it is
/// taken out of the request before it is sent, and the answer names it in
/// `UnprocessedItems` (or `UnprocessedKeys`). Clones share the count.
#[derive(Debug, Clone)]
pub struct LeaveUnprocessed {
    operation: &'static str,
    calls: Arc<AtomicUsize>,
}

impl LeaveUnprocessed {
    pub fn writes() -> Self {
        Self {
            operation: "BatchWriteItem",
            calls: Arc::default(),
        }
    }

    pub fn keys() -> Self {
        Self {
            operation: "BatchGetItem",
            calls: Arc::default(),
        }
    }

    /// How many calls of the operation were made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// What was taken out of a request, for its answer to name as unprocessed.
#[derive(Debug, Clone)]
enum TakenOut {
    Writes(HashMap<String, Vec<WriteRequest>>),
    Keys(HashMap<String, KeysAndAttributes>),
}

impl aws_smithy_types::config_bag::Storable for TakenOut {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl Intercept for LeaveUnprocessed {
    fn name(&self) -> &'static str {
        "LeaveUnprocessed"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let ours = cfg
            .load::<Metadata>()
            .is_some_and(|m| m.name() == self.operation);
        if !ours || self.calls.fetch_add(1, Ordering::SeqCst) > 0 {
            return Ok(());
        }
        let input = context.input_mut();
        let taken = if let Some(write) = input.downcast_mut::<BatchWriteItemInput>() {
            let mut unprocessed = HashMap::new();
            for (table, writes) in write.request_items.get_or_insert_default() {
                if writes.len() > 1 {
                    unprocessed.insert(table.clone(), vec![writes.pop().expect("more than one")]);
                }
            }
            TakenOut::Writes(unprocessed)
        } else if let Some(get) = input.downcast_mut::<BatchGetItemInput>() {
            let mut unprocessed = HashMap::new();
            for (table, asked) in get.request_items.get_or_insert_default() {
                if asked.keys.len() > 1 {
                    let mut left = asked.clone();
                    left.keys = vec![asked.keys.pop().expect("more than one")];
                    unprocessed.insert(table.clone(), left);
                }
            }
            TakenOut::Keys(unprocessed)
        } else {
            return Err("not a batch operation".into());
        };
        cfg.interceptor_state().store_put(taken);
        Ok(())
    }

    fn modify_before_attempt_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(taken) = cfg.load::<TakenOut>().cloned() else {
            return Ok(());
        };
        let Some(Ok(output)) = context.output_or_error_mut() else {
            return Ok(());
        };
        cfg.interceptor_state().unset::<TakenOut>();
        match taken {
            TakenOut::Writes(writes) => {
                let output = output
                    .downcast_mut::<BatchWriteItemOutput>()
                    .ok_or("not a BatchWriteItem answer")?;
                output.unprocessed_items = Some(writes);
            }
            TakenOut::Keys(keys) => {
                let output = output
                    .downcast_mut::<BatchGetItemOutput>()
                    .ok_or("not a BatchGetItem answer")?;
                output.unprocessed_keys = Some(keys);
            }
        }
        Ok(())
    }
}
