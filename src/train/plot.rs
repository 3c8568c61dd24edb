//! Training curves as a PNG file, drawn with `plotters` (its bitmap backend; text in DejaVu
//! Sans, embedded by the `dejavu` crate so that charts need no system font).
//!
//! [`write_png`] stacks one or more [`Chart`]s vertically (title, axes with their labels, one
//! coloured line per [`Series`], a legend) into one compressed PNG.
//!
//! ```no_run
//! use quill::train::plot::{Chart, Series, write_png};
//!
//! let train = [(0.0, 9.1), (100.0, 4.2), (200.0, 3.1), (300.0, 2.7)];
//! let valid = [(100.0, 4.6), (200.0, 3.5), (300.0, 3.2)];
//! let series = [
//!     Series { label: "train", points: &train },
//!     Series { label: "valid", points: &valid },
//! ];
//! let loss = Chart { title: "Loss", x_label: "step", y_label: "loss", series: &series, log_y: true };
//! write_png(std::path::Path::new("curves.png"), &[loss], 800, 400)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

/// One curve of a [`Chart`].
#[derive(Clone, Copy, Debug)]
pub struct Series<'a> {
    /// The name shown in the legend.
    pub label: &'a str,
    /// `(x, y)` points, x usually the training step, joined in this order. A point with a
    /// non-finite coordinate (or, on a logarithmic y axis, with `y <= 0`) is skipped.
    pub points: &'a [(f64, f64)],
}

/// One plot: its labels and the series drawn in it, each in its own colour.
#[derive(Clone, Copy, Debug)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// The curves. The axes span all of their points; a chart without any still gets axes.
    pub series: &'a [Series<'a>],
    /// A logarithmic y axis.
    pub log_y: bool,
}

/// The colours of the series, in order (then repeated).
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// The font plotters draws text with: DejaVu Sans from the `dejavu` crate, registered once.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are DejaVu's own TTF, which ab_glyph parses: failing here is a build defect.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Writes one PNG file holding `charts` stacked vertically, each `width` × `height` pixels.
/// An empty `charts` is an [`io::ErrorKind::InvalidInput`] error.
pub fn write_png(path: &Path, charts: &[Chart], width: usize, height: usize) -> io::Result<()> {
    if charts.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "write_png: no chart to draw",
        ));
    }
    register_font();
    let (w, h) = (width.max(1) as u32, height.max(1) as u32);
    let root = BitMapBackend::new(path, (w, h * charts.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    for (chart, area) in charts.iter().zip(root.split_evenly((charts.len(), 1))) {
        draw(chart, &area)?;
    }
    root.present().map_err(err)
}

/// The finite points of a series (positive y on a log axis).
fn points<'a>(s: &'a Series, log_y: bool) -> impl Iterator<Item = (f64, f64)> + 'a {
    s.points
        .iter()
        .copied()
        .filter(move |&(x, y)| x.is_finite() && y.is_finite() && (!log_y || y > 0.0))
}

/// The range spanned by `values`, widened when empty or flat.
fn span(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    match (lo.is_finite(), log) {
        (false, false) => (0.0, 1.0),
        (false, true) => (0.1, 1.0),
        (true, false) if lo == hi => (lo - 0.5, hi + 0.5),
        (true, true) if lo == hi => (lo / 2.0, hi * 2.0),
        (true, false) => (lo, hi + (hi - lo) * 0.05),
        (true, true) => (lo, hi * 1.1),
    }
}

fn draw(chart: &Chart, area: &DrawingArea<BitMapBackend, Shift>) -> io::Result<()> {
    let all = || chart.series.iter().flat_map(|s| points(s, chart.log_y));
    let (x0, x1) = span(all().map(|p| p.0), false);
    let (y0, y1) = span(all().map(|p| p.1), chart.log_y);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64);
    macro_rules! plot {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            ctx.configure_mesh()
                .x_desc(chart.x_label)
                .y_desc(chart.y_label)
                .label_style(("sans-serif", 13))
                .light_line_style(TRANSPARENT)
                .x_label_formatter(&|x| format!("{x}"))
                .draw()
                .map_err(err)?;
            for (i, s) in chart.series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                ctx.draw_series(LineSeries::new(
                    points(s, chart.log_y),
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(s.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
            if !chart.series.is_empty() {
                ctx.configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 13))
                    .draw()
                    .map_err(err)?;
            }
        }};
    }
    if chart.log_y {
        plot!(
            builder
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(err)?
        );
    } else {
        plot!(builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_compressed_pngs_and_empty_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        let train: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64, 9.0 / (1.0 + i as f64)))
            .collect();
        let series = [
            Series {
                label: "train",
                points: &train,
            },
            Series {
                label: "flat",
                points: &[(0.0, 1.0), (1.0, f64::NAN)],
            },
        ];
        let loss = Chart {
            title: "Loss",
            x_label: "step",
            y_label: "loss",
            series: &series,
            log_y: true,
        };
        let empty = Chart {
            series: &[],
            log_y: false,
            ..loss
        };
        write_png(&path, &[loss, empty], 800, 400).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // Compressed: far below the 3 bytes per pixel of raw RGB.
        assert!(png.len() < 800 * 800 * 3 / 6, "{} bytes", png.len());
        assert!(write_png(&path, &[], 10, 10).is_err());
    }
}
