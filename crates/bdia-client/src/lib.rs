//! The client side of bdia: tools that make the right way the easy way.
//!
//! - [`prepare`]: turn arbitrary CSV exports (unsorted, mixed visitors, any
//!   size) into correct batch files: one visitor group per visitor, rows in
//!   time order, files under the limits, gzipped, listed in a manifest.

pub mod prepare;
