//! The console channel: a readable block per notification on stdout. It has no keys.

use super::{ChannelType, Context, SendError, Sender, Setup, text};
use crate::alert::{AlertDoc, Shape};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::io::Write;

/// `type = "console"`: no keys of its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {}

impl ChannelType for Settings {
    const NAME: &'static str = "console";
    const SHAPE: Shape = Shape::Digest;
    type Keys = Keys;
    type Sender = Console;

    fn new(_: Keys, _: &mut Setup) -> Result<Self, String> {
        Ok(Settings {})
    }

    fn secrets(&self) -> Vec<&Secret> {
        Vec::new()
    }

    fn sender(&self, _: &Context) -> Result<Console, String> {
        Ok(Console)
    }
}

pub struct Console;

impl Sender for Console {
    async fn send(&self, doc: &AlertDoc) -> Result<String, SendError> {
        let (summary, body) = text::render(doc);
        let mut out = std::io::stdout().lock();
        writeln!(out, "── {summary}\n{body}")
            .and_then(|_| out.flush())
            .map_err(|e| SendError::Permanent(format!("cannot write to stdout: {e}")))?;
        Ok("printed".into())
    }
}
