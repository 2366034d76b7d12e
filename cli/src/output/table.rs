//! Aligned tables that fit the terminal: when a table is wider than the
//! terminal, columns are shortened or dropped in the order the table gives,
//! so an 80-column terminal shows every row on one line.

/// Column alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text columns.
    Left,
    /// Number columns.
    Right,
}

/// One cell: its text, and a shorter form for narrow terminals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    full: String,
    short: Option<String>,
}

impl Cell {
    /// A cell shown as `full`, or as `short` once its column is shortened.
    pub fn short(full: impl Into<String>, short: impl Into<String>) -> Self {
        Cell {
            full: full.into(),
            short: Some(short.into()),
        }
    }
}

impl From<String> for Cell {
    fn from(full: String) -> Self {
        Cell { full, short: None }
    }
}

impl From<&str> for Cell {
    fn from(full: &str) -> Self {
        Cell::from(full.to_owned())
    }
}

/// One way to make a table narrower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Narrow {
    /// Show the column's short cells.
    Shorten(usize),
    /// Leave the column out.
    Drop(usize),
}

/// A table printed with columns padded to their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<&'static str>,
    align: Vec<Align>,
    rows: Vec<Vec<Cell>>,
    narrowing: Vec<Narrow>,
}

/// Spaces between columns.
const GAP: usize = 2;

impl Table {
    /// A table with these columns.
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Table {
            headers: columns.iter().map(|c| c.0).collect(),
            align: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
            narrowing: Vec::new(),
        }
    }

    /// The steps, tried in order, that make the table fit a narrow terminal.
    pub fn narrowing(mut self, steps: &[Narrow]) -> Self {
        self.narrowing = steps.to_vec();
        self
    }

    /// Adds a row (missing cells are blank, extra ones dropped).
    pub fn row<C: Into<Cell>>(&mut self, cells: Vec<C>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The whole table, for pipes and files.
    pub fn render(&self) -> String {
        self.render_in(None)
    }

    /// The table fitted to `width` columns when given: the narrowing steps
    /// are taken one by one until every line fits (or none is left).
    pub fn render_in(&self, width: Option<usize>) -> String {
        let mut shown = Layout {
            short: vec![false; self.headers.len()],
            kept: vec![true; self.headers.len()],
        };
        let mut steps = self.narrowing.iter();
        while let Some(limit) = width
            && self.width_of(&shown) > limit
        {
            match steps.next() {
                Some(&Narrow::Shorten(c)) if c < shown.short.len() => shown.short[c] = true,
                Some(&Narrow::Drop(c)) if c < shown.kept.len() => shown.kept[c] = false,
                Some(_) => {}
                None => break,
            }
        }
        self.lay_out(&shown)
    }

    fn text<'a>(&self, row: &'a [Cell], col: usize, shown: &Layout) -> &'a str {
        row.get(col)
            .map_or("", |c| match (&c.short, shown.short[col]) {
                (Some(s), true) => s.as_str(),
                _ => c.full.as_str(),
            })
    }

    fn widths(&self, shown: &Layout) -> Vec<usize> {
        (0..self.headers.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| self.text(r, i, shown).chars().count())
                    .chain([self.headers[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    fn width_of(&self, shown: &Layout) -> usize {
        let widths = self.widths(shown);
        let kept: Vec<usize> = (0..widths.len())
            .filter(|&i| shown.kept[i])
            .map(|i| widths[i])
            .collect();
        kept.iter().sum::<usize>() + GAP * kept.len().saturating_sub(1)
    }

    fn lay_out(&self, shown: &Layout) -> String {
        let widths = self.widths(shown);
        let headers: Vec<Cell> = self.headers.iter().map(|&h| Cell::from(h)).collect();
        let mut out = String::new();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let cells: Vec<String> = (0..widths.len())
                .filter(|&i| shown.kept[i])
                .map(|i| pad(self.text(row, i, shown), widths[i], self.align[i]))
                .collect();
            out.push_str(cells.join(&" ".repeat(GAP)).trim_end());
            out.push('\n');
        }
        out
    }
}

/// Which columns show short cells and which are shown at all.
struct Layout {
    short: Vec<bool>,
    kept: Vec<bool>,
}

fn pad(cell: &str, width: usize, align: Align) -> String {
    let fill = " ".repeat(width.saturating_sub(cell.chars().count()));
    match align {
        Align::Left => format!("{cell}{fill}"),
        Align::Right => format!("{fill}{cell}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&[
            ("ID", Align::Left),
            ("USED", Align::Right),
            ("X", Align::Left),
        ]);
        t.row(vec!["cs1".to_owned(), "78.0 MiB".into(), "".into()]);
        t.row(vec!["cs10".to_owned(), "5 B".into(), "alive".into()]);
        assert_eq!(
            t.render(),
            "ID        USED  X\ncs1   78.0 MiB\ncs10       5 B  alive\n"
        );
    }

    fn wide() -> Table {
        let mut t = Table::new(&[
            ("ID", Align::Left),
            ("ADDRESS", Align::Left),
            ("UTILIZATION", Align::Left),
            ("STATE", Align::Left),
        ])
        .narrowing(&[Narrow::Shorten(2), Narrow::Drop(1)]);
        t.row(vec![
            Cell::from("cs1"),
            Cell::from("http://127.0.0.1:7001"),
            Cell::short("[######......]  50.0%", "50.0%"),
            Cell::from("alive"),
        ]);
        t
    }

    #[test]
    fn narrow_terminals_shorten_then_drop_in_order() {
        let t = wide();
        let full = t.render();
        assert_eq!(full.lines().map(str::len).max(), Some(56), "{full}");
        assert_eq!(t.render_in(Some(56)), full);
        let shortened = t.render_in(Some(46));
        assert!(shortened.contains("  50.0%  "), "{shortened}");
        assert!(shortened.contains("http://"), "{shortened}");
        assert!(shortened.lines().all(|l| l.len() <= 46), "{shortened}");
        let dropped = t.render_in(Some(30));
        assert!(!dropped.contains("ADDRESS"), "{dropped}");
        assert_eq!(dropped.lines().next(), Some("ID   UTILIZATION  STATE"));
        assert!(dropped.lines().all(|l| l.len() <= 30), "{dropped}");
        // Out of steps: the narrowest layout, not a panic or an empty table.
        assert_eq!(t.render_in(Some(5)), dropped);
    }
}
