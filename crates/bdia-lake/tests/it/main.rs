//! Integration tests of the hit lake: real Parquet on a local object store,
//! and on an S3 server (`s3`).

mod common;
mod delta;
mod duckdb;
mod exactly_once;
mod props;
mod reader;
mod roundtrip;
mod s3;
