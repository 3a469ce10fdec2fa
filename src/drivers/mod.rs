pub mod docker;
pub mod process;
