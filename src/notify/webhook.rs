//! The webhook channel: POSTs the alert document of docs/spec.md section 5 as JSON.

use super::{ChannelType, Context, SendError, Sender, Setup, post_json};
use crate::alert::{AlertDoc, Shape};
use crate::secret::{Redactor, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `type = "webhook"`: the table's keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    url: Option<String>,
    url_file: Option<PathBuf>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// https unless loopback.
    pub url: Secret,
    /// Header values are secrets: they usually carry a bearer token.
    pub headers: BTreeMap<String, Secret>,
}

impl ChannelType for Settings {
    const NAME: &'static str = "webhook";
    const SHAPE: Shape = Shape::Digest;
    type Keys = Keys;
    type Sender = Webhook;

    fn new(keys: Keys, setup: &mut Setup) -> Result<Self, String> {
        if keys.headers.is_some() {
            setup.inline_secrets();
        }
        let url = setup.secret_url("url", keys.url, keys.url_file, "")?;
        let headers = keys
            .headers
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || reqwest::header::HeaderValue::from_str(&v).is_err()
                {
                    Err(format!(
                        "{}: \"{k}\" is not a valid HTTP header",
                        setup.key("headers")
                    ))
                } else {
                    Ok((k, Secret::new(v)))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Settings { url, headers })
    }

    fn secrets(&self) -> Vec<&Secret> {
        let mut out = vec![&self.url];
        out.extend(self.headers.values());
        out
    }

    fn sender(&self, context: &Context) -> Result<Webhook, String> {
        Ok(Webhook::new(
            context.http.clone(),
            self.url.clone(),
            self.headers.clone(),
            context.redactor.clone(),
        ))
    }
}

pub struct Webhook {
    http: reqwest::Client,
    url: Secret,
    /// Values usually carry a bearer token.
    headers: BTreeMap<String, Secret>,
    redactor: Redactor,
}

impl Webhook {
    pub fn new(
        http: reqwest::Client,
        url: Secret,
        headers: BTreeMap<String, Secret>,
        redactor: Redactor,
    ) -> Self {
        Webhook {
            http,
            url,
            headers,
            redactor,
        }
    }
}

impl Sender for Webhook {
    async fn send(&self, doc: &AlertDoc) -> Result<String, SendError> {
        let mut request = self.http.post(self.url.expose());
        for (k, v) in &self.headers {
            request = request.header(k, v.expose());
        }
        let body = serde_json::to_value(doc)
            .map_err(|e| SendError::Permanent(format!("cannot encode the document: {e}")))?;
        let answer = post_json(request, &body, &self.redactor).await?;
        Ok(format!("{}", answer.status))
    }
}
