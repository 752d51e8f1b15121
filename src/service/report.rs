//! What a service tells the admin endpoint about itself: tables of named rows of
//! numbers (broadcast: one row per room, with its members and frames). The reactor
//! renders them on `/stats` and `/metrics` beside its own counters and knows nothing
//! of what they mean. A table holds at most [`MAX_ROWS`] rows, so a service with a
//! million rooms costs the endpoint a bounded page; the rest are counted.

use crate::reactor::Kind;

/// The most rows one table shows; the rest are counted in [`Table::total`].
pub const MAX_ROWS: usize = 100;

/// One column of a table: a Prometheus family and a JSON key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// `snake_case`; the Prometheus name is `framecast_{table}_{name}` (`_total`
    /// after a counter's), the JSON key is the name itself.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// What it measures, one sentence (Prometheus's `HELP`).
    pub help: &'static str,
}

/// One table: rows of numbers under the same columns, each row named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// What a row is, singular and `snake_case` (`room`): the Prometheus label and
    /// metric prefix; the JSON key is this plus `s`.
    pub row: &'static str,
    /// The columns, in order.
    pub columns: &'static [Column],
    /// The rows shown: a name and one value per column.
    pub rows: Vec<(String, Vec<u64>)>,
    /// Rows offered, shown or not.
    pub total: usize,
}

impl Table {
    /// Adds a row named `name` (bytes, shown as text with invalid UTF-8 replaced) if
    /// fewer than [`MAX_ROWS`] are shown; counts it either way. `values` has one
    /// number per column (missing ones are 0, extra ones ignored).
    pub fn push(&mut self, name: &[u8], values: &[u64]) {
        self.total += 1;
        if self.rows.len() < MAX_ROWS {
            let mut values = values.to_vec();
            values.resize(self.columns.len(), 0);
            self.rows
                .push((String::from_utf8_lossy(name).into_owned(), values));
        }
    }
}

/// Everything a service reports, filled in by [`crate::service::Service::report`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The tables, in the order the service began them.
    pub tables: Vec<Table>,
}

impl Report {
    /// Begins a table of `row`s under `columns` and returns it to fill.
    pub fn table(&mut self, row: &'static str, columns: &'static [Column]) -> &mut Table {
        self.tables.push(Table {
            row,
            columns,
            rows: Vec::new(),
            total: 0,
        });
        let last = self.tables.len() - 1;
        &mut self.tables[last]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[Column] = &[
        Column {
            name: "members",
            kind: Kind::Gauge,
            help: "Members.",
        },
        Column {
            name: "frames",
            kind: Kind::Counter,
            help: "Frames.",
        },
    ];

    #[test]
    fn a_table_shows_at_most_max_rows_and_counts_the_rest() {
        let mut report = Report::default();
        let table = report.table("room", COLUMNS);
        for i in 0..MAX_ROWS + 5 {
            table.push(format!("r{i}").as_bytes(), &[i as u64]);
        }
        let table = &report.tables[0];
        assert_eq!(table.rows.len(), MAX_ROWS);
        assert_eq!(table.total, MAX_ROWS + 5);
        assert_eq!(table.rows[3], ("r3".to_owned(), vec![3, 0]));
    }

    #[test]
    fn a_name_that_is_not_utf8_is_shown_replaced() {
        let mut report = Report::default();
        report.table("room", COLUMNS).push(b"a\xffb", &[1, 2, 3]);
        assert_eq!(
            report.tables[0].rows[0],
            ("a\u{fffd}b".to_owned(), vec![1, 2])
        );
    }
}
