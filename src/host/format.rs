//! `format::` — render script data as YAML or JSON, with every string escaped, so hostile
//! values cannot change a generated file's structure.
//!
//! | function | returns |
//! |---|---|
//! | `format::yaml(value)` | YAML text (strings double-quoted, keys sorted) |
//! | `format::json(value)` | pretty JSON text |
//! | `format::table(rows, columns)` | a plain-text table of an array of maps: one column per key in `columns`, headed by the key in capitals, widths fitted; control characters shown as `?` |
//!
//! ```rhai
//! print(format::table(layout::inventory(), ["id", "name", "health"]));
//! ```

use rhai::{Array, Dynamic, Module};

use super::ScriptResult;

pub fn create_module() -> Module {
    let mut module = Module::new();
    module.set_native_fn("yaml", |value: Dynamic| -> ScriptResult<String> {
        let json: serde_json::Value = rhai::serde::from_dynamic(&value)?;
        Ok(crate::format::yaml::render(&json))
    });
    module.set_native_fn("json", |value: Dynamic| -> ScriptResult<String> {
        let json: serde_json::Value = rhai::serde::from_dynamic(&value)?;
        Ok(serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n")
    });
    module.set_native_fn("table", |rows: Array, columns: Array| -> ScriptResult<String> {
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        let cells = rows
            .iter()
            .map(|row| {
                let map = row.read_lock::<rhai::Map>().ok_or("format::table wants an array of maps")?;
                Ok(columns
                    .iter()
                    .map(|c| {
                        map.get(c.as_str())
                            .map(|v| if v.is_unit() { String::new() } else { v.to_string() })
                            .unwrap_or_default()
                    })
                    .collect())
            })
            .collect::<ScriptResult<Vec<Vec<String>>>>()?;
        Ok(table(&columns, &cells))
    });
    module
}

/// Left-aligned columns two spaces apart; the last column is not padded.
pub fn table(columns: &[String], rows: &[Vec<String>]) -> String {
    let clean = |s: &str| -> String { s.chars().map(|c| if c.is_control() { '?' } else { c }).collect() };
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let columns = ["id".to_string(), "name".to_string(), "health".to_string()];
        let rows = vec![
            vec!["acme".into(), "ACME Corporation".into(), "ok".into()],
            vec!["b2".into(), "B\tTwo".into(), "broken".into()],
        ];
        assert_eq!(
            table(&columns, &rows),
            "ID    NAME              HEALTH\nacme  ACME Corporation  ok\nb2    B?Two             broken"
        );
    }
}
