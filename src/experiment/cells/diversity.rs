//! Cell kind `diversity`: the mask diversity of one structure over one tensor size (table1).
//!
//! Axes: `structure` (`unstructured[:S]`, `block:B[:S]`, `nm:N:M`, `transposable:N:M`) and
//! `size` (`RxC`). A structure that does not tile the size gives a row with null counts and a
//! note, not an error, so a table can span sizes some structures do not fit.

use super::{CellContext, CellKind, Row};
use crate::diversity::{Method, diversity};
use crate::error::{Error, Result};
use crate::experiment::cell::Cell;
use crate::mask::Structure;
use crate::mask::parse_size;
use serde::Serialize;

/// The `diversity` cell kind.
pub struct DiversityCell;

/// One table1 row.
#[derive(Debug, Default, Serialize)]
struct DiversityRow {
    sparsity: f64,
    log10: Option<f64>,
    exact: Option<String>,
    method: Option<Method>,
    approx_method: Option<String>,
    per_tile_exact: Option<String>,
    closed_form_log10: Option<f64>,
    closed_form_per_tile: Option<String>,
    note: Option<String>,
}

fn parse(cell: &Cell) -> Result<(Structure, usize, usize)> {
    let structure: Structure = cell.parse_axis("structure")?;
    let (rows, cols) = parse_size(cell.require("size")?)?;
    Ok((structure, rows, cols))
}

impl CellKind for DiversityCell {
    fn name(&self) -> &'static str {
        "diversity"
    }

    fn axes(&self) -> &'static [&'static str] {
        &["structure", "size"]
    }

    fn columns(&self) -> Vec<String> {
        super::columns_of(&DiversityRow::default())
    }

    fn summary(&self) -> &'static str {
        "mask diversity (log10 and exact count) of a structure over a tensor"
    }

    fn check(&self, cell: &Cell, _ctx: &super::Checking) -> Result<()> {
        parse(cell).map(|_| ())
    }

    fn run(&self, cell: &Cell, _ctx: &CellContext) -> Result<Row> {
        let (structure, rows, cols) = parse(cell)?;
        let row = match diversity(structure, rows, cols) {
            Ok(d) => DiversityRow {
                sparsity: d.sparsity,
                log10: Some(d.log10),
                exact: d.exact,
                method: Some(d.method),
                approx_method: d.approx_method,
                per_tile_exact: d.per_tile_exact,
                closed_form_log10: d.closed_form_log10,
                closed_form_per_tile: d.closed_form_per_tile,
                note: None,
            },
            Err(Error::Shape { reason, .. }) => DiversityRow {
                sparsity: structure.sparsity(),
                log10: None,
                exact: None,
                method: None,
                approx_method: None,
                per_tile_exact: None,
                closed_form_log10: None,
                closed_form_per_tile: None,
                note: Some(format!("does not tile: {reason}")),
            },
            Err(e) => return Err(e),
        };
        super::to_row(&row)
    }
}
