//! Experiment specs in two stages: the raw TOML as written ([`RawSpec`], validation only) and
//! the resolved [`Spec`] for one profile (grid axes, seeds, params, tolerances).
//!
//! ```toml
//! name = "table1"
//! title = "Mask diversity at equal sparsity"
//! regenerates = "Hubara et al. 2021, mask diversity"
//! kind = "diversity"           # cell kind, by registry name
//! seeds = [0]
//!
//! [grid]                       # cartesian product of the axes
//! structure = ["nm:2:4", "transposable:2:4"]
//! size = ["8x8", "64x64"]
//!
//! [params]                     # fixed options of the cell kind (optional)
//!
//! [profiles.smoke]             # overrides: grid axes, `seeds`, `params`
//! size = ["8x8"]
//!
//! [tolerance]                  # per metric: abs, rel, or ratio (times: new ≤ ratio·old)
//! log10 = { rel = 1e-9 }
//! ```

use crate::error::{Error, Result};
use crate::results::figures::Figure;
use crate::results::published::Published;
use crate::results::regress::Tolerance;
use crate::results::summary::{Correlate, Paired, Statistics};
use crate::toml_value::{toml_scalar, toml_scalars};
use indexmap::IndexMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The spec as written, checked for shape only (`deny_unknown_fields`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    /// Table id, e.g. `table1`; names the run and baseline files.
    pub name: String,
    /// One-line title.
    pub title: String,
    /// What published result it regenerates.
    pub regenerates: String,
    /// Cell kind, by registry name.
    pub kind: Spanned<String>,
    /// Seeds; every grid point runs once per seed.
    pub seeds: Spanned<Vec<u64>>,
    /// Grid axes, each a non-empty list; cells are their cartesian product.
    pub grid: IndexMap<String, Spanned<Vec<toml::Value>>>,
    /// Fixed options passed to the cell kind.
    #[serde(default)]
    pub params: IndexMap<String, Spanned<toml::Value>>,
    /// Named profiles overriding axes, `seeds` or `params`.
    #[serde(default)]
    pub profiles: IndexMap<String, IndexMap<String, Spanned<toml::Value>>>,
    /// Tolerance per metric for `regress`.
    #[serde(default)]
    pub tolerance: IndexMap<String, Spanned<RawTolerance>>,
    /// Grid points to leave out: each entry maps axes to a value or list of values; a point
    /// matching every axis of an entry is skipped.
    #[serde(default)]
    pub exclude: Vec<IndexMap<String, Spanned<toml::Value>>>,
    /// Statistics over seeds in the summary (optional).
    #[serde(default)]
    pub statistics: Option<Spanned<RawStatistics>>,
    /// Programs that join as solvers: `[solvers.external.NAME]`.
    #[serde(default)]
    pub solvers: RawSolvers,
    /// Figures drawn from the summary: `[[figures]]` (see [`crate::results::figures`]).
    #[serde(default)]
    pub figures: Vec<Figure>,
    /// Values the papers print for cells of this table, with their sources: `[[published]]`
    /// (see [`crate::results::published`]).
    #[serde(default)]
    pub published: Vec<Published>,
}

/// `[solvers]`: solvers the spec brings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSolvers {
    /// External programs by solver name (see [`crate::solvers::external`]).
    #[serde(default)]
    pub external: IndexMap<String, ExternalSolver>,
}

/// `[solvers.external.NAME]`: the program and its time limit per call.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalSolver {
    /// Program and leading arguments, e.g. `["python3", "examples/solvers/random_feasible.py"]`.
    pub command: Vec<String>,
    /// Seconds a call may take before the program is killed (default 600).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
}

fn default_timeout() -> f64 {
    600.0
}

/// `[statistics]` as written: which metrics get confidence intervals and a test against the
/// reference row, and which relation is tested by rank correlation.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawStatistics {
    /// Metrics reported with a 95% CI, a difference to the reference and Welch's p-value.
    pub metrics: Vec<String>,
    /// The reference row: grid axis → value (e.g. `{ setup = "dense + dense" }`).
    #[serde(default)]
    pub reference: IndexMap<String, String>,
    /// A claimed relation, tested by Spearman's rank correlation over the cells.
    pub correlate: Option<Correlate>,
    /// Per-row references: each row whose `versus` column names another row's `key` column is
    /// tested against that row (Welch), e.g. each transposable N:M row against the standard N:M
    /// row of the same pattern.
    pub paired: Option<Paired>,
}

/// A tolerance as written: exactly one of `abs`, `rel`, `ratio`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawTolerance {
    /// `|new − old| ≤ abs`.
    pub abs: Option<f64>,
    /// `|new − old| ≤ rel · |old|`.
    pub rel: Option<f64>,
    /// `new ≤ ratio · old` (for times: only slowing down regresses).
    pub ratio: Option<f64>,
}

/// One grid axis after profile overrides: name and values (as strings).
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Axis name, e.g. `pattern`.
    pub name: String,
    /// Values in spec order.
    pub values: Vec<String>,
    /// 1-based line where the values were given.
    pub line: usize,
}

/// A spec resolved for one profile.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The file it came from.
    pub path: PathBuf,
    /// The TOML text (stored in manifests, hashed).
    pub text: String,
    /// Table id.
    pub name: String,
    /// Title.
    pub title: String,
    /// What it regenerates.
    pub regenerates: String,
    /// Cell kind name.
    pub kind: String,
    /// The profile applied.
    pub profile: String,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Grid axes.
    pub axes: Vec<Axis>,
    /// Cell-kind options (after profile overrides).
    pub params: IndexMap<String, toml::Value>,
    /// Tolerances by metric.
    pub tolerance: IndexMap<String, Tolerance>,
    /// Profiles the spec declares.
    pub profiles: Vec<String>,
    /// Grid points to leave out (axis → values; all axes of an entry must match).
    pub exclude: Vec<IndexMap<String, Vec<String>>>,
    /// Statistics over seeds, when declared.
    pub statistics: Option<Statistics>,
    /// External solvers the spec declares, by name.
    pub external_solvers: IndexMap<String, ExternalSolver>,
    /// Figures drawn from the summary.
    pub figures: Vec<Figure>,
    /// Published values beside ours (`[[published]]`).
    pub published: Vec<Published>,
}

/// Line (1-based) of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

impl RawSpec {
    /// Parse TOML text; errors name the file, line and field.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Spec {
            path: path.to_path_buf(),
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().trim().to_string(),
        })
    }
}

impl Spec {
    /// Read and resolve a spec file for `profile` (`None`: the `default` profile if declared,
    /// else the grid as written).
    pub fn load(path: &Path, profile: Option<&str>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Spec::from_text(path, &text, profile)
    }

    /// Resolve spec text (see [`Spec::load`]): the grid, then the chosen profile's overrides,
    /// tolerances, exclusions and statistics, each step's errors naming its field and line.
    pub fn from_text(path: &Path, text: &str, profile: Option<&str>) -> Result<Self> {
        let raw = RawSpec::parse(path, text)?;
        let at = Located { path, text };
        let mut axes = grid_axes(&raw, &at)?;
        let mut seeds = raw.seeds.get_ref().clone();
        if seeds.is_empty() {
            return Err(at.err(
                raw.seeds.span(),
                "seeds: empty; give at least one seed".into(),
            ));
        }
        let mut params: IndexMap<String, toml::Value> = raw
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect();
        let profiles: Vec<String> = raw.profiles.keys().cloned().collect();
        let chosen = match profile {
            Some(p) => Some(p.to_string()),
            None if raw.profiles.contains_key("default") => Some("default".to_string()),
            None => None,
        };
        if let Some(name) = &chosen {
            let overrides = raw.profiles.get(name).ok_or_else(|| Error::Spec {
                path: path.to_path_buf(),
                line: None,
                message: format!(
                    "profile `{name}` is not declared (profiles: {})",
                    profiles.join(", ")
                ),
            })?;
            apply_profile(
                &raw,
                name,
                overrides,
                &at,
                &mut axes,
                &mut seeds,
                &mut params,
            )?;
        }
        let mut tolerance = tolerances(&raw.tolerance, "tolerance", &at)?;
        if let Some(name) = &chosen {
            tolerance.extend(profile_tolerance(&raw, name, &at)?);
        }
        check_name(path, "name", &raw.name)?;
        for p in &profiles {
            check_name(path, "profiles", p)?;
        }
        check_duplicates(&raw, &at, &seeds, &axes, chosen.as_deref())?;
        let exclude = exclusions(&raw, &at)?;
        let statistics = statistics(&raw, &axes, &at)?;
        Figure::check(&raw.figures, path)?;
        let axis_names: Vec<String> = axes.iter().map(|a| a.name.clone()).collect();
        let correlation_columns: Vec<String> = statistics
            .as_ref()
            .and_then(|s| s.correlate.as_ref())
            .map(|c| {
                c.by.iter()
                    .cloned()
                    .chain(["x".to_string(), "y".to_string()])
                    .collect()
            })
            .unwrap_or_default();
        Published::check(&raw.published, &axis_names, &correlation_columns, path)?;
        Ok(Spec {
            path: path.to_path_buf(),
            text: text.to_string(),
            name: raw.name,
            title: raw.title,
            regenerates: raw.regenerates,
            kind: raw.kind.into_inner(),
            profile: chosen.unwrap_or_else(|| "grid".to_string()),
            seeds,
            axes,
            params,
            tolerance,
            profiles,
            exclude,
            statistics,
            external_solvers: raw.solvers.external,
            figures: raw.figures,
            published: raw.published,
        })
    }

    /// Whether a grid point (axis, value pairs) is left out by an `[[exclude]]` entry.
    pub fn excludes(&self, point: &[(String, String)]) -> bool {
        self.exclude.iter().any(|entry| {
            entry
                .iter()
                .all(|(axis, values)| point.iter().any(|(a, v)| a == axis && values.contains(v)))
        })
    }

    /// The spec's line for a grid axis (for error messages).
    pub fn axis_line(&self, axis: &str) -> Option<usize> {
        self.axes.iter().find(|a| a.name == axis).map(|a| a.line)
    }

    /// The `sha256` of the spec text, hex.
    pub fn hash(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.text.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// One entry of the table catalogue (`masklab list`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CatalogueEntry {
    /// Table id.
    pub id: String,
    /// Title.
    pub title: String,
    /// What it regenerates.
    pub regenerates: String,
    /// Cell kind.
    pub kind: String,
    /// Declared profiles.
    pub profiles: Vec<String>,
    /// The spec file.
    pub path: PathBuf,
}

/// The spec catalogue as `masklab list` prints it: a header, then one line per table.
pub struct Catalogue<'a>(pub &'a [CatalogueEntry]);

impl std::fmt::Display for Catalogue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<8}  {:<48}  {:<22}  regenerates",
            "id", "title", "profiles"
        )?;
        for e in self.0 {
            let profiles = e.profiles.join(",");
            writeln!(
                f,
                "{:<8}  {:<48}  {profiles:<22}  {}",
                e.id, e.title, e.regenerates
            )?;
        }
        Ok(())
    }
}

/// Every spec in `dir` (`*.toml`), sorted by id; a spec that does not parse is an error.
pub fn catalogue(dir: &Path) -> Result<Vec<CatalogueEntry>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let raw = RawSpec::parse(&path, &text)?;
        out.push(CatalogueEntry {
            id: raw.name,
            title: raw.title,
            regenerates: raw.regenerates,
            kind: raw.kind.into_inner(),
            profiles: raw.profiles.keys().cloned().collect(),
            path,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The spec files of a table id in `dir`: `ID.toml`, or else its sub-tables `IDa.toml`,
/// `IDb.toml`, … (a table of several parts, e.g. table4a and table4b), in order. An unknown id
/// is an error listing the tables there are.
pub fn table_specs(dir: &Path, id: &str) -> Result<Vec<PathBuf>> {
    let whole = dir.join(format!("{id}.toml"));
    if whole.exists() {
        return Ok(vec![whole]);
    }
    let parts: Vec<PathBuf> = ('a'..='z')
        .map(|c| dir.join(format!("{id}{c}.toml")))
        .take_while(|p| p.exists())
        .collect();
    if !parts.is_empty() {
        return Ok(parts);
    }
    let known: Vec<String> = catalogue(dir)
        .map(|c| c.into_iter().map(|e| e.id).collect())
        .unwrap_or_default();
    Err(Error::invalid(
        "table",
        id,
        format!("no spec {} (tables: {})", whole.display(), known.join(", ")),
    ))
}

/// [`table_specs`], refusing a table of several parts when `one` names an option that applies
/// to a single spec (e.g. `--out`).
pub fn table_specs_for(dir: &Path, id: &str, one: Option<&str>) -> Result<Vec<PathBuf>> {
    let paths = table_specs(dir, id)?;
    match one {
        Some(option) if paths.len() > 1 => {
            let parts: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
            Err(Error::invalid(
                "table",
                id,
                format!(
                    "has {} parts ({}); {option} applies to one: name a part (e.g. {id}a)",
                    parts.len(),
                    parts.join(", ")
                ),
            ))
        }
        _ => Ok(paths),
    }
}

/// Where a spec's text came from, for errors that name the file and line.
struct Located<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Located<'_> {
    fn err(&self, span: std::ops::Range<usize>, message: String) -> Error {
        Error::Spec {
            path: self.path.to_path_buf(),
            line: Some(line_of(self.text, span.start)),
            message,
        }
    }
}

/// A value that appears twice in `list`, if any.
fn first_duplicate<T: Eq + std::hash::Hash + std::fmt::Display>(list: &[T]) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    list.iter()
        .find(|v| !seen.insert(*v))
        .map(|v| v.to_string())
}

/// A table or profile name becomes a path component (results/runs/NAME, baselines/NAME.parquet):
/// letters, digits, `_`, `-` and `.` only, not `.` or `..`, so no name reaches outside.
pub fn check_name(path: &Path, field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Spec {
            path: path.to_path_buf(),
            line: None,
            message: format!(
                "{field}: `{name}` is not a usable name (letters, digits, `_`, `-` and `.` only; it names directories under results/)"
            ),
        })
    }
}

/// The values of one axis (grid or profile override) as strings: a non-empty list of strings,
/// numbers or booleans; errors name `field`.
fn axis_values(value: &toml::Value, field: &str) -> std::result::Result<Vec<String>, String> {
    let list = value
        .as_array()
        .ok_or_else(|| format!("{field}: expected a list"))?;
    let strings = list
        .iter()
        .map(toml_scalar)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("{field}: values must be strings, numbers or booleans"))?;
    if strings.is_empty() {
        return Err(format!("{field}: empty axis; give at least one value"));
    }
    Ok(strings)
}

/// The chosen profile's `[profiles.NAME.tolerance]` entries, checked as the top-level ones
/// (errors point at the profile's entry: a re-parsed value has no spans of its own).
fn profile_tolerance(
    raw: &RawSpec,
    name: &str,
    at: &Located,
) -> Result<IndexMap<String, Tolerance>> {
    let Some(value) = raw.profiles.get(name).and_then(|p| p.get("tolerance")) else {
        return Ok(IndexMap::new());
    };
    let field = format!("profiles.{name}.tolerance");
    let table: IndexMap<String, RawTolerance> =
        value
            .get_ref()
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| {
                at.err(value.span(), format!("{field}: {}", e.message().trim()))
            })?;
    let table = table
        .into_iter()
        .map(|(k, v)| (k, Spanned::new(value.span(), v)))
        .collect();
    tolerances(&table, &field, at)
}

/// A seed or a grid value given twice (after the profile's overrides) is an error naming it
/// and the line it is on.
fn check_duplicates(
    raw: &RawSpec,
    at: &Located,
    seeds: &[u64],
    axes: &[Axis],
    profile: Option<&str>,
) -> Result<()> {
    let in_profile = profile
        .map(|p| format!(" (profile {p})"))
        .unwrap_or_default();
    if let Some(dup) = first_duplicate(seeds) {
        return Err(Error::Spec {
            path: at.path.to_path_buf(),
            line: Some(line_of(at.text, raw.seeds.span().start)),
            message: format!(
                "seeds: {dup} is given twice{in_profile}; each seed is one independent run"
            ),
        });
    }
    for axis in axes {
        if let Some(dup) = first_duplicate(&axis.values) {
            return Err(Error::Spec {
                path: at.path.to_path_buf(),
                line: Some(axis.line),
                message: format!(
                    "grid.{}: `{dup}` is given twice{in_profile}; each value is one grid point",
                    axis.name
                ),
            });
        }
    }
    Ok(())
}

fn grid_axes(raw: &RawSpec, at: &Located) -> Result<Vec<Axis>> {
    if raw.grid.is_empty() {
        return Err(Error::Spec {
            path: at.path.to_path_buf(),
            line: None,
            message: "grid: no axes; a spec needs at least one grid axis".into(),
        });
    }
    raw.grid
        .iter()
        .map(|(name, values)| {
            let list = toml::Value::Array(values.get_ref().clone());
            Ok(Axis {
                name: name.clone(),
                values: axis_values(&list, &format!("grid.{name}"))
                    .map_err(|m| at.err(values.span(), m))?,
                line: line_of(at.text, values.span().start),
            })
        })
        .collect()
}

/// Apply profile `name`'s overrides of axes, `seeds` and `params`.
fn apply_profile(
    raw: &RawSpec,
    name: &str,
    overrides: &IndexMap<String, Spanned<toml::Value>>,
    at: &Located,
    axes: &mut [Axis],
    seeds: &mut Vec<u64>,
    params: &mut IndexMap<String, toml::Value>,
) -> Result<()> {
    for (key, value) in overrides {
        let field = format!("profiles.{name}.{key}");
        match key.as_str() {
            "seeds" => {
                *seeds = value
                    .get_ref()
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(|v| v.as_integer().filter(|i| *i >= 0).map(|i| i as u64))
                            .collect::<Option<Vec<_>>>()
                    })
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        at.err(
                            value.span(),
                            format!("{field}: expected a non-empty list of non-negative integers"),
                        )
                    })?;
            }
            // Resolved with the spec's own tolerances (see `Spec::from_text`).
            "tolerance" => {}
            "params" => {
                let table = value
                    .get_ref()
                    .as_table()
                    .ok_or_else(|| at.err(value.span(), format!("{field}: expected a table")))?;
                for (k, v) in table {
                    params.insert(k.clone(), v.clone());
                }
            }
            axis => {
                let slot = axes.iter_mut().find(|a| a.name == axis).ok_or_else(|| {
                    let names: Vec<_> = raw.grid.keys().map(String::as_str).collect();
                    at.err(
                        value.span(),
                        format!(
                            "{field}: `{axis}` is not a grid axis (axes: {}; also seeds, params)",
                            names.join(", ")
                        ),
                    )
                })?;
                slot.values =
                    axis_values(value.get_ref(), &field).map_err(|m| at.err(value.span(), m))?;
                slot.line = line_of(at.text, value.span().start);
            }
        }
    }
    Ok(())
}

fn tolerances(
    given: &IndexMap<String, Spanned<RawTolerance>>,
    field: &str,
    at: &Located,
) -> Result<IndexMap<String, Tolerance>> {
    let mut tolerance = IndexMap::new();
    for (metric, tol) in given {
        let t = tol.get_ref();
        let given: Vec<Tolerance> = [
            t.abs.map(Tolerance::Abs),
            t.rel.map(Tolerance::Rel),
            t.ratio.map(Tolerance::Ratio),
        ]
        .into_iter()
        .flatten()
        .collect();
        let [one] = given.as_slice() else {
            return Err(at.err(
                tol.span(),
                format!("{field}.{metric}: give exactly one of abs, rel, ratio"),
            ));
        };
        // NaN or a negative bound regresses always, and inf never: both are refused.
        let (key, value, least) = match *one {
            Tolerance::Abs(a) => ("abs", a, 0.0),
            Tolerance::Rel(r) => ("rel", r, 0.0),
            Tolerance::Ratio(q) => ("ratio", q, 1.0),
        };
        if !value.is_finite() || value < least {
            return Err(at.err(
                tol.span(),
                format!(
                    "{field}.{metric}: {key} = {value} is not a tolerance (a finite number of at least {least})"
                ),
            ));
        }
        tolerance.insert(metric.clone(), *one);
    }
    Ok(tolerance)
}

fn exclusions(raw: &RawSpec, at: &Located) -> Result<Vec<IndexMap<String, Vec<String>>>> {
    let mut exclude = Vec::new();
    for (i, entry) in raw.exclude.iter().enumerate() {
        let mut resolved = IndexMap::new();
        for (axis, value) in entry {
            let field = format!("exclude[{i}].{axis}");
            if !raw.grid.contains_key(axis) {
                return Err(at.err(
                    value.span(),
                    format!("{field}: `{axis}` is not a grid axis"),
                ));
            }
            let values = toml_scalars(value.get_ref()).ok_or_else(|| {
                at.err(
                    value.span(),
                    format!("{field}: expected a value or a list of values"),
                )
            })?;
            resolved.insert(axis.clone(), values);
        }
        exclude.push(resolved);
    }
    Ok(exclude)
}

fn statistics(raw: &RawSpec, axes: &[Axis], at: &Located) -> Result<Option<Statistics>> {
    let Some(st) = &raw.statistics else {
        return Ok(None);
    };
    let raw_st = st.get_ref();
    if raw_st.metrics.is_empty() {
        return Err(at.err(
            st.span(),
            "statistics.metrics: empty; name at least one metric".into(),
        ));
    }
    let mut reference = Vec::new();
    for (axis, value) in &raw_st.reference {
        let field = format!("statistics.reference.{axis}");
        let Some(a) = axes.iter().find(|a| &a.name == axis) else {
            return Err(at.err(st.span(), format!("{field}: `{axis}` is not a grid axis")));
        };
        if !a.values.contains(value) {
            return Err(at.err(
                st.span(),
                format!(
                    "{field}: `{value}` is not on the axis (values: {})",
                    a.values.join(", ")
                ),
            ));
        }
        reference.push((axis.clone(), value.clone()));
    }
    Ok(Some(Statistics {
        metrics: raw_st.metrics.clone(),
        reference,
        correlate: raw_st.correlate.clone(),
        paired: raw_st.paired.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
title = "T"
regenerates = "nothing"
kind = "diversity"
seeds = [0, 1]

[grid]
structure = ["nm:2:4"]
size = ["8x8", "16x16"]

[profiles.smoke]
size = ["8x8"]
seeds = [3]

[tolerance]
log10 = { rel = 1e-9 }
"#;

    fn load(text: &str, profile: Option<&str>) -> Result<Spec> {
        Spec::from_text(Path::new("spec.toml"), text, profile)
    }

    #[test]
    fn published_entries_are_checked_against_the_grid_axes() -> Result<()> {
        let entry = |at: &str| {
            format!(
                "{GOOD}\n[[published]]\npaper = \"P 2021\"\nwhere = \"Table 2, p. 6\"\nquote = \"q\"\nmetric = \"log10\"\nat = {at}\nvalue = 12.0\n"
            )
        };
        let s = load(&entry("{ structure = \"nm:2:4\", size = \"8x8\" }"), None)?;
        assert_eq!(s.published.len(), 1);
        assert_eq!(s.published[0].location, "Table 2, p. 6");
        let err = load(&entry("{ shape = \"8x8\" }"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("spec.toml: [[published]] #1 (P 2021): at.shape is not a column")
                && err.contains("(columns: structure, size)"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn profiles_override_axes_and_seeds() -> Result<()> {
        let s = load(GOOD, None)?;
        assert_eq!(s.profile, "grid");
        assert_eq!(s.axes[1].values, vec!["8x8", "16x16"]);
        let s = load(GOOD, Some("smoke"))?;
        assert_eq!(s.axes[1].values, vec!["8x8"]);
        assert_eq!(s.seeds, vec![3]);
        assert_eq!(s.tolerance["log10"], Tolerance::Rel(1e-9));
        assert!(
            load(GOOD, Some("nope"))
                .unwrap_err()
                .to_string()
                .contains("profile `nope`")
        );
        Ok(())
    }

    #[test]
    fn a_profile_adds_and_overrides_tolerances_and_bad_ones_name_the_profile() -> Result<()> {
        let text = GOOD.replace(
            "[tolerance]",
            "[profiles.nightly]\nseeds = [0]\n\n[profiles.nightly.tolerance]\nseconds = { ratio = 2.0 }\nlog10 = { abs = 0.5 }\n\n[tolerance]",
        );
        let nightly = load(&text, Some("nightly"))?;
        assert_eq!(nightly.tolerance["seconds"], Tolerance::Ratio(2.0));
        assert_eq!(nightly.tolerance["log10"], Tolerance::Abs(0.5));
        // Other profiles keep the spec's own.
        let smoke = load(&text, Some("smoke"))?;
        assert_eq!(smoke.tolerance["log10"], Tolerance::Rel(1e-9));
        assert!(!smoke.tolerance.contains_key("seconds"));
        let bad = text.replace(
            "seconds = { ratio = 2.0 }",
            "seconds = { ratio = 2.0, abs = 1.0 }",
        );
        let e = load(&bad, Some("nightly")).unwrap_err().to_string();
        assert!(
            e.contains("profiles.nightly.tolerance.seconds") && e.contains("exactly one"),
            "{e}"
        );
        let typo = text.replace("seconds = { ratio = 2.0 }", "seconds = { ration = 2.0 }");
        let e = load(&typo, Some("nightly")).unwrap_err().to_string();
        assert!(
            e.contains("profiles.nightly.tolerance") && e.contains("ration"),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let text = GOOD.replace("seeds = [0, 1]", "seeds = [0, 1]\nsede = 3");
        let e = load(&text, None).unwrap_err().to_string();
        assert!(e.starts_with("spec.toml:7:") && e.contains("sede"), "{e}");
    }

    #[test]
    fn empty_axis_and_grid_are_named() {
        let e = load(
            &GOOD.replace(r#"size = ["8x8", "16x16"]"#, "size = []"),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("spec.toml:10:") && e.contains("grid.size: empty axis"),
            "{e}"
        );
        let no_grid = GOOD.replace(
            "[grid]\nstructure = [\"nm:2:4\"]\nsize = [\"8x8\", \"16x16\"]",
            "[grid]",
        );
        let e = load(&no_grid, None).unwrap_err().to_string();
        assert!(e.contains("grid: no axes"), "{e}");
        let e = load(&GOOD.replace("seeds = [3]", "sizes = [3]"), Some("smoke"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("profiles.smoke.sizes") && e.contains("not a grid axis"),
            "{e}"
        );
    }

    #[test]
    fn tolerance_needs_exactly_one_kind() {
        let e = load(
            &GOOD.replace("{ rel = 1e-9 }", "{ rel = 1e-9, abs = 1 }"),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tolerance.log10"), "{e}");
        assert!(
            Tolerance::Ratio(2.0).accepts(1.0, 1.9) && !Tolerance::Ratio(2.0).accepts(1.0, 2.1)
        );
        assert!(
            Tolerance::Rel(0.1).accepts(10.0, 10.9) && !Tolerance::Abs(0.1).accepts(10.0, 10.9)
        );
    }
}

/// Property tests of the spec parser: no text panics it, valid specs round-trip, and every
/// error names its field.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A valid spec's parts: kind, seeds, axes (name, values), one profile override.
    #[derive(Debug, Clone)]
    struct Parts {
        title: String,
        kind: &'static str,
        seeds: Vec<u64>,
        axes: Vec<(String, Vec<String>)>,
        profile_seeds: Vec<u64>,
    }

    fn ident() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_]{0,7}"
    }

    fn parts() -> impl Strategy<Value = Parts> {
        let axis = (
            ident(),
            proptest::collection::vec("[a-zA-Z0-9:._ -]{1,12}", 1..4),
        );
        (
            "[ -!#-\\[\\]-~]{0,30}",
            prop_oneof![
                Just("diversity"),
                Just("solver"),
                Just("estimator"),
                Just("train")
            ],
            proptest::collection::vec(0u64..1000, 1..4),
            proptest::collection::vec(axis, 1..4),
            proptest::collection::vec(0u64..1000, 1..3),
        )
            .prop_map(|(title, kind, mut seeds, mut axes, mut profile_seeds)| {
                // Duplicate seeds and axis values are refused (issue 21 R18): valid specs have none.
                fn dedup<T: PartialEq + Clone>(v: &mut Vec<T>) {
                    let mut out: Vec<T> = Vec::new();
                    v.iter().for_each(|x| {
                        if !out.contains(x) {
                            out.push(x.clone())
                        }
                    });
                    *v = out;
                }
                dedup(&mut seeds);
                dedup(&mut profile_seeds);
                axes.iter_mut().for_each(|(_, values)| dedup(values));
                let mut seen = std::collections::HashSet::new();
                axes.retain(|(name, _)| {
                    seen.insert(name.clone()) && name != "seeds" && name != "params"
                });
                if axes.is_empty() {
                    axes.push(("a".into(), vec!["v".into()]));
                }
                Parts {
                    title,
                    kind,
                    seeds,
                    axes,
                    profile_seeds,
                }
            })
    }

    fn list<T: std::fmt::Debug>(v: &[T]) -> String {
        format!("{v:?}")
    }

    fn render(p: &Parts) -> String {
        let mut t = format!(
            "name = \"t\"\ntitle = \"{}\"\nregenerates = \"r\"\nkind = \"{}\"\nseeds = {}\n\n[grid]\n",
            p.title,
            p.kind,
            list(&p.seeds)
        );
        for (name, values) in &p.axes {
            t += &format!("{name} = {}\n", list(values));
        }
        t += &format!(
            "\n[profiles.smoke]\nseeds = {}\n{} = {}\n",
            list(&p.profile_seeds),
            p.axes[0].0,
            list(&p.axes[0].1[..1])
        );
        t
    }

    fn load(text: &str, profile: Option<&str>) -> Result<Spec> {
        Spec::from_text(Path::new("p.toml"), text, profile)
    }

    /// Lines that make up spec-like text, valid and broken.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("name = \"t\"\ntitle = \"t\"\nregenerates = \"r\"\n".to_string()),
            Just("kind = \"diversity\"\n".to_string()),
            Just("seeds = [0, 1]\n".to_string()),
            Just("seeds = []\n".to_string()),
            Just("[grid]\n".to_string()),
            Just("size = [\"8x8\"]\n".to_string()),
            Just("size = []\n".to_string()),
            Just("[profiles.smoke]\n".to_string()),
            Just("params = 3\n".to_string()),
            Just("[tolerance]\nx = { rel = 1, abs = 2 }\n".to_string()),
            Just("[[exclude]]\nsize = [[1]]\n".to_string()),
            Just("[statistics]\nmetrics = []\n".to_string()),
            "[ -~\n]{0,40}",
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            for profile in [None, Some("smoke"), Some("default")] {
                let _ = load(&text, profile);
            }
        }

        #[test]
        fn spec_like_text_never_panics_and_errors_are_one_line(
            frags in proptest::collection::vec(fragment(), 0..14),
        ) {
            let text = frags.concat();
            for profile in [None, Some("smoke")] {
                if let Err(e) = load(&text, profile) {
                    let msg = e.to_string();
                    prop_assert!(msg.starts_with("p.toml"), "{}", msg);
                    prop_assert!(!msg.trim().contains('\n'), "{}", msg);
                }
            }
        }

        #[test]
        fn valid_specs_round_trip(p in parts()) {
            let text = render(&p);
            let s = load(&text, None)?;
            prop_assert_eq!(&s.title, &p.title);
            prop_assert_eq!(s.kind.as_str(), p.kind);
            prop_assert_eq!(&s.seeds, &p.seeds);
            prop_assert_eq!(s.profile.as_str(), "grid");
            let got: Vec<(String, Vec<String>)> =
                s.axes.iter().map(|a| (a.name.clone(), a.values.clone())).collect();
            prop_assert_eq!(&got, &p.axes);
            let smoke = load(&text, Some("smoke"))?;
            prop_assert_eq!(&smoke.seeds, &p.profile_seeds);
            prop_assert_eq!(&smoke.axes[0].values, &p.axes[0].1[..1].to_vec());
            prop_assert_eq!(&smoke.axes[1..], &s.axes[1..]);
        }

        #[test]
        fn every_error_names_its_field(p in parts(), which in 0usize..7) {
            let axis = p.axes[0].0.clone();
            let text = render(&p);
            let (broken, field) = match which {
                0 => (text.replacen(&format!("seeds = {}", list(&p.seeds)), "seeds = []", 1), "seeds".to_string()),
                1 => (text.replacen(&format!("{axis} = {}", list(&p.axes[0].1)), &format!("{axis} = []"), 1), format!("grid.{axis}")),
                2 => (text.clone() + "nope = [\"x\"]\n", "profiles.smoke.nope".to_string()),
                3 => (text.clone() + "\n[tolerance]\nm = { abs = 1, rel = 2 }\n", "tolerance.m".to_string()),
                4 => (text.clone() + "\n[[exclude]]\nnope = \"x\"\n", "exclude[0].nope".to_string()),
                5 => (text.clone() + "\n[statistics]\nmetrics = [\"m\"]\nreference = { nope = \"x\" }\n", "statistics.reference.nope".to_string()),
                _ => (text.replacen("kind = ", "kinds = ", 1), "kinds".to_string()),
            };
            let profile = if which == 2 { Some("smoke") } else { None };
            let e = load(&broken, profile).expect_err("broken spec").to_string();
            prop_assert!(e.contains(&field), "{} not in {}", field, e);
        }
    }
}
