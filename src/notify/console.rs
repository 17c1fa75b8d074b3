//! The console channel: a readable block per notification on stdout.

use super::{SendError, text};
use crate::alert::AlertDoc;
use std::io::Write;

pub struct Console;

impl Console {
    pub fn send(&self, doc: &AlertDoc) -> Result<String, SendError> {
        let (summary, body) = text::render(doc);
        let mut out = std::io::stdout().lock();
        writeln!(out, "── {summary}\n{body}")
            .and_then(|_| out.flush())
            .map_err(|e| SendError::Permanent(format!("cannot write to stdout: {e}")))?;
        Ok("printed".into())
    }
}
