//! The `bdia` binary, run as a user runs it.

mod abuse_suites;
mod admin;
mod client;
mod common;
mod crash;
mod hygiene;
mod validate;
