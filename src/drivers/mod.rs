pub mod keycloak;
pub mod process;
