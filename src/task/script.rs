//! The Rhai engine and its sandbox (SPEC §3): operation and call-depth limits, an optional
//! wall-clock deadline per task, no `eval`, strict variables, imports only from beside the
//! importing script, and no system access except through host modules.

use std::{
    cell::RefCell,
    collections::HashMap,
    rc::Rc,
    time::{Duration, Instant},
};

use indexmap::IndexMap;
use rhai::{AST, Dynamic, Engine, EvalAltResult, Map, Module, ModuleResolver, ParseError, Position, Scope, Shared};

use crate::{
    drivers::lifetime,
    error::{Error, SourceSpan},
    format::validate::{Kind, parse_bool},
    host::{self, Host},
    task::catalog::read_source,
    task::taskfile::{Script, SourcePath, Task},
};

const MAX_CALL_LEVELS: usize = 64;
/// Expression nesting limits, at the top level and inside functions.
pub const MAX_EXPR_DEPTH: usize = 128;
pub const MAX_FUNCTION_EXPR_DEPTH: usize = 64;

/// Per-task resource limits from the task file.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Option<Duration>,
    pub max_operations: u64,
}

/// A script compiled so far: its file, the line it starts at in that file, and the directory
/// its imports must stay inside (the top-level script's own directory, inherited by modules).
#[derive(Clone)]
struct SourceEntry {
    path: SourcePath,
    line_offset: usize,
    root: SourcePath,
}

/// Scripts compiled so far, by the source name Rhai reports in errors and import requests.
type SourceTable = Rc<RefCell<HashMap<String, SourceEntry>>>;

pub struct ScriptEngine {
    engine: Engine,
    sources: SourceTable,
}

impl ScriptEngine {
    /// Builds the sandboxed engine with every host module registered.
    pub fn new(host: &Rc<Host>) -> Self {
        let mut engine = Engine::new();
        engine.set_max_call_levels(MAX_CALL_LEVELS);
        engine.set_max_expr_depths(MAX_EXPR_DEPTH, MAX_FUNCTION_EXPR_DEPTH);
        // The size limits stop a value that doubles each operation (`s += s`, `a += a`), which
        // the operation limit and the timeout cannot: memory runs out in 30 operations. With
        // any limit set Rhai walks a value when it is returned or changed; status at 5,000
        // replayed clients spends ≈1% of its CPU in those walks and 0.02% comparing the
        // array/map sizes (perf), so dropping those two would save nothing: they stay.
        engine.set_max_string_size(16 * 1024 * 1024);
        engine.set_max_array_size(1_000_000);
        engine.set_max_map_size(1_000_000);
        engine.set_max_modules(64);
        engine.set_strict_variables(true);
        engine.disable_symbol("eval");

        engine.on_progress(move |operations| {
            // Reading the clock is cheap but not free: look every 4096 operations.
            if operations % 4096 != 0 {
                None
            } else if let Some(signal) = lifetime::interrupted() {
                Some(Dynamic::from(lifetime::interrupted_error(signal).to_string()))
            } else if lifetime::deadline().is_some_and(|d| Instant::now() > d) {
                Some(Dynamic::from("the task's timeout expired"))
            } else {
                None
            }
        });

        let output = host.output.clone();
        engine.on_print(move |text| output.script_print(text));
        let output = host.output.clone();
        engine.on_debug(move |text, _, _| output.verbose(text));

        let sources: SourceTable = Rc::default();
        engine.set_module_resolver(ConfinedResolver { sources: sources.clone() });
        host::register(&mut engine, host);
        Self { engine, sources }
    }

    /// Compiles a task script with its variables known (strict variables need them).
    pub fn compile(&self, script: &Script, vars: &Map) -> Result<AST, Error> {
        let scope = task_scope(vars);
        let name = script.path.display();
        let entry =
            SourceEntry { path: script.path.clone(), line_offset: script.line_offset, root: script.path.parent() };
        self.sources.borrow_mut().insert(name.clone(), entry);
        let mut ast = self
            .engine
            .compile_with_scope(&scope, &script.text)
            .map_err(|e| parse_error(&name, &script.text, script.line_offset, &e))?;
        ast.set_source(name);
        Ok(ast)
    }

    /// Runs a compiled task script; the value it ends with is the task's result.
    pub fn run(&mut self, ast: &AST, vars: &Map, limits: Limits) -> Result<Dynamic, Error> {
        let mut scope = task_scope(vars);
        let timeout = limits.timeout;
        self.engine.set_max_operations(limits.max_operations);
        lifetime::set_deadline(timeout.map(|t| Instant::now() + t));
        let result = self.engine.eval_ast_with_scope::<Dynamic>(&mut scope, ast);
        lifetime::set_deadline(None);
        result.map_err(|e| self.runtime_error(&e, ast.source()))
    }

    /// Calls a hook function (`before_<task>`, `after_<task>`) if the AST defines it, under
    /// the task's limits. The script's top level (its `import`s) runs first.
    pub fn call_hook(&mut self, ast: &AST, name: &str, args: Vec<Dynamic>, limits: Limits) -> Result<bool, Error> {
        if !ast.iter_functions().any(|f| f.name == name && f.params.len() == args.len()) {
            return Ok(false);
        }
        let mut scope = Scope::new();
        self.engine.set_max_operations(limits.max_operations);
        lifetime::set_deadline(limits.timeout.map(|t| Instant::now() + t));
        let result = self.engine.call_fn::<Dynamic>(&mut scope, ast, name, args);
        lifetime::set_deadline(None);
        result.map(|_| true).map_err(|e| self.runtime_error(&e, ast.source()))
    }

    fn runtime_error(&self, error: &EvalAltResult, script: Option<&str>) -> Error {
        // Errors inside imported modules name the module's file.
        let (error, source) = match error {
            EvalAltResult::ErrorInModule(module, inner, _) => (inner.as_ref(), Some(module.clone())),
            EvalAltResult::ErrorInFunctionCall(_, src, inner, _) if !src.is_empty() => {
                (inner.as_ref(), Some(src.clone()))
            }
            _ => (error, None),
        };
        let (message, thrown) = match error {
            EvalAltResult::ErrorRuntime(value, _) => {
                if let Some(usage) = value.read_lock::<host::UsageError>() {
                    return Error::usage(usage.0.clone());
                }
                (value.to_string(), true)
            }
            EvalAltResult::ErrorTerminated(value, _) => (value.to_string(), false),
            other => (other.to_string().split(" (line ").next().unwrap_or_default().to_string(), false),
        };
        let position = error.position();
        let mut result = Error::failure(message);
        if let (Some(line), Some(column)) = (position.line(), position.position()) {
            let sources = self.sources.borrow();
            let entry = source.as_deref().or(script).and_then(|s| sources.get(s));
            if let Some(SourceEntry { path, line_offset, .. }) = entry
                && let Some(text) = read_source(path)
            {
                let span = SourceSpan::from_line_column(path.display(), &text, line + line_offset, column);
                // A built-in script's own `throw` is a message for the operator, who did not
                // write that line: the message alone. A fault in a script, a host call that
                // failed, or any line of a site's or plugin's own script keeps the excerpt.
                let deliberate =
                    thrown && matches!(path, SourcePath::Embedded(_)) && span.text.trim_start().starts_with("throw");
                if !deliberate {
                    result = result.with_span(span);
                }
            }
        }
        result
    }
}

/// A task's variables as scripts and hooks see them: a `bool` kind as a boolean, an `int`
/// kind as an integer (`()` when unset), every other kind as its text. The values were checked
/// against their kinds when they were resolved.
pub fn script_vars(task: &Task, vars: &IndexMap<String, String>) -> Map {
    vars.iter()
        .map(|(name, value)| {
            let kind = task.vars.get(name).and_then(|spec| spec.kind);
            let typed = match kind {
                Some(Kind::Bool) => Dynamic::from(parse_bool(value).unwrap_or(false)),
                Some(Kind::Int) => value.parse::<rhai::INT>().map_or(Dynamic::UNIT, Dynamic::from),
                _ => Dynamic::from(value.clone()),
            };
            (name.as_str().into(), typed)
        })
        .collect()
}

/// Task variables as constants, plus `VARS`, a map of them all (for functions and hooks).
fn task_scope(vars: &Map) -> Scope<'static> {
    let mut scope = Scope::new();
    for (name, value) in vars {
        scope.push_constant(name.as_str(), value.clone());
    }
    scope.push_constant("VARS", vars.clone());
    scope
}

fn parse_error(name: &str, text: &str, line_offset: usize, error: &ParseError) -> Error {
    let message = error.0.to_string();
    let mut result = Error::usage(format!("invalid Rhai in {name}: {message}"));
    if let (Some(line), Some(column)) = (error.1.line(), error.1.position()) {
        // `text` is the script alone; show its line, numbered as in the file holding it.
        let shown = SourceSpan::from_line_column(name, text, line, column);
        result = result.with_span(SourceSpan { line: line + line_offset, ..shown });
    }
    result
}

/// Resolves `import "name"` to `name.rhai` beside the importing script, never elsewhere: no
/// `..`, no absolute path, and on disk no symlink leading out of the top-level script's
/// directory, so a plugin imports only from its own directory and a site task only from the
/// site's `tasks/`.
struct ConfinedResolver {
    sources: SourceTable,
}

impl ModuleResolver for ConfinedResolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        position: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let allowed = !path.is_empty()
            && path.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
            && path.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'));
        if !allowed {
            return Err(format!(
                "import {path:?} is not allowed: name a module beside the script (letters, digits, _ - /)"
            )
            .into());
        }
        let base = source
            .and_then(|s| self.sources.borrow().get(s).cloned())
            .ok_or_else(|| Box::new(EvalAltResult::ErrorModuleNotFound(path.to_string(), position)))?;
        let file = base.path.sibling(&format!("{path}.rhai"));
        if let (SourcePath::Disk(file), SourcePath::Disk(root)) = (&file, &base.root)
            && let (Ok(real), Ok(real_root)) = (file.canonicalize(), root.canonicalize())
            && !real.starts_with(&real_root)
        {
            return Err(format!(
                "import {path:?} is not allowed: {} leads outside {} through a symlink",
                file.display(),
                root.display()
            )
            .into());
        }
        let text = read_source(&file)
            .ok_or_else(|| Box::new(EvalAltResult::ErrorModuleNotFound(path.to_string(), position)))?;
        let name = file.display();
        self.sources.borrow_mut().insert(name.clone(), SourceEntry { path: file, line_offset: 0, root: base.root });
        let mut ast = engine.compile(&text).map_err(|e| {
            let error = parse_error(&name, &text, 0, &e);
            Box::new(EvalAltResult::ErrorInModule(name.clone(), error.to_string().into(), position))
        })?;
        ast.set_source(name);
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)?;
        Ok(module.into())
    }
}
