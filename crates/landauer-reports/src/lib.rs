//! landauer's reports: the ladder, the figures (SVG, and PNG) and the HTML report, from
//! traces and sweeps.

pub mod charts;
pub mod html;
pub mod ladder;
