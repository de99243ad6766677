//! nflame-render (being written).
