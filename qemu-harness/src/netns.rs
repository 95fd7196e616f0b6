//! A private network namespace for one run, entered by the calling *thread* only.
//!
//! Owns: `unshare(CLONE_NEWNET)` on the current thread, and the namespace's contents:
//! `lo` up, and a veth pair (`qh-out0` <-> `qh-out1`, both inside the namespace) with
//! a default route via a TEST-NET-1 address that nothing answers. passt needs an
//! interface with a default route to start; anything it forwards there goes nowhere,
//! so no guest packet can reach a real network. On request the same interface also
//! gets [`HOST_V6_ADDR`]/64 and an IPv6 default route via [`HOST_V6_GATEWAY`]
//! (RFC 3849 documentation range, equally unanswered), so that passt finds an IPv6
//! template and serves IPv6 to the guest. Also opens ICMP echo sockets
//! (`net.ipv4.ping_group_range`) for every group, since passt drops to `nobody`.
//!
//! Must never: change the caller's original namespace, or configure addresses other
//! than 192.0.2.0/24 (RFC 5737), 2001:db8:1::/64 (RFC 3849), fe80::2, loopback, and
//! the /32s a run asks for (which then exist only inside this namespace).
//!
//! Processes spawned from the thread afterwards and threads it creates inherit the
//! namespace; the namespace disappears when the last of them exits.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Host-side name of the outbound veth end (passt's "template interface").
pub const OUTBOUND_IF: &str = "qh-out0";

/// The namespace's IPv6 address on [`OUTBOUND_IF`] (prefix /64) when IPv6 is on;
/// passt copies it as the guest's address unless given `-a`.
pub const HOST_V6_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The link-local address of [`OUTBOUND_IF`] when IPv6 is on.
pub const HOST_V6_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
/// The namespace's IPv6 default router (nothing answers it); passt makes it the
/// guest's IPv6 gateway and maps it to the host's `::1`.
pub const HOST_V6_GATEWAY: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

/// What the namespace holds besides the IPv4 template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetnsOptions {
    /// Added as /32s on the far veth end (so the namespace's kernel itself answers
    /// for them, e.g. passt's gateway).
    pub local_v4: Vec<Ipv4Addr>,
    /// Give [`OUTBOUND_IF`] [`HOST_V6_ADDR`]/64 and a default route via
    /// [`HOST_V6_GATEWAY`].
    pub ipv6: bool,
}

/// Moves the calling thread into a new, empty network namespace and populates it.
pub fn enter_private_netns() -> Result<()> {
    enter_private_netns_opts(&NetnsOptions::default())
}

/// As [`enter_private_netns`], and adds each of `local_addrs` as a /32 on the far veth
/// end (so the namespace's kernel itself answers for them, e.g. passt's gateway).
pub fn enter_private_netns_with(local_addrs: &[Ipv4Addr]) -> Result<()> {
    enter_private_netns_opts(&NetnsOptions {
        local_v4: local_addrs.to_vec(),
        ipv6: false,
    })
}

/// Moves the calling thread into a new network namespace populated per `opts`.
pub fn enter_private_netns_opts(opts: &NetnsOptions) -> Result<()> {
    // SAFETY: unshare(2) with CLONE_NEWNET only affects the calling thread's
    // namespace set; it takes no pointers.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("unshare(CLONE_NEWNET)");
    }
    ip(&["link", "set", "lo", "up"])?;
    ip(&[
        "link",
        "add",
        OUTBOUND_IF,
        "type",
        "veth",
        "peer",
        "name",
        "qh-out1",
    ])?;
    // No IPv6 on the far end, nor (unless asked for) on ours: the kernel's own
    // router solicitations and MLD reports would blur the outbound packet count
    // that tells whether passt sent anything "out".
    for end in [OUTBOUND_IF, "qh-out1"] {
        let keep = opts.ipv6 && end == OUTBOUND_IF;
        std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{end}/disable_ipv6"),
            if keep { "0" } else { "1" },
        )
        .with_context(|| format!("setting disable_ipv6 on {end}"))?;
    }
    if opts.ipv6 {
        // No kernel-generated link-local address (addr_gen_mode 1; a fixed one is
        // added below), no DAD, no router solicitations, no RA processing.
        for (knob, value) in [
            ("addr_gen_mode", "1"),
            ("accept_ra", "0"),
            ("router_solicitations", "0"),
            ("accept_dad", "0"),
        ] {
            std::fs::write(
                format!("/proc/sys/net/ipv6/conf/{OUTBOUND_IF}/{knob}"),
                value,
            )
            .with_context(|| format!("setting {knob} on {OUTBOUND_IF}"))?;
        }
    }
    ip(&["link", "set", OUTBOUND_IF, "up"])?;
    ip(&["link", "set", "qh-out1", "up"])?;
    ip(&["addr", "add", "192.0.2.1/24", "dev", OUTBOUND_IF])?;
    ip(&[
        "route",
        "add",
        "default",
        "via",
        "192.0.2.254",
        "dev",
        OUTBOUND_IF,
    ])?;
    if opts.ipv6 {
        // A template interface has a link-local address; Debian's passt
        // (0.0~git20230309) leaves IPv6 off without one.
        ip(&[
            "-6",
            "addr",
            "add",
            &format!("{HOST_V6_LINK_LOCAL}/64"),
            "dev",
            OUTBOUND_IF,
            "nodad",
        ])?;
        ip(&[
            "-6",
            "addr",
            "add",
            &format!("{HOST_V6_ADDR}/64"),
            "dev",
            OUTBOUND_IF,
            "nodad",
        ])?;
        ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &HOST_V6_GATEWAY.to_string(),
            "dev",
            OUTBOUND_IF,
        ])?;
    }
    for addr in &opts.local_v4 {
        ip(&["addr", "add", &format!("{addr}/32"), "dev", "qh-out1"])?;
    }
    // /proc/sys/net resolves to the namespace of the task that opens it: this thread.
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
        .context("setting net.ipv4.ping_group_range")?;
    Ok(())
}

/// Packets sent out of [`OUTBOUND_IF`] so far (read in the namespace's thread):
/// anything passt sent towards "the network" instead of loopback.
pub fn outbound_tx_packets() -> Result<u64> {
    // Not /sys/class/net: sysfs shows the namespace of whoever mounted it.
    let out = Command::new("ip")
        .args(["-s", "-o", "link", "show", OUTBOUND_IF])
        .output()
        .context("running ip -s link")?;
    parse_ip_stats_tx_packets(&String::from_utf8_lossy(&out.stdout))
}

/// Waits (at most `max`) until [`OUTBOUND_IF`]'s transmit counter has not moved for
/// `quiet`, and returns it: with IPv6 on, the kernel sends its own MLD reports for
/// the new address in the first second or so, which must not be blamed on passt.
pub fn settle_outbound_tx(quiet: Duration, max: Duration) -> Result<u64> {
    let start = Instant::now();
    let mut last = outbound_tx_packets()?;
    let mut since = Instant::now();
    while start.elapsed() < max {
        std::thread::sleep(Duration::from_millis(100));
        let now = outbound_tx_packets()?;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            break;
        }
    }
    Ok(last)
}

/// `ip -s -o link show` prints `... TX: bytes packets ... \    B P ...`.
fn parse_ip_stats_tx_packets(text: &str) -> Result<u64> {
    let after = text
        .split("TX:")
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no TX stats in {text:?}"))?;
    let numbers: Vec<u64> = after
        .split(|c: char| c.is_whitespace() || c == '\\')
        .filter_map(|w| w.parse().ok())
        .collect();
    numbers
        .get(1)
        .copied()
        .ok_or_else(|| anyhow::anyhow!("no TX packet count in {text:?}"))
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip(8) (iproute2 installed?)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tx_packets_from_ip_oneline_stats() {
        let text = "3: qa@qb: <BROADCAST> mtu 1500\\    link/ether 0a:f2:1c:d3:40:e9 brd ff:ff:ff:ff:ff:ff\\    \
                    RX:  bytes packets errors dropped  missed   mcast           \\             0       0      0       0       0       0 \\    \
                    TX:  bytes packets errors dropped carrier collsns           \\           420       7      0       0       0       0 ";
        assert_eq!(parse_ip_stats_tx_packets(text).expect("parse"), 7);
        assert!(parse_ip_stats_tx_packets("garbage").is_err());
    }
}
