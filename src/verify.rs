//! Independent re-parse of every clean message and the invariant check. (Implementation in progress.)
