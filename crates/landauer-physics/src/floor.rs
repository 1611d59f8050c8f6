//! Energy floors: the roofline floor of a decode step, hardware profiles, and the ladder.
