//! Tasks and their runs: task files and the catalog, variables, the sandboxed script engine,
//! plugins, the runner with its locks, listing, the Makefile and shell completion.

pub mod catalog;
pub mod complete;
pub mod listing;
pub mod lock;
pub mod makefile;
pub mod plugin;
pub mod runner;
pub mod script;
pub mod taskfile;
pub mod vars;
