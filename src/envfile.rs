//! `KEY='value'` files: safe to `source` from bash and to use as a docker compose `env_file`.
//! Every value round-trips (quotes, `$`, backticks, newlines) through [`render`] and [`parse`].

use anyhow::{Result, bail};
use indexmap::IndexMap;

/// Keys are shell variable names.
pub fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Single quotes keep everything literal in bash; a quote itself is written `'\''`.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Renders entries in order, one `KEY='value'` per entry.
pub fn render<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<String> {
    let mut text = String::new();
    for (key, value) in entries {
        if !valid_key(key) {
            bail!("{key:?} is not a valid variable name for an env file");
        }
        if value.contains('\0') {
            bail!("the value of {key} contains a NUL byte, which an env file cannot hold");
        }
        text.push_str(key);
        text.push('=');
        text.push_str(&quote(value));
        text.push('\n');
    }
    Ok(text)
}

/// Parses what [`render`] writes (and plain `KEY=value` / `# comment` lines written by hand).
pub fn parse(text: &str) -> Result<IndexMap<String, String>> {
    let mut entries = IndexMap::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    loop {
        // Skip blank lines and comments.
        while let Some(&c) = chars.peek() {
            if c == '\n' {
                line += 1;
                chars.next();
            } else if c == ' ' || c == '\t' || c == '\r' {
                chars.next();
            } else if c == '#' {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            } else {
                break;
            }
        }
        if chars.peek().is_none() {
            return Ok(entries);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        let key = key.strip_prefix("export ").unwrap_or(&key).trim().to_string();
        if chars.next() != Some('=') || !valid_key(&key) {
            bail!("line {line}: expected KEY='value'");
        }
        let mut value = String::new();
        while let Some(&c) = chars.peek() {
            match c {
                '\n' => break,
                '\'' => {
                    chars.next();
                    loop {
                        match chars.next() {
                            Some('\'') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                value.push(c);
                            }
                            None => bail!("line {line}: unterminated quote in the value of {key}"),
                        }
                    }
                }
                '\\' => {
                    chars.next();
                    match chars.next() {
                        Some(c) => value.push(c),
                        None => bail!("line {line}: dangling backslash in the value of {key}"),
                    }
                }
                '\r' => {
                    // A CR outside quotes is only a Windows line ending; inside quotes it is data.
                    chars.next();
                    if !matches!(chars.peek(), None | Some('\n')) {
                        value.push('\r');
                    }
                }
                '"' | '$' | '`' => bail!("line {line}: the value of {key} must be single-quoted"),
                _ => {
                    value.push(c);
                    chars.next();
                }
            }
        }
        entries.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_hostile_values() {
        let values = [
            "\r",
            "a\r\n",
            "plain",
            "it's",
            "'''",
            "$(id) `id` $HOME",
            "a\nb\n",
            "back\\slash",
            "",
            " spaced ",
            "ünï\u{202e}",
        ];
        for value in values {
            let text = render([("KEY", value)]).unwrap();
            let parsed = parse(&text).unwrap();
            assert_eq!(parsed.get("KEY").map(String::as_str), Some(value), "{text}");
        }
    }

    #[test]
    fn rejects_bad_keys_and_nul() {
        assert!(render([("1KEY", "x")]).is_err());
        assert!(render([("KEY;rm", "x")]).is_err());
        assert!(render([("KEY", "a\0b")]).is_err());
    }

    #[test]
    fn reads_hand_written_lines() {
        let parsed = parse("# comment\nA=1\nexport B='two words'\n\nC=x\\ y\n").unwrap();
        assert_eq!(parsed["A"], "1");
        assert_eq!(parsed["B"], "two words");
        assert_eq!(parsed["C"], "x y");
        assert!(parse("A=\"$(id)\"\n").is_err());
    }
}
