//! Guest assembly: a Debian kernel and a busybox initramfs, built from Debian packages
//! only (`apt-get download` + `dpkg -x`) and cached under
//! `<target>/qemu-harness/cache/<key>/`, where the key names the exact package versions.
//!
//! Owns: resolving the kernel package behind `linux-image-amd64`, extracting the kernel,
//! busybox and the virtio-net module chain, the `/init` and udhcpc scripts, and the
//! per-run initrd (cached base archive + a small appended archive holding `/test.sh`).
//! Must never: boot anything, touch the network beyond apt's own downloads, or modify
//! the host's installed packages.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, anyhow, bail};

use crate::cpio::CpioWriter;

/// The meta-package whose dependency names the actual kernel image package.
const KERNEL_META_PACKAGE: &str = "linux-image-amd64";
/// The package that provides a statically linked `/bin/busybox`.
const BUSYBOX_PACKAGE: &str = "busybox-static";

/// virtio-net and its dependencies in load order. Debian's 6.1 kernel builds all of
/// these as modules.
pub const VIRTIO_NET_MODULES: [&str; 8] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

/// Bumped whenever the layout of the cache directory changes.
const CACHE_FORMAT: u32 = 1;
/// Bumped whenever `ensure_base_initramfs` lays out the archive differently (the
/// scripts and binaries are hashed on their own).
const INITRAMFS_LAYOUT: u32 = 2;

/// The `/init` of the guest. It installs busybox applet links, loads the virtio-net
/// chain, brings up `lo` and `eth0`, defines the check protocol and runs `/test.sh`.
///
/// Serial protocol (parsed by [`crate::protocol`]):
/// `@@BOOT uptime=S`, then per check `@@CHECK name BEGIN`, its output,
/// `@@CHECK name PASS` or `@@CHECK name FAIL rc=N`, and finally `@@DONE uptime=S`.
pub const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
uptime_s() { cut -d' ' -f1 /proc/uptime; }
echo "@@BOOT uptime=$(uptime_s)"
for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m.ko" || echo "@@WARN insmod $m failed"
done
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
ip link set eth0 up || echo "@@WARN no eth0"
echo "@@NET uptime=$(uptime_s)"
# check NAME FUNCTION: runs FUNCTION in a subshell and frames its output.
check() {
    __name=$1
    echo "@@CHECK $__name BEGIN uptime=$(uptime_s)"
    ( "$2" ) 2>&1
    __rc=$?
    if [ $__rc -eq 0 ]; then
        echo "@@CHECK $__name PASS uptime=$(uptime_s)"
    else
        echo "@@CHECK $__name FAIL rc=$__rc uptime=$(uptime_s)"
    fi
}
if [ -f /test.sh ]; then . /test.sh; else echo "@@WARN no /test.sh"; fi
echo "@@DONE uptime=$(uptime_s)"
poweroff -f
"#;

/// busybox `udhcpc` calls this with `$1` = deconfig|bound|renew|nak and the lease in
/// environment variables (`ip`, `mask` in bits, `router`, `dns`, `mtu`, ...). It applies
/// the lease and records it in `/tmp/lease` for the test script to print.
pub const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    {
        echo "ip=$ip"
        echo "mask=$mask"
        echo "subnet=$subnet"
        echo "router=$router"
        echo "mtu=$mtu"
        echo "dns=$dns"
        echo "serverid=$serverid"
        echo "lease=$lease"
    } > /tmp/lease
    ;;
esac
exit 0
"#;

/// A built guest: kernel and base initramfs, both inside the cache.
#[derive(Debug, Clone)]
pub struct GuestAssets {
    /// `vmlinuz` extracted from the kernel package.
    pub kernel: PathBuf,
    /// The cached base initramfs (gzip-compressed newc, or plain newc without gzip).
    pub base_initramfs: PathBuf,
    /// The cache directory of this key.
    pub cache_dir: PathBuf,
    /// The kernel image package, e.g. `linux-image-6.1.0-56-amd64`.
    pub kernel_package: String,
    /// Its version, e.g. `6.1.192-2`.
    pub kernel_version: String,
    /// busybox-static's version.
    pub busybox_version: String,
}

/// `<target>/qemu-harness`: `$QEMU_HARNESS_DIR` if set, else `$CARGO_TARGET_DIR/qemu-harness`,
/// else `<workspace>/target/qemu-harness`.
pub fn harness_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("QEMU_HARNESS_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        });
    target.join("qemu-harness")
}

/// Resolves, downloads, extracts and builds the guest once per process (and once per
/// package-version key on disk). Later calls return the cached result.
pub fn guest_assets() -> Result<GuestAssets> {
    static CELL: OnceLock<Mutex<Option<GuestAssets>>> = OnceLock::new();
    let mut slot = CELL
        .get_or_init(|| Mutex::new(None))
        .lock()
        .map_err(|_| anyhow!("guest asset lock poisoned"))?;
    if let Some(assets) = slot.as_ref() {
        return Ok(assets.clone());
    }
    let assets = build_guest_assets(&harness_root().join("cache"))?;
    *slot = Some(assets.clone());
    Ok(assets)
}

fn build_guest_assets(cache_root: &Path) -> Result<GuestAssets> {
    let kernel_package = kernel_image_package()?;
    let kernel_version = candidate_version(&kernel_package)?;
    let busybox_version = candidate_version(BUSYBOX_PACKAGE)?;
    let key = sanitize(&format!(
        "v{CACHE_FORMAT}_{kernel_package}_{kernel_version}__{BUSYBOX_PACKAGE}_{busybox_version}"
    ));
    let cache_dir = cache_root.join(&key);
    if !cache_dir.join("READY").exists() {
        populate_cache(
            cache_root,
            &cache_dir,
            &kernel_package,
            &kernel_version,
            &busybox_version,
        )?;
    }
    let base_initramfs = ensure_base_initramfs(&cache_dir)?;
    Ok(GuestAssets {
        kernel: cache_dir.join("vmlinuz"),
        base_initramfs,
        cache_dir,
        kernel_package,
        kernel_version,
        busybox_version,
    })
}

/// `apt-cache depends linux-image-amd64` -> the `linux-image-<abi>-amd64` it depends on.
fn kernel_image_package() -> Result<String> {
    let out = run_capture(Command::new("apt-cache").args(["depends", KERNEL_META_PACKAGE]))?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow!(
                "apt-cache depends {KERNEL_META_PACKAGE} names no kernel image \
                 (run `apt-get update`?):\n{out}"
            )
        })
}

/// The candidate version from `apt-cache policy`.
fn candidate_version(package: &str) -> Result<String> {
    let out = run_capture(Command::new("apt-cache").args(["policy", package]))?;
    let version = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .next()
        .filter(|v| !v.is_empty() && *v != "(none)")
        .ok_or_else(|| anyhow!("no candidate version for {package} (run `apt-get update`?)"))?;
    Ok(version.to_string())
}

fn populate_cache(
    cache_root: &Path,
    cache_dir: &Path,
    kernel_package: &str,
    kernel_version: &str,
    busybox_version: &str,
) -> Result<()> {
    let tmp = cache_root.join(format!(
        ".build-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = populate_into(&tmp, kernel_package, kernel_version, busybox_version);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Publish atomically; if another process won the race, keep theirs.
    match fs::rename(&tmp, cache_dir) {
        Ok(()) => Ok(()),
        Err(_) if cache_dir.join("READY").exists() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e).with_context(|| format!("publishing {}", cache_dir.display()))
        }
    }
}

fn populate_into(
    dir: &Path,
    kernel_package: &str,
    kernel_version: &str,
    busybox_version: &str,
) -> Result<()> {
    let debs = dir.join("debs");
    fs::create_dir_all(&debs)?;
    // Sandbox user root: the download directory is not writable by `_apt`.
    run_capture(
        Command::new("apt-get")
            .current_dir(&debs)
            .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
            .arg(format!("{kernel_package}={kernel_version}"))
            .arg(format!("{BUSYBOX_PACKAGE}={busybox_version}")),
    )
    .context("apt-get download")?;
    let kernel_deb = find_deb(&debs, kernel_package)?;
    let busybox_deb = find_deb(&debs, BUSYBOX_PACKAGE)?;
    for (deb, want) in [
        (&kernel_deb, kernel_version),
        (&busybox_deb, busybox_version),
    ] {
        let got = run_capture(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Version"))?;
        if got.trim() != want {
            bail!("{} has version {} not {want}", deb.display(), got.trim());
        }
    }
    let kroot = dir.join("kernel-root");
    let broot = dir.join("busybox-root");
    for (deb, root) in [(&kernel_deb, &kroot), (&busybox_deb, &broot)] {
        run_capture(Command::new("dpkg").arg("-x").arg(deb).arg(root))
            .with_context(|| format!("dpkg -x {}", deb.display()))?;
    }

    let vmlinuz = find_file(&kroot.join("boot"), |n| n.starts_with("vmlinuz-"))?
        .ok_or_else(|| anyhow!("no boot/vmlinuz-* in {kernel_package}"))?;
    fs::copy(&vmlinuz, dir.join("vmlinuz"))?;

    let busybox = [broot.join("bin/busybox"), broot.join("usr/bin/busybox")]
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| anyhow!("no busybox binary in {BUSYBOX_PACKAGE}"))?;
    fs::copy(&busybox, dir.join("busybox"))?;

    let modules_out = dir.join("modules");
    fs::create_dir_all(&modules_out)?;
    let modules_root = kroot.join("lib/modules");
    for module in VIRTIO_NET_MODULES {
        let found = find_file(&modules_root, |n| {
            n.strip_prefix(module)
                .is_some_and(|rest| rest.starts_with(".ko"))
        })?
        .ok_or_else(|| anyhow!("module {module} not found in {kernel_package}"))?;
        let bytes = decompress_module(&found)?;
        if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
            bail!("{} did not decompress to an ELF object", found.display());
        }
        fs::write(modules_out.join(format!("{module}.ko")), bytes)?;
    }

    fs::remove_dir_all(&kroot)?;
    fs::remove_dir_all(&broot)?;
    fs::remove_dir_all(&debs)?;
    fs::write(
        dir.join("READY"),
        format!(
            "kernel_package={kernel_package}\nkernel_version={kernel_version}\n\
             busybox_version={busybox_version}\n"
        ),
    )?;
    Ok(())
}

/// `.ko` as is; `.ko.xz`/`.ko.zst`/`.ko.gz` through the matching command-line tool
/// (busybox `insmod` in the guest only takes plain ELF objects).
fn decompress_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko") {
        return Ok(fs::read(path)?);
    } else if name.ends_with(".ko.xz") {
        "xz"
    } else if name.ends_with(".ko.zst") {
        "zstd"
    } else if name.ends_with(".ko.gz") {
        "gzip"
    } else {
        bail!("unknown module compression: {name}");
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("running {tool} -dc (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "{tool} -dc {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

fn find_deb(dir: &Path, package: &str) -> Result<PathBuf> {
    let prefix = format!("{package}_");
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb")) {
            return Ok(path);
        }
    }
    bail!(
        "apt-get download left no {package}_*.deb in {}",
        dir.display()
    )
}

/// Depth-first search (sorted, so deterministic) for the first file whose name matches.
fn find_file(root: &Path, matches: impl Fn(&str) -> bool + Copy) -> Result<Option<PathBuf>> {
    let mut entries: Vec<_> = fs::read_dir(root)
        .with_context(|| format!("reading {}", root.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let ty = entry.file_type()?;
        if ty.is_dir() {
            if let Some(found) = find_file(&path, matches)? {
                return Ok(Some(found));
            }
        } else if ty.is_file() && matches(&entry.file_name().to_string_lossy()) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Builds (once per content hash) the base initramfs from the cached files.
fn ensure_base_initramfs(cache_dir: &Path) -> Result<PathBuf> {
    let busybox = fs::read(cache_dir.join("busybox"))?;
    let mut modules = Vec::new();
    for module in VIRTIO_NET_MODULES {
        modules.push((
            module,
            fs::read(cache_dir.join("modules").join(format!("{module}.ko")))?,
        ));
    }
    let mut hash = Fnv64::new();
    hash.update(&INITRAMFS_LAYOUT.to_le_bytes());
    hash.update(INIT_SCRIPT.as_bytes());
    hash.update(UDHCPC_SCRIPT.as_bytes());
    hash.update(&busybox);
    for (name, bytes) in &modules {
        hash.update(name.as_bytes());
        hash.update(bytes);
    }
    let gzip = which("gzip");
    let ext = if gzip.is_some() { "cpio.gz" } else { "cpio" };
    let path = cache_dir.join(format!("initramfs-{:016x}.{ext}", hash.finish()));
    if path.exists() {
        return Ok(path);
    }

    let mut w = CpioWriter::new();
    for dir in [
        "bin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "proc",
        "sys",
        "tmp",
        "run",
    ] {
        w.dir(dir, 0o755)?;
    }
    for dir in ["etc/udhcpc", "usr", "usr/share", "usr/share/udhcpc"] {
        w.dir(dir, 0o755)?;
    }
    w.char_device("dev/console", 0o600, 5, 1)?;
    w.char_device("dev/null", 0o666, 1, 3)?;
    w.file("bin/busybox", 0o755, &busybox)?;
    w.symlink("bin/sh", "busybox")?;
    w.file("init", 0o755, INIT_SCRIPT.as_bytes())?;
    // Debian's busybox looks for /etc/udhcpc/default.script; upstream's default is
    // /usr/share/udhcpc/default.script. Provide both.
    w.file("etc/udhcpc/default.script", 0o755, UDHCPC_SCRIPT.as_bytes())?;
    w.symlink(
        "usr/share/udhcpc/default.script",
        "/etc/udhcpc/default.script",
    )?;
    let mut order = String::new();
    for (name, bytes) in &modules {
        w.file(&format!("lib/modules/{name}.ko"), 0o644, bytes)?;
        let _ = writeln!(order, "{name}");
    }
    w.file("lib/modules/load-order", 0o644, order.as_bytes())?;
    let archive = w.finish();

    let bytes = match gzip {
        Some(gzip) => {
            let mut child = Command::new(gzip)
                .args(["-6", "-n", "-c"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()?;
            let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("gzip stdin"))?;
            let writer = std::thread::spawn(move || {
                use std::io::Write;
                stdin.write_all(&archive)
            });
            let out = child.wait_with_output()?;
            writer
                .join()
                .map_err(|_| anyhow!("gzip writer panicked"))??;
            if !out.status.success() {
                bail!("gzip failed");
            }
            out.stdout
        }
        None => archive,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, &bytes)?;
    fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Writes the initrd of one run: the base archive, zero padding to a 4-byte boundary
/// (the kernel only looks for a following cpio header at 4-aligned offsets), then an
/// uncompressed archive holding `/test.sh`.
pub fn write_run_initrd(base: &Path, test_script: &str, out: &Path) -> Result<()> {
    let mut bytes = fs::read(base).with_context(|| format!("reading {}", base.display()))?;
    while bytes.len() % 4 != 0 {
        bytes.push(0);
    }
    let mut w = CpioWriter::new();
    w.file("test.sh", 0o755, test_script.as_bytes())?;
    bytes.extend_from_slice(&w.finish());
    fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// A program on `$PATH`, if any.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn run_capture(cmd: &mut Command) -> Result<String> {
    let desc = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("spawning {desc}"))?;
    if !out.status.success() {
        bail!(
            "{desc} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// FNV-1a, 64-bit: a content key for cached files (not a security hash).
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_versions_readable() {
        assert_eq!(
            sanitize("busybox-static_1:1.35.0-4+deb12u1+b1"),
            "busybox-static_1_1.35.0-4+deb12u1+b1"
        );
    }

    #[test]
    fn run_initrd_appends_aligned_archive() {
        let dir = std::env::temp_dir().join(format!("qh-initrd-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("tmp");
        let base = dir.join("base");
        fs::write(&base, b"12345").expect("write");
        let out = dir.join("out");
        write_run_initrd(&base, "echo hi\n", &out).expect("initrd");
        let bytes = fs::read(&out).expect("read");
        assert_eq!(&bytes[..5], b"12345");
        assert_eq!(&bytes[5..8], &[0, 0, 0]);
        assert_eq!(&bytes[8..14], b"070701");
        let _ = fs::remove_dir_all(&dir);
    }
}
