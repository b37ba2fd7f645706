//! What a tiering measurement collects: one [`Row`] per measured value and
//! run, the objects the core logged, and notes on anything unexpected.

use super::core_view::TieredLine;

/// One measured value.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Repetition, from 1.
    pub run: u32,
    pub phase: &'static str,
    pub metric: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

/// Everything measured: rows per run, the objects the core logged (with
/// their run), and notes on anything unexpected.
#[derive(Debug, Default)]
pub struct TierReport {
    /// The run being measured, from 1.
    pub run: u32,
    pub rows: Vec<Row>,
    pub objects: Vec<(u32, TieredLine)>,
    pub notes: Vec<String>,
}

impl TierReport {
    pub(super) fn put(
        &mut self,
        phase: &'static str,
        metric: &'static str,
        value: f64,
        unit: &'static str,
    ) {
        self.rows.push(Row {
            run: self.run,
            phase,
            metric,
            value,
            unit,
        });
    }

    /// This run's value.
    pub(super) fn this_run(&self, phase: &str, metric: &str) -> Option<f64> {
        self.rows
            .iter()
            .rev()
            .find(|r| r.run == self.run && r.phase == phase && r.metric == metric)
            .map(|r| r.value)
    }

    pub(super) fn note(&mut self, n: String) {
        self.notes.push(format!("run {}: {n}", self.run));
    }

    /// Median, min and max over the runs.
    pub fn spread(&self, phase: &str, metric: &str) -> Option<crate::stats::Spread> {
        let v: Vec<f64> = self
            .rows
            .iter()
            .filter(|r| r.phase == phase && r.metric == metric)
            .map(|r| r.value)
            .collect();
        crate::stats::spread(&v)
    }
}

pub(super) fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}
