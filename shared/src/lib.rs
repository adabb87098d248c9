//! hookline's shared library: the domain rules (pure functions) and the only
//! code that talks to AWS (`store` for DynamoDB, `queue` for SQS, `mail` for SES).

pub mod access;
pub mod account;
pub mod aws;
pub mod catalog;
pub mod config;
pub mod deadline;
pub mod email;
pub mod endpoint;
pub mod event;
pub mod event_type;
pub mod http;
pub mod ids;
pub mod isolation;
pub mod keys;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod model;
mod name;
pub mod net;
pub mod operational;
pub mod payload;
pub mod portal;
pub mod queue;
pub mod raise;
pub mod recover;
pub mod redrive;
pub mod registry;
pub mod retry;
pub mod settings;
pub mod signing;
pub mod store;
pub mod task;
pub mod text_template;
pub mod timefmt;

/// The `user-agent` of every delivery.
pub const USER_AGENT: &str = concat!("hookline/", env!("CARGO_PKG_VERSION"));
