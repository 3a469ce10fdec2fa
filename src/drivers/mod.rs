pub mod docker;
pub mod keycloak;
pub mod lifetime;
pub mod process;
pub mod restic;
