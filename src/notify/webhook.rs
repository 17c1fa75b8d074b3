//! The webhook channel: POSTs the alert document of PRODUCT.md section 5 as JSON.

use super::{SendError, classify_http, read_answer, transport_error};
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
        let mut request = self.http.post(self.url.expose()).json(doc);
        for (k, v) in &self.headers {
            request = request.header(k, v.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(e, &self.redactor))?;
        let answer = read_answer(response, &self.redactor).await;
        classify_http(answer.status, &answer.headers, &answer.body)?;
        Ok(format!("{}", answer.status))
    }
}
