//! Integration tests of bdia-store.

mod blob;
mod sqlite;
