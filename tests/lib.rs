//! Integration tests: one binary.

mod docker_driver;
mod support;
