//! landauer's reports: the ladder, and the figures (SVG, and PNG), from traces and sweeps.

pub mod charts;
pub mod ladder;
