//! The source tree's layers point one way: a module of a layer names only the layers below it.
//! `host/` (Rhai bindings) may use the domain, never the reverse; drivers know nothing of
//! tenants; formats know nothing at all. Read from the source text, so a new `use` that breaks
//! the direction fails here with its file and line.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// Each layer and the top-level modules of the crate it may name (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("format", &[]),
    ("drivers", &["format", "fsutil", "parallel", "error"]),
    ("effects", &["drivers", "format", "fsutil", "parallel", "error"]),
    ("tenant", &["effects", "drivers", "format", "fsutil", "parallel", "error", "builtin"]),
    ("host", &["tenant", "effects", "drivers", "format", "fsutil", "parallel", "error"]),
];

/// The top-level modules `text` names through `crate::` paths, each with its line: plain
/// paths (`crate::tenant::layout`) and every item of a grouped import (`use crate::{a, b::c}`).
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let code: String = text
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut found = Vec::new();
    let mut rest = 0;
    while let Some(at) = code[rest..].find("crate::") {
        let start = rest + at;
        let after = start + "crate::".len();
        rest = after;
        let preceded = code[..start].chars().last().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if preceded {
            continue;
        }
        if code[after..].starts_with('{') {
            let mut depth = 0;
            let mut item_start = after + 1;
            for (offset, c) in code[after..].char_indices() {
                let here = after + offset;
                match c {
                    '{' => depth += 1,
                    '}' | ',' if depth == 1 => {
                        let raw = &code[item_start..here];
                        let item = ident(raw.trim_start());
                        if !item.is_empty() {
                            found.push((line_of(item_start + raw.len() - raw.trim_start().len()), item));
                        }
                        item_start = here + 1;
                        if c == '}' {
                            break;
                        }
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
        } else {
            found.push((line_of(start), ident(&code[after..])));
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_are_read_from_plain_and_grouped_paths() {
    let text = "use crate::{\n    drivers::docker::{self, Docker},\n    tenant::layout, // host::x\n    fsutil,\n};\n\
                fn f() { crate::host::register(); agency_crate::x(); }\n// crate::task::runner\n";
    let found = crate_paths(text);
    let names: Vec<(usize, &str)> = found.iter().map(|(line, name)| (*line, name.as_str())).collect();
    assert_eq!(names, [(2, "drivers"), (3, "tenant"), (4, "fsutil"), (6, "host")]);
}

#[test]
fn layers_import_only_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut files_read = 0;
    for (layer, allowed) in ALLOWED {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "src/{layer}/ has no source files");
        for file in files {
            files_read += 1;
            let text = fs::read_to_string(&file).unwrap();
            for (line, module) in crate_paths(&text) {
                if module != *layer && !allowed.contains(&module.as_str()) {
                    let shown = file.strip_prefix(&src).unwrap().display().to_string();
                    violations.push(format!("src/{shown}:{line}: {layer}/ uses crate::{module}"));
                }
            }
        }
    }
    assert!(files_read > 40, "only {files_read} files read");
    assert!(violations.is_empty(), "imports against the layers:\n{}", violations.join("\n"));
}
