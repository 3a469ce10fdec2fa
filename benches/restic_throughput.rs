//! Backup and restore throughput of a 100 MiB client directory through the restic driver,
//! next to plain `restic backup` / `restic restore` of the same directory.
//!
//!     cargo bench --bench restic_throughput            # 3 rounds, median reported
//!     ROUNDS=5 cargo bench --bench restic_throughput
//!
//! Every round uses fresh repositories (`init` is not timed); the source tree stays in the
//! page cache for all contenders alike.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use agency::drivers::restic::{BackupRequest, Location, Password, Restic};

const MIB: usize = 1024 * 1024;
const PASSWORD: &str = "benchmark-password";

/// 100 MiB: 30 × 2 MiB random (volume-like), 2 000 × 10 KiB random (many small files),
/// 20 × 1 MiB compressible text (configs, logs) — plus a few bytes of remainder.
fn write_tree(root: &Path) -> usize {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = |len: usize| -> Vec<u8> {
        let mut bytes = Vec::with_capacity(len + 8);
        while bytes.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.extend_from_slice(&state.to_le_bytes());
        }
        bytes.truncate(len);
        bytes
    };
    let mut total = 0;
    let volumes = root.join("volumes");
    fs::create_dir_all(&volumes).unwrap();
    for i in 0..30 {
        let data = random(2 * MIB);
        total += data.len();
        fs::write(volumes.join(format!("blob-{i:02}.bin")), data).unwrap();
    }
    for dir in 0..20 {
        let small = root.join(format!("small/{dir:02}"));
        fs::create_dir_all(&small).unwrap();
        for i in 0..100 {
            let data = random(10 * 1024);
            total += data.len();
            fs::write(small.join(format!("f{i:03}")), data).unwrap();
        }
    }
    let text = root.join("logs");
    fs::create_dir_all(&text).unwrap();
    for i in 0..20 {
        let mut data = String::with_capacity(MIB);
        let mut line = 0u64;
        while data.len() < MIB {
            data.push_str(&format!(
                "2026-11-27T12:{:02}:{:02}Z client=acme request={line} status=200 path=/index.html\n",
                line % 60,
                line % 59
            ));
            line += 1;
        }
        data.truncate(MIB);
        total += data.len();
        fs::write(text.join(format!("access-{i:02}.log")), data).unwrap();
    }
    total
}

fn restic_program() -> PathBuf {
    agency::drivers::process::locate("restic", "apt-get install restic").unwrap()
}

fn plain(repo: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    let status = Command::new(restic_program())
        .args(args)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "restic {args:?} failed");
    start.elapsed()
}

#[derive(Default)]
struct Times {
    backup: Vec<Duration>,
    restore: Vec<Duration>,
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("client");
    let bytes = write_tree(&source);
    let source_arg = source.to_str().unwrap().to_string();
    let restic = Restic::locate().unwrap();
    println!("{}", restic.version().unwrap());
    println!("source: {:.1} MiB in {}", bytes as f64 / MIB as f64, source.display());

    let mut plain_times = Times::default();
    let mut plain_no_cache = Times::default();
    let mut driver_times = Times::default();
    let mut status_lines = 0;
    for round in 0..rounds {
        for (name, times, extra) in
            [("plain", &mut plain_times, None), ("plain-no-cache", &mut plain_no_cache, Some("--no-cache"))]
        {
            let repo = work.path().join(format!("{name}-{round}"));
            let target = work.path().join(format!("{name}-restore-{round}"));
            let mut args = vec!["init"];
            args.extend(extra);
            plain(&repo, &args);
            let mut args = vec!["backup"];
            args.extend(extra);
            args.push(&source_arg);
            times.backup.push(plain(&repo, &args));
            let target_arg = format!("--target={}", target.display());
            let mut args = vec!["restore", "latest", &target_arg];
            args.extend(extra);
            times.restore.push(plain(&repo, &args));
            fs::remove_dir_all(&repo).unwrap();
            fs::remove_dir_all(&target).unwrap();
        }

        let repo_path = work.path().join(format!("driver-{round}"));
        let target = work.path().join(format!("driver-restore-{round}"));
        let repo = restic.repo(Location::Local(repo_path.clone()), Password::new(PASSWORD).unwrap());
        repo.init().unwrap();
        let request = BackupRequest {
            paths: vec![source.clone()],
            tags: vec!["agency".into(), "client-bench".into()],
            ..BackupRequest::default()
        };
        let start = Instant::now();
        let summary = repo.backup(&request, |_| status_lines += 1).unwrap();
        driver_times.backup.push(start.elapsed());
        assert_eq!(summary.total_bytes_processed as usize, bytes);
        let start = Instant::now();
        repo.restore(&summary.snapshot_id, &target, &[]).unwrap();
        driver_times.restore.push(start.elapsed());
        let restored = target.join(source.strip_prefix("/").unwrap());
        assert_eq!(
            fs::read(restored.join("volumes/blob-07.bin")).unwrap(),
            fs::read(source.join("volumes/blob-07.bin")).unwrap()
        );
        fs::remove_dir_all(&repo_path).unwrap();
        fs::remove_dir_all(&target).unwrap();
    }

    let mib = bytes as f64 / MIB as f64;
    println!("median of {rounds} rounds (fresh repository each, init not timed):");
    println!("{:<34} {:>10} {:>12} {:>10} {:>12}", "", "backup", "MiB/s", "restore", "MiB/s");
    for (name, times) in [
        ("plain `restic backup`/`restore`", &mut plain_times),
        ("plain, with --no-cache", &mut plain_no_cache),
        ("agency driver (--json, --no-cache)", &mut driver_times),
    ] {
        let backup = median(&mut times.backup);
        let restore = median(&mut times.restore);
        println!(
            "{name:<34} {:>9.2}s {:>12.1} {:>9.2}s {:>12.1}",
            backup.as_secs_f64(),
            mib / backup.as_secs_f64(),
            restore.as_secs_f64(),
            mib / restore.as_secs_f64()
        );
    }
    println!("driver progress callbacks: {} per backup", status_lines / rounds);
}
