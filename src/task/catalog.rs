//! All tasks the runner knows: built-in ones compiled in, overridden by the site directory.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use crate::{
    builtin::{self, BUILTIN_FILES},
    error::{Error, Result},
    format::suggest::did_you_mean_task,
    task::plugin::Plugin,
    task::taskfile::{Origin, SourcePath, Task},
};

/// Reads a built-in or on-disk source file.
pub fn read_source(path: &SourcePath) -> Option<String> {
    match path {
        SourcePath::Embedded(key) => builtin::file(key).map(str::to_string),
        SourcePath::Disk(path) => fs::read_to_string(path).ok(),
    }
}

#[derive(Debug)]
pub struct Catalog {
    pub tasks: BTreeMap<String, Task>,
    /// Plugins in loading order, which is also the order their hooks run in.
    pub plugins: Vec<Plugin>,
    /// Where site tasks, plugins and stacks come from.
    pub site_dir: PathBuf,
}

impl Catalog {
    /// Loads, each layer over the ones before it (README "Plugins" documents this order):
    /// 1. built-in tasks (the repo's `tasks/`),
    /// 2. built-in plugins by name, with their tasks,
    /// 3. site plugins by name (one named like a built-in plugin replaces it), with their tasks,
    /// 4. site tasks (`<site>/tasks/*.toml`): the site's last word.
    ///
    /// A task of a later layer replaces one of the same name, and `--explain` shows what it
    /// replaced; two plugins defining the same task is a definition error naming both.
    pub fn load(site_dir: &Path) -> Result<Self> {
        let mut catalog = Self { tasks: BTreeMap::new(), plugins: Vec::new(), site_dir: site_dir.to_path_buf() };
        for (key, text) in BUILTIN_FILES {
            if let Some(name) = key.strip_prefix("tasks/").and_then(|f| f.strip_suffix(".toml"))
                && !name.contains('/')
            {
                let task =
                    Task::parse(name, text, SourcePath::Embedded(key.to_string()), Origin::Builtin, read_source)?;
                catalog.insert(task);
            }
        }

        let mut site_plugins = Plugin::from_dir(&site_dir.join("plugins"))?;
        let mut layers: Vec<(Plugin, Vec<Task>)> = Vec::new();
        for (plugin, tasks) in Plugin::builtin()? {
            match site_plugins.iter_mut().find(|(site, _)| site.name == plugin.name) {
                Some((site, _)) => site.replaces = Some(plugin.dir.clone()),
                None => layers.push((plugin, tasks)),
            }
        }
        layers.append(&mut site_plugins);
        for (plugin, tasks) in layers {
            for task in tasks {
                catalog.insert_plugin_task(task)?;
            }
            catalog.plugins.push(plugin);
        }

        for path in toml_files(&site_dir.join("tasks"))? {
            let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            let text = fs::read_to_string(&path)
                .map_err(|e| Error::usage(format!("cannot read task file {}: {e}", path.display())))?;
            let task = Task::parse(&name, &text, SourcePath::Disk(path.clone()), Origin::Site, read_source)?;
            catalog.insert(task);
        }
        catalog.check_deps()?;
        Ok(catalog)
    }

    /// Adds a plugin's task; another plugin's task of the same name is a conflict.
    fn insert_plugin_task(&mut self, task: Task) -> Result<()> {
        if let Some(existing) = self.tasks.get(&task.name)
            && let (Origin::Plugin { name: first, .. }, Origin::Plugin { name: second, .. }) =
                (&existing.origin, &task.origin)
        {
            return Err(Error::usage(format!(
                "task {} is defined by two plugins, {first} and {second}; remove one, or override the task in the site's tasks/ directory",
                task.name
            ))
            .with_detail(format!("  --> {}\n  --> {}", existing.path.display(), task.path.display())));
        }
        self.insert(task);
        Ok(())
    }

    /// Adds a task; one of the same name is replaced and remembered as overridden.
    pub fn insert(&mut self, mut task: Task) {
        if let Some(previous) = self.tasks.remove(&task.name) {
            task.overrides = previous.overrides;
            task.overrides.push((previous.origin, previous.path));
        }
        self.tasks.insert(task.name.clone(), task);
    }

    pub fn plugin(&self, name: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.name == name)
    }

    pub fn get(&self, name: &str) -> Result<&Task> {
        self.tasks.get(name).ok_or_else(|| {
            let hint = did_you_mean_task(name, self.tasks.keys().map(String::as_str))
                .map(|s| format!("; did you mean {s}?"))
                .unwrap_or_else(|| "; `agency --list` shows them".into());
            Error::usage(format!("unknown task {name}{hint}"))
        })
    }

    fn check_deps(&self) -> Result<()> {
        for task in self.tasks.values() {
            for dep in &task.deps {
                if !self.tasks.contains_key(dep) {
                    return Err(Error::usage(format!("task {} depends on unknown task {dep}", task.name))
                        .with_detail(format!("  --> {}", task.path.display())));
                }
            }
            self.plan(&task.name)?;
        }
        Ok(())
    }

    /// The tasks to run for `target`: its deps first (depth first, each once), then itself.
    pub fn plan(&self, target: &str) -> Result<Vec<&Task>> {
        fn visit<'a>(
            catalog: &'a Catalog,
            name: &str,
            stack: &mut Vec<String>,
            order: &mut Vec<&'a Task>,
        ) -> Result<()> {
            if let Some(start) = stack.iter().position(|n| n == name) {
                let mut cycle = stack[start..].to_vec();
                cycle.push(name.to_string());
                return Err(Error::usage(format!("dependency cycle: {}", cycle.join(" -> "))));
            }
            if order.iter().any(|t| t.name == name) {
                return Ok(());
            }
            let task = catalog.get(name)?;
            stack.push(name.to_string());
            for dep in &task.deps {
                visit(catalog, dep, stack, order)?;
            }
            stack.pop();
            order.push(task);
            Ok(())
        }
        let mut order = Vec::new();
        visit(self, target, &mut Vec::new(), &mut order)?;
        Ok(order)
    }
}

/// `*.toml` files of a directory, sorted; a missing directory holds none.
pub fn toml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::usage(format!("cannot read {}: {e}", dir.display()))),
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compiled_in_pattern_is_a_regex() {
        let catalog = Catalog::load(Path::new("/nonexistent-agency-site")).unwrap();
        let patterns: Vec<(&str, &str, &str)> = catalog
            .tasks
            .values()
            .filter(|task| task.origin.is_compiled_in())
            .flat_map(|task| {
                task.vars
                    .iter()
                    .filter_map(|(var, spec)| Some((task.name.as_str(), var.as_str(), spec.pattern.as_deref()?)))
            })
            .collect();
        assert!(patterns.len() >= 20, "{patterns:?}");
        for (task, var, pattern) in patterns {
            assert!(regex_syntax::Parser::new().parse(pattern).is_ok(), "{task} {var}: {pattern}");
        }
    }
}
