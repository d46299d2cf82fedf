//! Requests per minute over the last hour as an inline SVG bar chart, stacked by outcome
//! (other, 401, 403, 429), drawn on the server from [`MinuteSeries`]: no script, no chart library.

use maud::{html, Markup};

use crate::metrics::minutes::{MinuteSeries, MINUTES, SERIES};

const WIDTH: u64 = 600;
const HEIGHT: u64 = 120;
const BAR: u64 = WIDTH / MINUTES as u64;
/// CSS classes of the stacked series, in [`SERIES`] order; colours live in the stylesheet.
const CLASSES: [&str; SERIES] = ["ok", "s401", "s403", "s429"];
const LABELS: [&str; SERIES] = ["other", "401", "403", "429"];

/// The chart of `series` at `now` (unix seconds), titled `title`.
pub fn requests_per_minute(title: &str, series: &MinuteSeries, now: u64) -> Markup {
    let hour = series.last_hour(now);
    let peak = hour
        .iter()
        .map(|m| m.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    let scale = peak.max(1);
    let totals = series.hour_totals(now);
    let mut bars = Vec::new();
    for (i, minute) in hour.iter().enumerate() {
        let mut y = HEIGHT;
        for (s, &count) in minute.iter().enumerate().filter(|(_, c)| **c > 0) {
            let h = (count * HEIGHT).div_ceil(scale).min(y);
            y -= h;
            bars.push((i as u64 * BAR, y, h, s, count));
        }
    }
    html! {
        figure.chart {
            figcaption { (title) " — requests per minute, last hour (peak " (peak) ")" }
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(format!("{title}: requests per minute")) {
                @for (x, y, h, s, count) in &bars {
                    rect class=(CLASSES[*s]) x=(x) y=(y) width=(BAR - 1) height=(h) {
                        title { (LABELS[*s]) ": " (count) }
                    }
                }
            }
            p.legend {
                @for s in 0..SERIES {
                    span class=(format!("key {}", CLASSES[s])) { (LABELS[s]) " " (totals[s]) }
                    " "
                }
            }
        }
    }
}
