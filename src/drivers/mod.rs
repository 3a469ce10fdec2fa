pub mod process;
pub mod restic;
