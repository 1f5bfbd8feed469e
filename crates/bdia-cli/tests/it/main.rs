//! The `bdia` binary, run as a user runs it.

mod abuse_auth;
mod abuse_core;
mod abuse_disk;
mod abuse_net;
mod abuse_rows;
mod abuse_suites;
mod admin;
mod api_fuzz;
mod client;
mod common;
mod crash;
mod devices;
mod groups;
mod hygiene;
mod lake_ops;
mod multinode;
mod single_hits;
mod storage_s3;
mod validate;
