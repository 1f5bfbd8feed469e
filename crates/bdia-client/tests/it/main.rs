//! Integration tests of the client tools, on real files.

mod prepare;
