//! Integration tests: one binary, each module a part of the spec.

mod test;

mod backup;
mod cli;
mod compose;
mod containers;
mod create_client;
mod db_passwords;
mod definitions;
mod docker_driver;
mod fuzz_seeds;
mod hostile;
mod keycloak;
mod make;
mod networks;
mod plugins;
mod rotation;
mod sandbox;
mod setup_roles;
mod status;
mod support;
mod traefik;
mod variables;
