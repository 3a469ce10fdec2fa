//! agency: a Makefile-compatible task runner that provisions and audits isolated tenants
//! on a shared Docker host. TOML tasks with Rhai bodies call the host modules in `host/`.

pub mod audit;
pub mod backup;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod complete;
pub mod deploy;
pub mod drivers;
pub mod effects;
pub mod envfile;
pub mod error;
pub mod filecheck;
pub mod firewall;
pub mod fsutil;
pub mod host;
pub mod ingress;
pub mod inventory;
pub mod isolation;
pub mod layout;
pub mod listing;
pub mod lock;
pub mod makefile;
pub mod metrics;
pub mod notify;
pub mod output;
pub mod plugin;
pub mod realm;
pub mod recovery;
pub mod report;
pub mod rotation;
pub mod run;
pub mod runner;
pub mod schedule;
pub mod script;
pub mod settings;
pub mod stack;
pub mod stack_status;
pub mod subnet;
pub mod suggest;
pub mod taskfile;
pub mod validate;
pub mod vars;
pub mod yaml;

pub use run::run;
