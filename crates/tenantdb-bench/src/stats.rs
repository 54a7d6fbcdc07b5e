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

/// The `q` quantile (0..=1) of `values`, sorting them; nearest rank.
pub fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// What one round of load did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub secs: f64,
    pub served: usize,
    /// Counted "busy" answers (no connection within the acquire timeout).
    pub busy: usize,
    /// Anything else that went wrong.
    pub errors: usize,
    pub first_error: Option<String>,
    /// Milliseconds of every served request.
    pub latencies: Vec<f64>,
}

impl Outcome {
    /// Waits for the workers of one round and sums what they saw; `secs`
    /// is the round's wall time from `started`.
    pub async fn gather(
        workers: Vec<tokio::task::JoinHandle<Outcome>>,
        started: std::time::Instant,
    ) -> anyhow::Result<Outcome> {
        let mut total = Outcome::default();
        for worker in workers {
            total.add(worker.await?);
        }
        total.secs = started.elapsed().as_secs_f64();
        Ok(total)
    }

    pub fn add(&mut self, other: Outcome) {
        self.served += other.served;
        self.busy += other.busy;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies.extend(other.latencies);
    }

    /// Served requests per second.
    pub fn rate(&self) -> f64 {
        self.served as f64 / self.secs
    }
}
