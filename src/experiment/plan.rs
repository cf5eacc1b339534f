//! The plan: a resolved spec expanded into cells (the cartesian product of the grid, × seeds),
//! each checked by its cell kind before anything runs.

use super::cell::Cell;
use super::cells::{self, CellKind};
use super::spec::Spec;
use crate::error::{Error, Result};

/// The most cells a plan may hold (a sweep of more is split into several specs).
pub const MAX_CELLS: usize = 10_000_000;

/// A spec expanded into checked cells.
#[derive(Debug)]
pub struct Plan {
    /// The resolved spec.
    pub spec: Spec,
    /// The cell kind.
    pub kind: &'static dyn CellKind,
    /// Every cell, in plan order (axes vary fastest to the right, then seeds).
    pub cells: Vec<Cell>,
    /// The solvers its cells can name: the built-ins and the spec's external programs.
    pub solvers: crate::solvers::Catalogue,
}

impl Plan {
    /// Expand and check a spec; a cell the kind refuses is an error naming the spec line and axis.
    pub fn new(spec: Spec) -> Result<Self> {
        let mut solvers = crate::solvers::Catalogue::default();
        for (name, e) in &spec.external_solvers {
            solvers.declare(name, &e.command, e.timeout_seconds)?;
        }
        let kind = cells::by_name(&spec.kind).map_err(|e| Error::Spec {
            path: spec.path.clone(),
            line: None,
            message: format!("kind: {e}"),
        })?;
        check_axes(&spec, kind)?;
        check_columns(&spec, kind)?;
        check_count(&spec)?;
        let cells = expand(&spec)?;
        let checking = cells::Checking {
            params: &spec.params,
            solvers: &solvers,
        };
        for cell in &cells {
            kind.check(cell, &checking).map_err(|e| {
                let (line, field) = match &e {
                    Error::Invalid { field, .. } => match spec.axis_line(field) {
                        Some(l) => (Some(l), format!("grid.{field}")),
                        None => (None, format!("params.{field}")),
                    },
                    _ => (None, "grid".to_string()),
                };
                Error::Spec {
                    path: spec.path.clone(),
                    line,
                    message: format!("{field}: {e} (cell {})", cell.point()),
                }
            })?;
        }
        Ok(Plan {
            spec,
            kind,
            cells,
            solvers,
        })
    }

    /// Check that a logged row is a cell of this plan: its `index` names a cell whose key is the
    /// row's `cell`, and whose axis values and seed are the row's. A row that is not (edited
    /// in, or from another spec) is an error naming it.
    pub fn check_row(&self, row: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
        use serde_json::Value;
        let key = row
            .get("cell")
            .and_then(Value::as_str)
            .unwrap_or("(no cell key)");
        let cell = row
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| self.cells.get(usize::try_from(i).ok()?));
        let matches = cell.is_some_and(|c| {
            c.key() == key
                && row.get("seed").and_then(Value::as_u64) == Some(c.seed)
                && c.values
                    .iter()
                    .all(|(a, v)| row.get(a).and_then(Value::as_str) == Some(v.as_str()))
        });
        if matches {
            Ok(())
        } else {
            Err(Error::invalid(
                "row",
                key,
                format!(
                    "is not a cell of the plan of `{}` (profile {}): its index, key, axis values or seed do not match",
                    self.spec.name, self.spec.profile
                ),
            ))
        }
    }

    /// The cells of shard `i` of `n` (every n-th cell, starting at i).
    pub fn shard(&self, i: usize, n: usize) -> impl Iterator<Item = &Cell> {
        self.cells.iter().filter(move |c| c.index % n == i)
    }
}

/// Every grid axis is one the kind reads.
fn check_axes(spec: &Spec, kind: &dyn CellKind) -> Result<()> {
    let Some(axis) = spec
        .axes
        .iter()
        .find(|a| !kind.axes().contains(&a.name.as_str()))
    else {
        return Ok(());
    };
    Err(Error::Spec {
        path: spec.path.clone(),
        line: Some(axis.line),
        message: format!(
            "grid.{}: `{}` is not an axis of kind `{}` (its axes: {})",
            axis.name,
            axis.name,
            kind.name(),
            kind.axes().join(", ")
        ),
    })
}

/// Count before expanding: a grid of 10⁹ cells is refused with its count, not an abort on a
/// 40 GB allocation.
fn check_count(spec: &Spec) -> Result<()> {
    let count = spec
        .axes
        .iter()
        .map(|a| a.values.len())
        .chain([spec.seeds.len()])
        .try_fold(1usize, |n, k| n.checked_mul(k));
    match count {
        Some(n) if n <= MAX_CELLS => Ok(()),
        n => {
            let said = n
                .map(|n| n.to_string())
                .unwrap_or_else(|| "more than 2^64".into());
            Err(Error::Spec {
                path: spec.path.clone(),
                line: None,
                message: format!(
                    "grid: the axes and seeds expand to {said} cells (before excludes), more than the {MAX_CELLS} a plan may hold; split the sweep into several specs or shrink the axes"
                ),
            })
        }
    }
}

/// The grid's points (axes vary fastest to the right) less the excluded ones, × seeds.
fn expand(spec: &Spec) -> Result<Vec<Cell>> {
    let mut points: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for axis in &spec.axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                axis.values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((axis.name.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    points.retain(|p| !spec.excludes(p));
    if points.is_empty() {
        return Err(Error::Spec {
            path: spec.path.clone(),
            line: None,
            message: "exclude: every grid point is excluded".into(),
        });
    }
    let mut cells = Vec::with_capacity(points.len() * spec.seeds.len());
    for values in points {
        for &seed in &spec.seeds {
            cells.push(Cell {
                index: cells.len(),
                values: values.clone(),
                seed,
            });
        }
    }
    Ok(cells)
}

/// Every column a figure or a published value names must be one the run's summary will have
/// (an axis, `seeds`, a metric of the kind, or a metric's derived statistic): found when the
/// plan is made, not after every cell has run.
fn check_columns(spec: &Spec, kind: &dyn CellKind) -> Result<()> {
    use crate::results::published::PublishedTable;
    use crate::results::summary::DERIVED_SUFFIXES;
    let metrics = kind.columns();
    let mut known: Vec<String> = spec.axes.iter().map(|a| a.name.clone()).collect();
    known.extend([
        "seeds".to_string(),
        crate::results::regress::YARDSTICK.to_string(),
    ]);
    for m in &metrics {
        known.push(m.clone());
        known.extend(DERIVED_SUFFIXES.iter().map(|s| format!("{m}{s}")));
    }
    let refuse = |what: String, column: &str| Error::Spec {
        path: spec.path.clone(),
        line: None,
        message: format!(
            "{what}: `{column}` is not a column of a `{}` run (its metrics: {})",
            kind.name(),
            metrics.join(", ")
        ),
    };
    for f in &spec.figures {
        let named =
            f.x.iter()
                .chain(&f.y)
                .chain(&f.error)
                .chain(&f.series)
                .chain(&f.panels)
                .chain(f.only.keys());
        if let Some(c) = named.into_iter().find(|c| !known.contains(c)) {
            return Err(refuse(format!("[[figures]] `{}`", f.file), c));
        }
    }
    for (i, p) in spec.published.iter().enumerate() {
        if p.table == PublishedTable::Summary && !known.contains(&p.metric) {
            return Err(refuse(
                format!("[[published]] entry {} ({})", i + 1, p.paper),
                &p.metric,
            ));
        }
    }
    Ok(())
}

impl std::fmt::Debug for dyn CellKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
