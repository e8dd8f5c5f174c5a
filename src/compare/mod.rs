//! `rollcall compare`: the harness that measures discovery completeness per backend.
//! (Being written.)

use std::path::PathBuf;

/// Command-line options of `rollcall compare`.
#[derive(Debug, Clone)]
pub struct CompareOpts {
    /// The scenario file.
    pub scenario: PathBuf,
    /// Where to write the result JSON.
    pub json: Option<PathBuf>,
    /// Where to write the SVG plot.
    pub plot: Option<PathBuf>,
}

/// Runs a scenario.
pub async fn run(_opts: CompareOpts) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Err("rollcall compare is not implemented yet".into())
}
