//! Training curves drawn into a PNG file, with nothing beyond `std`.
//!
//! [`render`] draws one [`Chart`] (title, axes with "nice" 1/2/5 × 10^k ticks, axis labels,
//! one coloured 2-pixel polyline per [`Series`], a legend) and returns the bytes of a PNG file;
//! [`write_png`] stacks several charts vertically into one image and writes it out.
//!
//! Text is a built-in 5×7 bitmap font (printable ASCII, a few lowercase letters with a one-row
//! descender) drawn at twice its size. The PNG is 8-bit RGB, every scanline with filter 0, and
//! its zlib stream holds stored (uncompressed) deflate blocks: about `3 × width × height` bytes,
//! 1 MB for an 800 × 400 chart, in exchange for needing no compressor.
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

/// One curve of a [`Chart`].
#[derive(Clone, Copy, Debug)]
pub struct Series<'a> {
    /// The name shown in the legend.
    pub label: &'a str,
    /// `(x, y)` points, x usually the training step. They are joined in this order; a point with
    /// a non-finite coordinate (or, on a logarithmic y axis, with `y <= 0`) is skipped, and a
    /// series left with a single point is drawn as a dot.
    pub points: &'a [(f64, f64)],
}

/// One plot: its labels and the series drawn in it, each in its own colour.
#[derive(Clone, Copy, Debug)]
pub struct Chart<'a> {
    /// Drawn centred above the plot.
    pub title: &'a str,
    /// Drawn below the x axis.
    pub x_label: &'a str,
    /// Drawn, reading upwards, left of the y axis.
    pub y_label: &'a str,
    /// The curves. The axes span all of their points; a chart without any still gets axes.
    pub series: &'a [Series<'a>],
    /// A logarithmic y axis, ticked at powers of 10 (and at their 2 and 5 multiples when the
    /// values span few decades).
    pub log_y: bool,
}

/// Draws `chart` into a `width` × `height` image and returns the bytes of the PNG file.
///
/// A zero dimension is taken as 1. Labels that do not fit the image are cut off.
///
/// # Panics
///
/// If a dimension exceeds 2^31 - 1, the PNG limit.
#[must_use]
pub fn render(chart: &Chart, width: usize, height: usize) -> Vec<u8> {
    render_stacked(std::slice::from_ref(chart), width, height)
}

/// Writes one PNG file holding `charts` stacked vertically, each drawn `width` × `height` as by
/// [`render`]. An empty `charts` is an [`io::ErrorKind::InvalidInput`] error.
pub fn write_png(path: &Path, charts: &[Chart], width: usize, height: usize) -> io::Result<()> {
    if charts.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "write_png: no chart to draw",
        ));
    }
    std::fs::write(path, render_stacked(charts, width, height))
}

/// The PNG file of `charts` (at least one) stacked vertically.
fn render_stacked(charts: &[Chart], width: usize, height: usize) -> Vec<u8> {
    let (width, height) = (width.max(1), height.max(1));
    let mut rgb = Vec::with_capacity(3 * width * height * charts.len());
    for chart in charts {
        rgb.extend_from_slice(&draw_chart(chart, width, height).rgb);
    }
    encode_png(width, height * charts.len(), &rgb)
}

// ---------------------------------------------------------------------------------------------
// Chart layout and drawing
// ---------------------------------------------------------------------------------------------

type Rgb = [u8; 3];

const WHITE: Rgb = [255, 255, 255];
/// Text, axes and tick marks.
const INK: Rgb = [34, 34, 34];
/// Grid lines at the ticks.
const GRID: Rgb = [228, 228, 228];
const LEGEND_BORDER: Rgb = [150, 150, 150];
/// Series colours, in order (matplotlib's "tab10"); the 11th series reuses the first.
const PALETTE: [Rgb; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Font pixels are drawn as `SCALE` × `SCALE` squares.
const SCALE: i64 = 2;
/// Horizontal advance from one character to the next (5 columns and a blank one).
const CHAR_ADVANCE: i64 = 6 * SCALE;
/// Height of a capital letter or digit.
const CAP_HEIGHT: i64 = 7 * SCALE;
/// Height of a line of text, descenders included.
const LINE_HEIGHT: i64 = 8 * SCALE;
/// Margin around the chart and between its parts.
const PAD: i64 = 8;
/// Length of a tick mark, outside the plot.
const TICK_LEN: i64 = 5;
/// Gap between a tick mark and its label.
const TICK_GAP: i64 = 4;

/// Whether a point is drawn at all.
fn usable((x, y): (f64, f64), log_y: bool) -> bool {
    x.is_finite() && y.is_finite() && (!log_y || y > 0.0)
}

/// Smallest and largest of `values`, or None if there are none.
fn extent(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// The plot area (inside the axes' frame) and the axes that map data into it.
struct Frame {
    plot: Rect,
    x: Axis,
    y: Axis,
}

impl Frame {
    fn px_x(&self, x: f64) -> i64 {
        let span = (self.plot.w - 1) as f64;
        self.plot.x + (self.x.fraction(x) * span).round() as i64
    }

    fn px_y(&self, y: f64) -> i64 {
        let span = (self.plot.h - 1) as f64;
        self.plot.bottom() - 1 - (self.y.fraction(y) * span).round() as i64
    }
}

fn draw_chart(chart: &Chart, width: usize, height: usize) -> Canvas {
    let log_y = chart.log_y;
    let points = || {
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|&p| usable(p, log_y))
    };
    let x = Axis::linear(extent(points().map(|p| p.0)));
    let y_extent = extent(points().map(|p| p.1));
    let y = if log_y {
        Axis::log(y_extent)
    } else {
        Axis::linear(y_extent)
    };

    // Margins: title above; y label and y tick labels on the left; x tick labels and x label
    // below; on the right, room for half of the last x tick label.
    let (width, height) = (width as i64, height as i64);
    let title_h = if chart.title.is_empty() {
        0
    } else {
        LINE_HEIGHT + PAD
    };
    let y_label_w = if chart.y_label.is_empty() {
        0
    } else {
        LINE_HEIGHT + PAD
    };
    let x_label_h = if chart.x_label.is_empty() {
        0
    } else {
        LINE_HEIGHT + PAD / 2
    };
    let y_ticks_w = y
        .ticks
        .iter()
        .map(|t| text_width(&t.label))
        .max()
        .unwrap_or(0);
    let last_x_tick_w = x.ticks.last().map_or(0, |t| text_width(&t.label));
    let left = PAD + y_label_w + y_ticks_w + TICK_GAP + TICK_LEN + 1;
    let top = PAD + title_h + CAP_HEIGHT / 2 + 1;
    let right = last_x_tick_w / 2 + 2 * PAD;
    let bottom = 1 + TICK_LEN + TICK_GAP + LINE_HEIGHT + PAD / 2 + x_label_h + PAD;
    let plot = Rect {
        x: left,
        y: top,
        w: (width - left - right).max(1),
        h: (height - top - bottom).max(1),
    };
    let frame = Frame { plot, x, y };

    let mut canvas = Canvas::new(width as usize, height as usize);
    for tick in &frame.x.ticks {
        canvas.fill(
            plot.intersect(Rect::vline(frame.px_x(tick.value), plot.y, plot.h)),
            GRID,
        );
    }
    for tick in &frame.y.ticks {
        canvas.fill(
            plot.intersect(Rect::hline(plot.x, frame.px_y(tick.value), plot.w)),
            GRID,
        );
    }

    for (i, series) in chart.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pixels: Vec<(i64, i64)> = series
            .points
            .iter()
            .filter(|&&p| usable(p, log_y))
            .map(|&(x, y)| (frame.px_x(x), frame.px_y(y)))
            .collect();
        match pixels.as_slice() {
            [] => {}
            [only] => canvas.dot(*only, color, plot),
            _ => {
                for pair in pixels.windows(2) {
                    canvas.line(pair[0], pair[1], color, plot);
                }
            }
        }
    }

    draw_axes(&mut canvas, &frame);

    let title_x = plot.x + (plot.w - text_width(chart.title)) / 2;
    canvas.text(title_x.max(PAD), PAD, chart.title, INK);
    let x_label_y = plot.bottom() + 1 + TICK_LEN + TICK_GAP + LINE_HEIGHT + PAD / 2;
    canvas.text(
        plot.x + (plot.w - text_width(chart.x_label)) / 2,
        x_label_y,
        chart.x_label,
        INK,
    );
    let y_label_bottom = plot.y + (plot.h + text_width(chart.y_label)) / 2;
    canvas.text_up(PAD, y_label_bottom, chart.y_label, INK);

    draw_legend(&mut canvas, plot, chart.series);
    canvas
}

/// The frame around the plot, the tick marks and their labels.
fn draw_axes(canvas: &mut Canvas, frame: &Frame) {
    let plot = frame.plot;
    canvas.stroke(plot.grow(1), INK);

    // Labels that would overlap the previous one are left out.
    let mut free_from = i64::MIN;
    for tick in &frame.x.ticks {
        let x = frame.px_x(tick.value);
        canvas.fill(Rect::vline(x, plot.bottom() + 1, TICK_LEN), INK);
        let w = text_width(&tick.label);
        let label_x = x - w / 2;
        if label_x >= free_from {
            canvas.text(
                label_x,
                plot.bottom() + 1 + TICK_LEN + TICK_GAP,
                &tick.label,
                INK,
            );
            free_from = label_x + w + CHAR_ADVANCE;
        }
    }
    let mut free_above = i64::MAX;
    for tick in &frame.y.ticks {
        let y = frame.px_y(tick.value);
        canvas.fill(Rect::hline(plot.x - 1 - TICK_LEN, y, TICK_LEN), INK);
        let label_y = y - CAP_HEIGHT / 2;
        if label_y + LINE_HEIGHT <= free_above {
            let label_x = plot.x - 1 - TICK_LEN - TICK_GAP - text_width(&tick.label);
            canvas.text(label_x, label_y, &tick.label, INK);
            free_above = label_y;
        }
    }
}

/// The legend box: a colour swatch and the label of each series, in the corner of the plot
/// where it hides the fewest drawn pixels (top right if there is a tie).
fn draw_legend(canvas: &mut Canvas, plot: Rect, series: &[Series]) {
    if series.is_empty() {
        return;
    }
    const SWATCH_W: i64 = 24;
    const ROW_H: i64 = LINE_HEIGHT + 4;
    let labels_w = series
        .iter()
        .map(|s| text_width(s.label))
        .max()
        .unwrap_or(0);
    let (w, h) = (
        PAD + SWATCH_W + PAD + labels_w + PAD,
        PAD + ROW_H * series.len() as i64 - 4 + PAD / 2,
    );
    let (left, right) = (plot.x + PAD, plot.right() - PAD - w);
    let (top, bottom) = (plot.y + PAD, plot.bottom() - PAD - h);
    let corners = [(right, top), (left, top), (right, bottom), (left, bottom)];
    let ink = |&(x, y): &(i64, i64)| {
        let rect = Rect { x, y, w, h };
        canvas.count(rect, |c| c != WHITE && c != GRID)
    };
    let (x, y) = corners
        .iter()
        .copied()
        .min_by_key(|c| ink(c))
        .unwrap_or((right, top));

    let rect = Rect { x, y, w, h };
    canvas.fill(rect, WHITE);
    canvas.stroke(rect, LEGEND_BORDER);
    for (i, s) in series.iter().enumerate() {
        let row_y = y + PAD + ROW_H * i as i64;
        let swatch = Rect {
            x: x + PAD,
            y: row_y + CAP_HEIGHT / 2 - 1,
            w: SWATCH_W,
            h: 3,
        };
        canvas.fill(swatch, PALETTE[i % PALETTE.len()]);
        canvas.text(x + PAD + SWATCH_W + PAD, row_y, s.label, INK);
    }
}

// ---------------------------------------------------------------------------------------------
// Axes and ticks
// ---------------------------------------------------------------------------------------------

/// The largest magnitude an axis spans; beyond, values are clamped so that spans stay finite.
const MAX_MAGNITUDE: f64 = 1e300;
/// The smallest span of a linear axis, so that tick steps stay representable.
const MIN_SPAN: f64 = 1e-100;

/// One axis of a chart: the data interval it spans, end to end, and its labelled ticks.
#[derive(Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<Tick>,
}

#[derive(Debug, PartialEq)]
struct Tick {
    value: f64,
    label: String,
}

impl Axis {
    /// A linear axis over `extent` (`0..1` if None), widened to whole multiples of a "nice"
    /// step (1, 2 or 5 × 10^k) that gives about five ticks.
    fn linear(extent: Option<(f64, f64)>) -> Axis {
        let (lo, hi) = extent.unwrap_or((0.0, 1.0));
        let (mut lo, mut hi) = (
            lo.clamp(-MAX_MAGNITUDE, MAX_MAGNITUDE),
            hi.clamp(-MAX_MAGNITUDE, MAX_MAGNITUDE),
        );
        let magnitude = lo.abs().max(hi.abs());
        if hi - lo <= (magnitude * 1e-9).max(MIN_SPAN) {
            // A constant: centre it in a range 10% of its value (or 1 if zero) on either side.
            let pad = if magnitude > 0.0 {
                (magnitude * 0.1).max(MIN_SPAN)
            } else {
                1.0
            };
            (lo, hi) = (lo - pad, hi + pad);
        }
        let (mantissa, exponent) = nice_step(hi - lo);
        let step = decimal(mantissa, exponent);
        // The small slack keeps rounding noise (0.6 / 0.2 = 2.9999999999999996) from adding a step.
        let first = (lo / step + 1e-9).floor() as i64;
        let last = (hi / step - 1e-9).ceil() as i64;
        let scientific = magnitude >= 1e6 || exponent < -3;
        let ticks = (first..=last)
            .map(|k| {
                let value = decimal(k * mantissa, exponent);
                let label = tick_label(k * mantissa, exponent, scientific);
                Tick { value, label }
            })
            .collect();
        Axis {
            lo: decimal(first * mantissa, exponent),
            hi: decimal(last * mantissa, exponent),
            log: false,
            ticks,
        }
    }

    /// A logarithmic axis over `extent` (positive values; `1..10` if None). Ticks sit at 1, 2
    /// and 5 × 10^k when the values span at most 2.5 decades, at powers of 10 (every one up to
    /// 6 decades, then every n-th) beyond; the axis ends at the ticks enclosing the values. A
    /// span under half a decade gets linear "nice" ticks instead, which still read well there.
    fn log(extent: Option<(f64, f64)>) -> Axis {
        let (lo, hi) = extent.unwrap_or((1.0, 10.0));
        let (lo, hi) = (
            lo.clamp(1.0 / MAX_MAGNITUDE, MAX_MAGNITUDE),
            hi.clamp(1.0 / MAX_MAGNITUDE, MAX_MAGNITUDE),
        );
        let decades = hi.log10() - lo.log10();
        if decades < 0.5 {
            let linear = Axis::linear(Some((lo, hi)));
            if linear.lo > 0.0 {
                return Axis {
                    log: true,
                    ..linear
                };
            }
        }
        let (mantissas, stride): (&[i64], i32) = if decades <= 2.5 {
            (&[1, 2, 5], 1)
        } else {
            (&[1], ((decades / 6.0).ceil() as i32).max(1))
        };
        let first_decade = (lo.log10().floor() as i32).div_euclid(stride) * stride;
        let last_decade = hi.log10().ceil() as i32;
        let grid: Vec<(i64, i32)> = (first_decade..=last_decade)
            .step_by(stride as usize)
            .flat_map(|e| mantissas.iter().map(move |&m| (m, e)))
            .collect();
        // The grid points enclosing [lo, hi], with slack for rounding noise.
        let start = grid
            .iter()
            .rposition(|&(m, e)| decimal(m, e) <= lo * (1.0 + 1e-9))
            .unwrap_or(0);
        let end = grid
            .iter()
            .position(|&(m, e)| decimal(m, e) >= hi * (1.0 - 1e-9))
            .unwrap_or(grid.len() - 1);
        let grid = &grid[start..=end.max(start)];
        let (&(m_lo, e_lo), &(m_hi, e_hi)) = (&grid[0], &grid[grid.len() - 1]);
        let scientific = e_lo < -3 || e_hi >= 6;
        let ticks = grid
            .iter()
            .map(|&(m, e)| Tick {
                value: decimal(m, e),
                label: tick_label(m, e, scientific),
            })
            .collect();
        Axis {
            lo: decimal(m_lo, e_lo),
            hi: decimal(m_hi, e_hi),
            log: true,
            ticks,
        }
    }

    /// Where `v` lies along the axis: 0 at its low end, 1 at its high end. Values beyond the
    /// ends (only those clamped to ±10^300) are pinned to them.
    fn fraction(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        if f.is_nan() { 0.5 } else { f.clamp(0.0, 1.0) }
    }
}

/// The step, `mantissa × 10^exponent` with mantissa 1, 2 or 5, closest (in ratio) to a quarter
/// of `span`, which must be positive and finite.
fn nice_step(span: f64) -> (i64, i32) {
    let raw = span / 4.0;
    let exponent = raw.log10().floor() as i32;
    let f = raw / decimal(1, exponent);
    // The thresholds are the geometric means of neighbouring steps: √2, √10, √50.
    if f < std::f64::consts::SQRT_2 {
        (1, exponent)
    } else if f < 10f64.sqrt() {
        (2, exponent)
    } else if f < 50f64.sqrt() {
        (5, exponent)
    } else {
        (1, exponent + 1)
    }
}

/// The `f64` nearest to `mantissa × 10^exponent` (exact powers of ten up to 10^22 make it exact
/// whenever the result is representable, e.g. 3 × 10^-1 is the same `f64` as `0.3`).
fn decimal(mantissa: i64, exponent: i32) -> f64 {
    if exponent >= 0 {
        mantissa as f64 * 10f64.powi(exponent)
    } else {
        mantissa as f64 / 10f64.powi(-exponent)
    }
}

/// The label of the tick at `mantissa × 10^exponent`: plain with `-exponent` decimals
/// ("0.5", "20", "2.05"), or scientific ("1e-4", "2.5e6") when `scientific`. Zero is "0" in
/// scientific notation.
fn tick_label(mantissa: i64, exponent: i32, scientific: bool) -> String {
    let value = decimal(mantissa, exponent);
    if !scientific {
        let decimals = (-exponent).max(0) as usize;
        return format!("{value:.decimals$}");
    }
    if mantissa == 0 {
        return "0".to_string();
    }
    let mut significant = mantissa.unsigned_abs();
    while significant.is_multiple_of(10) {
        significant /= 10;
    }
    let precision = significant.ilog10() as usize;
    format!("{value:.precision$e}")
}

// ---------------------------------------------------------------------------------------------
// Raster canvas and bitmap text
// ---------------------------------------------------------------------------------------------

/// A rectangle of pixels, `x..x + w` by `y..y + h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rect {
    x: i64,
    y: i64,
    w: i64,
    h: i64,
}

impl Rect {
    fn hline(x: i64, y: i64, w: i64) -> Rect {
        Rect { x, y, w, h: 1 }
    }

    fn vline(x: i64, y: i64, h: i64) -> Rect {
        Rect { x, y, w: 1, h }
    }

    fn right(self) -> i64 {
        self.x + self.w
    }

    fn bottom(self) -> i64 {
        self.y + self.h
    }

    /// This rectangle with `by` more pixels on every side.
    fn grow(self, by: i64) -> Rect {
        Rect {
            x: self.x - by,
            y: self.y - by,
            w: self.w + 2 * by,
            h: self.h + 2 * by,
        }
    }

    /// The pixels in both rectangles (possibly none: then `w` or `h` is not positive).
    fn intersect(self, other: Rect) -> Rect {
        let (x, y) = (self.x.max(other.x), self.y.max(other.y));
        Rect {
            x,
            y,
            w: self.right().min(other.right()) - x,
            h: self.bottom().min(other.bottom()) - y,
        }
    }
}

/// An RGB image, row-major, 3 bytes a pixel; drawing outside it is silently clipped.
struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    /// A white image.
    fn new(width: usize, height: usize) -> Canvas {
        Canvas {
            width,
            height,
            rgb: vec![255; 3 * width * height],
        }
    }

    /// The columns and rows of `rect` that lie on the image, as index ranges.
    fn clip(&self, rect: Rect) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let span = |start: i64, len: i64, limit: usize| {
            let lo = start.clamp(0, limit as i64);
            let hi = (start + len).clamp(lo, limit as i64);
            lo as usize..hi as usize
        };
        (
            span(rect.x, rect.w, self.width),
            span(rect.y, rect.h, self.height),
        )
    }

    fn fill(&mut self, rect: Rect, color: Rgb) {
        let (xs, ys) = self.clip(rect);
        for y in ys {
            let row = 3 * (y * self.width);
            for pixel in self.rgb[row + 3 * xs.start..row + 3 * xs.end].chunks_exact_mut(3) {
                pixel.copy_from_slice(&color);
            }
        }
    }

    /// The pixels of `rect` (clipped to the image) whose colour satisfies `pred`.
    fn count(&self, rect: Rect, pred: impl Fn(Rgb) -> bool) -> usize {
        let (xs, ys) = self.clip(rect);
        ys.map(|y| {
            let row = 3 * (y * self.width);
            self.rgb[row + 3 * xs.start..row + 3 * xs.end]
                .chunks_exact(3)
                .filter(|p| pred([p[0], p[1], p[2]]))
                .count()
        })
        .sum()
    }

    /// A 1-pixel outline along the inside of `rect`.
    fn stroke(&mut self, rect: Rect, color: Rgb) {
        self.fill(Rect::hline(rect.x, rect.y, rect.w), color);
        self.fill(Rect::hline(rect.x, rect.bottom() - 1, rect.w), color);
        self.fill(Rect::vline(rect.x, rect.y, rect.h), color);
        self.fill(Rect::vline(rect.right() - 1, rect.y, rect.h), color);
    }

    /// A 2-pixel-wide line from `a` to `b` (Bresenham's, each step a 2 × 2 square), clipped
    /// to `clip`.
    fn line(&mut self, a: (i64, i64), b: (i64, i64), color: Rgb, clip: Rect) {
        let (dx, dy) = ((b.0 - a.0).abs(), -(b.1 - a.1).abs());
        let (sx, sy) = ((b.0 - a.0).signum(), (b.1 - a.1).signum());
        let (mut x, mut y, mut err) = (a.0, a.1, dx + dy);
        loop {
            self.fill(clip.intersect(Rect { x, y, w: 2, h: 2 }), color);
            if (x, y) == b {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// A filled disc of radius 3 around `center`, clipped to `clip`.
    fn dot(&mut self, center: (i64, i64), color: Rgb, clip: Rect) {
        for dy in -3..=3_i64 {
            let half = ((9 - dy * dy) as f64).sqrt().round() as i64;
            let row = Rect::hline(center.0 - half, center.1 + dy, 2 * half + 1);
            self.fill(clip.intersect(row), color);
        }
    }

    /// `text` with the top-left of its first character at (`x`, `y`).
    fn text(&mut self, x: i64, y: i64, text: &str, color: Rgb) {
        self.glyphs(text, color, |along, down| (x + along, y + down));
    }

    /// `text` rotated a quarter turn anticlockwise, reading upwards from (`x`, `bottom`): the
    /// tops of the characters face left, towards `x`.
    fn text_up(&mut self, x: i64, bottom: i64, text: &str, color: Rgb) {
        self.glyphs(text, color, |along, down| {
            (x + down, bottom - along - SCALE)
        });
    }

    /// Draws the font pixels of `text`, placing the square at `along` pixels along the text and
    /// `down` pixels down from the top of the line at `place(along, down)`.
    fn glyphs(&mut self, text: &str, color: Rgb, place: impl Fn(i64, i64) -> (i64, i64)) {
        for (i, c) in text.chars().enumerate() {
            for (col, bits) in glyph(c).into_iter().enumerate() {
                for row in (0..8).filter(|row| bits >> row & 1 == 1) {
                    let along = i as i64 * CHAR_ADVANCE + col as i64 * SCALE;
                    let (x, y) = place(along, row * SCALE);
                    self.fill(
                        Rect {
                            x,
                            y,
                            w: SCALE,
                            h: SCALE,
                        },
                        color,
                    );
                }
            }
        }
    }
}

/// Width in pixels of `text` as drawn by [`Canvas::text`].
fn text_width(text: &str) -> i64 {
    let n = text.chars().count() as i64;
    (n * CHAR_ADVANCE - SCALE).max(0)
}

/// The columns of `c`'s glyph; characters outside printable ASCII are drawn as '?'.
fn glyph(c: char) -> [u8; 5] {
    let c = if (' '..='~').contains(&c) { c } else { '?' };
    FONT[c as usize - ' ' as usize]
}

/// A 5 × 7 font for ' ' to '~': five columns a character, bit 0 the top row, bit 6 the
/// baseline row, bit 7 the descender row (g, j, p, q, y).
#[rustfmt::skip]
const FONT: [[u8; 5]; 95] = [
    [0x00, 0x00, 0x00, 0x00, 0x00], // ' '
    [0x00, 0x00, 0x5F, 0x00, 0x00], // !
    [0x00, 0x07, 0x00, 0x07, 0x00], // "
    [0x14, 0x7F, 0x14, 0x7F, 0x14], // #
    [0x24, 0x2A, 0x7F, 0x2A, 0x12], // $
    [0x23, 0x13, 0x08, 0x64, 0x62], // %
    [0x36, 0x49, 0x55, 0x22, 0x50], // &
    [0x00, 0x05, 0x03, 0x00, 0x00], // '
    [0x00, 0x1C, 0x22, 0x41, 0x00], // (
    [0x00, 0x41, 0x22, 0x1C, 0x00], // )
    [0x14, 0x08, 0x3E, 0x08, 0x14], // *
    [0x08, 0x08, 0x3E, 0x08, 0x08], // +
    [0x00, 0x50, 0x30, 0x00, 0x00], // ,
    [0x08, 0x08, 0x08, 0x08, 0x08], // -
    [0x00, 0x60, 0x60, 0x00, 0x00], // .
    [0x20, 0x10, 0x08, 0x04, 0x02], // /
    [0x3E, 0x51, 0x49, 0x45, 0x3E], // 0
    [0x00, 0x42, 0x7F, 0x40, 0x00], // 1
    [0x42, 0x61, 0x51, 0x49, 0x46], // 2
    [0x21, 0x41, 0x45, 0x4B, 0x31], // 3
    [0x18, 0x14, 0x12, 0x7F, 0x10], // 4
    [0x27, 0x45, 0x45, 0x45, 0x39], // 5
    [0x3C, 0x4A, 0x49, 0x49, 0x30], // 6
    [0x01, 0x71, 0x09, 0x05, 0x03], // 7
    [0x36, 0x49, 0x49, 0x49, 0x36], // 8
    [0x06, 0x49, 0x49, 0x29, 0x1E], // 9
    [0x00, 0x36, 0x36, 0x00, 0x00], // :
    [0x00, 0x56, 0x36, 0x00, 0x00], // ;
    [0x08, 0x14, 0x22, 0x41, 0x00], // <
    [0x14, 0x14, 0x14, 0x14, 0x14], // =
    [0x00, 0x41, 0x22, 0x14, 0x08], // >
    [0x02, 0x01, 0x51, 0x09, 0x06], // ?
    [0x32, 0x49, 0x79, 0x41, 0x3E], // @
    [0x7E, 0x11, 0x11, 0x11, 0x7E], // A
    [0x7F, 0x49, 0x49, 0x49, 0x36], // B
    [0x3E, 0x41, 0x41, 0x41, 0x22], // C
    [0x7F, 0x41, 0x41, 0x22, 0x1C], // D
    [0x7F, 0x49, 0x49, 0x49, 0x41], // E
    [0x7F, 0x09, 0x09, 0x09, 0x01], // F
    [0x3E, 0x41, 0x49, 0x49, 0x7A], // G
    [0x7F, 0x08, 0x08, 0x08, 0x7F], // H
    [0x00, 0x41, 0x7F, 0x41, 0x00], // I
    [0x20, 0x40, 0x41, 0x3F, 0x01], // J
    [0x7F, 0x08, 0x14, 0x22, 0x41], // K
    [0x7F, 0x40, 0x40, 0x40, 0x40], // L
    [0x7F, 0x02, 0x0C, 0x02, 0x7F], // M
    [0x7F, 0x04, 0x08, 0x10, 0x7F], // N
    [0x3E, 0x41, 0x41, 0x41, 0x3E], // O
    [0x7F, 0x09, 0x09, 0x09, 0x06], // P
    [0x3E, 0x41, 0x51, 0x21, 0x5E], // Q
    [0x7F, 0x09, 0x19, 0x29, 0x46], // R
    [0x46, 0x49, 0x49, 0x49, 0x31], // S
    [0x01, 0x01, 0x7F, 0x01, 0x01], // T
    [0x3F, 0x40, 0x40, 0x40, 0x3F], // U
    [0x1F, 0x20, 0x40, 0x20, 0x1F], // V
    [0x3F, 0x40, 0x38, 0x40, 0x3F], // W
    [0x63, 0x14, 0x08, 0x14, 0x63], // X
    [0x07, 0x08, 0x70, 0x08, 0x07], // Y
    [0x61, 0x51, 0x49, 0x45, 0x43], // Z
    [0x00, 0x7F, 0x41, 0x41, 0x00], // [
    [0x02, 0x04, 0x08, 0x10, 0x20], // \
    [0x00, 0x41, 0x41, 0x7F, 0x00], // ]
    [0x04, 0x02, 0x01, 0x02, 0x04], // ^
    [0x40, 0x40, 0x40, 0x40, 0x40], // _
    [0x00, 0x01, 0x02, 0x04, 0x00], // `
    [0x20, 0x54, 0x54, 0x54, 0x78], // a
    [0x7F, 0x48, 0x44, 0x44, 0x38], // b
    [0x38, 0x44, 0x44, 0x44, 0x20], // c
    [0x38, 0x44, 0x44, 0x48, 0x7F], // d
    [0x38, 0x54, 0x54, 0x54, 0x18], // e
    [0x08, 0x7E, 0x09, 0x01, 0x02], // f
    [0x18, 0xA4, 0xA4, 0xA4, 0x7C], // g
    [0x7F, 0x08, 0x04, 0x04, 0x78], // h
    [0x00, 0x44, 0x7D, 0x40, 0x00], // i
    [0x40, 0x80, 0x84, 0x7D, 0x00], // j
    [0x7F, 0x10, 0x28, 0x44, 0x00], // k
    [0x00, 0x41, 0x7F, 0x40, 0x00], // l
    [0x7C, 0x04, 0x18, 0x04, 0x78], // m
    [0x7C, 0x08, 0x04, 0x04, 0x78], // n
    [0x38, 0x44, 0x44, 0x44, 0x38], // o
    [0xFC, 0x24, 0x24, 0x24, 0x18], // p
    [0x18, 0x24, 0x24, 0x18, 0xFC], // q
    [0x7C, 0x08, 0x04, 0x04, 0x08], // r
    [0x48, 0x54, 0x54, 0x54, 0x20], // s
    [0x04, 0x3F, 0x44, 0x40, 0x20], // t
    [0x3C, 0x40, 0x40, 0x20, 0x7C], // u
    [0x1C, 0x20, 0x40, 0x20, 0x1C], // v
    [0x3C, 0x40, 0x30, 0x40, 0x3C], // w
    [0x44, 0x28, 0x10, 0x28, 0x44], // x
    [0x1C, 0xA0, 0xA0, 0xA0, 0x7C], // y
    [0x44, 0x64, 0x54, 0x4C, 0x44], // z
    [0x00, 0x08, 0x36, 0x41, 0x00], // {
    [0x00, 0x00, 0x7F, 0x00, 0x00], // |
    [0x00, 0x41, 0x36, 0x08, 0x00], // }
    [0x08, 0x04, 0x08, 0x10, 0x08], // ~
];

// ---------------------------------------------------------------------------------------------
// PNG encoding
// ---------------------------------------------------------------------------------------------

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1A, b'\n'];
/// The most bytes a stored deflate block holds (its length field is 16 bits).
const STORED_BLOCK_MAX: usize = 65_535;
/// The zlib stream is cut into IDAT chunks of at most this many bytes.
const IDAT_MAX: usize = 1 << 16;

/// A PNG file of an 8-bit RGB image, `rgb` holding `height` rows of `3 × width` bytes.
fn encode_png(width: usize, height: usize, rgb: &[u8]) -> Vec<u8> {
    assert_eq!(rgb.len(), 3 * width * height, "image buffer size");
    let dimension = |d: usize| match u32::try_from(d) {
        Ok(d) if d <= i32::MAX as u32 => d,
        _ => panic!("PNG dimension {d} exceeds 2^31 - 1"),
    };
    let (w, h) = (dimension(width), dimension(height));

    // Each scanline is its filter type (0: none) followed by its pixels.
    let mut scanlines = Vec::with_capacity(height * (1 + 3 * width));
    for row in rgb.chunks_exact(3 * width) {
        scanlines.push(0);
        scanlines.extend_from_slice(row);
    }
    let zlib = zlib_stored(&scanlines);

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate compression, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);

    let mut png = Vec::with_capacity(zlib.len() + zlib.len() / IDAT_MAX * 12 + 64);
    png.extend_from_slice(&PNG_SIGNATURE);
    write_chunk(&mut png, b"IHDR", &ihdr);
    for part in zlib.chunks(IDAT_MAX) {
        write_chunk(&mut png, b"IDAT", part);
    }
    write_chunk(&mut png, b"IEND", &[]);
    png
}

/// Appends a PNG chunk: length, type, data, and the CRC-32 of type and data.
fn write_chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let len = u32::try_from(data.len()).expect("PNG chunk longer than 4 GiB");
    png.extend_from_slice(&len.to_be_bytes());
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = !crc32_update(crc32_update(!0, kind), data);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream (RFC 1950) of `data` in stored deflate blocks (RFC 1951, block type 0).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let blocks = data.len().div_ceil(STORED_BLOCK_MAX).max(1);
    let mut out = Vec::with_capacity(data.len() + 5 * blocks + 6);
    // CMF 0x78: deflate with a 32 KiB window; FLG 0x01: no dictionary, fastest level, and
    // 0x7801 is a multiple of 31 as required.
    out.extend_from_slice(&[0x78, 0x01]);
    let mut chunks = data.chunks(STORED_BLOCK_MAX).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[0x01, 0x00, 0x00, 0xFF, 0xFF]); // one empty final block
    }
    while let Some(chunk) = chunks.next() {
        // The header's 3 bits (BFINAL, then BTYPE = 00) padded to the byte boundary.
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

/// Adler-32 (RFC 1950) of `data`.
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    // The most bytes that can be summed before `b` could overflow a u32 (zlib's NMAX).
    const NMAX: usize = 5_552;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(NMAX) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// The CRC-32 table of the reflected polynomial 0xEDB88320 (ISO-HDLC, as PNG and zlib use).
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

/// Runs the CRC-32 register `crc` over `data` (start from `!0`, complement the result).
fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    data.iter().fold(crc, |c, &byte| {
        CRC_TABLE[((c ^ u32::from(byte)) & 0xFF) as usize] ^ (c >> 8)
    })
}

#[cfg(test)]
fn crc32(data: &[u8]) -> u32 {
    !crc32_update(!0, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image read back from a PNG after checking everything the encoder promises: the
    /// signature, IHDR first (8-bit RGB, no interlace), consecutive IDATs, an empty IEND last,
    /// every chunk's CRC, a zlib stream of stored blocks of at most 65535 bytes with a valid
    /// Adler-32, and scanlines of filter 0.
    struct Decoded {
        width: usize,
        height: usize,
        rgb: Vec<u8>,
        idat_chunks: usize,
        stored_blocks: usize,
    }

    impl Decoded {
        fn pixel(&self, x: usize, y: usize) -> Rgb {
            let i = 3 * (y * self.width + x);
            [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
        }

        /// How many pixels of rows `rows` have colour `color`.
        fn count(&self, rows: std::ops::Range<usize>, color: Rgb) -> usize {
            rows.flat_map(|y| (0..self.width).map(move |x| (x, y)))
                .filter(|&(x, y)| self.pixel(x, y) == color)
                .count()
        }
    }

    fn be32(bytes: &[u8]) -> u32 {
        u32::from_be_bytes(bytes[..4].try_into().unwrap())
    }

    fn decode(png: &[u8]) -> Decoded {
        assert_eq!(png[..8], PNG_SIGNATURE);
        let mut chunks = Vec::new();
        let mut pos = 8;
        while pos < png.len() {
            let len = be32(&png[pos..]) as usize;
            let kind: [u8; 4] = png[pos + 4..pos + 8].try_into().unwrap();
            let data = &png[pos + 8..pos + 8 + len];
            let crc = be32(&png[pos + 8 + len..]);
            assert_eq!(crc, crc32(&[&kind[..], data].concat()), "CRC of {kind:?}");
            chunks.push((kind, data));
            pos += 12 + len;
        }
        assert_eq!(pos, png.len());

        let kinds: Vec<&[u8; 4]> = chunks.iter().map(|(k, _)| k).collect();
        let idat_chunks = kinds.len() - 2;
        assert!(idat_chunks >= 1);
        assert_eq!(kinds[0], b"IHDR");
        assert!(kinds[1..=idat_chunks].iter().all(|k| *k == b"IDAT"));
        assert_eq!(chunks.last().unwrap(), &(*b"IEND", &[][..]));

        let ihdr = chunks[0].1;
        assert_eq!(ihdr.len(), 13);
        let (width, height) = (be32(ihdr) as usize, be32(&ihdr[4..]) as usize);
        assert_eq!(ihdr[8..], [8, 2, 0, 0, 0]);

        let zlib: Vec<u8> = chunks[1..=idat_chunks]
            .iter()
            .flat_map(|(_, d)| d.to_vec())
            .collect();
        assert_eq!(zlib[0] & 0x0F, 8, "deflate");
        assert_eq!((u16::from(zlib[0]) << 8 | u16::from(zlib[1])) % 31, 0);
        assert_eq!(zlib[1] & 0x20, 0, "no preset dictionary");
        let mut raw = Vec::new();
        let mut pos = 2;
        let mut stored_blocks = 0;
        loop {
            let header = zlib[pos];
            assert_eq!(header >> 1, 0, "stored block, zero padding");
            let len = u16::from_le_bytes([zlib[pos + 1], zlib[pos + 2]]);
            let nlen = u16::from_le_bytes([zlib[pos + 3], zlib[pos + 4]]);
            assert_eq!(nlen, !len);
            raw.extend_from_slice(&zlib[pos + 5..pos + 5 + len as usize]);
            pos += 5 + len as usize;
            stored_blocks += 1;
            if header & 1 == 1 {
                break;
            }
        }
        assert_eq!(zlib.len(), pos + 4);
        assert_eq!(be32(&zlib[pos..]), adler32(&raw));

        assert_eq!(raw.len(), height * (1 + 3 * width));
        let mut rgb = Vec::with_capacity(3 * width * height);
        for scanline in raw.chunks_exact(1 + 3 * width) {
            assert_eq!(scanline[0], 0, "filter type 0");
            rgb.extend_from_slice(&scanline[1..]);
        }
        Decoded {
            width,
            height,
            rgb,
            idat_chunks,
            stored_blocks,
        }
    }

    const TRAIN: [(f64, f64); 5] = [
        (0.0, 9.5),
        (100.0, 4.0),
        (200.0, 2.8),
        (300.0, 2.4),
        (400.0, 2.2),
    ];
    const VALID: [(f64, f64); 3] = [(100.0, 4.5), (f64::NAN, 1.0), (400.0, 2.6)];

    fn chart<'a>(series: &'a [Series<'a>], log_y: bool) -> Chart<'a> {
        Chart {
            title: "Loss",
            x_label: "step",
            y_label: "loss",
            series,
            log_y,
        }
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"IEND"), 0xAE42_6082); // the trailer of every PNG file
    }

    #[test]
    fn adler32_check_values() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(b""), 1);
        // Long enough for several NMAX rounds, against the one-modulo-per-byte definition.
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| (i * 7919 % 251) as u8 + 4)
            .collect();
        let (a, b) = data.iter().fold((1u32, 0u32), |(a, b), &x| {
            let a = (a + u32::from(x)) % 65_521;
            (a, (b + a) % 65_521)
        });
        assert_eq!(adler32(&data), (b << 16) | a);
    }

    #[test]
    fn png_structure_and_series_pixels() {
        let series = [
            Series {
                label: "train",
                points: &TRAIN,
            },
            Series {
                label: "valid",
                points: &VALID,
            },
        ];
        for log_y in [false, true] {
            let png = decode(&render(&chart(&series, log_y), 320, 200));
            assert_eq!((png.width, png.height), (320, 200));
            let all = 0..png.height;
            assert!(
                png.count(all.clone(), WHITE) > 320 * 200 / 2,
                "white background"
            );
            assert!(png.count(all.clone(), INK) > 100, "text and axes");
            // The lines, well beyond the legend's swatches (24 × 3 pixels each).
            assert!(png.count(all.clone(), PALETTE[0]) > 200);
            assert!(png.count(all, PALETTE[1]) > 150);
        }
    }

    #[test]
    fn large_image_spans_several_blocks_and_chunks() {
        let series = [Series {
            label: "train",
            points: &TRAIN,
        }];
        let png = decode(&render(&chart(&series, false), 400, 300));
        assert_eq!((png.width, png.height), (400, 300));
        // 300 scanlines of 1201 bytes: 360300 bytes, 6 blocks of at most 65535.
        assert_eq!(png.stored_blocks, 6);
        assert!(png.idat_chunks > 1);
    }

    #[test]
    fn write_png_stacks_charts() {
        let series = [Series {
            label: "train",
            points: &TRAIN,
        }];
        let lr = [(0.0, 1e-4), (100.0, 3e-4), (400.0, 5e-5)];
        let lr_series = [Series {
            label: "lr",
            points: &lr,
        }];
        let charts = [
            chart(&series, false),
            chart(&series, true),
            Chart {
                title: "Learning rate",
                x_label: "step",
                y_label: "lr",
                series: &lr_series,
                log_y: false,
            },
        ];
        let path = std::env::temp_dir().join(format!("quill-plot-test-{}.png", std::process::id()));
        write_png(&path, &charts, 300, 180).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let png = decode(&bytes);
        assert_eq!((png.width, png.height), (300, 540));
        for band in 0..3 {
            assert!(
                png.count(band * 180..(band + 1) * 180, PALETTE[0]) > 150,
                "chart {band}"
            );
        }
        let err = write_png(&path, &[], 300, 180).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn degenerate_charts_still_render() {
        let one = [(5.0, 2.0)];
        let nothing_usable = [
            (f64::NAN, 1.0),
            (1.0, f64::INFINITY),
            (2.0, -1.0),
            (3.0, 0.0),
        ];
        let constant = [(0.0, 0.0), (1.0, 0.0)];
        let huge = [(-1e308, f64::MAX), (1e308, -f64::MAX), (0.0, 1e-320)];
        let cases: [&[Series]; 6] = [
            &[],
            &[Series {
                label: "",
                points: &[],
            }],
            &[Series {
                label: "nan",
                points: &nothing_usable,
            }],
            &[Series {
                label: "constant",
                points: &constant,
            }],
            &[Series {
                label: "huge",
                points: &huge,
            }],
            &[Series {
                label: "single",
                points: &one,
            }],
        ];
        for series in cases {
            for log_y in [false, true] {
                for (w, h) in [(0, 0), (1, 1), (40, 30), (240, 160)] {
                    let png = decode(&render(&chart(series, log_y), w, h));
                    assert_eq!((png.width, png.height), (w.max(1), h.max(1)));
                }
            }
        }
        // The lone point is a dot (a disc of radius 3), beside the legend's 24 × 3 swatch.
        let series = [Series {
            label: "single",
            points: &one,
        }];
        let png = decode(&render(&chart(&series, false), 400, 300));
        assert!(png.count(0..300, PALETTE[0]) >= 72 + 25);
    }

    fn ticks(axis: &Axis) -> (Vec<f64>, Vec<&str>) {
        axis.ticks
            .iter()
            .map(|t| (t.value, t.label.as_str()))
            .unzip()
    }

    #[test]
    fn linear_ticks_are_nice() {
        let axis = Axis::linear(Some((0.0, 1.0)));
        assert_eq!((axis.lo, axis.hi), (0.0, 1.0));
        assert_eq!(
            ticks(&axis),
            (
                vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
                vec!["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
            )
        );
        // Widened to the enclosing multiples of the step.
        assert_eq!(ticks(&Axis::linear(Some((0.13, 0.87)))), ticks(&axis));
        assert_eq!(ticks(&Axis::linear(None)), ticks(&axis));
        assert_eq!(
            ticks(&Axis::linear(Some((0.0, 1000.0)))).1,
            ["0", "200", "400", "600", "800", "1000"]
        );
        assert_eq!(
            ticks(&Axis::linear(Some((0.0, 3.0)))).1,
            ["0", "1", "2", "3"]
        );
        let axis = Axis::linear(Some((-3.0, 7.0)));
        assert_eq!((axis.lo, axis.hi), (-4.0, 8.0));
        assert_eq!(ticks(&axis).1, ["-4", "-2", "0", "2", "4", "6", "8"]);
        // A constant is centred in ±10% of itself.
        let axis = Axis::linear(Some((2.5, 2.5)));
        assert_eq!(
            ticks(&axis).1,
            ["2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "2.8"]
        );
        assert_eq!(
            ticks(&Axis::linear(Some((0.0, 0.0)))).1,
            ["-1.0", "-0.5", "0.0", "0.5", "1.0"]
        );
        // Steps below 10^-3 and magnitudes from 10^6 on are written in scientific notation.
        assert_eq!(
            ticks(&Axis::linear(Some((0.0, 3e-4)))),
            (
                vec![0.0, 1e-4, 2e-4, 3e-4],
                vec!["0", "1e-4", "2e-4", "3e-4"]
            )
        );
        assert_eq!(
            ticks(&Axis::linear(Some((0.0, 0.003)))).1[1..3],
            ["0.001", "0.002"]
        );
        assert_eq!(
            ticks(&Axis::linear(Some((0.0, 5e6)))).1,
            ["0", "1e6", "2e6", "3e6", "4e6", "5e6"]
        );
        assert_eq!(
            ticks(&Axis::linear(Some((1.2e7, 1.5e7)))).1,
            ["1.2e7", "1.3e7", "1.4e7", "1.5e7"]
        );
    }

    #[test]
    fn log_ticks_are_nice() {
        let axis = Axis::log(Some((0.5, 11.0)));
        assert_eq!((axis.lo, axis.hi), (0.5, 20.0));
        assert_eq!(
            ticks(&axis),
            (
                vec![0.5, 1.0, 2.0, 5.0, 10.0, 20.0],
                vec!["0.5", "1", "2", "5", "10", "20"]
            )
        );
        assert_eq!(ticks(&Axis::log(None)).1, ["1", "2", "5", "10"]);
        let axis = Axis::log(Some((1e-5, 3.0)));
        assert_eq!((axis.lo, axis.hi), (1e-5, 10.0));
        assert_eq!(
            ticks(&axis).1,
            ["1e-5", "1e-4", "1e-3", "1e-2", "1e-1", "1e0", "1e1"]
        );
        // Beyond 6 decades, every n-th power of 10.
        assert_eq!(
            ticks(&Axis::log(Some((3e-9, 2e3)))).1,
            ["1e-10", "1e-8", "1e-6", "1e-4", "1e-2", "1e0", "1e2", "1e4"]
        );
        // Under half a decade: linear ticks, placed logarithmically.
        let axis = Axis::log(Some((2.0, 2.2)));
        assert!(axis.log);
        assert_eq!(ticks(&axis).1, ["2.00", "2.05", "2.10", "2.15", "2.20"]);
        assert!((axis.fraction(2.1) - (1.05f64).log10() / (1.1f64).log10()).abs() < 1e-12);
        // Extremes are clamped, not a panic.
        assert!(Axis::log(Some((1e-320, f64::MAX))).ticks.len() > 2);
    }
}
