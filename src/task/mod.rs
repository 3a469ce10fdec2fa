//! Tasks and their runs: task files and the catalog, variables, the sandboxed script engine,
//! plugins, the runner with its locks, listing, the Makefile and shell completion.

pub(crate) mod catalog;
pub(crate) mod complete;
pub(crate) mod listing;
pub mod lock;
pub(crate) mod makefile;
pub(crate) mod plugin;
pub(crate) mod runner;
pub(crate) mod script;
pub mod taskfile;
pub mod vars;
