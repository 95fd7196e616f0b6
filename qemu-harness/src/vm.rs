//! Booting one QEMU guest and capturing its serial console.
//!
//! Owns: choosing the accelerator (a short KVM boot probe, else TCG), the QEMU
//! command line (`-netdev stream` to a UNIX socket, virtio-net-pci, no default
//! devices so no other network path exists), reading the serial console line by line
//! with host timestamps into a log file, and the hard timeout. QEMU is killed by PID
//! on timeout and on drop.
//! Must never: give the guest any network besides the passt socket.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// The accelerator a boot uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU's software emulator.
    Tcg,
}

impl Accel {
    /// The `-accel` argument.
    pub fn as_arg(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The accelerator choice and the evidence for it.
#[derive(Debug, Clone)]
pub struct AccelChoice {
    /// What boots use.
    pub accel: Accel,
    /// Why (printed in test output).
    pub reason: String,
}

/// Chooses the accelerator once per process. `QEMU_HARNESS_ACCEL=kvm|tcg` forces it;
/// otherwise, with /dev/kvm present, boots `kernel` under KVM with no initrd and
/// looks for the kernel's banner on the serial console within 3 s. (Nested KVM here
/// opens /dev/kvm fine and runs the BIOS, then hangs once the kernel starts.)
pub fn choose_accel(kernel: &Path) -> AccelChoice {
    static CHOICE: OnceLock<AccelChoice> = OnceLock::new();
    CHOICE
        .get_or_init(|| match std::env::var("QEMU_HARNESS_ACCEL").as_deref() {
            Ok("kvm") => AccelChoice {
                accel: Accel::Kvm,
                reason: "forced by QEMU_HARNESS_ACCEL=kvm".into(),
            },
            Ok("tcg") => AccelChoice {
                accel: Accel::Tcg,
                reason: "forced by QEMU_HARNESS_ACCEL=tcg".into(),
            },
            _ => probe_kvm(kernel),
        })
        .clone()
}

fn probe_kvm(kernel: &Path) -> AccelChoice {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return AccelChoice {
            accel: Accel::Tcg,
            reason: "/dev/kvm cannot be opened".into(),
        };
    }
    let started = Instant::now();
    let mut cmd = Command::new(QEMU);
    crate::kill_with_parent(&mut cmd);
    let spawned = cmd
        .args(["-accel", "kvm", "-cpu", "host", "-m", "128", "-nodefaults"])
        .args([
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return AccelChoice {
                accel: Accel::Tcg,
                reason: format!("KVM probe could not start QEMU: {e}"),
            };
        }
    };
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
                if String::from_utf8_lossy(&line).contains("Linux version") {
                    let _ = tx.send(());
                    return;
                }
            }
        });
    }
    let banner = rx.recv_timeout(Duration::from_secs(3)).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    if banner {
        AccelChoice {
            accel: Accel::Kvm,
            reason: format!(
                "KVM probe printed the kernel banner in {:?}",
                started.elapsed()
            ),
        }
    } else {
        AccelChoice {
            accel: Accel::Tcg,
            reason: "KVM probe: no kernel banner within 3 s (nested KVM does not run guests)"
                .into(),
        }
    }
}

/// One boot's parameters.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// `-kernel`.
    pub kernel: PathBuf,
    /// `-initrd`.
    pub initrd: PathBuf,
    /// passt's UNIX socket (`-netdev stream,addr.type=unix,addr.path=`).
    pub socket: PathBuf,
    /// Accelerator.
    pub accel: Accel,
    /// `-cpu`; `None` = QEMU's default (`qemu64` under TCG, `host` is used under KVM).
    pub cpu: Option<String>,
    /// `-m` in MiB.
    pub memory_mib: u32,
    /// Extra kernel command-line words.
    pub extra_append: String,
    /// Let a guest reboot (`reboot -f`) restart it inside the same QEMU process
    /// (no `-no-reboot`); QEMU then exits only on power-off or the timeout.
    pub allow_reboot: bool,
    /// Hard limit on the whole boot.
    pub timeout: Duration,
    /// Where the serial transcript is written (with host timestamps).
    pub serial_log: PathBuf,
}

impl VmConfig {
    /// The full QEMU argument list.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "-accel".into(),
            self.accel.as_arg().into(),
            "-m".into(),
            self.memory_mib.to_string(),
            // No default NIC (QEMU would add a user-mode one), no default VGA etc.
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-nographic".into(),
            "-serial".into(),
            "stdio".into(),
            "-monitor".into(),
            "none".into(),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-append".into(),
            format!("console=ttyS0 quiet panic=-1 {}", self.extra_append)
                .trim_end()
                .to_string(),
            "-netdev".into(),
            format!(
                "stream,id=n0,server=off,addr.type=unix,addr.path={}",
                self.socket.display()
            ),
            "-device".into(),
            // romfile= : no iPXE option ROM, the guest boots from -kernel.
            "virtio-net-pci,netdev=n0,romfile=".into(),
        ];
        if !self.allow_reboot {
            args.push("-no-reboot".into());
        }
        match (&self.cpu, self.accel) {
            (Some(cpu), _) => args.extend(["-cpu".into(), cpu.clone()]),
            (None, Accel::Kvm) => args.extend(["-cpu".into(), "host".into()]),
            (None, Accel::Tcg) => {}
        }
        args
    }
}

/// What one boot produced.
#[derive(Debug, Clone)]
pub struct BootOutcome {
    /// Serial lines with the host time since QEMU was spawned.
    pub lines: Vec<(Duration, String)>,
    /// QEMU's exit status (`None` if it was killed on timeout).
    pub exit: Option<ExitStatus>,
    /// True if the hard timeout fired.
    pub timed_out: bool,
    /// Wall time of the whole boot.
    pub elapsed: Duration,
    /// QEMU's stderr.
    pub qemu_stderr: String,
}

/// A QEMU child; killed by PID and reaped on drop.
struct QemuChild(Child);

impl Drop for QemuChild {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Boots, captures the serial console until QEMU exits or the timeout fires.
pub fn boot(config: &VmConfig) -> Result<BootOutcome> {
    let started = Instant::now();
    let stderr_path = config.serial_log.with_extension("qemu-stderr");
    let mut cmd = Command::new(QEMU);
    cmd.args(config.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr_path)?);
    crate::kill_with_parent(&mut cmd);
    let mut child = QemuChild(cmd.spawn().with_context(|| format!("starting {QEMU}"))?);
    let stdout = child
        .0
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no QEMU stdout"))?;
    let (tx, rx) = mpsc::channel::<(Duration, String)>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let text = String::from_utf8_lossy(&line).into_owned();
            if tx.send((started.elapsed(), text)).is_err() {
                return;
            }
        }
    });

    let mut log = File::create(&config.serial_log)?;
    let deadline = started + config.timeout;
    let mut lines = Vec::new();
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok((at, text)) => {
                let _ = writeln!(
                    log,
                    "[{:>8.3}] {}",
                    at.as_secs_f64(),
                    text.trim_end_matches('\r')
                );
                lines.push((at, text));
            }
            Err(RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let exit = if timed_out {
        let _ = writeln!(
            log,
            "[{:>8.3}] @@HARNESS timeout: killing QEMU",
            started.elapsed().as_secs_f64()
        );
        let _ = child.0.kill();
        let _ = child.0.wait();
        None
    } else {
        Some(child.0.wait()?)
    };
    let _ = reader.join();
    Ok(BootOutcome {
        lines,
        exit,
        timed_out,
        elapsed: started.elapsed(),
        qemu_stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    })
}
