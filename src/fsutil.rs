//! File primitives with the guarantees the spec asks for: writes are atomic (temp file,
//! fsync, rename, fsync of the directory) and a file's mode is set before it has a name.

use std::{
    fs::{self, DirBuilder, File, OpenOptions, Permissions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::Path,
    time::Duration,
};

/// What an `lstat` found: `"file"`, `"dir"`, `"symlink"`, `"other"`, or `"missing"` for none.
pub fn kind(meta: Option<&fs::Metadata>) -> &'static str {
    match meta {
        None => "missing",
        Some(m) if m.file_type().is_symlink() => "symlink",
        Some(m) if m.is_file() => "file",
        Some(m) if m.is_dir() => "dir",
        Some(_) => "other",
    }
}

/// The permission bits of `path`, or None when it does not exist.
pub fn mode(path: &Path) -> Option<u32> {
    fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
}

/// Fails when the regular file `path` (whose `lstat` is `meta`) has other names: a hard link
/// may be a file outside every root, whose mode or contents a change would reach.
pub fn refuse_hard_link(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if meta.is_file() && meta.nlink() > 1 {
        return Err(io::Error::other(format!(
            "{} is hard-linked ({} names share the file); not changing it: make it a file of its own \
             (cp -p FILE FILE.own && mv FILE.own FILE) once you know what the other names are",
            path.display(),
            meta.nlink()
        )));
    }
    Ok(())
}

/// Random characters in a temp file's name (tempfile's default).
const TEMP_RANDOM_LEN: usize = 6;

/// Writes `bytes` to `path` atomically, the file having `mode` from its creation. The temp
/// file is `.NAME.XXXXXX.tmp` beside it; ones that a crashed earlier write of `path` left
/// (whole copies of what it was writing, secrets included) are removed first. Writers of one
/// file are serialized by the client lock, so none of them is live.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_sweeping(path, bytes, mode, Duration::ZERO)
}

/// How old another writer's temp file must be before [`write_atomic_unlocked`] takes it for
/// a crashed one: a live write renames its temp file within moments.
const UNLOCKED_STALE_AFTER: Duration = Duration::from_secs(600);

/// [`write_atomic`] for a file that runs write without a lock (status's metrics and report:
/// the scheduled status and digest jobs start at the same minute): only temp files older than
/// ten minutes are taken for a crashed write's, so a concurrent writer's is left alone.
pub fn write_atomic_unlocked(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_sweeping(path, bytes, mode, UNLOCKED_STALE_AFTER)
}

fn write_atomic_sweeping(path: &Path, bytes: &[u8], mode: u32, stale_after: Duration) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let name = path.file_name().ok_or_else(|| io::Error::other("path has no file name"))?;
    let prefix = format!(".{}.", name.to_string_lossy());
    remove_stale_temp_files(dir, &prefix, stale_after)?;
    let mut temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .rand_bytes(TEMP_RANDOM_LEN)
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    // The umask may have narrowed the temp file; set exactly `mode` before it gets its name.
    temp.as_file().set_permissions(Permissions::from_mode(mode))?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    crate::effects::crash_point("temp file written, not renamed yet");
    temp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// A 0600 temp file `.NAME.XXXXXX.tmp` in `dir` holding `bytes`, for a secret a child
/// reads from a file; removed when the value drops, and by the next call for `name` (or
/// [`remove_stale_temp_files`]) when a kill left it.
pub fn secret_temp_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    let prefix = format!(".{name}.");
    remove_stale_temp_files(dir, &prefix, Duration::ZERO)?;
    let mut temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .rand_bytes(TEMP_RANDOM_LEN)
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.flush()?;
    Ok(temp)
}

/// Removes `PREFIX` + 6 random characters + `.tmp` files in `dir`: the temp files of
/// earlier writes that killed runs left (those older than `stale_after`; zero: all).
pub fn remove_stale_temp_files(dir: &Path, prefix: &str, stale_after: Duration) -> io::Result<()> {
    remove_temp_files(dir, stale_after, |name| {
        name.strip_prefix(prefix).and_then(|rest| rest.strip_suffix(".tmp")).is_some_and(is_temp_random)
    })
}

/// Removes the temp files (`.NAME.XXXXXX.tmp`) of every file whose NAME starts with
/// `names_starting`: those of writes of files no later write names again (stamped ones).
pub fn remove_temp_files_of_names(dir: &Path, names_starting: &str) -> io::Result<()> {
    remove_temp_files(dir, Duration::ZERO, |name| {
        name.strip_prefix('.')
            .and_then(|rest| rest.strip_prefix(names_starting))
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|rest| rest.rsplit_once('.'))
            .is_some_and(|(_, random)| is_temp_random(random))
    })
}

fn is_temp_random(text: &str) -> bool {
    text.len() == TEMP_RANDOM_LEN && text.chars().all(|c| c.is_ascii_alphanumeric())
}

fn remove_temp_files(dir: &Path, stale_after: Duration, is_temp: impl Fn(&str) -> bool) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else { continue };
        let stale = is_temp(name);
        let old_enough = || {
            stale_after.is_zero()
                || entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= stale_after))
        };
        if stale && entry.file_type()?.is_file() && old_enough() {
            match fs::remove_file(entry.path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Creates `path` and missing parents with `mode`; returns whether anything was created.
pub fn create_dir(path: &Path, mode: u32) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => return Ok(false),
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(io::Error::other(format!("{} is a symlink; not following it", path.display())));
        }
        _ => {}
    }
    DirBuilder::new().recursive(true).mode(mode).create(path)?;
    // Exactly `mode`, whatever the umask; the directory is still empty.
    fs::set_permissions(path, Permissions::from_mode(mode))?;
    Ok(true)
}

/// Creates an empty file with `mode` unless it exists; returns whether it was created.
pub fn create_file(path: &Path, mode: u32) -> io::Result<bool> {
    match OpenOptions::new().write(true).create_new(true).mode(mode).open(path) {
        Ok(file) => {
            file.set_permissions(Permissions::from_mode(mode))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Appends one line with a single `write` on an `O_APPEND` descriptor, so concurrent
/// writers never interleave inside a line (the kernel moves the offset to the end and
/// writes under the inode lock). The file is created with `mode` if missing; a symlink in
/// its place is refused, and so is a hard-linked file, so a log cannot be pointed at a file
/// elsewhere. A short write
/// (disk full) is an error rather than a retry, which could split the line.
pub fn append_line(path: &Path, line: &str, mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new().append(true).create(true).mode(mode).custom_flags(libc::O_NOFOLLOW).open(path)?;
    refuse_hard_link(path, &file.metadata()?)?;
    let mut bytes = line.trim_end_matches('\n').as_bytes().to_vec();
    bytes.push(b'\n');
    let written = file.write(&bytes)?;
    if written != bytes.len() {
        return Err(io::Error::other(format!("short write: {written} of {} bytes", bytes.len())));
    }
    Ok(())
}

/// Renames `from` to `to` (which must not exist) and syncs both parent directories, so
/// the move survives a crash. Both must be on one filesystem.
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    if fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} already exists", to.display())));
    }
    fs::rename(from, to).map_err(|e| {
        if e.kind() == io::ErrorKind::CrossesDevices {
            io::Error::other(format!("{} and {} are on different filesystems", from.display(), to.display()))
        } else {
            e
        }
    })?;
    for dir in [from.parent(), to.parent()].into_iter().flatten() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlocked_write_leaves_a_live_writers_temp_file_and_takes_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agency-status.prom");
        let live = dir.path().join(".agency-status.prom.aB3dE9.tmp");
        let crashed = dir.path().join(".agency-status.prom.zZ9yY8.tmp");
        fs::write(&live, "half").unwrap();
        fs::write(&crashed, "left").unwrap();
        let long_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        File::options().write(true).open(&crashed).unwrap().set_modified(long_ago).unwrap();
        write_atomic_unlocked(&path, b"x 1\n", 0o644).unwrap();
        assert!(live.exists());
        assert!(!crashed.exists());
        write_atomic(&path, b"x 2\n", 0o644).unwrap();
        assert!(!live.exists(), "a locked writer takes every temp file for a crashed one");
    }

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.env");
        write_atomic(&path, b"A='1'\n", 0o600).unwrap();
        write_atomic(&path, b"A='2'\n", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "A='2'\n");
        assert_eq!(mode(&path), Some(0o600));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_crashed_write_leaves_a_temp_file_that_the_next_write_removes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.env");
        // What a write killed before its rename leaves, and files that only look alike.
        for name in [".secrets.env.a1B2c3.tmp", ".secrets.env.Zz9Yy8.tmp"] {
            fs::write(dir.path().join(name), "A='old'\n").unwrap();
        }
        let others =
            [".secrets.env.next.a1B2c3.tmp", ".secrets.env.toolong1.tmp", ".client.env.a1B2c3.tmp", "notes.tmp"];
        for name in others {
            fs::write(dir.path().join(name), "keep").unwrap();
        }
        write_atomic(&path, b"A='1'\n", 0o600).unwrap();
        let mut left: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        let mut expected: Vec<String> = others.iter().map(|s| s.to_string()).collect();
        expected.push("secrets.env".into());
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn temp_files_of_stamped_names_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let crashed = [".secrets.env.20261203T202450.028089364Z.72HVqI.tmp", ".secrets.env.x.a1B2c3.tmp"];
        let others = [
            "secrets.env.20261203T202450.028089364Z",
            ".secrets.env.20261203T202450Z.toolong1.tmp",
            ".client.env.x.a1B2c3.tmp",
            "notes.tmp",
        ];
        for name in crashed.iter().chain(&others) {
            fs::write(dir.path().join(name), "A='old'\n").unwrap();
        }
        remove_temp_files_of_names(dir.path(), "secrets.env.").unwrap();
        let mut left: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        let mut expected: Vec<String> = others.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn append_refuses_a_symlinked_log() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "").unwrap();
        let log = dir.path().join("audit.log");
        std::os::unix::fs::symlink(&victim, &log).unwrap();
        assert!(append_line(&log, "{}", 0o640).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "");
        fs::remove_file(&log).unwrap();
        append_line(&log, "{\"a\":1}", 0o640).unwrap();
        append_line(&log, "{\"a\":2}\n", 0o640).unwrap();
        assert_eq!(fs::read_to_string(&log).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
        assert_eq!(mode(&log), Some(0o640));
    }

    #[test]
    fn dirs_and_files_get_exact_modes() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        assert!(create_dir(&sub, 0o700).unwrap());
        assert!(!create_dir(&sub, 0o700).unwrap());
        assert_eq!(mode(&sub), Some(0o700));
        let file = sub.join("x.log");
        assert!(create_file(&file, 0o640).unwrap());
        assert!(!create_file(&file, 0o640).unwrap());
        assert_eq!(mode(&file), Some(0o640));
    }

    #[test]
    fn rename_moves_a_tree_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a");
        create_dir(&from.join("sub"), 0o700).unwrap();
        fs::write(from.join("sub/f"), "x").unwrap();
        let to = dir.path().join("b");
        rename_durable(&from, &to).unwrap();
        assert!(!from.exists());
        assert_eq!(fs::read_to_string(to.join("sub/f")).unwrap(), "x");
        create_dir(&from, 0o700).unwrap();
        let error = rename_durable(&from, &to).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert!(from.exists(), "a refused move leaves the source");
    }

    #[test]
    fn appended_lines_end_with_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        append_line(&path, "{\"a\":1}", 0o640).unwrap();
        append_line(&path, "{\"a\":2}\n", 0o640).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
        assert_eq!(mode(&path), Some(0o640));
    }
}
