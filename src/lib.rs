//! agency: a Makefile-compatible task runner that provisions and audits isolated tenants
//! on a shared Docker host. TOML tasks with Rhai bodies call the host modules in `host/`.
//!
//! Layers, each importing only those below it:
//! - `task/`: loading, variables, the script engine, plugins, the runner, locks, listing;
//! - `host/`: the Rhai bindings, one module per script namespace (Dynamic <-> Rust only);
//! - `tenant/`: the tenant domain (policy, layout, subnets, networks, isolation, backup,
//!   secrets, rotation, realm, checks, stack, firewall, audit);
//! - `effects/`: the one door every mutation and dry-run decision passes (a plan's files are
//!   what later reads see), and the output;
//! - `drivers/`: external programs (docker, compose, restic, curl for Keycloak, nft);
//! - `format/`: text formats and values (YAML, env files, IPv4 nets, validators);
//! - `builtin`: the repository's tasks, plugins and stacks compiled in (below every layer).
//! - `fsutil`, `parallel`: file and thread helpers (below every layer).

pub(crate) mod builtin;
pub(crate) mod cli;
pub mod drivers;
pub mod effects;
pub(crate) mod error;
pub mod format;
pub(crate) mod fsutil;
pub(crate) mod host;
pub(crate) mod parallel;
pub(crate) mod run;
pub mod task;
pub mod tenant;

pub use run::run;
