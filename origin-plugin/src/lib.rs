//! The origin-side half of Cachefront (under construction).
