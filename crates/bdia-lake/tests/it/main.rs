//! Integration tests of the hit lake: real Parquet on a local object store.

mod common;
mod delta;
mod duckdb;
mod exactly_once;
mod props;
mod reader;
mod roundtrip;
