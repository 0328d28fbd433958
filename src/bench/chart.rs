//! The benchmark chart: bytes written per checkpoint and bytes retained in storage, one line per
//! backend, as an SVG (its text is drawn by the viewer, so no font files are needed).

use std::path::{Path, PathBuf};

use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::*;

use super::BenchReport;

/// Reads one measure of a checkpoint.
type Measure = fn(&super::CheckpointFigures) -> u64;

const COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];

/// The chart could not be drawn into its file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct ChartError {
    /// The SVG file.
    pub path: PathBuf,
    /// What the drawing library said.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Draws `report` into the SVG file `path`.
pub fn draw_chart(report: &BenchReport, path: &Path) -> Result<(), ChartError> {
    let fail = |error: DrawingAreaErrorKind<std::io::Error>| ChartError {
        path: path.to_path_buf(),
        source: Box::new(error),
    };
    let root = SVGBackend::new(path, (1000, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(fail)?;
    let title = format!(
        "{} keys x {} B, {:.1}% changed per checkpoint",
        report.params.keys,
        report.params.value_bytes,
        report.params.changed_fraction * 100.0
    );
    let root = root.titled(&title, ("sans-serif", 22)).map_err(fail)?;
    let panels = root.split_evenly((2, 1));
    let series: [(&str, Measure); 2] = [
        ("bytes written per checkpoint (MiB)", |c| c.bytes_written),
        ("bytes retained in checkpoint storage (MiB)", |c| {
            c.retained_bytes
        }),
    ];
    let checkpoints = report.params.checkpoints.max(1);
    for (panel, (caption, value)) in panels.iter().zip(series) {
        let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
        let top = report
            .backends
            .iter()
            .flat_map(|b| b.checkpoints.iter().map(|c| mib(value(c))))
            .fold(0.0f64, f64::max)
            .max(0.001)
            * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(1u32..checkpoints, 0f64..top)
            .map_err(fail)?;
        chart
            .configure_mesh()
            .x_desc("checkpoint")
            .y_desc("MiB")
            .draw()
            .map_err(fail)?;
        for (index, backend) in report.backends.iter().enumerate() {
            let color = COLORS[index % COLORS.len()];
            let points: Vec<(u32, f64)> = backend
                .checkpoints
                .iter()
                .map(|c| (c.checkpoint, mib(value(c))))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(fail)?
                .label(backend.backend.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )
                .map_err(fail)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(fail)?;
    }
    root.present().map_err(fail)
}
