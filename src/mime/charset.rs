//! Charsets: bytes in a declared, aliased or detected charset to UTF-8. (Implementation in progress.)
