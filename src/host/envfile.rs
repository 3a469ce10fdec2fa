//! `envfile::` — `KEY='value'` files, bash-sourceable and usable as compose `env_file`.
//!
//! | function | mutates | returns |
//! |---|---|---|
//! | `envfile::write(path, map, mode)` | yes | outcome; keys in map order (sorted), values never reported |
//! | `envfile::read(path)` | no | map of KEY → value |

use std::rc::Rc;

use rhai::{Dynamic, INT, Map, Module};

use super::{Host, ScriptResult, fs::write_file, mode_arg, script_error};
use crate::format::envfile;

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();

    let h = host.clone();
    module.set_native_fn("write", move |path: &str, values: Map, mode: INT| -> ScriptResult<String> {
        let entries: Vec<(String, String)> = values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let text = envfile::render(entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(script_error)?;
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        write_file(&h, path, text.as_bytes(), mode_arg(mode)?, &format!("keys {}", keys.join(" ")))
            .map(|o| o.as_str().into())
    });

    let h = host.clone();
    module.set_native_fn("read", move |path: &str| -> ScriptResult<Map> {
        let path = h.roots.confine(path).map_err(script_error)?;
        let entries = envfile::parse_read(&path, h.effects.read(&path)).map_err(script_error)?;
        Ok(entries.into_iter().map(|(k, v)| (k.into(), Dynamic::from(v))).collect())
    });

    module
}
