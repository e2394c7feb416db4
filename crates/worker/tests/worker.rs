//! Integration tests of sysmgr-worker, one binary with a module per area (see the style guide).

mod activation;
mod drain;
mod support;
mod third_party;
