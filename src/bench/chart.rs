//! The bench report as an SVG chart (plotters): requests per second and
//! p99 latency against the number of nodes, one line per scenario kind.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::report::Outcome;

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draws two panels side by side into `path`.
pub fn draw(path: &Path, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let mut series: BTreeMap<&str, Vec<(usize, f64, f64)>> = BTreeMap::new();
    for o in outcomes {
        series
            .entry(o.scenario.as_str())
            .or_default()
            .push((o.nodes, o.requests_per_s, o.p99_ms));
    }
    let lo = outcomes.iter().map(|o| o.nodes).min().unwrap_or(1) as f64 - 0.5;
    let hi = outcomes.iter().map(|o| o.nodes).max().unwrap_or(1) as f64 + 0.5;
    let root = SVGBackend::new(path, (1100, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((1, 2));
    let panel = |area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
                 title: &str,
                 y: &str,
                 pick: fn(&(usize, f64, f64)) -> f64|
     -> anyhow::Result<()> {
        let top = outcomes
            .iter()
            .map(|o| pick(&(o.nodes, o.requests_per_s, o.p99_ms)))
            .fold(0.0, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(lo..hi, 0.0..top.max(1e-3))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("CAS nodes")
            .y_desc(y)
            .x_labels(((hi - lo) as usize).max(1) + 1)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(err)?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts: Vec<(f64, f64)> = points.iter().map(|p| (p.0 as f64, pick(p))).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
        Ok(())
    };
    panel(&panels[0], "Throughput", "requests/s", |p| p.1)?;
    panel(&panels[1], "Latency p99", "µs", |p| p.2 * 1000.0)?;
    root.present().map_err(err)?;
    Ok(())
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e}")
}
