//! Rows from samples (pure): the latest value of each watched tag, aligned
//! by a time window.
//!
//! A row opens with the first sample of a watched tag after the previous row
//! closed, and closes as soon as every watched tag has a fresh value in it,
//! or when a sample arrives `window` or more after the row opened (that
//! sample then opens the next row), or on [`RowAssembler::close_open`] (the
//! daemon calls it once the window has passed on the gateway's clock). A tag without a fresh value contributes its latest
//! value; a tag whose latest sample was bad (or that never had a value)
//! contributes NaN, which the detector reports as missing. The row's
//! timestamp is that of its newest sample.

/// Builds rows of d watched tags.
#[derive(Debug, Clone)]
pub struct RowAssembler {
    window_ns: i64,
    latest: Vec<f64>,
    fresh: Vec<bool>,
    fresh_count: usize,
    open_since: Option<i64>,
    newest: i64,
}

/// A closed row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Timestamp of the newest sample in the row (ns since the epoch).
    pub ts: i64,
    /// One value per watched tag (NaN: missing or bad).
    pub values: Vec<f64>,
}

impl RowAssembler {
    /// d tags, window in ns (> 0).
    pub fn new(d: usize, window_ns: i64) -> RowAssembler {
        RowAssembler {
            window_ns: window_ns.max(1),
            latest: vec![f64::NAN; d],
            fresh: vec![false; d],
            fresh_count: 0,
            open_since: None,
            newest: 0,
        }
    }

    /// Offers tag `i`'s sample at `ts` (`None`: a bad sample). Returns the
    /// rows it closed (at most two: the open one by time, and the new one
    /// when it completes at once with a single tag).
    pub fn offer(&mut self, i: usize, ts: i64, value: Option<f64>) -> Vec<Row> {
        let mut out = Vec::new();
        if let Some(open) = self.open_since
            && ts.saturating_sub(open) >= self.window_ns
        {
            out.push(self.close());
        }
        if self.open_since.is_none() {
            self.open_since = Some(ts);
            self.newest = ts;
        }
        self.newest = self.newest.max(ts);
        self.latest[i] = value.filter(|v| v.is_finite()).unwrap_or(f64::NAN);
        if !self.fresh[i] {
            self.fresh[i] = true;
            self.fresh_count += 1;
        }
        if self.fresh_count == self.latest.len() {
            out.push(self.close());
        }
        out
    }

    /// Whether a row is open (has a value not yet in a closed row).
    pub fn is_open(&self) -> bool {
        self.open_since.is_some()
    }

    /// Closes the open row now, if there is one (the caller decides when its
    /// window has passed on its own clock: sample timestamps may come from a
    /// device or a file, far from the gateway's clock).
    pub fn close_open(&mut self) -> Option<Row> {
        self.open_since.is_some().then(|| self.close())
    }

    fn close(&mut self) -> Row {
        self.fresh.iter_mut().for_each(|f| *f = false);
        self.fresh_count = 0;
        self.open_since = None;
        Row { ts: self.newest, values: self.latest.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_when_complete_or_late() {
        let mut a = RowAssembler::new(2, 1000);
        assert!(a.offer(0, 10, Some(1.0)).is_empty());
        assert_eq!(a.offer(1, 20, Some(2.0)), vec![Row { ts: 20, values: vec![1.0, 2.0] }]);
        // Tag 1 silent: the row closes on the next sample a window later, with tag 1's latest value.
        assert!(a.offer(0, 30, Some(3.0)).is_empty());
        assert_eq!(a.offer(0, 1030, Some(4.0)), vec![Row { ts: 30, values: vec![3.0, 2.0] }]);
        // A bad sample makes the tag missing.
        let rows = a.offer(1, 1040, None);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].ts, rows[0].values[0]), (1040, 4.0));
        assert!(rows[0].values[1].is_nan());
        // An open row can be closed on demand, once.
        assert!(!a.is_open());
        assert!(a.offer(0, 2000, Some(5.0)).is_empty());
        assert!(a.is_open());
        assert_eq!(a.close_open().map(|r| r.ts), Some(2000));
        assert_eq!(a.close_open(), None);
    }
}
