//! The tenant domain: where a client's files live, its subnets and networks, isolation,
//! backups, secrets and their rotation, its Keycloak realm, its stack, the shared ingress and
//! firewall, and the checks and reports of status.

pub mod audit;
pub mod backup;
pub mod check;
pub mod client_data;
pub mod context;
pub mod data_restore;
pub mod databases;
pub mod deploy;
pub mod dump_verify;
pub mod filecheck;
pub mod firewall;
pub mod ingress;
pub mod inventory;
pub mod isolation;
pub mod layout;
pub mod logs;
pub mod metrics;
pub mod networks;
pub mod notify;
pub mod policy;
pub mod probe;
pub mod realm;
pub mod recovery;
pub mod report;
pub mod repository;
pub mod rotation;
pub mod schedule;
pub mod secrets;
pub mod settings;
pub mod stack;
pub mod stack_run;
pub mod stack_status;
pub mod subnet;
pub mod swarm;
