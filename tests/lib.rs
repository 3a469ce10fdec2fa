//! Integration tests: one binary, each module a part of the spec.

mod test;

mod argv;
mod backup;
mod cli;
mod compose;
mod concurrency;
mod containers;
#[cfg(feature = "fault-injection")]
mod crash;
mod create_client;
mod db_passwords;
mod definitions;
mod docker_driver;
mod fuzz_seeds;
mod hostile;
mod keycloak;
mod locks;
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
