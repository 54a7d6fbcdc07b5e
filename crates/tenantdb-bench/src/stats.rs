//! Medians and the printed table.

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// One line: what, its figure, the baseline's, the ratio and the goal.
pub fn row(what: &str, figure: f64, baseline_name: &str, baseline: f64, unit: &str, goal: &str) {
    println!(
        "  {what:<34} {figure:>10.1} {unit:<6} {baseline_name:<28} {baseline:>10.1} {unit:<6} ratio {:>6.3}  {goal}",
        figure / baseline
    );
}
