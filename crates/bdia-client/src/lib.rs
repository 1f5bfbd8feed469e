//! The client side of bdia: tools that make the right way the easy way.
//!
//! - [`prepare`]: turn arbitrary CSV exports (unsorted, mixed visitors, any
//!   size) into correct batch files: one visitor group per visitor, rows in
//!   time order, files under the limits, gzipped, listed in a manifest.
//! - [`api`]: a typed HTTP client of the API, with token renewal.
//! - [`upload`]: one file at a time per visitor group, groups in parallel,
//!   idempotency keys from content hashes, retries with backoff and jitter,
//!   progress saved in the manifest.

pub mod api;
pub mod prepare;
pub mod upload;
