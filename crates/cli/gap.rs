//! `landauer gap`: the ladder from measured energy down to the roofline floor and Landauer.
