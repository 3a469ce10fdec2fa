//! agency: a Makefile-compatible task runner for isolated tenants on a shared Docker host.

pub mod drivers;
pub mod subnet;
