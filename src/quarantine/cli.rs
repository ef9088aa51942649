//! `mugaika quarantine ...` (work in progress).
