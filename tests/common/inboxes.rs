//! An in-process Wawp for the tests that run `daemon::run` in their own process
//! (tests/inprocess.rs, tests/hooks.rs): each instance's overview, or a failing status,
//! served behind the client's `Transport` without a socket, so paused time stays paused.

// Each test crate that includes this uses part of it.
#![allow(dead_code)]

use bytes::Bytes;
use inbox_sla::wawp::{Body, BoxFuture, Response, Transport};
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// What an instance's overview answers.
#[derive(Clone, Debug)]
pub enum Answer {
    Chats(Value),
    Status(u16),
}

/// Each instance's answer, by `instance_id`; an instance never set answers `otherwise`.
#[derive(Clone)]
pub struct Inboxes {
    answers: Arc<Mutex<Vec<(String, Answer)>>>,
    otherwise: Answer,
}

impl Inboxes {
    pub fn answering(otherwise: Answer) -> Inboxes {
        Inboxes {
            answers: Arc::default(),
            otherwise,
        }
    }

    pub fn set(&self, instance_id: &str, answer: Answer) {
        let mut all = self.answers.lock().unwrap();
        all.retain(|(id, _)| id != instance_id);
        all.push((instance_id.to_string(), answer));
    }

    pub fn chats(&self, instance_id: &str, chats: Value) {
        self.set(instance_id, Answer::Chats(chats));
    }
}

impl Transport for Inboxes {
    fn get<'a>(&'a self, url: &'a reqwest::Url) -> BoxFuture<'a, Result<Response, String>> {
        Box::pin(async move {
            let id = url
                .query_pairs()
                .find(|(k, _)| k == "instance_id")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            let answer = self
                .answers
                .lock()
                .unwrap()
                .iter()
                .find(|(i, _)| *i == id)
                .map_or_else(|| self.otherwise.clone(), |(_, a)| a.clone());
            let (status, body) = match answer {
                Answer::Chats(v) => (200, v.to_string()),
                Answer::Status(s) => (s, "{\"error\":\"engine down\"}".to_string()),
            };
            Ok(Response {
                status: reqwest::StatusCode::from_u16(status).unwrap(),
                content_length: Some(body.len() as u64),
                body: Body::Chunks(vec![Ok(Bytes::from(body))].into()),
            })
        })
    }
}
