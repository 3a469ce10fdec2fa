//! Reading what a log file gained since the last collection, across its rotation.
//!
//! A [`FileCursor`] is where the last collection stopped: a byte offset just past a complete
//! line, and a fingerprint of the file's first bytes (up to [`HEAD`]) that tells the file apart
//! from its successor. The next read takes the complete lines after the offset; when the file
//! at the path is no longer the one the cursor points into (renamed by logrotate and a new one
//! started, or truncated by `copytruncate`), the rest is read from the rotated copy beside it
//! (`<path>.1`, kept uncompressed by `delaycompress`) and the new file from its start. A
//! trailing line without its newline is left for the next read: the writer is still writing it.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How many leading bytes identify a file.
pub const HEAD: u64 = 4096;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCursor {
    /// Bytes consumed, always just past a newline.
    pub offset: u64,
    /// How many leading bytes `head` covers: `min(offset, HEAD)`.
    pub head_len: u64,
    /// SHA-256 (hex) of the first `head_len` bytes.
    pub head: String,
}

/// The lines a read found and where the next read starts.
#[derive(Debug, Default)]
pub struct Gained {
    /// Complete lines, each ending with `\n`, in the order written.
    pub bytes: Vec<u8>,
    pub cursor: FileCursor,
    /// The file the cursor pointed into was gone (rotated twice, or compressed) before its
    /// rest was read: lines between the last collection and its rotation are missing.
    pub lost: bool,
}

/// The file rotated out of `path` by logrotate (`<path>.1`).
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn open(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `file` is the one `cursor` points into: at least `offset` long, same first bytes.
fn is_cursor_file(mut file: &File, cursor: &FileCursor) -> io::Result<bool> {
    if file.metadata()?.len() < cursor.offset {
        return Ok(false);
    }
    if cursor.head_len == 0 {
        return Ok(true);
    }
    let mut head = vec![0; cursor.head_len as usize];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut head)?;
    Ok(digest(&head) == cursor.head)
}

/// Appends to `out` the complete lines of `file` from `offset`; the offset after them.
fn read_lines(mut file: &File, offset: u64, out: &mut Vec<u8>) -> io::Result<u64> {
    file.seek(SeekFrom::Start(offset))?;
    let start = out.len();
    file.read_to_end(out)?;
    let complete = out[start..].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    out.truncate(start + complete);
    Ok(offset + complete as u64)
}

/// The cursor at `offset` of `file`.
fn cursor_at(mut file: &File, offset: u64) -> io::Result<FileCursor> {
    let head_len = offset.min(HEAD);
    let mut head = vec![0; head_len as usize];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut head)?;
    Ok(FileCursor { offset, head_len, head: digest(&head) })
}

/// The complete lines `path` gained since `cursor`, also across a rotation.
pub fn read_since(path: &Path, cursor: &FileCursor) -> io::Result<Gained> {
    let mut gained = Gained::default();
    let current = open(path)?;
    let mut start = 0;
    match current.as_ref() {
        Some(file) if is_cursor_file(file, cursor)? => start = cursor.offset,
        _ if cursor.offset == 0 => {}
        _ => match open(&rotated(path))? {
            Some(old) if is_cursor_file(&old, cursor)? => {
                read_lines(&old, cursor.offset, &mut gained.bytes)?;
                // A last line the writer never finished before the rotation ends here.
                let len = old.metadata()?.len();
                let taken = cursor.offset + gained.bytes.len() as u64;
                if taken < len {
                    let mut rest = Vec::new();
                    (&old).seek(SeekFrom::Start(taken))?;
                    (&old).read_to_end(&mut rest)?;
                    gained.bytes.extend(rest);
                    gained.bytes.push(b'\n');
                }
            }
            _ => gained.lost = true,
        },
    }
    match current.as_ref() {
        Some(file) => {
            let offset = read_lines(file, start, &mut gained.bytes)?;
            gained.cursor = if offset == cursor.offset && start == cursor.offset {
                cursor.clone()
            } else {
                cursor_at(file, offset)?
            };
        }
        None => gained.cursor = FileCursor::default(),
    }
    Ok(gained)
}

#[cfg(test)]
mod tests {
    use std::{fs, io::Write};

    use super::*;

    fn append(path: &Path, text: &str) {
        fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    fn text(gained: &Gained) -> &str {
        std::str::from_utf8(&gained.bytes).unwrap()
    }

    #[test]
    fn reads_each_complete_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.json");
        let first = read_since(&path, &FileCursor::default()).unwrap();
        assert_eq!(text(&first), "");
        append(&path, "a\nb\npart");
        let second = read_since(&path, &first.cursor).unwrap();
        assert_eq!(text(&second), "a\nb\n");
        append(&path, "ial\n");
        let third = read_since(&path, &second.cursor).unwrap();
        assert_eq!(text(&third), "partial\n");
        let fourth = read_since(&path, &third.cursor).unwrap();
        assert_eq!(text(&fourth), "");
        assert_eq!(fourth.cursor, third.cursor);
    }

    #[test]
    fn follows_a_rename_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.json");
        append(&path, "one\n");
        let first = read_since(&path, &FileCursor::default()).unwrap();
        append(&path, "two\n");
        fs::rename(&path, rotated(&path)).unwrap();
        append(&path, "three\n");
        let second = read_since(&path, &first.cursor).unwrap();
        assert_eq!(text(&second), "two\nthree\n");
        assert!(!second.lost);
        assert_eq!(text(&read_since(&path, &second.cursor).unwrap()), "");
    }

    #[test]
    fn follows_a_copytruncate_rotation_even_when_the_new_file_is_longer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.json");
        append(&path, "one\n");
        let first = read_since(&path, &FileCursor::default()).unwrap();
        append(&path, "two\n");
        fs::copy(&path, rotated(&path)).unwrap();
        fs::write(&path, "").unwrap();
        append(&path, "three three three\n");
        let second = read_since(&path, &first.cursor).unwrap();
        assert_eq!(text(&second), "two\nthree three three\n");
    }

    #[test]
    fn says_when_the_rotated_file_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.json");
        append(&path, "one\n");
        let first = read_since(&path, &FileCursor::default()).unwrap();
        fs::remove_file(&path).unwrap();
        append(&path, "new\n");
        let second = read_since(&path, &first.cursor).unwrap();
        assert!(second.lost);
        assert_eq!(text(&second), "new\n");
    }
}
