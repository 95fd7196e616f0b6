//! pasta's sandbox seen from outside while its command runs: the seccomp
//! filter, `NO_NEW_PRIVS` and no capability on both of its threads (the
//! main one and the one kept in the namespace for sockets), an empty root,
//! and traffic still flowing both ways across the loopback splice: out of
//! the namespace to a host server (`-T`) and into it (`-t`, whose
//! namespace-side socket is made at run time by the namespace thread).
//!
//! `-T auto` is what takes connections out: the first host server is found
//! by the scan at start-up, the second one is started after `READY`, so
//! its listener in the namespace comes from a scan of `/proc/net` after
//! `pivot_root`, made by the namespace thread under the filter.
//!
//! The command is this test binary itself (`SANDBOX_CHILD` set): inside
//! the namespace it listens, talks to the first host server, prints
//! `READY`, serves one echo connection, waits for `GO` on its standard
//! input, talks to the second host server, and waits for its standard
//! input to close.
//!
//! Needs root and `/dev/net/tun`; skips with a printed reason otherwise.
//! Only 127.0.0.1 and pasta's own namespaces are touched.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASTA: &str = env!("CARGO_BIN_EXE_pasta");
const CHILD: &str = "SANDBOX_CHILD";
const NAME: &str = "the_sandboxed_pasta_has_a_filter_no_capabilities_and_still_splices_both_ways";

/// Kills and reaps a child process (by its PID) when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Echoes one connection's first read on a thread.
fn echo_once(server: TcpListener) {
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = server.accept() {
            let mut buf = [0u8; 64];
            if let Ok(n) = s.read(&mut buf) {
                let _ = s.write_all(&buf[..n]);
            }
        }
    });
}

/// A free TCP port on 127.0.0.1 (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One field of `/proc/PID/task/TID/status`.
fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {field} in status"))
}

/// Connects (retrying for a few seconds: listeners come up asynchronously)
/// and checks that `msg` comes back.
fn echo_through(port: u16, msg: &[u8]) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = (|| -> std::io::Result<Vec<u8>> {
            let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(msg)?;
            let mut back = vec![0u8; msg.len()];
            s.read_exact(&mut back)?;
            Ok(back)
        })();
        match attempt {
            Ok(back) if back == msg => return Ok(()),
            Ok(back) => return Err(format!("echo differs: {back:?}")),
            Err(e) if Instant::now() >= end => return Err(format!("port {port}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The command's side, inside pasta's namespace: ports from the
/// environment, `out` (the host server through `-T`) and `in` (our echo
/// server, reached from the host through `-t`).
fn child_main() {
    let out_port: u16 = std::env::var("OUT_PORT").unwrap().parse().unwrap();
    let late_port: u16 = std::env::var("LATE_PORT").unwrap().parse().unwrap();
    let in_port: u16 = std::env::var("IN_PORT").unwrap().parse().unwrap();
    let server = TcpListener::bind((Ipv4Addr::LOCALHOST, in_port)).expect("listen in namespace");
    match echo_through(out_port, b"out of the namespace") {
        Ok(()) => println!("OUT-OK"),
        Err(e) => println!("OUT-FAILED {e}"),
    }
    println!("READY");
    std::io::stdout().flush().unwrap();
    if let Ok((mut s, _)) = server.accept() {
        let mut buf = [0u8; 64];
        if let Ok(n) = s.read(&mut buf) {
            let _ = s.write_all(&buf[..n]);
        }
    }
    let mut go = String::new();
    let _ = std::io::stdin().read_line(&mut go);
    match echo_through(late_port, b"to a server started late") {
        Ok(()) => println!("LATE-OK"),
        Err(e) => println!("LATE-FAILED {e}"),
    }
    std::io::stdout().flush().unwrap();
    // Until the test has looked at pasta: it closes our standard input.
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}

#[test]
fn the_sandboxed_pasta_has_a_filter_no_capabilities_and_still_splices_both_ways() {
    if std::env::var_os(CHILD).is_some() {
        child_main();
        return;
    }
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/dev/net/tun").exists() {
        eprintln!("SKIP {NAME}: needs root and /dev/net/tun");
        return;
    }
    // The host's server, on its loopback.
    let host = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("host server");
    let out_port = host.local_addr().unwrap().port();
    echo_once(host);
    let in_port = free_port();
    let late_port = free_port();
    let exe = std::env::current_exe().expect("test binary");
    let (out_s, in_s) = (out_port.to_string(), in_port.to_string());
    let child = Command::new(PASTA)
        .args(["-q", "-f", "-T", "auto", "-t", &in_s, "--"])
        .arg(&exe)
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("OUT_PORT", &out_s)
        .env("IN_PORT", &in_s)
        .env("LATE_PORT", late_port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pasta");
    let mut pasta = Reaped(child);
    let pid = pasta.0.id();
    let stdout = pasta.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    while !seen.iter().any(|l| l.ends_with("READY")) {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => seen.push(l),
            Err(_) => {
                let _ = pasta.0.kill();
                let mut err = String::new();
                let _ = pasta.0.stderr.take().unwrap().read_to_string(&mut err);
                panic!("no READY from the command: {seen:?}\npasta: {err}");
            }
        }
    }
    assert!(seen.iter().any(|l| l.ends_with("OUT-OK")), "{seen:?}");
    // Into the namespace, through a socket made there after the filter.
    echo_through(in_port, b"into the namespace").expect("-t through the splice");
    // A host server started now: `auto` must find it and listen for it in
    // the namespace (the command retries for 10 s; scans are 1 s apart).
    let late = TcpListener::bind((Ipv4Addr::LOCALHOST, late_port)).expect("late server");
    echo_once(late);
    writeln!(pasta.0.stdin.as_mut().unwrap(), "GO").unwrap();
    while !seen.iter().any(|l| l.contains("LATE-")) {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("no LATE- line from the command: {seen:?}"),
        }
    }
    assert!(seen.iter().any(|l| l.ends_with("LATE-OK")), "{seen:?}");

    // Every thread of pasta: filtered, no new privileges, no capability.
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        tasks.len(),
        2,
        "main thread and namespace thread: {tasks:?}"
    );
    for task in &tasks {
        let status = std::fs::read_to_string(task.join("status")).expect("status");
        assert_eq!(status_field(&status, "Seccomp"), "2", "{task:?}");
        assert_eq!(status_field(&status, "NoNewPrivs"), "1", "{task:?}");
        for set in ["CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"] {
            assert_eq!(
                u64::from_str_radix(&status_field(&status, set), 16).unwrap(),
                0,
                "{set} of {task:?}"
            );
        }
    }
    let root: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/root"))
        .expect("pasta's root")
        .collect();
    assert!(root.is_empty(), "pasta's root is not empty: {root:?}");

    // The command ends when its input closes; pasta exits with its status.
    drop(pasta.0.stdin.take());
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = pasta.0.try_wait().expect("try_wait") {
            break st;
        }
        assert!(Instant::now() < end, "pasta still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    let _ = pasta.0.stderr.take().unwrap().read_to_string(&mut err);
    assert_eq!(status.code(), Some(0), "pasta: {status:?}\n{err}");
}
