//! Integration tests: one binary, each module a part of the spec.

mod test;

mod argv;
mod audit_trail;
mod backup;
mod bad_files;
mod chaos;
mod cli;
mod compose;
mod concurrency;
mod containers;
#[cfg(feature = "fault-injection")]
mod crash;
mod create_client;
mod db_passwords;
mod definitions;
mod delete_client;
mod docker_driver;
mod firewall;
mod fuzz_seeds;
mod hostile;
mod keycloak;
mod layers;
mod lifetime;
mod list_clients;
mod locks;
mod log_segmentation;
mod make;
mod networks;
mod notify;
mod operations;
mod operator;
mod plugins;
mod probe;
mod recovery;
mod rotation;
mod sandbox;
mod schedule;
mod setup_roles;
mod stacks;
mod status;
mod support;
mod traefik;
mod traffic_guard;
mod variables;
mod wordpress;
