//! Integration tests: one binary, each module a part of the spec.

mod test;

mod cli;
mod create_client;
mod definitions;
mod make;
mod plugins;
mod sandbox;
mod variables;
