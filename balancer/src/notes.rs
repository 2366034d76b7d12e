//! The planner's explanations, capped so that a plan over ten thousand
//! servers and millions of chunks stays readable: a few lines of each kind,
//! then one line saying how many more there were.

/// Per-server lines kept before they are summarised.
pub const MAX_SERVER_NOTES: usize = 20;
/// Lines kept per kind of chunk note ("no valid placement", too hot,
/// swaps) before they are summarised.
pub const MAX_CHUNK_NOTES: usize = 10;

/// Notes collected during one planning pass.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    /// Lines in the order they were added.
    lines: Vec<String>,
    /// Per-server lines added, shown or not.
    servers: usize,
    /// Chunks without a valid placement, shown or not.
    unplaced: usize,
    /// Hot chunks no target could take, shown or not.
    too_hot: usize,
    /// Swaps planned, shown or not.
    swaps: usize,
}

impl Notes {
    /// Adds a line that is always shown.
    pub fn push(&mut self, line: String) {
        self.lines.push(line);
    }

    /// Adds a line about one server.
    pub fn server(&mut self, line: String) {
        self.servers += 1;
        if self.servers <= MAX_SERVER_NOTES {
            self.lines.push(line);
        }
    }

    /// Records that chunk `chunk` on `server` found room on some server but
    /// no server it may go to.
    pub fn unplaced(&mut self, chunk: &str, server: &str) {
        self.unplaced += 1;
        if self.unplaced <= MAX_CHUNK_NOTES {
            self.lines.push(format!(
                "no valid placement for chunk {chunk} on {server}: every server with room holds a replica or would narrow its racks"
            ));
        }
    }

    /// Records that hot chunk `chunk` would make every target it may go to
    /// hot (`rate` reads/s).
    pub fn too_hot(&mut self, chunk: &str, rate: f64) {
        self.too_hot += 1;
        if self.too_hot <= MAX_CHUNK_NOTES {
            self.lines.push(format!(
                "{chunk} is hotter than any target can take ({rate:.1} reads/s)"
            ));
        }
    }

    /// Records one swap (a hot chunk in, cold bytes out), said in `line`.
    pub fn swap(&mut self, line: String) {
        self.swaps += 1;
        if self.swaps <= MAX_CHUNK_NOTES {
            self.lines.push(line);
        }
    }

    /// The lines, with the summaries of what was left out.
    pub fn into_lines(mut self) -> Vec<String> {
        if self.servers > MAX_SERVER_NOTES {
            let more = self.servers - MAX_SERVER_NOTES;
            self.lines
                .push(format!("... and {more} more notes about servers"));
        }
        if self.unplaced > MAX_CHUNK_NOTES {
            let more = self.unplaced - MAX_CHUNK_NOTES;
            self.lines.push(format!(
                "... and {more} more chunks without a valid placement"
            ));
        }
        if self.too_hot > MAX_CHUNK_NOTES {
            let more = self.too_hot - MAX_CHUNK_NOTES;
            self.lines.push(format!(
                "... and {more} more chunks hotter than any target can take"
            ));
        }
        if self.swaps > MAX_CHUNK_NOTES {
            let more = self.swaps - MAX_CHUNK_NOTES;
            self.lines.push(format!("... and {more} more swaps"));
        }
        self.lines
    }
}
