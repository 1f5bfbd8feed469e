//! Integration tests of bdia-server: real HTTP against a server bound to
//! 127.0.0.1:0 with a temp data dir, and router-level requests without a
//! socket (`router`).

mod auth;
mod common;
mod console;
mod conversion;
mod groups;
mod lifecycle;
mod lookups;
mod preview;
mod processing;
mod reports;
mod router;
mod single_hits;
mod tenancy;
mod upload;
mod webhooks;
