//! The `bdia` binary, run as a user runs it.

mod client;
mod validate;
