//! `passt-sim`: runs the passt engine in the deterministic simulator.
//!
//! Subcommands grow with the simulator; today:
//! - `demo [--seed N] [--duration SECS]`: a scripted guest configures
//!   itself through the engine (DHCPv4, ARP, router solicitation, NDP,
//!   DHCPv6) in virtual time; prints the decoded conversation and a
//!   summary.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use passt_sim::{demo, parse_seed};

#[derive(Parser)]
#[command(
    name = "passt-sim",
    version,
    about = "Deterministic simulator for the passt engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A scripted guest brings its network up through the engine; the
    /// decoded conversation is printed.
    Demo {
        /// Master seed: decimal, 0x-hex, or a 40-hex commit hash.
        #[arg(long, default_value = "1", value_parser = seed_arg)]
        seed: u64,
        /// Virtual seconds to run (periodic router advertisements keep
        /// coming after the bring-up).
        #[arg(long, default_value_t = 30)]
        duration: u64,
    },
}

fn seed_arg(s: &str) -> Result<u64, String> {
    parse_seed(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { seed, duration } => {
            let started = std::time::Instant::now();
            let report = match demo::run(seed, Duration::from_secs(duration)) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("passt-sim: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            print!("{}", report.transcript);
            println!();
            println!("seed              {seed}");
            println!("virtual duration  {duration} s");
            println!("wall time         {:.3} s", started.elapsed().as_secs_f64());
            let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            println!(
                "DHCPv4 address    {}",
                show(report.dhcp_address.map(|a| a.to_string()))
            );
            println!(
                "DHCPv6 address    {}",
                show(report.dhcpv6_address.map(|a| a.to_string()))
            );
            println!(
                "RA prefix         {}",
                show(report.ra_prefix.map(|(p, l)| format!("{p}/{l}")))
            );
            println!(
                "gateway (ARP)     {}",
                show(report.gateway_mac_v4.map(|m| m.to_string()))
            );
            println!(
                "gateway (NDP)     {}",
                show(report.gateway_mac_v6.map(|m| m.to_string()))
            );
            let c = &report.counters;
            println!(
                "engine frames     in {} out {} (DHCP {} DHCPv6 {} ARP {} NA {} RA {})",
                c.frames_in,
                c.frames_out,
                c.dhcp_replies,
                c.dhcpv6_replies,
                c.arp_replies,
                c.ndp_neighbor_adverts,
                c.ndp_router_adverts
            );
            for (reason, n) in c.nonzero_drops() {
                println!("engine drops      {reason}: {n}");
            }
            println!("trace hash        {:016x}", report.trace_hash);
            let ok = report.dhcp_address.is_some()
                && report.dhcpv6_address.is_some()
                && report.gateway_mac_v4.is_some()
                && report.gateway_mac_v6.is_some();
            if ok {
                ExitCode::SUCCESS
            } else {
                eprintln!("passt-sim: the guest did not finish configuring itself");
                ExitCode::FAILURE
            }
        }
    }
}
