//! `secrets::` — per-client secrets, generated from the OS CSPRNG and kept in a 0600 env
//! file. Values never pass through scripts' output: `ensure` only reports key names.
//!
//! | function | mutates | returns |
//! |---|---|---|
//! | `secrets::ensure(path, [names])` | yes | names added; existing values are never changed |
//! | `secrets::names(path)` | no | the keys present, `[]` when the file is missing |
//! | `secrets::generate()` | no | a fresh url-safe random value (32 bytes, base64url, no padding) |

use std::{fs, rc::Rc};

use anyhow::{Context, Result};
use base64::Engine as _;
use rhai::{Array, Dynamic, Module};

use super::{Host, ScriptResult, fs::write_file, script_error};
use crate::envfile;

/// File mode of every secrets file.
pub const SECRETS_MODE: u32 = 0o600;

/// 32 bytes from the OS CSPRNG, url-safe base64 without padding (43 characters).
pub fn generate() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the OS random generator failed: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Reads a secrets file; a missing file is empty.
pub fn read(path: &std::path::Path) -> Result<indexmap::IndexMap<String, String>> {
    match fs::read_to_string(path) {
        Ok(text) => envfile::parse(&text).with_context(|| format!("in {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();

    let h = host.clone();
    module.set_native_fn("ensure", move |path: &str, names: Array| -> ScriptResult<Array> {
        let file = h.roots.confine(path).map_err(script_error)?;
        let mut values = read(&file).map_err(script_error)?;
        let mut added = Vec::new();
        for name in names {
            let name = name.to_string();
            crate::validate::secret_name(&name).map_err(|e| format!("invalid secret name: {e}"))?;
            if !values.contains_key(&name) {
                values.insert(name.clone(), generate().map_err(script_error)?);
                added.push(name);
            }
        }
        let text = envfile::render(values.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(script_error)?;
        let detail = if added.is_empty() { "no new keys".to_string() } else { format!("new keys {}", added.join(" ")) };
        write_file(&h, path, text.as_bytes(), SECRETS_MODE, &detail)?;
        Ok(added.into_iter().map(Dynamic::from).collect())
    });

    let h = host.clone();
    module.set_native_fn("names", move |path: &str| -> ScriptResult<Array> {
        let file = h.roots.confine(path).map_err(script_error)?;
        Ok(read(&file).map_err(script_error)?.into_keys().map(Dynamic::from).collect())
    });

    module.set_native_fn("generate", || -> ScriptResult<String> { generate().map_err(script_error) });

    module
}
