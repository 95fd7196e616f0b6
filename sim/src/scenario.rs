//! Scenario files: a whole simulated system described in TOML, built into a
//! [`Simulation`], run, and judged.
//!
//! # What this module owns
//!
//! The file format ([`Scenario`], serde-derived, unknown keys refused), the
//! construction of every part from one master seed (engine, simulated host
//! and its remote services, guest, the two links and their fault chains),
//! running it ([`Scenario::run`]) and the [`RunReport`] with the summary
//! `passt-sim run` prints and the pass/fail verdict the sweep uses.
//!
//! Inbound traffic: `[[forward]]` opens forwarded host ports on the engine
//! before the run (`Engine::tcp_listen`), and `[[inbound]]` clients
//! ([`crate::inbound`]) connect to them from remote addresses at given
//! times; a scenario with clients runs until the guest *and* every client
//! are finished.
//!
//! Every generator is a named child of the master seed: `engine`, `host`,
//! `guest`, `link-up`, `link-down`, `swarm-up`, `swarm-down`,
//! `swarm-host`. The format is documented in `docs/simulation.md`.
//!
//! # What it must never do
//!
//! Read the wall clock for anything but the report's "wall time" line, or
//! let that value influence the run.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use passt_engine::{Config, Instant};
use serde::Deserialize;

use crate::fault::{
    BernoulliLoss, Corruption, DropCause, Duplication, FaultChain, GilbertElliott, HostFaults,
    Latency, MtuClamp, TokenBucket,
};
use crate::guest::smol::{MAX_SERVE_CONNECTIONS, ServeMode};
use crate::guest::{
    Script, ScriptGuest, SimGuest, SmolGuest, SmolGuestConfig, TcpClientOptions, Workload,
    WorkloadReport, WorkloadSpec,
};
use crate::host::dns::DnsResponder;
use crate::host::{
    DatagramApp, Reach, RemoteHostConfig, RemoteService, ServiceOptions, SimHost, SimHostConfig,
    SinkStats,
};
use crate::inbound::{InboundClient, InboundClientSpec, InboundLog};
use crate::link::{Link, LinkConfig, LinkCounters};
use crate::seed::SimRng;
use crate::simulation::{FrameClass, SimCounters, Simulation, StopReason};

/// The largest interface MTU the simulated smoltcp guest takes.
const SMOL_MAX_MTU: usize = 65_000;

/// Why a scenario could not be loaded or built.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The TOML is invalid or does not match the format.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid scenario: {0}")]
    Invalid(String),
    /// The guest's script does not parse.
    #[error("{path}: {source}")]
    Script {
        /// The script file (or "inline script").
        path: String,
        /// The parse error.
        source: crate::guest::ScriptError,
    },
    /// The engine refused the configuration.
    #[error("engine configuration: {0}")]
    Engine(#[from] passt_engine::ConfigError),
}

/// A scenario file (see `docs/simulation.md`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name for reports (default: the file name).
    #[serde(default)]
    pub name: Option<String>,
    /// What the scenario checks, for humans.
    #[serde(default)]
    pub description: Option<String>,
    /// Longest virtual run, in seconds (default 60). The run ends earlier
    /// when the guest is finished.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Default master seed (default 1; `--seed` overrides it).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Engine settings.
    #[serde(default)]
    pub engine: EngineSection,
    /// The guest.
    #[serde(default)]
    pub guest: GuestSection,
    /// The guest↔engine links.
    #[serde(default)]
    pub link: LinkSection,
    /// Faults on the guest↔engine links.
    #[serde(default)]
    pub faults: FaultsSection,
    /// Remote services.
    #[serde(default)]
    pub remote: Vec<RemoteSection>,
    /// Per-remote-host path properties.
    #[serde(default)]
    pub remote_host: Vec<RemoteHostSection>,
    /// Faults of the simulated host's sockets.
    #[serde(default)]
    pub host_faults: HostFaultsSection,
    /// Forwarded host ports (inbound connections to the guest).
    #[serde(default)]
    pub forward: Vec<ForwardSection>,
    /// Remote clients connecting to forwarded ports.
    #[serde(default)]
    pub inbound: Vec<InboundSection>,
    /// Pass criteria.
    #[serde(default)]
    pub expect: ExpectSection,
    #[serde(skip)]
    base_dir: Option<PathBuf>,
}

/// `[engine]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// `"passt"` (default) or `"pasta"`: pasta's defaults, as its binary
    /// sets them: MTU 65520 (and a guest whose interface MTU is as large as
    /// the simulated guest takes), loopback splice on. The frames the
    /// engine exchanges with the guest are the same over the tap as over
    /// QEMU's socket; only their framing differs, which the simulator's
    /// guest link does not model.
    pub mode: Option<String>,
    /// MTU announced to the guest (default: the engine's example config).
    pub mtu: Option<u16>,
    /// Flow table capacity (`Config::flow_capacity`).
    pub flow_capacity: Option<usize>,
    /// Frames the engine's transmit queue holds (`Config::tx_queue_frames`).
    pub tx_queue_frames: Option<usize>,
}

/// `[guest]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestSection {
    /// `"smoltcp"` (default) or `"script"`.
    pub kind: Option<String>,
    /// smoltcp: configure by DHCP (default true); otherwise the engine's
    /// configured address is set statically.
    pub dhcp: Option<bool>,
    /// smoltcp: interface MTU (default 1500).
    pub mtu: Option<usize>,
    /// script: the script file, relative to the scenario file.
    pub script: Option<String>,
    /// script: the script itself.
    pub script_text: Option<String>,
    /// smoltcp: workloads.
    #[serde(default)]
    pub workload: Vec<WorkloadSection>,
}

/// `[[guest.workload]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSection {
    /// `ping`, `udp-echo`, `tcp-echo`, `tcp-send`, `tcp-recv`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Destination (`IP` for ping, `IP:PORT` otherwise). Ping defaults to
    /// the gateway.
    pub dst: Option<String>,
    /// Requests / datagrams (default 5).
    pub count: Option<u32>,
    /// Seconds between requests (default 0.1).
    pub interval: Option<f64>,
    /// Payload bytes per request (default 56 for ping, 64 for UDP).
    pub size: Option<usize>,
    /// TCP bytes (default 100000).
    pub bytes: Option<u64>,
    /// Seconds after configuration before starting (default 0).
    pub start: Option<f64>,
    /// Seconds before the workload fails (default 60).
    pub timeout: Option<f64>,
    /// Seconds to wait for late replies after the last request (default 2).
    pub linger: Option<f64>,
    /// tcp-serve: the guest port to listen on.
    pub port: Option<u16>,
    /// tcp-serve: `echo` (default), `sink` or `source`.
    pub mode: Option<String>,
    /// tcp-serve: connections to serve (default 1).
    pub connections: Option<u32>,
    /// TCP clients: smoltcp receive and send buffer, bytes each (default
    /// 65536).
    pub buffer: Option<usize>,
    /// TCP clients: stop reading after this many bytes ...
    pub pause_after: Option<u64>,
    /// ... for this many seconds (default 1), then read on.
    pub pause: Option<f64>,
    /// TCP clients: abort (RST) once this many bytes were sent.
    pub abort_after: Option<u64>,
}

/// `[[forward]]`: a forwarded host port. The engine listens on
/// `addr:host_port` on the host; each accepted connection is opened toward
/// the guest on `guest_port`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSection {
    /// `tcp` (default; the only one for now).
    pub proto: Option<String>,
    /// The host address listened on (default `0.0.0.0`).
    pub addr: Option<String>,
    /// The host port.
    pub host_port: u16,
    /// The guest port (default: `host_port`).
    pub guest_port: Option<u16>,
}

/// `[[inbound]]`: remote clients connecting to a forwarded port.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundSection {
    /// The remote IP (or `IP:PORT`) connecting (default `203.0.113.9`).
    pub from: Option<String>,
    /// Where to connect, `IP:PORT` (default: the simulated host's own
    /// address and the first `[[forward]]`'s host port).
    pub to: Option<String>,
    /// Connections from this entry (default 1; they start together unless
    /// `interval` spaces them).
    pub count: Option<u32>,
    /// Seconds between this entry's connections (default 0).
    pub interval: Option<f64>,
    /// Seconds after the guest is configured before the first connects
    /// (default 0.5).
    pub start: Option<f64>,
    /// Bytes each connection sends before its FIN (default 0).
    pub send: Option<u64>,
    /// Bytes each connection expects back before the server's FIN
    /// (default 0).
    pub expect: Option<u64>,
    /// Seconds before a connection fails (default 60).
    pub timeout: Option<f64>,
    /// This entry's connections must fail with an error containing this
    /// text (e.g. `"connection reset"`).
    pub expect_error: Option<String>,
}

/// `[link]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSection {
    /// Bits per second each way (default: unlimited).
    pub bandwidth: Option<u64>,
    /// Propagation latency each way, seconds (default 0.0001).
    pub latency: Option<f64>,
}

/// Fault parameters of one direction.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultParams {
    /// Independent loss probability.
    pub loss: Option<f64>,
    /// Gilbert–Elliott burst loss: `[p_good_to_bad, p_bad_to_good, loss_bad]`.
    pub burst_loss: Option<[f64; 3]>,
    /// Uniform extra delay up to this many seconds (reorders).
    pub jitter: Option<f64>,
    /// Fixed extra delay, seconds.
    pub delay: Option<f64>,
    /// Duplication probability.
    pub duplicate: Option<f64>,
    /// Single-bit corruption probability.
    pub corrupt: Option<f64>,
    /// Drop frames longer than this many bytes.
    pub mtu: Option<usize>,
    /// Rate limit in bytes per second (burst 64 KiB, queue 256 KiB).
    pub rate: Option<u64>,
    /// Replace everything above by a swarm-mode chain drawn from the seed.
    pub swarm: Option<bool>,
}

/// `[faults]`: parameters for both directions, overridden per direction by
/// `[faults.up]` (guest → engine) and `[faults.down]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsSection {
    /// Both directions.
    #[serde(flatten)]
    pub both: FaultParams,
    /// Guest → engine only.
    pub up: Option<FaultParams>,
    /// Engine → guest only.
    pub down: Option<FaultParams>,
}

/// `[[remote]]`: a service in the simulated internet (or on the host's
/// loopback: use 127.0.0.1, which the guest reaches through the gateway).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSection {
    /// `udp-echo`, `tcp-echo`, `tcp-sink`, `tcp-source`, `http`, `dns`.
    pub service: String,
    /// Where it listens, `IP:PORT`.
    pub addr: String,
    /// tcp-source: bytes to send (default 100000).
    pub bytes: Option<u64>,
    /// tcp-sink: read rate limit, bytes per second.
    pub rate: Option<u64>,
    /// http: body length (default 1000).
    pub body: Option<usize>,
    /// dns: name → address table.
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    /// TCP services: send our FIN as soon as a connection is accepted
    /// (tcp-sink only: it never writes).
    pub fin_first: Option<bool>,
    /// TCP services: abort (RST) once this many bytes were read plus
    /// written on a connection.
    pub abort_after: Option<u64>,
}

/// `[[remote_host]]`: the path to one remote IP.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteHostSection {
    /// The remote IP.
    pub ip: String,
    /// One-way latency, seconds (default 0.01).
    pub latency: Option<f64>,
    /// Bits per second (default 100 Mbit/s).
    pub bandwidth: Option<u64>,
    /// TCP MSS on the path (default 1460).
    pub mss: Option<u32>,
    /// `reachable` (default), `host-unreachable`, `no-route`, `blackhole`.
    pub reach: Option<String>,
    /// Whether it answers ping (default true).
    pub answers_ping: Option<bool>,
}

/// `[host_faults]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFaultsSection {
    /// Probability that a connection attempt is refused.
    pub refuse_probability: Option<f64>,
    /// Ports whose connection attempts are always refused.
    #[serde(default)]
    pub refuse_ports: Vec<u16>,
    /// Reset connections after this many bytes.
    pub reset_after: Option<u64>,
    /// Probability of a spurious EAGAIN per socket call.
    pub eagain: Option<f64>,
    /// Largest read per call.
    pub max_read: Option<usize>,
    /// Largest write per call.
    pub max_write: Option<usize>,
    /// Draw all of the above from the seed.
    pub swarm: Option<bool>,
}

/// `[expect]`: what a passing run looks like.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSection {
    /// Every workload must finish without error (default true).
    pub workloads_succeed: Option<bool>,
    /// Ping / UDP echo: least fraction of requests answered (default 1.0).
    pub min_reply_ratio: Option<f64>,
    /// Most engine drops allowed in total (default: not checked).
    pub max_engine_drops: Option<u64>,
    /// The guest must obtain an address by DHCP (default: true when DHCP
    /// is on).
    pub dhcp: Option<bool>,
    /// Every workload must fail, with an error containing this text (e.g.
    /// `"connection refused"`, `"connection reset"`); `workloads_succeed`
    /// is then not checked.
    pub workload_error: Option<String>,
}

pub(crate) fn secs(v: Option<f64>, default: f64, what: &str) -> Result<Duration, ScenarioError> {
    let v = v.unwrap_or(default);
    if !v.is_finite() || !(0.0..=1e7).contains(&v) {
        return Err(ScenarioError::Invalid(format!(
            "{what}: {v} is not a duration in seconds"
        )));
    }
    Ok(Duration::from_nanos((v * 1e9).round() as u64))
}

fn prob(v: f64, what: &str) -> Result<f64, ScenarioError> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(ScenarioError::Invalid(format!(
            "{what}: {v} is not a probability"
        )))
    }
}

fn addr<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, ScenarioError> {
    s.parse()
        .map_err(|_| ScenarioError::Invalid(format!("{what}: `{s}` is not a valid address")))
}

/// Counters of the UDP echo services of a run.
#[derive(Clone, Debug, Default)]
pub struct UdpEchoStats(Arc<AtomicU64>);

impl UdpEchoStats {
    /// Datagrams echoed.
    pub fn echoed(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A UDP echo service: every datagram goes back to its sender unchanged.
#[derive(Debug)]
pub struct UdpEcho {
    stats: UdpEchoStats,
}

impl UdpEcho {
    /// A service counting into `stats`.
    pub fn new(stats: UdpEchoStats) -> Self {
        UdpEcho { stats }
    }
}

impl DatagramApp for UdpEcho {
    fn on_datagram(
        &mut self,
        _now: Instant,
        _from: SocketAddr,
        _to: SocketAddr,
        payload: &[u8],
        replies: &mut Vec<Vec<u8>>,
    ) {
        self.stats.0.fetch_add(1, Ordering::Relaxed);
        replies.push(payload.to_vec());
    }
}

/// What one run did and whether it passed.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// Scenario name.
    pub name: String,
    /// Master seed.
    pub seed: u64,
    /// Why the run stopped.
    pub stop: StopReason,
    /// Virtual time at the end.
    pub virtual_end: Instant,
    /// Hash of the whole event trace.
    pub trace_hash: u64,
    /// Events in the trace.
    pub trace_events: u64,
    /// Driver counters.
    pub sim: SimCounters,
    /// Engine counters.
    pub engine: passt_engine::Counters,
    /// Guest → engine link.
    pub up: LinkCounters,
    /// Engine → guest link.
    pub down: LinkCounters,
    /// The guest's address, if it got one (smoltcp guests).
    pub guest_address: Option<String>,
    /// The guest's default gateway (smoltcp guests).
    pub guest_router: Option<Ipv4Addr>,
    /// DNS servers the guest learnt by DHCP (smoltcp guests).
    pub guest_dns: Vec<Ipv4Addr>,
    /// Workload reports (smoltcp guests).
    pub workloads: Vec<WorkloadReport>,
    /// Inbound client reports (`[[inbound]]`), one per connection.
    pub inbound: Vec<WorkloadReport>,
    /// The script's outcome (scripted guests).
    pub script: Option<Result<(), String>>,
    /// Datagrams the UDP echo services answered.
    pub udp_echoed: u64,
    /// Bytes the TCP sinks received.
    pub sink_bytes: u64,
    /// The guest-side capture, if asked for.
    pub pcap: Option<Vec<u8>>,
    /// Every failed criterion; empty when the run passed.
    pub failures: Vec<String>,
}

impl RunReport {
    /// Whether every criterion held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        let _ = writeln!(s, "scenario          {}", self.name);
        let _ = writeln!(s, "seed              {}", self.seed);
        let _ = writeln!(
            s,
            "stopped           {:?} at {} (virtual)",
            self.stop, self.virtual_end
        );
        if let Some(a) = &self.guest_address {
            let _ = writeln!(s, "guest address     {a}");
        }
        for w in self.workloads.iter().chain(&self.inbound) {
            let _ = write!(
                s,
                "flow              {}: sent {} ({} B) received {} ({} B)",
                w.name, w.sent, w.bytes_sent, w.received, w.bytes_received
            );
            if w.connections > 0 {
                let _ = write!(s, " connections {}", w.connections);
            }
            if w.duplicates > 0 || w.corrupt > 0 {
                let _ = write!(s, " dup {} corrupt {}", w.duplicates, w.corrupt);
            }
            if let (Some(lo), Some(hi)) = (w.rtt_min, w.rtt_max) {
                let _ = write!(s, " rtt {lo:?}..{hi:?}");
            }
            match (&w.error, w.finished) {
                (Some(e), _) => {
                    let _ = write!(s, " FAILED: {e}");
                }
                (None, Some(t)) => {
                    let _ = write!(s, " done at {t}");
                }
                (None, None) => s.push_str(" unfinished"),
            }
            s.push('\n');
        }
        if let Some(r) = &self.script {
            match r {
                Ok(()) => s.push_str("script            passed\n"),
                Err(e) => {
                    let _ = writeln!(s, "script            FAILED: {e}");
                }
            }
        }
        let _ = writeln!(
            s,
            "guest -> engine   {} frames {} B sent, {} delivered",
            self.up.sent, self.up.sent_bytes, self.up.delivered
        );
        let _ = writeln!(
            s,
            "engine -> guest   {} frames {} B sent, {} delivered",
            self.down.sent, self.down.sent_bytes, self.down.delivered
        );
        let _ = writeln!(
            s,
            "tcp retransmits   guest {} engine {}",
            self.sim.tcp_retransmits_up, self.sim.tcp_retransmits_down
        );
        if self.udp_echoed > 0 {
            let _ = writeln!(s, "udp echoed        {}", self.udp_echoed);
        }
        if self.sink_bytes > 0 {
            let _ = writeln!(s, "sink bytes        {}", self.sink_bytes);
        }
        for (dir, c) in [
            ("guest -> engine", &self.up),
            ("engine -> guest", &self.down),
        ] {
            for cause in DropCause::ALL {
                let n = c.dropped(cause);
                if n > 0 {
                    let _ = writeln!(s, "link drops        {dir} {cause}: {n}");
                }
            }
            if c.duplicated + c.corrupted > 0 {
                let _ = writeln!(
                    s,
                    "link faults       {dir} duplicated {} corrupted {}",
                    c.duplicated, c.corrupted
                );
            }
        }
        for (reason, n) in self.engine.nonzero_drops() {
            let _ = writeln!(s, "engine drops      {reason}: {n}");
        }
        let _ = writeln!(
            s,
            "trace             {:016x} ({} events)",
            self.trace_hash, self.trace_events
        );
        for e in &self.failures {
            let _ = writeln!(s, "FAILED            {e}");
        }
        f.write_str(&s)
    }
}

/// What a built scenario needs to keep for its report.
struct Observers {
    udp_echo: UdpEchoStats,
    sinks: Vec<SinkStats>,
}

impl Scenario {
    /// Parses a scenario from TOML text; `origin` names it in errors and
    /// `base_dir` resolves relative script paths.
    pub fn from_toml(
        text: &str,
        origin: &str,
        base_dir: Option<&Path>,
    ) -> Result<Self, ScenarioError> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Format {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        s.base_dir = base_dir.map(Path::to_path_buf);
        if s.name.is_none() {
            s.name = Some(
                Path::new(origin)
                    .file_stem()
                    .map_or_else(|| origin.to_string(), |n| n.to_string_lossy().into_owned()),
            );
        }
        s.validate()?;
        Ok(s)
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string(), path.parent())
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("scenario")
    }

    /// The default seed.
    pub fn default_seed(&self) -> u64 {
        self.seed.unwrap_or(1)
    }

    /// The longest virtual run.
    pub fn duration(&self) -> Duration {
        secs(self.duration, 60.0, "duration").unwrap_or(Duration::from_secs(60))
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        secs(self.duration, 60.0, "duration")?;
        // Building with seed 0 checks every value once.
        self.build(0).map(|_| ())
    }

    pub(crate) fn is_script(&self) -> Result<bool, ScenarioError> {
        match self.guest.kind.as_deref() {
            None | Some("smoltcp") => Ok(false),
            Some("script") => Ok(true),
            Some(other) => Err(ScenarioError::Invalid(format!(
                "guest.kind: `{other}` (use smoltcp or script)"
            ))),
        }
    }

    fn script(&self) -> Result<Script, ScenarioError> {
        let (text, origin) = match (&self.guest.script, &self.guest.script_text) {
            (Some(p), None) => {
                let path = match &self.base_dir {
                    Some(d) => d.join(p),
                    None => PathBuf::from(p),
                };
                let text = std::fs::read_to_string(&path).map_err(|source| ScenarioError::Io {
                    path: path.clone(),
                    source,
                })?;
                (text, path.display().to_string())
            }
            (None, Some(t)) => (t.clone(), "inline script".to_string()),
            _ => {
                return Err(ScenarioError::Invalid(
                    "a script guest needs exactly one of guest.script and guest.script_text".into(),
                ));
            }
        };
        Script::parse(&text).map_err(|source| ScenarioError::Script {
            path: origin,
            source,
        })
    }

    pub(crate) fn workloads(&self) -> Result<Vec<WorkloadSpec>, ScenarioError> {
        let mut out = Vec::new();
        for (i, w) in self.guest.workload.iter().enumerate() {
            let what = format!("guest.workload[{i}]");
            let dst4 = |default: Option<&str>| -> Result<SocketAddrV4, ScenarioError> {
                let d = w.dst.as_deref().or(default).ok_or_else(|| {
                    ScenarioError::Invalid(format!("{what}: `dst = \"IP:PORT\"` is needed"))
                })?;
                addr(d, &format!("{what}.dst"))
            };
            let workload = match w.kind.as_str() {
                "ping" => Workload::Ping {
                    dst: w
                        .dst
                        .as_deref()
                        .map(|d| addr::<Ipv4Addr>(d, &format!("{what}.dst")))
                        .transpose()?,
                    count: w.count.unwrap_or(5),
                    interval: secs(w.interval, 0.1, &what)?,
                    size: w.size.unwrap_or(56),
                },
                "udp-echo" => {
                    let size = w.size.unwrap_or(64);
                    if size < 4 {
                        return Err(ScenarioError::Invalid(format!("{what}: size must be ≥ 4")));
                    }
                    Workload::UdpEcho {
                        dst: dst4(None)?,
                        count: w.count.unwrap_or(5),
                        interval: secs(w.interval, 0.1, &what)?,
                        size,
                    }
                }
                "tcp-echo" => Workload::TcpEcho {
                    dst: dst4(None)?,
                    bytes: w.bytes.unwrap_or(100_000),
                },
                "tcp-send" => Workload::TcpSend {
                    dst: dst4(None)?,
                    bytes: w.bytes.unwrap_or(100_000),
                },
                "tcp-recv" => Workload::TcpRecv {
                    dst: dst4(None)?,
                    bytes: w.bytes.unwrap_or(100_000),
                },
                "tcp-half-close" => Workload::TcpHalfClose {
                    dst: dst4(None)?,
                    bytes: w.bytes.unwrap_or(100_000),
                },
                "tcp-serve" => {
                    let port = w.port.ok_or_else(|| {
                        ScenarioError::Invalid(format!("{what}: tcp-serve needs `port`"))
                    })?;
                    let mode = match w.mode.as_deref() {
                        None | Some("echo") => ServeMode::Echo { expect: w.bytes },
                        Some("sink") => ServeMode::Sink { expect: w.bytes },
                        Some("source") => ServeMode::Source {
                            bytes: w.bytes.unwrap_or(100_000),
                        },
                        Some(other) => {
                            return Err(ScenarioError::Invalid(format!(
                                "{what}.mode: `{other}` (echo, sink, source)"
                            )));
                        }
                    };
                    let connections = w.connections.unwrap_or(1);
                    if connections == 0 || connections > MAX_SERVE_CONNECTIONS {
                        return Err(ScenarioError::Invalid(format!(
                            "{what}.connections: {connections} (1..={MAX_SERVE_CONNECTIONS})"
                        )));
                    }
                    Workload::TcpServe {
                        port,
                        mode,
                        connections,
                    }
                }
                other => {
                    return Err(ScenarioError::Invalid(format!(
                        "{what}: unknown type `{other}` (ping, udp-echo, tcp-echo, tcp-send, tcp-recv, tcp-half-close, tcp-serve)"
                    )));
                }
            };
            let tcp_client = matches!(
                workload,
                Workload::TcpEcho { .. }
                    | Workload::TcpSend { .. }
                    | Workload::TcpRecv { .. }
                    | Workload::TcpHalfClose { .. }
            );
            let tcp_knobs = w.buffer.is_some()
                || w.pause_after.is_some()
                || w.pause.is_some()
                || w.abort_after.is_some();
            if tcp_knobs && !tcp_client {
                return Err(ScenarioError::Invalid(format!(
                    "{what}: buffer, pause_after, pause and abort_after are for TCP clients (tcp-echo, tcp-send, tcp-recv, tcp-half-close)"
                )));
            }
            let mut tcp = TcpClientOptions::default();
            if let Some(b) = w.buffer {
                if !(64..=16 << 20).contains(&b) {
                    return Err(ScenarioError::Invalid(format!(
                        "{what}.buffer: {b} (64..=16777216)"
                    )));
                }
                tcp.buffer = b;
            }
            tcp.pause_after = w.pause_after;
            tcp.pause = secs(w.pause, 1.0, &format!("{what}.pause"))?;
            tcp.abort_after = w.abort_after;
            out.push(WorkloadSpec {
                workload,
                start: secs(w.start, 0.0, &what)?,
                timeout: secs(w.timeout, 60.0, &what)?,
                linger: secs(w.linger, 2.0, &what)?,
                tcp,
            });
        }
        Ok(out)
    }

    pub(crate) fn chain(
        &self,
        params: &FaultParams,
        rng: SimRng,
        swarm_seed: u64,
    ) -> Result<FaultChain, ScenarioError> {
        if params.swarm == Some(true) {
            return Ok(FaultChain::swarm(swarm_seed));
        }
        let mut chain = FaultChain::new(rng);
        if let Some(mtu) = params.mtu {
            chain.push(MtuClamp::drop_above(mtu));
        }
        if let Some(rate) = params.rate {
            chain.push(TokenBucket::new(rate, 64 * 1024).with_queue_limit(256 * 1024));
        }
        if let Some([g2b, b2g, loss_bad]) = params.burst_loss {
            chain.push(GilbertElliott::new(
                prob(g2b, "burst_loss")?,
                prob(b2g, "burst_loss")?,
                0.0,
                prob(loss_bad, "burst_loss")?,
            ));
        }
        if let Some(p) = params.loss {
            chain.push(BernoulliLoss::new(prob(p, "loss")?));
        }
        if let Some(p) = params.corrupt {
            chain.push(Corruption::past_ethernet(prob(p, "corrupt")?));
        }
        if let Some(p) = params.duplicate {
            chain.push(Duplication::new(
                prob(p, "duplicate")?,
                Duration::from_millis(1),
            ));
        }
        if params.delay.is_some() || params.jitter.is_some() {
            chain.push(Latency::uniform(
                secs(params.delay, 0.0, "delay")?,
                secs(params.jitter, 0.0, "jitter")?,
            ));
        }
        Ok(chain)
    }

    pub(crate) fn merged(&self, dir: Option<&FaultParams>) -> FaultParams {
        let b = &self.faults.both;
        let d = dir.cloned().unwrap_or_default();
        FaultParams {
            loss: d.loss.or(b.loss),
            burst_loss: d.burst_loss.or(b.burst_loss),
            jitter: d.jitter.or(b.jitter),
            delay: d.delay.or(b.delay),
            duplicate: d.duplicate.or(b.duplicate),
            corrupt: d.corrupt.or(b.corrupt),
            mtu: d.mtu.or(b.mtu),
            rate: d.rate.or(b.rate),
            swarm: d.swarm.or(b.swarm),
        }
    }

    fn host(&self, rng: &SimRng, seed: u64) -> Result<(SimHost, Observers), ScenarioError> {
        let mut host = SimHost::new(SimHostConfig::default(), rng.child("host"));
        for (i, h) in self.remote_host.iter().enumerate() {
            let what = format!("remote_host[{i}]");
            let ip: IpAddr = addr(&h.ip, &format!("{what}.ip"))?;
            let mut cfg = RemoteHostConfig::internet();
            cfg.link.latency = secs(h.latency, 0.01, &what)?;
            if let Some(b) = h.bandwidth {
                cfg.link.bandwidth_bps = Some(b);
            }
            if let Some(m) = h.mss {
                cfg.mss = m;
            }
            cfg.reach = match h.reach.as_deref() {
                None | Some("reachable") => Reach::Reachable,
                Some("host-unreachable") => Reach::HostUnreachable,
                Some("no-route") => Reach::NoRoute,
                Some("blackhole") => Reach::Blackhole,
                Some(other) => {
                    return Err(ScenarioError::Invalid(format!(
                        "{what}.reach: `{other}` (reachable, host-unreachable, no-route, blackhole)"
                    )));
                }
            };
            cfg.answers_ping = h.answers_ping.unwrap_or(true);
            host.set_remote_host(ip, cfg);
        }
        let hf = &self.host_faults;
        let faults = if hf.swarm == Some(true) {
            HostFaults::swarm(SimRng::from_seed(seed).child("swarm-host").next_u64())
        } else {
            let mut f = HostFaults::none();
            f.refuse.probability =
                prob(hf.refuse_probability.unwrap_or(0.0), "refuse_probability")?;
            f.refuse.ports = hf.refuse_ports.iter().copied().collect();
            f.reset_after = hf
                .reset_after
                .map(|bytes| crate::fault::ResetAfter { bytes });
            f.eagain.probability = prob(hf.eagain.unwrap_or(0.0), "eagain")?;
            f.short_io.max_read = hf.max_read.and_then(NonZeroUsize::new);
            f.short_io.max_write = hf.max_write.and_then(NonZeroUsize::new);
            f
        };
        host.set_faults(faults);
        let mut obs = Observers {
            udp_echo: UdpEchoStats::default(),
            sinks: Vec::new(),
        };
        for (i, r) in self.remote.iter().enumerate() {
            let what = format!("remote[{i}]");
            let at: SocketAddr = addr(&r.addr, &format!("{what}.addr"))?;
            let busy = |e| ScenarioError::Invalid(format!("{what}: cannot listen on {at}: {e}"));
            let tcp_service = matches!(
                r.service.as_str(),
                "tcp-echo" | "tcp-sink" | "tcp-source" | "http"
            );
            if !tcp_service && (r.fin_first.is_some() || r.abort_after.is_some()) {
                return Err(ScenarioError::Invalid(format!(
                    "{what}: fin_first and abort_after are for TCP services"
                )));
            }
            match r.service.as_str() {
                "udp-echo" => host
                    .remote_udp_serve(at, Box::new(UdpEcho::new(obs.udp_echo.clone())))
                    .map_err(busy)?,
                "dns" => {
                    let mut d = DnsResponder::new();
                    for (name, a) in &r.names {
                        d.insert(name, addr(a, &format!("{what}.names.{name}"))?);
                    }
                    host.remote_udp_serve(at, Box::new(d)).map_err(busy)?;
                }
                "tcp-echo" | "tcp-sink" | "tcp-source" | "http" => {
                    let service = match r.service.as_str() {
                        "tcp-echo" => RemoteService::Echo,
                        "tcp-sink" => {
                            let stats = SinkStats::new();
                            obs.sinks.push(stats.clone());
                            RemoteService::Sink {
                                stats,
                                rate: r.rate,
                            }
                        }
                        "tcp-source" => RemoteService::Source {
                            bytes: r.bytes.unwrap_or(100_000),
                        },
                        _ => RemoteService::Http {
                            body_len: r.body.unwrap_or(1000),
                        },
                    };
                    let options = ServiceOptions {
                        fin_first: r.fin_first.unwrap_or(false),
                        abort_after: r.abort_after,
                    };
                    if options.fin_first && r.service != "tcp-sink" {
                        return Err(ScenarioError::Invalid(format!(
                            "{what}.fin_first: only for tcp-sink (a service that never writes)"
                        )));
                    }
                    let service = if options == ServiceOptions::default() {
                        service
                    } else {
                        RemoteService::WithOptions(Box::new(service), options)
                    };
                    // The listen backlog of a current Linux (`somaxconn`
                    // 4096 since 5.4): a burst of connections is not
                    // throttled by SYN drops.
                    host.remote_tcp_serve(at, 4096, service).map_err(busy)?;
                }
                other => {
                    return Err(ScenarioError::Invalid(format!(
                        "{what}.service: unknown `{other}` (udp-echo, dns, tcp-echo, tcp-sink, tcp-source, http)"
                    )));
                }
            }
        }
        Ok((host, obs))
    }

    /// `[engine] mode`: pasta's defaults or passt's.
    fn is_pasta(&self) -> Result<bool, ScenarioError> {
        match self.engine.mode.as_deref() {
            None | Some("passt") => Ok(false),
            Some("pasta") => Ok(true),
            Some(other) => Err(ScenarioError::Invalid(format!(
                "engine.mode: unknown `{other}` (passt, pasta)"
            ))),
        }
    }

    fn build(&self, seed: u64) -> Result<(Simulation, Observers), ScenarioError> {
        let root = SimRng::from_seed(seed);
        let mut config = Config::example();
        let pasta = self.is_pasta()?;
        if pasta {
            config.mtu = passt_engine::config::DEFAULT_MTU;
            config.splice = passt_engine::config::Splice::On;
        }
        if let Some(mtu) = self.engine.mtu {
            config.mtu = mtu;
        }
        if let Some(n) = self.engine.flow_capacity {
            config.flow_capacity = n;
        }
        if let Some(n) = self.engine.tx_queue_frames {
            config.tx_queue_frames = n;
        }
        let (host, obs) = self.host(&root, seed)?;
        let guest = if self.is_script()? {
            SimGuest::Script(Box::new(ScriptGuest::new(
                self.script()?,
                config.our_mac,
                Instant::ZERO,
            )))
        } else {
            let mut g = SmolGuestConfig::new(root.child("guest").next_u64());
            g.dhcp = self.guest.dhcp.unwrap_or(true);
            g.mtu = self
                .guest
                .mtu
                .unwrap_or(if pasta { SMOL_MAX_MTU } else { 1500 });
            if !(576..=SMOL_MAX_MTU).contains(&g.mtu) {
                return Err(ScenarioError::Invalid(format!("guest.mtu: {}", g.mtu)));
            }
            if let Some(v4) = &config.ipv4 {
                g.static_v4 = Some((v4.addr, v4.prefix_len, v4.gateway));
            }
            g.workloads = self.workloads()?;
            SimGuest::Smol(Box::new(SmolGuest::new(g, Instant::ZERO)))
        };
        let link_cfg = LinkConfig {
            bandwidth_bps: self.link.bandwidth,
            latency: secs(self.link.latency, 0.0001, "link.latency")?,
        };
        let up = self.chain(
            &self.merged(self.faults.up.as_ref()),
            root.child("link-up"),
            root.child("swarm-up").next_u64(),
        )?;
        let down = self.chain(
            &self.merged(self.faults.down.as_ref()),
            root.child("link-down"),
            root.child("swarm-down").next_u64(),
        )?;
        let mut sim = Simulation::new(
            config,
            host,
            root.child("engine").next_u64(),
            guest,
            Link::new("guest->engine", link_cfg, up),
            Link::new("engine->guest", link_cfg, down),
        )?;
        for (i, (at, guest_port)) in self.forwards()?.into_iter().enumerate() {
            sim.engine_mut().tcp_listen(at, guest_port).map_err(|e| {
                ScenarioError::Invalid(format!("forward[{i}]: cannot listen on {at}: {e}"))
            })?;
        }
        // Checks the clients' addresses once.
        self.inbound_clients(sim.host())?;
        Ok((sim, obs))
    }

    /// Runs the scenario with `seed`, capturing the guest side as pcap if
    /// `capture`.
    pub fn run(&self, seed: u64, capture: bool) -> Result<RunReport, ScenarioError> {
        self.start(seed, capture)?.run(&mut |_| {})
    }

    /// Builds the scenario with `seed` without running it: the test may
    /// add remote services or faults to the simulation, run it while
    /// sampling its state ([`ScenarioRun::run`]), then let it settle and
    /// inspect what is left ([`ScenarioRun::settle`]).
    pub fn start(&self, seed: u64, capture: bool) -> Result<ScenarioRun<'_>, ScenarioError> {
        let (mut sim, obs) = self.build(seed)?;
        if capture {
            sim.enable_capture();
        }
        Ok(ScenarioRun {
            scenario: self,
            seed,
            sim,
            obs,
        })
    }

    fn finish_run(
        &self,
        seed: u64,
        sim: &mut Simulation,
        obs: &Observers,
        observe: &mut dyn FnMut(&Simulation),
    ) -> Result<RunReport, ScenarioError> {
        let end = Instant::ZERO + self.duration();
        let (stop, inbound) = if self.inbound.is_empty() {
            (sim.run_until_observed(end, observe), Vec::new())
        } else {
            let clients = self.inbound_clients(sim.host())?;
            drive_with_clients(sim, end, clients, observe)
        };
        let mut report = RunReport {
            name: self.name().to_string(),
            seed,
            stop,
            virtual_end: sim.now(),
            trace_hash: sim.trace_hash(),
            trace_events: sim.trace_events(),
            sim: sim.counters().clone(),
            engine: sim.engine().counters().clone(),
            up: *sim.link_to_engine().counters(),
            down: *sim.link_to_guest().counters(),
            guest_address: sim
                .guest()
                .as_smol()
                .and_then(|g| g.address())
                .map(|a| a.to_string()),
            guest_router: sim.guest().as_smol().and_then(|g| g.router()),
            guest_dns: sim
                .guest()
                .as_smol()
                .map(|g| g.dns_servers().to_vec())
                .unwrap_or_default(),
            workloads: sim
                .guest()
                .as_smol()
                .map(|g| g.reports())
                .unwrap_or_default(),
            inbound,
            script: sim
                .guest()
                .as_script()
                .map(|g| g.outcome().map_err(|m| m.to_string())),
            udp_echoed: obs.udp_echo.echoed(),
            sink_bytes: obs.sinks.iter().map(SinkStats::bytes).sum(),
            pcap: sim.take_pcap(),
            failures: Vec::new(),
        };
        report.failures = self.judge(&report, sim.guest());
        Ok(report)
    }

    /// Every pass criterion of `[expect]` (and the ones always checked)
    /// applied to a finished run; the real arm judges its runs with it too.
    pub(crate) fn judge(&self, r: &RunReport, guest: &SimGuest) -> Vec<String> {
        let mut f = Vec::new();
        if r.stop == StopReason::Stalled {
            f.push(format!("the run stalled at {}", r.virtual_end));
        }
        if !r.up.is_balanced() || !r.down.is_balanced() {
            f.push("link counters do not balance".into());
        }
        if let Some(Err(e)) = &r.script {
            f.push(e.clone());
        }
        let x = &self.expect;
        if let Some(g) = guest.as_smol() {
            let dhcp_on = self.guest.dhcp.unwrap_or(true);
            if x.dhcp.unwrap_or(dhcp_on) && g.configured_at().is_none() {
                f.push("the guest never obtained an address by DHCP".into());
            }
            let ratio = x.min_reply_ratio.unwrap_or(1.0);
            for w in &r.workloads {
                if let Some(want) = &x.workload_error {
                    match &w.error {
                        Some(e) if e.contains(want.as_str()) => {}
                        Some(e) => f.push(format!(
                            "workload `{}`: expected an error with `{want}`, got: {e}",
                            w.name
                        )),
                        None => f.push(format!(
                            "workload `{}`: expected an error with `{want}`, it succeeded",
                            w.name
                        )),
                    }
                } else if x.workloads_succeed.unwrap_or(true) && !w.succeeded() {
                    f.push(format!(
                        "workload `{}`: {}",
                        w.name,
                        w.error.as_deref().unwrap_or("did not finish")
                    ));
                }
                if w.sent > 0 && (w.received as f64) < ratio * w.sent as f64 {
                    f.push(format!(
                        "workload `{}`: {} of {} answered, less than {ratio}",
                        w.name, w.received, w.sent
                    ));
                }
                if w.corrupt > 0 {
                    f.push(format!("workload `{}`: {} corrupt", w.name, w.corrupt));
                }
            }
        }
        for (w, spec) in r.inbound.iter().zip(self.inbound_expectations()) {
            match spec.or(x.workload_error.as_deref()) {
                Some(want) => match &w.error {
                    Some(e) if e.contains(want) => {}
                    Some(e) => f.push(format!(
                        "`{}`: expected an error with `{want}`, got: {e}",
                        w.name
                    )),
                    None => f.push(format!(
                        "`{}`: expected an error with `{want}`, it succeeded",
                        w.name
                    )),
                },
                None if x.workloads_succeed.unwrap_or(true) && !w.succeeded() => {
                    f.push(format!(
                        "`{}`: {}",
                        w.name,
                        w.error.as_deref().unwrap_or("did not finish")
                    ));
                }
                None => {}
            }
            if w.corrupt > 0 {
                f.push(format!("`{}`: {} corrupt", w.name, w.corrupt));
            }
        }
        if let Some(max) = x.max_engine_drops {
            if r.engine.total_drops() > max {
                f.push(format!(
                    "engine dropped {} frames, more than {max}",
                    r.engine.total_drops()
                ));
            }
        }
        // Frames of each class the engine received are the ones the link
        // delivered: nothing is lost between link and engine.
        let delivered: u64 = FrameClass::ALL.iter().map(|c| r.sim.up.delivered(*c)).sum();
        if delivered != r.engine.frames_in {
            f.push(format!(
                "{delivered} frames delivered to the engine but it counted {}",
                r.engine.frames_in
            ));
        }
        f
    }
}

impl Scenario {
    /// The `[[forward]]` entries: (host address, guest port).
    pub(crate) fn forwards(&self) -> Result<Vec<(SocketAddr, u16)>, ScenarioError> {
        let mut out = Vec::new();
        for (i, fw) in self.forward.iter().enumerate() {
            let what = format!("forward[{i}]");
            match fw.proto.as_deref() {
                None | Some("tcp") => {}
                Some(other) => {
                    return Err(ScenarioError::Invalid(format!(
                        "{what}.proto: `{other}` (only tcp)"
                    )));
                }
            }
            let ip: IpAddr = addr(fw.addr.as_deref().unwrap_or("0.0.0.0"), &what)?;
            if fw.host_port == 0 {
                return Err(ScenarioError::Invalid(format!("{what}.host_port: 0")));
            }
            let guest_port = fw.guest_port.unwrap_or(fw.host_port);
            if guest_port == 0 {
                return Err(ScenarioError::Invalid(format!("{what}.guest_port: 0")));
            }
            out.push((SocketAddr::new(ip, fw.host_port), guest_port));
        }
        Ok(out)
    }

    /// One entry per inbound connection, in start order within each
    /// `[[inbound]]` entry (entries in file order).
    pub(crate) fn inbound_clients(
        &self,
        host: &SimHost,
    ) -> Result<Vec<InboundClientSpec>, ScenarioError> {
        let mut out = Vec::new();
        for (i, c) in self.inbound.iter().enumerate() {
            let what = format!("inbound[{i}]");
            let from = c.from.as_deref().unwrap_or("203.0.113.9");
            let from: SocketAddr = match from.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => SocketAddr::new(addr(from, &format!("{what}.from"))?, 0),
            };
            let to: SocketAddr = match &c.to {
                Some(t) => addr(t, &format!("{what}.to"))?,
                None => {
                    let port = self.forward.first().map(|f| f.host_port).ok_or_else(|| {
                        ScenarioError::Invalid(format!(
                            "{what}: `to` is needed when there is no [[forward]]"
                        ))
                    })?;
                    let ip = match from.ip() {
                        IpAddr::V4(_) => host.config().host_v4.map(IpAddr::V4),
                        IpAddr::V6(_) => host.config().host_v6.map(IpAddr::V6),
                    }
                    .ok_or_else(|| {
                        ScenarioError::Invalid(format!("{what}: the host has no address to reach"))
                    })?;
                    SocketAddr::new(ip, port)
                }
            };
            if from.is_ipv4() != to.is_ipv4() {
                return Err(ScenarioError::Invalid(format!(
                    "{what}: `from` and `to` are of different families"
                )));
            }
            let count = c.count.unwrap_or(1);
            if count == 0 || count > 10_000 {
                return Err(ScenarioError::Invalid(format!(
                    "{what}.count: {count} (1..=10000)"
                )));
            }
            let start = secs(c.start, 0.5, &format!("{what}.start"))?;
            let interval = secs(c.interval, 0.0, &format!("{what}.interval"))?;
            for k in 0..count {
                out.push(InboundClientSpec {
                    from,
                    to,
                    start: start + interval * k,
                    send: c.send.unwrap_or(0),
                    expect: c.expect.unwrap_or(0),
                    timeout: secs(c.timeout, 60.0, &format!("{what}.timeout"))?,
                });
            }
        }
        Ok(out)
    }

    /// Each inbound connection's own `expect_error`, in the order of
    /// [`Scenario::inbound_clients`].
    fn inbound_expectations(&self) -> impl Iterator<Item = Option<&str>> {
        self.inbound.iter().flat_map(|c| {
            std::iter::repeat_n(c.expect_error.as_deref(), c.count.unwrap_or(1) as usize)
        })
    }
}

/// A built scenario, before or after its run ([`Scenario::start`]).
pub struct ScenarioRun<'a> {
    scenario: &'a Scenario,
    seed: u64,
    sim: Simulation,
    obs: Observers,
}

impl std::fmt::Debug for ScenarioRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScenarioRun")
            .field("scenario", &self.scenario.name())
            .field("seed", &self.seed)
            .field("sim", &self.sim)
            .finish_non_exhaustive()
    }
}

impl ScenarioRun<'_> {
    /// The simulation.
    pub fn sim(&self) -> &Simulation {
        &self.sim
    }

    /// The simulation, mutably (to add remote services, faults, ...).
    pub fn sim_mut(&mut self) -> &mut Simulation {
        &mut self.sim
    }

    /// Runs the scenario as [`Scenario::run`] does, calling `observe` after
    /// every step, and judges it. The capture (if on) is taken into the
    /// report, so call this once.
    pub fn run(
        &mut self,
        observe: &mut dyn FnMut(&Simulation),
    ) -> Result<RunReport, ScenarioError> {
        self.scenario
            .finish_run(self.seed, &mut self.sim, &self.obs, observe)
    }

    /// The counters of the `tcp-sink` services, in `[[remote]]` order.
    pub fn sinks(&self) -> &[SinkStats] {
        &self.obs.sinks
    }

    /// Goes on for `d` of virtual time after the run (or until nothing is
    /// pending), whether or not the guest is finished: closes complete,
    /// timers fire, state is reclaimed. `observe` runs after every step.
    pub fn settle(&mut self, d: Duration, observe: &mut dyn FnMut(&Simulation)) -> StopReason {
        let end = self.sim.now() + d;
        self.sim.settle_until(end, observe)
    }
}

/// An inbound client waiting to connect, or connected and reporting.
struct PendingClient {
    spec: InboundClientSpec,
    log: InboundLog,
    started: bool,
}

/// [`Simulation::run_until`] with inbound clients: each connects at its
/// start time (after the guest is configured; scripted guests: after time
/// zero), and the run goes on until the guest *and* every client are
/// finished. A client still unfinished at its deadline fails with a
/// timeout (a connect that never completes is never polled by the host).
fn drive_with_clients(
    sim: &mut Simulation,
    end: Instant,
    specs: Vec<InboundClientSpec>,
    observe: &mut dyn FnMut(&Simulation),
) -> (StopReason, Vec<WorkloadReport>) {
    let mut clients: Vec<PendingClient> = specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| PendingClient {
            log: InboundLog::new(format!("{} #{i}", spec.describe())),
            spec,
            started: false,
        })
        .collect();
    let stop = loop {
        let base = match sim.guest() {
            SimGuest::Smol(g) => g.configured_at(),
            SimGuest::Script(_) | SimGuest::Recorded(_) | SimGuest::Model(_) => Some(Instant::ZERO),
        };
        let now = sim.now();
        let mut client_due: Option<Instant> = None;
        for c in &mut clients {
            let Some(base) = base else { break };
            let start = base + c.spec.start;
            if !c.started {
                if start <= now {
                    c.started = true;
                    c.log.started(now);
                    let app = InboundClient::new(c.spec.clone(), c.log.clone());
                    if let Err(e) =
                        sim.host_mut()
                            .remote_tcp_connect_app(c.spec.from, c.spec.to, Box::new(app))
                    {
                        c.log.fail(now, format!("connect: {e}"));
                    }
                } else {
                    client_due = Some(client_due.map_or(start, |d: Instant| d.min(start)));
                    continue;
                }
            }
            if !c.log.is_finished() {
                let deadline = c.log.report().started.unwrap_or(now) + c.spec.timeout;
                if deadline <= now {
                    let r = c.log.report();
                    c.log.fail(
                        now,
                        format!(
                            "timed out after {:?}: {} B sent, {} B received",
                            c.spec.timeout, r.bytes_sent, r.bytes_received
                        ),
                    );
                } else {
                    client_due = Some(client_due.map_or(deadline, |d| d.min(deadline)));
                }
            }
        }
        let clients_done = clients.iter().all(|c| c.started && c.log.is_finished());
        if sim.guest().finished() && clients_done {
            break StopReason::GuestFinished;
        }
        let next = match (sim.next_deadline(), client_due) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => break StopReason::Idle,
            },
        };
        if next > end {
            // Moves the clocks to `end`; the guest may be finished already.
            let r = sim.run_until_observed(end, observe);
            break if r == StopReason::GuestFinished {
                StopReason::TimeUp
            } else {
                r
            };
        }
        if !sim.step_at(next) {
            break StopReason::Stalled;
        }
        observe(sim);
    };
    let now = sim.now();
    for c in &clients {
        if !c.log.is_finished() {
            c.log
                .fail(now, "did not finish before the end of the run".into());
        }
    }
    (stop, clients.iter().map(|c| c.log.report()).collect())
}

/// `PASST_SIM_CHECK_DETERMINISM`: set (to anything but `0` or empty) to run
/// every scenario twice and compare trace hashes.
pub fn determinism_check_requested() -> bool {
    std::env::var("PASST_SIM_CHECK_DETERMINISM")
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false)
}

/// Runs `scenario` twice with `seed` and fails if the trace hash, the
/// counters or the capture differ.
pub fn check_determinism(scenario: &Scenario, seed: u64) -> Result<RunReport, String> {
    let a = scenario.run(seed, true).map_err(|e| e.to_string())?;
    let b = scenario.run(seed, true).map_err(|e| e.to_string())?;
    if a.trace_hash != b.trace_hash || a.trace_events != b.trace_events {
        return Err(format!(
            "non-deterministic: seed {seed} gave trace {:016x} ({} events) then {:016x} ({} events)",
            a.trace_hash, a.trace_events, b.trace_hash, b.trace_events
        ));
    }
    if a.pcap != b.pcap {
        return Err(format!(
            "non-deterministic: seed {seed} gave two different captures"
        ));
    }
    if a.sim != b.sim || a.engine != b.engine {
        return Err(format!(
            "non-deterministic: seed {seed} gave different counters"
        ));
    }
    Ok(a)
}
