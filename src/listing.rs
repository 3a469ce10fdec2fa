//! `--list` (grouped, or `--json`) and `--explain TARGET`.

use std::fmt::Write;

use serde_json::json;

use crate::{catalog::Catalog, error::Result, settings::SETTINGS, taskfile::Task};

pub fn list(catalog: &Catalog, json: bool) -> String {
    if json {
        let tasks: Vec<_> = catalog
            .tasks
            .values()
            .map(|t| json!({ "name": t.name, "group": t.group, "description": t.description, "origin": t.origin.to_string() }))
            .collect();
        return serde_json::to_string_pretty(&json!({ "tasks": tasks })).expect("serializes") + "\n";
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
    out
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

pub fn explain(catalog: &Catalog, name: &str, json: bool) -> Result<String> {
    let task = catalog.get(name)?;
    let plan: Vec<&str> = catalog.plan(name)?.iter().map(|t| t.name.as_str()).collect();
    if json {
        let value = json!({
            "name": task.name,
            "description": task.description,
            "group": task.group,
            "deps": task.deps,
            "run_order": plan,
            "confirm": task.confirm,
            "timeout": task.timeout.map(|t| humantime::format_duration(t).to_string()),
            "vars": var_json(task),
            "origin": task.origin.to_string(),
            "path": task.path.display(),
            "script": task.script.path.display(),
            "overrides": task.overrides.iter().map(|(o, p)| json!({"origin": o.to_string(), "path": p.display()})).collect::<Vec<_>>(),
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
    for (origin, path) in &task.overrides {
        let _ = writeln!(out, "  overrides {origin} ({})", path.display());
    }
    if !task.deps.is_empty() {
        let _ = writeln!(out, "  deps:     {} (run order: {})", task.deps.join(", "), plan.join(" -> "));
    }
    if task.confirm {
        let _ = writeln!(out, "  confirm:  asks before running (--yes to skip)");
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
