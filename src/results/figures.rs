//! Figures of a run: SVG charts drawn from its summary rows, as the spec's `[[figures]]` declare
//! them (plotters' SVG backend; text is left to the viewer's fonts, so no font library is needed).
//!
//! Two kinds:
//! - `points`: one numeric summary column against another, each axis optionally log-scaled,
//!   coloured by a `series` column, one panel per value of a `panels` column, optional vertical
//!   whiskers from an `error` column (e.g. table2's kept_gap against wall time per solver, one
//!   panel per N:M). A log axis cannot show values ≤ 0: such points are left out and each panel's
//!   caption says how many.
//! - `dots`: a dot plot, one line per category (the `x` columns' values joined), one dot per `y`
//!   column with horizontal whiskers from the matching `error` column (e.g. table4's accuracy ±
//!   95% CI per setup). Dots, not bars: differences of a tenth of a point stay visible.
//!
//! Drawing is deterministic: the same rows give the same bytes, so `masklab plot` redraws a
//! run's figures identically from its `summary.parquet`.

use crate::error::{Error, Result};
use crate::results::markdown::fmt_num;
use crate::results::row::Row;
use crate::results::table::finite;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// One `[[figures]]` entry of a spec.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    /// File stem: the figure is `figures/<file>.svg` in the run directory.
    pub file: String,
    /// Title drawn above the panels and used as the link text in summary.md.
    pub title: String,
    /// `points` or `dots`.
    pub kind: FigureKind,
    /// `points`: the x column; `dots`: the columns naming a category.
    #[serde(deserialize_with = "one_or_many")]
    pub x: Vec<String>,
    /// The value columns (`points`: one per marker set; `dots`: one dot per column).
    #[serde(deserialize_with = "one_or_many")]
    pub y: Vec<String>,
    /// Half-width columns for whiskers, one per `y` column (optional).
    #[serde(default, deserialize_with = "one_or_many")]
    pub error: Vec<String>,
    /// `points`: column whose values colour the markers (one legend entry each).
    pub series: Option<String>,
    /// Column whose values split the rows into panels.
    pub panels: Option<String>,
    /// Log-scale the x axis (`points`) or the value axis (`dots`).
    #[serde(default)]
    pub log_x: bool,
    /// Log-scale the y axis (`points` only).
    #[serde(default)]
    pub log_y: bool,
    /// Axis description under the x axis, with units.
    pub x_label: String,
    /// Axis description beside the y axis, with units.
    pub y_label: String,
    /// Rows drawn: only those whose value in each named column is one of the given values
    /// (`only = { dtype = "bf16", batch = [1, 8] }`); every row when empty.
    #[serde(default)]
    pub only: std::collections::BTreeMap<String, OneOrManyValues>,
}

/// A value or a list of values (`only`'s entries), matched against a row's column as text.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrManyValues {
    /// Any of these (first: a list would also deserialise as one JSON value).
    Many(Vec<Value>),
    /// One value.
    One(Value),
}

impl OneOrManyValues {
    /// Whether `v` (a row's value) is one of these, compared as text (`1` matches `"1"`).
    fn admits(&self, v: Option<&Value>) -> bool {
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let Some(v) = v.map(text) else {
            return false;
        };
        match self {
            OneOrManyValues::One(x) => text(x) == v,
            OneOrManyValues::Many(xs) => xs.iter().any(|x| text(x) == v),
        }
    }
}

/// The chart types a figure can be.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FigureKind {
    /// x against y.
    Points,
    /// Categories against values.
    Dots,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl Figure {
    /// Check what can be checked before a run: a safe, unique file name and consistent columns;
    /// the error names the spec file.
    pub fn check(figures: &[Figure], spec: &Path) -> Result<()> {
        Figure::check_all(figures).map_err(|message| Error::Spec {
            path: spec.to_path_buf(),
            line: None,
            message: format!("[[figures]]: {message}"),
        })
    }

    fn check_all(figures: &[Figure]) -> std::result::Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for f in figures {
            let name = &f.file;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "figure file `{name}`: use letters, digits, `-` and `_` only"
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(format!("figure file `{name}` is declared twice"));
            }
            if f.x.is_empty() || f.y.is_empty() {
                return Err(format!("figure `{name}`: x and y must name columns"));
            }
            if f.kind == FigureKind::Points && f.x.len() != 1 {
                return Err(format!(
                    "figure `{name}`: a points figure has one x column, not {}",
                    f.x.len()
                ));
            }
            if !f.error.is_empty() && f.error.len() != f.y.len() {
                return Err(format!(
                    "figure `{name}`: {} error columns for {} y columns",
                    f.error.len(),
                    f.y.len()
                ));
            }
            if f.kind == FigureKind::Dots && (f.log_y || f.series.is_some()) {
                return Err(format!(
                    "figure `{name}`: a dots figure takes log_x (the value axis) and no series"
                ));
            }
        }
        Ok(())
    }

    /// Every column the figure reads.
    fn columns(&self) -> impl Iterator<Item = &String> {
        self.x
            .iter()
            .chain(&self.y)
            .chain(&self.error)
            .chain(&self.series)
            .chain(&self.panels)
            .chain(self.only.keys())
    }

    /// The rows `only` admits (all without it).
    fn selected<'a>(&self, rows: &'a [Row]) -> Vec<&'a Row> {
        rows.iter()
            .filter(|r| self.only.iter().all(|(c, want)| want.admits(r.get(c))))
            .collect()
    }
}

/// Okabe–Ito colours (distinguishable with colour-vision deficiencies), then black.
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
];

const FONT: &str = "sans-serif";
const WIDTH: u32 = 960;
const LEGEND: u32 = 210;
const TITLE: u32 = 36;

/// Draw `fig` from summary `rows` as SVG text. A column the rows do not have is an error naming
/// the figure and the column.
pub fn draw(fig: &Figure, rows: &[Row]) -> Result<String> {
    for c in fig.columns() {
        if !rows.iter().any(|r| r.contains_key(c)) {
            return Err(Error::invalid(
                "figure column",
                c,
                format!("figure `{}`: the summary has no such column", fig.file),
            ));
        }
    }
    let panels = split_panels(fig, &fig.selected(rows));
    let mut svg = String::new();
    let result = match fig.kind {
        FigureKind::Points => draw_points(fig, &panels, &mut svg),
        FigureKind::Dots => draw_dots(fig, &panels, &mut svg),
    };
    result.map_err(|message| Error::Format {
        path: format!("figures/{}.svg", fig.file).into(),
        message,
    })?;
    Ok(svg)
}

/// Draw every figure of `figures` into `dir/figures/`, each written atomically; returns the
/// (title, relative path) of each, for summary.md.
pub fn write_all(dir: &Path, figures: &[Figure], rows: &[Row]) -> Result<Vec<(String, String)>> {
    let mut links = Vec::new();
    if figures.is_empty() {
        return Ok(links);
    }
    let out = dir.join("figures");
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    for fig in figures {
        let svg = draw(fig, rows)?;
        let link = link(fig);
        crate::io::atomic::write_bytes(&dir.join(&link.1), svg.as_bytes())?;
        links.push(link);
    }
    Ok(links)
}

/// A figure's (title, path relative to the run directory).
fn link(fig: &Figure) -> (String, String) {
    (fig.title.clone(), format!("figures/{}.svg", fig.file))
}

/// The (title, relative path) links of those of `figures` already drawn in `dir/figures/`.
pub fn existing_links(dir: &Path, figures: &[Figure]) -> Vec<(String, String)> {
    figures
        .iter()
        .map(link)
        .filter(|(_, p)| dir.join(p).exists())
        .collect()
}

/// The heading of summary.md's figure section.
pub const HEADING: &str = "\n## Figures\n";

/// summary.md's figure section: one image link per figure.
pub fn markdown_section(links: &[(String, String)]) -> String {
    if links.is_empty() {
        return String::new();
    }
    let mut md = format!("{HEADING}\n");
    for (title, path) in links {
        md += &format!("![{title}]({path})\n\n");
    }
    md
}

/// A value as a label: strings as they are, numbers as the tables print them.
fn label(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => fmt_num(n.as_f64().unwrap_or(f64::NAN)),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "—".to_string(),
    }
}

/// Rows grouped by the panel column, in first-seen order (one unnamed panel without it).
fn split_panels<'a>(fig: &Figure, rows: &[&'a Row]) -> Vec<(String, Vec<&'a Row>)> {
    let mut panels: Vec<(String, Vec<&Row>)> = Vec::new();
    for &row in rows {
        let key = fig
            .panels
            .as_ref()
            .map(|p| format!("{p} = {}", label(row.get(p))))
            .unwrap_or_default();
        match panels.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(row),
            None => panels.push((key, vec![row])),
        }
    }
    panels
}

/// An axis range covering `values` with 5% padding (a unit range around a single value).
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 * (1.0 + lo.abs()) {
        let w = if lo == 0.0 { 0.5 } else { lo.abs() * 0.1 };
        return (lo - w, hi + w);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// [`padded`] over values and their whiskers' ends.
fn padded_with_whiskers(values: impl Iterator<Item = (f64, Option<(f64, f64)>)>) -> (f64, f64) {
    padded(values.flat_map(|(v, whisker)| {
        let (lo, hi) = whisker.unwrap_or((v, v));
        [v, lo, hi]
    }))
}

/// A panel's caption: its name, and how many values a log axis left out.
fn caption(name: &str, hidden: usize) -> String {
    match (name.is_empty(), hidden) {
        (_, 0) => name.to_string(),
        (true, n) => format!("{n} not shown (≤ 0 on a log axis)"),
        (false, n) => format!("{name}; {n} not shown (≤ 0 on a log axis)"),
    }
}

/// A tick label: on a log axis the value is log10, printed as a power of ten; an axis spanning
/// two decades or more labels the powers of ten only.
fn tick(v: f64, log: bool, span: f64) -> String {
    if !log {
        return axis_num(v);
    }
    if (v - v.round()).abs() < 1e-9 {
        format!("1e{}", v.round() as i64)
    } else if span < 2.0 {
        axis_num(10f64.powf(v))
    } else {
        String::new()
    }
}

/// A tick value: four decimals at most, trailing zeros dropped; scientific outside 1e-3..1e5.
fn axis_num(v: f64) -> String {
    if v.abs() < 1e-12 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&v.abs()) {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The value on the axis's scale: log10 on a log axis (`None` for values it cannot show).
fn scaled(v: f64, log: bool) -> Option<f64> {
    match log {
        false => Some(v),
        true if v > 0.0 => Some(v.log10()),
        true => None,
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing failed: {e:?}")
}

/// Title strip and the body below it.
fn frame<'a>(
    svg: &'a mut String,
    height: u32,
    title: &str,
) -> std::result::Result<(Area<'a>, Area<'a>), String> {
    let root = SVGBackend::with_string(svg, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, body) = root.split_vertically(TITLE);
    top.draw_text(title, &(FONT, 20).into_font().color(&BLACK), (12, 8))
        .map_err(err)?;
    Ok((top, body))
}

/// Whether colour index `i` is drawn as a circle (else a triangle).
fn round_marker(i: usize) -> bool {
    (i / COLOURS.len()).is_multiple_of(2)
}

/// Draw one marker per (colour index, point): circles for the first eight colours, triangles
/// for the next eight, and so on.
fn draw_markers<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    markers: &[(usize, (f64, f64))],
) -> std::result::Result<(), String> {
    let round = round_marker;
    chart
        .draw_series(
            markers
                .iter()
                .filter(|m| round(m.0))
                .map(|&(i, at)| Circle::new(at, 4, COLOURS[i % COLOURS.len()].filled())),
        )
        .map_err(err)?;
    chart
        .draw_series(
            markers
                .iter()
                .filter(|m| !round(m.0))
                .map(|&(i, at)| TriangleMarker::new(at, 5, COLOURS[i % COLOURS.len()].filled())),
        )
        .map_err(err)?;
    Ok(())
}

fn draw_points(
    fig: &Figure,
    panels: &[(String, Vec<&Row>)],
    svg: &mut String,
) -> std::result::Result<(), String> {
    // Legend entries: series values (or y columns when there are several), first-seen order.
    let mut entries: Vec<String> = Vec::new();
    for (_, rows) in panels {
        for row in rows {
            for yi in 0..fig.y.len() {
                let e = entry_of(fig, row, yi);
                if !entries.contains(&e) {
                    entries.push(e);
                }
            }
        }
    }
    let cols = panels.len().clamp(1, 2);
    let grid_rows = panels.len().div_ceil(cols).max(1);
    let panel_h = 380;
    let height = TITLE + (grid_rows as u32) * panel_h;
    let (_top, body) = frame(
        svg,
        height.max(TITLE + 24 * entries.len() as u32 + 40),
        &fig.title,
    )?;
    let (plots, legend) = body.split_horizontally(WIDTH - LEGEND);
    let areas = plots.split_evenly((grid_rows, cols));
    for ((name, rows), area) in panels.iter().zip(&areas) {
        let (points, hidden) = panel_points(fig, rows, &entries);
        let (x0, x1) = padded(points.iter().map(|p| p.1));
        let (y0, y1) = padded_with_whiskers(points.iter().map(|p| (p.2, p.3)));
        let caption = caption(name, hidden);
        let mut chart = ChartBuilder::on(area)
            .caption(caption, (FONT, 15))
            .margin(10)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        let (lx, ly) = (fig.log_x, fig.log_y);
        let fx = move |v: &f64| tick(*v, lx, x1 - x0);
        let fy = move |v: &f64| tick(*v, ly, y1 - y0);
        chart
            .configure_mesh()
            .x_desc(fig.x_label.as_str())
            .y_desc(fig.y_label.as_str())
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        for &(i, sx, _, whisker) in &points {
            if let Some((lo, hi)) = whisker {
                let colour = COLOURS[i % COLOURS.len()];
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(sx, lo), (sx, hi)],
                        colour.stroke_width(1),
                    )))
                    .map_err(err)?;
            }
        }
        let markers: Vec<_> = points.iter().map(|&(i, sx, sy, _)| (i, (sx, sy))).collect();
        draw_markers(&mut chart, &markers)?;
    }
    draw_legend(&legend, &entries)
}

/// A point's legend entry: its series value, with the y column when there are several.
fn entry_of(fig: &Figure, row: &Row, yi: usize) -> String {
    let series = fig.series.as_ref().map(|s| label(row.get(s)));
    match (series, fig.y.len()) {
        (Some(s), 1) => s,
        (Some(s), _) => format!("{s} · {}", fig.y[yi]),
        (None, _) => fig.y[yi].clone(),
    }
}

/// A drawn point: (legend entry, x, y, whisker) on the axes' scales.
type Point = (usize, f64, f64, Option<(f64, f64)>);

/// One panel's points, and how many points a log axis cannot show.
fn panel_points(fig: &Figure, rows: &[&Row], entries: &[String]) -> (Vec<Point>, usize) {
    let x = &fig.x[0];
    let mut points = Vec::new();
    let mut hidden = 0usize;
    for row in rows {
        for (yi, y) in fig.y.iter().enumerate() {
            let (Some(xv), Some(yv)) = (finite(row, x), finite(row, y)) else {
                continue;
            };
            let e = fig.error.get(yi).and_then(|c| finite(row, c));
            match (scaled(xv, fig.log_x), scaled(yv, fig.log_y)) {
                (Some(sx), Some(sy)) => {
                    let whisker = e.and_then(|e| {
                        Some((scaled(yv - e, fig.log_y)?, scaled(yv + e, fig.log_y)?))
                    });
                    let idx = entries.iter().position(|n| *n == entry_of(fig, row, yi));
                    points.push((idx.unwrap_or(0), sx, sy, whisker));
                }
                _ => hidden += 1,
            }
        }
    }
    (points, hidden)
}

/// Legend beside the panels: marker and name per entry.
fn draw_legend(area: &Area<'_>, entries: &[String]) -> std::result::Result<(), String> {
    for (i, name) in entries.iter().enumerate() {
        let y = 28 + 22 * i as i32;
        let colour = COLOURS[i % COLOURS.len()];
        if round_marker(i) {
            area.draw(&Circle::new((14, y), 4, colour.filled()))
                .map_err(err)?;
        } else {
            area.draw(&TriangleMarker::new((14, y), 5, colour.filled()))
                .map_err(err)?;
        }
        area.draw(&Text::new(
            name.clone(),
            (26, y - 7),
            (FONT, 13).into_font().color(&BLACK),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// One panel of a dots figure as data: a category line per row (its `x` columns joined), and
/// per row and `y` column a dot `(category line, y index, value, whisker)` on the value axis's
/// scale; `hidden` counts values a log axis cannot show.
struct Dots {
    cats: Vec<String>,
    dots: Vec<Dot>,
    hidden: usize,
}

/// A dot: category line, y index, value and whisker (low, high), on the value axis's scale.
type Dot = (usize, usize, f64, Option<(f64, f64)>);

/// The [`Dots`] of one panel's rows.
fn dots_of(fig: &Figure, rows: &[&Row]) -> Dots {
    let cats = rows
        .iter()
        .map(|r| {
            fig.x
                .iter()
                .map(|c| label(r.get(c)))
                .collect::<Vec<_>>()
                .join(" · ")
        })
        .collect();
    let mut dots = Vec::new();
    let mut hidden = 0usize;
    for (ci, row) in rows.iter().enumerate() {
        for (yi, y) in fig.y.iter().enumerate() {
            let Some(v) = finite(row, y) else { continue };
            let e = fig.error.get(yi).and_then(|c| finite(row, c));
            let Some(sv) = scaled(v, fig.log_x) else {
                hidden += 1;
                continue;
            };
            let whisker =
                e.and_then(|e| Some((scaled(v - e, fig.log_x)?, scaled(v + e, fig.log_x)?)));
            dots.push((ci, yi, sv, whisker));
        }
    }
    Dots { cats, dots, hidden }
}

fn draw_dots(
    fig: &Figure,
    panels: &[(String, Vec<&Row>)],
    svg: &mut String,
) -> std::result::Result<(), String> {
    let ys = &fig.y;
    let line = 22u32;
    let heights: Vec<u32> = panels
        .iter()
        .map(|(_, rows)| 90 + line * rows.len() as u32)
        .collect();
    let height = TITLE + heights.iter().sum::<u32>();
    let (_top, body) = frame(svg, height, &fig.title)?;
    let legend_w = if ys.len() > 1 { LEGEND } else { 0 };
    let (plots, legend) = body.split_horizontally(WIDTH - legend_w);
    let mut rest = plots;
    for ((name, rows), h) in panels.iter().zip(&heights) {
        let (area, below) = rest.split_vertically(*h);
        rest = below;
        let Dots { cats, dots, hidden } = dots_of(fig, rows);
        let n = cats.len();
        let (v0, v1) = padded_with_whiskers(dots.iter().map(|d| (d.2, d.3)));
        let caption = caption(name, hidden);
        let label_w = cats.iter().map(|c| c.chars().count()).max().unwrap_or(4) as u32 * 7 + 16;
        let mut chart = ChartBuilder::on(&area)
            .caption(caption, (FONT, 15))
            .margin(10)
            .x_label_area_size(44)
            .y_label_area_size(label_w.clamp(60, 420))
            .build_cartesian_2d(v0..v1, -0.5..(n as f64 - 0.5))
            .map_err(err)?;
        let log = fig.log_x;
        let fx = move |v: &f64| tick(*v, log, v1 - v0);
        // Category 0 on top: line i sits at y = n − 1 − i.
        let fy = |v: &f64| {
            let i = n as f64 - 1.0 - v.round();
            if (v - v.round()).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                cats[i as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_desc(fig.x_label.as_str())
            .y_desc(fig.y_label.as_str())
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .y_labels(n.max(1))
            .disable_y_mesh()
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        // Several y columns share a line, offset a little so their whiskers do not overlap.
        let offset = |yi: usize| {
            let k = ys.len() as f64;
            n as f64 - 1.0 - (0.25 * (yi as f64 - (k - 1.0) / 2.0) / k.max(1.0))
        };
        for &(ci, yi, _, whisker) in &dots {
            if let Some((lo, hi)) = whisker {
                let y = offset(yi) - ci as f64;
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(lo, y), (hi, y)],
                        COLOURS[yi % COLOURS.len()].stroke_width(2),
                    )))
                    .map_err(err)?;
            }
        }
        let markers: Vec<_> = dots
            .iter()
            .map(|&(ci, yi, sv, _)| (yi, (sv, offset(yi) - ci as f64)))
            .collect();
        draw_markers(&mut chart, &markers)?;
    }
    if ys.len() > 1 {
        draw_legend(&legend, ys)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
