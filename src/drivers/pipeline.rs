//! Two children joined by a pipe that runs through agency: `source | sink` (a database dump
//! into `restic backup --stdin`, `restic dump` into a database client). Every chunk passes an
//! inspector on its way (counting bytes, hashing, reading the dump's statements). The sink sees
//! the end of its input only when the source succeeded: a failed source gets the sink stopped
//! first, so restic never commits a snapshot of a cut stream. Both children are tied to
//! agency's lifetime (own process group, death with agency, signals forwarded, the task's
//! deadline) like every other child.

use std::{
    io::{Read, Write},
    process::{ChildStdin, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow};

use super::{
    lifetime,
    process::{Command, ProcessOutput},
};

/// The pipes' capacity (Linux's default unprivileged maximum): a 64 KiB pipe wakes agency up
/// for every 64 KiB, and on a loaded host each wake-up waits for a time slice.
const PIPE_BYTES: libc::c_int = 1 << 20;

/// Grows a pipe's buffer; a kernel that refuses keeps its default (only slower).
fn grow_pipe(fd: &impl std::os::fd::AsRawFd) {
    // SAFETY: fcntl(F_SETPIPE_SZ) on a pipe descriptor this process owns; no memory involved.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES);
    }
}

/// How long a stopped sink has to clean up (restic removes its lock) before it is killed.
const SINK_GRACE: Duration = Duration::from_secs(10);

/// What both ends left behind, and what passed between them.
#[derive(Debug, Clone)]
pub struct PipeOutput {
    /// The source's exit code and stderr (its stdout went to the sink).
    pub source: ProcessOutput,
    pub sink: ProcessOutput,
    /// Bytes that went from the source to the sink.
    pub bytes: u64,
}

/// `source | sink`.
#[derive(Debug, Clone)]
pub struct Pipeline {
    source: Command,
    sink: Command,
}

impl Pipeline {
    pub fn new(source: Command, sink: Command) -> Self {
        Self { source, sink }
    }

    /// Runs both to their end; `inspect` sees every chunk in order.
    pub fn run(&self, inspect: &mut dyn FnMut(&[u8])) -> Result<PipeOutput> {
        if let Some(signal) = lifetime::interrupted() {
            return Err(lifetime::interrupted_error(signal));
        }
        let mut source = self
            .source
            .std_command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| self.source.not_started())?;
        let source_watch = lifetime::Watch::start(source.id());
        let mut sink =
            match self.sink.std_command().stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
                Ok(sink) => sink,
                Err(error) => {
                    source_watch.signal(libc::SIGKILL);
                    let _ = source.wait();
                    return Err(error).with_context(|| self.sink.not_started());
                }
            };
        let sink_watch = lifetime::Watch::start(sink.id());
        let mut source_out = source.stdout.take().expect("piped");
        let source_err = source.stderr.take().expect("piped");
        let mut sink_in = sink.stdin.take();
        grow_pipe(&source_out);
        if let Some(input) = &sink_in {
            grow_pipe(input);
        }
        let sink_out = sink.stdout.take().expect("piped");
        let sink_err = sink.stderr.take().expect("piped");

        thread::scope(|scope| {
            let read_all = |mut reader: Box<dyn Read + Send>| {
                scope.spawn(move || {
                    let mut text = Vec::new();
                    let _ = reader.read_to_end(&mut text);
                    String::from_utf8_lossy(&text).into_owned()
                })
            };
            let source_err = read_all(Box::new(source_err));
            let sink_out = read_all(Box::new(sink_out));
            let sink_err = read_all(Box::new(sink_err));

            let (bytes, copy_error) = copy(&mut source_out, sink_in.as_mut().expect("piped"), inspect);
            if copy_error.is_some() {
                // The sink stopped reading: the source would block on a full pipe forever.
                source_watch.signal(libc::SIGTERM);
            }
            drop(source_out);
            let source_status = source.wait().with_context(|| self.source.not_started())?;
            if !source_status.success() {
                // Its input stays open while it stops: it never sees a clean end of a cut stream.
                sink_watch.signal(libc::SIGTERM);
                wait_or_kill(&mut sink, &sink_watch);
            }
            drop(sink_in.take());
            let sink_status = sink.wait().with_context(|| self.sink.not_started())?;
            for (watch, name) in [(&source_watch, self.source.name()), (&sink_watch, self.sink.name())] {
                if let Some(stopped) = watch.stopped() {
                    return Err(stopped.context(format!("{name} was stopped")));
                }
            }
            let output = |status: std::process::ExitStatus, stderr: thread::ScopedJoinHandle<String>| ProcessOutput {
                code: status.code().unwrap_or(-1),
                stdout: String::new(),
                stderr: stderr.join().unwrap_or_default(),
            };
            let source = output(source_status, source_err);
            let mut sink = output(sink_status, sink_err);
            sink.stdout = sink_out.join().unwrap_or_default();
            Ok(PipeOutput { source, sink, bytes })
        })
    }
}

/// What `copy` gathers before it hands a chunk on. A source like `docker exec` writes a few
/// KiB at a time; passing each on woke the sink (restic) some 30,000 times for 200 MB, and on
/// two busy cores every wake-up waits for a time slice.
const CHUNK_BYTES: usize = 256 << 10;

/// Copies `from` into `to` in chunks through `inspect`; the bytes copied, and the write error
/// that ended it early (the reader of `to` went away).
fn copy(from: &mut impl Read, to: &mut ChildStdin, inspect: &mut dyn FnMut(&[u8])) -> (u64, Option<std::io::Error>) {
    let mut buffer = vec![0u8; PIPE_BYTES as usize];
    let mut total = 0u64;
    let mut filled = 0;
    let mut pass_on = |chunk: &[u8], total: &mut u64| {
        inspect(chunk);
        to.write_all(chunk)?;
        *total += chunk.len() as u64;
        Ok::<(), std::io::Error>(())
    };
    loop {
        let read = match from.read(&mut buffer[filled..]) {
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return (total, Some(error)),
        };
        filled += read;
        if read == 0 || filled >= CHUNK_BYTES {
            if let Err(error) = pass_on(&buffer[..filled], &mut total) {
                return (total, Some(error));
            }
            filled = 0;
        }
        if read == 0 {
            return (total, None);
        }
    }
}

fn wait_or_kill(child: &mut std::process::Child, watch: &lifetime::Watch) {
    let deadline = Instant::now() + SINK_GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    watch.signal(libc::SIGKILL);
}

impl PipeOutput {
    /// Whether the sink was stopped because the source failed.
    #[cfg(test)]
    fn sink_stopped(&self) -> bool {
        !self.source.success()
    }

    /// The first failure of the two, as a sentence: the source's, else the sink's.
    pub fn failure(&self, source: &str, sink: &str) -> Option<anyhow::Error> {
        if !self.source.success() {
            return Some(anyhow!("{source} failed (exit {}): {}", self.source.code, self.source.first_error_line()));
        }
        if !self.sink.success() {
            return Some(anyhow!("{sink} failed (exit {}): {}", self.sink.code, self.sink.first_error_line()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn sh(script: &str) -> Command {
        Command::new(Path::new("/bin/sh")).args(["-c", script])
    }

    #[test]
    fn the_stream_passes_the_inspector_and_reaches_the_sink() {
        let pipeline = Pipeline::new(sh("seq 1 100000"), sh("wc -l"));
        let mut seen = 0u64;
        let output = pipeline.run(&mut |chunk| seen += chunk.len() as u64).unwrap();
        assert!(output.failure("seq", "wc").is_none());
        assert_eq!(output.sink.stdout.trim(), "100000");
        assert_eq!(seen, output.bytes);
        assert_eq!(output.bytes, 588895);
    }

    #[test]
    fn a_failed_source_stops_the_sink_before_it_sees_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("done");
        // The sink records a clean end of its input; it must never get there.
        let sink = sh(&format!("cat >/dev/null && touch '{}'", done.display()));
        let output =
            Pipeline::new(sh("echo partial; echo 'dump: lost connection' >&2; exit 2"), sink).run(&mut |_| {}).unwrap();
        assert!(output.sink_stopped());
        let message = output.failure("the dump", "the sink").unwrap().to_string();
        assert_eq!(message, "the dump failed (exit 2): dump: lost connection");
        assert!(!done.exists(), "the sink saw a clean end of a failed stream");
    }

    #[test]
    fn a_sink_that_stops_reading_ends_the_source() {
        let started = Instant::now();
        let output = Pipeline::new(sh("exec yes"), sh("head -c 10 >/dev/null")).run(&mut |_| {}).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!output.source.success());
    }
}
