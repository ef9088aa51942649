//! The canonical clean-message writer. (Implementation in progress.)
