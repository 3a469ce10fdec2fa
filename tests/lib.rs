//! Integration tests: one binary, each module a part of the spec.

mod test;

mod audit_trail;
mod cli;
mod create_client;
mod definitions;
mod delete_client;
mod fuzz_seeds;
mod hostile;
mod keycloak;
mod list_clients;
mod log_segmentation;
mod make;
mod sandbox;
mod setup_roles;
mod support;
mod variables;
