//! The `pasta` binary end to end, against the real kernel: a command run
//! in new namespaces (exit status, the tap and `lo` it sees, signals),
//! joining a namespace by `--netns` and by PID and leaving when it goes,
//! `--no-netns-quit`, the `pasta -> passt` symlink (argv[0] dispatch), and
//! one run as an unprivileged user.
//!
//! Needs root, `/dev/net/tun` and `ip`; skips with a printed reason
//! otherwise. Only namespaces the tests create (named `ptb<pid>-<n>`, and
//! removed at the end) and pasta's own are touched; no traffic leaves them.
//! Traffic through pasta is tap-harness's (tests of the `pastatest` work).
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const PASTA: &str = env!("CARGO_BIN_EXE_pasta");
const PASST: &str = env!("CARGO_BIN_EXE_passt");

fn skip_reason() -> Option<String> {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun missing".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` not installed".into());
    }
    None
}

macro_rules! require_root {
    ($name:expr) => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIP {}: {why}", $name);
            return;
        }
    };
}

/// A network namespace this test created with `ip netns add`, deleted when
/// dropped (if still there).
struct TestNetns(String);

impl TestNetns {
    fn new() -> TestNetns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ptb{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip");
        assert!(st.success(), "ip netns add {name}");
        TestNetns(name)
    }

    fn delete(&self) {
        let st = Command::new("ip")
            .args(["netns", "del", &self.0])
            .status()
            .expect("run ip");
        assert!(st.success(), "ip netns del {}", self.0);
    }

    /// `ip -o link` inside.
    fn links(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "ip", "-o", "link"])
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if Path::new("/run/netns").join(&self.0).exists() {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
}

/// Kills and reaps a child process (by its PID) when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reaped {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// The exit status within `limit`, or `None` if still running.
    fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.0.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn(cmd: &mut Command) -> Reaped {
    Reaped(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    )
}

/// Runs `cmd` to completion within 30 s (killed otherwise).
fn run(cmd: &mut Command) -> Output {
    let mut child = spawn(cmd);
    let status = child
        .wait_for(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{cmd:?} did not finish in 30 s"));
    let mut out = Output {
        status,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    if let Some(mut s) = child.0.stdout.take() {
        s.read_to_end(&mut out.stdout).unwrap();
    }
    if let Some(mut s) = child.0.stderr.take() {
        s.read_to_end(&mut out.stderr).unwrap();
    }
    out
}

fn pasta(args: &[&str]) -> Output {
    run(Command::new(PASTA).args(args))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `cond` every 20 ms for up to `limit`.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// The line of `ip -o link` output for interface `name`.
fn link_line<'a>(links: &'a str, name: &str) -> Option<&'a str> {
    links
        .lines()
        .find(|l| l.split(':').nth(1).map(str::trim) == Some(name))
}

#[test]
fn the_commands_exit_status_is_pastas() {
    require_root!("the_commands_exit_status_is_pastas");
    let out = pasta(&["-q", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "stderr: {}", text(&out.stderr));
    let out = pasta(&["-q", "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    // Killed by a signal: 128 + its number, as shells report it.
    let out = pasta(&["-q", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(128 + 9));
    let out = pasta(&["-q", "--", "/nonexistent/command"]);
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn the_command_sees_the_tap_named_after_the_template_and_lo_up_in_new_namespaces() {
    require_root!("the_command_sees_the_tap_named_after_the_template_and_lo_up_in_new_namespaces");
    let script =
        "ip -o link; for n in net user uts ipc; do echo ns $n $(readlink /proc/self/ns/$n); done";
    let out = pasta(&["-q", "--", "sh", "-c", script]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lo = link_line(&stdout, "lo").expect("lo listed");
    assert!(lo.contains(",UP"), "lo is up: {lo}");
    let host = passt_engine::runtime::host_probe::detect(None, None, None).unwrap();
    let template = host
        .ipv4
        .as_ref()
        .map(|v| v.ifname.clone())
        .or(host.ipv6.as_ref().map(|v| v.ifname.clone()));
    if let Some(name) = template {
        assert!(
            link_line(&stdout, &name).is_some(),
            "tap named {name}: {stdout}"
        );
    }
    assert_eq!(
        stdout.lines().filter(|l| l.contains(": ")).count(),
        2,
        "{stdout}"
    );
    for ns in ["net", "user", "uts", "ipc"] {
        let own = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let line = format!("ns {ns} {}", own.display());
        assert!(!stdout.contains(&line), "a new {ns} namespace: {stdout}");
    }

    let out = pasta(&["-q", "-I", "ptbtap0", "--", "ip", "-o", "link"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    let tap = link_line(&stdout, "ptbtap0").expect("tap named by -I");
    assert!(
        tap.contains("link/ether"),
        "an Ethernet (tap) device: {tap}"
    );
}

#[test]
fn sigint_is_left_to_the_command_and_sigterm_is_passed_on() {
    require_root!("sigint_is_left_to_the_command_and_sigterm_is_passed_on");
    // The command's parent is pasta: SIGINT (what a terminal sends both)
    // does not end pasta, which keeps serving until the command exits.
    let out = pasta(&[
        "-q",
        "--",
        "sh",
        "-c",
        "trap '' INT; kill -INT $PPID; sleep 0.3; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "stderr: {}", text(&out.stderr));
    // SIGTERM to pasta reaches the command, whose status is pasta's.
    let out = pasta(&[
        "-q",
        "--",
        "sh",
        "-c",
        "trap 'exit 9' TERM; kill -TERM $PPID; sleep 10 & wait",
    ]);
    assert_eq!(out.status.code(), Some(9), "stderr: {}", text(&out.stderr));
}

#[test]
fn joined_by_netns_name_pasta_leaves_when_the_namespace_is_deleted() {
    require_root!("joined_by_netns_name_pasta_leaves_when_the_namespace_is_deleted");
    let ns = TestNetns::new();
    let mut p = spawn(Command::new(PASTA).args(["-q", "-f", "-I", "ptbtap1", "--netns", &ns.0]));
    assert!(
        eventually(Duration::from_secs(10), || link_line(
            &ns.links(),
            "ptbtap1"
        )
        .is_some()),
        "tap in the namespace: {}",
        ns.links()
    );
    let links = ns.links();
    assert!(link_line(&links, "lo").unwrap().contains(",UP"), "{links}");
    assert!(
        p.wait_for(Duration::from_millis(200)).is_none(),
        "still serving"
    );
    ns.delete();
    let st = p.wait_for(Duration::from_secs(10)).expect("pasta exits");
    assert_eq!(st.code(), Some(0));
}

#[test]
fn no_netns_quit_keeps_pasta_running_after_the_namespace_is_deleted() {
    require_root!("no_netns_quit_keeps_pasta_running_after_the_namespace_is_deleted");
    let ns = TestNetns::new();
    let path = format!("/run/netns/{}", ns.0);
    let mut p = spawn(Command::new(PASTA).args([
        "-q",
        "-f",
        "-I",
        "ptbtap2",
        "--no-netns-quit",
        "--netns",
        &path,
    ]));
    assert!(eventually(Duration::from_secs(10), || {
        link_line(&ns.links(), "ptbtap2").is_some()
    }));
    ns.delete();
    assert!(
        p.wait_for(Duration::from_millis(1500)).is_none(),
        "--no-netns-quit: still running"
    );
    // SAFETY: signals our own child, by PID.
    unsafe { libc::kill(p.pid() as i32, libc::SIGTERM) };
    let st = p
        .wait_for(Duration::from_secs(10))
        .expect("SIGTERM ends it");
    assert_eq!(st.code(), Some(0));
}

#[test]
fn in_the_background_pasta_writes_its_pid_and_still_leaves_with_the_namespace() {
    require_root!("in_the_background_pasta_writes_its_pid_and_still_leaves_with_the_namespace");
    let ns = TestNetns::new();
    let pid_file = std::env::temp_dir().join(format!("{}.pid", ns.0));
    // Podman's way: no -f, a pid file; the first process returns once the
    // namespace is served.
    let out = pasta(&["-q", "--netns", &ns.0, "-P", pid_file.to_str().unwrap()]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    let alive = |pid: i32| Path::new(&format!("/proc/{pid}")).exists();
    assert!(alive(pid));
    assert!(ns.links().lines().count() >= 2, "{}", ns.links());
    ns.delete();
    let gone = eventually(Duration::from_secs(10), || !alive(pid));
    if !gone {
        // SAFETY: the daemon this test started, by PID.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(gone, "the daemon left with the namespace");
    assert!(!pid_file.exists(), "pid file removed at exit");
}

#[test]
fn joined_by_pid_pasta_leaves_when_the_process_exits() {
    require_root!("joined_by_pid_pasta_leaves_when_the_process_exits");
    let mut holder = spawn(Command::new("unshare").args(["-n", "sleep", "60"]));
    let ns_of = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    let own = ns_of(std::process::id());
    assert!(eventually(Duration::from_secs(5), || {
        ns_of(holder.pid()).is_some() && ns_of(holder.pid()) != own
    }));
    let pid = holder.pid().to_string();
    let mut p = spawn(Command::new(PASTA).args(["-q", "-f", "-I", "ptbtap3", &pid]));
    let links = || {
        let out = Command::new("nsenter")
            .args(["-t", &pid, "-n", "ip", "-o", "link"])
            .output()
            .expect("nsenter");
        text(&out.stdout)
    };
    assert!(
        eventually(Duration::from_secs(10), || link_line(&links(), "ptbtap3")
            .is_some()),
        "{}",
        links()
    );
    assert!(p.wait_for(Duration::from_millis(200)).is_none());
    // SAFETY: our own child, by PID.
    unsafe { libc::kill(holder.pid() as i32, libc::SIGKILL) };
    let _ = holder.wait_for(Duration::from_secs(5));
    let st = p.wait_for(Duration::from_secs(10)).expect("pasta exits");
    assert_eq!(st.code(), Some(0));
}

#[test]
fn argv0_decides_the_program() {
    require_root!("argv0_decides_the_program");
    let dir = std::env::temp_dir().join(format!("ptb-argv0-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = |name: &str, to: &str| -> PathBuf {
        let p = dir.join(name);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(to, &p).unwrap();
        p
    };
    // Upstream's installation: pasta -> passt.
    let as_pasta = link("pasta", PASST);
    let out = run(Command::new(&as_pasta).args(["-q", "--", "sh", "-c", "exit 3"]));
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    let out = run(Command::new(&as_pasta).arg("--version"));
    assert!(
        text(&out.stdout).starts_with("pasta "),
        "{}",
        text(&out.stdout)
    );
    // The pasta binary named passt is passt.
    let as_passt = link("passt", PASTA);
    let out = run(Command::new(&as_passt).args(["--netns", "x"]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).trim(), "--netns is for pasta mode only");
    // Each binary by its own name.
    let out = run(Command::new(PASST).args(["--config-net"]));
    assert_eq!(
        text(&out.stderr).trim(),
        "--config-net is for pasta mode only"
    );
    let out = run(Command::new(PASTA).args(["-s", "/tmp/x.sock"]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).trim(), "--socket is for passt mode only");
    let out = run(Command::new(PASTA).args(["--bogus"]));
    assert_eq!(
        text(&out.stderr).trim(),
        "pasta: unrecognized option '--bogus'"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unprivileged_user_gets_its_own_user_namespace() {
    require_root!("an_unprivileged_user_gets_its_own_user_namespace");
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIP an_unprivileged_user_gets_its_own_user_namespace: no setpriv");
        return;
    }
    // Distributions' udev rule makes /dev/net/tun 0666 (what rootless pasta
    // relies on); machines without it have 0600, so the test sets it.
    let st = Command::new("chmod")
        .args(["0666", "/dev/net/tun"])
        .status()
        .unwrap();
    assert!(st.success());
    let out = run(Command::new("setpriv").args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        PASTA,
        "-q",
        "-I",
        "ptbtap4",
        "--",
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; ip -o link; exit 5",
    ]));
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(5),
        "stdout: {stdout} stderr: {}",
        text(&out.stderr)
    );
    let maps: Vec<Vec<&str>> = stdout
        .lines()
        .take(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        maps,
        vec![vec!["0", "65534", "1"]; 2],
        "own ids mapped to 0"
    );
    assert_eq!(stdout.lines().nth(2), Some("0"), "root inside");
    assert!(link_line(&stdout, "ptbtap4").is_some(), "{stdout}");
    assert!(
        link_line(&stdout, "lo").unwrap().contains(",UP"),
        "{stdout}"
    );
}

#[test]
fn config_net_gives_the_tap_the_hosts_address_and_gateway_and_brings_it_up() {
    require_root!("config_net_gives_the_tap_the_hosts_address_and_gateway_and_brings_it_up");
    let host = passt_engine::runtime::host_probe::detect(None, None, None).unwrap();
    let out = pasta(&[
        "-q",
        "--config-net",
        "-I",
        "ptbtap5",
        "--",
        "sh",
        "-c",
        "ip -o link show ptbtap5; ip -o -4 addr show dev ptbtap5; ip -4 route show dev ptbtap5",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let link = link_line(&stdout, "ptbtap5").expect("the tap");
    assert!(link.contains(",UP") && link.contains("mtu 65520"), "{link}");
    if let Some(v4) = &host.ipv4 {
        let want = format!("inet {}/{}", v4.addr, v4.prefix_len);
        assert!(stdout.contains(&want), "{want} in {stdout}");
        if let Some(gw) = v4.gateway {
            let want = format!("default via {gw}");
            assert!(stdout.contains(&want), "{want} in {stdout}");
        }
    }
}
