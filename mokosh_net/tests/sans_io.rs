//! Enforces that the protocol core stays sans-IO: no file under
//! `src/protocol/` may import tokio or Bevy, open sockets or files, spawn
//! threads, or read a clock. (Test modules at the end of a file are exempt:
//! tests may take one base `Instant`.)

use std::path::{Path, PathBuf};

/// Things the protocol core must never use, with the reason.
const FORBIDDEN: &[(&str, &str)] = &[
    ("tokio", "async runtime"),
    ("bevy", "ECS"),
    ("std::net", "sockets"),
    ("std::fs", "file system"),
    ("std::thread", "threads"),
    ("Instant::now", "clock read"),
    ("SystemTime", "clock read"),
    ("crossbeam", "channels belong to the IO layer"),
];

/// Returns `(line number, pattern, reason)` for each violation in `source`.
fn violations(source: &str) -> Vec<(usize, &'static str, &'static str)> {
    let mut found = Vec::new();
    for (index, line) in source.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            // Everything after the first test module is test code.
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        for (pattern, reason) in FORBIDDEN {
            if code.contains(pattern) {
                found.push((index + 1, *pattern, *reason));
            }
        }
    }
    found
}

fn protocol_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![root.join("protocol.rs")];
    let mut stack = vec![root.join("protocol")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("protocol directory exists") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn protocol_core_is_sans_io() {
    let files = protocol_files();
    assert!(
        files.len() > 10,
        "expected the protocol modules, found {files:?}"
    );
    let mut report = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).expect("readable source");
        for (line, pattern, reason) in violations(&source) {
            report.push(format!("{}:{line}: `{pattern}` ({reason})", file.display()));
        }
    }
    assert!(
        report.is_empty(),
        "sans-IO violations:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_check_catches_violations() {
    let bad = "use tokio::net::TcpStream; use std::net::UdpSocket;\nfn f() { let t = std::time::Instant::now(); }\n";
    let found = violations(bad);
    assert_eq!(found.len(), 3, "{found:?}");
    let commented = "// tokio is mentioned in a comment\n//! and bevy in docs\n";
    assert!(violations(commented).is_empty());
    let test_only = "fn ok() {}\n#[cfg(test)]\nmod tests { fn t() { Instant::now(); } }\n";
    assert!(violations(test_only).is_empty());
}
