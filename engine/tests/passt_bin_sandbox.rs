//! The `passt` binary's sandbox (`docs/security.md`), seen from outside
//! the process (`/proc/PID/...`) and through the test-only probe
//! `PASST_SANDBOX_SELFTEST` (a forbidden syscall, a panic) that the binary
//! runs right after its seccomp filter is in place.
//!
//! Every wait is bounded; every spawned process is killed on failure.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const PASST: &str = env!("CARGO_BIN_EXE_passt");
const SELF_TEST: &str = "PASST_SANDBOX_SELFTEST";
const WAIT: Duration = Duration::from_secs(10);

/// A scratch directory, removed on drop. Sticky and world-writable like
/// /tmp: started as root, passt runs as nobody.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("passt-sandbox-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(
            &p,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o1777),
        )
        .unwrap();
        Scratch(p)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A passt child, killed on drop.
struct Passt {
    child: Child,
}

impl Passt {
    fn spawn(args: &[&str], env: Option<(&str, &str)>) -> Passt {
        let mut cmd = Command::new(PASST);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        cmd.env("RUST_BACKTRACE", "0");
        Passt {
            child: cmd.spawn().expect("spawn passt"),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let end = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < end, "passt did not exit in {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    fn terminate(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.wait_exit()
    }
}

impl Drop for Passt {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for `path` to hold a line (the pid file) and returns it.
fn wait_for_line(path: &Path) -> String {
    let end = Instant::now() + WAIT;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.ends_with('\n')
        {
            return s.trim().to_string();
        }
        assert!(Instant::now() < end, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of `field` in /proc/PID/status.
fn status_field(pid: i32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// passt in the foreground on a socket in `dir`; returns once the pid file
/// says it is ready (written after isolation).
fn start_foreground(dir: &Scratch, extra: &[&str], env: Option<(&str, &str)>) -> Passt {
    let sock = dir.path("s.socket");
    let pid = dir.path("pid");
    let quiet = if extra.contains(&"--trace") {
        "-f"
    } else {
        "-q"
    };
    let mut args = vec![
        "-f",
        quiet,
        "-s",
        sock.to_str().unwrap(),
        "-P",
        pid.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let passt = Passt::spawn(&args, env);
    assert_eq!(wait_for_line(&pid), passt.pid().to_string());
    passt
}

fn is_root_in_initial_user_namespace() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root && std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
}

#[test]
fn a_forbidden_syscall_after_isolation_kills_passt_with_sigsys() {
    let dir = Scratch::new("sigsys");
    let sock = dir.path("s.socket");
    let mut passt = Passt::spawn(
        &["-f", "-q", "-s", sock.to_str().unwrap()],
        Some((SELF_TEST, "forbidden-syscall")),
    );
    let status = passt.wait_exit();
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{status:?}");

    // The probe does make the call: without the sandbox it returns and the
    // loop runs on.
    let dir = Scratch::new("nosandbox");
    let sock = dir.path("s.socket");
    let mut passt = Passt::spawn(
        &["-f", "-q", "--no-sandbox", "-s", sock.to_str().unwrap()],
        Some((SELF_TEST, "forbidden-syscall")),
    );
    let end = Instant::now() + WAIT;
    while !sock.exists() {
        assert!(Instant::now() < end, "socket never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(passt.child.try_wait().unwrap().is_none(), "alive");
    assert_eq!(status_field(passt.pid(), "Seccomp"), "0");
    let status = passt.terminate();
    assert!(status.success(), "{status:?}");
    let err = passt.stderr();
    assert!(err.contains("--no-sandbox"), "says so: {err}");
    assert!(err.contains("debugging only"), "says what for: {err}");
    assert!(err.contains("uname returned 0"), "{err}");
}

#[test]
fn a_panic_after_isolation_still_prints_its_message() {
    let dir = Scratch::new("panic");
    let sock = dir.path("s.socket");
    // With RUST_BACKTRACE set, the message is printed, then resolving the
    // backtrace's symbols needs files: the filter kills the process there
    // (docs/security.md).
    let mut passt = Passt::spawn(
        &["-f", "-q", "-s", sock.to_str().unwrap()],
        Some((SELF_TEST, "panic")),
    );
    let status = passt.wait_exit();
    let err = passt.stderr();
    assert_eq!(status.code(), Some(101), "{status:?}: {err}");
    assert!(err.contains("panic after isolation"), "{err}");
}

#[test]
fn the_sandboxed_process_has_a_filter_no_new_privileges_and_no_capabilities() {
    let dir = Scratch::new("status");
    let mut passt = start_foreground(&dir, &[], None);
    let pid = passt.pid();
    assert_eq!(status_field(pid, "Seccomp"), "2");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    for set in ["CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(pid, set), "0000000000000000", "{set}");
    }
    assert!(passt.terminate().success());
}

#[test]
fn the_sandboxed_process_sees_an_empty_root_and_namespaces_of_its_own() {
    let dir = Scratch::new("root");
    let mut passt = start_foreground(&dir, &[], None);
    let pid = passt.pid();
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    assert!(
        std::fs::File::open(root.join("etc/passwd")).is_err(),
        "/etc/passwd is out of reach"
    );
    let entries: Vec<_> = std::fs::read_dir(&root)
        .expect("read the sandbox's root")
        .collect();
    assert!(entries.is_empty(), "the root is empty: {entries:?}");
    for ns in ["mnt", "ipc", "uts"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(theirs, ours, "{ns} namespace of its own");
    }
    // The network namespace stays ours: the sockets work there.
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
        std::fs::read_link("/proc/self/ns/net").unwrap()
    );
    assert!(passt.terminate().success());
}

#[test]
fn started_as_root_passt_runs_as_nobody() {
    if !is_root_in_initial_user_namespace() {
        eprintln!("skipped: not root in the initial user namespace");
        return;
    }
    let nobody = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    let nobody = String::from_utf8(nobody.stdout).unwrap().trim().to_string();
    let dir = Scratch::new("nobody");
    let mut passt = start_foreground(&dir, &[], None);
    let uids = status_field(passt.pid(), "Uid");
    let uids: Vec<&str> = uids.split_whitespace().collect();
    assert_eq!(uids, vec![nobody.as_str(); 4], "real, effective, saved, fs");
    // Its files are nobody's, so that it can remove them at exit.
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(dir.path("s.socket")).unwrap().uid();
    assert_eq!(owner.to_string(), nobody);
    assert!(passt.terminate().success());
    assert!(!dir.path("s.socket").exists(), "socket file removed");
    assert!(!dir.path("pid").exists(), "pid file removed");
}

#[test]
fn started_unprivileged_passt_makes_a_user_namespace_of_its_own() {
    let dir = Scratch::new("unprivileged");
    let (sock, pid_path) = (dir.path("s.socket"), dir.path("pid"));
    let mut cmd = Command::new(PASST);
    cmd.args([
        "-f",
        "-q",
        "-s",
        sock.to_str().unwrap(),
        "-P",
        pid_path.to_str().unwrap(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::inherit())
    .env("RUST_BACKTRACE", "0");
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut passt = Passt {
        child: cmd.spawn().expect("spawn passt"),
    };
    assert_eq!(wait_for_line(&pid_path), passt.pid().to_string());
    let pid = passt.pid();
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap(),
        std::fs::read_link("/proc/self/ns/user").unwrap(),
        "a user namespace of its own"
    );
    assert_eq!(status_field(pid, "Seccomp"), "2");
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(pid, set), "0000000000000000", "{set}");
    }
    let root = std::fs::read_dir(format!("/proc/{pid}/root"))
        .unwrap()
        .count();
    assert_eq!(root, 0, "empty root");
    assert!(passt.terminate().success());
    assert!(!sock.exists() && !pid_path.exists(), "files removed");
}

#[test]
fn runas_names_the_user_to_run_as() {
    if !is_root_in_initial_user_namespace() {
        eprintln!("skipped: not root in the initial user namespace");
        return;
    }
    let dir = Scratch::new("runas");
    let mut passt = start_foreground(&dir, &["--runas", "1:1"], None);
    assert_eq!(status_field(passt.pid(), "Uid"), "1\t1\t1\t1");
    assert_eq!(status_field(passt.pid(), "Gid"), "1\t1\t1\t1");
    assert!(passt.terminate().success());
}

#[test]
fn the_daemon_is_the_first_process_of_its_own_pid_namespace() {
    let dir = Scratch::new("daemon");
    let (sock, pid_path) = (dir.path("s.socket"), dir.path("pid"));
    let mut parent = Passt::spawn(
        &[
            "-q",
            "-s",
            sock.to_str().unwrap(),
            "-P",
            pid_path.to_str().unwrap(),
        ],
        None,
    );
    assert!(parent.wait_exit().success());
    let daemon: i32 = wait_for_line(&pid_path).parse().unwrap();
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            // SAFETY: kill(2) on the daemon this test started.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
    let _guard = Kill(daemon);
    let nspid = status_field(daemon, "NSpid");
    let ids: Vec<&str> = nspid.split_whitespace().collect();
    assert_eq!(ids.first(), Some(&daemon.to_string().as_str()), "{nspid}");
    assert_eq!(ids.last(), Some(&"1"), "PID 1 inside: {nspid}");
    // The parent writes the pid file right after the fork; the daemon
    // installs its filter a moment later.
    let end = Instant::now() + WAIT;
    while status_field(daemon, "Seccomp") != "2" {
        assert!(
            Instant::now() < end,
            "the daemon never installed its filter"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A stop signal still reaches it (blocked, read from its signalfd).
    // SAFETY: kill(2) on the daemon this test started.
    assert_eq!(unsafe { libc::kill(daemon, libc::SIGTERM) }, 0);
    let end = Instant::now() + WAIT;
    while pid_path.exists() || sock.exists() {
        assert!(Instant::now() < end, "the daemon did not clean up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn descriptors_inherited_from_the_parent_are_closed() {
    let mut fds = [0; 2];
    // SAFETY: a pipe without O_CLOEXEC: both ends are inherited by passt.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let dir = Scratch::new("inherited");
    let mut passt = start_foreground(&dir, &[], None);
    // Our write end goes; the read end sees EOF only once passt's copy of
    // the write end is closed too.
    // SAFETY: our own descriptors.
    unsafe {
        libc::close(fds[1]);
        libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK);
    }
    let mut byte = [0u8; 1];
    // SAFETY: reads one byte into a live buffer.
    let n = unsafe { libc::read(fds[0], byte.as_mut_ptr() as *mut libc::c_void, 1) };
    assert_eq!(n, 0, "EOF: passt holds no copy of the pipe");
    // SAFETY: our own descriptor.
    unsafe { libc::close(fds[0]) };
    assert!(passt.terminate().success());
}

#[test]
fn the_log_file_still_rotates_under_the_filter() {
    let dir = Scratch::new("log");
    let log = dir.path("passt.log");
    let mut passt = start_foreground(
        &dir,
        &[
            "--trace",
            "-l",
            log.to_str().unwrap(),
            "--log-size",
            "40960",
        ],
        None,
    );
    // Each guest frame is a trace line: enough of them to fill the file
    // several times over.
    let mut s = UnixStream::connect(dir.path("s.socket")).unwrap();
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x88, 0xb5]);
    frame.resize(60, 0);
    let mut wire = (frame.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(&frame);
    for _ in 0..4000 {
        s.write_all(&wire).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(passt.child.try_wait().unwrap().is_none(), "still running");
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(size <= 40960, "kept under --log-size: {size}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("guest frame"), "{text}");
    drop(s);
    assert!(passt.terminate().success());
}
