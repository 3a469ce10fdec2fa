//! Integration tests: one binary, each module a part of the spec.

mod test;

mod backup;
mod cli;
mod create_client;
mod definitions;
mod fuzz_seeds;
mod hostile;
mod make;
mod sandbox;
mod variables;
