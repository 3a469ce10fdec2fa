// Properties the fuzz targets check. Shared with the regular test suite (tests/fuzz_seeds.rs),
// which replays every saved input under fuzz/seeds/, so a found crash stays a test.

use agency::{
    envfile,
    layout::{ClientLayout, Roots},
    taskfile::{Origin, SourcePath, Task},
    validate::Kind,
    vars::Invocation,
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
