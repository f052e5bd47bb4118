//! A scripted QEMU for unit tests: each expected command is answered with a given line, and
//! unexpected commands fail the test with a clear message.

use std::collections::VecDeque;

use serde_json::Value;

use crate::{QmpError, Transport};

/// One step of a script.
#[derive(Debug, Clone)]
pub enum Step {
    /// QEMU sends this line unprompted (greeting, event).
    Send(String),
    /// QEMU expects this command and answers with this JSON (the id is filled in).
    Expect {
        /// The command name.
        command: String,
        /// The reply without id, e.g. `{"return": {}}`.
        reply: Value,
    },
}

/// A transport that plays a script.
#[derive(Debug, Default)]
pub struct Scripted {
    steps: VecDeque<Step>,
    pending: VecDeque<String>,
    /// Every command received, in order.
    pub received: Vec<String>,
}

impl Scripted {
    /// A QEMU that greets with version 10.0.2 and accepts `qmp_capabilities`, then plays `steps`.
    pub fn new(steps: Vec<Step>) -> Self {
        let mut all = vec![
            Step::Send(r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}}, "capabilities": []}}"#.into()),
            Step::Expect { command: "qmp_capabilities".into(), reply: serde_json::json!({"return": {}}) },
        ];
        all.extend(steps);
        Self { steps: all.into(), ..Default::default() }
    }

    fn advance(&mut self) {
        while let Some(Step::Send(_)) = self.steps.front() {
            if let Some(Step::Send(line)) = self.steps.pop_front() {
                self.pending.push_back(line);
            }
        }
    }
}

impl Transport for Scripted {
    fn send(&mut self, line: &str) -> Result<(), QmpError> {
        let v: Value = serde_json::from_str(line).map_err(|e| QmpError::Protocol(e.to_string()))?;
        let command = v["execute"].as_str().unwrap_or_default().to_string();
        self.received.push(command.clone());
        self.advance();
        match self.steps.pop_front() {
            Some(Step::Expect { command: want, mut reply }) if want == command => {
                reply["id"] = v["id"].clone();
                self.pending.push_back(reply.to_string());
                self.advance();
                Ok(())
            }
            other => Err(QmpError::Protocol(format!("script expected {other:?}, got command {command}"))),
        }
    }
    fn recv(&mut self) -> Result<Option<String>, QmpError> {
        self.advance();
        Ok(self.pending.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Client;
    use serde_json::json;

    #[test]
    fn client_negotiates_and_keeps_events_that_arrive_before_the_reply() {
        let t = Scripted::new(vec![
            Step::Send(r#"{"event": "RESUME"}"#.into()),
            Step::Expect {
                command: "query-status".into(),
                reply: json!({"return": {"status": "running", "running": true}}),
            },
        ]);
        let mut c = Client::negotiate(t).unwrap();
        assert_eq!(c.version, (10, 0, 2));
        assert_eq!(c.status().unwrap(), "running");
        assert_eq!(c.take_events()[0].name, "RESUME");
    }

    #[test]
    fn command_error_names_the_command_and_qemus_words() {
        let t = Scripted::new(vec![Step::Expect {
            command: "stop".into(),
            reply: json!({"error": {"class": "GenericError", "desc": "not now"}}),
        }]);
        let mut c = Client::negotiate(t).unwrap();
        assert_eq!(
            c.execute("stop", None).unwrap_err().to_string(),
            "QEMU refused stop: not now (GenericError)"
        );
    }

    #[test]
    fn qemu_closing_mid_command_is_reported() {
        let t = Scripted::new(vec![]);
        let mut c = Client::negotiate(t).unwrap();
        assert!(matches!(c.execute("cont", None).unwrap_err(), QmpError::Protocol(_)));
    }
}
