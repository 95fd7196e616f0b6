//! Starting and stopping the passt binary under test.
//!
//! Owns: choosing the binary (`PASST_BIN`, else this workspace's own `passt`, built
//! next to the test executable),
//! its command line (`-f -e [-1] -s SOCK --pcap FILE` plus the addressing of
//! [`PasstConfig`]), waiting until its UNIX socket listens, and killing it by PID.
//! Must never: connect to the socket itself (with `-1` that would use up passt's one
//! client), or signal any process it did not start.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Debian's passt, the reference implementation (`PASST_BIN=/usr/bin/passt`).
pub const DEBIAN_PASST_BIN: &str = "/usr/bin/passt";

/// This workspace's own `passt`: cargo puts binaries in the profile directory
/// (`target/<profile>/passt`), one level above the test executables in
/// `target/<profile>/deps/`.
pub fn workspace_passt_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    profile_dir.join("passt")
}

/// The passt binary a run uses, and why.
#[derive(Debug, Clone)]
pub struct PasstBinary {
    /// Path to the executable.
    pub path: PathBuf,
    /// True if it came from `PASST_BIN`.
    pub from_env: bool,
}

impl PasstBinary {
    /// `PASST_BIN` if set and non-empty, else [`workspace_passt_bin`].
    pub fn from_env() -> Self {
        match std::env::var_os("PASST_BIN").filter(|v| !v.is_empty()) {
            Some(path) => Self {
                path: PathBuf::from(path),
                from_env: true,
            },
            None => Self {
                path: workspace_passt_bin(),
                from_env: false,
            },
        }
    }

    /// A line for the test output saying which binary is under test.
    pub fn describe(&self) -> String {
        if self.from_env {
            format!("passt under test: {} (from PASST_BIN)", self.path.display())
        } else {
            format!(
                "passt under test: {} (this workspace's; PASST_BIN={DEBIAN_PASST_BIN} tests Debian's)",
                self.path.display()
            )
        }
    }
}

/// Addressing passt hands to the guest (DHCP) and its behaviour switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasstConfig {
    /// `-a`: the guest's IPv4 address.
    pub address: Ipv4Addr,
    /// `-n`: prefix length.
    pub prefix_len: u8,
    /// `-g`: the gateway (mapped to the host's loopback unless `--no-map-gw`).
    pub gateway: Ipv4Addr,
    /// `-m`: MTU assigned via DHCP.
    pub mtu: u16,
    /// `-D`: DNS servers announced via DHCP.
    pub dns: Vec<Ipv4Addr>,
    /// `-4`: IPv4 only. Without it passt also serves IPv6 when the run's namespace
    /// has an IPv6 default route ([`crate::RunSpec::host_ipv6`]) or `ipv6_address`
    /// is given.
    pub ipv4_only: bool,
    /// A second `-a` with the guest's IPv6 address (default: passt copies the
    /// template interface's address).
    pub ipv6_address: Option<Ipv6Addr>,
    /// `-1`: quit when the first guest disconnects. Off, passt keeps listening and
    /// a second QEMU can connect after the first one left.
    pub one_off: bool,
    /// Extra arguments appended verbatim.
    pub extra_args: Vec<String>,
}

impl Default for PasstConfig {
    /// The classic user-mode addressing: 10.0.2.15/24, gateway .2, DNS .3, MTU 1500.
    /// These addresses exist only between the guest and passt.
    fn default() -> Self {
        Self {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 0, 2, 2),
            mtu: 1500,
            dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            ipv4_only: true,
            ipv6_address: None,
            one_off: true,
            extra_args: Vec::new(),
        }
    }
}

impl PasstConfig {
    /// The arguments after the fixed `-f -e [-1] -s SOCK --pcap FILE`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "-a".into(),
            self.address.to_string(),
            "-n".into(),
            self.prefix_len.to_string(),
            "-g".into(),
            self.gateway.to_string(),
            "-m".into(),
            self.mtu.to_string(),
        ];
        if let Some(v6) = self.ipv6_address {
            args.push("-a".into());
            args.push(v6.to_string());
        }
        for dns in &self.dns {
            args.push("-D".into());
            args.push(dns.to_string());
        }
        if self.ipv4_only {
            args.push("-4".into());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// A running passt; killed (by PID) and reaped on drop.
#[derive(Debug)]
pub struct PasstProcess {
    child: Child,
    /// The UNIX socket QEMU connects to.
    pub socket: PathBuf,
    /// The pcap passt writes.
    pub pcap: PathBuf,
    /// passt's stdout+stderr.
    pub log: PathBuf,
}

impl PasstProcess {
    /// Starts `bin -f -e [-1] -s <dir>/passt.sock --pcap <dir>/capture.pcap <config>`
    /// and waits (up to `ready_timeout`) until the socket is listening.
    pub fn start(
        bin: &PasstBinary,
        config: &PasstConfig,
        dir: &Path,
        ready_timeout: Duration,
    ) -> Result<Self> {
        let socket = dir.join("passt.sock");
        let pcap = dir.join("capture.pcap");
        let log = dir.join("passt.log");
        let _ = std::fs::remove_file(&socket);
        let _ = std::fs::remove_file(&pcap);
        let log_file = File::create(&log)?;
        let mut cmd = Command::new(&bin.path);
        cmd.args(["-f", "-e"]);
        if config.one_off {
            cmd.arg("-1");
        }
        cmd.arg("-s")
            .arg(&socket)
            .arg("--pcap")
            .arg(&pcap)
            .args(config.args())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        crate::kill_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.path.display()))?;
        let mut me = Self {
            child,
            socket,
            pcap,
            log,
        };
        let deadline = Instant::now() + ready_timeout;
        loop {
            if let Some(status) = me.child.try_wait()? {
                bail!(
                    "passt exited before listening ({status}); log:\n{}",
                    std::fs::read_to_string(&me.log).unwrap_or_default()
                );
            }
            if unix_socket_listening(&me.socket)? {
                return Ok(me);
            }
            if Instant::now() >= deadline {
                bail!(
                    "passt socket {} not listening after {ready_timeout:?}; log:\n{}",
                    me.socket.display(),
                    std::fs::read_to_string(&me.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// passt's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether passt has exited, without waiting.
    pub fn try_exit_status(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Kills (SIGKILL, by PID) if still running, reaps, and returns the exit status.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        if self.child.try_wait()?.is_none() {
            let _ = self.child.kill();
        }
        Ok(self.child.wait()?)
    }
}

impl Drop for PasstProcess {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// True if a listening UNIX socket is bound at `path` in this thread's network
/// namespace (`/proc/thread-self/net/unix`, flag `__SO_ACCEPTCON` = 0x10000).
fn unix_socket_listening(path: &Path) -> Result<bool> {
    let table = std::fs::read_to_string("/proc/thread-self/net/unix")?;
    let wanted = path.to_string_lossy();
    Ok(table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode Path
        fields.len() >= 8
            && fields[7] == wanted
            && u32::from_str_radix(fields[3], 16).is_ok_and(|flags| flags & 0x10000 != 0)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_arguments() {
        let args = PasstConfig::default().args();
        assert_eq!(
            args,
            vec![
                "-a",
                "10.0.2.15",
                "-n",
                "24",
                "-g",
                "10.0.2.2",
                "-m",
                "1500",
                "-D",
                "10.0.2.3",
                "-4"
            ]
        );
        let dual = PasstConfig {
            ipv4_only: false,
            ipv6_address: Some("2001:db8:1::9".parse().expect("v6")),
            dns: Vec::new(),
            ..PasstConfig::default()
        };
        let args = dual.args();
        assert!(!args.contains(&"-4".to_string()));
        assert_eq!(args[8..], ["-a", "2001:db8:1::9"]);
    }
}
