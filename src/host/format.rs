//! `format::` — render script data as YAML or JSON, with every string escaped, so hostile
//! values cannot change a generated file's structure.
//!
//! | function | returns |
//! |---|---|
//! | `format::yaml(value)` | YAML text (strings double-quoted, keys sorted) |
//! | `format::json(value)` | pretty JSON text |

use rhai::{Dynamic, Module};

use super::ScriptResult;

pub fn create_module() -> Module {
    let mut module = Module::new();
    module.set_native_fn("yaml", |value: Dynamic| -> ScriptResult<String> {
        let json: serde_json::Value = rhai::serde::from_dynamic(&value)?;
        Ok(crate::yaml::render(&json))
    });
    module.set_native_fn("json", |value: Dynamic| -> ScriptResult<String> {
        let json: serde_json::Value = rhai::serde::from_dynamic(&value)?;
        Ok(serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n")
    });
    module
}
