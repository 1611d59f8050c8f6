//! The report's figures, drawn with plotters into SVG strings (and rasterized for --png).
