//! The webhook channel: POSTs the alert document of PRODUCT.md section 5 as JSON.

use super::{SendError, post_json};
use crate::alert::AlertDoc;
use crate::secret::{Redactor, Secret};
use std::collections::BTreeMap;

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

    pub async fn send(&self, doc: &AlertDoc) -> Result<String, SendError> {
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
