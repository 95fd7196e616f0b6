//! `passt-sim replay TRACE`: a capture replayed through the production
//! engine in virtual time, with a per-flow comparison of the trace and the
//! replay.
//!
//! # What this module owns
//!
//! The pipeline, one submodule per stage:
//! [`input`] (the capture's frames) → [`roles`] (engine and guest MACs,
//! the engine's configuration) → [`flows`] (the trace's flows) →
//! [`remote`] (remote peers scripted per flow) and [`guest`] (the
//! recorded guest) → a [`Simulation`] run → [`flows`] again on the
//! replay's own capture → [`report`].
//!
//! # What it must never do
//!
//! Read the wall clock, draw randomness but from the seed, or panic on any
//! capture: a bad input is an [`ReplayError::Input`] (exit status 2).

pub mod decode;
pub mod faults;
pub mod flows;
pub mod guest;
pub mod html;
pub mod input;
pub mod model;
pub mod remote;
pub mod report;
pub mod roles;

use std::collections::BTreeMap;

use passt_engine::Instant;

use crate::guest::SimGuest;
use crate::host::{SimHost, SimHostConfig};
use crate::link::Link;
use crate::pcap::Capture;
use crate::seed::SimRng;
use crate::simulation::{Simulation, StopReason};

pub use guest::RecordedGuest;
pub use input::InputError;
pub use model::ModelGuest;
pub use report::Report;

/// Which guest the replay runs (`--guest`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GuestMode {
    /// The trace's guest frames at their recorded times.
    #[default]
    Recorded,
    /// Each flow's application behaviour through a smoltcp stack
    /// ([`ModelGuest`]).
    Model,
}

/// What to replay and how.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Master seed (engine ISNs, host ports, the model's stack, faults).
    pub seed: u64,
    /// `--set key=value` overrides.
    pub sets: Vec<String>,
    /// `--guest`.
    pub guest: GuestMode,
    /// `--faults`, as given (for the report) and as read
    /// ([`faults::parse`]).
    pub faults: Option<(String, crate::scenario::FaultsSection)>,
}

/// How long the model guest's replay runs past the trace's last frame
/// unless `--set tail=` says otherwise: room for retransmissions under
/// faults.
const MODEL_TAIL: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The capture cannot be replayed.
    #[error("{0}")]
    Input(#[from] InputError),
    /// An option is wrong.
    #[error("{0}")]
    Usage(String),
}

/// A finished replay.
#[derive(Debug)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// The replay's capture (guest side, both directions, virtual time).
    pub pcap: Vec<u8>,
    /// Simulation events processed (for the events-per-second line).
    pub events: u64,
    /// The trace's flows, with their segments (for `--html`).
    pub trace_flows: Vec<flows::Flow>,
    /// The replay's flows, with their segments (for `--html`).
    pub replay_flows: Vec<flows::Flow>,
    /// Guest segments held past the bound.
    pub held: Vec<guest::Held>,
}

/// Replays the capture `bytes`.
pub fn replay(bytes: &[u8], opts: &Options) -> Result<Outcome, ReplayError> {
    let frames = input::read_trace(bytes)?;
    let roles = roles::find_roles(&frames, &opts.sets).map_err(|e| {
        if e.starts_with("--set") {
            ReplayError::Usage(e)
        } else {
            ReplayError::Input(InputError::NoGuestFrames(e))
        }
    })?;
    let (config, tuning) =
        roles::infer_config(&frames, roles, &opts.sets).map_err(ReplayError::Usage)?;
    let trace_flows = flows::analyse(frames.iter().map(|f| (f.at, &f.data[..])), roles);
    let recorded = RecordedGuest::new(&frames, roles.guest, &trace_flows, tuning.hold);
    let guest_frames = recorded.remaining() as u64;
    if guest_frames == 0 {
        return Err(InputError::NoGuestFrames(format!(
            "no frame from the guest ({})",
            roles.guest
        ))
        .into());
    }
    let trace_end = frames.last().map_or(Instant::ZERO, |f| f.at);

    let root = SimRng::from_seed(opts.seed);
    let mut tuning = tuning;
    let (guest, model_unscripted) = match opts.guest {
        GuestMode::Recorded => (SimGuest::Recorded(Box::new(recorded)), Vec::new()),
        GuestMode::Model => {
            if !opts.sets.iter().any(|s| s.starts_with("tail=")) {
                tuning.tail = MODEL_TAIL;
            }
            let m = ModelGuest::new(
                &frames,
                roles.guest,
                &trace_flows,
                &config,
                root.child("guest").next_u64(),
            );
            let u = m.unscripted().to_vec();
            (SimGuest::Model(Box::new(m)), u)
        }
    };
    let (up, down) = match &opts.faults {
        Some((_, f)) => {
            let (u, d) = faults::chains(f, &root).map_err(ReplayError::Usage)?;
            (
                Link::new("guest->engine", crate::link::LinkConfig::IDEAL, u),
                Link::new("engine->guest", crate::link::LinkConfig::IDEAL, d),
            )
        }
        None => (Link::ideal("up"), Link::ideal("down")),
    };
    let host_config = SimHostConfig {
        default_remote: remote::replay_path(),
        ..SimHostConfig::default()
    };
    let mut host = SimHost::new(host_config, root.child("host"));
    let (mut inbound, unscripted) = remote::script_peers(&mut host, &trace_flows, &config);
    let mut sim = Simulation::new(
        config.clone(),
        host,
        root.child("engine").next_u64(),
        guest,
        up,
        down,
    )
    .map_err(|e| ReplayError::Usage(format!("engine configuration: {e}")))?;
    sim.enable_capture();
    let mut unscripted = unscripted;
    unscripted.extend(model_unscripted);
    for c in &inbound {
        if let Err(e) = sim.engine_mut().tcp_listen(c.listen.0, c.listen.1) {
            unscripted.push(format!("forwarded port {}: {e:?}", c.listen.0));
        }
    }
    inbound.sort_by_key(|c| c.at);
    let end = trace_end + tuning.tail;
    let mut stop = StopReason::Idle;
    for c in inbound {
        stop = sim.settle_until(c.at, &mut |_| {});
        if stop == StopReason::Stalled {
            break;
        }
        if sim.now() < c.at {
            sim.step_at(c.at);
        }
        if let Err(e) = sim
            .host_mut()
            .remote_tcp_connect_app(c.from, c.to, c.script.into_app())
        {
            unscripted.push(format!("client {} -> {}: {e:?}", c.from, c.to));
        }
    }
    if stop != StopReason::Stalled {
        stop = sim.settle_until(end, &mut |_| {});
    }
    let now = sim.now();
    let events = sim.trace_events();
    let (held, fed) = match sim.guest() {
        SimGuest::Recorded(g) => (g.held().to_vec(), g.sent()),
        _ => (
            Vec::new(),
            crate::simulation::FrameClass::ALL
                .iter()
                .map(|c| sim.counters().up.sent(*c))
                .sum(),
        ),
    };
    let notes = match sim.guest() {
        SimGuest::Model(m) => m.notes(),
        _ => Vec::new(),
    };
    let drops: BTreeMap<String, u64> = sim
        .engine()
        .counters()
        .nonzero_drops()
        .map(|(r, n)| (r.as_str().to_string(), n))
        .collect();
    let engine_frames = crate::simulation::FrameClass::ALL
        .iter()
        .map(|c| sim.counters().down.sent(*c))
        .sum();
    let pcap = sim.take_pcap().unwrap_or_default();
    let replay_frames = read_own_capture(&pcap);
    let replay_flows = flows::analyse(replay_frames.iter().map(|(t, d)| (*t, &d[..])), roles);
    let mut flows = report::compare(
        &trace_flows,
        &replay_flows,
        &held,
        tuning.hold.as_secs_f64(),
    );
    // The model guest's own findings (compare lists the trace's flows
    // first, in order).
    for (key, note) in notes {
        if let Some(i) = trace_flows.iter().position(|f| f.key == key) {
            flows[i].divergences.push(note);
        }
    }
    // A stalled loop (a model livelock) makes the whole replay suspect:
    // it counts as a divergence of its own.
    let divergences = flows.iter().map(|f| f.divergences.len()).sum::<usize>()
        + usize::from(stop == StopReason::Stalled);
    let mut cfg = BTreeMap::new();
    cfg.insert("engine mac".into(), roles.engine.to_string());
    cfg.insert("guest mac".into(), roles.guest.to_string());
    if let Some(v4) = &config.ipv4 {
        cfg.insert(
            "ipv4".into(),
            format!(
                "{}/{} gateway {} dns {:?}",
                v4.addr, v4.prefix_len, v4.gateway, v4.dns
            ),
        );
    }
    if let Some(v6) = &config.ipv6 {
        cfg.insert(
            "ipv6".into(),
            format!("{}/{} dns {:?}", v6.addr, v6.prefix_len, v6.dns),
        );
    }
    cfg.insert("mtu".into(), config.mtu.to_string());
    if opts.guest == GuestMode::Model {
        cfg.insert("guest".into(), "model".into());
    }
    if let Some((spec, _)) = &opts.faults {
        cfg.insert("faults".into(), spec.clone());
    }
    let report = Report {
        seed: opts.seed,
        config: cfg,
        flows,
        divergences,
        drops,
        summary: report::Summary {
            trace_frames: frames.len() as u64,
            guest_frames,
            guest_frames_fed: fed,
            engine_frames,
            trace_seconds: trace_end.as_nanos() as f64 / 1e9,
            replay_seconds: now.as_nanos() as f64 / 1e9,
            stopped: format!("{stop:?}"),
            unscripted,
        },
    };
    Ok(Outcome {
        report,
        pcap,
        events,
        trace_flows,
        replay_flows,
        held,
    })
}

/// The frames of the replay's own capture (written by the simulator, so
/// well-formed).
fn read_own_capture(pcap: &[u8]) -> Vec<(Instant, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(mut c) = Capture::new(pcap) {
        while let Some(Ok(r)) = c.next_record() {
            out.push((Instant::from_nanos(r.ts_nanos), r.data.to_vec()));
        }
    }
    out
}
