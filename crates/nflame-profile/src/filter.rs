//! Keep or drop stacks by frame (being written).
