//! The engine contract, checked on the source: no code under `engine/src`
//! outside the real runtime (`runtime/`) and the binaries' mains (`bin/`)
//! names libc, nix, epoll, the system clock, OS randomness (directly, or
//! through std's randomly keyed hash maps), the environment, the process
//! or std's socket types. Comments and doc comments may mention them.

use std::path::{Path, PathBuf};

const FORBIDDEN: &[&str] = &[
    "libc::",
    "nix::",
    "epoll_",
    "Instant::now",
    "SystemTime",
    "getrandom",
    "thread_rng",
    "OsRng",
    "rand::random",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::net::UdpSocket",
    "std::time::Instant",
    "std::thread::sleep",
    // `RandomState` draws its keys from the OS, and its iteration order
    // is not the seed's: ordered maps only.
    "HashMap",
    "HashSet",
    "RandomState",
    "std::env::",
    "std::process::",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code part of a line: everything before a `//` comment (string
/// literals containing `//` are rare enough in the engine to ignore).
fn code_of(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

#[test]
fn engine_core_never_touches_the_os() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let exempt = [src.join("runtime"), src.join("bin")];
    let mut checked = 0;
    let mut violations = Vec::new();
    for file in &files {
        if exempt.iter().any(|e| file.starts_with(e)) {
            continue;
        }
        checked += 1;
        let text = std::fs::read_to_string(file).expect("readable source");
        // Test modules may use the OS (they are not the engine).
        let body = match text.find("#[cfg(test)]") {
            Some(i) => &text[..i],
            None => &text,
        };
        for (n, line) in body.lines().enumerate() {
            let code = code_of(line);
            for word in FORBIDDEN {
                if code.contains(word) {
                    violations.push(format!("{}:{}: {word}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} engine files found");
    assert!(
        violations.is_empty(),
        "engine code touches the OS:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_itself_catches_a_violation() {
    assert_eq!(
        code_of("let t = Instant::now(); // fine"),
        "let t = Instant::now(); "
    );
    assert!(code_of("/// uses Instant::now in docs").trim().is_empty());
}
