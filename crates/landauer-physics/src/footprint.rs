//! Money and carbon: what an energy per token comes to at a grid's carbon intensity and
//! electricity price.
//!
//! ```
//! use landauer_physics::footprint::Footprint;
//!
//! // The founding desk figure: 22.5 J/token is 6.25 kWh per million tokens.
//! let f = Footprint { grid_gco2_per_kwh: 400.0, price_per_kwh: 0.20 };
//! let m = f.per_million_tokens(22.5);
//! assert!((m.kwh - 6.25).abs() < 1e-12);
//! assert!((m.gco2 - 2500.0).abs() < 1e-9);
//! assert!((m.cost - 1.25).abs() < 1e-12);
//! ```

use serde::{Deserialize, Serialize};

/// Default grid carbon intensity, grams of CO2-equivalent per kWh: the world average
/// carbon intensity of electricity generation in 2022, 436 g/kWh (Ember, Global Electricity
/// Review 2023; lifecycle emissions). Local grids range from under 50 (France, Norway) to
/// over 700 (India, South Africa) g/kWh: pass your own with `--grid-gco2-per-kwh`.
pub const DEFAULT_GRID_GCO2_PER_KWH: f64 = 436.0;

/// Where [`DEFAULT_GRID_GCO2_PER_KWH`] comes from, as printed next to figures that use it.
pub const GRID_SOURCE: &str = "world average 2022, Ember Global Electricity Review 2023";

/// Default electricity price per kWh, US dollars: the US commercial-sector average revenue
/// per kWh in 2023, about 12.7 cents (EIA, Electric Power Annual 2023, released October
/// 2024), rounded to 0.13. Pass your own tariff with `--price-per-kwh` (any currency: the
/// figures are in the same unit).
pub const DEFAULT_PRICE_PER_KWH: f64 = 0.13;

/// Where [`DEFAULT_PRICE_PER_KWH`] comes from.
pub const PRICE_SOURCE: &str = "US commercial average 2023, EIA Electric Power Annual";

/// Joules in a kilowatt-hour.
pub const JOULES_PER_KWH: f64 = 3.6e6;

/// A grid: its carbon intensity and its price.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    /// Grams of CO2-equivalent per kWh drawn.
    pub grid_gco2_per_kwh: f64,
    /// Price of one kWh (US dollars by default; any currency the user gives).
    pub price_per_kwh: f64,
}

impl Default for Footprint {
    fn default() -> Self {
        Footprint {
            grid_gco2_per_kwh: DEFAULT_GRID_GCO2_PER_KWH,
            price_per_kwh: DEFAULT_PRICE_PER_KWH,
        }
    }
}

/// Energy, carbon and money for one million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PerMillion {
    pub kwh: f64,
    /// Grams of CO2-equivalent.
    pub gco2: f64,
    /// In the unit of `price_per_kwh`.
    pub cost: f64,
}

impl Footprint {
    /// Checks both figures: finite and not negative. The error names the flag.
    pub fn new(grid_gco2_per_kwh: f64, price_per_kwh: f64) -> Result<Self, String> {
        if !(grid_gco2_per_kwh.is_finite() && grid_gco2_per_kwh >= 0.0) {
            return Err(format!(
                "--grid-gco2-per-kwh must be a non-negative number of grams per kWh, got {grid_gco2_per_kwh}"
            ));
        }
        if !(price_per_kwh.is_finite() && price_per_kwh >= 0.0) {
            return Err(format!(
                "--price-per-kwh must be a non-negative price per kWh, got {price_per_kwh}"
            ));
        }
        Ok(Footprint {
            grid_gco2_per_kwh,
            price_per_kwh,
        })
    }

    /// What a million tokens at `joules_per_token` come to.
    pub fn per_million_tokens(&self, joules_per_token: f64) -> PerMillion {
        let kwh = joules_per_token * 1e6 / JOULES_PER_KWH;
        PerMillion {
            kwh,
            gco2: kwh * self.grid_gco2_per_kwh,
            cost: kwh * self.price_per_kwh,
        }
    }

    /// Which of the figures are the documented defaults, in words, for a note under a table
    /// ("436 g CO2/kWh (default: world average 2022, ...)").
    pub fn describe(&self) -> String {
        let grid = if self.grid_gco2_per_kwh == DEFAULT_GRID_GCO2_PER_KWH {
            format!(
                "{} g CO2/kWh (default: {GRID_SOURCE}; --grid-gco2-per-kwh)",
                self.grid_gco2_per_kwh
            )
        } else {
            format!("{} g CO2/kWh (--grid-gco2-per-kwh)", self.grid_gco2_per_kwh)
        };
        let price = if self.price_per_kwh == DEFAULT_PRICE_PER_KWH {
            format!(
                "${}/kWh (default: {PRICE_SOURCE}; --price-per-kwh)",
                self.price_per_kwh
            )
        } else {
            format!("{}/kWh (--price-per-kwh)", self.price_per_kwh)
        };
        format!("{grid}, {price}")
    }

    /// One line: "per million tokens: 6.25 kWh, 2.73 kg CO2, 0.81 $".
    pub fn line(&self, joules_per_token: f64) -> String {
        let m = self.per_million_tokens(joules_per_token);
        let co2 = if m.gco2 >= 1000.0 {
            format!("{:.3} kg CO2", m.gco2 / 1000.0)
        } else {
            format!("{:.3} g CO2", m.gco2)
        };
        let cost = if self.price_per_kwh == DEFAULT_PRICE_PER_KWH {
            format!("${:.4}", m.cost)
        } else {
            format!("{:.4} (your currency)", m.cost)
        };
        format!("per million tokens: {:.4} kWh, {co2}, {cost}", m.kwh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_founding_figures() {
        // ~1,500 tokens/Wh = 2.4 J/token = 0.667 kWh per million tokens.
        let f = Footprint::default();
        let m = f.per_million_tokens(2.4);
        assert!((m.kwh - 2.4 / 3.6).abs() < 1e-12);
        assert!((m.gco2 - 2.4 / 3.6 * 436.0).abs() < 1e-9);
        assert!((m.cost - 2.4 / 3.6 * 0.13).abs() < 1e-12);
    }

    #[test]
    fn bad_figures_are_refused_by_flag_name() {
        let e = Footprint::new(-1.0, 0.1).unwrap_err();
        assert!(e.contains("--grid-gco2-per-kwh"), "{e}");
        let e = Footprint::new(100.0, f64::NAN).unwrap_err();
        assert!(e.contains("--price-per-kwh"), "{e}");
        assert!(Footprint::new(0.0, 0.0).is_ok());
    }

    #[test]
    fn defaults_are_said_to_be_defaults() {
        let d = Footprint::default().describe();
        assert!(
            d.contains("default: world average") && d.contains("default: US"),
            "{d}"
        );
        let own = Footprint::new(50.0, 0.3).unwrap().describe();
        assert!(!own.contains("default"), "{own}");
        assert!(Footprint::default().line(3.6).contains("1.0000 kWh"));
    }
}
