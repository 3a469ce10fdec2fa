//! Test fixtures shared by the integration tests.

pub mod docker;
pub mod fake_keycloak;
pub mod state;
