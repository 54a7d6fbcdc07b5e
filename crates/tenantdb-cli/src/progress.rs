//! The progress of work over many tenants (a fleet migration, `tenants
//! exec`): a bar on a terminal, plain periodic lines otherwise (logs and CI
//! keep a readable record), both on stderr.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tenantdb::FleetEvent;

/// How often a line is printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    /// What was done to a tenant: "migrated", "ran on".
    verb: &'static str,
    total: usize,
    done: AtomicUsize,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl Progress {
    pub(crate) fn new(total: usize, verb: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tenants  {per_sec}  eta {eta}  {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            verb,
            total,
            done: AtomicUsize::new(0),
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
        }
    }

    /// One tenant of a fleet run finished (migrated, failed or skipped).
    pub(crate) fn record(&self, event: &FleetEvent) {
        self.step(matches!(event, FleetEvent::Failed { .. }));
    }

    /// One tenant finished; `failed` when its work failed.
    pub(crate) fn step(&self, failed: bool) {
        let n = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if failed {
                bar.set_message("some failed");
            }
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= LINE_EVERY || n == self.total {
            *last = Instant::now();
            eprintln!(
                "{} {n}/{} tenants ({:.1}/s)",
                self.verb,
                self.total,
                n as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
            );
        }
    }

    /// Clears the bar; returns the time since the run started.
    pub(crate) fn finish(&self) -> Duration {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.started.elapsed()
    }
}
