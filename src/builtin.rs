//! The repository's `tasks/`, `plugins/` and `stacks/` trees, compiled into the binary by
//! build.rs: the task catalog and the stacks read them where the site has no file of its own.

include!(concat!(env!("OUT_DIR"), "/builtin_files.rs"));

/// The text of the built-in file at `key` (a path like `stacks/web/compose.yml`).
pub fn file(key: &str) -> Option<&'static str> {
    BUILTIN_FILES.iter().find(|(k, _)| *k == key).map(|(_, text)| *text)
}
