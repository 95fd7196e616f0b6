//! `passt-sim`: runs the passt engine in the deterministic simulator.
//!
//! Subcommands:
//! - `demo [--seed N] [--duration SECS]`: a scripted guest configures
//!   itself through the engine (DHCPv4, ARP, router solicitation, NDP,
//!   DHCPv6) in virtual time; prints the decoded conversation and a
//!   summary.
//! - `run SCENARIO.toml [--seed N] [--pcap out.pcap] [--arm sim|real]`:
//!   runs a scenario (guest workload or script, remote services, faults,
//!   duration), prints a summary and writes the guest-side capture. Exit
//!   status 1 if a pass criterion failed. `--arm real` runs it against the
//!   real kernel instead (`Engine<RealHost>`, services on loopback, wall
//!   clock; no root needed).
//! - `sweep SCENARIO.toml --seeds A..B [--shard K/N|auto/N]
//!   [--json-lines FILE|-]`: runs many seeds, stops at the first failure
//!   and prints its seed and the command that reproduces it; with
//!   `--json-lines` runs every seed of its shard and records each as a JSON
//!   line instead (docs/sweeps.md).
//! - `merge FILE...`: combines shards' JSON-lines results into one
//!   verdict. Exit status 0 all passed, 1 some failed, 2 seeds or shards
//!   missing or bad input.
//! - `replay TRACE [--seed N] [--out OUT.pcap] [--report text|json]
//!   [--check] [--html FILE] [--guest recorded|model] [--faults FILE|SPEC]
//!   [--seeds A..B] [--set key=value ...]`: replays a capture's guest
//!   frames (or, with the model guest, each flow's behaviour) through the
//!   engine, with remote peers scripted from it, and reports
//!   flow by flow how the replay differs from the trace (docs/replay.md).
//!   Exit status 2 on a capture it cannot replay, 1 with `--check` on any
//!   divergence.
//!
//! `PASST_SIM_CHECK_DETERMINISM=1` makes `run` and `sweep` run every seed
//! twice and compare the trace hashes and captures.

use std::process::ExitCode;
use std::time::Duration;

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
#[cfg(feature = "real-arm")]
use passt_sim::real_arm::{self, RealArmOptions};
use passt_sim::scenario::{self, Scenario};
use passt_sim::shard::results::{self, Verdict};
use passt_sim::shard::{SeedRange, Shard, ShardError, merge};
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
    /// Runs one scenario file and prints a summary.
    Run {
        /// The scenario (TOML, see docs/simulation.md).
        scenario: PathBuf,
        /// Master seed (default: the scenario's `seed`, else 1).
        #[arg(long, value_parser = seed_arg)]
        seed: Option<u64>,
        /// Write the guest side of the wire here (pcap, nanosecond
        /// timestamps in virtual time).
        #[arg(long)]
        pcap: Option<PathBuf>,
        /// `sim`: the simulated host in virtual time; `real`: the real
        /// kernel on loopback in wall-clock time.
        #[arg(long, default_value = "sim", value_parser = ["sim", "real"])]
        arm: String,
    },
    /// Runs a scenario over many seeds; stops at the first failure.
    Sweep {
        /// The scenario.
        scenario: PathBuf,
        /// Seeds: `A..B` (B excluded), `A..=B`, or one seed.
        #[arg(long, default_value = "1..101")]
        seeds: String,
        /// Run only the K-th of N interleaved slices of the seeds
        /// (`K/N`, 1 ≤ K ≤ N), or `auto/N`: K from JOB_COMPLETION_INDEX
        /// (Kubernetes) or SLURM_ARRAY_TASK_ID (Slurm).
        #[arg(long)]
        shard: Option<String>,
        /// Run every seed of the shard and write one JSON line per seed
        /// (between a header and a footer) to FILE, or to stdout with `-`
        /// (the summary then goes to stderr).
        #[arg(long, value_name = "FILE")]
        json_lines: Option<PathBuf>,
    },
    /// Combines shards' `--json-lines` results into one verdict.
    Merge {
        /// Results files, one per shard (any order).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Replays a capture through the engine and compares flow by flow.
    Replay {
        /// The capture (pcap or pcapng, link type Ethernet).
        trace: PathBuf,
        /// Master seed: decimal, 0x-hex, or a 40-hex commit hash.
        #[arg(long, default_value = "1", value_parser = seed_arg)]
        seed: u64,
        /// Write the replayed conversation here (pcap, both directions,
        /// virtual timestamps).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Report format.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        report: String,
        /// Exit status 1 on any divergence.
        #[arg(long)]
        check: bool,
        /// Also write the report as a self-contained HTML page with a
        /// time–sequence graph per TCP flow (docs/replay.md).
        #[arg(long)]
        html: Option<PathBuf>,
        /// `recorded`: the trace's guest frames at their recorded times;
        /// `model`: each flow's behaviour through a smoltcp guest.
        #[arg(long, default_value = "recorded", value_parser = ["recorded", "model"])]
        guest: String,
        /// Faults on the guest<->engine links: a TOML file with a
        /// `[faults]` table, or its lines as `key=value,...`
        /// (`loss=0.05,jitter=0.002`).
        #[arg(long)]
        faults: Option<String>,
        /// Replays every seed of `A..B` (`A..=B`, or one) with the model
        /// guest; prints a reproduce line per failing seed.
        #[arg(long)]
        seeds: Option<String>,
        /// Overrides, `key=value`: engine-mac, addr, prefix, gateway, dns,
        /// addr6, prefix6, dns6, mtu, hold (s), tail (s).
        #[arg(long = "set")]
        set: Vec<String>,
    },
}

struct ReplayArgs {
    trace: PathBuf,
    seed: u64,
    out: Option<PathBuf>,
    json: bool,
    check: bool,
    html: Option<PathBuf>,
    guest: String,
    faults: Option<String>,
    seeds: Option<String>,
    set: Vec<String>,
}

fn cmd_replay(a: ReplayArgs) -> ExitCode {
    let name = a.trace.display();
    let faults = match a.faults.as_deref().map(passt_sim::replay::faults::parse) {
        None => None,
        Some(Ok(f)) => a.faults.clone().map(|spec| (spec, f)),
        Some(Err(e)) => {
            eprintln!("passt-sim: replay: {e}");
            return ExitCode::from(2);
        }
    };
    let guest = if a.guest == "model" || a.seeds.is_some() {
        passt_sim::replay::GuestMode::Model
    } else {
        passt_sim::replay::GuestMode::Recorded
    };
    let bytes = match std::fs::read(&a.trace) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("passt-sim: {name}: cannot read: {e}");
            return ExitCode::from(2);
        }
    };
    let started = std::time::Instant::now();
    let opts = passt_sim::replay::Options {
        seed: a.seed,
        sets: a.set,
        guest,
        faults,
    };
    if let Some(seeds) = &a.seeds {
        return replay_seeds(&a.trace, &bytes, seeds, opts);
    }
    let outcome = match passt_sim::replay::replay(&bytes, &opts) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("passt-sim: {name}: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(out) = &a.out
        && let Err(e) = std::fs::write(out, &outcome.pcap)
    {
        eprintln!("passt-sim: {}: cannot write: {e}", out.display());
        return ExitCode::from(2);
    }
    if let Some(html) = &a.html {
        let title = a.trace.file_name().map_or_else(
            || a.trace.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let page = passt_sim::replay::html::render(&outcome, &title);
        if let Err(e) = std::fs::write(html, page) {
            eprintln!("passt-sim: {}: cannot write: {e}", html.display());
            return ExitCode::from(2);
        }
    }
    let r = &outcome.report;
    if a.json {
        println!("{}", r.to_json());
    } else {
        print!("{}", r.to_text());
    }
    // Wall-clock figures go to stderr: the report stays identical between
    // runs.
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "replay: {} events in {wall:.3} s wall ({:.0} events/s), trace {:.3} s / wall = {:.1}x",
        outcome.events,
        outcome.events as f64 / wall,
        r.summary.trace_seconds,
        r.summary.trace_seconds / wall
    );
    if a.check && r.divergences > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `replay --seeds`: the model guest over every seed; one line per failing
/// seed with its reproduce command.
fn replay_seeds(
    trace: &std::path::Path,
    bytes: &[u8],
    seeds: &str,
    opts: passt_sim::replay::Options,
) -> ExitCode {
    let range = match passt_sim::shard::SeedRange::parse(seeds) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("passt-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let mut again = format!("passt-sim replay {} --guest model", trace.display());
    if let Some((spec, _)) = &opts.faults {
        again.push_str(&format!(" --faults '{spec}'"));
    }
    for s in &opts.sets {
        again.push_str(&format!(" --set '{s}'"));
    }
    let started = std::time::Instant::now();
    let mut failed = 0u64;
    let mut progress =
        passt_sim::progress::Progress::new(u64::try_from(range.len()).unwrap_or(u64::MAX));
    for seed in range.first..=range.last {
        let o = passt_sim::replay::Options {
            seed,
            ..opts.clone()
        };
        match passt_sim::replay::replay(bytes, &o) {
            Ok(out) => {
                let r = out.report;
                progress.inc(r.divergences > 0);
                if r.divergences > 0 {
                    failed += 1;
                    let first = r
                        .flows
                        .iter()
                        .flat_map(|f| f.divergences.iter())
                        .next()
                        .cloned()
                        .unwrap_or_else(|| format!("run {}", r.summary.stopped));
                    println!(
                        "seed {seed} FAIL ({} divergences: {first}); reproduce: {again} --seed {seed}",
                        r.divergences
                    );
                }
            }
            Err(e) => {
                progress.finish();
                eprintln!("passt-sim: {}: {e}", trace.display());
                return ExitCode::from(2);
            }
        }
    }
    progress.finish();
    let runs = progress.done();
    println!(
        "replay seeds      {runs} seeds of {range}: {} passed, {failed} failed",
        runs - failed
    );
    eprintln!(
        "replay: {runs} seeds in {:.3} s wall",
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run_once(sc: &Scenario, seed: u64, capture: bool) -> Result<scenario::RunReport, String> {
    if scenario::determinism_check_requested() {
        scenario::check_determinism(sc, seed)
    } else {
        sc.run(seed, capture).map_err(|e| e.to_string())
    }
}

#[cfg(feature = "real-arm")]
fn cmd_run_real(
    sc: &Scenario,
    path: &std::path::Path,
    seed: u64,
    pcap: Option<PathBuf>,
) -> ExitCode {
    let opts = RealArmOptions {
        capture: pcap.is_some(),
        ..RealArmOptions::default()
    };
    let r = match real_arm::run(sc, seed, opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("passt-sim: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{r}");
    println!("wall time         {:.3} s", r.wall.as_secs_f64());
    if let (Some(path), Some(bytes)) = (&pcap, &r.report.pcap) {
        if let Err(e) = std::fs::write(path, bytes) {
            eprintln!("passt-sim: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
        println!(
            "pcap              {} ({} bytes)",
            path.display(),
            bytes.len()
        );
    }
    if r.passed() {
        println!("result            PASS");
        ExitCode::SUCCESS
    } else {
        println!("result            FAIL");
        println!(
            "rerun             passt-sim run {} --seed {seed} --arm real",
            path.display()
        );
        ExitCode::FAILURE
    }
}

/// Without the `real-arm` feature there is no real arm to run.
#[cfg(not(feature = "real-arm"))]
fn cmd_run_real(
    _sc: &Scenario,
    _path: &std::path::Path,
    _seed: u64,
    _pcap: Option<PathBuf>,
) -> ExitCode {
    eprintln!(
        "passt-sim: --arm real needs a passt-sim built with the real-arm feature \
         (cargo build --release -p passt-sim --features real-arm)"
    );
    ExitCode::from(2)
}

fn cmd_run(path: PathBuf, seed: Option<u64>, pcap: Option<PathBuf>, arm: &str) -> ExitCode {
    let sc = match Scenario::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("passt-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let seed = seed.unwrap_or_else(|| sc.default_seed());
    if arm == "real" {
        return cmd_run_real(&sc, &path, seed, pcap);
    }
    let started = std::time::Instant::now();
    let report = match run_once(&sc, seed, pcap.is_some()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("passt-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let wall = started.elapsed().as_secs_f64();
    print!("{report}");
    let virt = report.virtual_end.as_nanos() as f64 / 1e9;
    println!("virtual duration  {virt:.6} s");
    println!("wall time         {wall:.3} s");
    println!(
        "events            {} ({:.0} events/s)",
        report.trace_events,
        report.trace_events as f64 / wall.max(1e-9)
    );
    if let (Some(path), Some(bytes)) = (&pcap, &report.pcap) {
        if let Err(e) = std::fs::write(path, bytes) {
            eprintln!("passt-sim: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
        println!(
            "pcap              {} ({} bytes)",
            path.display(),
            bytes.len()
        );
    }
    if report.passed() {
        println!("result            PASS");
        ExitCode::SUCCESS
    } else {
        println!("result            FAIL");
        println!(
            "reproduce         passt-sim run {} --seed {seed}",
            path.display()
        );
        ExitCode::FAILURE
    }
}

fn cmd_sweep(path: PathBuf, seeds: &str, shard_spec: Option<&str>) -> ExitCode {
    let (sc, range, shard) = match sweep_setup(&path, seeds, shard_spec) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let started = std::time::Instant::now();
    let mut runs = 0u64;
    let mut events = 0u64;
    let mut progress = passt_sim::progress::Progress::new(shard.seed_count(range));
    for seed in shard.seeds(range) {
        runs += 1;
        let result = run_once(&sc, seed, false);
        let passed = matches!(&result, Ok(r) if r.passed());
        progress.inc(!passed);
        if !passed {
            // The sweep stops here: clear the bar before the report.
            progress.finish();
        }
        match result {
            Ok(r) if r.passed() => events += r.trace_events,
            Ok(r) => {
                print!("{r}");
                println!("result            FAIL after {runs} runs");
                println!("failing seed      {seed}");
                println!(
                    "reproduce         passt-sim run {} --seed {seed}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
            Err(e) => {
                println!("failing seed      {seed}: {e}");
                println!(
                    "reproduce         passt-sim run {} --seed {seed}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    progress.finish();
    let wall = started.elapsed().as_secs_f64();
    println!(
        "sweep             {} seeds of {range} (shard {shard}) passed",
        runs
    );
    println!(
        "wall time         {wall:.3} s ({:.0} events/s)",
        events as f64 / wall.max(1e-9)
    );
    ExitCode::SUCCESS
}

/// The scenario, the seed range and this process's shard of it, or the
/// exit status after a one-line error.
fn sweep_setup(
    path: &Path,
    seeds: &str,
    shard_spec: Option<&str>,
) -> Result<(Scenario, SeedRange, Shard), ExitCode> {
    let fail = |e: String| {
        eprintln!("passt-sim: {e}");
        ExitCode::from(2)
    };
    let sc = Scenario::load(path).map_err(|e| fail(e.to_string()))?;
    let (range, shard) = sweep_plan(seeds, shard_spec).map_err(|e| fail(e.to_string()))?;
    Ok((sc, range, shard))
}

/// The seed range and this process's shard of it (`--shard auto/N` reads
/// the scheduler's index from the environment).
fn sweep_plan(seeds: &str, shard_spec: Option<&str>) -> Result<(SeedRange, Shard), ShardError> {
    let range = SeedRange::parse(seeds)?;
    let shard = match shard_spec {
        Some(spec) => Shard::resolve(spec, |k| std::env::var(k).ok())?,
        None => Shard::WHOLE,
    };
    Ok((range, shard))
}

/// `sweep --json-lines`: every seed of the shard, one JSON line each; the
/// summary goes to stdout, or to stderr when the lines do.
fn cmd_sweep_json(path: PathBuf, seeds: &str, shard_spec: Option<&str>, out: &Path) -> ExitCode {
    let to_stdout = out == Path::new("-");
    let say = |line: String| {
        if to_stdout {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let (sc, range, shard) = match sweep_setup(&path, seeds, shard_spec) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let sink: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        match std::fs::File::create(out) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("passt-sim: {}: cannot create: {e}", out.display());
                return ExitCode::from(2);
            }
        }
    };
    let target = path.display().to_string();
    let header = results::Header::new("sweep", &target, range, shard);
    let write_err = |e: std::io::Error| {
        eprintln!("passt-sim: {}: cannot write: {e}", out.display());
        ExitCode::from(2)
    };
    let mut w = match results::ResultsWriter::new(sink, &header) {
        Ok(w) => w,
        Err(e) => return write_err(e),
    };
    let started = std::time::Instant::now();
    for seed in shard.seeds(range) {
        let t = std::time::Instant::now();
        let outcome = run_once(&sc, seed, false);
        let wall_s = t.elapsed().as_secs_f64();
        let reproduce = format!("passt-sim run {target} --seed {seed}");
        let line = match outcome {
            Ok(r) => results::SeedResult {
                seed,
                verdict: if r.passed() {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                },
                virtual_s: r.virtual_end.as_nanos() as f64 / 1e9,
                wall_s,
                trace_hash: Some(format!("{:016x}", r.trace_hash)),
                reason: (!r.passed()).then(|| r.failures.join("; ")),
                reproduce,
            },
            Err(e) => results::SeedResult {
                seed,
                verdict: Verdict::Error,
                virtual_s: 0.0,
                wall_s,
                trace_hash: None,
                reason: Some(e),
                reproduce,
            },
        };
        if line.verdict != Verdict::Pass {
            say(format!("failing seed      {seed}: {}", line.reproduce));
        }
        if let Err(e) = w.seed(&line) {
            return write_err(e);
        }
    }
    let footer = match w.finish() {
        Ok(f) => f,
        Err(e) => return write_err(e),
    };
    say(format!(
        "sweep             shard {shard} of {range}: {} seeds, {} passed, {} failed ({:.3} s wall)",
        footer.run,
        footer.passed,
        footer.failed,
        started.elapsed().as_secs_f64()
    ));
    if footer.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn cmd_merge(files: &[PathBuf]) -> ExitCode {
    let mut inputs = Vec::with_capacity(files.len());
    for f in files {
        match std::fs::read(f) {
            Ok(b) => inputs.push((f.display().to_string(), b)),
            Err(e) => {
                eprintln!("passt-sim: merge: {}: cannot read: {e}", f.display());
                return ExitCode::from(2);
            }
        }
    }
    let merged = merge::merge(&inputs);
    print!("{}", merged.to_text());
    for p in &merged.problems {
        eprintln!("passt-sim: merge: {p}");
    }
    ExitCode::from(merged.exit_code())
}

fn seed_arg(s: &str) -> Result<u64, String> {
    parse_seed(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            scenario,
            seed,
            pcap,
            arm,
        } => cmd_run(scenario, seed, pcap, &arm),
        Command::Sweep {
            scenario,
            seeds,
            shard,
            json_lines: None,
        } => cmd_sweep(scenario, &seeds, shard.as_deref()),
        Command::Sweep {
            scenario,
            seeds,
            shard,
            json_lines: Some(out),
        } => cmd_sweep_json(scenario, &seeds, shard.as_deref(), &out),
        Command::Merge { files } => cmd_merge(&files),
        Command::Replay {
            trace,
            seed,
            out,
            report,
            check,
            html,
            guest,
            faults,
            seeds,
            set,
        } => cmd_replay(ReplayArgs {
            trace,
            seed,
            out,
            json: report == "json",
            check,
            html,
            guest,
            faults,
            seeds,
            set,
        }),
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
