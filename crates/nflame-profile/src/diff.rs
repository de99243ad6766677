//! Differential profiles (being written).
