//! Attachment file names made safe to show and to save. (In progress.)
