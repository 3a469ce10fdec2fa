//! `--list` (grouped, or `--json`) and `--explain TARGET`.

use std::fmt::Write;

use serde_json::json;

use crate::{
    error::Result,
    task::catalog::Catalog,
    task::plugin::{self, Plugin},
    task::taskfile::{LockScope, Origin, Task},
    tenant::settings::SETTINGS,
};

pub fn list(catalog: &Catalog, json: bool) -> String {
    if json {
        let tasks: Vec<_> = catalog
            .tasks
            .values()
            .map(|t| json!({ "name": t.name, "group": t.group, "description": t.description, "origin": t.origin.to_string() }))
            .collect();
        let plugins: Vec<_> = catalog.plugins.iter().map(plugin_json).collect();
        return serde_json::to_string_pretty(&json!({ "tasks": tasks, "plugins": plugins })).expect("serializes")
            + "\n";
    }
    let mut groups: Vec<&str> = catalog.tasks.values().map(|t| t.group.as_str()).collect();
    groups.sort();
    groups.dedup();
    let width = catalog.tasks.keys().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for group in groups {
        let _ = writeln!(out, "{group}:");
        for task in catalog.tasks.values().filter(|t| t.group == group) {
            let _ = writeln!(out, "    {:width$}  {}", task.name, task.description);
        }
    }
    if !catalog.plugins.is_empty() {
        let _ = writeln!(out, "\nplugins (in loading order; hooks run in this order):");
        let width = catalog.plugins.iter().map(|p| p.name.len()).max().unwrap_or(0);
        for plugin in &catalog.plugins {
            let kind = if matches!(plugin.origin, Origin::Plugin { builtin: true, .. }) { "built-in" } else { "site" };
            let _ = writeln!(out, "    {:width$}  {} ({kind}, {})", plugin.name, plugin.description, plugin.version);
        }
    }
    out
}

fn plugin_json(plugin: &Plugin) -> serde_json::Value {
    json!({
        "name": plugin.name,
        "version": plugin.version,
        "description": plugin.description,
        "requires_agency": plugin.requires_agency,
        "origin": plugin.origin.to_string(),
        "path": plugin.dir.display(),
        "hooks": plugin.hooks.as_ref().map(|h| h.path.display()),
        "tasks": plugin.task_names,
        "replaces": plugin.replaces.as_ref().map(|p| p.display()),
    })
}

/// The hooks plugins define for `task`, in the order they run: (phase, plugin, file).
fn task_hooks<'a>(catalog: &'a Catalog, task: &str) -> Result<Vec<(plugin::Phase, &'a Plugin)>> {
    let mut hooks = Vec::new();
    for phase in [plugin::Phase::Before, plugin::Phase::After] {
        for plugin in &catalog.plugins {
            if plugin.hooks_for(task)?.contains(&phase) {
                hooks.push((phase, plugin));
            }
        }
    }
    Ok(hooks)
}

fn explain_plugin(catalog: &Catalog, plugin: &Plugin, json: bool) -> Result<String> {
    // Hook-shaped functions, and whether a task of this catalog would call them.
    let hooked: Vec<(String, bool)> = plugin
        .functions()?
        .into_iter()
        .filter(|f| f.starts_with("before_") || f.starts_with("after_"))
        .map(|f| {
            let known = catalog.tasks.keys().any(|task| {
                [plugin::Phase::Before, plugin::Phase::After].iter().any(|phase| plugin::hook_name(*phase, task) == f)
            });
            (f, known)
        })
        .collect();
    if json {
        let mut value = plugin_json(plugin);
        value["hook_functions"] = json!(hooked.iter().filter(|(_, known)| *known).map(|(f, _)| f).collect::<Vec<_>>());
        return Ok(serde_json::to_string_pretty(&value).expect("serializes") + "\n");
    }
    let mut out = String::new();
    let _ = writeln!(out, "plugin {} {} - {}", plugin.name, plugin.version, plugin.description);
    let _ = writeln!(out, "  loaded:   {} ({})", plugin.origin, plugin.dir.display());
    if let Some(replaced) = &plugin.replaces {
        let _ = writeln!(out, "  replaces built-in plugin {} ({})", plugin.name, replaced.display());
    }
    let _ = writeln!(out, "  requires: agency {}", plugin.requires_agency);
    let position = catalog.plugins.iter().position(|p| p.name == plugin.name).unwrap_or(0) + 1;
    let _ = writeln!(out, "  order:    {position} of {} (hooks run in loading order)", catalog.plugins.len());
    if let Some(hooks) = &plugin.hooks {
        let shown: Vec<String> = hooked
            .iter()
            .map(|(f, known)| if *known { f.clone() } else { format!("{f} (no such task here)") })
            .collect();
        let shown = if shown.is_empty() { "none".to_string() } else { shown.join(", ") };
        let _ = writeln!(out, "  hooks:    {shown} ({})", hooks.path.display());
    }
    if !plugin.task_names.is_empty() {
        let _ = writeln!(out, "  tasks:    {}", plugin.task_names.join(", "));
    }
    Ok(out)
}

fn var_json(task: &Task) -> Vec<serde_json::Value> {
    task.vars
        .iter()
        .map(|(name, spec)| {
            json!({
                "name": name,
                "required": spec.required,
                "default": spec.default,
                "kind": spec.kind.map(|k| k.name()),
                "pattern": spec.pattern,
                "help": spec.help,
                "secret": spec.secret,
            })
        })
        .collect()
}

/// `--explain NAME`: a task, or else a plugin of that name.
pub fn explain(catalog: &Catalog, name: &str, json: bool) -> Result<String> {
    if !catalog.tasks.contains_key(name)
        && let Some(plugin) = catalog.plugin(name)
    {
        return explain_plugin(catalog, plugin, json);
    }
    let task = catalog.get(name)?;
    let hooks = task_hooks(catalog, name)?;
    let plan: Vec<&str> = catalog.plan(name)?.iter().map(|t| t.name.as_str()).collect();
    if json {
        let value = json!({
            "name": task.name,
            "description": task.description,
            "group": task.group,
            "deps": task.deps,
            "run_order": plan,
            "confirm": task.confirm,
            "lock": task.lock.as_str(),
            "lock_when": task.lock_when,
            "timeout": task.timeout.map(|t| humantime::format_duration(t).to_string()),
            "vars": var_json(task),
            "origin": task.origin.to_string(),
            "path": task.path.display(),
            "script": task.script.path.display(),
            "overrides": task.overrides.iter().map(|(o, p)| json!({"origin": o.to_string(), "path": p.display()})).collect::<Vec<_>>(),
            "hooks": hooks.iter().map(|(phase, p)| json!({
                "function": plugin::hook_name(*phase, &task.name),
                "plugin": p.name,
                "origin": p.origin.to_string(),
                "path": p.hooks.as_ref().map(|h| h.path.display()),
            })).collect::<Vec<_>>(),
            "settings": SETTINGS.iter().map(|s| json!({"name": s.name, "default": s.default, "help": s.help})).collect::<Vec<_>>(),
        });
        return Ok(serde_json::to_string_pretty(&value).expect("serializes") + "\n");
    }
    let mut out = String::new();
    let _ = writeln!(out, "{} - {}", task.name, task.description);
    let _ = writeln!(out, "  group:    {}", task.group);
    let _ = writeln!(out, "  loaded:   {} ({})", task.origin, task.path.display());
    if task.script.path != task.path {
        let _ = writeln!(out, "  script:   {}", task.script.path.display());
    }
    for (origin, path) in task.overrides.iter().rev() {
        let _ = writeln!(out, "  overrides {origin} ({})", path.display());
    }
    for (phase, plugin) in &hooks {
        let file = plugin.hooks.as_ref().map(|h| h.path.display()).unwrap_or_default();
        let function = plugin::hook_name(*phase, &task.name);
        let _ = writeln!(out, "  hook:     {function} from {} ({file})", plugin.origin);
    }
    if !task.deps.is_empty() {
        let _ = writeln!(out, "  deps:     {} (run order: {})", task.deps.join(", "), plan.join(" -> "));
    }
    if task.confirm {
        let _ = writeln!(out, "  confirm:  asks before running (--yes to skip)");
    }
    let lock = match task.lock {
        LockScope::Client => "the client's (all clients' when CLIENT_ID is empty)",
        LockScope::All => "all clients'",
        LockScope::None => "none",
    };
    match &task.lock_when {
        Some(var) => {
            let _ = writeln!(out, "  lock:     {lock} when {var} is true, else none");
        }
        None => {
            let _ = writeln!(out, "  lock:     {lock}");
        }
    }
    if let Some(timeout) = task.timeout {
        let _ = writeln!(out, "  timeout:  {}", humantime::format_duration(timeout));
    }
    if task.vars.is_empty() {
        let _ = writeln!(out, "  variables: none");
    } else {
        let _ = writeln!(out, "  variables:");
        for (name, spec) in &task.vars {
            let mut facts = vec![if spec.required { "required".to_string() } else { "optional".to_string() }];
            if let Some(default) = &spec.default {
                facts.push(format!("default {default:?}"));
            }
            if let Some(kind) = spec.kind {
                facts.push(format!("kind {}", kind.name()));
            }
            if let Some(pattern) = &spec.pattern {
                facts.push(format!("pattern {pattern}"));
            }
            if spec.secret {
                facts.push("secret".into());
            }
            let help = spec.help.as_deref().map(|h| format!(" - {h}")).unwrap_or_default();
            let _ = writeln!(out, "    {name} ({}){help}", facts.join(", "));
        }
    }
    let _ = writeln!(out, "  settings (any task; VAR=VALUE or environment):");
    for setting in SETTINGS {
        let _ = writeln!(out, "    {} (default {:?}) - {}", setting.name, setting.default, setting.help);
    }
    Ok(out)
}
