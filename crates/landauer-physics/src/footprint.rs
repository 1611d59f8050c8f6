//! Money and carbon: what energy per token costs at a grid's carbon intensity and price.
