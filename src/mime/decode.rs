//! Streaming transfer decoders: base64 and quoted-printable. (Implementation in progress.)
