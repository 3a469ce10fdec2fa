pub mod keycloak;
pub mod process;
pub mod restic;
