//! After the cells: the run's tables (cells, summary, correlations, Markdown), its figures and
//! published values, each written atomically; and the operations on finished runs — merge
//! shards, regress against a baseline, append to the history, rewrite the baseline, redraw
//! figures, set published values beside the run again.

use super::cell::Cell;
use super::cells::Row;
use super::plan::Plan;
use super::run_dir::{
    CELLS_LOG, CELLS_PARQUET, CORRELATIONS_CSV, MANIFEST, PUBLISHED_CSV, RunLock, SUMMARY_CSV,
    SUMMARY_MD, SUMMARY_PARQUET, check_rows, complete_run, prefix, read_log, require_finished,
    require_fresh, spec_of_run,
};
use super::spec::Spec;
use crate::error::{Error, Result};
use crate::results::manifest::{self, Manifest};
use crate::results::{figures, markdown, published, summary, table};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// summary.md as data: the tables and statistics notes (from the run's log), then the
/// published values and the figure links; rendered whole and written at once, so redoing a
/// section (`masklab published`, `masklab plot`) renders the document again rather than editing
/// its text.
pub struct SummaryDoc {
    title: String,
    rows: Vec<Row>,
    notes: Vec<String>,
    published: String,
    figures: String,
}

impl SummaryDoc {
    /// The Markdown.
    fn render(&self) -> String {
        let mut md = markdown::render(&self.title, &self.rows);
        if !self.notes.is_empty() {
            md += "\n## Statistics\n\n";
            for n in &self.notes {
                md += &format!("- {n}\n");
            }
        }
        md + &self.published + &self.figures
    }

    /// Write it as the run's summary.md (atomically).
    fn write(&self, dir: &Path) -> Result<()> {
        crate::io::atomic::write_bytes(&dir.join(SUMMARY_MD), self.render().as_bytes())
    }
}

/// A run's tables, computed from its log without writing anything.
struct Summarised {
    cells: polars::prelude::DataFrame,
    summary: polars::prelude::DataFrame,
    correlations: Vec<Row>,
    doc: SummaryDoc,
}

/// The cells, summary (means, CIs, tests; the run's yardstick beside its times) and
/// correlations of the run in `dir` from its log (`None`: no row yet); deterministic, so
/// recomputing them for a finished run gives what [`write_tables`] wrote.
fn summarised(dir: &Path, spec: &Spec) -> Result<Option<Summarised>> {
    let mut rows = read_log(dir)?;
    let mut seen = HashSet::new();
    rows.retain(|r| {
        seen.insert(
            r.get("cell")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        )
    });
    rows.sort_by_key(|r| r.get("index").and_then(Value::as_u64).unwrap_or(u64::MAX));
    if rows.is_empty() {
        return Ok(None);
    }
    let cells = table::frame_from_rows(&rows)?;
    let axes: Vec<String> = spec.axes.iter().map(|a| a.name.clone()).collect();
    let mut summary = summary::summarise(&cells, &axes)?;
    let mut summary_rows = table::rows_from_frame(&summary);
    let stick = Manifest::read(dir)
        .ok()
        .and_then(|m| Some((m.yardstick_seconds?, m.yardstick_version.unwrap_or(1))));
    if let Some((c, version)) = stick {
        let column = crate::results::regress::yardstick_column(version);
        for row in &mut summary_rows {
            row.insert(column.into(), Value::from(c));
        }
        summary = table::frame_from_rows(&summary_rows)?;
    }
    let (mut notes, mut correlations) = (Vec::new(), Vec::new());
    if let Some(st) = &spec.statistics {
        let (with, report) = summary::with_statistics(&summary_rows, &rows, &axes, st);
        summary_rows = with;
        summary = table::frame_from_rows(&summary_rows)?;
        notes = report.notes;
        correlations = report.correlations;
    }
    let doc = SummaryDoc {
        title: format!("{} — {} (profile {})", spec.name, spec.title, spec.profile),
        rows: summary_rows,
        notes,
        published: String::new(),
        figures: String::new(),
    };
    Ok(Some(Summarised {
        cells,
        summary,
        correlations,
        doc,
    }))
}

/// Write `cells.parquet`, the summaries and summary.md (tables and notes) from the run
/// directory's log (`None`: no row yet).
pub fn write_tables(dir: &Path, spec: &Spec) -> Result<Option<Tables>> {
    let Some(Summarised {
        mut cells,
        mut summary,
        correlations,
        doc,
    }) = summarised(dir, spec)?
    else {
        return Ok(None);
    };
    table::write_parquet(&mut cells, &dir.join(CELLS_PARQUET))?;
    if !correlations.is_empty() {
        let mut corr = table::frame_from_rows(&correlations)?;
        table::write_csv(&mut corr, &dir.join(CORRELATIONS_CSV))?;
    }
    table::write_parquet(&mut summary, &dir.join(SUMMARY_PARQUET))?;
    table::write_csv(
        &mut table::without_time_columns(&summary)?,
        &dir.join(SUMMARY_CSV),
    )?;
    // Tables first: a figure or comparison that cannot be made must not cost the run its summary.
    doc.write(dir)?;
    Ok(Some(Tables { doc, correlations }))
}

/// What [`write_tables`] wrote, for the post-processing after it.
pub struct Tables {
    doc: SummaryDoc,
    correlations: Vec<Row>,
}

/// After the tables (and the manifest saying `finished`): the spec's published values and
/// figures, added to summary.md. A failure here leaves a complete, usable run; `masklab
/// published RUN` and `masklab plot RUN` redo these steps once the spec is fixed.
pub fn post_process(dir: &Path, spec: &Spec, tables: Tables) -> Result<()> {
    let Tables {
        mut doc,
        correlations,
    } = tables;
    doc.published = write_published(dir, spec, &doc.rows, &correlations)?.1;
    doc.write(dir)?;
    let links = figures::write_all(dir, &spec.figures, &doc.rows)?;
    doc.figures = figures::markdown_section(&links);
    doc.write(dir)
}

/// [`post_process`] with its failure said on stderr: the run stays complete.
pub(super) fn post_process_or_warn(dir: &Path, spec: &Spec, tables: Option<Tables>) {
    if let Some(t) = tables
        && let Err(e) = post_process(dir, spec, t)
    {
        eprintln!(
            "warning: {}: the tables and manifest are complete, but the published values or figures failed: {e} (fix the spec, then `masklab published {}` / `masklab plot {}`)",
            dir.display(),
            dir.display(),
            dir.display()
        );
    }
}

/// Compare the spec's `[[published]]` entries with a run's rows: writes `published.csv` (none
/// when the spec carries no entry) and returns summary.md's section.
pub(super) fn write_published(
    dir: &Path,
    spec: &Spec,
    summary_rows: &[Row],
    correlations: &[Row],
) -> Result<(Vec<Row>, String)> {
    if spec.published.is_empty() {
        return Ok((Vec::new(), String::new()));
    }
    let axes: Vec<String> = spec.axes.iter().map(|a| a.name.clone()).collect();
    let correlation_keys: Vec<String> = spec
        .statistics
        .as_ref()
        .and_then(|s| s.correlate.as_ref())
        .map(|c| c.by.iter().cloned().collect())
        .unwrap_or_default();
    let rows = published::compare(
        &spec.published,
        summary_rows,
        correlations,
        &axes,
        &correlation_keys,
    )?;
    let mut frame = table::frame_from_rows(&rows)?;
    table::write_csv(&mut frame, &dir.join(PUBLISHED_CSV))?;
    let section = published::markdown_section(&spec.published, &rows);
    Ok((rows, section))
}

/// Rewrite a run's comparison with published values from its summary (and correlations), with
/// the `[[published]]` entries of the spec file now at the manifest's path — values are facts
/// about the papers, so entries added after a run apply to it — or, when that file cannot be
/// read, of the run's own spec; summary.md is rendered again with them. Returns the comparison
/// rows.
pub fn published_run(dir: &Path) -> Result<Vec<Row>> {
    let (manifest, own) = spec_of_run(dir)?;
    let (rows, section) = published_section(dir, &manifest, &own)?;
    if section.is_empty() {
        return Err(Error::invalid(
            "run",
            dir.display(),
            format!(
                "spec `{}` carries no [[published]] values",
                manifest.spec_path
            ),
        ));
    }
    let figures = figures::markdown_section(&figures::existing_links(
        dir,
        &declared_figures(&manifest, &own),
    ));
    rerender(dir, &own, section, figures)?;
    Ok(rows)
}

/// The spec file now at the manifest's path, in the run's profile, if it loads.
fn spec_now(manifest: &Manifest) -> Option<Spec> {
    let profile = (manifest.profile != "grid").then_some(manifest.profile.as_str());
    Spec::load(Path::new(&manifest.spec_path), profile).ok()
}

/// The published comparison of a finished run (see [`published_run`]) from its summary and
/// correlations files: its rows (written to published.csv) and summary.md's section, both empty
/// when neither spec carries entries.
fn published_section(dir: &Path, manifest: &Manifest, own: &Spec) -> Result<(Vec<Row>, String)> {
    let spec = match spec_now(manifest) {
        Some(now) if !now.published.is_empty() => now,
        _ => own.clone(),
    };
    let summary = table::rows_from_frame(&table::read_parquet(&dir.join(SUMMARY_PARQUET))?);
    let corr_path = dir.join(CORRELATIONS_CSV);
    let correlations = if corr_path.exists() {
        table::rows_from_frame(&table::read_csv(&corr_path)?)
    } else {
        Vec::new()
    };
    write_published(dir, &spec, &summary, &correlations)
}

/// The figures a run draws: its own spec's, or those of the spec file now at the manifest's
/// path when its own declares none.
fn declared_figures(manifest: &Manifest, own: &Spec) -> Vec<figures::Figure> {
    if !own.figures.is_empty() {
        return own.figures.clone();
    }
    spec_now(manifest).map(|s| s.figures).unwrap_or_default()
}

/// summary.md of a finished run rendered again, whole: its tables and notes recomputed from the
/// log (deterministic), then the given published and figure sections.
fn rerender(dir: &Path, own: &Spec, published: String, figures: String) -> Result<()> {
    let mut doc = summarised(dir, own)?
        .ok_or_else(|| Error::invalid("run", dir.display(), "has no finished cell"))?
        .doc;
    doc.published = published;
    doc.figures = figures;
    doc.write(dir)
}

/// Redraw a run's figures from its `summary.parquet` (the spec's `[[figures]]`, or those of the
/// spec file now at the manifest's path when the run's own spec declares none) and render
/// summary.md again with their links. Returns the figure files written.
pub fn plot_run(dir: &Path) -> Result<Vec<PathBuf>> {
    let (manifest, spec) = spec_of_run(dir)?;
    let declared = declared_figures(&manifest, &spec);
    if declared.is_empty() {
        return Err(Error::invalid(
            "run",
            dir.display(),
            format!("spec `{}` declares no [[figures]]", manifest.spec_path),
        ));
    }
    let summary = table::read_parquet(&dir.join(SUMMARY_PARQUET))?;
    let rows = table::rows_from_frame(&summary);
    let links = figures::write_all(dir, &declared, &rows)?;
    let (_, published) = published_section(dir, &manifest, &spec)?;
    rerender(dir, &spec, published, figures::markdown_section(&links))?;
    Ok(links.iter().map(|(_, p)| dir.join(p)).collect())
}

/// Append the cells of shard `dir` to `lines`, recording which shard owns each. The shard must
/// be finished and of the same run as `first` (its manifest `like`: spec hash and profile), its
/// rows must fit the plan, and no cell may already belong to another shard.
pub(super) fn collect_shard<'a>(
    dir: &'a Path,
    (first, like): (&Path, &Manifest),
    plan: &Plan,
    owner: &mut std::collections::HashMap<String, &'a Path>,
    lines: &mut String,
) -> Result<()> {
    let m = Manifest::read(dir)?;
    let manifest_path = dir.join(MANIFEST);
    if m.spec_hash != like.spec_hash || m.profile != like.profile {
        return Err(Error::Format {
            path: manifest_path,
            message: format!(
                "spec {} / profile `{}` differs from {} (spec {} / profile `{}`); cannot merge different runs",
                prefix(&m.spec_hash, 12),
                m.profile,
                first.display(),
                prefix(&like.spec_hash, 12),
                like.profile
            ),
        });
    }
    require_finished(&m, dir, "first")?;
    let rows = read_log(dir)?;
    check_rows(plan, &rows, &dir.join(CELLS_LOG))?;
    for row in rows {
        let key = row
            .get("cell")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(other) = owner.get(&key) {
            return Err(Error::Format {
                path: dir.join(CELLS_LOG),
                message: format!(
                    "cell `{key}` is also in {}; shards must not overlap",
                    other.display()
                ),
            });
        }
        owner.insert(key, dir);
        *lines += &(Value::Object(row).to_string() + "\n");
    }
    Ok(())
}

/// Join the logs of shard runs into one new run directory `out`.
///
/// Refused: an `out` that is one of the shards or already holds a run; a shard that is not
/// complete; shards of different specs or profiles; shards that overlap (a cell in two of
/// them); shards that together miss cells of the plan.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Manifest> {
    let first = dirs
        .first()
        .ok_or_else(|| Error::invalid("merge", "(none)", "give at least one run directory"))?;
    for dir in dirs {
        if crate::io::atomic::same_file(out, dir) {
            return Err(Error::invalid(
                "out",
                out.display(),
                format!("is the shard {}; merge into a new directory", dir.display()),
            ));
        }
    }
    require_fresh(out, "merge into a new directory")?;
    let (mut manifest, spec) = spec_of_run(first)?;
    let plan = Plan::new(spec.clone())?;
    let mut owner: std::collections::HashMap<String, &Path> = std::collections::HashMap::new();
    let mut lines = String::new();
    for dir in dirs {
        collect_shard(dir, (first, &manifest), &plan, &mut owner, &mut lines)?;
    }
    let missing: Vec<String> = plan
        .cells
        .iter()
        .map(Cell::key)
        .filter(|k| !owner.contains_key(k))
        .collect();
    if let Some(example) = missing.first() {
        return Err(Error::invalid(
            "merge",
            format!("{} shards", dirs.len()),
            format!(
                "together they miss {} of the plan's {} cells (e.g. `{example}`); give every shard",
                missing.len(),
                plan.cells.len()
            ),
        ));
    }
    let _lock = RunLock::acquire(out)?;
    crate::io::atomic::write_bytes(&out.join(CELLS_LOG), lines.as_bytes())?;
    manifest.shard = None;
    manifest.cells_planned = plan.cells.len();
    manifest.cells_done = owner.len();
    manifest.finished = None;
    manifest.write(out)?;
    let tables = write_tables(out, &spec)?;
    manifest.finished = Some(manifest::now());
    manifest.write(out)?;
    post_process_or_warn(out, &spec, tables);
    Ok(manifest)
}

/// The baseline a run is compared with (`given`, else in `results/baselines/`): the smoke
/// profile's is `<table>.parquet`; another profile's is `<table>.<profile>.parquet`, which
/// `regress` falls back from to the smoke baseline while it does not exist (`update` writes it).
pub fn baseline_path(manifest: &Manifest, given: Option<&Path>, update: bool) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    let dir = PathBuf::from("results/baselines");
    let smoke = dir.join(format!("{}.parquet", manifest.table));
    if manifest.profile == "smoke" {
        return smoke;
    }
    let own = dir.join(format!("{}.{}.parquet", manifest.table, manifest.profile));
    if update || own.exists() { own } else { smoke }
}

/// Compare a complete run's summary with its baseline (see [`baseline_path`]).
pub fn regress(dir: &Path, baseline: Option<&Path>) -> Result<crate::results::regress::Report> {
    let (m, spec) = complete_run(dir)?;
    let baseline = baseline_path(&m, baseline, false);
    let run = table::read_parquet(&dir.join(SUMMARY_PARQUET))?;
    let base = table::read_parquet(&baseline)?;
    let axes: Vec<String> = spec.axes.iter().map(|a| a.name.clone()).collect();
    let report = crate::results::regress::compare(
        &table::rows_from_frame(&base),
        &table::rows_from_frame(&run),
        &axes,
        &spec.tolerance,
    );
    if report.rows_compared == 0 {
        return Err(Error::invalid(
            "baseline",
            baseline.display(),
            format!(
                "no grid point in common with the run {} (profile {}; the baseline is usually the smoke profile)",
                dir.display(),
                m.profile
            ),
        ));
    }
    Ok(report)
}

/// A table's history under `profile` (its trends as text): with `append`, the complete run
/// there is added first. The history file is `file`, else `results/history/<table>.parquet`.
pub fn history(
    spec_path: &Path,
    profile: &str,
    append: Option<&Path>,
    file: Option<&Path>,
) -> Result<String> {
    use crate::results::history;
    let spec = Spec::load(spec_path, Some(profile))?;
    let path = file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| history::default_path(&spec.name));
    let mut said = String::new();
    if let Some(run) = append {
        let m = Manifest::read(run)?;
        if m.table != spec.name || m.profile != profile {
            return Err(Error::invalid(
                "run",
                run.display(),
                format!(
                    "is a {} run of profile {}, not {} {profile}",
                    m.table, m.profile, spec.name
                ),
            ));
        }
        let axes: Vec<String> = spec.axes.iter().map(|a| a.name.clone()).collect();
        let added = history::append(run, &path, &axes)?;
        said += &match added {
            0 => format!("{} is already in {}\n", run.display(), path.display()),
            n => format!(
                "added {n} rows of {} to {}\n",
                run.display(),
                path.display()
            ),
        };
    }
    if !path.exists() {
        return Ok(said + &format!("{}: no history yet ({})\n", spec.name, path.display()));
    }
    let rows: Vec<Row> = table::rows_from_frame(&table::read_parquet(&path)?)
        .into_iter()
        .filter(|r| r.get("profile").and_then(Value::as_str) == Some(profile))
        .collect();
    let runs: HashSet<&str> = rows
        .iter()
        .filter_map(|r| r.get("run").and_then(Value::as_str))
        .collect();
    let axes: Vec<String> = spec.axes.iter().map(|a| a.name.clone()).collect();
    let trends = history::trends(&rows, &axes, &spec.tolerance);
    Ok(said + &history::render(&spec.name, runs.len(), &trends))
}

/// Write a complete run's summary as its baseline; returns the baseline's path.
pub fn update_baseline(dir: &Path, baseline: Option<&Path>) -> Result<PathBuf> {
    let (m, _) = complete_run(dir)?;
    let baseline = baseline_path(&m, baseline, true);
    let mut run = table::read_parquet(&dir.join(SUMMARY_PARQUET))?;
    if let Some(parent) = baseline.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    table::write_parquet(&mut run, &baseline)?;
    Ok(baseline)
}
