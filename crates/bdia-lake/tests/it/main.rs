//! Integration tests of the hit lake: real Parquet on a local object store.

mod common;
mod duckdb;
mod exactly_once;
mod migrate;
mod props;
mod reader;
mod roundtrip;
