//! Integration tests of bdia-store.

mod blob;
mod postgres;
mod sqlite;
