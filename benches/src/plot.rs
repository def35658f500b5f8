//! `--plot FILE.svg`: end-to-end latency percentiles per second, Wardline
//! above and the relay below on the same time axis, log-scaled latency.
//!
//! plotters is built with only its SVG backend and line series: no font
//! files are loaded (its naive text layout is enough for axis labels).

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use crate::metrics::Point;

const SERIES: [(&str, RGBColor); 4] = [
    ("p50", RGBColor(31, 119, 180)),
    ("p90", RGBColor(44, 160, 44)),
    ("p99", RGBColor(255, 127, 14)),
    ("p99.9", RGBColor(214, 39, 40)),
];

fn values(p: &Point) -> [f64; 4] {
    [
        p.latency.p50_ms,
        p.latency.p90_ms,
        p.latency.p99_ms,
        p.latency.p999_ms,
    ]
}

/// Draws the panels (title, timeline) into an SVG file.
pub fn write_svg(path: &Path, panels: &[(String, &[Point])]) -> anyhow::Result<()> {
    let height = 360 * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    let t_max = panels
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.t_s))
        .fold(1.0, f64::max);
    for ((title, points), area) in panels.iter().zip(areas.iter()) {
        let samples: Vec<&Point> = points.iter().filter(|p| p.latency.count > 0).collect();
        let hi = samples.iter().flat_map(|p| values(p)).fold(1.0, f64::max) * 1.5;
        let lo = samples
            .iter()
            .flat_map(|p| values(p))
            .filter(|v| *v > 0.0)
            .fold(hi, f64::min)
            .clamp(0.001, 1.0)
            / 1.5;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..t_max, (lo..hi).log_scale())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .y_labels(8)
            .light_line_style(RGBColor(238, 238, 238))
            .x_desc("seconds since traffic started")
            .y_desc("latency, ms (log)")
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for (i, (name, color)) in SERIES.iter().enumerate() {
            chart
                .draw_series(LineSeries::new(
                    samples.iter().map(|p| (p.t_s, values(p)[i].max(lo))),
                    color.stroke_width(2),
                ))
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Latency;

    #[test]
    fn writes_an_svg_with_both_panels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.svg");
        let pts: Vec<Point> = (1..=5)
            .map(|i| Point {
                t_s: f64::from(i),
                acked: 10,
                delivered: 20,
                latency: Latency {
                    count: 20,
                    p50_ms: 1.0,
                    p90_ms: 2.0,
                    p99_ms: 4.0,
                    p999_ms: 8.0,
                    max_ms: 9.0,
                    mean_ms: 1.5,
                },
            })
            .collect();
        write_svg(
            &path,
            &[("wardline".into(), &pts[..]), ("relay".into(), &pts[..])],
        )
        .expect("writes");
        let svg = std::fs::read_to_string(&path).expect("reads");
        assert!(svg.starts_with("<svg") && svg.contains("wardline") && svg.contains("p99.9"));
    }
}
