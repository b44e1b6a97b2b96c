//! A resilience round as a picture: an SVG timeline next to the text summary.
//!
//! What a reader wants from a fault round at a glance is *when* things broke relative to the
//! fault and to the routes moving. From what the round already records — the soak report's
//! timestamped events (broken keep-alive connections, failed and slow new connections, slow
//! requests) and the router's route events — this draws, per 250 ms bucket: keep-alive
//! connections still alive (a line), failures (red bars: broken connections and failed new
//! ones), slow answers (amber bars), the ECMP paths of the VIP's route (a step line), and the
//! fault as a vertical mark. Plain SVG 1.1, no script, no external font: it opens in any
//! browser and renders on a code host.

use std::fmt::Write as _;

use super::chaos::{PATHS_BEFORE_FIRST_EVENT, RouteEvent};
use super::soak::SoakReport;

/// Width of one bucket.
const BUCKET_MS: u64 = 250;
/// Plot area, in pixels.
const W: f64 = 900.0;
const H: f64 = 220.0;
/// Margins: left (axis labels), top (title), right, bottom (time axis and legend).
const L: f64 = 60.0;
const T: f64 = 40.0;
const R: f64 = 60.0;
const B: f64 = 60.0;

/// The round's timeline as an SVG document. `title` heads it; `fault_unix_ms` is marked;
/// `routes` are the router's events for the VIP (`None`: not recorded).
pub fn render(
    title: &str,
    soak: &SoakReport,
    fault_unix_ms: u64,
    routes: Option<&[RouteEvent]>,
) -> String {
    let start = if soak.ready_unix_ms > 0 {
        soak.ready_unix_ms
    } else {
        soak.started_unix_ms
    };
    let end = soak.ended_unix_ms.max(start + BUCKET_MS);
    let buckets = (end - start).div_ceil(BUCKET_MS) as usize;
    let index = |t: u64| ((t.saturating_sub(start)) / BUCKET_MS) as usize;
    let mut failures = vec![0usize; buckets];
    let mut slow = vec![0usize; buckets];
    let mut broken_at = vec![0usize; buckets];
    for b in &soak.broken {
        if let Some(n) = failures.get_mut(index(b.t_unix_ms)) {
            *n += 1;
        }
        if let Some(n) = broken_at.get_mut(index(b.t_unix_ms)) {
            *n += 1;
        }
    }
    for f in &soak.new.failed {
        if let Some(n) = failures.get_mut(index(f.t_unix_ms)) {
            *n += 1;
        }
    }
    for s in &soak.slow {
        if let Some(n) = slow.get_mut(index(s.t_unix_ms)) {
            *n += 1;
        }
    }
    for s in &soak.new.slow {
        if let Some(n) = slow.get_mut(index(s.t_unix_ms)) {
            *n += 1;
        }
    }
    let mut alive = Vec::with_capacity(buckets);
    let mut left = soak.established;
    for b in &broken_at {
        left = left.saturating_sub(*b);
        alive.push(left);
    }
    let events_max = failures
        .iter()
        .zip(&slow)
        .map(|(a, b)| a + b)
        .max()
        .unwrap_or(0)
        .max(1);
    let x = |t: u64| L + (t.saturating_sub(start)) as f64 / (end - start) as f64 * W;
    let y_alive = |n: usize| T + H - n as f64 / soak.established.max(1) as f64 * H;
    let bar_w = W / buckets as f64;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" \
         font-family=\"sans-serif\" font-size=\"12\">",
        L + W + R,
        T + H + B
    );
    let _ = writeln!(svg, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        svg,
        "<text x=\"{L}\" y=\"20\" font-size=\"14\">{}</text>",
        escape(title)
    );
    let _ = writeln!(
        svg,
        "<rect x=\"{L}\" y=\"{T}\" width=\"{W}\" height=\"{H}\" fill=\"none\" stroke=\"#999\"/>"
    );
    // Event bars (failures stacked under slow answers), scaled to the busiest bucket.
    for (i, (f, s)) in failures.iter().zip(&slow).enumerate() {
        let bx = L + i as f64 * bar_w;
        let fh = *f as f64 / events_max as f64 * H;
        let sh = *s as f64 / events_max as f64 * H;
        if *f > 0 {
            let _ = writeln!(
                svg,
                "<rect x=\"{bx:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{fh:.1}\" fill=\"#d62728\"/>",
                T + H - fh,
                bar_w.max(1.0)
            );
        }
        if *s > 0 {
            let _ = writeln!(
                svg,
                "<rect x=\"{bx:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{sh:.1}\" fill=\"#ff9f1c\"/>",
                T + H - fh - sh,
                bar_w.max(1.0)
            );
        }
    }
    // Connections alive.
    let mut points = format!("{L:.1},{:.1}", y_alive(soak.established));
    for (i, n) in alive.iter().enumerate() {
        let _ = write!(
            points,
            " {:.1},{:.1}",
            L + (i + 1) as f64 * bar_w,
            y_alive(*n)
        );
    }
    let _ = writeln!(
        svg,
        "<polyline points=\"{points}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>"
    );
    // Route paths (right axis: 0..max paths).
    if let Some(events) = routes {
        let max_paths = events
            .iter()
            .map(|e| e.paths)
            .max()
            .unwrap_or(0)
            .max(PATHS_BEFORE_FIRST_EVENT);
        let y_paths = |p: usize| T + H - p as f64 / max_paths as f64 * (H - 10.0);
        let mut paths = PATHS_BEFORE_FIRST_EVENT;
        let mut d = format!("M{L:.1},{:.1}", y_paths(paths));
        for e in events
            .iter()
            .filter(|e| e.t_unix_ms >= start && e.t_unix_ms <= end)
        {
            let ex = x(e.t_unix_ms);
            let _ = write!(d, " H{ex:.1} V{:.1}", y_paths(e.paths));
            paths = e.paths;
        }
        let _ = write!(d, " H{:.1}", L + W);
        let _ = writeln!(
            svg,
            "<path d=\"{d}\" fill=\"none\" stroke=\"#2ca02c\" stroke-width=\"1.5\" stroke-dasharray=\"4 2\"/>"
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#2ca02c\">{paths} path(s)</text>",
            L + W + 4.0,
            y_paths(paths) + 4.0
        );
    }
    // The fault.
    if fault_unix_ms >= start && fault_unix_ms <= end {
        let fx = x(fault_unix_ms);
        let _ = writeln!(
            svg,
            "<line x1=\"{fx:.1}\" y1=\"{T}\" x2=\"{fx:.1}\" y2=\"{}\" stroke=\"black\" stroke-dasharray=\"6 3\"/>",
            T + H
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\">fault</text>",
            fx + 3.0,
            T + 12.0
        );
    }
    // Axes: time in seconds from the start, connections on the left.
    let secs = (end - start) / 1000;
    let step = (secs / 10).max(1);
    for s in (0..=secs).step_by(step as usize) {
        let tx = x(start + s * 1000);
        let _ = writeln!(
            svg,
            "<text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{s} s</text>",
            T + H + 16.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
        L - 4.0,
        T + 10.0,
        soak.established
    );
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">0</text>",
        L - 4.0,
        T + H
    );
    let legend_y = T + H + 40.0;
    let legend = [
        ("#1f77b4", "keep-alive connections alive".to_string()),
        ("#d62728", "broken / failed new".to_string()),
        (
            "#ff9f1c",
            format!("slow (bars: per {BUCKET_MS} ms by send time, max {events_max})"),
        ),
        ("#2ca02c", "route paths".to_string()),
    ];
    let mut lx = L;
    for (color, text) in legend {
        let _ = writeln!(
            svg,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{legend_y:.1}\">{}</text>",
            legend_y - 10.0,
            lx + 16.0,
            escape(&text)
        );
        lx += 16.0 + 7.0 * text.len() as f64 + 20.0;
    }
    svg.push_str("</svg>\n");
    svg
}

/// Colours of the imbalance timeline's backends, in address order.
const BACKEND_COLORS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf",
];

/// The imbalance round as an SVG document: two panels over one time axis. Above, requests
/// answered (green line) and failed (red bars) per second; below, each backend's load as its
/// agent reported it (bytes/s both ways, one line per backend), with each phase's start marked
/// (black, dashed) and named, and the window each phase's figures average shaded.
pub fn render_imbalance(title: &str, phases: &[super::imbalance::PhaseOutcome]) -> String {
    let (Some(first), Some(last)) = (phases.first(), phases.last()) else {
        return String::new();
    };
    let start = first.report.started_unix_ms;
    let end = last.report.ended_unix_ms.max(start + 1000);
    let span = (end - start) as f64;
    let x = |t: u64| L + t.saturating_sub(start).min(end - start) as f64 / span * W;
    const H1: f64 = 110.0;
    const GAP: f64 = 30.0;
    let top = T;
    let bottom = T + H1 + GAP;
    let height = T + H1 + GAP + H + B + 20.0;

    // Requests per second (by the second they ended), on absolute time.
    let mut per_s: Vec<(u64, u64, u64)> = Vec::new();
    for p in phases {
        for (i, sec) in p.report.seconds.iter().enumerate() {
            per_s.push((
                p.report.started_unix_ms + i as u64 * 1000,
                sec.ok,
                sec.failed,
            ));
        }
    }
    let req_max = per_s.iter().map(|s| s.1 + s.2).max().unwrap_or(0).max(1) as f64;
    let mut dips: Vec<&String> = phases
        .iter()
        .flat_map(|p| p.report.samples.iter().flat_map(|s| s.backends.keys()))
        .collect();
    dips.sort();
    dips.dedup();
    let load_max = phases
        .iter()
        .flat_map(|p| {
            p.report
                .samples
                .iter()
                .filter(|s| s.t_unix_ms <= p.report.ended_unix_ms)
                .flat_map(|s| s.backends.values())
        })
        .map(|b| b.bytes_per_s)
        .fold(0.0, f64::max)
        .max(1.0);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">",
        L + W + R
    );
    let _ = writeln!(svg, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        svg,
        "<text x=\"{L}\" y=\"20\" font-size=\"14\">{}</text>",
        escape(title)
    );
    // Measured windows, shaded in both panels.
    for p in phases {
        let (wx, wy) = (x(p.window_from_unix_ms), x(p.report.ended_unix_ms));
        for (y, h) in [(top, H1), (bottom, H)] {
            let _ = writeln!(
                svg,
                "<rect x=\"{wx:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#f0f0f0\"/>",
                (wy - wx).max(0.0)
            );
        }
    }
    for (y, h) in [(top, H1), (bottom, H)] {
        let _ = writeln!(
            svg,
            "<rect x=\"{L}\" y=\"{y:.1}\" width=\"{W}\" height=\"{h:.1}\" fill=\"none\" stroke=\"#999\"/>"
        );
    }
    // Panel 1: failed bars, answered line.
    let bar_w = (1000.0 / span * W).max(1.0);
    let y1 = |v: f64| top + H1 - v / req_max * H1;
    for (t, _, failed) in per_s.iter().filter(|s| s.2 > 0) {
        let _ = writeln!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{:.1}\" fill=\"#d62728\"/>",
            x(*t),
            y1(*failed as f64),
            *failed as f64 / req_max * H1
        );
    }
    for p in phases {
        let points: Vec<String> = p
            .report
            .seconds
            .iter()
            .enumerate()
            .map(|(i, sec)| (p.report.started_unix_ms + i as u64 * 1000, sec.ok))
            // Whole seconds of the phase only (light answers may trail its end).
            .filter(|(t, _)| t + 1000 <= p.report.ended_unix_ms)
            .map(|(t, ok)| format!("{:.1},{:.1}", x(t + 500), y1(ok as f64)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#2ca02c\" stroke-width=\"1.5\"/>",
            points.join(" ")
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{req_max:.0}/s</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">0</text>",
        L - 4.0,
        top + 10.0,
        L - 4.0,
        top + H1
    );
    // Panel 2: one line per backend.
    let y2 = |v: f64| bottom + H - v / load_max * H;
    for (i, dip) in dips.iter().enumerate() {
        let color = BACKEND_COLORS[i % BACKEND_COLORS.len()];
        for p in phases {
            let points: Vec<String> = p
                .report
                .samples
                .iter()
                .filter(|s| s.t_unix_ms <= p.report.ended_unix_ms)
                .filter_map(|s| s.backends.get(*dip).map(|b| (s.t_unix_ms, b.bytes_per_s)))
                .map(|(t, v)| format!("{:.1},{:.1}", x(t), y2(v)))
                .collect();
            if points.is_empty() {
                continue;
            }
            let _ = writeln!(
                svg,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"/>",
                points.join(" ")
            );
        }
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.1} MB/s</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">0</text>",
        L - 4.0,
        bottom + 10.0,
        load_max / 1e6,
        L - 4.0,
        bottom + H
    );
    // Phases: a mark where each begins, and its name and figure.
    for (i, p) in phases.iter().enumerate() {
        let px = x(p.report.started_unix_ms);
        if i > 0 {
            let _ = writeln!(
                svg,
                "<line x1=\"{px:.1}\" y1=\"{top:.1}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"black\" stroke-dasharray=\"6 3\"/>",
                bottom + H
            );
        }
        let figure = p
            .bytes_max_over_avg
            .map_or(String::new(), |v| format!(", max/avg {v:.2}"));
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}{}</text>",
            px + 4.0,
            bottom - 6.0,
            escape(&format!("{} ({})", p.report.phase, p.report.target)),
            escape(&figure)
        );
    }
    // Time axis.
    let secs = (end - start) / 1000;
    let step = (secs / 10).max(1);
    for s in (0..=secs).step_by(step as usize) {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{s} s</text>",
            x(start + s * 1000),
            bottom + H + 16.0
        );
    }
    // Legend.
    let legend_y = bottom + H + 40.0;
    let mut legend: Vec<(&str, String)> = vec![
        ("#2ca02c", "requests answered/s".into()),
        ("#d62728", "failed/s".into()),
    ];
    for (i, dip) in dips.iter().enumerate() {
        legend.push((
            BACKEND_COLORS[i % BACKEND_COLORS.len()],
            format!("{dip} bytes/s"),
        ));
    }
    legend.push(("#f0f0f0", "averaged window".into()));
    let mut lx = L;
    for (color, text) in legend {
        let _ = writeln!(
            svg,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{color}\" stroke=\"#999\"/>\
             <text x=\"{:.1}\" y=\"{legend_y:.1}\">{}</text>",
            legend_y - 10.0,
            lx + 16.0,
            escape(&text)
        );
        lx += 16.0 + 6.5 * text.len() as f64 + 14.0;
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::soak::{Broken, NewFailure};

    #[test]
    fn the_imbalance_round_is_drawn_with_both_phases_and_every_backend() {
        use crate::http::imbalance::{
            AgentSample, BackendSample, PhaseReport, Second, evaluate_phase,
        };
        let phase = |name: &str, start: u64, heavy: f64| {
            let samples = (0..10)
                .map(|i| AgentSample {
                    t_unix_ms: start + i * 1000,
                    backends: [
                        (
                            "10.0.21.2".to_string(),
                            BackendSample {
                                bytes_per_s: heavy,
                                active_connections: 8,
                            },
                        ),
                        (
                            "10.0.22.2".to_string(),
                            BackendSample {
                                bytes_per_s: 1e5,
                                active_connections: 2,
                            },
                        ),
                    ]
                    .into(),
                })
                .collect();
            let seconds = (0..10)
                .map(|i| Second {
                    ok: 40,
                    failed: u64::from(i == 3),
                    ..Second::default()
                })
                .collect();
            evaluate_phase(
                PhaseReport {
                    phase: name.into(),
                    target: "192.0.2.10:8000".into(),
                    started_unix_ms: start,
                    ended_unix_ms: start + 10_000,
                    samples,
                    seconds,
                    ..PhaseReport::default()
                },
                5,
            )
        };
        let phases = [
            phase("static", 1_000_000, 4e6),
            phase("load-aware", 1_012_000, 1e6),
        ];
        let svg = render_imbalance("imbalance <lab>", &phases);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("imbalance &lt;lab&gt;"));
        // One request line per phase, one load line per backend and phase.
        assert_eq!(svg.matches("stroke=\"#2ca02c\" stroke-width").count(), 2);
        assert_eq!(svg.matches("stroke=\"#1f77b4\" stroke-width").count(), 2);
        assert_eq!(svg.matches("stroke=\"#ff7f0e\" stroke-width").count(), 2);
        // Two failed seconds (one per phase), the phase change, both names and figures.
        assert_eq!(svg.matches("fill=\"#d62728\"/>").count(), 2);
        assert_eq!(svg.matches("stroke-dasharray=\"6 3\"").count(), 1);
        assert!(
            svg.contains("static (192.0.2.10:8000), max/avg 1.95"),
            "{svg}"
        );
        assert!(
            svg.contains("load-aware (192.0.2.10:8000), max/avg 1.82"),
            "{svg}"
        );
        assert!(svg.contains("4.0 MB/s"));
    }

    #[test]
    fn a_round_is_drawn_with_its_fault_failures_and_routes() {
        let mut soak = SoakReport {
            established: 200,
            ready_unix_ms: 10_000,
            ended_unix_ms: 24_000,
            ..SoakReport::default()
        };
        soak.broken.push(Broken {
            conn: 1,
            t_unix_ms: 12_100,
            reason: "reset".into(),
            backend: None,
            local: None,
        });
        soak.new.failed.push(NewFailure {
            t_unix_ms: 12_200,
            reason: "connect_refused".into(),
            ms: 3,
        });
        let routes = [
            RouteEvent {
                t_unix_ms: 12_013,
                paths: 1,
            },
            RouteEvent {
                t_unix_ms: 15_089,
                paths: 2,
            },
        ];
        let svg = render("kill -9 <mux1>", &soak, 12_000, Some(&routes));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("kill -9 &lt;mux1&gt;"), "escaped title");
        assert!(svg.contains(">fault</text>"));
        // One bucket (12 000..12 250 ms) holds both failures: one red bar of full height (the
        // other red square is the legend's).
        assert_eq!(svg.matches("fill=\"#d62728\"/>").count(), 2);
        assert!(
            svg.contains(&format!("height=\"{H:.1}\" fill=\"#d62728\"")),
            "{svg}"
        );
        assert!(svg.contains("max 2)"));
        // The alive line ends at 199 connections; the route came back to 2 paths.
        assert!(svg.contains("2 path(s)"));
        assert_eq!(svg.matches("<polyline").count(), 1);
    }
}
