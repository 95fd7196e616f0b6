//! `--html FILE`: the replay report as one self-contained page, with a
//! time–sequence graph per TCP flow and direction, the trace and the
//! replay overlaid.
//!
//! # What this module owns
//!
//! Rendering a finished replay ([`super::Outcome`]) as HTML: the graphs
//! are SVG drawn with `plotters` (its SVG backend) and inlined, beside the
//! report's per-flow table and divergences, then the engine's drops and
//! the summary. Each graph shows, for one direction of a connection, the
//! data segments (a vertical bar from the first to the last sequence
//! number), the receiver's ACK line, its advertised window (ACK + scaled
//! window, RFC 7323 §2.2), retransmissions (×), the first transmission of
//! a range later retransmitted (○, presumed lost) and guest segments held
//! past the bound (▲). The axes fit the data and ACKs: a window line
//! above the top is drawn along it.
//!
//! # What it must never do
//!
//! Load anything from outside the page (no scripts, fonts, styles or
//! images by URL), write wall-clock figures (the page is as deterministic
//! as the report), or change the text and JSON reports.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use plotters::prelude::*;

use super::Outcome;
use super::flows::{Dir, ENGINE, Flow, FlowKey, GUEST, Proto, Seg};
use super::guest::Held;
use super::report::{FlowReport, Report, Side};

/// Graph size in pixels.
const SIZE: (u32, u32) = (760, 440);

/// Colours: the trace in wide pale strokes, the replay in thin dark ones
/// on top, so where both agree the replay's line sits inside the trace's.
const TRACE_DATA: RGBColor = RGBColor(120, 170, 230);
const TRACE_ACK: RGBColor = RGBColor(130, 210, 130);
const TRACE_WIN: RGBColor = RGBColor(200, 200, 200);
const REPLAY_DATA: RGBColor = RGBColor(200, 90, 0);
const REPLAY_ACK: RGBColor = RGBColor(0, 110, 0);
const REPLAY_WIN: RGBColor = RGBColor(120, 60, 160);
const MARK: RGBColor = RGBColor(220, 0, 0);
const HELD: RGBColor = RGBColor(0, 0, 0);

/// The page for a finished replay, titled with `name` (the trace's file
/// name).
pub fn render(outcome: &Outcome, name: &str) -> String {
    let r = &outcome.report;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>replay of {t}</title><style>{STYLE}</style></head><body>\n\
         <h1>passt-sim replay of <code>{t}</code></h1>\n",
        t = esc(name)
    );
    summary(&mut o, r);
    let pairs = flow_pairs(&outcome.trace_flows, &outcome.replay_flows);
    let same_order = pairs.len() == r.flows.len();
    for (i, fr) in r.flows.iter().enumerate() {
        let (t, p) = if same_order { pairs[i] } else { (None, None) };
        let key = t.or(p).map(|f| f.key);
        let bad = if fr.divergences.is_empty() {
            ""
        } else {
            " diverges"
        };
        let _ = write!(
            o,
            "<section class=\"flow{bad}\"><h2>flow {} &nbsp;{} &nbsp;{} → {}</h2>\
             <div class=\"row\"><div class=\"graphs\">",
            i + 1,
            esc(&fr.proto),
            esc(&fr.client),
            esc(&fr.server)
        );
        if key.is_some_and(|k| k.0 == Proto::Tcp) {
            let held: Vec<&Held> = outcome.held.iter().filter(|h| Some(h.key) == key).collect();
            for (label, gdir) in directions(t, p) {
                let _ = write!(o, "<figure><figcaption>{}</figcaption>", esc(&label));
                o.push_str(&graph(t, p, gdir, &held));
                o.push_str("</figure>");
            }
        } else {
            o.push_str("<p class=\"note\">no graph: not a TCP flow</p>");
        }
        o.push_str("</div><div class=\"side\">");
        flow_table(&mut o, fr);
        o.push_str("</div></div></section>\n");
    }
    if !r.flows.iter().any(|f| f.proto == "tcp") {
        o.push_str("<p class=\"note\">no TCP flow, so no time–sequence graph</p>");
    }
    tail(&mut o, r);
    o.push_str("</body></html>\n");
    o
}

/// Trace and replay flows in the report's order: every trace flow, then
/// the flows only the replay has (as `report::compare` lists them).
fn flow_pairs<'a>(
    trace: &'a [Flow],
    replay: &'a [Flow],
) -> Vec<(Option<&'a Flow>, Option<&'a Flow>)> {
    let keys: BTreeSet<FlowKey> = trace.iter().map(|f| f.key).collect();
    let mut out: Vec<_> = trace
        .iter()
        .map(|f| (Some(f), replay.iter().find(|r| r.key == f.key)))
        .collect();
    out.extend(
        replay
            .iter()
            .filter(|f| !keys.contains(&f.key))
            .map(|f| (None, Some(f))),
    );
    out
}

/// The directions worth a graph: those that carried data on either side
/// (the client's first), else the client's alone (the handshake).
fn directions(t: Option<&Flow>, p: Option<&Flow>) -> Vec<(String, usize)> {
    let f = t.or(p).expect("a flow on one side at least");
    let client = if f.guest_is_client { GUEST } else { ENGINE };
    let name = |d: usize| {
        if d == client {
            format!("client → server ({} → {})", f.client(), f.server())
        } else {
            format!("server → client ({} → {})", f.server(), f.client())
        }
    };
    let data = |d: usize| [t, p].iter().flatten().any(|f| f.dirs[d].bytes > 0);
    let mut out: Vec<_> = [client, 1 - client]
        .into_iter()
        .filter(|d| data(*d))
        .map(|d| (name(d), d))
        .collect();
    if out.is_empty() {
        out.push((name(client), client));
    }
    out
}

/// One side's series for a direction: sequence numbers relative to the
/// sender's ISN (or its first segment), times in seconds.
struct Series {
    /// (time, first, last) of each data segment, and whether it resent.
    data: Vec<(f64, f64, f64, bool)>,
    /// Step line of the receiver's ACKs.
    ack: Vec<(f64, f64)>,
    /// Step line of ACK + the receiver's scaled window.
    win: Vec<(f64, f64)>,
    /// First transmissions of ranges later resent.
    lost: Vec<(f64, f64)>,
}

fn secs(t: passt_engine::Instant) -> f64 {
    t.as_nanos() as f64 / 1e9
}

fn series(f: &Flow, gdir: usize) -> Series {
    let (tx, rx): (&Dir, &Dir) = (&f.dirs[gdir], &f.dirs[1 - gdir]);
    let base = tx
        .isn
        .or_else(|| tx.segs.first().map(|s| s.seq))
        .unwrap_or(0);
    let rel = |n: u32| f64::from(n.wrapping_sub(base));
    let data: Vec<_> = tx
        .segs
        .iter()
        .filter(|s| s.len > 0)
        .map(|s| {
            (
                secs(s.at),
                rel(s.seq),
                rel(s.seq.wrapping_add(s.len)),
                s.retransmit,
            )
        })
        .collect();
    // A range resent later: mark its first transmission (the one covering
    // the resent segment's start that was not itself a retransmission).
    let mut lost = Vec::new();
    for r in tx.segs.iter().filter(|s| s.retransmit && s.len > 0) {
        if let Some(first) = tx.segs.iter().find(|s: &&Seg| {
            !s.retransmit
                && s.len > 0
                && r.seq.wrapping_sub(s.seq) < s.len
                && (s.at, s.seq) <= (r.at, r.seq)
        }) {
            let p = (secs(first.at), rel(first.seq.wrapping_add(first.len)));
            if !lost.contains(&p) {
                lost.push(p);
            }
        }
    }
    // RFC 7323 §2.2: windows are scaled only when both SYNs offered the
    // option, and never in a SYN segment itself.
    let shift = match (tx.wscale, rx.wscale) {
        (Some(_), Some(s)) => u32::from(s.min(14)),
        _ => 0,
    };
    let (mut ack, mut win) = (Vec::new(), Vec::new());
    for s in &rx.segs {
        let Some(a) = s.ack else { continue };
        let t = secs(s.at);
        let y = rel(a);
        let w = if s.flags.contains(passt_engine::wire::TcpFlags::SYN) {
            u64::from(s.window)
        } else {
            u64::from(s.window) << shift
        };
        step(&mut ack, t, y);
        step(&mut win, t, y + w as f64);
    }
    Series {
        data,
        ack,
        win,
        lost,
    }
}

/// Cuts a step line at `x1` (carrying its last level to the edge) and
/// clamps it to `y1`.
fn cut(line: &mut Vec<(f64, f64)>, x1: f64, y1: f64) {
    let past = line.iter().position(|p| p.0 > x1);
    if let Some(i) = past {
        line.truncate(i);
        if let Some(&(_, y)) = line.last() {
            line.push((x1, y));
        }
    }
    for p in line.iter_mut() {
        p.1 = p.1.min(y1);
    }
}

/// Appends a step to a step line.
fn step(line: &mut Vec<(f64, f64)>, t: f64, y: f64) {
    if let Some(&(_, prev)) = line.last() {
        line.push((t, prev));
    }
    line.push((t, y));
}

/// The SVG graph of direction `gdir` (an index into [`Flow::dirs`]).
fn graph(t: Option<&Flow>, p: Option<&Flow>, gdir: usize, held: &[&Held]) -> String {
    let mut ts = t.map(|f| series(f, gdir));
    let mut ps = p.map(|f| series(f, gdir));
    // The axes fit the data segments (and the ACK line), so a window far
    // above the data, or a replay's tail of retransmissions in the other
    // direction, does not squash them: the ACK and window lines are cut
    // at the edges.
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 1.0f64);
    for s in ts.iter().chain(ps.iter()) {
        for &(x, _, hi, _) in &s.data {
            (x0, x1, y1) = (x0.min(x), x1.max(x), y1.max(hi));
        }
    }
    if x0 > x1 {
        for s in ts.iter().chain(ps.iter()) {
            for &(x, _) in &s.ack {
                (x0, x1) = (x0.min(x), x1.max(x));
            }
        }
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    for s in ts.iter().chain(ps.iter()) {
        for &(x, y) in &s.ack {
            if x <= x1 {
                y1 = y1.max(y);
            }
        }
    }
    let pad = ((x1 - x0) * 0.02).max(1e-6);
    let (x0, x1, y1) = (x0 - pad, x1 + pad, y1 * 1.3);
    for s in ts.iter_mut().chain(ps.iter_mut()) {
        cut(&mut s.ack, x1, y1);
        cut(&mut s.win, x1, y1);
    }
    let mut svg = String::new();
    let drawn = draw(&mut svg, (x0, x1, y1), ts.as_ref(), ps.as_ref(), held);
    match drawn {
        Ok(()) => svg,
        Err(e) => format!(
            "<p class=\"note\">graph not drawn: {}</p>",
            esc(&e.to_string())
        ),
    }
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(
    out: &mut String,
    (x0, x1, y1): (f64, f64, f64),
    trace: Option<&Series>,
    replay: Option<&Series>,
    held: &[&Held],
) -> DrawResult {
    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, 0.0..y1)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(240, 240, 240))
        .x_desc("time (s)")
        .y_desc("relative sequence")
        .y_label_formatter(&|y| bytes(*y))
        .draw()?;
    let layers = [
        (trace, TRACE_DATA, TRACE_ACK, TRACE_WIN, 5),
        (replay, REPLAY_DATA, REPLAY_ACK, REPLAY_WIN, 2),
    ];
    for (s, data, ack, win, width) in layers {
        let Some(s) = s else { continue };
        chart.draw_series(LineSeries::new(
            s.win.iter().copied(),
            win.stroke_width(width),
        ))?;
        chart.draw_series(LineSeries::new(
            s.ack.iter().copied(),
            ack.stroke_width(width),
        ))?;
        chart.draw_series(s.data.iter().map(|&(x, lo, hi, _)| {
            PathElement::new(vec![(x, lo), (x, hi)], data.stroke_width(width + 2))
        }))?;
    }
    for s in [trace, replay].into_iter().flatten() {
        chart.draw_series(
            s.data
                .iter()
                .filter(|d| d.3)
                .map(|&(x, _, hi, _)| Cross::new((x, hi), 3, MARK.stroke_width(1))),
        )?;
        chart.draw_series(
            s.lost
                .iter()
                .map(|&p| Circle::new(p, 3, MARK.stroke_width(1))),
        )?;
    }
    // Held guest segments: on the ACK line of the trace, at their time.
    let ack_at = |x: f64| {
        trace
            .and_then(|s| s.ack.iter().rev().find(|p| p.0 <= x))
            .map_or(0.0, |p| p.1)
    };
    chart.draw_series(held.iter().map(|h| {
        let x = secs(h.at);
        TriangleMarker::new((x, ack_at(x)), 6, HELD.filled())
    }))?;
    root.present()?;
    Ok(())
}

/// A sequence offset in readable units.
fn bytes(y: f64) -> String {
    if y >= 1048576.0 {
        format!("{:.1} MiB", y / 1048576.0)
    } else if y >= 1024.0 {
        format!("{:.0} KiB", y / 1024.0)
    } else {
        format!("{y:.0}")
    }
}

fn summary(o: &mut String, r: &Report) {
    let s = &r.summary;
    let verdict = if r.divergences == 0 {
        "<span class=\"ok\">no divergence</span>".to_string()
    } else {
        format!("<span class=\"bad\">{} divergences</span>", r.divergences)
    };
    let _ = write!(
        o,
        "<p class=\"verdict\">{} flows, {verdict}; seed {}</p><table class=\"kv\">",
        r.flows.len(),
        r.seed
    );
    for (k, v) in &r.config {
        let _ = write!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    let _ = write!(
        o,
        "<tr><th>duration</th><td>trace {:.6} s, replay {:.6} s (virtual), stopped: {}</td></tr>\
         </table>\n{LEGEND}\n",
        s.trace_seconds,
        s.replay_seconds,
        esc(&s.stopped)
    );
}

fn flow_table(o: &mut String, f: &FlowReport) {
    let (t, r): (&Side, &Side) = (&f.trace, &f.replay);
    let close = |c: &[String]| {
        if c.is_empty() {
            "-".to_string()
        } else {
            c.join(" ")
        }
    };
    let rows = [
        (
            "c2s bytes",
            t.c2s_bytes.to_string(),
            r.c2s_bytes.to_string(),
        ),
        (
            "s2c bytes",
            t.s2c_bytes.to_string(),
            r.s2c_bytes.to_string(),
        ),
        ("handshake", t.handshake.clone(), r.handshake.clone()),
        ("close", close(&t.close), close(&r.close)),
        (
            "retransmits c/s",
            format!("{}/{}", t.c2s_retransmits, t.s2c_retransmits),
            format!("{}/{}", r.c2s_retransmits, r.s2c_retransmits),
        ),
    ];
    o.push_str("<table><tr><th></th><th>trace</th><th>replay</th></tr>");
    for (name, a, b) in rows {
        let class = if a == b || name.starts_with("retransmits") {
            ""
        } else {
            " class=\"differs\""
        };
        let _ = write!(
            o,
            "<tr{class}><th>{name}</th><td>{}</td><td>{}</td></tr>",
            esc(&a),
            esc(&b)
        );
    }
    o.push_str("</table>");
    if f.divergences.is_empty() {
        o.push_str("<p class=\"ok\">no divergence</p>");
    } else {
        o.push_str("<ul class=\"divergences\">");
        for d in &f.divergences {
            let _ = write!(o, "<li>{}</li>", esc(d));
        }
        o.push_str("</ul>");
    }
}

fn tail(o: &mut String, r: &Report) {
    o.push_str("<section><h2>engine drops</h2>");
    if r.drops.is_empty() {
        o.push_str("<p>none</p>");
    } else {
        o.push_str("<table>");
        for (reason, n) in &r.drops {
            let _ = write!(o, "<tr><th>{}</th><td>{n}</td></tr>", esc(reason));
        }
        o.push_str("</table>");
    }
    let s = &r.summary;
    let _ = write!(
        o,
        "<h2>summary</h2><table class=\"kv\">\
         <tr><th>frames</th><td>trace {} (guest {}), fed {}, engine sent {}</td></tr>",
        s.trace_frames, s.guest_frames, s.guest_frames_fed, s.engine_frames
    );
    for u in &s.unscripted {
        let _ = write!(o, "<tr><th>not scripted</th><td>{}</td></tr>", esc(u));
    }
    o.push_str("</table></section>\n");
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.1em;margin:.2em 0}\
section.flow{border:1px solid #ccc;border-radius:6px;padding:.6em;margin:1em 0}\
section.diverges{border-color:#d33;border-width:2px}\
.row{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}\
figure{margin:0 0 .8em 0}figcaption{font-size:.9em;color:#555}\
table{border-collapse:collapse;font-size:.9em}th,td{padding:2px 8px;text-align:left}\
tr.differs td{background:#fdd}.ok{color:#070}.bad{color:#c00;font-weight:bold}\
ul.divergences{color:#a00;max-width:32em}.note{color:#777}\
.legend span{display:inline-block;margin-right:1.2em;font-size:.9em}\
.sw{display:inline-block;width:1.6em;height:.5em;vertical-align:middle;margin-right:.3em}";

const LEGEND: &str = "<p class=\"legend\">\
<span><i class=\"sw\" style=\"background:rgb(120,170,230)\"></i>trace: data segments</span>\
<span><i class=\"sw\" style=\"background:rgb(130,210,130)\"></i>trace: ACK</span>\
<span><i class=\"sw\" style=\"background:rgb(200,200,200)\"></i>trace: ACK + window</span>\
<span><i class=\"sw\" style=\"background:rgb(200,90,0)\"></i>replay: data segments</span>\
<span><i class=\"sw\" style=\"background:rgb(0,110,0)\"></i>replay: ACK</span>\
<span><i class=\"sw\" style=\"background:rgb(120,60,160)\"></i>replay: ACK + window</span>\
<span style=\"color:#d00\">× retransmission</span>\
<span style=\"color:#d00\">○ first sent, later resent (presumed lost)</span>\
<span>▲ guest segment held past the bound</span></p>";

#[cfg(test)]
mod tests {
    use super::*;
    use passt_engine::Instant;
    use passt_engine::wire::TcpFlags;

    fn seg(ms: u64, seq: u32, len: u32, ack: Option<u32>, window: u16, flags: u8) -> Seg {
        Seg {
            at: Instant::from_nanos(ms * 1_000_000),
            seq,
            len,
            ack,
            window,
            flags: TcpFlags(flags),
            retransmit: false,
        }
    }

    /// A client that sends two segments and resends the second; a server
    /// that acknowledges the first, with window scaling on both SYNs.
    fn flow() -> Flow {
        let (syn, ack) = (TcpFlags::SYN.0, TcpFlags::ACK.0);
        let mut c = Dir {
            isn: Some(1000),
            wscale: Some(7),
            ..Dir::default()
        };
        c.segs = vec![
            seg(0, 1000, 1, None, 500, syn),
            seg(2, 1001, 100, Some(5001), 500, ack),
            seg(3, 1101, 100, Some(5001), 500, ack),
            Seg {
                retransmit: true,
                ..seg(9, 1101, 100, Some(5001), 500, ack)
            },
        ];
        let mut s = Dir {
            isn: Some(5000),
            wscale: Some(2),
            ..Dir::default()
        };
        s.segs = vec![
            seg(1, 5000, 1, Some(1001), 1000, syn | ack),
            seg(4, 5001, 0, Some(1101), 100, ack),
        ];
        let a: std::net::SocketAddr = "192.0.2.15:40000".parse().unwrap();
        let b: std::net::SocketAddr = "203.0.113.7:7".parse().unwrap();
        Flow {
            key: (Proto::Tcp, a, b),
            guest_is_client: true,
            first_at: Instant::ZERO,
            dirs: [c, s],
            closes: Vec::new(),
        }
    }

    #[test]
    fn the_window_line_is_scaled_except_in_the_syn() {
        let s = series(&flow(), GUEST);
        // SYN-ACK: ACK 1 (relative) + 1000 unscaled; then ACK 101 + 100 << 2.
        assert_eq!(s.win.first(), Some(&(0.001, 1001.0)));
        assert_eq!(s.win.last(), Some(&(0.004, 501.0)));
        assert_eq!(s.ack.last(), Some(&(0.004, 101.0)));
    }

    #[test]
    fn a_resent_range_marks_its_first_transmission_as_presumed_lost() {
        let s = series(&flow(), GUEST);
        assert_eq!(s.data.len(), 4);
        assert_eq!(s.data.iter().filter(|d| d.3).count(), 1);
        assert_eq!(s.lost, vec![(0.003, 201.0)]);
    }

    #[test]
    fn text_from_the_capture_is_escaped() {
        assert_eq!(esc("<a href=\"x\">&"), "&lt;a href=&quot;x&quot;&gt;&amp;");
    }
}
