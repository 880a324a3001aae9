//! PNG charts for the benchmark report.
//!
//! [`lateness_histogram`] draws how late scheduled fires arrived at the sink (arrival time
//! minus scheduled time, in milliseconds) as a grouped bar chart over logarithmic buckets,
//! one colored bar per series in each bucket, so that tickwheel and a peer scheduler can be
//! compared at a glance. The y axis is each series' own share of fires, so series with
//! different fire counts stay comparable; the legend gives each series' count, p50 and p99.
//!
//! Text is rendered with plotters' `ab_glyph` backend, which loads no system fonts by itself:
//! DejaVu Sans is read from [`FONT_PATH`] (Debian package `fonts-dejavu-core`) on first use.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{anyhow, Context};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

/// One data set to draw: a name for the legend and its lateness samples in milliseconds.
pub struct Series<'a> {
    pub label: &'a str,
    pub lateness_ms: &'a [i64],
}

/// Where the chart's font is read from at run time.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Family name the font is registered under; every text style below uses it.
const FONT_FAMILY: &str = "sans-serif";

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 700;

/// Upper bucket edges in ms: bucket `i` holds `EDGES[i - 1] <= v < EDGES[i]` (bucket 0 holds
/// everything below 1 ms, negatives included); one last bucket holds `v >= 10_000`.
const EDGES: [i64; 13] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000,
];

/// Tick label of each bucket, in the order of [`EDGES`] plus the overflow bucket. Buckets from
/// one second up are named in seconds so that the labels fit side by side.
const BUCKET_LABELS: [&str; 14] = [
    "<1",
    "1–2",
    "2–5",
    "5–10",
    "10–20",
    "20–50",
    "50–100",
    "100–200",
    "200–500",
    "500–1000",
    "1–2 s",
    "2–5 s",
    "5–10 s",
    "≥10 s",
];

const BUCKETS: usize = BUCKET_LABELS.len();

/// Bar colors, one per series in order (Tableau 10); more series than colors wrap around.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0x9c, 0x75, 0x5f),
];

/// Fraction of a bucket's width taken by its group of bars.
const GROUP_WIDTH: f64 = 0.8;

/// Share labels are written above the bars only while bars are wide enough to hold them.
const MAX_SERIES_WITH_VALUE_LABELS: usize = 3;

/// Draws a histogram of fire lateness (arrival at the sink minus scheduled time, ms) for one
/// or more series (e.g. "tickwheel" and "tokio-cron-scheduler") into a PNG file.
pub fn lateness_histogram(path: &Path, title: &str, series: &[Series<'_>]) -> anyhow::Result<()> {
    ensure_font()?;
    draw(path, title, series)
        .with_context(|| format!("drawing lateness histogram {}", path.display()))
}

fn draw(path: &Path, title: &str, series: &[Series<'_>]) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;

    // Title and legend sit in a header band above the plot, so they never cover a bar.
    let legend_style = (FONT_FAMILY, 16)
        .into_font()
        .color(&BLACK.mix(0.85))
        .pos(Pos::new(HPos::Left, VPos::Center));
    let entries = series
        .iter()
        .enumerate()
        .map(|(idx, s)| {
            let text = legend_entry(s);
            let (text_w, _) = root.estimate_text_size(&text, &legend_style)?;
            Ok((PALETTE[idx % PALETTE.len()], text, text_w as i32))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rows = legend_rows(&entries);
    let header_h = TITLE_H + rows.len() as i32 * LEGEND_ROW_H + 8;
    let (header, body) = root.split_vertically(header_h);

    header.draw(&Text::new(
        title.to_string(),
        (WIDTH as i32 / 2, 16),
        (FONT_FAMILY, 26)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    for (row_idx, row) in rows.iter().enumerate() {
        let row_w: i32 = row.iter().map(|&i| entry_width(&entries[i])).sum::<i32>() - LEGEND_GAP;
        let mut x = (WIDTH as i32 - row_w) / 2;
        let y = TITLE_H + row_idx as i32 * LEGEND_ROW_H + LEGEND_ROW_H / 2;
        for &i in row {
            let (color, text, _) = &entries[i];
            header.draw(&Rectangle::new(
                [(x, y - SWATCH / 2), (x + SWATCH, y + SWATCH / 2)],
                color.filled(),
            ))?;
            header.draw(&Text::new(
                text.clone(),
                (x + SWATCH + SWATCH_GAP, y),
                legend_style.clone(),
            ))?;
            x += entry_width(&entries[i]);
        }
    }

    let mut chart = ChartBuilder::on(&body)
        .margin_top(10)
        .margin_bottom(15)
        .margin_left(20)
        .margin_right(25)
        .x_label_area_size(60)
        .y_label_area_size(75)
        .build_cartesian_2d(-0.5..BUCKETS as f64 - 0.5, 0.0..100.0)?;

    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(BUCKETS)
        .x_label_formatter(&|x| bucket_label(*x).to_string())
        .y_labels(11)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .x_desc("lateness (ms; s where marked)")
        .y_desc("share of fires (%)")
        .axis_desc_style((FONT_FAMILY, 17))
        .label_style((FONT_FAMILY, 15).into_font().color(&BLACK.mix(0.85)))
        .draw()?;

    let bar_width = GROUP_WIDTH / series.len().max(1) as f64;
    let value_style = (FONT_FAMILY, 12)
        .into_font()
        .color(&BLACK.mix(0.75))
        .pos(Pos::new(HPos::Center, VPos::Bottom));

    for (idx, s) in series.iter().enumerate() {
        let color = PALETTE[idx % PALETTE.len()];
        let shares = bucket_shares(s.lateness_ms);
        let left_of = |bucket: usize| bucket as f64 - GROUP_WIDTH / 2.0 + idx as f64 * bar_width;
        let nonzero = || shares.iter().enumerate().filter(|(_, share)| **share > 0.0);

        chart.draw_series(nonzero().map(|(bucket, share)| {
            let x0 = left_of(bucket) + bar_width * 0.06;
            let x1 = left_of(bucket) + bar_width * 0.94;
            Rectangle::new([(x0, 0.0), (x1, *share)], color.filled())
        }))?;

        if series.len() <= MAX_SERIES_WITH_VALUE_LABELS {
            chart.draw_series(nonzero().map(|(bucket, share)| {
                let x = left_of(bucket) + bar_width / 2.0;
                Text::new(format_share(*share), (x, *share + 0.8), value_style.clone())
            }))?;
        }
    }

    root.present()?;
    Ok(())
}

/// Header band layout, in pixels.
const TITLE_H: i32 = 56;
const LEGEND_ROW_H: i32 = 26;
const SWATCH: i32 = 14;
const SWATCH_GAP: i32 = 8;
const LEGEND_GAP: i32 = 40;
const LEGEND_MAX_ROW_W: i32 = WIDTH as i32 - 80;

type LegendEntry = (RGBColor, String, i32);

/// Width a legend entry takes in its row, including the gap after it.
fn entry_width(entry: &LegendEntry) -> i32 {
    SWATCH + SWATCH_GAP + entry.2 + LEGEND_GAP
}

/// Splits legend entries (by index) into rows that fit across the image.
fn legend_rows(entries: &[LegendEntry]) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut row_w = 0;
    for (i, entry) in entries.iter().enumerate() {
        let w = entry_width(entry);
        match rows.last_mut() {
            Some(row) if row_w + w - LEGEND_GAP <= LEGEND_MAX_ROW_W => {
                row.push(i);
                row_w += w;
            }
            _ => {
                rows.push(vec![i]);
                row_w = w;
            }
        }
    }
    rows
}

/// Registers DejaVu Sans with plotters once per process; later calls do nothing.
fn ensure_font() -> anyhow::Result<()> {
    static REGISTERED: Mutex<bool> = Mutex::new(false);
    let mut registered = REGISTERED
        .lock()
        .map_err(|_| anyhow!("font registration lock poisoned"))?;
    if *registered {
        return Ok(());
    }
    let bytes = std::fs::read(FONT_PATH).with_context(|| {
        format!(
            "reading chart font {FONT_PATH}; install it with `apt-get install fonts-dejavu-core`"
        )
    })?;
    // plotters keeps a `'static` reference to the font data for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FONT_FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{FONT_PATH} is not a usable TrueType font"))?;
    *registered = true;
    Ok(())
}

/// Index of the bucket that holds a lateness of `ms` milliseconds.
fn bucket_of(ms: i64) -> usize {
    EDGES
        .iter()
        .position(|&edge| ms < edge)
        .unwrap_or(EDGES.len())
}

/// Share of `samples` in each bucket, in percent; all zero when there are no samples.
fn bucket_shares(samples: &[i64]) -> [f64; BUCKETS] {
    let mut counts = [0usize; BUCKETS];
    for &ms in samples {
        counts[bucket_of(ms)] += 1;
    }
    let total = samples.len().max(1) as f64;
    counts.map(|count| count as f64 * 100.0 / total)
}

/// Tick label for an x-axis position: the bucket's name at its center, nothing elsewhere.
fn bucket_label(x: f64) -> &'static str {
    let nearest = x.round();
    if (x - nearest).abs() > 1e-6 || nearest < 0.0 {
        return "";
    }
    BUCKET_LABELS.get(nearest as usize).copied().unwrap_or("")
}

/// Nearest-rank percentile (`p` in 0..=100) of an ascending slice; `None` when it is empty.
fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Legend text for a series: its name, fire count and p50/p99 lateness.
fn legend_entry(s: &Series<'_>) -> String {
    let mut sorted = s.lateness_ms.to_vec();
    sorted.sort_unstable();
    match (percentile(&sorted, 50.0), percentile(&sorted, 99.0)) {
        (Some(p50), Some(p99)) => format!(
            "{}   n = {}   p50 = {}   p99 = {}",
            s.label,
            sorted.len(),
            format_ms(p50),
            format_ms(p99)
        ),
        _ => format!("{}   n = 0", s.label),
    }
}

/// Milliseconds as "123 ms", or "12.3 s" from ten seconds up.
fn format_ms(ms: i64) -> String {
    if ms.abs() >= 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// Value printed above a bar: whole percent from 10 up, one decimal below.
fn format_share(share: f64) -> String {
    if share >= 9.95 {
        format!("{share:.0}%")
    } else if share >= 0.05 {
        format!("{share:.1}%")
    } else {
        "<0.1%".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_edges() {
        assert_eq!(bucket_of(-5), 0);
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 1);
        assert_eq!(bucket_of(4), 2);
        assert_eq!(bucket_of(5), 3);
        assert_eq!(bucket_of(999), 9);
        assert_eq!(bucket_of(1_000), 10);
        assert_eq!(bucket_of(9_999), 12);
        assert_eq!(bucket_of(10_000), 13);
        assert_eq!(bucket_of(i64::MAX), BUCKETS - 1);
    }

    #[test]
    fn shares_sum_to_one_hundred() {
        let shares = bucket_shares(&[-1, 0, 3, 3, 700, 20_000, 20_000, 20_000]);
        assert!((shares.iter().sum::<f64>() - 100.0).abs() < 1e-9);
        assert_eq!(shares[0], 25.0);
        assert_eq!(shares[BUCKETS - 1], 37.5);
        assert_eq!(bucket_shares(&[]), [0.0; BUCKETS]);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(50));
        assert_eq!(percentile(&sorted, 99.0), Some(99));
        assert_eq!(percentile(&sorted, 100.0), Some(100));
        assert_eq!(percentile(&sorted, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn labels_sit_on_bucket_centers() {
        assert_eq!(bucket_label(0.0), "<1");
        assert_eq!(bucket_label(13.0), "≥10 s");
        assert_eq!(bucket_label(0.5), "");
        assert_eq!(bucket_label(14.0), "");
        assert_eq!(bucket_label(-1.0), "");
    }
}
