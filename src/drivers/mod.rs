pub mod compose;
pub mod container_logs;
pub mod docker;
pub mod keycloak;
pub mod lifetime;
pub mod nft;
pub mod process;
pub mod restic;
