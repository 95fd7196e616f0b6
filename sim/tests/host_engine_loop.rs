//! How a simulation drives `Engine<SimHost>`: advance the host's internal
//! events to `now`, hand level-triggered readiness to the engine, and jump
//! to the earliest deadline of either.

use std::time::Duration;

use passt_engine::host_io::{HostIo, Interest, Token};
use passt_engine::{Config, Engine, Instant};
use passt_sim::SimHost;

/// One step of the loop at `now`; returns the next time anything is due.
fn step(
    engine: &mut Engine<SimHost>,
    now: Instant,
    events: &mut Vec<(Token, passt_engine::Readiness)>,
) -> Option<Instant> {
    engine.host_mut().advance(now);
    events.clear();
    engine.host_mut().take_events(events);
    for &(token, readiness) in events.iter() {
        engine.handle_host_event(now, token, readiness);
    }
    if engine.poll_timeout().is_some_and(|t| t <= now) {
        engine.handle_timeout(now);
    }
    [engine.poll_timeout(), engine.host().poll_timeout()]
        .into_iter()
        .flatten()
        .min()
}

#[test]
fn engine_runs_on_sim_host() {
    let mut engine = Engine::new(Config::example(), SimHost::with_seed(41), 41).expect("engine");
    // A host socket opened through the engine's HostIo, connecting to a
    // closed remote port: the loop must deliver the error readiness.
    let (s, _) = engine
        .host_mut()
        .tcp_connect(None, "192.0.2.1:81".parse().unwrap())
        .unwrap();
    engine
        .host_mut()
        .set_interest(s, Token(5), Interest::WRITE)
        .unwrap();
    let mut events = Vec::new();
    let mut now = Instant::ZERO;
    let mut seen = false;
    for _ in 0..1000 {
        let next = step(&mut engine, now, &mut events);
        if events.iter().any(|(t, r)| *t == Token(5) && r.error) {
            seen = true;
            break;
        }
        match next {
            Some(t) if t > now => now = t,
            Some(_) => now += Duration::from_micros(1),
            None => break,
        }
    }
    assert!(seen, "error readiness reached the loop");
    assert_eq!(now, engine.host().now());
    assert!(
        now >= Instant::from_millis(20) && now < Instant::from_millis(21),
        "{now:?}"
    );
}
