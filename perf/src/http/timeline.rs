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
