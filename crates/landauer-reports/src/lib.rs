//! landauer's reports: the figures (SVG, and PNG), drawn from traces and sweeps.

pub mod charts;

pub use charts::write_sweep_svg;
