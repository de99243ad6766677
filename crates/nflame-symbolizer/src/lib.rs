//! nflame-symbolizer: raw addresses to named frames with blazesym (work in progress).
