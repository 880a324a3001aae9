//! The lateness and duration chart of a task's recent executions, drawn on the server as an
//! inline SVG: no chart library in the page. The SVG holds only numbers of ours and fixed text,
//! so it is safe to embed unescaped.

use std::fmt::Write;

use crate::api::views::LogEntry;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// The chart of `logs` (newest first, as the API returns them), oldest on the left; `None`
/// when no attempt was sent yet.
pub fn svg(logs: &[LogEntry]) -> Option<String> {
    // Skipped runs (attempt 0) sent nothing: they have neither lateness nor duration.
    let points: Vec<(i64, i64)> = logs
        .iter()
        .rev()
        .filter(|l| l.attempt >= 1)
        .map(|l| (l.lateness_ms.unwrap_or(0).max(0), l.duration_ms.max(0)))
        .collect();
    if points.is_empty() {
        return None;
    }
    let max = points
        .iter()
        .map(|(a, b)| (*a).max(*b))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let n = points.len();
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |i: usize| {
        if n == 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: i64| TOP + plot_h * (1.0 - v as f64 / max);
    let line = |pick: fn(&(i64, i64)) -> i64| {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(pick(p))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title"><title id="chart-title">Lateness and duration of the last {n} attempts, in milliseconds (largest {max:.0} ms)</title>"##
    );
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b}" class="axis"/><line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}" class="axis"/>"##,
        b = HEIGHT - BOTTOM,
        r = WIDTH - RIGHT
    );
    let _ = write!(
        s,
        r##"<text x="{tx}" y="{ty}" class="tick" text-anchor="end">{max:.0} ms</text><text x="{tx}" y="{by}" class="tick" text-anchor="end">0</text>"##,
        tx = LEFT - 4.0,
        ty = TOP + 8.0,
        by = HEIGHT - BOTTOM
    );
    let _ = write!(
        s,
        r##"<polyline class="duration" points="{}"/><polyline class="lateness" points="{}"/>"##,
        line(|p| p.1),
        line(|p| p.0)
    );
    let _ = write!(
        s,
        r##"<text x="{LEFT}" y="{ly}" class="legend duration-key">— duration</text><text x="{lx}" y="{ly}" class="legend lateness-key">— lateness</text></svg>"##,
        ly = HEIGHT - 4.0,
        lx = LEFT + 110.0
    );
    Some(s)
}
