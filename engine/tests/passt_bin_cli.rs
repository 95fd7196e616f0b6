//! The `passt` binary's command line, as a user sees it: exit statuses and
//! messages for bad options (upstream: status 1, a message naming the
//! option), `--help`, `--version`, and start-up failures.

use std::process::{Command, Output};

const PASST: &str = env!("CARGO_BIN_EXE_passt");

fn passt(args: &[&str]) -> Output {
    Command::new(PASST)
        .args(args)
        .output()
        .expect("run the passt binary")
}

fn stderr_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bad_options_exit_1_with_one_line_naming_them() {
    for (args, needle) in [
        (&["--bogus"][..], "'--bogus'"),
        (&["-z"][..], "'z'"),
        (&["-m"][..], "--mtu"),
        (&["-m", "65522"][..], "MTU: 65522"),
        (&["-a", "1.2.3"][..], "1.2.3"),
        (&["-n", "33"][..], "netmask: 33"),
        (&["stray"][..], "stray"),
        (&["-s", "/tmp/x.sock", "-F", "5"][..], "--socket and --fd"),
        (&["-t", "22a"][..], "Invalid port specifier 22a"),
        (&["-t", "auto"][..], "only allowed for pasta"),
        (&["-u", "22,22"][..], "Overlapping port specifier 22,22"),
        (
            &["-t", "all", "-t", "22"][..],
            "Specific ports cannot be specified",
        ),
        (&["--vhost-user"][..], "not supported yet"),
        (&["--repair-path", "/tmp/r"][..], "not supported yet"),
        (&["--log-size", "40959"][..], "Invalid --log-size: 40959"),
    ] {
        let o = passt(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {o:?}");
        let lines = stderr_lines(&o);
        assert_eq!(lines.len(), 1, "{args:?}: one line expected, got {lines:?}");
        assert!(lines[0].contains(needle), "{args:?}: {lines:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_and_version_succeed() {
    let o = passt(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    for opt in [
        "--socket",
        "--fd",
        "--one-off",
        "--pcap",
        "--tcp-ports",
        "--udp-ports",
        "--ipv4-only",
        "--dns",
        "--no-dhcp",
    ] {
        assert!(text.contains(opt), "help lacks {opt}");
    }
    assert_eq!(passt(&["-h"]).status.code(), Some(0));

    let o = passt(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("passt "));
}

#[test]
fn missing_interface_is_reported() {
    let o = passt(&["-f", "-i", "nosuchif0"]);
    assert_eq!(o.status.code(), Some(1));
    let lines = stderr_lines(&o);
    assert_eq!(
        lines,
        vec!["Invalid interface name nosuchif0: No such device".to_string()]
    );
}

#[test]
fn socket_in_use_by_a_live_listener_is_refused() {
    let dir = std::env::temp_dir().join(format!("passt-bin-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Started as root, passt runs as nobody: its files go where nobody
    // may write (sticky, like /tmp).
    std::fs::set_permissions(
        &dir,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o1777),
    )
    .unwrap();
    let path = dir.join("busy.socket");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let o = passt(&["-f", "-q", "-s", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let lines = stderr_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("Failed to bind"), "{lines:?}");
    assert!(path.exists(), "the other listener's socket is left alone");
    drop(_listener);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn log_file_takes_the_messages_instead_of_stderr() {
    let dir = std::env::temp_dir().join(format!("passt-bin-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Started as root, passt runs as nobody: its files go where nobody
    // may write (sticky, like /tmp).
    std::fs::set_permissions(
        &dir,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o1777),
    )
    .unwrap();
    let log = dir.join("passt.log");
    let o = passt(&["-f", "-l", log.to_str().unwrap(), "-i", "nosuchif0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stderr.is_empty(), "{o:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("Invalid interface name nosuchif0: No such device"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
