//! `KEY='value'` files: safe to `source` from bash and to use as a docker compose `env_file`.
//! Every value round-trips (quotes, `$`, backticks, newlines) through [`render`] and [`parse`].

use anyhow::{Result, bail};
use indexmap::IndexMap;

/// Keys are shell variable names.
pub(crate) fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Single quotes keep everything literal in bash; a quote itself is written `'\''`.
pub(crate) fn quote(value: &str) -> String {
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

/// [`read_file`] of bytes read elsewhere (a dry run's planned file).
pub(crate) fn parse_read(path: &std::path::Path, read: std::io::Result<Vec<u8>>) -> Result<IndexMap<String, String>> {
    let bytes = read.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..bad].iter().filter(|b| **b == b'\n').count() + 1;
        anyhow::anyhow!("{}:{line}: not UTF-8 text", path.display())
    })?;
    parse(&text).map_err(|e| {
        let message = e.to_string();
        match message.strip_prefix("line ").and_then(|rest| rest.split_once(": ")) {
            Some((line, what)) => anyhow::anyhow!("{}:{line}: {what}", path.display()),
            None => anyhow::anyhow!("{}: {message}", path.display()),
        }
    })
}

/// Parses what [`render`] writes (and plain `KEY=value` / `# comment` lines written by hand).
pub fn parse(text: &str) -> Result<IndexMap<String, String>> {
    // Byte offsets: every character with a meaning here is ASCII, so slicing at one is safe,
    // and runs of plain text are copied whole (status reads thousands of these files).
    let bytes = text.as_bytes();
    let is_special = |b: u8| matches!(b, b'\n' | b'\'' | b'\\' | b'\r' | b'"' | b'$' | b'`' | b' ' | b'\t');
    let mut entries = IndexMap::new();
    let mut at = 0;
    let mut line = 1;
    loop {
        // Skip blank lines and comments.
        while at < bytes.len() {
            match bytes[at] {
                b'\n' => {
                    line += 1;
                    at += 1;
                }
                b' ' | b'\t' | b'\r' => at += 1,
                b'#' => at = text[at..].find('\n').map_or(bytes.len(), |n| at + n),
                _ => break,
            }
        }
        if at == bytes.len() {
            return Ok(entries);
        }
        let Some(key_end) = text[at..].find('=').map(|n| at + n) else {
            bail!("line {line}: expected KEY='value'");
        };
        let raw_key = &text[at..key_end];
        let key = raw_key.strip_prefix("export ").unwrap_or(raw_key).trim().to_string();
        if !valid_key(&key) {
            bail!("line {line}: expected KEY='value'");
        }
        at = key_end + 1;
        let mut value = String::new();
        while at < bytes.len() {
            match bytes[at] {
                b'\n' => break,
                b'\'' => {
                    let start = at + 1;
                    let Some(len) = text[start..].find('\'') else {
                        line += text[start..].matches('\n').count();
                        bail!("line {line}: unterminated quote in the value of {key}");
                    };
                    let quoted = &text[start..start + len];
                    line += quoted.matches('\n').count();
                    value.push_str(quoted);
                    at = start + len + 1;
                }
                b'\\' => {
                    let Some(escaped) = text[at + 1..].chars().next() else {
                        bail!("line {line}: dangling backslash in the value of {key}");
                    };
                    value.push(escaped);
                    at += 1 + escaped.len_utf8();
                }
                // Where bash would read another value than this parser, the line is refused:
                // `. secrets.env; restic ...` must use the very password agency uses.
                b' ' | b'\t' => {
                    let end = text[at..].find('\n').map_or(bytes.len(), |n| at + n);
                    if !text[at..end].trim().is_empty() {
                        bail!(
                            "line {line}: text after a space in the value of {key} (a comment too): bash reads \
                             the value only up to the space; quote the whole value"
                        );
                    }
                    at = end;
                }
                b'\r' => bail!(
                    "line {line}: a carriage return (Windows line ending) outside quotes in the value of {key}: \
                     bash would keep it in the value; save the file with Unix line endings"
                ),
                b'"' | b'$' | b'`' => bail!("line {line}: the value of {key} must be single-quoted"),
                _ => {
                    let end = bytes[at..].iter().position(|&b| is_special(b)).map_or(bytes.len(), |n| at + n);
                    value.push_str(&text[at..end]);
                    at = end;
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
        assert_eq!(parse("A=1   \nB='x' \t\n").unwrap()["B"], "x", "trailing blanks: bash ignores them too");
    }

    #[test]
    fn refuses_what_bash_reads_differently() {
        for (text, what) in [
            ("A=1\nB=secret # rotated in May\n", "line 2: text after a space in the value of B"),
            ("A=one two\n", "line 1: text after a space in the value of A"),
            ("A='x'\r\nB='y'\r\n", "line 1: a carriage return"),
            ("A=x\r\n", "line 1: a carriage return"),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.starts_with(what), "{text:?}: {error}");
        }
    }
}
