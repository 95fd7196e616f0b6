//! QEMU guests against a passt socket: the foundation of the CI regression suite.
//!
//! A run ([`run_guest`]) does, in order: preflight (QEMU, the passt binary, root —
//! otherwise a visible skip), guest assembly from Debian packages ([`guest`], cached),
//! then on a fresh thread inside a private network namespace ([`netns`]): the test's
//! own host-side setup (loopback servers, [`services`]), passt (`-f -e [-1] -s SOCK
//! --pcap`, [`passt`]), one or more QEMU processes in sequence ([`vm`]; each may
//! reboot its guest) running the guest script over the serial protocol
//! ([`protocol`]), and teardown of both processes by PID. Artefacts (`serial.log`,
//! `capture.pcap`, `passt.log`, `initrd.img`) stay under
//! `<target>/qemu-harness/<test>/`.
//!
//! Must never: send guest traffic anywhere but passt, or let passt reach a real
//! network (the namespace's only route is a veth pair that ends inside it).

pub mod cpio;
pub mod digest;
pub mod guest;
pub mod netns;
pub mod passt;
pub mod protocol;
pub mod services;
pub mod vm;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

pub use guest::{GuestAssets, guest_assets, harness_root};
pub use passt::{PasstBinary, PasstConfig};
pub use protocol::{CheckReport, CheckStatus, GuestScript, Transcript};
pub use vm::{Accel, AccelChoice};

/// Makes `cmd`'s child receive SIGKILL if the spawning thread dies first (a safety
/// net for a harness killed mid-run; normal teardown kills children by PID first).
pub(crate) fn kill_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which
    // is async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The line printed when a run is skipped; CI logs can grep for it.
pub const SKIP_MARKER: &str = "QEMU-HARNESS-SKIPPED";

/// One run's parameters.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Test name; artefacts go to `<target>/qemu-harness/<name>/`.
    pub name: String,
    /// passt's addressing.
    pub passt: PasstConfig,
    /// Hard limit on the boot (QEMU is killed after it).
    pub timeout: Duration,
    /// `-cpu` override (default: QEMU's own, i.e. `qemu64` under TCG).
    pub cpu: Option<String>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Make passt's gateway address a local address of the run's namespace, so that
    /// traffic passt forwards *to* the gateway address (rather than mapping it to
    /// loopback) is answered by the namespace's own kernel instead of vanishing.
    pub gateway_exists_on_host: bool,
    /// Give the namespace an IPv6 template ([`netns::HOST_V6_ADDR`]/64, default
    /// route via [`netns::HOST_V6_GATEWAY`]) so passt serves IPv6 too (needs
    /// `passt.ipv4_only == false`).
    pub host_ipv6: bool,
    /// QEMU processes started one after the other against the same passt (each
    /// after the previous one exited). More than one needs `passt.one_off == false`.
    pub guests: u32,
    /// Let the guest reboot inside its QEMU process (no `-no-reboot`).
    pub allow_reboot: bool,
}

impl RunSpec {
    /// Defaults: [`PasstConfig::default`] (IPv4 only, `-1`), 90 s timeout, default
    /// CPU, 256 MiB, one guest, no reboot.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            passt: PasstConfig::default(),
            timeout: Duration::from_secs(90),
            cpu: None,
            memory_mib: 256,
            gateway_exists_on_host: false,
            host_ipv6: false,
            guests: 1,
            allow_reboot: false,
        }
    }

    /// As [`RunSpec::new`] with IPv6 on: no `-4`, and an IPv6 template in the
    /// namespace from which passt derives the guest's IPv6 address and gateway.
    pub fn dual_stack(name: &str) -> Self {
        let mut spec = Self::new(name);
        spec.passt.ipv4_only = false;
        spec.host_ipv6 = true;
        spec
    }
}

/// One QEMU process of a run.
#[derive(Debug)]
pub struct QemuRun {
    /// One transcript per boot (more than one when the guest rebooted); times are
    /// host times since this QEMU process started.
    pub boots: Vec<Transcript>,
    /// QEMU's exit status (`None`: killed on timeout, or never started).
    pub exit: Option<std::process::ExitStatus>,
    /// Its hard timeout fired.
    pub timed_out: bool,
    /// Wall time of this QEMU process.
    pub elapsed: Duration,
    /// Its serial log file.
    pub serial_log: PathBuf,
}

/// Everything a finished run reports.
#[derive(Debug)]
pub struct RunReport {
    /// Per check of the first boot, in script order (see [`RunReport::qemu_runs`]
    /// for later boots and later guests).
    pub checks: Vec<CheckReport>,
    /// Every QEMU process of the run, in order (one unless [`RunSpec::guests`] > 1).
    pub qemu_runs: Vec<QemuRun>,
    /// passt had exited before a later guest could start (runs with several guests).
    pub passt_gone_before_guest: Option<usize>,
    /// The binary under test.
    pub passt_bin: PasstBinary,
    /// Accelerator used and why.
    pub accel: AccelChoice,
    /// Kernel package and version, busybox version.
    pub guest: String,
    /// Host time from QEMU start to `/init` starting.
    pub booted_at: Option<Duration>,
    /// Host time from QEMU start to eth0 up.
    pub net_up_at: Option<Duration>,
    /// Host time from QEMU start to `@@DONE`.
    pub done_at: Option<Duration>,
    /// Wall time of all QEMU processes.
    pub elapsed: Duration,
    /// The hard timeout of some QEMU process fired.
    pub timed_out: bool,
    /// `@@WARN` lines from the guest (all boots).
    pub warnings: Vec<String>,
    /// QEMU's stderr.
    pub qemu_stderr: String,
    /// passt's exit status after teardown (`None`: it had to be killed).
    pub passt_exit: Option<std::process::ExitStatus>,
    /// Packets the namespace's outbound veth sent during the run: what passt sent
    /// towards "the network" rather than loopback (ARP for the black-hole next hop
    /// counts too). 0 means everything stayed on loopback.
    pub outbound_tx_packets: u64,
    /// Artefact directory.
    pub dir: PathBuf,
}

impl RunReport {
    /// The check named `name`.
    pub fn check(&self, name: &str) -> Result<&CheckReport> {
        self.checks
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| anyhow!("no check {name} in the script"))
    }

    /// Every boot of every QEMU process, in order.
    pub fn boots(&self) -> Vec<&Transcript> {
        self.qemu_runs.iter().flat_map(|q| q.boots.iter()).collect()
    }

    /// Host time from QEMU start to the end of check `name`.
    pub fn check_done_at(&self, name: &str) -> Option<Duration> {
        self.checks
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.ended_at)
    }

    /// A human summary: binary, accelerator, timings, one line per check, and the
    /// guest's output for every check that did not pass.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let secs = |d: Option<Duration>| {
            d.map(|d| format!("{:.2}s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(s, "== qemu-harness run {} ==", self.dir.display());
        let _ = writeln!(s, "{}", self.passt_bin.describe());
        let _ = writeln!(
            s,
            "accel: {} ({}); guest: {}",
            self.accel.accel.as_arg(),
            self.accel.reason,
            self.guest
        );
        let _ = writeln!(
            s,
            "timing since QEMU start: init {} | eth0 up {} | done {} | total {:.2}s{}",
            secs(self.booted_at),
            secs(self.net_up_at),
            secs(self.done_at),
            self.elapsed.as_secs_f64(),
            if self.timed_out { " (TIMED OUT)" } else { "" }
        );
        for c in &self.checks {
            let dur = match (c.began_at, c.ended_at) {
                (Some(a), Some(b)) => format!(
                    " in {:.2}s (ends at {})",
                    (b - a).as_secs_f64(),
                    secs(Some(b))
                ),
                _ => String::new(),
            };
            let _ = writeln!(s, "  check {:<20} {:?}{dur}", c.name, c.status);
            if !c.passed() {
                for line in &c.output {
                    let _ = writeln!(s, "    | {line}");
                }
            }
        }
        let boots = self.boots();
        if boots.len() > 1 {
            for (q, run) in self.qemu_runs.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "  QEMU #{} ({}): {} boot(s), exit {:?}, {:.2}s{}",
                    q + 1,
                    run.serial_log.display(),
                    run.boots.len(),
                    run.exit,
                    run.elapsed.as_secs_f64(),
                    if run.timed_out { " (TIMED OUT)" } else { "" }
                );
                for (b, boot) in run.boots.iter().enumerate() {
                    for c in &boot.checks {
                        let _ =
                            writeln!(s, "    boot {} check {:<20} {:?}", b + 1, c.name, c.status);
                        if !c.passed() && b + q > 0 {
                            for line in &c.output {
                                let _ = writeln!(s, "      | {line}");
                            }
                        }
                    }
                }
            }
        }
        if let Some(g) = self.passt_gone_before_guest {
            let _ = writeln!(s, "  passt had exited before guest #{g} could start");
        }
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        if !self.qemu_stderr.trim().is_empty() {
            let _ = writeln!(s, "  qemu stderr: {}", self.qemu_stderr.trim());
        }
        let _ = writeln!(
            s,
            "  packets passt sent off-loopback (namespace veth tx): {}",
            self.outbound_tx_packets
        );
        let _ = writeln!(
            s,
            "  artefacts: serial.log passt.log capture.pcap in {}",
            self.dir.display()
        );
        s
    }
}

/// A run either happened or was skipped (with the reason printed).
#[derive(Debug)]
pub enum RunOutcome<T> {
    /// The environment cannot run guests; the reason was printed with [`SKIP_MARKER`].
    Skipped(String),
    /// The guest ran; `T` is what the setup closure handed back (e.g. server handles).
    Ran(Box<RunReport>, T),
}

/// Why this machine cannot run the suite, if it cannot.
pub fn preflight() -> Option<String> {
    if guest::which(vm::QEMU).is_none() {
        return Some(format!(
            "{} not found (apt-get install -y qemu-system-x86; see qemu-harness/install-deps.sh)",
            vm::QEMU
        ));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: cannot create the run's network namespace".into());
    }
    for tool in ["ip", "apt-get", "dpkg"] {
        if guest::which(tool).is_none() {
            return Some(format!("{tool} not found"));
        }
    }
    None
}

/// Runs one guest. `setup` runs inside the run's network namespace before passt
/// starts; it starts host-side peers on 127.0.0.1 and returns the guest script and
/// whatever the test wants back (server handles to join afterwards).
pub fn run_guest<T, F>(spec: &RunSpec, setup: F) -> Result<RunOutcome<T>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<(GuestScript, T)> + Send + 'static,
{
    let bin = PasstBinary::from_env();
    eprintln!("{}", bin.describe());
    if !bin.path.exists() {
        // A missing binary is a configuration error, never a skip: our own is
        // built by `cargo test --workspace` (or `cargo build -p passt-engine`).
        anyhow::bail!(
            "passt binary {} does not exist (build it with `cargo build -p passt-engine --bin passt`, or set PASST_BIN)",
            bin.path.display()
        );
    }
    if let Some(reason) = preflight() {
        // Straight to the stderr handle: libtest captures `eprintln!` of passing tests,
        // and a skip must stay visible.
        // One write, so parallel tests do not interleave within the line.
        use std::io::Write as _;
        let line = format!("{SKIP_MARKER}: {}: {reason}\n", spec.name);
        let _ = std::io::stderr().write_all(line.as_bytes());
        return Ok(RunOutcome::Skipped(reason));
    }
    let assets = guest_assets().context("assembling the guest")?;
    let accel = vm::choose_accel(&assets.kernel);
    eprintln!("accel: {} ({})", accel.accel.as_arg(), accel.reason);
    let dir = harness_root().join(&spec.name);
    std::fs::create_dir_all(&dir)?;
    // passt drops to `nobody`; make sure it can still write its pcap here.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))?;
    }
    let spec = spec.clone();
    let thread = std::thread::Builder::new()
        .name(format!("qemu-harness-{}", spec.name))
        .spawn(move || run_in_netns(spec, bin, assets, accel, dir, setup))?;
    thread.join().map_err(|_| anyhow!("run thread panicked"))?
}

fn run_in_netns<T, F>(
    spec: RunSpec,
    bin: PasstBinary,
    assets: GuestAssets,
    accel: AccelChoice,
    dir: PathBuf,
    setup: F,
) -> Result<RunOutcome<T>>
where
    F: FnOnce() -> Result<(GuestScript, T)>,
{
    let opts = netns::NetnsOptions {
        local_v4: if spec.gateway_exists_on_host {
            vec![spec.passt.gateway]
        } else {
            Vec::new()
        },
        ipv6: spec.host_ipv6,
    };
    netns::enter_private_netns_opts(&opts)?;
    let outbound_before = if spec.host_ipv6 {
        netns::settle_outbound_tx(Duration::from_millis(1200), Duration::from_secs(5))?
    } else {
        netns::outbound_tx_packets()?
    };
    let (script, extra) = setup().context("test setup")?;
    let initrd = dir.join("initrd.img");
    guest::write_run_initrd(&assets.base_initramfs, &script.render(), &initrd)?;
    std::fs::write(dir.join("test.sh"), script.render())?;

    let mut passt = passt::PasstProcess::start(&bin, &spec.passt, &dir, Duration::from_secs(10))?;
    let mut qemu_runs = Vec::new();
    let mut first_boot = None;
    let mut passt_gone_before_guest = None;
    let mut boot_error = None;
    for guest_index in 0..spec.guests.max(1) as usize {
        if guest_index > 0 && passt.try_exit_status()?.is_some() {
            passt_gone_before_guest = Some(guest_index + 1);
            break;
        }
        let serial_log = if guest_index == 0 {
            dir.join("serial.log")
        } else {
            dir.join(format!("serial.guest{}.log", guest_index + 1))
        };
        let config = vm::VmConfig {
            kernel: assets.kernel.clone(),
            initrd: initrd.clone(),
            socket: passt.socket.clone(),
            accel: accel.accel,
            cpu: spec.cpu.clone(),
            memory_mib: spec.memory_mib,
            extra_append: String::new(),
            allow_reboot: spec.allow_reboot,
            timeout: spec.timeout,
            serial_log: serial_log.clone(),
        };
        match vm::boot(&config) {
            Ok(boot) => {
                qemu_runs.push(QemuRun {
                    boots: protocol::parse_boots(&boot.lines, &script.check_names()),
                    exit: boot.exit,
                    timed_out: boot.timed_out,
                    elapsed: boot.elapsed,
                    serial_log,
                });
                if first_boot.is_none() {
                    first_boot = Some(boot);
                }
            }
            Err(e) => {
                boot_error = Some(e);
                break;
            }
        }
    }
    // With -1 passt quits once QEMU disconnects; give it a moment, then kill by PID.
    let mut passt_exit = None;
    for _ in 0..25 {
        if let Some(status) = passt.try_exit_status()? {
            passt_exit = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if passt_exit.is_none() {
        passt.stop()?;
    }
    drop(passt);
    let outbound_tx_packets = netns::outbound_tx_packets()?.saturating_sub(outbound_before);
    if let Some(e) = boot_error {
        return Err(e);
    }
    let boot = first_boot.ok_or_else(|| anyhow!("no QEMU process ran"))?;
    let transcript = qemu_runs
        .first()
        .and_then(|q| q.boots.first())
        .cloned()
        .unwrap_or_default();
    let elapsed = qemu_runs.iter().map(|q| q.elapsed).sum();
    let timed_out = qemu_runs.iter().any(|q| q.timed_out);
    let warnings = qemu_runs
        .iter()
        .flat_map(|q| q.boots.iter())
        .flat_map(|b| b.warnings.iter().cloned())
        .collect();
    let report = RunReport {
        checks: transcript.checks,
        qemu_runs,
        passt_gone_before_guest,
        passt_bin: bin,
        accel,
        guest: format!(
            "{} {} + busybox-static {}",
            assets.kernel_package, assets.kernel_version, assets.busybox_version
        ),
        booted_at: transcript.booted_at,
        net_up_at: transcript.net_up_at,
        done_at: transcript.done_at,
        elapsed,
        timed_out,
        warnings,
        qemu_stderr: boot.qemu_stderr,
        passt_exit,
        outbound_tx_packets,
        dir,
    };
    Ok(RunOutcome::Ran(Box::new(report), extra))
}
