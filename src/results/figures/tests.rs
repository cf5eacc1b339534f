use super::*;
use serde_json::json;

fn row(v: Value) -> Row {
    v.as_object().unwrap().clone().into_iter().collect()
}

fn points_figure() -> Figure {
    toml::from_str(
        r#"
        file = "gap"
        title = "kept_gap against time"
        kind = "points"
        x = "seconds"
        y = "kept_gap"
        series = "solver"
        panels = "pattern"
        log_x = true
        log_y = true
        x_label = "wall time (s)"
        y_label = "kept_gap"
        "#,
    )
    .unwrap()
}

#[test]
fn points_draw_one_marker_per_showable_point_and_count_the_rest() -> Result<()> {
    let rows: Vec<Row> = [
        json!({"pattern": "2:4", "solver": "exact", "seconds": 0.5, "kept_gap": 0.0}),
        json!({"pattern": "2:4", "solver": "greedy", "seconds": 0.01, "kept_gap": 0.015}),
        json!({"pattern": "2:4", "solver": "two-approx", "seconds": 0.02, "kept_gap": 0.1}),
        json!({"pattern": "4:8", "solver": "exact", "seconds": 0.7, "kept_gap": 0.0}),
        json!({"pattern": "4:8", "solver": "greedy", "seconds": 0.02, "kept_gap": 0.012}),
    ]
    .into_iter()
    .map(row)
    .collect();
    let svg = draw(&points_figure(), &rows)?;
    // Three showable points in the panels, plus one legend marker per solver (3).
    assert_eq!(svg.matches("<circle").count(), 3 + 3, "{svg}");
    assert_eq!(svg.matches("1 not shown").count(), 2);
    assert!(svg.contains("pattern = 4:8") && svg.contains("two-approx"));
    // Deterministic: the same rows give the same bytes.
    assert_eq!(draw(&points_figure(), &rows)?, svg);
    Ok(())
}

/// `only` draws the rows it admits (a number in the spec matches the same number or its
/// text in a row) and nothing else; a column it names that the rows lack is an error.
#[test]
fn only_draws_the_rows_it_admits() -> Result<()> {
    let mut fig: Figure = toml::from_str(
        r#"
        file = "acc"
        title = "accuracy"
        kind = "dots"
        x = ["setup"]
        y = "v"
        x_label = "v"
        y_label = "setup"
        only = { dtype = "bf16", batch = [1, "8"] }
        "#,
    )
    .unwrap();
    let rows: Vec<Row> = [
        json!({"setup": "a-f32", "dtype": "f32", "batch": "1", "v": 1.0}),
        json!({"setup": "b-bf16", "dtype": "bf16", "batch": "1", "v": 2.0}),
        json!({"setup": "c-bf16", "dtype": "bf16", "batch": 8, "v": 3.0}),
        json!({"setup": "d-bf16", "dtype": "bf16", "batch": "32", "v": 4.0}),
    ]
    .into_iter()
    .map(row)
    .collect();
    let svg = draw(&fig, &rows)?;
    assert!(svg.contains("b-bf16") && svg.contains("c-bf16"), "{svg}");
    assert!(!svg.contains("a-f32") && !svg.contains("d-bf16"), "{svg}");
    fig.only
        .insert("shape".into(), OneOrManyValues::One(json!("4096x4096")));
    assert!(draw(&fig, &rows).unwrap_err().to_string().contains("shape"));
    Ok(())
}

#[test]
fn dots_label_every_category_and_draw_a_whisker_per_error() -> Result<()> {
    let fig: Figure = toml::from_str(
        r#"
        file = "acc"
        title = "accuracy"
        kind = "dots"
        x = ["setup"]
        y = "test_accuracy"
        error = "test_accuracy_ci95"
        x_label = "test accuracy"
        y_label = "setup"
        "#,
    )
    .unwrap();
    let rows: Vec<Row> = (0..5)
        .map(|i| {
            row(
                json!({"setup": format!("setup-{i}"), "test_accuracy": 0.88 + 0.001 * i as f64,
                       "test_accuracy_ci95": 0.002}),
            )
        })
        .collect();
    let svg = draw(&fig, &rows)?;
    for i in 0..5 {
        assert!(svg.contains(&format!("\nsetup-{i}\n")), "label {i} missing");
    }
    assert_eq!(svg.matches("<circle").count(), 5);
    // A whisker is a two-point polyline in the series colour (the mesh uses other colours).
    assert_eq!(svg.matches("stroke=\"#0072B2\"").count(), 5, "{svg}");
    Ok(())
}

#[test]
fn axis_numbers_are_short() {
    assert_eq!(axis_num(0.05), "0.05");
    assert_eq!(axis_num(0.8825), "0.8825");
    assert_eq!(axis_num(1200.0), "1200");
    assert_eq!(axis_num(2.5e-5), "2.5e-5");
    assert_eq!(axis_num(-1e-15), "0");
    assert_eq!(tick(-3.0, true, 5.0), "1e-3");
    assert_eq!(tick(-2.5, true, 5.0), "");
    assert_eq!(tick(-0.5, true, 1.0), "0.3162");
}

#[test]
fn a_missing_column_names_the_figure_and_the_column() {
    let rows = vec![row(
        json!({"pattern": "2:4", "seconds": 1.0, "kept_gap": 0.1}),
    )];
    let e = draw(&points_figure(), &rows).unwrap_err().to_string();
    assert!(e.contains("`solver`") && e.contains("figure `gap`"), "{e}");
}

#[test]
fn figure_declarations_are_checked() {
    let mut f = points_figure();
    let spec = Path::new("t.toml");
    assert!(Figure::check(std::slice::from_ref(&f), spec).is_ok());
    f.file = "../up".into();
    assert!(
        Figure::check(std::slice::from_ref(&f), spec)
            .unwrap_err()
            .to_string()
            .contains("letters")
    );
    let mut g = points_figure();
    g.error = vec!["a".into(), "b".into()];
    assert!(
        Figure::check(&[g], spec)
            .unwrap_err()
            .to_string()
            .contains("2 error columns for 1")
    );
    let twice = [points_figure(), points_figure()];
    assert!(
        Figure::check(&twice, spec)
            .unwrap_err()
            .to_string()
            .contains("declared twice")
    );
}
