//! A small YAML emitter for generated configs (compose overrides, Traefik files): block
//! style, every string value double-quoted and escaped, so any value is data and never
//! syntax. Keys that need no quotes (`services`, `agency.client`) are written plain, as an
//! operator would write them; any other key is quoted like a value.

use serde_json::Value;

pub fn render(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_list(&mut out, items, 0),
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key_text(key));
        out.push(':');
        write_child(out, value, indent);
    }
}

fn write_list(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        write_child(out, item, indent);
    }
}

fn write_child(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_list(out, items, indent + 2);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => quote(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

/// `key` as a plain scalar when YAML reads it back as that same string: a letter or `_`
/// first, then letters, digits and `_ . / -`, and no word YAML 1.1 reads as a boolean or
/// null. Anything else is quoted.
fn key_text(key: &str) -> String {
    let plain = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain { key.to_string() } else { quote(key) }
}

/// A YAML double-quoted scalar; non-printable and invisible characters become escapes.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control()
                || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}') =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nested_structures() {
        let value = serde_json::json!({"services": {"web": {"networks": ["a", "b"], "labels": {"agency.client": "acme"}}}, "empty": {}});
        assert_eq!(
            render(&value),
            "empty: {}\nservices:\n  web:\n    labels:\n      agency.client: \"acme\"\n    networks:\n      - \"a\"\n      - \"b\"\n"
        );
    }

    #[test]
    fn keys_are_plain_unless_yaml_would_read_them_otherwise() {
        for plain in ["services", "agency.client", "traefik.http.routers.acme-web.rule", "_x", "a/b"] {
            assert_eq!(key_text(plain), plain);
        }
        for quoted in ["", "yes", "No", "on", "null", "1", "0x1f", "-a", "a: b", "a #b", "~", ".inf", "ключ", "a b"]
        {
            assert_eq!(key_text(quoted), quote(quoted), "{quoted:?}");
        }
    }

    #[test]
    fn escapes_hostile_strings() {
        assert_eq!(quote("a\"b\\c\nd: #e"), r#""a\"b\\c\nd: #e""#);
        assert_eq!(quote("\u{202e}x\u{0}"), r#""\u202ex\u0000""#);
    }
}
