//! Integration tests.
mod support;
