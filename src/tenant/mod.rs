//! The tenant domain: where a client's files live, its subnets and networks, isolation,
//! backups, secrets and their rotation, its Keycloak realm, its stack, the shared ingress and
//! firewall, and the checks and reports of status.

pub(crate) mod audit;
pub(crate) mod backup;
pub(crate) mod check;
pub(crate) mod client_data;
pub(crate) mod context;
pub(crate) mod data_restore;
pub(crate) mod databases;
pub(crate) mod deploy;
pub(crate) mod dump_verify;
pub(crate) mod filecheck;
pub mod firewall;
pub(crate) mod ingress;
pub(crate) mod inventory;
pub(crate) mod isolation;
pub mod layout;
pub(crate) mod logs;
pub(crate) mod metrics;
pub mod networks;
pub(crate) mod notify;
pub(crate) mod policy;
pub(crate) mod probe;
pub mod realm;
pub(crate) mod recovery;
pub(crate) mod report;
pub(crate) mod repository;
pub(crate) mod rotation;
pub(crate) mod schedule;
pub(crate) mod secrets;
pub(crate) mod settings;
pub(crate) mod stack;
pub(crate) mod stack_run;
pub(crate) mod stack_status;
pub mod subnet;
pub(crate) mod swarm;
