//! `summary.md`: the summary as a markdown table: `mean ± ci` where the summary has a 95% CI
//! (`<metric>_ci95`, `<metric>_diff_ci95`), else `mean ± std` where seeds vary.

use crate::results::row::Row;
use serde_json::Value;

/// Render summary rows as a markdown table with a title line.
pub fn render(title: &str, rows: &[Row]) -> String {
    let Some(first) = rows.first() else {
        return format!("# {title}\n\n(no rows)\n");
    };
    let columns: Vec<&String> = first
        .keys()
        .filter(|k| !k.ends_with("_std") && !k.ends_with("_ci95"))
        .collect();
    let header = |c: &str| {
        if first.contains_key(&format!("{c}_ci95")) {
            format!("{c} (± 95% CI)")
        } else {
            c.to_string()
        }
    };
    let mut out = format!(
        "# {title}\n\n| {} |\n|",
        columns
            .iter()
            .map(|c| header(c))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    for _ in &columns {
        out.push_str("---|");
    }
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| {
                let spread = |suffix: &str| {
                    row.get(&format!("{c}{suffix}"))
                        .and_then(Value::as_f64)
                        .filter(|s| *s > 0.0)
                };
                let std = if first.contains_key(&format!("{c}_ci95")) {
                    spread("_ci95")
                } else {
                    spread("_std")
                };
                match (&row[c.as_str()], std) {
                    (Value::Null, _) => "—".to_string(),
                    (Value::Number(n), Some(s)) => format!(
                        "{} ± {}",
                        fmt_num(n.as_f64().unwrap_or(f64::NAN)),
                        fmt_num(s)
                    ),
                    (Value::Number(n), None) if n.is_f64() => {
                        fmt_num(n.as_f64().unwrap_or(f64::NAN))
                    }
                    (Value::String(s), _)
                        if s.len() > 40 && s.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        format!("{}…({} digits)", &s[..12], s.len())
                    }
                    (Value::String(s), _) => s.clone(),
                    (other, _) => other.to_string(),
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// Four significant digits, scientific for very large or small magnitudes.
pub fn fmt_num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if v.fract() == 0.0 && a < 1e6 {
        return format!("{v:.0}");
    }
    if (1e-3..1e6).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_mean_pm_std_and_nulls() {
        let rows = vec![
            json!({"p": "2:4", "v": 1.5, "v_std": 0.25, "x": null})
                .as_object()
                .unwrap()
                .clone(),
        ];
        let md = render("T", &rows);
        assert!(md.contains("| p | v | x |"), "{md}");
        assert!(md.contains("| 2:4 | 1.500 ± 0.2500 | — |"), "{md}");
        assert_eq!(fmt_num(1234567.0), "1.235e6");
        // With a CI the cell shows it instead of the std, and the header says so.
        let rows = vec![
            json!({"p": "2:4", "v": 1.5, "v_std": 0.25, "v_ci95": 0.5})
                .as_object()
                .unwrap()
                .clone(),
        ];
        let md = render("T", &rows);
        assert!(md.contains("| p | v (± 95% CI) |"), "{md}");
        assert!(md.contains("| 2:4 | 1.500 ± 0.5000 |"), "{md}");
    }
}
