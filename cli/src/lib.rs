//! The `hookline` command line: the local runtime and the operator's commands.

pub mod dlq;
pub mod emulator;
pub mod local;
pub mod manage;
pub mod process;
pub mod verify;
