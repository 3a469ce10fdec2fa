// Properties the fuzz targets check. Shared with the regular test suite (tests/fuzz_seeds.rs),
// which replays every saved input under fuzz/seeds/, so a found crash stays a test.

use agency::{
    format::envfile,
    format::validate::Kind,
    task::taskfile::{Origin, SourcePath, Task},
    task::vars::Invocation,
    tenant::layout::{ClientLayout, Roots},
};

/// Parsing any task file returns a task or an error; it never panics, and an error
/// always carries a message.
pub fn taskfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(error) =
        Task::parse("fuzz", text, SourcePath::Embedded("tasks/fuzz.toml".into()), Origin::Builtin, |_| {
            Some("1".to_string())
        })
    {
        assert!(!error.message.is_empty());
        let _ = error.to_string();
    }
}

/// Any argument list and MAKEFLAGS parse or fail cleanly; a parsed assignment's name is a
/// variable name and its value is the text after the first `=`.
pub fn assignments(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (makeflags, args) = text.split_once('\u{1}').unwrap_or(("", text));
    let args: Vec<String> = args.split('\u{0}').map(str::to_string).collect();
    if let Ok(invocation) = Invocation::parse(&args, Some(makeflags), |_| None) {
        for (name, value) in &invocation.assignments {
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{name:?}");
            if let Some(arg) = args.iter().rev().find(|a| a.starts_with(&format!("{name}="))) {
                assert_eq!(value, &arg[name.len() + 1..]);
            }
        }
    }
}

/// Whatever values an env file holds, reading it back gives exactly them.
pub fn envfile_round_trip(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let entries: Vec<(String, String)> =
        text.split('\u{1}').enumerate().map(|(i, value)| (format!("KEY_{i}"), value.replace('\0', ""))).collect();
    let rendered = envfile::render(entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))).expect("valid keys, no NUL");
    let parsed = envfile::parse(&rendered).expect("what render writes parses");
    assert_eq!(parsed.len(), entries.len());
    for (key, value) in &entries {
        assert_eq!(&parsed[key], value);
    }
    // Arbitrary text never panics the reader either.
    let _ = envfile::parse(text);
}

/// Validators never panic, and an accepted client id keeps every path inside its root.
pub fn validators(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for kind in [
        Kind::ClientId,
        Kind::Domain,
        Kind::Name,
        Kind::SecretName,
        Kind::Bool,
        Kind::Int,
        Kind::Cidr,
        Kind::Duration,
        Kind::Path,
        Kind::Text,
    ] {
        let _ = kind.check(text);
    }
    if Kind::ClientId.check(text).is_ok() {
        let roots = Roots {
            root: "/srv/agency".into(),
            log_root: "/srv/log".into(),
            backup_root: "/srv/backup".into(),
            logrotate_dir: "/srv/logrotate.d".into(),
            repository_base: String::new(),
        };
        let layout = ClientLayout::new(&roots, text).expect("a valid id has a layout");
        assert!(layout.config_dir.starts_with("/srv/agency/clients/"));
        assert_eq!(layout.config_dir.file_name().unwrap(), text);
        assert!(roots.confine(&layout.secrets_file.display().to_string()).is_ok());
    }
    if Kind::Name.check(text).is_ok() {
        assert!(!text.chars().any(char::is_control));
    }
}

/// Whatever structure a task renders with `format::yaml` (strings with any character, numbers,
/// nesting, empty maps and lists), a YAML parser reads back exactly that structure: values
/// stay data and never become syntax.
pub fn yaml_round_trip(data: &[u8]) {
    let mut input = Unstructured { data, pos: 0 };
    let value = input.value(0);
    let text = agency::format::yaml::render(&value);
    let docs = yaml_rust2::YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("rendered YAML does not parse ({e}):\n{text}\nfrom {value:?}"));
    assert_eq!(docs.len(), 1, "one document:\n{text}");
    assert!(same(&value, &docs[0]), "YAML read back differs:\n{text}\nfrom {value:?}\nread {:?}", docs[0]);
}

/// Characters YAML gives meaning to, or treats specially, for the generated strings.
const SPECIAL: &[char] = &[
    '"',
    '\'',
    '\\',
    ':',
    '#',
    '-',
    '?',
    ',',
    '[',
    ']',
    '{',
    '}',
    '&',
    '*',
    '!',
    '|',
    '>',
    '%',
    '@',
    '`',
    ' ',
    '\t',
    '\n',
    '\r',
    '\0',
    '\u{7}',
    '\u{1b}',
    '\u{7f}',
    '\u{85}',
    '\u{a0}',
    '\u{2028}',
    '\u{2029}',
    '\u{202e}',
    '\u{200b}',
    '\u{feff}',
    '\u{fffe}',
    '\u{ffff}',
    '\u{fffd}',
    '\u{10ffff}',
    '\u{1f389}',
    'é',
    '~',
    '=',
    '<',
    '.',
    '0',
    'y',
    'n',
];

/// Turns fuzz bytes into a JSON value.
struct Unstructured<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Unstructured<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn bytes8(&mut self) -> [u8; 8] {
        std::array::from_fn(|_| self.byte())
    }

    fn string(&mut self) -> String {
        let len = usize::from(self.byte() % 24);
        let mut out = String::new();
        while out.chars().count() < len && self.pos < self.data.len() {
            let b = self.byte();
            if b >= 0xc0 {
                out.push(SPECIAL[usize::from(b - 0xc0) % SPECIAL.len()]);
            } else if b >= 0x80 {
                // Any scalar value, from the next three bytes.
                let n = u32::from_be_bytes([0, self.byte() & 0x1f, self.byte(), self.byte()]);
                out.push(char::from_u32(n % 0x11_0000).unwrap_or('\u{fffd}'));
            } else {
                out.push(char::from(b));
            }
        }
        // Words YAML 1.1 parsers read as something else when unquoted.
        match self.byte() % 16 {
            0 => "null".into(),
            1 => "yes".into(),
            2 => "0o777".into(),
            3 => "1e3".into(),
            4 => "~".into(),
            _ => out,
        }
    }

    fn value(&mut self, depth: usize) -> serde_json::Value {
        use serde_json::Value;
        let tag = self.byte() % if depth >= 5 { 5 } else { 7 };
        match tag {
            0 => Value::Null,
            1 => Value::Bool(self.byte() & 1 == 1),
            2 => Value::from(i64::from_le_bytes(self.bytes8())),
            3 => serde_json::Number::from_f64(f64::from_le_bytes(self.bytes8())).map_or(Value::Null, Value::Number),
            4 => Value::String(self.string()),
            5 => Value::Array((0..self.byte() % 5).map(|_| self.value(depth + 1)).collect()),
            _ => Value::Object((0..self.byte() % 5).map(|_| (self.string(), self.value(depth + 1))).collect()),
        }
    }
}

fn same(value: &serde_json::Value, yaml: &yaml_rust2::Yaml) -> bool {
    use serde_json::Value;
    use yaml_rust2::Yaml;
    match (value, yaml) {
        (Value::Null, Yaml::Null) => true,
        (Value::Bool(a), Yaml::Boolean(b)) => a == b,
        (Value::Number(n), Yaml::Integer(i)) => n.as_i64() == Some(*i),
        (Value::Number(n), Yaml::Real(text)) => n.as_f64().is_some_and(|f| text.parse::<f64>() == Ok(f)),
        (Value::String(a), Yaml::String(b)) => a == b,
        (Value::Array(a), Yaml::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
        (Value::Object(a), Yaml::Hash(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(&Yaml::String(k.clone())).is_some_and(|y| same(v, y)))
        }
        _ => false,
    }
}
